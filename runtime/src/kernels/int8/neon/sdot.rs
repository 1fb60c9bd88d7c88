//! The `neon-dotprod` kernel (FEAT_DotProd: Cortex-A76/A78): tile 4 rows × 16 columns over
//! [`Format::DOT4_I8`]. One weight register holds a group of 4 k for the 4 rows; `sdot` by
//! element multiplies it by one column's 4 k (a 32-bit lane of an input register), so each of
//! the 16 accumulators is one column whose lanes are the 4 rows, for [`super::store`].

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

use super::super::{Format, Job, COLS, ROWS};
use super::store::{put_block, Sink, Tiles};

/// The packing this kernel reads: groups of 4 k, signed input.
pub const FORMAT: Format = Format::DOT4_I8;
/// Bytes of one packed input block per group of 4 k.
const STEP: usize = FORMAT.step();

/// `acc + w · x.s[L]` by groups of 4 bytes (`sdot` by element; inline asm because the
/// intrinsic is unstable in Rust 1.95).
#[inline(always)]
unsafe fn sdot<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only instruction of FEAT_DotProd, which the caller checked.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            l = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Runs a checked job.
///
/// # Safety
/// `job.check(FORMAT)` must hold and the core must have FEAT_DotProd.
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn run(job: &Job<'_>) {
    // SAFETY: the caller's contract.
    unsafe { super::store::run::<Sdot>(job) }
}

/// The `neon-dotprod` kernel's loops.
pub struct Sdot;

impl Tiles for Sdot {
    #[inline(always)]
    unsafe fn blocks<S: Sink>(job: &Job<'_>, rows: Range<usize>, sink: impl Fn(usize) -> S) {
        let groups = job.w.groups();
        let (w, x) = (job.w.data().as_ptr(), job.x.as_ptr() as *const i8);
        for rb in rows {
            let s = sink(rb * ROWS);
            for b in 0..job.blocks {
                let c0 = (job.first_block + b) * COLS;
                let cols = job.cols(b);
                // SAFETY (loop): the groups of row block rb and block b lie in the packed
                // buffers (job.check); columns c0.. c0 + cols in the output (the sink's
                // contract).
                unsafe {
                    let acc = tile(
                        w.add(rb * groups * ROWS * 4),
                        x.add(b * groups * STEP),
                        groups,
                    );
                    put_block(&s, c0, cols, &acc);
                }
            }
        }
    }
}

/// The sums of 4 rows × 16 columns over `groups` groups of 4 k: `acc[column]`, lanes = rows.
///
/// # Safety
/// `w` must hold `groups · 16` bytes and `x` `groups · 64`; FEAT_DotProd.
#[inline(always)]
unsafe fn tile(w: *const i8, x: *const i8, groups: usize) -> [int32x4_t; COLS] {
    let mut acc = [vdupq_n_s32(0); COLS];
    // Moving pointers: indexing by group recomputes both addresses every group.
    let (mut w, mut x) = (w, x);
    for _ in 0..groups {
        // SAFETY: the caller's bounds.
        unsafe {
            let wv = vld1q_s8(w);
            let xv: [int8x16_t; 4] = std::array::from_fn(|q| vld1q_s8(x.add(16 * q)));
            for q in 0..4 {
                acc[4 * q] = sdot::<0>(acc[4 * q], wv, xv[q]);
                acc[4 * q + 1] = sdot::<1>(acc[4 * q + 1], wv, xv[q]);
                acc[4 * q + 2] = sdot::<2>(acc[4 * q + 2], wv, xv[q]);
                acc[4 * q + 3] = sdot::<3>(acc[4 * q + 3], wv, xv[q]);
            }
            (w, x) = (w.add(ROWS * 4), x.add(STEP));
        }
    }
    acc
}
