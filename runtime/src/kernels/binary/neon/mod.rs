//! aarch64 NEON XOR-popcount kernel (`neon`).
//!
//! # Design
//!
//! The output is tiled into register blocks of `MR` input rows (pixels) × `NR` weight rows
//! (output channels): 4×4 over the bulk, then 4×1 for the last channels, and single leftover
//! input rows (M = 1 for dense layers) as 1×8, 1×4 and 1×1 tiles. A tile walks its rows 128
//! bits (two words) at a time; per 128-bit step and output it executes
//!
//! ```text
//! eor   v.16b  = x ^ y          (veorq_u8)
//! cnt   v.16b  = popcount/byte   (vcntq_u8, each byte 0..=8)
//! uadalp acc.8h += pairwise(v)   (vpadalq_u8, u16 lanes, +≤16 per step)
//! ```
//!
//! plus the loads of the tile's rows, shared by the tile: 4 + 4 `ldr q` per 16 outputs in the
//! 4×4 tile (0.5 per 128 bits and output). The u16 lanes would overflow after 4095 steps, so
//! the row is walked in blocks of at most 2048 steps (4096 words); each block is reduced
//! (`uaddlp` to u32, then `addp` twice to one u32 per output, four outputs of a row per
//! vector) and stored, later blocks added to what is stored. An odd word count ends with a
//! 64-bit step (`eor`/`cnt` on `.8b`, then the same `uadalp`).
//!
//! # Cost
//!
//! The row form's 4×4 tile loop body is 8 `ldr q` + 16 × (`eor`, `cnt`, `uadalp`) + 4 scalar loop
//! instructions: 3 ASIMD instructions per 128 bits, the minimum for this instruction set (no
//! `udot` on ARMv8.0). Short rows (8–9 words, 4–5 steps) add the per-tile reduction (`movi`
//! to zero, `uaddlp`, `addp`, `str`: ≈ 0.7 ASIMD per step); single rows (M = 1) load every
//! weight once (memory-bound in practice). An odd word count's 64-bit step costs a full one.
//!
//! What it implies on a Cortex-A72 (Raspberry Pi 4, 1.5 GHz): `cnt` issues once per cycle,
//! so a step costs at least 1 cycle (128 bit-MACs/cycle, 192 G bit-MAC/s per core); `eor`,
//! `cnt` and `uadalp` all go to the two ASIMD pipes (`uadalp` to F1 only), so 3 ASIMD
//! instructions per step need 1.5 cycles if they cannot overlap better: 85–128 bit-MACs per
//! cycle, 128–192 G bit-MAC/s per core. Loads and loop overhead issue on the load and integer
//! pipes in parallel and are not the bound. The executed instructions per shape are in
//! `benches/README.md` (*Binary kernels on ARM*).
//!
//! # Lane form (binary conv2d, `xor_popcount_lanes`)
//!
//! A q register holds two lanes (two output pixels' words). Jobs of at most 1 023 tap words
//! (every binary conv layer Kestrel meets) run through the register tiles of `lanes.rs`: 4
//! vectors (8 lanes) × 4 channels in assembly (`tile44.rs`), the tap words' input offsets
//! flattened on the stack, the 4 channels' weights interleaved so that one `ld4r` broadcasts
//! them, 51 instructions per 16 XOR-popcounts of 128 bits, one u16 fold per tile, and the output stage in the tile's
//! epilogue (float or packed, four or eight lanes per instruction). Longer jobs take
//! `lane_tile`: the same 4 × 4 tile over index arithmetic, its u16 accumulators folded to
//! u32 per block of whole taps (≤ 2048 steps).
//!
//! # Fused output stage (`xor_popcount_lanes_store`)
//!
//! The register tiles' epilogue is in `lanes.rs`, and [`BinaryKernel::store_counts`] (MST
//! layers) goes through it too, counts narrowed to u16 per block of 4 channels × 8 lanes. The
//! blocked tiles, and blocks whose counts exceed u16, use `neon_store`, `neon_store_packed`:
//! float, the affine stage on the tile's vectors; packed, `cmlt`/`eor`/`ushl`/`orr` build
//! each lane's 4 channel bits in a vector and one read-modify-write per lane stores them.
//!
//! # MST children (`mst_children_lanes`)
//!
//! A child's counts are its parent's plus, per differing (tap, word), the change that word
//! makes. Children of at most 1 023 differing words run through `children.rs`'s register
//! tiles: per differing word 1.7× the instructions of a dense word of the register tiles
//! (the extra `and`, input loads not shared with other channels) and 0.8–1.3 dense words of
//! fixed cost (parent load, fold, store): counts in `benches/README.md`, the converter's lane
//! cost model.
//!
//! Selected at run time with `std::arch::is_aarch64_feature_detected!("neon")` (NEON is
//! baseline on aarch64, so this always holds on Linux).

use std::arch::aarch64::*;

mod children;
mod lanes;
mod tile44;

use super::mst::{Child, ChildJob};
use super::store::{LaneStore, StoreKind, CLASSES};
use super::{BinaryKernel, Checked, LaneJob, RawKernel, Rows, Sink};

/// NEON kernel: `eor` + `cnt` + `uadalp`, 4×4 register blocking. Exists only once NEON is
/// detected.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel, if this CPU has NEON.
    pub fn detect() -> Option<&'static dyn BinaryKernel> {
        static KERNEL: Checked<Neon> = Checked(Neon(()));
        std::arch::is_aarch64_feature_detected!("neon").then_some(&KERNEL as &dyn BinaryKernel)
    }
}

// SAFETY (every `unsafe` block of the impl below): a `Neon` exists only after `detect()`
// found NEON; the jobs' shapes are the callers' `# Safety` contracts (checked by `Checked`),
// which is all the drivers read and write.
impl RawKernel for Neon {
    const NAME: &'static str = "neon";

    unsafe fn xor_popcount(&self, r: Rows<'_>, out: &mut [u32]) {
        // SAFETY: see above the impl.
        unsafe { neon_driver(r, out.as_mut_ptr()) }
    }

    unsafe fn lanes(&self, job: &LaneJob<'_>, sink: Sink<'_>) {
        // SAFETY: see above the impl.
        unsafe { neon_lanes(job, sink) }
    }

    unsafe fn store_counts(&self, counts: &[u32], slots: Option<&[u32]>, store: &LaneStore<'_>) {
        // SAFETY: see above the impl.
        unsafe { lanes::store_counts(counts, slots, store) }
    }

    unsafe fn children(&self, job: &ChildJob<'_>, counts: &mut [u32]) {
        // SAFETY: see above the impl.
        unsafe { neon_children(job, counts) }
    }
}

/// NEON MST children: children of at most `children::MAX_DIFF_WORDS` differing words through
/// `children.rs`'s register tiles; longer ones here: per child, tiles of 4 q vectors (8
/// lanes), then single vectors (2 lanes, the last one partial). Per differing word: 4 `ldr q`, 2 `ld1r` (child word, mask)
/// and 4 × (`eor`, `and`, `cnt`, `uadalp`) — one ASIMD instruction more per 128 bits than the
/// dense lane kernel (no three-input logic op before ARMv8.2's SHA3 `bcax`). The u16 lanes are
/// folded every [`STEPS_PER_BLOCK`] differing words; the tile's counts are doubled, added to
/// the parent's minus the Hamming distance, and stored.
///
/// # Safety
/// NEON must be available; the job must have passed [`ChildJob::check`] for `counts`.
#[target_feature(enable = "neon")]
unsafe fn neon_children(job: &ChildJob<'_>, counts: &mut [u32]) {
    let lanes = job.lanes;
    for (i, ch) in job.children.iter().enumerate() {
        if (ch.end - ch.start) as usize <= children::MAX_DIFF_WORDS {
            // SAFETY: the caller's contract; the child is short enough.
            unsafe { children::child(job, i, counts) };
            continue;
        }
        let base = counts.as_mut_ptr();
        // SAFETY: the child's and its parent's slots are rows of `counts` (checked); tiles read
        // the child's differing planes at lanes < lanes + 8 (inside LANE_SLACK) and write
        // lanes < lanes of the child's row only.
        unsafe {
            let out = base.add((job.first + i) * lanes);
            let parent = base.add(ch.parent_slot as usize * lanes).cast_const();
            let mut p = 0;
            while p + 8 <= lanes {
                child_tile::<4>(job, ch, p, parent.add(p), out.add(p), 8);
                p += 8;
            }
            while p < lanes {
                child_tile::<1>(job, ch, p, parent.add(p), out.add(p), (lanes - p).min(2));
                p += 2;
            }
        }
    }
}

/// One NEON child tile: `MR` vectors of 2 lanes from lane `p` (see [`neon_children`]).
///
/// # Safety
/// NEON must be available; `job` checked; `parent` readable and `out` writable for
/// `min(valid, 2·MR)` lanes; `input + offsets[d] + p + [0, 2·MR)` readable.
#[target_feature(enable = "neon")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn child_tile<const MR: usize>(
    job: &ChildJob<'_>,
    ch: &Child,
    p: usize,
    parent: *const u32,
    out: *mut u32,
    valid: usize,
) {
    let input = job.input.as_ptr();
    let groups = MR.div_ceil(2);
    let mut totals = [vdupq_n_u32(0); 2];
    let mut d0 = ch.start as usize;
    let end = ch.end as usize;
    loop {
        let d1 = end.min(d0 + STEPS_PER_BLOCK);
        let mut acc = [vdupq_n_u16(0); MR];
        for d in d0..d1 {
            // SAFETY: d < end <= the diff arrays' length (checked); the loads are inside the
            // input by the caller's contract.
            unsafe {
                let src = input.add(*job.offsets.get_unchecked(d) + p);
                let y = vreinterpretq_u8_u64(vld1q_dup_u64(job.child_words.as_ptr().add(d)));
                let m = vreinterpretq_u8_u64(vld1q_dup_u64(job.masks.as_ptr().add(d)));
                for r in 0..MR {
                    let x = vld1q_u8(src.add(2 * r).cast());
                    acc[r] = vpadalq_u8(acc[r], vcntq_u8(vandq_u8(veorq_u8(x, y), m)));
                }
            }
        }
        for g in 0..groups {
            let lo = vpaddlq_u16(acc[2 * g]);
            let hi = if 2 * g + 1 < MR {
                vpaddlq_u16(acc[2 * g + 1])
            } else {
                vdupq_n_u32(0)
            };
            totals[g] = vaddq_u32(totals[g], vpaddq_u32(lo, hi));
        }
        if d1 == end {
            break;
        }
        d0 = d1;
    }
    let bits = vdupq_n_u32(ch.bits);
    for g in 0..groups {
        let n = valid.saturating_sub(4 * g).min(4);
        if n == 0 {
            break;
        }
        let twice = vshlq_n_u32::<1>(totals[g]);
        // SAFETY: lanes 4g..4g+n of the parent and the child exist (caller's contract).
        unsafe {
            if n == 4 {
                let q = vld1q_u32(parent.add(4 * g));
                vst1q_u32(out.add(4 * g), vsubq_u32(vaddq_u32(q, twice), bits));
            } else {
                let mut lanes = [0u32; 4];
                std::ptr::copy_nonoverlapping(parent.add(4 * g), lanes.as_mut_ptr(), n);
                let v = vsubq_u32(vaddq_u32(vld1q_u32(lanes.as_ptr()), twice), bits);
                vst1q_u32(lanes.as_mut_ptr(), v);
                std::ptr::copy_nonoverlapping(lanes.as_ptr(), out.add(4 * g), n);
            }
        }
    }
}

/// NEON lane kernel over the whole job: jobs of at most `lanes::MAX_TAP_WORDS` tap words
/// through `lanes::run`'s register tiles, longer ones through `lane_tile`'s blocks: 4
/// vectors of 2 lanes × 4 channels, then tails.
///
/// # Safety
/// NEON must be available; the job must have passed [`LaneJob::check`] for the counts of
/// `sink` or [`LaneJob::check_store`] for its store (the input's `LANE_SLACK` covers the last
/// partial vector's load).
#[target_feature(enable = "neon")]
unsafe fn neon_lanes(job: &LaneJob<'_>, sink: Sink<'_>) {
    if job.taps.len() * job.words <= lanes::MAX_TAP_WORDS {
        // SAFETY: the caller's contract, and the job is short enough.
        return unsafe { lanes::run(job, sink) };
    }
    // SAFETY: tiles read lanes p..p+2·MR of every tap word (inside the input and its slack by
    // the job's check) and weights of channels c..c+NR; they write channels c..c+NR, lanes
    // that exist from p, of the sink.
    unsafe { drive_lanes!(lane_tile, 2, 4, 4, job, sink) }
}

/// One lane tile: `MR` vectors of 2 lanes (a lane is one u64 word of one pixel) × `NR`
/// channels. Per tap word: `MR` `ldr q`, `NR` `ld1r` (weight word broadcast to both lanes),
/// `MR·NR` × (`eor`, `cnt`, `uadalp`). The u16 accumulators (4 per lane) are folded every
/// [`STEPS_PER_BLOCK`] steps and at the end: `uaddlp` to u32, `addp` of two vectors gives the
/// four consecutive lanes' counts of one channel.
///
/// # Safety
/// NEON must be available; `input + taps[t] + w·plane + [0, 2·MR)` readable, `weights` for
/// `NR` channel rows of `row` words, channels `c0..c0 + NR`, lanes `p..p + valid` of `sink`
/// writable.
#[target_feature(enable = "neon")]
#[inline]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
unsafe fn lane_tile<const MR: usize, const NR: usize>(
    input: *const u64,
    taps: &[usize],
    words: usize,
    plane: usize,
    weights: *const u64,
    row: usize,
    valid: usize,
    sink: Sink<'_>,
    c0: usize,
    p: usize,
) {
    // totals[c][g]: lanes 4g..4g+4 of channel c.
    let mut totals = [[vdupq_n_u32(0); 2]; NR];
    // Blocks of whole taps (or of words, for taps longer than a block) hold at most
    // STEPS_PER_BLOCK steps, so the u16 accumulators cannot wrap.
    let taps_per_block = (STEPS_PER_BLOCK / words).max(1);
    let mut t0 = 0;
    while t0 < taps.len() {
        let t1 = taps.len().min(t0 + taps_per_block);
        let mut w0 = 0;
        while w0 < words {
            let w1 = words.min(w0 + STEPS_PER_BLOCK);
            let mut acc = [[vdupq_n_u16(0); NR]; MR];
            for t in t0..t1 {
                // SAFETY (loads below): the caller's contract.
                let (src_tap, w_tap) = unsafe { (input.add(taps[t]), weights.add(t * words)) };
                for w in w0..w1 {
                    let src = unsafe { src_tap.add(w * plane) };
                    let mut x = [vdupq_n_u8(0); MR];
                    for r in 0..MR {
                        x[r] = unsafe { vld1q_u8(src.add(2 * r).cast()) };
                    }
                    for c in 0..NR {
                        let y =
                            vreinterpretq_u8_u64(unsafe { vld1q_dup_u64(w_tap.add(c * row + w)) });
                        for r in 0..MR {
                            acc[r][c] = vpadalq_u8(acc[r][c], vcntq_u8(veorq_u8(x[r], y)));
                        }
                    }
                }
            }
            for c in 0..NR {
                for g in 0..MR.div_ceil(2) {
                    let lo = vpaddlq_u16(acc[2 * g][c]);
                    let hi = if 2 * g + 1 < MR {
                        vpaddlq_u16(acc[2 * g + 1][c])
                    } else {
                        vdupq_n_u32(0)
                    };
                    totals[c][g] = vaddq_u32(totals[c][g], vpaddq_u32(lo, hi));
                }
            }
            w0 = w1;
        }
        t0 = t1;
    }
    match sink {
        Sink::Counts { out, ld } => {
            for c in 0..NR {
                for g in 0..MR.div_ceil(2) {
                    let n = valid.saturating_sub(4 * g).min(4);
                    // SAFETY: lanes p + 4g..p + 4g + n < p + valid of channel c0 + c are
                    // writable (caller's contract).
                    unsafe {
                        let dst = out.add((c0 + c) * ld + p + 4 * g);
                        if n == 4 {
                            vst1q_u32(dst, totals[c][g]);
                        } else if n > 0 {
                            let mut lanes = [0u32; 4];
                            vst1q_u32(lanes.as_mut_ptr(), totals[c][g]);
                            std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, n);
                        }
                    }
                }
            }
        }
        // SAFETY: the caller's contract.
        Sink::Store(s) => unsafe { neon_store::<NR, 2>(s, &totals, valid, c0, p) },
    }
}

/// The fused output stage of a lane tile (see [`super::store`]), `G` groups of 4 lanes ×
/// `NR` channels: `dot = k − 2·n`, minus the channel's class table looked up with `tbl`
/// (four q registers, byte indices `4·class + 0..4`) for groups with border lanes; float:
/// `scvtf`, `fmul`, `fadd` (two roundings, no `fmla`) and a store into the channel's output
/// row; packed: `cmlt` against the channel's threshold, `eor` with its flip bit, shifted to
/// the channel's bit and ORed across the `NR` channels, so each lane ORs one group of `NR`
/// bits into its pixel's word (one scalar read-modify-write per lane instead of `NR`).
///
/// # Safety
/// NEON must be available; channels `c0..c0 + NR`, lanes `p..p + valid` of `s` writable.
#[target_feature(enable = "neon")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn neon_store<const NR: usize, const G: usize>(
    s: &LaneStore<'_>,
    totals: &[[uint32x4_t; G]; NR],
    valid: usize,
    c0: usize,
    p: usize,
) {
    let StoreKind::Float { mul, bias } = s.kind() else {
        // SAFETY: the caller's contract.
        return unsafe { neon_store_packed::<NR, G>(s, totals, valid, c0, p) };
    };
    let (n, idx, border) = groups::<G>(s, valid, p);
    let any_border = border.iter().any(|&b| b);
    let (out, ld) = s.out();
    let k = vdupq_n_s32(s.k());
    for c in 0..NR {
        // SAFETY: the table holds CLASSES = 16 i32 (64 bytes).
        let table = any_border.then(|| unsafe { vld1q_u8_x4(s.table(c0 + c).as_ptr().cast()) });
        for g in 0..G {
            if n[g] == 0 {
                break;
            }
            let dot = dot_of(k, totals[c][g], border[g], table, idx[g]);
            let scaled = vmulq_n_f32(vcvtq_f32_s32(dot), mul[c0 + c]);
            let y = vaddq_f32(scaled, vdupq_n_f32(bias[c0 + c]));
            // SAFETY: lanes p + 4g..p + 4g + n of channel c0 + c (caller's contract).
            unsafe {
                let dst = out.cast::<f32>().add((c0 + c) * ld + p + 4 * g);
                if n[g] == 4 {
                    vst1q_f32(dst, y);
                } else {
                    let mut lanes = [0f32; 4];
                    vst1q_f32(lanes.as_mut_ptr(), y);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, n[g]);
                }
            }
        }
    }
}

/// [`neon_store`] for packed output, out of line so the float path stays as small as it was.
///
/// # Safety
/// As [`neon_store`].
#[target_feature(enable = "neon")]
#[inline(never)]
#[allow(clippy::needless_range_loop)]
unsafe fn neon_store_packed<const NR: usize, const G: usize>(
    s: &LaneStore<'_>,
    totals: &[[uint32x4_t; G]; NR],
    valid: usize,
    c0: usize,
    p: usize,
) {
    let StoreKind::Packed {
        threshold, flip, ..
    } = s.kind()
    else {
        return; // float output: neon_store
    };
    let (n, idx, border) = groups::<G>(s, valid, p);
    if c0 % 64 + NR > 64 {
        // The channels straddle two output words (no driver does this): one bit at a time.
        for c in 0..NR {
            for g in 0..G {
                let mut lanes = [0u32; 4];
                // SAFETY: a 4-lane stack buffer.
                unsafe { vst1q_u32(lanes.as_mut_ptr(), totals[c][g]) };
                for (j, &v) in lanes[..n[g]].iter().enumerate() {
                    s.put(c0 + c, p + 4 * g + j, v);
                }
            }
        }
        return;
    }
    let any_border = border.iter().any(|&b| b);
    let (out, ld) = s.out();
    let k = vdupq_n_s32(s.k());
    // The NR channels' bits of a lane share one output word: bit c of `bits[g]` is channel
    // c0 + c of the group's lanes.
    let mut bits = [vdupq_n_u32(0); G];
    for c in 0..NR {
        // SAFETY: the table holds CLASSES = 16 i32 (64 bytes).
        let table = any_border.then(|| unsafe { vld1q_u8_x4(s.table(c0 + c).as_ptr().cast()) });
        let t = vdupq_n_s32(threshold[c0 + c]);
        let f = vdupq_n_u32(flip[c0 + c]);
        let shift = vdupq_n_s32(c as i32);
        for g in 0..G {
            if n[g] == 0 {
                break;
            }
            let below = vcltq_s32(dot_of(k, totals[c][g], border[g], table, idx[g]), t);
            let bit = veorq_u32(vshrq_n_u32::<31>(below), f);
            bits[g] = vorrq_u32(bits[g], vshlq_u32(bit, shift));
        }
    }
    for g in 0..G {
        let mut lanes = [0u32; 4];
        // SAFETY: a 4-lane stack buffer.
        unsafe { vst1q_u32(lanes.as_mut_ptr(), bits[g]) };
        for (j, &b) in lanes[..n[g]].iter().enumerate() {
            // SAFETY: word c0 / 64 of pixel p + 4g + j, a lane of the store (caller's
            // contract); only the bits of channels c0..c0 + NR change.
            unsafe {
                *out.cast::<u64>().add((p + 4 * g + j) * ld + c0 / 64) |= u64::from(b) << (c0 % 64);
            }
        }
    }
}

/// Per group of 4 lanes from `p`: how many lanes exist (`n`), the `tbl` byte indices of their
/// border classes (`4·class + 0..4`) and whether any lane is a border lane.
#[target_feature(enable = "neon")]
#[inline]
#[allow(clippy::needless_range_loop)]
fn groups<const G: usize>(
    s: &LaneStore<'_>,
    valid: usize,
    p: usize,
) -> ([usize; G], [uint8x16_t; G], [bool; G]) {
    const _: () = assert!(CLASSES == 16, "a table is four q registers of i32");
    let classes = s.classes();
    let mut n = [0usize; G];
    let mut idx = [vdupq_n_u8(0); G];
    let mut border = [false; G];
    for g in 0..G {
        n[g] = valid.saturating_sub(4 * g).min(4);
        let mut bytes = [0u8; 4];
        if n[g] > 0 {
            bytes[..n[g]].copy_from_slice(&classes[p + 4 * g..][..n[g]]);
        }
        let word = u32::from_le_bytes(bytes);
        border[g] = word != 0;
        let cls = vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(u64::from(word)))));
        let bytes = vmlaq_n_u32(vdupq_n_u32(0x0302_0100), cls, 0x0404_0404);
        idx[g] = vreinterpretq_u8_u32(bytes);
    }
    (n, idx, border)
}

/// `dot = k − 2·n`, minus the class table looked up with `tbl` when the group has border
/// lanes (see [`neon_store`]).
#[target_feature(enable = "neon")]
#[inline]
fn dot_of(
    k: int32x4_t,
    total: uint32x4_t,
    border: bool,
    table: Option<uint8x16x4_t>,
    idx: uint8x16_t,
) -> int32x4_t {
    let dot = vsubq_s32(k, vreinterpretq_s32_u32(vshlq_n_u32::<1>(total)));
    match (border, table) {
        (true, Some(table)) => vsubq_s32(dot, vreinterpretq_s32_u8(vqtbl4q_u8(table, idx))),
        _ => dot,
    }
}

/// 128-bit steps summed in u16 lanes before they are widened: 2048 · 16 + 16 (the 64-bit
/// tail) ≤ 65535.
const STEPS_PER_BLOCK: usize = 2048;

/// NEON kernel over the whole output.
///
/// # Safety
/// NEON must be available; `rows` as `check_dims` returns them, `out` valid for m·n elements.
#[target_feature(enable = "neon")]
unsafe fn neon_driver(rows: Rows<'_>, out: *mut u32) {
    let (a, b, words) = (rows.a.as_ptr(), rows.b.as_ptr(), rows.words);
    let (m, n) = (rows.m, rows.n);
    // SAFETY (all tile calls below): a tile reads rows i..i+MR of a (i + MR <= m) and
    // j..j+NR of b (j + NR <= n), and writes out[(i+r)·n + j + c] for r < MR, c < NR.
    let mut i = 0;
    while i + 4 <= m {
        let (a_tile, o_tile) = unsafe { (a.add(i * words), out.add(i * n)) };
        let mut j = 0;
        while j + 4 <= n {
            unsafe { tile::<4, 4>(a_tile, b.add(j * words), words, o_tile.add(j), n) };
            j += 4;
        }
        while j < n {
            unsafe { tile::<4, 1>(a_tile, b.add(j * words), words, o_tile.add(j), n) };
            j += 1;
        }
        i += 4;
    }
    while i < m {
        let (a_tile, o_tile) = unsafe { (a.add(i * words), out.add(i * n)) };
        let mut j = 0;
        while j + 8 <= n {
            unsafe { tile::<1, 8>(a_tile, b.add(j * words), words, o_tile.add(j), n) };
            j += 8;
        }
        while j + 4 <= n {
            unsafe { tile::<1, 4>(a_tile, b.add(j * words), words, o_tile.add(j), n) };
            j += 4;
        }
        while j < n {
            unsafe { tile::<1, 1>(a_tile, b.add(j * words), words, o_tile.add(j), n) };
            j += 1;
        }
        i += 1;
    }
}

/// One `MR`×`NR` tile: `out[r·ldo + c] = Σ_l popcount(a[r·words + l] ^ b[c·words + l])`.
/// `NR` is 1 or a multiple of 4.
///
/// # Safety
/// NEON must be available; `a` valid for MR·words, `b` for NR·words reads, and
/// `out[r·ldo + c]` writable for r < MR, c < NR.
#[target_feature(enable = "neon")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const MR: usize, const NR: usize>(
    a: *const u64,
    b: *const u64,
    words: usize,
    out: *mut u32,
    ldo: usize,
) {
    let steps = words / 2;
    let odd = words % 2 == 1;
    let mut k = 0;
    let mut first = true;
    loop {
        let end = steps.min(k + STEPS_PER_BLOCK);
        let mut acc = [[vdupq_n_u16(0); NR]; MR];
        for kk in k..end {
            let mut x = [vdupq_n_u8(0); MR];
            for r in 0..MR {
                // SAFETY: kk < steps: words 2kk, 2kk+1 lie inside row r of a.
                x[r] = unsafe { vld1q_u8(a.add(r * words + 2 * kk).cast()) };
            }
            for c in 0..NR {
                // SAFETY: as above, inside row c of b.
                let y = unsafe { vld1q_u8(b.add(c * words + 2 * kk).cast()) };
                for r in 0..MR {
                    acc[r][c] = vpadalq_u8(acc[r][c], vcntq_u8(veorq_u8(x[r], y)));
                }
            }
        }
        let last = end == steps;
        if last && odd {
            // The 64-bit tail: the row's last word.
            let mut x = [vdup_n_u8(0); MR];
            for r in 0..MR {
                // SAFETY: word `words - 1` is inside row r of a.
                x[r] = unsafe { vld1_u8(a.add(r * words + words - 1).cast()) };
            }
            for c in 0..NR {
                // SAFETY: as above, inside row c of b.
                let y = unsafe { vld1_u8(b.add(c * words + words - 1).cast()) };
                for r in 0..MR {
                    let cnt = vcnt_u8(veor_u8(x[r], y));
                    acc[r][c] = vpadalq_u8(acc[r][c], vcombine_u8(cnt, vdup_n_u8(0)));
                }
            }
        }
        for r in 0..MR {
            if NR == 1 {
                let s = vaddvq_u32(vpaddlq_u16(acc[r][0]));
                // SAFETY: r < MR, c = 0: writable by the caller's contract.
                unsafe {
                    let o = out.add(r * ldo);
                    *o = if first { s } else { *o + s };
                }
            } else {
                for g in (0..NR).step_by(4) {
                    let p01 = vpaddq_u32(vpaddlq_u16(acc[r][g]), vpaddlq_u16(acc[r][g + 1]));
                    let p23 = vpaddq_u32(vpaddlq_u16(acc[r][g + 2]), vpaddlq_u16(acc[r][g + 3]));
                    let mut s = vpaddq_u32(p01, p23); // [sum g, g+1, g+2, g+3]
                                                      // SAFETY: r < MR, g + 3 < NR: out[r·ldo + g .. + 4] is writable.
                    unsafe {
                        let o = out.add(r * ldo + g);
                        if !first {
                            s = vaddq_u32(s, vld1q_u32(o));
                        }
                        vst1q_u32(o, s);
                    }
                }
            }
        }
        if last {
            break;
        }
        first = false;
        k = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_on_aarch64_linux() {
        assert!(Neon::detect().is_some());
    }
}
