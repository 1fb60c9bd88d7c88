//! The `neon` kernel (ARMv8.0: Cortex-A72, A57, A53): tile 4 rows × 4 columns over
//! [`Format::K16_I8`], products through i16 (`smull`, `smlal2`, `sadalp`; see the parent
//! module). The accumulators start from the first group's products (`saddlp`) instead of
//! being zeroed, and end as one vector per column whose lanes are the 4 rows, for
//! [`super::store`].

use std::arch::aarch64::*;

use std::ops::Range;

use super::super::{Format, Job, COLS, ROWS};
use super::store::{Sink, Tiles};

/// The packing this kernel reads: 16 k per register, signed input.
pub const FORMAT: Format = Format::K16_I8;
/// Bytes of one packed input block per group of 16 k.
const STEP: usize = FORMAT.step();
/// Bytes of one packed weight row block per group of 16 k.
const W_STEP: usize = ROWS * 16;

/// Runs a checked job.
///
/// # Safety
/// `job.check(FORMAT)` must hold.
#[target_feature(enable = "neon")]
pub unsafe fn run(job: &Job<'_>) {
    // SAFETY: the caller's contract.
    unsafe { super::store::run::<Smull>(job) }
}

/// The `neon` kernel's loops.
pub struct Smull;

impl Tiles for Smull {
    #[inline(always)]
    unsafe fn blocks<S: Sink>(job: &Job<'_>, rows: Range<usize>, sink: impl Fn(usize) -> S) {
        let groups = job.w.groups();
        let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr() as *const i8);
        for rb in rows {
            let o0 = rb * ROWS;
            let s = sink(o0);
            // SAFETY (loop): row block rb's and block b's groups lie in the packed buffers
            // (job.check); columns c < cols ≤ 16 of the block.
            unsafe {
                let wb = w.add(rb * groups * W_STEP);
                for b in 0..job.blocks {
                    let c0 = (job.first_block + b) * COLS;
                    let cols = job.cols(b);
                    let xb = x.add(b * groups * STEP);
                    let mut c = 0;
                    while c + 4 <= cols {
                        s.put(c0 + c, reduce(tile::<4>(wb, xb.add(c * 16), groups)));
                        c += 4;
                    }
                    let xq = xb.add(c * 16);
                    match cols - c {
                        1 => s.put(c0 + c, reduce(tile::<1>(wb, xq, groups))),
                        2 => s.put(c0 + c, reduce(tile::<2>(wb, xq, groups))),
                        3 => s.put(c0 + c, reduce(tile::<3>(wb, xq, groups))),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The products of row registers `w` and column registers `x` (16 k each), 8 pairs of
/// products per i16 lane pair.
#[inline(always)]
unsafe fn products(w: int8x16_t, x: int8x16_t) -> int16x8_t {
    vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x)
}

/// The sums of 4 rows × `NC` columns over `groups` groups of 16 k, each as 4 partial sums:
/// `acc[r][c]`.
///
/// # Safety
/// `w` must hold `groups · 64` bytes and `x` `(groups − 1) · 256 + NC · 16`.
// `inline(always)` (so no `target_feature`, NEON is baseline on aarch64): outlined, the
// tile returns its 16 accumulators through memory.
#[inline(always)]
unsafe fn tile<const NC: usize>(
    w: *const i8,
    x: *const i8,
    groups: usize,
) -> [[int32x4_t; NC]; ROWS] {
    // SAFETY: the caller's bounds.
    let load = |w: *const i8, x: *const i8| unsafe {
        let wr: [int8x16_t; ROWS] = std::array::from_fn(|r| vld1q_s8(w.add(16 * r)));
        let xr: [int8x16_t; NC] = std::array::from_fn(|c| vld1q_s8(x.add(16 * c)));
        (wr, xr)
    };
    if groups == 0 {
        return [[vdupq_n_s32(0); NC]; ROWS];
    }
    let (wr, xr) = load(w, x);
    let mut acc: [[int32x4_t; NC]; ROWS] =
        std::array::from_fn(|r| std::array::from_fn(|c| vpaddlq_s16(products(wr[r], xr[c]))));
    for g in 1..groups {
        // SAFETY: group g < groups.
        let (wr, xr) = load(unsafe { w.add(g * W_STEP) }, unsafe { x.add(g * STEP) });
        for r in 0..ROWS {
            for c in 0..NC {
                acc[r][c] = vpadalq_s16(acc[r][c], products(wr[r], xr[c]));
            }
        }
    }
    acc
}

/// Adds each accumulator's 4 partial sums (`addp`) into one vector per column, lanes = the
/// tile's 4 rows.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn reduce<const NC: usize>(acc: [[int32x4_t; NC]; ROWS]) -> [int32x4_t; NC] {
    std::array::from_fn(|j| {
        vpaddq_s32(
            vpaddq_s32(acc[0][j], acc[1][j]),
            vpaddq_s32(acc[2][j], acc[3][j]),
        )
    })
}
