//! The aarch64 2×2 max-pooling kernel (`neon`, any ARMv8 core): per 8 outputs, one `ld1` of
//! four registers from each of the two rows, four vertical `fmax`, two pairwise `fmaxp` and
//! one `st1` of two registers; then 4 outputs the same way from two registers per row, and the
//! last 0–3 one at a time.

use std::arch::aarch64::*;

use super::generic::pool_columns;
use super::{check, PoolKernel};

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn PoolKernel {
        &Neon(())
    }
}

impl PoolKernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn max_2x2(&self, src: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (oh, ow) = check(src, h, w, out);
        // SAFETY: NEON is baseline on aarch64; the kernel reads columns `< 2·(ow − ow % 4) ≤ w`
        // of rows `< 2·oh ≤ h` and writes outputs of those columns.
        unsafe { pool_neon(src.as_ptr(), w, oh, ow, out.as_mut_ptr()) };
        pool_columns(src, w, oh, ow - ow % 4, ow, out);
    }
}

#[target_feature(enable = "neon")]
unsafe fn pool_neon(src: *const f32, w: usize, oh: usize, ow: usize, out: *mut f32) {
    let whole = ow - ow % 8;
    for r in 0..oh {
        let (mut top, mut bottom) = (src.add(2 * r * w), src.add((2 * r + 1) * w));
        let mut dst = out.add(r * ow);
        let end = dst.add(whole);
        while dst < end {
            let (t, b) = (vld1q_f32_x4(top), vld1q_f32_x4(bottom));
            let lo = vpmaxq_f32(vmaxq_f32(t.0, b.0), vmaxq_f32(t.1, b.1));
            let hi = vpmaxq_f32(vmaxq_f32(t.2, b.2), vmaxq_f32(t.3, b.3));
            vst1q_f32_x2(dst, float32x4x2_t(lo, hi));
            top = top.add(16);
            bottom = bottom.add(16);
            dst = dst.add(8);
        }
        if ow % 8 >= 4 {
            let (t, b) = (vld1q_f32_x2(top), vld1q_f32_x2(bottom));
            vst1q_f32(dst, vpmaxq_f32(vmaxq_f32(t.0, b.0), vmaxq_f32(t.1, b.1)));
        }
    }
}
