//! The NEON lane kernel's register-tile path, for lane jobs of at most [`MAX_TAP_WORDS`] tap
//! words (taps × words: every 3×3 layer up to 7 232 input channels, every 5×5 up to 2 560).
//!
//! # Loop
//!
//! The job's tap words are flattened once per call into a table of input offsets on the stack
//! (`offsets[t·W + w] = taps[t] + w·plane`) and the byte distances between consecutive ones
//! (`deltas`), and each block of 4 output channels has its weight rows interleaved once into
//! a stack copy (`[tap word][4 channels]`), so that one `ld4r` broadcasts the four channels'
//! words of a tap word into four registers. The bulk tile, 4 vectors of 2 lanes (8 pixels) ×
//! 4 channels, is assembly ([`tile44`]); per tap word it executes
//!
//! ```text
//! ld1   {x0.16b-x3.16b}, [src], delta   8 pixels' words, then on to the next tap word's
//! ld4r  {y0.2d-y3.2d}, [w], #32          4 channels' weight words, each to both lanes
//! eor, cnt, uadalp                       × 16
//! ```
//!
//! plus, per four tap words, two `ldp` of their deltas and the loop's `subs`, `b.ne`: 51
//! instructions per 16 XOR-popcounts of 128 bits, 3 ASIMD per 128 bits being the floor of
//! this instruction set (no instruction combines the `eor`, the `cnt` and the
//! accumulation). The u16 accumulators cannot wrap: a tap word adds at most 64 to a pixel's
//! four u16 lanes together, and a job has at most [`MAX_TAP_WORDS`] of them (64 · 1 023 ≤
//! 65 535), so the tile folds once, at its end, in u16: two `addp` of two vectors each and
//! one `addp` of those give one vector of the 8 pixels' counts per channel. The other tiles
//! are intrinsics over the offsets (one `ldr` and `add` a tap word, 55 instructions per 16):
//! 2 vectors × 4 channels, then single vectors (the last one partial), and single channels
//! (`ld1r`) after the last block of 4.
//!
//! # Output stage
//!
//! The tile's counts go straight into the op's output without bounds checks in the loop.
//! Float: `dot = k − 2n` (`ushll`/`ushll2` by 1, `sub`), `scvtf`, `fmul` by the channel's
//! multiplier, `fadd` of its bias (two roundings, as [`LaneStore::put`]), one store per 4
//! lanes; a tile whose 8 lanes are all interior skips the correction tables, otherwise they
//! apply with `tbl`.
//!
//! Packed: a bit is `n ≥ bound` for the lane's border class (the store's count bounds, see
//! [`super::super::store`]), so every lane, border or interior, costs one `tbl` of the
//! channel's 16 u16 bounds (one 32-byte load) and one `cmhs` for 8 lanes. A packed store
//! runs the channels in groups of 8 (two interleaved blocks of 4, [`channel_bytes`]): per
//! 8 lanes, both blocks' tiles, then `sli` gathers the 8 channels' comparisons into each
//! lane's byte, one `eor` applies the flips and one byte store per lane writes it whole. The
//! channels past the last group of 8 take the 4-channel path ([`store_packed`]: `and`/`orr`
//! into the byte, a read-modify-write for the block that ends it). MST layers' stored counts
//! go through the same stage ([`store_counts`]).

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::super::store::{LaneStore, StoreKind, CLASSES};
use super::super::{LaneJob, Sink};
use super::groups;
use super::tile44;

/// Tap words (taps × words per tap) a job may have for this path (its u16 counts hold
/// 64 · 1 023 bits); longer jobs take the blocked lane tile of the parent module.
pub(super) const MAX_TAP_WORDS: usize = 1023;

/// The job through register tiles (see the module docs).
///
/// # Safety
/// NEON must be available; the job passed [`LaneJob::check`] for the counts of `sink` or
/// [`LaneJob::check_store`] for its store (whose stride is `CLASSES`), and has at most
/// [`MAX_TAP_WORDS`] tap words.
#[target_feature(enable = "neon")]
pub(super) unsafe fn run(job: &LaneJob<'_>, sink: Sink<'_>) {
    let (words, plane) = (job.words, job.plane);
    let row = job.taps.len() * words;
    assert!(
        row <= MAX_TAP_WORDS,
        "a register-tile job has at most MAX_TAP_WORDS tap words"
    );
    // Only the job's `row` entries of the two tables are written (no 8 KiB zeroing per call).
    let mut offsets = [const { MaybeUninit::<usize>::uninit() }; MAX_TAP_WORDS];
    let mut i = 0;
    for &tap in job.taps {
        for w in 0..words {
            offsets[i].write(tap + w * plane);
            i += 1;
        }
    }
    // SAFETY: entries 0..row (= taps · words) were written just above.
    let offsets = unsafe { std::slice::from_raw_parts(offsets.as_ptr().cast::<usize>(), row) };
    // The assembly tile's walk (`tile44::tile`): bytes from each tap word's lanes to the
    // next one's (wrapping: offsets need not grow), the last entry unused (0).
    let mut deltas = [const { MaybeUninit::<usize>::uninit() }; MAX_TAP_WORDS];
    for (i, d) in deltas[..row].iter_mut().enumerate() {
        let next = offsets
            .get(i + 1)
            .map_or(0, |&n| n.wrapping_sub(offsets[i]).wrapping_mul(8));
        d.write(next);
    }
    let walk = Walk {
        offsets,
        // SAFETY: entries 0..row were written just above.
        deltas: unsafe { std::slice::from_raw_parts(deltas.as_ptr().cast::<usize>(), row) },
    };
    let channels = job.weights.len() / row;
    let (input, lanes) = (job.input.as_ptr(), job.lanes);
    // Two blocks of 4 channels, each `[tap word][channel]`.
    let mut interleaved = MaybeUninit::<[u64; 8 * MAX_TAP_WORDS]>::uninit();
    let w = interleaved.as_mut_ptr().cast::<u64>();
    // Channels c..c + 4 interleaved at w + 4·row·block: two tap words of the four rows a turn
    // (`st4` of four q registers), then the last odd one.
    let interleave = |c: usize, block: usize| {
        let rows = &job.weights[c * row..][..4 * row];
        let rows = [0, 1, 2, 3].map(|r| &rows[r * row..][..row]);
        // SAFETY: 4·row·block + 4·row ≤ 8·row ≤ the buffer's length; loads inside `rows`.
        unsafe {
            let dst = w.add(4 * row * block);
            let mut i = 0;
            while i + 2 <= row {
                let v = rows.map(|r| vld1q_u64(r.as_ptr().add(i)));
                vst4q_u64(dst.add(4 * i), uint64x2x4_t(v[0], v[1], v[2], v[3]));
                i += 2;
            }
            if i < row {
                for (r, rw) in rows.iter().enumerate() {
                    dst.add(4 * i + r).write(rw[i]);
                }
            }
        }
    };
    let mut c = 0;
    if let Some(bytes) = Bytes::of(sink) {
        while c + 8 <= channels {
            interleave(c, 0);
            interleave(c + 4, 1);
            // SAFETY: both blocks were written just above; the tiles read lanes < lanes +
            // LANE_SLACK of every tap word (the job's check) and write byte c / 8 of lanes
            // < lanes of the store.
            unsafe { channel_bytes(input, &walk, w, w.add(4 * row), lanes, &bytes, c) };
            c += 8;
        }
    }
    while c + 4 <= channels {
        interleave(c, 0);
        // SAFETY: the first 4·row words were written just above; the tiles read lanes
        // < lanes + LANE_SLACK of every tap word (the job's check) and write channels
        // c..c + 4, lanes < lanes of the sink.
        unsafe { channel_block::<4>(input, &walk, w, lanes, sink, c) };
        c += 4;
    }
    while c < channels {
        // SAFETY: channel c's row; the rest as above.
        unsafe {
            let w = job.weights.as_ptr().add(c * row);
            channel_block::<1>(input, &walk, w, lanes, sink, c);
        }
        c += 1;
    }
}

/// [`super::super::BinaryKernel::store_counts`] through the register tiles' output stage:
/// blocks of 4 channels (then single ones) × 8 lanes, each channel's counts read from its row
/// (`slots[c]`, or `c`) and narrowed to u16 when the block's largest fits (`umaxv`; counts of
/// a conv never exceed its `k`), else put through the u32 stage `neon_store`.
///
/// # Safety
/// NEON must be available; `check_counts(counts, slots, store)` holds and the store's stride
/// is `CLASSES`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn store_counts(counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
    let lanes = store.lanes();
    // Channel c's row of counts (inside `counts`: the caller's check).
    let row = |c: usize| counts[slots.map_or(c, |s| s[c] as usize) * lanes..][..lanes].as_ptr();
    // Lanes p..p + valid of a row, lanes 0–3 and 4–7 (0 past valid).
    let load = |r: *const u32, p: usize, valid: usize| -> [uint32x4_t; 2] {
        let mut b = [0u32; 8];
        // SAFETY: NEON is baseline on aarch64; lanes p..p + valid of the row.
        unsafe {
            let v = if valid == 8 {
                r.add(p)
            } else {
                std::ptr::copy_nonoverlapping(r.add(p), b.as_mut_ptr(), valid);
                b.as_ptr()
            };
            [vld1q_u32(v), vld1q_u32(v.add(4))]
        }
    };
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn block<const NR: usize>(
        store: &LaneStore<'_>,
        v: &[[uint32x4_t; 2]; NR],
        valid: usize,
        c0: usize,
        p: usize,
    ) {
        let mut top = vdupq_n_u32(0);
        for g in v {
            top = vmaxq_u32(top, vmaxq_u32(g[0], g[1]));
        }
        // SAFETY: channels c0..c0 + NR, lanes p..p + valid of the store (the caller's).
        unsafe {
            if vmaxvq_u32(top) > u32::from(u16::MAX) {
                return super::neon_store::<NR, 2>(store, v, valid, c0, p);
            }
            let t = v.map(|g| vcombine_u16(vmovn_u32(g[0]), vmovn_u32(g[1])));
            let sink = Sink::Store(store);
            if valid == 8 {
                emit::<NR, true>(sink, &t, 8, c0, p)
            } else {
                emit::<NR, false>(sink, &t, valid, c0, p)
            }
        }
    }
    let channels = store.channels();
    let mut c0 = 0;
    if let Some(bytes) = Bytes::of(Sink::Store(store)) {
        // Packed: groups of 8 channels into whole bytes, as the register tiles do; a block
        // whose counts exceed u16 takes the 4-channel stage below.
        while c0 + 8 <= channels {
            let rows = [0, 1, 2, 3, 4, 5, 6, 7].map(|c| row(c0 + c));
            // SAFETY: channels c0..c0 + 8 are the store's (the caller's contract).
            let flip = unsafe { bytes.flips(c0) };
            let mut p = 0;
            while p < lanes {
                let valid = (lanes - p).min(8);
                let v = rows.map(|r| load(r, p, valid));
                let top = v
                    .iter()
                    .fold(vdupq_n_u32(0), |t, g| vmaxq_u32(t, vmaxq_u32(g[0], g[1])));
                // SAFETY: channels c0..c0 + 8 and lanes p..p + valid are the store's.
                unsafe {
                    if vmaxvq_u32(top) > u32::from(u16::MAX) {
                        let (lo, hi) = ([v[0], v[1], v[2], v[3]], [v[4], v[5], v[6], v[7]]);
                        block::<4>(store, &lo, valid, c0, p);
                        block::<4>(store, &hi, valid, c0 + 4, p);
                    } else {
                        let t = v.map(|g| vcombine_u16(vmovn_u32(g[0]), vmovn_u32(g[1])));
                        let (lo, hi) = ([t[0], t[1], t[2], t[3]], [t[4], t[5], t[6], t[7]]);
                        if valid == 8 {
                            bytes.emit::<true>(&lo, &hi, 8, c0, p, flip);
                        } else {
                            bytes.emit::<false>(&lo, &hi, valid, c0, p, flip);
                        }
                    }
                }
                p += 8;
            }
            c0 += 8;
        }
    }
    while c0 < channels {
        let wide = c0 + 4 <= channels;
        let rows = [0, 1, 2, 3].map(|c| row(if wide { c0 + c } else { c0 }));
        let mut p = 0;
        while p < lanes {
            let valid = (lanes - p).min(8);
            // SAFETY: channels c0..c0 + NR and lanes p..p + valid are the store's.
            unsafe {
                if wide {
                    let v = rows.map(|r| load(r, p, valid));
                    block::<4>(store, &v, valid, c0, p);
                } else {
                    block::<1>(store, &[load(rows[0], p, valid)], valid, c0, p);
                }
            }
            p += 8;
        }
        c0 += if wide { 4 } else { 1 };
    }
}

/// A job's tap words as the tiles walk them: `offsets[i]`, tap word `i`'s first input word
/// (the intrinsic tiles), and `deltas[i]`, the bytes from tap word `i`'s inputs to tap word
/// `i + 1`'s (the assembly tile, [`tile44::tile`]; the last entry unused).
struct Walk<'a> {
    offsets: &'a [usize],
    deltas: &'a [usize],
}

/// Every lane of channels `c0..c0 + NR`: tiles of 8 lanes, then 4, then 2 (the last partial).
///
/// # Safety
/// As [`run`], for these channels; `w` holds their weights as [`tile`] reads them.
#[inline(always)]
unsafe fn channel_block<const NR: usize>(
    input: *const u64,
    walk: &Walk<'_>,
    w: *const u64,
    lanes: usize,
    sink: Sink<'_>,
    c0: usize,
) {
    let mut p = 0;
    // SAFETY: the caller's contract; each tile reads lanes p..p + 2·MR ≤ lanes + 1 of every
    // tap word and emits its lanes that exist.
    unsafe {
        while p + 8 <= lanes {
            let t = if NR == 4 {
                let t = tile44::tile::<false>(input.add(p + walk.offsets[0]), walk.deltas, w);
                // With NR = 4 the types are the same.
                std::mem::transmute_copy(&t)
            } else {
                tile::<4, NR>(input.add(p), walk.offsets, w)
            };
            emit::<NR, true>(sink, &t, 8, c0, p);
            p += 8;
        }
        if p + 4 <= lanes {
            let t = tile::<2, NR>(input.add(p), walk.offsets, w);
            emit::<NR, false>(sink, &t, 4, c0, p);
            p += 4;
        }
        while p < lanes {
            let t = tile::<1, NR>(input.add(p), walk.offsets, w);
            emit::<NR, false>(sink, &t, (lanes - p).min(2), c0, p);
            p += 2;
        }
    }
}

/// Every lane of channels `c0..c0 + 8` (a multiple of 8) into whole bytes of a packed
/// output: per group of 8 lanes, the tiles of both blocks of 4 channels (`w0`, `w1`), then
/// one byte per lane ([`Bytes::emit`]).
///
/// # Safety
/// As [`run`], for these channels; `w0` and `w1` hold channels `c0..c0 + 4` and
/// `c0 + 4..c0 + 8` as [`tile`] reads them; `b` is the sink's packed store.
#[inline(always)]
unsafe fn channel_bytes(
    input: *const u64,
    walk: &Walk<'_>,
    w0: *const u64,
    w1: *const u64,
    lanes: usize,
    b: &Bytes,
    c0: usize,
) {
    // SAFETY (all blocks): the caller's contract, as in `channel_block`.
    let flip = unsafe { b.flips(c0) };
    let mut p = 0;
    unsafe {
        while p + 8 <= lanes {
            let start = input.add(p + walk.offsets[0]);
            let lo = tile44::tile::<false>(start, walk.deltas, w0);
            let hi = tile44::tile::<true>(start, walk.deltas, w1);
            b.emit::<true>(&lo, &hi, 8, c0, p, flip);
            p += 8;
        }
        if p + 4 <= lanes {
            let lo = tile::<2, 4>(input.add(p), walk.offsets, w0);
            let hi = tile::<2, 4>(input.add(p), walk.offsets, w1);
            b.emit::<false>(&lo, &hi, 4, c0, p, flip);
            p += 4;
        }
        while p < lanes {
            let lo = tile::<1, 4>(input.add(p), walk.offsets, w0);
            let hi = tile::<1, 4>(input.add(p), walk.offsets, w1);
            b.emit::<false>(&lo, &hi, (lanes - p).min(2), c0, p, flip);
            p += 2;
        }
    }
}

/// A packed store's whole-byte output (see the module docs), its parameters read once per
/// job.
struct Bytes {
    /// The store's lane classes.
    classes: *const u8,
    /// Its count bounds, `CLASSES` per channel.
    bounds: *const u16,
    /// Its flips.
    flip: *const u32,
    /// Byte 0 of lane 0's first word.
    out: *mut u8,
    /// Bytes from one lane's words to the next's.
    stride: usize,
}

impl Bytes {
    /// The whole-byte output of `sink`, if it is a packed store.
    fn of(sink: Sink<'_>) -> Option<Bytes> {
        const { assert!(CLASSES == 16, "a lane's bound is a u16 of a 32-byte table") };
        let Sink::Store(s) = sink else { return None };
        let StoreKind::Packed { flip, bounds, .. } = s.kind() else {
            return None;
        };
        let (out, ld) = s.out();
        Some(Bytes {
            classes: s.classes().as_ptr(),
            bounds: bounds.as_ptr(),
            flip: flip.as_ptr(),
            out,
            stride: 8 * ld,
        })
    }

    /// The flips of channels `c0..c0 + 8` as one byte (bit `j`: channel `c0 + j`).
    ///
    /// # Safety
    /// Those channels are the store's.
    #[inline(always)]
    unsafe fn flips(&self, c0: usize) -> u8 {
        // SAFETY: the caller's contract.
        (0..8).fold(0u8, |f, j| {
            f | (unsafe { *self.flip.add(c0 + j) } as u8) << j
        })
    }

    /// Bits of channels `c0..c0 + 8` (`lo`: the first 4, `hi`: the next 4) for lanes `p..p +
    /// valid` (`FULL`: 8): per channel one `tbl` of its bounds by the lanes' classes, `cmhs`,
    /// and `sli` into the lanes' byte; the flips with one `eor`; one byte store per lane.
    ///
    /// # Safety
    /// Lanes `p..p + valid` and channels `c0..c0 + 8` (`c0` a multiple of 8) are the store's.
    #[inline(always)]
    unsafe fn emit<const FULL: bool>(
        &self,
        lo: &[uint16x8_t; 4],
        hi: &[uint16x8_t; 4],
        valid: usize,
        c0: usize,
        p: usize,
        flip: u8,
    ) {
        // SAFETY (all blocks): the caller's contract; NEON is baseline on aarch64.
        unsafe {
            let idx = class_indices::<FULL>(self.classes, valid, p);
            let bounds = self.bounds.add(c0 * CLASSES);
            let set = |c: usize, n: uint16x8_t| vcgeq_u16(n, bound_of(bounds, c, idx));
            let mut bits = set(0, lo[0]);
            bits = vsliq_n_u16::<1>(bits, set(1, lo[1]));
            bits = vsliq_n_u16::<2>(bits, set(2, lo[2]));
            bits = vsliq_n_u16::<3>(bits, set(3, lo[3]));
            bits = vsliq_n_u16::<4>(bits, set(4, hi[0]));
            bits = vsliq_n_u16::<5>(bits, set(5, hi[1]));
            bits = vsliq_n_u16::<6>(bits, set(6, hi[2]));
            bits = vsliq_n_u16::<7>(bits, set(7, hi[3]));
            let bytes = veor_u8(vmovn_u16(bits), vdup_n_u8(flip));
            let dst = self.out.add(p * self.stride + c0 / 8);
            put_bytes::<FULL>(dst, self.stride, bytes, valid);
        }
    }
}

/// The `tbl` byte indices of lanes `p..p + valid`'s classes into a table of u16 (`2·class`,
/// `2·class + 1`; lanes past `valid` class 0).
///
/// # Safety
/// `classes + p + [0, valid)` readable (`FULL`: `valid` = 8).
#[inline(always)]
unsafe fn class_indices<const FULL: bool>(
    classes: *const u8,
    valid: usize,
    p: usize,
) -> uint8x16_t {
    // SAFETY: the caller's contract; NEON is baseline on aarch64.
    unsafe {
        let cls = if FULL {
            vld1_u8(classes.add(p))
        } else {
            let mut c = [0u8; 8];
            std::ptr::copy_nonoverlapping(classes.add(p), c.as_mut_ptr(), valid.min(8));
            vld1_u8(c.as_ptr())
        };
        vreinterpretq_u8_u16(vmlaq_n_u16(vdupq_n_u16(0x0100), vmovl_u8(cls), 0x0202))
    }
}

/// Channel `c`'s bounds (its 16 u16 at `bounds + c·CLASSES`) looked up for 8 lanes.
///
/// # Safety
/// `bounds + c·CLASSES + [0, CLASSES)` readable.
#[inline(always)]
unsafe fn bound_of(bounds: *const u16, c: usize, idx: uint8x16_t) -> uint16x8_t {
    // SAFETY: the caller's contract; NEON is baseline on aarch64.
    unsafe {
        let table = vld1q_u8_x2(bounds.add(c * CLASSES).cast());
        vreinterpretq_u16_u8(vqtbl2q_u8(table, idx))
    }
}

/// Counts of `MR` vectors of 2 lanes × `NR` channels: lane `j < 2·MR` of `[c]` is lane `j`'s
/// count of channel `c`. `w` is, for `NR` = 4, the interleaved rows (`w[4i + c]` = channel
/// `c`'s tap word `i`), for `NR` = 1 the channel's row.
///
/// # Safety
/// `src + offsets[i] + [0, 2·MR)` readable for every `i`; `w` readable for `NR ·
/// offsets.len()` words.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const MR: usize, const NR: usize>(
    src: *const u64,
    offsets: &[usize],
    w: *const u64,
) -> [uint16x8_t; NR] {
    const { assert!(NR == 1 || NR == 4, "tiles of 1 or 4 channels") };
    // SAFETY: the caller's contract.
    let acc = unsafe { accumulate::<MR, NR>(src, offsets, w) };
    let zero = vdupq_n_u16(0);
    let mut out = [zero; NR];
    for c in 0..NR {
        // Pairwise: (lane halves of vectors 0, 1), (2, 3), then whole lanes.
        let a = vpaddq_u16(acc[0][c], if MR > 1 { acc[1][c] } else { zero });
        let b = if MR > 2 {
            vpaddq_u16(acc[2][c], acc[3][c])
        } else {
            zero
        };
        out[c] = vpaddq_u16(a, b);
    }
    out
}

/// The tile's accumulators before their fold, in intrinsics (the shapes other than 4 × 4):
/// `acc[r][c]` holds the per-byte-pair popcounts of vector `r` against channel `c`.
///
/// # Safety
/// As [`tile`].
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn accumulate<const MR: usize, const NR: usize>(
    src: *const u64,
    offsets: &[usize],
    w: *const u64,
) -> [[uint16x8_t; NR]; MR] {
    let (&first, rest) = offsets.split_first().expect("a job has tap words");
    // The first tap word starts the accumulators (`uaddlp`, no zeroing).
    // SAFETY: the caller's contract (tap word 0).
    let (x, y) = unsafe { load::<MR, NR>(src, first, w) };
    let mut acc = [[vdupq_n_u16(0); NR]; MR];
    for c in 0..NR {
        for r in 0..MR {
            acc[r][c] = vpaddlq_u8(vcntq_u8(veorq_u8(x[r], y[c])));
        }
    }
    let mut wp = w.wrapping_add(NR);
    let mut step = |off: usize| {
        // SAFETY: the caller's contract: tap word i's offset and weights, wp advancing NR
        // words per tap word.
        let (x, y) = unsafe { load::<MR, NR>(src, off, wp) };
        wp = wp.wrapping_add(NR);
        for c in 0..NR {
            for r in 0..MR {
                acc[r][c] = vpadalq_u8(acc[r][c], vcntq_u8(veorq_u8(x[r], y[c])));
            }
        }
    };
    for &off in rest {
        step(off);
    }
    acc
}

/// One tap word's `MR` input vectors (at `src + off`) and `NR` weight vectors (at `w`, see
/// [`tile`]).
///
/// # Safety
/// `src + off + [0, 2·MR)` and `w + [0, NR)` readable.
#[inline(always)]
unsafe fn load<const MR: usize, const NR: usize>(
    src: *const u64,
    off: usize,
    w: *const u64,
) -> ([uint8x16_t; MR], [uint8x16_t; NR]) {
    // SAFETY: the caller's contract.
    unsafe {
        let s = src.add(off);
        let mut x = [vdupq_n_u8(0); MR];
        for (r, x) in x.iter_mut().enumerate() {
            *x = vld1q_u8(s.add(2 * r).cast());
        }
        let mut y = [vdupq_n_u8(0); NR];
        if NR == 4 {
            let v = vld4q_dup_u64(w);
            y[0] = vreinterpretq_u8_u64(v.0);
            y[1] = vreinterpretq_u8_u64(v.1);
            y[2] = vreinterpretq_u8_u64(v.2);
            y[3] = vreinterpretq_u8_u64(v.3);
        } else {
            y[0] = vreinterpretq_u8_u64(vld1q_dup_u64(w));
        }
        (x, y)
    }
}

/// A tile's counts into the sink: `valid` lanes from `p` of channels `c0..c0 + NR` (`FULL`:
/// all 8).
///
/// # Safety
/// Those channels and lanes are the sink's (the caller's contract).
#[inline(always)]
unsafe fn emit<const NR: usize, const FULL: bool>(
    sink: Sink<'_>,
    t: &[uint16x8_t; NR],
    valid: usize,
    c0: usize,
    p: usize,
) {
    // SAFETY (all arms): the caller's contract.
    match sink {
        Sink::Counts { out, ld } => {
            for (c, &n) in t.iter().enumerate() {
                let dst = unsafe { out.add((c0 + c) * ld + p) };
                let lo = vmovl_u16(vget_low_u16(n));
                let hi = vmovl_high_u16(n);
                unsafe { store_lanes::<FULL>(dst.cast(), [lo, hi].map(f32_bits), valid) };
            }
        }
        Sink::Store(s) => match s.kind() {
            StoreKind::Float { mul, bias } => unsafe {
                store_float::<NR, FULL>(s, mul, bias, t, valid, c0, p)
            },
            StoreKind::Packed { flip, bounds, .. } => unsafe {
                store_packed::<NR, FULL>(s, flip, bounds, t, valid, c0, p)
            },
        },
    }
}

/// u32 lanes as f32 lanes (same bits), for the shared store.
#[inline(always)]
fn f32_bits(v: uint32x4_t) -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64 (as in every helper of this path).
    unsafe { vreinterpretq_f32_u32(v) }
}

/// `dot = k − 2n` of 8 lanes, minus their border corrections when the tile has border lanes.
#[inline(always)]
fn dots(
    k: int32x4_t,
    n: uint16x8_t,
    border: Option<([uint8x16_t; 2], [bool; 2])>,
    table: Option<uint8x16x4_t>,
) -> [int32x4_t; 2] {
    // SAFETY: NEON is baseline on aarch64.
    unsafe {
        let twice = [vshll_n_u16::<1>(vget_low_u16(n)), vshll_high_n_u16::<1>(n)];
        let dot = twice.map(|t| vsubq_s32(k, vreinterpretq_s32_u32(t)));
        match (border, table) {
            (Some((idx, on)), Some(table)) => [0, 1].map(|g| {
                if on[g] {
                    vsubq_s32(dot[g], vreinterpretq_s32_u8(vqtbl4q_u8(table, idx[g])))
                } else {
                    dot[g]
                }
            }),
            _ => dot,
        }
    }
}

/// Border classes of the tile's lanes (`tbl` indices and whether each group of 4 has border
/// lanes), or `None` when all its lanes are interior (one 8-byte load for a full tile).
#[inline(always)]
fn border_of<const FULL: bool>(
    s: &LaneStore<'_>,
    valid: usize,
    p: usize,
) -> Option<([uint8x16_t; 2], [bool; 2])> {
    let classes = s.classes();
    let any = if FULL {
        let eight = &classes[p..p + 8];
        // SAFETY: 8 bytes, read unaligned.
        unsafe { eight.as_ptr().cast::<u64>().read_unaligned() != 0 }
    } else {
        classes[p..p + valid].iter().any(|&c| c != 0)
    };
    any.then(|| {
        // SAFETY: NEON is baseline on aarch64.
        let (_, idx, on) = unsafe { groups::<2>(s, valid, p) };
        (idx, on)
    })
}

/// Float output (see the module docs).
///
/// # Safety
/// As [`emit`]; `mul` and `bias` hold the store's channels.
#[inline(always)]
unsafe fn store_float<const NR: usize, const FULL: bool>(
    s: &LaneStore<'_>,
    mul: &[f32],
    bias: &[f32],
    t: &[uint16x8_t; NR],
    valid: usize,
    c0: usize,
    p: usize,
) {
    let (out, ld) = s.out();
    let out = out.cast::<f32>();
    let k = vdupq_n_s32(s.k());
    let Some(border) = border_of::<FULL>(s, valid, p) else {
        // All lanes interior: no tables.
        for (c, &n) in t.iter().enumerate() {
            // SAFETY: c0 + c < channels ≤ mul.len(), bias.len() (the store's constructor).
            let (m, b) = unsafe { (*mul.get_unchecked(c0 + c), *bias.get_unchecked(c0 + c)) };
            // SAFETY: NEON is baseline on aarch64.
            let b = unsafe { vdupq_n_f32(b) };
            let y = dots(k, n, None, None).map(|d| scale(d, m, b));
            // SAFETY: channel c0 + c's lanes p..p + valid (the caller's contract).
            unsafe { store_lanes::<FULL>(out.add((c0 + c) * ld + p), y, valid) };
        }
        return;
    };
    for (c, &n) in t.iter().enumerate() {
        // SAFETY: as above.
        let (m, b) = unsafe { (*mul.get_unchecked(c0 + c), *bias.get_unchecked(c0 + c)) };
        // SAFETY: NEON is baseline; the table holds CLASSES = 16 i32 (64 bytes).
        let (b, table) = unsafe { (vdupq_n_f32(b), vld1q_u8_x4(s.table(c0 + c).as_ptr().cast())) };
        let y = dots(k, n, Some(border), Some(table)).map(|d| scale(d, m, b));
        // SAFETY: as above.
        unsafe { store_lanes::<FULL>(out.add((c0 + c) * ld + p), y, valid) };
    }
}

/// `m · dot + b` in f32, two roundings (as [`LaneStore::put`]).
#[inline(always)]
fn scale(dot: int32x4_t, m: f32, b: float32x4_t) -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64.
    unsafe { vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(dot), m), b) }
}

/// Packed output (see the module docs): the tile's `NR` bits of each lane form part of one
/// output byte (`NR` = 4 blocks start at a multiple of 4 channels). A block that starts the
/// byte writes it whole (the job owns every channel of its pixels, and the bits of channels
/// past the last are 0); the block that ends it ORs into it.
///
/// Each channel compares its 8 lanes' u16 counts with its bounds looked up by the lanes'
/// classes (`tbl`, [`bound_of`]): `dot < t` ⟺ `n ≥ bound`, border lanes or not.
///
/// # Safety
/// As [`emit`]; `flip` and `bounds` hold the store's channels.
#[inline(always)]
unsafe fn store_packed<const NR: usize, const FULL: bool>(
    s: &LaneStore<'_>,
    flip: &[u32],
    bounds: &[u16],
    t: &[uint16x8_t; NR],
    valid: usize,
    c0: usize,
    p: usize,
) {
    let (out, ld) = s.out();
    let (word, bit0) = (c0 / 64, c0 % 64);
    if bit0 % 8 + NR > 8 {
        // The channels straddle two output bytes (no driver does this): one bit at a time.
        for (c, &n) in t.iter().enumerate() {
            let mut lanes = [0u16; 8];
            // SAFETY: an 8-lane stack buffer.
            unsafe { vst1q_u16(lanes.as_mut_ptr(), n) };
            for (j, &count) in lanes[..valid].iter().enumerate() {
                s.put(c0 + c, p + j, u32::from(count));
            }
        }
        return;
    }
    assert!(bounds.len() >= (c0 + NR) * CLASSES && flip.len() >= c0 + NR);
    // SAFETY: NEON is baseline on aarch64; lanes p..p + valid are the store's (the caller's
    // contract); the bounds of channels c0..c0 + NR were checked just above.
    let bits = unsafe {
        let idx = class_indices::<FULL>(s.classes().as_ptr(), valid, p);
        let mut bits = vdupq_n_u16(0);
        for (c, &n) in t.iter().enumerate() {
            let set = vcgeq_u16(n, bound_of(bounds.as_ptr(), c0 + c, idx));
            let set = veorq_u16(set, vdupq_n_u16(0u16.wrapping_sub(flip[c0 + c] as u16)));
            bits = vorrq_u16(bits, vandq_u16(set, vdupq_n_u16(1 << (bit0 % 8 + c))));
        }
        vmovn_u16(bits)
    };
    // SAFETY: byte bit0 / 8 of word `word` of pixels p..p + valid: the store's (the caller's
    // contract), this job's alone.
    unsafe {
        let (dst, stride) = (out.add((p * ld + word) * 8 + bit0 / 8), ld * 8);
        // The block that ends the byte ORs into what the block that starts it wrote.
        let bits = if bit0 % 8 == 0 {
            bits
        } else {
            vorr_u8(get_bytes::<FULL>(dst, stride, valid), bits)
        };
        put_bytes::<FULL>(dst, stride, bits, valid);
    }
}

/// The bytes at `src + j·stride` for lanes `j < valid` (`FULL`: 8), 0 past `valid`.
///
/// # Safety
/// Those bytes readable.
#[inline(always)]
unsafe fn get_bytes<const FULL: bool>(
    mut src: *const u8,
    stride: usize,
    valid: usize,
) -> uint8x8_t {
    // SAFETY: the caller's contract; NEON is baseline on aarch64.
    unsafe {
        if FULL {
            let mut old = vdup_n_u8(0);
            macro_rules! get {
                ($($j:literal)*) => {$(
                    old = vld1_lane_u8::<$j>(src, old);
                    src = src.add(stride);
                )*};
            }
            get!(0 1 2 3 4 5 6 7);
            return old;
        }
        let mut b = [0u8; 8];
        for b in &mut b[..valid] {
            *b = *src;
            src = src.add(stride);
        }
        vld1_u8(b.as_ptr())
    }
}

/// Writes byte `j` of `bytes` at `dst + j·stride` for lanes `j < valid` (`FULL`: 8).
///
/// # Safety
/// Those bytes writable.
#[inline(always)]
unsafe fn put_bytes<const FULL: bool>(
    mut dst: *mut u8,
    stride: usize,
    bytes: uint8x8_t,
    valid: usize,
) {
    // SAFETY: the caller's contract; NEON is baseline on aarch64.
    unsafe {
        if FULL {
            // One `st1` per byte, post-indexed by the stride (the intrinsic lowers to a lane
            // move, an address computation and a store each).
            std::arch::asm!(
                "st1 {{{b:v}.b}}[0], [{p}], {s}",
                "st1 {{{b:v}.b}}[1], [{p}], {s}",
                "st1 {{{b:v}.b}}[2], [{p}], {s}",
                "st1 {{{b:v}.b}}[3], [{p}], {s}",
                "st1 {{{b:v}.b}}[4], [{p}], {s}",
                "st1 {{{b:v}.b}}[5], [{p}], {s}",
                "st1 {{{b:v}.b}}[6], [{p}], {s}",
                "st1 {{{b:v}.b}}[7], [{p}], {s}",
                b = in(vreg) bytes,
                p = inout(reg) dst => _,
                s = in(reg) stride,
                options(nostack, preserves_flags),
            );
            return;
        }
        let mut b = [0u8; 8];
        vst1_u8(b.as_mut_ptr(), bytes);
        for &b in &b[..valid] {
            *dst = b;
            dst = dst.add(stride);
        }
    }
}

/// Stores lanes `0..valid` of the two 4-lane vectors `y` (lanes 0–3, 4–7) at `dst`.
///
/// # Safety
/// `dst` writable for `valid` (≤ 8; 8 when `FULL`) f32.
#[inline(always)]
unsafe fn store_lanes<const FULL: bool>(dst: *mut f32, y: [float32x4_t; 2], valid: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if FULL {
            vst1q_f32(dst, y[0]);
            vst1q_f32(dst.add(4), y[1]);
            return;
        }
        let mut lanes = [0f32; 8];
        vst1q_f32(lanes.as_mut_ptr(), y[0]);
        vst1q_f32(lanes.as_mut_ptr().add(4), y[1]);
        std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, valid.min(8));
    }
}
