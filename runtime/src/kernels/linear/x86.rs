//! The x86-64 float product kernels: `x86-avx2` (AVX2 + FMA, 8 lanes), tiles of 4 rows × 16
//! columns, and `x86-avx512` (AVX-512F, 16 lanes), tiles of 8 rows × 32 columns.
//!
//! Per k the tile loads 16 input columns (two registers, read in place from the k row),
//! broadcasts each of its 4 rows' weights and runs 8 FMAs: accumulator `(r, h)` holds row
//! `r`'s columns `8h … 8h+7`, so a row's sums are stored straight into its output row. An
//! 8-row weight block runs as two such halves. The last columns of a row run in an 8 × 8 tile
//! (one accumulator per row) and one column at a time (the 8 rows in one register, the
//! column's value broadcast).
//!
//! `x86-avx512` runs a whole 8-row weight block at once: per k two 16-column loads, eight
//! broadcasts and 16 FMAs into 16 of the 32 registers (four times the AVX2 tile's work per k
//! for 26 instructions against its 14). The last columns of a row run in an 8 × 16 tile, its
//! loads and stores masked to the columns left, or, for 4 or fewer, one column at a time (the
//! AVX2 kernel's single-column tile: 3 instructions per k where a masked tile costs 17).
//!
//! Every kernel adds the k products to the bias in k order, one rounding per FMA: the bits of
//! the portable kernel.

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

/// AVX-512F; a value exists only through [`Avx512::detect`].
#[derive(Debug)]
pub struct Avx512(());

impl Avx512 {
    /// The kernel, if the CPU has AVX-512F.
    pub fn detect() -> Option<&'static dyn LinearKernel> {
        is_x86_feature_detected!("avx512f").then_some(&Avx512(()) as &dyn LinearKernel)
    }
}

impl LinearKernel for Avx512 {
    fn name(&self) -> &'static str {
        "x86-avx512"
    }

    fn run(&self, job: &Job<'_>, y: &mut [f32]) {
        // SAFETY: `Avx512` exists only where `detect` found AVX-512F; for a job that passed
        // its check every tile reads inside `x` (masked past the row's columns) and the
        // block's packed weights, and writes only existing rows and columns of `y`.
        unsafe { super::run_checked(job, y, run_job512::<true>, run_job512::<false>) }
    }
}

/// The job on AVX-512F, with (`CLAMP`) or without the clamp.
///
/// # Safety
/// AVX-512F; `job.check(y)` must hold for the `y` that `y` points into.
#[target_feature(enable = "avx512f")]
unsafe fn run_job512<const CLAMP: bool>(job: &Job<'_>, y: *mut f32) {
    let (w, k) = (job.w, job.w.k());
    let (xs, ys) = (job.x_stride, job.y_stride);
    let (lo, hi) = (
        _mm512_set1_ps(job.clamp.low),
        _mm512_set1_ps(job.clamp.high),
    );
    // `max_ps` returns its second operand when the first is a NaN: `f32::max`'s result.
    let act = |v: __m512| {
        if CLAMP {
            _mm512_min_ps(_mm512_max_ps(v, lo), hi)
        } else {
            v
        }
    };
    let x = job.x.as_ptr();
    for chunk in job.chunks() {
        let mut c = 0;
        while c < job.cols {
            // 32 columns, 16, the columns left under a mask, or (for 4 or fewer) one at a
            // time: a masked tile costs a whole 16-column tile's instructions.
            let left = job.cols - c;
            let width = match left {
                32.. => 32,
                5.. => left.min(16),
                _ => 1,
            };
            // Lanes of the 16-column tile: all, or the columns left.
            let mask: __mmask16 = if width >= 16 {
                0xffff
            } else {
                (1u16 << width) - 1
            };
            for rb in chunk.clone() {
                let (wp, bp) = (w.block(rb).as_ptr(), w.bias(rb).as_ptr());
                let rows = w.rows_in(rb);
                // SAFETY (block): the caller's contract; the packed block holds 8 rows (zero
                // past the matrix), the bias block 8 values; masked lanes neither load nor
                // store.
                unsafe {
                    let yb = y.add((rb - job.blocks.start) * ROWS * ys + c);
                    if width == 32 {
                        let acc = tile32x8(wp, bp, x.add(c), xs, k);
                        for (r, a) in acc.iter().enumerate().take(rows) {
                            let out = yb.add(r * ys);
                            _mm512_storeu_ps(out, act(a[0]));
                            _mm512_storeu_ps(out.add(16), act(a[1]));
                        }
                    } else if width == 1 {
                        // The 8 rows in one register (`tile1`), the stage on 16 lanes.
                        let acc = _mm512_castps256_ps512(tile1(wp, bp, x.add(c), xs, k));
                        let mut v = [0f32; 16];
                        _mm512_storeu_ps(v.as_mut_ptr(), act(acc));
                        for (r, &v) in v.iter().enumerate().take(rows) {
                            *yb.add(r * ys) = v;
                        }
                    } else {
                        let acc = tile16x8(wp, bp, x.add(c), xs, k, mask);
                        for (r, a) in acc.iter().enumerate().take(rows) {
                            _mm512_mask_storeu_ps(yb.add(r * ys), mask, act(*a));
                        }
                    }
                }
            }
            c += width;
        }
    }
}

/// The sums of 8 rows (weights `w[8·k + r]`, bias `b[r]`) × 32 columns: `acc[r][h]` holds row
/// `r`'s columns `16h … 16h+15`.
///
/// # Safety
/// AVX-512F; `w` holds `k` groups of 8 weights, `b` 8 values, `x` 32 columns of `k` rows `xs`
/// apart.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile32x8(
    w: *const f32,
    b: *const f32,
    x: *const f32,
    xs: usize,
    k: usize,
) -> [[__m512; 2]; ROWS] {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc: [[__m512; 2]; ROWS] = std::array::from_fn(|r| {
            let v = _mm512_set1_ps(*b.add(r));
            [v, v]
        });
        let (mut w, mut x) = (w, x);
        for _ in 0..k {
            let xv = [_mm512_loadu_ps(x), _mm512_loadu_ps(x.add(16))];
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*w.add(r));
                a[0] = _mm512_fmadd_ps(wv, xv[0], a[0]);
                a[1] = _mm512_fmadd_ps(wv, xv[1], a[1]);
            }
            (w, x) = (w.add(ROWS), x.add(xs));
        }
        acc
    }
}

/// The sums of 8 rows × the columns of `mask` among 16 (lanes outside it are not loaded:
/// their sums are the bias alone and never stored).
///
/// # Safety
/// As [`tile32x8`], for the columns `mask` names.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile16x8(
    w: *const f32,
    b: *const f32,
    x: *const f32,
    xs: usize,
    k: usize,
    mask: __mmask16,
) -> [__m512; ROWS] {
    // SAFETY: the caller's bounds; masked-off lanes are not read.
    unsafe {
        let mut acc: [__m512; ROWS] = std::array::from_fn(|r| _mm512_set1_ps(*b.add(r)));
        let (mut w, mut x) = (w, x);
        for _ in 0..k {
            let xv = _mm512_maskz_loadu_ps(mask, x);
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(r)), xv, *a);
            }
            (w, x) = (w.add(ROWS), x.add(xs));
        }
        acc
    }
}
