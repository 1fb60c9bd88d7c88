//! The NEON lane kernel's register-tile path, for lane jobs of at most [`MAX_TAP_WORDS`] tap
//! words (taps × words: every 3×3 layer up to 7 232 input channels, every 5×5 up to 2 560).
//!
//! # Loop
//!
//! The job's tap words are flattened once per call into a table of input offsets on the stack
//! (`offsets[t·W + w] = taps[t] + w·plane`), and each block of 4 output channels has its
//! weight rows interleaved once into a stack copy (`[tap word][4 channels]`), so that one
//! `ld4r` broadcasts the four channels' words of a tap word into four registers. A tile then
//! walks two slices; per tap word it executes
//!
//! ```text
//! ldr   x, [offsets, i]          the word plane's offset
//! add   src, base, x, lsl #3
//! ldp   q0, q1, [src]             MR = 4 vectors of 2 lanes (8 pixels)
//! ldp   q2, q3, [src, #32]
//! ld4r  {y0.2d-y3.2d}, [w], #32   NR = 4 channels' weight words, each to both lanes
//! eor, cnt, uadalp                × MR·NR = 16
//! add, cmp, b.ne
//! ```
//!
//! 55 instructions per 16 XOR-popcounts of 128 bits: 3 ASIMD per 128 bits, the floor of this
//! instruction set (no instruction combines the `eor`, the `cnt` and the accumulation), and
//! about 0.4 for loads and the loop. The u16 accumulators cannot wrap: a tap word adds at
//! most 64 to a pixel's four u16 lanes together, and a job has at most [`MAX_TAP_WORDS`] of
//! them (64 · 1 023 ≤ 65 535), so the tile folds once, at its end, in u16: two `addp` of two
//! vectors each and one `addp` of those give one vector of the 8 pixels' counts per channel.
//! Tiles: 4 vectors × 4 channels over the bulk, then 2 vectors, then single vectors (the last
//! one partial); single channels (`ld1r`) after the last block of 4.
//!
//! # Output stage
//!
//! The tile's counts go straight into the op's output without bounds checks in the loop.
//! Float: `dot = k − 2n` (`ushll`/`ushll2` by 1, `sub`), `scvtf`, `fmul` by the channel's
//! multiplier, `fadd` of its bias (two roundings, as [`LaneStore::put`]), one store per 4
//! lanes. Packed: interior lanes compare their u16 counts with a per-channel bound (`cmhs`, 8
//! lanes per instruction; see [`store_packed`]), border lanes their corrected dot with the
//! threshold; `eor` with the flip mask, `and`/`orr` into each lane's byte, and one byte store
//! per lane (`st1` lanes), or a read-modify-write for the block that ends the byte. A tile
//! whose 8 lanes are all interior (one load of their class bytes) skips the border tables;
//! otherwise the class tables apply with `tbl` as in the other lane paths. MST layers'
//! stored counts go through the same stage ([`store_counts`]).

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::super::store::{LaneStore, StoreKind};
use super::super::{LaneJob, Sink};
use super::groups;

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
    let mut offsets = [0usize; MAX_TAP_WORDS];
    for (t, &tap) in job.taps.iter().enumerate() {
        for (w, o) in offsets[t * words..][..words].iter_mut().enumerate() {
            *o = tap + w * plane;
        }
    }
    let offsets = &offsets[..row];
    let channels = job.weights.len() / row;
    let (input, lanes) = (job.input.as_ptr(), job.lanes);
    let mut interleaved = MaybeUninit::<[u64; 4 * MAX_TAP_WORDS]>::uninit();
    let mut c = 0;
    while c + 4 <= channels {
        let rows = &job.weights[c * row..][..4 * row];
        let w = interleaved.as_mut_ptr().cast::<u64>();
        for i in 0..row {
            for r in 0..4 {
                // SAFETY: 4·i + r < 4·row ≤ the buffer's length.
                unsafe { w.add(4 * i + r).write(rows[r * row + i]) };
            }
        }
        // SAFETY: the first 4·row words were written just above; the tiles read lanes
        // < lanes + LANE_SLACK of every tap word (the job's check) and write channels
        // c..c + 4, lanes < lanes of the sink.
        unsafe { channel_block::<4>(input, offsets, w, lanes, sink, c) };
        c += 4;
    }
    while c < channels {
        // SAFETY: channel c's row; the rest as above.
        unsafe {
            let w = job.weights.as_ptr().add(c * row);
            channel_block::<1>(input, offsets, w, lanes, sink, c);
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

/// Every lane of channels `c0..c0 + NR`: tiles of 8 lanes, then 4, then 2 (the last partial).
///
/// # Safety
/// As [`run`], for these channels; `w` holds their weights as [`tile`] reads them.
#[inline(always)]
unsafe fn channel_block<const NR: usize>(
    input: *const u64,
    offsets: &[usize],
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
            let t = tile::<4, NR>(input.add(p), offsets, w);
            emit::<NR, true>(sink, &t, 8, c0, p);
            p += 8;
        }
        if p + 4 <= lanes {
            let t = tile::<2, NR>(input.add(p), offsets, w);
            emit::<NR, false>(sink, &t, 4, c0, p);
            p += 4;
        }
        while p < lanes {
            let t = tile::<1, NR>(input.add(p), offsets, w);
            emit::<NR, false>(sink, &t, (lanes - p).min(2), c0, p);
            p += 2;
        }
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
            StoreKind::Packed { threshold, flip } => unsafe {
                store_packed::<NR, FULL>(s, threshold, flip, t, valid, c0, p)
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
/// Interior lanes compare the counts in u16, 8 lanes per instruction: `dot < t` ⟺
/// `k − 2n < t` ⟺ `n ≥ ⌊(k − t)/2⌋ + 1`, that bound saturated to u16 (`sqxtun`: never below 0,
/// and 65 535 is beyond every count of a job of ≤ 1 023 tap words). Border lanes compare the
/// corrected dot in i32.
///
/// # Safety
/// As [`emit`]; `threshold` and `flip` hold the store's channels.
#[inline(always)]
unsafe fn store_packed<const NR: usize, const FULL: bool>(
    s: &LaneStore<'_>,
    threshold: &[i32],
    flip: &[u32],
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
    // The NR channels' thresholds and flips, in lanes 0..NR.
    let mut th = [0i32; 4];
    let mut fl = [0u32; 4];
    th[..NR].copy_from_slice(&threshold[c0..c0 + NR]);
    fl[..NR].copy_from_slice(&flip[c0..c0 + NR]);
    let border = border_of::<FULL>(s, valid, p);
    // SAFETY: NEON is baseline on aarch64; the tables hold CLASSES = 16 i32 (64 bytes).
    let bits = unsafe {
        let k = vdupq_n_s32(s.k());
        let thv = vld1q_s32(th.as_ptr());
        let flips = vneg_s16(vreinterpret_s16_u16(vmovn_u32(vld1q_u32(fl.as_ptr()))));
        let flips = vreinterpret_u16_s16(flips);
        let mut bits = vdupq_n_u16(0);
        match border {
            None => {
                let bound = vqmovun_s32(vaddq_s32(
                    vshrq_n_s32::<1>(vqsubq_s32(k, thv)),
                    vdupq_n_s32(1),
                ));
                for (c, &n) in t.iter().enumerate() {
                    let (b, f) = (lane_u16(bound, c), lane_u16(flips, c));
                    let set = veorq_u16(vcgeq_u16(n, vdupq_n_u16(b)), vdupq_n_u16(f));
                    bits = vorrq_u16(bits, vandq_u16(set, vdupq_n_u16(1 << (bit0 % 8 + c))));
                }
            }
            Some(border) => {
                for (c, &n) in t.iter().enumerate() {
                    let table = vld1q_u8_x4(s.table(c0 + c).as_ptr().cast());
                    let d = dots(k, n, Some(border), Some(table));
                    let tc = vdupq_n_s32(th[c]);
                    let below = vcombine_u16(
                        vmovn_u32(vcltq_s32(d[0], tc)),
                        vmovn_u32(vcltq_s32(d[1], tc)),
                    );
                    let set = veorq_u16(below, vdupq_n_u16(lane_u16(flips, c)));
                    bits = vorrq_u16(bits, vandq_u16(set, vdupq_n_u16(1 << (bit0 % 8 + c))));
                }
            }
        }
        vmovn_u16(bits)
    };
    let stride = ld * 8;
    // SAFETY: byte bit0 / 8 of word `word` of pixels p..p + valid: the store's (the caller's
    // contract), this job's alone.
    unsafe {
        let mut dst = out.add((p * ld + word) * 8 + bit0 / 8);
        if FULL {
            // The block that ends the byte ORs into what the block that starts it wrote.
            let bits = if bit0 % 8 == 0 {
                bits
            } else {
                let (mut old, mut src) = (vdup_n_u8(0), dst.cast_const());
                macro_rules! get {
                    ($($j:literal)*) => {$(
                        old = vld1_lane_u8::<$j>(src, old);
                        src = src.add(stride);
                    )*};
                }
                get!(0 1 2 3 4 5 6 7);
                vorr_u8(old, bits)
            };
            macro_rules! put {
                ($($j:literal)*) => {$(
                    vst1_lane_u8::<$j>(dst, bits);
                    dst = dst.add(stride);
                )*};
            }
            put!(0 1 2 3 4 5 6 7);
            return;
        }
        let mut bytes = [0u8; 8];
        vst1_u8(bytes.as_mut_ptr(), bits);
        for &b in &bytes[..valid] {
            *dst = if bit0 % 8 == 0 { b } else { *dst | b };
            dst = dst.add(stride);
        }
    }
}

/// Lane `c` (< 4) of `v`.
#[inline(always)]
fn lane_u16(v: uint16x4_t, c: usize) -> u16 {
    // SAFETY: NEON is baseline on aarch64.
    unsafe {
        match c {
            0 => vget_lane_u16::<0>(v),
            1 => vget_lane_u16::<1>(v),
            2 => vget_lane_u16::<2>(v),
            _ => vget_lane_u16::<3>(v),
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
