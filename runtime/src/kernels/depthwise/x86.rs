//! x86-64 depthwise kernels: `x86-avx2` (AVX2 + FMA, 8 lanes) and `x86-avx512` (AVX-512F,
//! 16 lanes). Each walks the output plane in tiles of up to 4 rows × 2 vectors (the last
//! vector of a row stored under a mask), keeping the tile's accumulators in registers across
//! all taps: per tap one broadcast weight, then one load and one FMA per accumulator.

use std::arch::x86_64::*;

use super::{DepthwiseKernel, Layout, Plane, PlaneJob};

/// AVX2 with FMA.
#[derive(Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The kernel, if the CPU has AVX2 and FMA.
    pub fn detect() -> Option<&'static dyn DepthwiseKernel> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            .then_some(&Avx2(()) as &dyn DepthwiseKernel)
    }
}

/// AVX-512F.
#[derive(Debug)]
pub struct Avx512(());

impl Avx512 {
    /// The kernel, if the CPU has AVX-512F.
    pub fn detect() -> Option<&'static dyn DepthwiseKernel> {
        is_x86_feature_detected!("avx512f").then_some(&Avx512(()) as &dyn DepthwiseKernel)
    }
}

impl DepthwiseKernel for Avx2 {
    fn name(&self) -> &'static str {
        "x86-avx2"
    }

    fn run_plane(&self, layout: &Layout<'_>, plane: Plane<'_>, out: &mut [f32]) {
        layout.check(&plane, out);
        // SAFETY: `Avx2` exists only where `detect` found AVX2 and FMA; the plane passed its
        // check, so every read (whole vectors included) is inside its input and every store
        // inside `out`.
        unsafe { run_avx2(&layout.job(plane), out.as_mut_ptr()) }
    }
}

impl DepthwiseKernel for Avx512 {
    fn name(&self) -> &'static str {
        "x86-avx512"
    }

    fn run_plane(&self, layout: &Layout<'_>, plane: Plane<'_>, out: &mut [f32]) {
        layout.check(&plane, out);
        // SAFETY: as for `Avx2`, with AVX-512F detected.
        unsafe { run_avx512(&layout.job(plane), out.as_mut_ptr()) }
    }
}

/// The body of a tiled kernel over one vector ISA (see the module docs): the output in tiles
/// of up to 4 rows × 2 vectors, so that at least four independent accumulators hide the FMA
/// latency even on planes narrower than one vector.
macro_rules! plane_kernel {
    ($job:expr, $out:expr, $l:expr, $set1:ident, $load:ident, $fma:ident, $max:ident, $min:ident,
     $mul:ident, $add:ident, $store:ident, $tail:expr) => {{
        let job: &PlaneJob<'_> = $job;
        let out: *mut f32 = $out;
        let (cols, n, step) = (job.cols, job.taps.len(), job.row_step);
        let (taps, weights) = (job.taps.as_ptr(), job.weights.as_ptr());
        let act = job.act;
        let (low, high) = ($set1(act.low), $set1(act.high));
        let (sixth, half) = ($set1(1.0 / 6.0), $set1(0.5));
        let (zero, one) = ($set1(0.0), $set1(1.0));
        let apply = |acc| {
            let x = $min($max(acc, low), high);
            if act.hardswish {
                $mul(x, $min($max($add($mul(x, sixth), half), zero), one))
            } else {
                x
            }
        };
        let input = job.input.as_ptr();
        // One tile: rows r..r+R, vectors at columns c, c+L, … (V of them).
        macro_rules! tile {
            ($r:expr, $c:expr, $rows:literal, $vecs:literal) => {{
                let (r, c) = ($r, $c);
                let mut acc = [[$set1(job.bias); $vecs]; $rows];
                for t in 0..n {
                    let w = $set1(*weights.add(t));
                    let p = input.add(r * step + *taps.add(t) + c);
                    for (i, row) in acc.iter_mut().enumerate() {
                        for (j, a) in row.iter_mut().enumerate() {
                            *a = $fma(w, $load(p.add(i * step + j * $l)), *a);
                        }
                    }
                }
                for (i, row) in acc.iter().enumerate() {
                    for (j, a) in row.iter().enumerate() {
                        let col = c + j * $l;
                        let dst = out.add((r + i) * cols + col);
                        if col + $l <= cols {
                            $store(dst, apply(*a));
                        } else {
                            $tail(dst, apply(*a), cols - col);
                        }
                    }
                }
            }};
        }
        let mut c = 0;
        while c < cols {
            let two = c + $l < cols;
            let mut r = 0;
            while r + 4 <= job.rows {
                if two {
                    tile!(r, c, 4, 2);
                } else {
                    tile!(r, c, 4, 1);
                }
                r += 4;
            }
            while r < job.rows {
                if two {
                    tile!(r, c, 1, 2);
                } else {
                    tile!(r, c, 1, 1);
                }
                r += 1;
            }
            c += if two { 2 * $l } else { $l };
        }
    }};
}

#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(job: &PlaneJob<'_>, out: *mut f32) {
    let tail = |p: *mut f32, v: __m256, valid: usize| {
        if valid == 8 {
            _mm256_storeu_ps(p, v)
        } else {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid as i32), lanes);
            _mm256_maskstore_ps(p, mask, v)
        }
    };
    plane_kernel!(
        job,
        out,
        8,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_max_ps,
        _mm256_min_ps,
        _mm256_mul_ps,
        _mm256_add_ps,
        _mm256_storeu_ps,
        tail
    )
}

#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(job: &PlaneJob<'_>, out: *mut f32) {
    let tail = |p: *mut f32, v: __m512, valid: usize| {
        let mask: __mmask16 = if valid >= 16 {
            0xffff
        } else {
            (1u16 << valid) - 1
        };
        _mm512_mask_storeu_ps(p, mask, v)
    };
    plane_kernel!(
        job,
        out,
        16,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_max_ps,
        _mm512_min_ps,
        _mm512_mul_ps,
        _mm512_add_ps,
        _mm512_storeu_ps,
        tail
    )
}
