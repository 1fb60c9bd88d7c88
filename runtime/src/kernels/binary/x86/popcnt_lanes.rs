//! The scalar `POPCNT` lane kernel (binary conv2d on `x86-popcnt`, and on `x86-avx2`, whose
//! lane jobs run here): one output lane × a block of 8 channels per register tile.
//!
//! The block's weights are first interleaved on the stack as `[tap][word][8 channels]`, so
//! the eight weight words of one step sit at one pointer plus immediate offsets. A tile then
//! holds eight `u64` accumulators, the lane's input word, a temporary and three pointers,
//! which fits x86-64's fifteen general registers (a tile of 2 lanes × 4 channels with a row
//! pointer per channel does not, and spills). Per tap word: one input load, then eight
//! weight loads, `xor`, `popcnt` and `add`: three ALU µops per 64 bit-MACs.
//! Rows of 1 to 4 words per tap are compiled with the word count constant.
//!
//! Each tile's epilogue runs once per lane and block, so it is kept short: counts are stored
//! channel-major; float outputs as 8 stores into the channels' rows; a packed block of 8
//! channels starting on a byte writes the lane's byte whole (the block owns byte `c0 / 8` of
//! the lane's words, so no read-modify-write of bits other tiles set), and for interior lanes
//! (border class 0) each bit is one compare of the count with a per-block bound,
//! `n > ⌊(k − threshold) / 2⌋` (the same bit as `k − 2n < threshold`), the flips applied
//! to the byte at once.
//!
//! Channels past the last whole block, and every channel of a row longer than [`MAX_ROW`]
//! words (the stack buffer), run one channel per tile straight from the op's weight row.

use super::super::{LaneJob, LaneStore, Sink, StoreKind};

/// Channels per block.
const NR: usize = 8;

/// The longest row (taps × words per tap) whose block is interleaved on the stack: 8 × 256
/// words = 16 KiB (a 3×3 convolution of up to 1 792 input channels).
const MAX_ROW: usize = 256;

/// The lane kernel over the whole job (see the module docs).
///
/// # Safety
/// POPCNT must be available; the job must have passed [`LaneJob::check`] for the counts of
/// `sink` or [`LaneJob::check_store`] for its store.
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn popcnt_lanes(job: &LaneJob<'_>, sink: Sink<'_>) {
    let row = job.taps.len() * job.words;
    let channels = job.weights.len() / row;
    let mut block = [0u64; NR * MAX_ROW];
    let mut c0 = 0;
    while c0 + NR <= channels && row <= MAX_ROW {
        interleave(&job.weights[c0 * row..][..NR * row], row, &mut block);
        // SAFETY: the block holds NR·row words in `[step][channel]` order; the job's check
        // covers the input reads of every lane and the sink's channels c0..c0 + NR.
        unsafe {
            match job.words {
                1 => run::<NR, 1>(job, &block, sink, c0),
                2 => run::<NR, 2>(job, &block, sink, c0),
                3 => run::<NR, 3>(job, &block, sink, c0),
                4 => run::<NR, 4>(job, &block, sink, c0),
                _ => run::<NR, 0>(job, &block, sink, c0),
            }
        }
        c0 += NR;
    }
    for c in c0..channels {
        // SAFETY: one channel's row is already `[step][1 channel]`; as above for channel c.
        unsafe { run::<1, 0>(job, &job.weights[c * row..][..row], sink, c) };
    }
}

/// Writes `NR` channel rows of `row` words (`[channel][step]`) as `[step][channel]`.
fn interleave(rows: &[u64], row: usize, block: &mut [u64]) {
    for (c, weights) in rows.chunks_exact(row).enumerate() {
        for (s, &y) in weights.iter().enumerate() {
            block[s * NR + c] = y;
        }
    }
}

/// Every lane of the job for channels `c0..c0 + N`, weights `block[step·N + c]`; `W` words
/// per tap (0: the job's `words`, at run time).
///
/// # Safety
/// POPCNT must be available; `block` holds `N · row` words; the job passed its check for the
/// sink and `c0 + N` ≤ its channels.
#[target_feature(enable = "popcnt")]
unsafe fn run<const N: usize, const W: usize>(
    job: &LaneJob<'_>,
    block: &[u64],
    sink: Sink<'_>,
    c0: usize,
) {
    debug_assert!(block.len() >= N * job.taps.len() * job.words);
    let words = if W == 0 { job.words } else { W };
    let input = job.input.as_ptr();
    let bits = PackedBlock::new::<N>(sink, c0);
    for p in 0..job.lanes {
        // SAFETY: lane p's words at every tap (`input + p + tap + w·plane`) are inside the
        // input by the job's check.
        let acc = unsafe { tile::<N>(input.add(p), job.taps, words, job.plane, block.as_ptr()) };
        // SAFETY: channels c0..c0 + N, lane p of the sink (the caller's contract).
        unsafe {
            match (&bits, sink) {
                (Some(b), Sink::Store(s)) => b.put(s, &acc, c0, p),
                _ => emit::<N>(sink, &acc, c0, p),
            }
        }
    }
}

/// A packed block's constants: an interior lane's bit of channel `c` is
/// `(n > bound[c]) XOR flip[c]`, since `k − 2n < threshold ⇔ n > ⌊(k − threshold) / 2⌋`.
struct PackedBlock<'a> {
    bound: [i64; NR],
    flip: u8,
    /// The store's thresholds (border lanes compare their corrected dot products).
    threshold: &'a [i32],
}

impl<'a> PackedBlock<'a> {
    /// The block's constants when `sink` is a packed store and `c0..c0 + N` a byte's channels.
    fn new<const N: usize>(sink: Sink<'a>, c0: usize) -> Option<PackedBlock<'a>> {
        let Sink::Store(s) = sink else { return None };
        let StoreKind::Packed {
            threshold, flip, ..
        } = s.kind()
        else {
            return None;
        };
        if N != NR || !c0.is_multiple_of(8) {
            return None;
        }
        let k = i64::from(s.k());
        Some(PackedBlock {
            bound: std::array::from_fn(|c| (k - i64::from(threshold[c0 + c])).div_euclid(2)),
            flip: (0..NR).fold(0, |f, c| f | (flip[c0 + c] as u8) << c),
            threshold,
        })
    }

    /// Lane `p`'s byte of the block: interior lanes by the bounds, border lanes through the
    /// corrected dot product.
    ///
    /// # Safety
    /// Byte `c0 / 8` of lane `p`'s words is the caller's to write.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn put<const N: usize>(&self, s: &LaneStore<'_>, acc: &[u64; N], c0: usize, p: usize) {
        let class = usize::from(s.classes()[p]);
        let mut byte = 0u8;
        if class == 0 {
            for c in 0..N {
                byte |= u8::from(acc[c] as u32 as i64 > self.bound[c]) << c;
            }
        } else {
            for c in 0..N {
                let dot = s.dot(c0 + c, p, acc[c] as u32);
                byte |= u8::from(dot < self.threshold[c0 + c]) << c;
            }
        }
        let (out, ld) = s.out();
        // SAFETY: byte c0 / 8 of lane p's ld words; this block of 8 channels owns it.
        unsafe { *out.add(p * ld * 8 + c0 / 8) = byte ^ self.flip };
    }
}

/// One lane × `N` channels: `acc[c] = Σ_t Σ_w popcount(input[taps[t] + w·plane] ^ block[(t·words + w)·N + c])`.
///
/// # Safety
/// POPCNT must be available; the reads named above are in bounds.
#[target_feature(enable = "popcnt")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const N: usize>(
    input: *const u64,
    taps: &[usize],
    words: usize,
    plane: usize,
    block: *const u64,
) -> [u64; N] {
    let mut acc = [0u64; N];
    let mut y = block;
    for &tap in taps {
        // SAFETY (all reads): the caller's contract.
        let src = unsafe { input.add(tap) };
        for w in 0..words {
            let x = unsafe { *src.add(w * plane) };
            for c in 0..N {
                acc[c] += u64::from((x ^ unsafe { *y.add(c) }).count_ones());
            }
            y = unsafe { y.add(N) };
        }
    }
    acc
}

/// A tile's results for channels `c0..c0 + N`, lane `p`, into the sink.
///
/// # Safety
/// Those elements of the sink are the caller's to write.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn emit<const N: usize>(sink: Sink<'_>, acc: &[u64; N], c0: usize, p: usize) {
    match sink {
        Sink::Counts { out, ld } => {
            for c in 0..N {
                // SAFETY: channel c0 + c, lane p (the caller's contract).
                unsafe { *out.add((c0 + c) * ld + p) = acc[c] as u32 };
            }
        }
        Sink::Store(s) => {
            // SAFETY: as above.
            unsafe { store::<N>(s, acc, c0, p) }
        }
    }
}

/// The fused output stage of one lane × `N` channels: the values of [`LaneStore::put`]
/// (packed blocks of 8 channels starting on a byte go through [`PackedBlock`] instead).
///
/// # Safety
/// Channels `c0..c0 + N`, lane `p` of the store are the caller's to write.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn store<const N: usize>(s: &LaneStore<'_>, acc: &[u64; N], c0: usize, p: usize) {
    match s.kind() {
        StoreKind::Float { mul, bias } => {
            // Class 0 (the interior) corrects by 0 (the store's invariant): no table lookup.
            let interior = s.classes()[p] == 0;
            let dot = |c: usize| -> i32 {
                let n = acc[c] as u32;
                if interior {
                    s.k() - 2 * n as i32
                } else {
                    s.dot(c0 + c, p, n)
                }
            };
            let (out, ld) = s.out();
            for c in 0..N {
                let y = mul[c0 + c] * dot(c) as f32;
                // SAFETY: channel c0 + c, lane p (the caller's contract).
                unsafe { *out.cast::<f32>().add((c0 + c) * ld + p) = y + bias[c0 + c] };
            }
        }
        StoreKind::Packed { .. } => {
            for c in 0..N {
                s.put(c0 + c, p, acc[c] as u32);
            }
        }
    }
}
