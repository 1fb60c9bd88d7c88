//! The x86-64 float product kernel (`x86-avx2`: AVX2 + FMA, 8 lanes): tiles of 4 rows × 16
//! columns.
//!
//! Per k the tile loads 16 input columns (two registers, read in place from the k row),
//! broadcasts each of its 4 rows' weights and runs 8 FMAs: accumulator `(r, h)` holds row
//! `r`'s columns `8h … 8h+7`, so a row's sums are stored straight into its output row. An
//! 8-row weight block runs as two such halves. The last columns of a row run in an 8 × 8 tile
//! (one accumulator per row) and one column at a time (the 8 rows in one register, the
//! column's value broadcast).

use std::arch::x86_64::*;

use super::{Job, LinearKernel, ROWS};

/// AVX2 with FMA; a value exists only through [`Avx2::detect`].
#[derive(Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The kernel, if the CPU has AVX2 and FMA.
    pub fn detect() -> Option<&'static dyn LinearKernel> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            .then_some(&Avx2(()) as &dyn LinearKernel)
    }
}

impl LinearKernel for Avx2 {
    fn name(&self) -> &'static str {
        "x86-avx2"
    }

    fn run(&self, job: &Job<'_>, y: &mut [f32]) {
        // SAFETY: `Avx2` exists only where `detect` found AVX2 and FMA; for a job that passed
        // its check every tile reads inside `x` and the block's packed weights and writes only
        // existing rows and columns of `y`.
        unsafe { super::run_checked(job, y, run_job::<true>, run_job::<false>) }
    }
}

/// The job, with (`CLAMP`) or without the clamp.
///
/// # Safety
/// AVX2 and FMA; `job.check(y)` must hold for the `y` that `y` points into.
#[target_feature(enable = "avx2,fma")]
unsafe fn run_job<const CLAMP: bool>(job: &Job<'_>, y: *mut f32) {
    let (w, k) = (job.w, job.w.k());
    let (xs, ys) = (job.x_stride, job.y_stride);
    let (lo, hi) = (
        _mm256_set1_ps(job.clamp.low),
        _mm256_set1_ps(job.clamp.high),
    );
    // `max_ps` returns its second operand when the first is a NaN: `f32::max`'s result.
    let act = |v: __m256| {
        if CLAMP {
            _mm256_min_ps(_mm256_max_ps(v, lo), hi)
        } else {
            v
        }
    };
    let x = job.x.as_ptr();
    for chunk in job.chunks() {
        let mut c = 0;
        while c < job.cols {
            let width = match job.cols - c {
                16.. => 16,
                8.. => 8,
                _ => 1,
            };
            for rb in chunk.clone() {
                let (wp, bp) = (w.block(rb).as_ptr(), w.bias(rb).as_ptr());
                let rows = w.rows_in(rb);
                // SAFETY (block): the caller's contract; the bias block holds 8 values.
                unsafe {
                    let yb = y.add((rb - job.blocks.start) * ROWS * ys + c);
                    match width {
                        16 => {
                            for first in [0, 4] {
                                if first >= rows {
                                    break;
                                }
                                let acc = tile16(wp.add(first), bp.add(first), x.add(c), xs, k);
                                for (r, a) in acc.iter().enumerate().take(rows - first) {
                                    let out = yb.add((first + r) * ys);
                                    _mm256_storeu_ps(out, act(a[0]));
                                    _mm256_storeu_ps(out.add(8), act(a[1]));
                                }
                            }
                        }
                        8 => {
                            let acc = tile8(wp, bp, x.add(c), xs, k);
                            for (r, a) in acc.iter().enumerate().take(rows) {
                                _mm256_storeu_ps(yb.add(r * ys), act(*a));
                            }
                        }
                        _ => {
                            let acc = tile1(wp, bp, x.add(c), xs, k);
                            let mut v = [0f32; ROWS];
                            _mm256_storeu_ps(v.as_mut_ptr(), act(acc));
                            for (r, &v) in v.iter().enumerate().take(rows) {
                                *yb.add(r * ys) = v;
                            }
                        }
                    }
                }
            }
            c += width;
        }
    }
}

/// The sums of 4 rows (weights `w[8·k + r]`, bias `b[r]`) × 16 columns.
///
/// # Safety
/// AVX2 and FMA; `w` holds `k` groups of 8 weights (4 read), `x` 16 columns of `k` rows `xs`
/// apart.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile16(
    w: *const f32,
    b: *const f32,
    x: *const f32,
    xs: usize,
    k: usize,
) -> [[__m256; 2]; 4] {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc: [[__m256; 2]; 4] = std::array::from_fn(|r| {
            let v = _mm256_broadcast_ss(&*b.add(r));
            [v, v]
        });
        let (mut w, mut x) = (w, x);
        for _ in 0..k {
            let xv = [_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8))];
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_broadcast_ss(&*w.add(r));
                a[0] = _mm256_fmadd_ps(wv, xv[0], a[0]);
                a[1] = _mm256_fmadd_ps(wv, xv[1], a[1]);
            }
            (w, x) = (w.add(ROWS), x.add(xs));
        }
        acc
    }
}

/// The sums of 8 rows × 8 columns, one register per row.
///
/// # Safety
/// As [`tile16`], 8 rows and 8 columns.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile8(
    w: *const f32,
    b: *const f32,
    x: *const f32,
    xs: usize,
    k: usize,
) -> [__m256; ROWS] {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc: [__m256; ROWS] = std::array::from_fn(|r| _mm256_broadcast_ss(&*b.add(r)));
        let (mut w, mut x) = (w, x);
        for _ in 0..k {
            let xv = _mm256_loadu_ps(x);
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*w.add(r)), xv, *a);
            }
            (w, x) = (w.add(ROWS), x.add(xs));
        }
        acc
    }
}

/// The sums of 8 rows × 1 column, rows in lanes.
///
/// # Safety
/// As [`tile16`], 8 rows and 1 column.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile1(w: *const f32, b: *const f32, x: *const f32, xs: usize, k: usize) -> __m256 {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc = _mm256_loadu_ps(b);
        let (mut w, mut x) = (w, x);
        for _ in 0..k {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_broadcast_ss(&*x), acc);
            (w, x) = (w.add(ROWS), x.add(xs));
        }
        acc
    }
}
