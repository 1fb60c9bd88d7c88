//! The portable 2×2 max-pooling kernel: the definition, row pair by row pair.

use super::{check, PoolKernel};

/// The portable kernel.
#[derive(Debug)]
pub struct Generic;

impl PoolKernel for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn max_2x2(&self, src: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (oh, ow) = check(src, h, w, out);
        pool_columns(src, w, oh, 0, ow, out);
    }
}

/// Output columns `first..ow` of every output row (the vector kernels' tail too).
pub(crate) fn pool_columns(
    src: &[f32],
    w: usize,
    oh: usize,
    first: usize,
    ow: usize,
    out: &mut [f32],
) {
    for r in 0..oh {
        let (top, bottom) = (&src[2 * r * w..], &src[(2 * r + 1) * w..]);
        for c in first..ow {
            let left = max(top[2 * c], bottom[2 * c]);
            let right = max(top[2 * c + 1], bottom[2 * c + 1]);
            out[r * ow + c] = max(left, right);
        }
    }
}

#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}
