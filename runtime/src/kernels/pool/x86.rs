//! The x86-64 2×2 max-pooling kernel (`x86-avx2`): per 8 outputs, two 8-float loads from each
//! of the two rows, two vertical `max`, an even/odd `shuffle` of the results, one more `max`
//! and a lane-order `permute`; then 4 outputs the same way in 128-bit vectors, and the last
//! 0–3 one at a time. 256-bit vectors only: the pooling is bound by loads and stores,
//! and one kernel serves under the `x86-avx512` name too.

use std::arch::x86_64::*;

use super::generic::pool_columns;
use super::{check, PoolKernel};

/// AVX2 (named `x86-avx512` on a CPU with AVX-512F, see [`super::available`]).
#[derive(Debug)]
pub struct Avx2(&'static str);

impl Avx2 {
    /// The kernel, if the CPU has AVX2.
    pub fn detect() -> Option<&'static dyn PoolKernel> {
        static K: Avx2 = Avx2("x86-avx2");
        is_x86_feature_detected!("avx2").then_some(&K as &dyn PoolKernel)
    }

    /// The same kernel under the name `x86-avx512`, if the CPU has AVX-512F and AVX2.
    pub fn detect_avx512() -> Option<&'static dyn PoolKernel> {
        static K: Avx2 = Avx2("x86-avx512");
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avx512f"))
            .then_some(&K as &dyn PoolKernel)
    }
}

impl PoolKernel for Avx2 {
    fn name(&self) -> &'static str {
        self.0
    }

    fn max_2x2(&self, src: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (oh, ow) = check(src, h, w, out);
        // SAFETY: `Avx2` exists only where AVX2 was detected; the kernel reads columns
        // `< 2·(ow − ow % 4) ≤ w` of rows `< 2·oh ≤ h` and writes outputs of those columns.
        unsafe { pool_avx2(src.as_ptr(), w, oh, ow, out.as_mut_ptr()) };
        pool_columns(src, w, oh, ow - ow % 4, ow, out);
    }
}

#[target_feature(enable = "avx2")]
unsafe fn pool_avx2(src: *const f32, w: usize, oh: usize, ow: usize, out: *mut f32) {
    let whole = ow - ow % 8;
    for r in 0..oh {
        let (top, bottom) = (src.add(2 * r * w), src.add((2 * r + 1) * w));
        let dst = out.add(r * ow);
        let mut c = 0;
        while c < whole {
            let a = _mm256_max_ps(
                _mm256_loadu_ps(top.add(2 * c)),
                _mm256_loadu_ps(bottom.add(2 * c)),
            );
            let b = _mm256_max_ps(
                _mm256_loadu_ps(top.add(2 * c + 8)),
                _mm256_loadu_ps(bottom.add(2 * c + 8)),
            );
            // Per 128-bit lane: even columns of a, then of b; odd columns likewise.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let m = _mm256_max_ps(even, odd); // outputs 0 1 4 5 | 2 3 6 7
            let m = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(m)));
            _mm256_storeu_ps(dst.add(c), m);
            c += 8;
        }
        if c + 4 <= ow {
            let a = _mm_max_ps(
                _mm_loadu_ps(top.add(2 * c)),
                _mm_loadu_ps(bottom.add(2 * c)),
            );
            let b = _mm_max_ps(
                _mm_loadu_ps(top.add(2 * c + 4)),
                _mm_loadu_ps(bottom.add(2 * c + 4)),
            );
            let even = _mm_shuffle_ps::<0b10_00_10_00>(a, b);
            let odd = _mm_shuffle_ps::<0b11_01_11_01>(a, b);
            _mm_storeu_ps(dst.add(c), _mm_max_ps(even, odd));
        }
    }
}
