//! The NEON MST children phase in register tiles, for children of at most
//! [`MAX_DIFF_WORDS`] differing words (longer ones take the parent module's loop).
//!
//! Per child, its differing words and masks are interleaved once into a stack copy
//! (`[word, mask]` pairs), so that one `ld2r` broadcasts both; a tile of 4 vectors (8 lanes)
//! then executes per differing word
//!
//! ```text
//! ldr   x, [offsets], #8          the word plane's offset
//! add   src, base, x, lsl #3
//! ldp   q0, q1, [src]             8 lanes
//! ldp   q2, q3, [src, #32]
//! ld2r  {y.2d, m.2d}, [w], #16    the child's word and its mask, each to both lanes
//! eor, and, cnt, uadalp           × 4
//! cmp, b.ne
//! ```
//!
//! 23 instructions per 4 masked XOR-popcounts of 128 bits (one `and` more than a dense
//! word: ARMv8.0 has no three-input logic op). The u16 accumulators fold once per tile as in
//! `lanes.rs` (a differing word adds at most 64 to a lane, 64 · 1 023 ≤ 65 535), and the
//! epilogue adds twice the counts to the parent's and subtracts the Hamming distance, 4
//! lanes per instruction.

use std::arch::aarch64::*;
use std::mem::MaybeUninit;

use super::super::mst::{Child, ChildJob};

/// Differing words a child may have for this path (its u16 counts hold 64 · 1 023 bits).
pub(super) const MAX_DIFF_WORDS: usize = 1023;

/// Child `i` of the job through register tiles (see the module docs).
///
/// # Safety
/// NEON must be available; the job passed [`ChildJob::check`] for `counts`; the child has at
/// most [`MAX_DIFF_WORDS`] differing words.
#[target_feature(enable = "neon")]
pub(super) unsafe fn child(job: &ChildJob<'_>, i: usize, counts: &mut [u32]) {
    let ch: &Child = &job.children[i];
    let (start, end) = (ch.start as usize, ch.end as usize);
    let n = end - start;
    assert!(
        n <= MAX_DIFF_WORDS,
        "a register-tile child has at most MAX_DIFF_WORDS differing words"
    );
    let offsets = &job.offsets[start..end];
    let (words, masks) = (&job.child_words[start..end], &job.masks[start..end]);
    let mut pairs = MaybeUninit::<[u64; 2 * MAX_DIFF_WORDS]>::uninit();
    let w = pairs.as_mut_ptr().cast::<u64>();
    for (d, (&y, &m)) in words.iter().zip(masks).enumerate() {
        // SAFETY: 2d + 1 < 2n ≤ the buffer's length.
        unsafe {
            w.add(2 * d).write(y);
            w.add(2 * d + 1).write(m);
        }
    }
    let lanes = job.lanes;
    let base = counts.as_mut_ptr();
    let input = job.input.as_ptr();
    // SAFETY: the child's and its parent's slots are rows of `counts` (checked, parent slot
    // below the child's); tiles read the differing planes at lanes < lanes + 8 (inside
    // LANE_SLACK) and write lanes < lanes of the child's row; the pairs' first 2n words are
    // written above.
    unsafe {
        let out = base.add((job.first + i) * lanes);
        let parent = base.add(ch.parent_slot as usize * lanes).cast_const();
        let bits = vdupq_n_u32(ch.bits);
        let mut p = 0;
        while p + 8 <= lanes {
            let t = tile::<4>(input.add(p), offsets, w);
            finish::<true>(t, parent.add(p), out.add(p), bits, 8);
            p += 8;
        }
        while p < lanes {
            let t = tile::<1>(input.add(p), offsets, w);
            finish::<false>(t, parent.add(p), out.add(p), bits, (lanes - p).min(2));
            p += 2;
        }
    }
}

/// Masked counts of `MR` vectors of 2 lanes: lane `j < 2·MR` of the result is lane `j`'s
/// `Σ_d popcount((x_d XOR w[2d]) AND w[2d + 1])`.
///
/// # Safety
/// `src + offsets[d] + [0, 2·MR)` readable for every `d`; `w` readable for
/// `2 · offsets.len()` words.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const MR: usize>(src: *const u64, offsets: &[usize], w: *const u64) -> uint16x8_t {
    // SAFETY: NEON is baseline on aarch64; the loads are the caller's contract.
    unsafe {
        let mut acc = [vdupq_n_u16(0); MR];
        let mut wp = w;
        for &off in offsets {
            let s = src.add(off);
            let ym = vld2q_dup_u64(wp);
            wp = wp.add(2);
            let (y, m) = (vreinterpretq_u8_u64(ym.0), vreinterpretq_u8_u64(ym.1));
            for r in 0..MR {
                let x = vld1q_u8(s.add(2 * r).cast());
                acc[r] = vpadalq_u8(acc[r], vcntq_u8(vandq_u8(veorq_u8(x, y), m)));
            }
        }
        let zero = vdupq_n_u16(0);
        let a = vpaddq_u16(acc[0], if MR > 1 { acc[1] } else { zero });
        let b = if MR > 2 {
            vpaddq_u16(acc[2], acc[3])
        } else {
            zero
        };
        vpaddq_u16(a, b)
    }
}

/// `out = parent + 2·t − bits` for `valid` lanes (all 8 when `FULL`).
///
/// # Safety
/// `parent` readable and `out` writable for `valid` u32.
#[inline(always)]
unsafe fn finish<const FULL: bool>(
    t: uint16x8_t,
    parent: *const u32,
    out: *mut u32,
    bits: uint32x4_t,
    valid: usize,
) {
    // SAFETY: NEON is baseline on aarch64; the rest is the caller's contract.
    unsafe {
        let twice = [vshll_n_u16::<1>(vget_low_u16(t)), vshll_high_n_u16::<1>(t)];
        if FULL {
            for (g, &tw) in twice.iter().enumerate() {
                let q = vld1q_u32(parent.add(4 * g));
                vst1q_u32(out.add(4 * g), vsubq_u32(vaddq_u32(q, tw), bits));
            }
            return;
        }
        let mut lanes = [0u32; 8];
        std::ptr::copy_nonoverlapping(parent, lanes.as_mut_ptr(), valid);
        for (g, &tw) in twice.iter().enumerate() {
            let q = vld1q_u32(lanes.as_ptr().add(4 * g));
            vst1q_u32(
                lanes.as_mut_ptr().add(4 * g),
                vsubq_u32(vaddq_u32(q, tw), bits),
            );
        }
        std::ptr::copy_nonoverlapping(lanes.as_ptr(), out, valid);
    }
}
