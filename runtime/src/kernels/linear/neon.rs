//! The aarch64 float product kernel (`neon`, every Cortex-A): tiles of 8 rows × 8 columns.
//!
//! Per k the tile loads the block's 8 weights (two registers) and 8 input columns (two
//! registers, read in place from the k row) and runs 16 `fmla` by element: accumulator
//! `(r, h)` holds row `r`'s columns `4h … 4h+3` and gains `x[h] · w.s[r]`. Four k at a time
//! this runs as written-out assembly ([`main_loop`]: 72 instructions per 256 multiply-adds),
//! the remaining k through the same intrinsics. A row's 8 sums are then two vectors, stored
//! straight into its output row (the channels-first layout) after the clamp (`fmaxnm`,
//! `fminnm`: `f32::max`/`min`). The last columns of a row run in a 4-column tile (8
//! accumulators) and one column at a time (two accumulators, `fmla` by a scalar). Row blocks
//! run in chunks over all columns ([`super::Job::chunks`]).

use std::arch::aarch64::*;

use super::{Job, LinearKernel, ROWS};

/// ARMv8.0 NEON; a value exists only through [`Neon::detect`].
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 core Kestrel supports).
    pub fn detect() -> &'static dyn LinearKernel {
        &Neon(())
    }
}

impl LinearKernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run(&self, job: &Job<'_>, y: &mut [f32]) {
        // SAFETY: NEON is baseline on aarch64; for a job that passed its check every tile
        // reads inside `x` (columns < cols of K rows) and the block's packed weights, and
        // writes only existing rows and columns of `y`.
        unsafe { super::run_checked(job, y, run_job::<true>, run_job::<false>) }
    }
}

/// The job, with (`CLAMP`) or without the clamp.
///
/// # Safety
/// `job.check(y)` must hold for the `y` that `y` points into.
#[target_feature(enable = "neon")]
unsafe fn run_job<const CLAMP: bool>(job: &Job<'_>, y: *mut f32) {
    let (w, k) = (job.w, job.w.k());
    let (xs, ys) = (job.x_stride, job.y_stride);
    let clamp = (vdupq_n_f32(job.clamp.low), vdupq_n_f32(job.clamp.high));
    let act = |v: float32x4_t| {
        if CLAMP {
            vminnmq_f32(vmaxnmq_f32(v, clamp.0), clamp.1)
        } else {
            v
        }
    };
    let x = job.x.as_ptr();
    for chunk in job.chunks() {
        let mut c = 0;
        while c < job.cols {
            let width = match job.cols - c {
                8.. => 8,
                4.. => 4,
                _ => 1,
            };
            for rb in chunk.clone() {
                let (wp, bp) = (w.block(rb).as_ptr(), w.bias(rb).as_ptr());
                let rows = w.rows_in(rb);
                // SAFETY (block): the caller's contract; the bias block holds 8 values.
                unsafe {
                    let bias = [vld1q_f32(bp), vld1q_f32(bp.add(4))];
                    let yb = y.add((rb - job.blocks.start) * ROWS * ys + c);
                    match width {
                        8 => {
                            let acc = tile8(wp, bias, x.add(c), xs, k);
                            let store = |r: usize, a: &[float32x4_t; 2]| {
                                let out = yb.add(r * ys);
                                vst1q_f32(out, act(a[0]));
                                vst1q_f32(out.add(4), act(a[1]));
                            };
                            // A whole block unrolled (the accumulators stay in registers);
                            // the last block of a layer with M % 8 ≠ 0 row by row.
                            if rows == ROWS {
                                for (r, a) in acc.iter().enumerate() {
                                    store(r, a);
                                }
                            } else {
                                for (r, a) in acc.iter().enumerate().take(rows) {
                                    store(r, a);
                                }
                            }
                        }
                        4 => {
                            let acc = tile4(wp, bias, x.add(c), xs, k);
                            for (r, a) in acc.iter().enumerate().take(rows) {
                                vst1q_f32(yb.add(r * ys), act(*a));
                            }
                        }
                        _ => {
                            let acc = tile1(wp, bias, x.add(c), xs, k);
                            let mut v = [0f32; ROWS];
                            vst1q_f32(v.as_mut_ptr(), act(acc[0]));
                            vst1q_f32(v.as_mut_ptr().add(4), act(acc[1]));
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

/// `fmla` of accumulator `acc[r][h]` by lane `r % 4` of weight register `r / 4`, for all 8
/// rows and both column halves.
macro_rules! fmla_rows {
    ($acc:ident, $x:expr, $w:ident) => {
        fmla_rows!(@row $acc, $x, $w, 0, 0, 0);
        fmla_rows!(@row $acc, $x, $w, 1, 0, 1);
        fmla_rows!(@row $acc, $x, $w, 2, 0, 2);
        fmla_rows!(@row $acc, $x, $w, 3, 0, 3);
        fmla_rows!(@row $acc, $x, $w, 4, 1, 0);
        fmla_rows!(@row $acc, $x, $w, 5, 1, 1);
        fmla_rows!(@row $acc, $x, $w, 6, 1, 2);
        fmla_rows!(@row $acc, $x, $w, 7, 1, 3);
    };
    (@row $acc:ident, $x:expr, $w:ident, $r:literal, $q:literal, $l:literal) => {
        $acc[$r] = $x($acc[$r], $w[$q], $l);
    };
}

/// The sums of 8 rows × 8 columns: `acc[row] = [columns 0–3, columns 4–7]`.
///
/// # Safety
/// `w` holds `k · 8` weights; `x` reads 8 columns of `k` rows `xs` apart.
#[inline(always)]
unsafe fn tile8(
    w: *const f32,
    bias: [float32x4_t; 2],
    x: *const f32,
    xs: usize,
    k: usize,
) -> [[float32x4_t; 2]; ROWS] {
    let b = lanes(bias);
    let mut acc = [
        [b[0], b[0]],
        [b[1], b[1]],
        [b[2], b[2]],
        [b[3], b[3]],
        [b[4], b[4]],
        [b[5], b[5]],
        [b[6], b[6]],
        [b[7], b[7]],
    ];
    // One k: 16 `fmla`, the input row by one post-incremented load.
    let step = |acc: &mut [[float32x4_t; 2]; ROWS], wv: [float32x4_t; 2], x: &mut *const f32| {
        // SAFETY: the caller's bounds.
        let xv = unsafe { vld1q_f32_x2(*x) };
        let xv = [xv.0, xv.1];
        let f = |a: [float32x4_t; 2], w: float32x4_t, l: i32| fma2(a, xv, w, l);
        fmla_rows!(acc, f, wv);
        // SAFETY: one row on, at most one past the last row read.
        *x = unsafe { x.add(xs) };
    };
    let (mut w, mut x) = (w, x);
    let turns = k / 4;
    if turns > 0 {
        // SAFETY: the caller's bounds: 4·turns ≤ k groups of 8 weights from `w`, 8 columns of
        // 4·turns rows `xs` apart from `x`; registers only besides those reads.
        unsafe { main_loop(&mut acc, &mut w, &mut x, xs, turns) };
    }
    for _ in 0..k % 4 {
        // SAFETY: the caller's bounds.
        let wv = unsafe { [vld1q_f32(w), vld1q_f32(w.add(4))] };
        step(&mut acc, wv, &mut x);
        // SAFETY: as above.
        w = unsafe { w.add(ROWS) };
    }
    acc
}

/// The 16 `fmla` of one k: accumulator `v(2r + h)` gains input register `x + h` times lane
/// `r % 4` of weight register `w + r / 4`.
macro_rules! fmla_k {
    ($x0:literal, $x1:literal, $w0:literal, $w1:literal) => {
        concat!(
            "fmla v0.4s, v",
            $x0,
            ".4s, v",
            $w0,
            ".s[0]\n",
            "fmla v1.4s, v",
            $x1,
            ".4s, v",
            $w0,
            ".s[0]\n",
            "fmla v2.4s, v",
            $x0,
            ".4s, v",
            $w0,
            ".s[1]\n",
            "fmla v3.4s, v",
            $x1,
            ".4s, v",
            $w0,
            ".s[1]\n",
            "fmla v4.4s, v",
            $x0,
            ".4s, v",
            $w0,
            ".s[2]\n",
            "fmla v5.4s, v",
            $x1,
            ".4s, v",
            $w0,
            ".s[2]\n",
            "fmla v6.4s, v",
            $x0,
            ".4s, v",
            $w0,
            ".s[3]\n",
            "fmla v7.4s, v",
            $x1,
            ".4s, v",
            $w0,
            ".s[3]\n",
            "fmla v8.4s, v",
            $x0,
            ".4s, v",
            $w1,
            ".s[0]\n",
            "fmla v9.4s, v",
            $x1,
            ".4s, v",
            $w1,
            ".s[0]\n",
            "fmla v10.4s, v",
            $x0,
            ".4s, v",
            $w1,
            ".s[1]\n",
            "fmla v11.4s, v",
            $x1,
            ".4s, v",
            $w1,
            ".s[1]\n",
            "fmla v12.4s, v",
            $x0,
            ".4s, v",
            $w1,
            ".s[2]\n",
            "fmla v13.4s, v",
            $x1,
            ".4s, v",
            $w1,
            ".s[2]\n",
            "fmla v14.4s, v",
            $x0,
            ".4s, v",
            $w1,
            ".s[3]\n",
            "fmla v15.4s, v",
            $x1,
            ".4s, v",
            $w1,
            ".s[3]\n",
        )
    };
}

/// `turns` × 4 k of [`tile8`] in one loop: per turn two 4-register weight loads (8 rows × 4 k,
/// post-incremented), four input loads (8 columns of one k row each, post-incremented by the
/// row stride), 64 `fmla` and the loop's two instructions — 72 instructions for 256
/// multiply-adds. Written out because LLVM splits the multi-register loads and adds the
/// stride separately (79 for the same work). Advances `w` and `x` past the k it ran.
///
/// # Safety
/// `turns > 0`; `w` holds `4·turns` groups of 8 weights; `x` reads 8 columns of `4·turns`
/// rows `xs` apart.
#[inline(always)]
unsafe fn main_loop(
    acc: &mut [[float32x4_t; 2]; ROWS],
    w: &mut *const f32,
    x: &mut *const f32,
    xs: usize,
    turns: usize,
) {
    // SAFETY: the caller's bounds; NEON only; v16–v27 are declared clobbered.
    unsafe {
        std::arch::asm!(
            "2:",
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{w}], #64",
            "ld1 {{v24.4s, v25.4s}}, [{x}], {xs}",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{w}], #64",
            "ld1 {{v26.4s, v27.4s}}, [{x}], {xs}",
            fmla_k!("24", "25", "16", "17"),
            "ld1 {{v24.4s, v25.4s}}, [{x}], {xs}",
            fmla_k!("26", "27", "18", "19"),
            "ld1 {{v26.4s, v27.4s}}, [{x}], {xs}",
            fmla_k!("24", "25", "20", "21"),
            fmla_k!("26", "27", "22", "23"),
            "subs {n}, {n}, #1",
            "b.ne 2b",
            w = inout(reg) *w,
            x = inout(reg) *x,
            xs = in(reg) xs * 4,
            n = inout(reg) turns => _,
            inout("v0") acc[0][0],
            inout("v1") acc[0][1],
            inout("v2") acc[1][0],
            inout("v3") acc[1][1],
            inout("v4") acc[2][0],
            inout("v5") acc[2][1],
            inout("v6") acc[3][0],
            inout("v7") acc[3][1],
            inout("v8") acc[4][0],
            inout("v9") acc[4][1],
            inout("v10") acc[5][0],
            inout("v11") acc[5][1],
            inout("v12") acc[6][0],
            inout("v13") acc[6][1],
            inout("v14") acc[7][0],
            inout("v15") acc[7][1],
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            options(nostack, readonly),
        );
    }
}

/// The sums of 8 rows × 4 columns: `acc[row]`.
///
/// # Safety
/// As [`tile8`], 4 columns.
#[inline(always)]
unsafe fn tile4(
    w: *const f32,
    bias: [float32x4_t; 2],
    x: *const f32,
    xs: usize,
    k: usize,
) -> [float32x4_t; ROWS] {
    let mut acc = lanes(bias);
    let (mut w, mut x) = (w, x);
    for _ in 0..k {
        // SAFETY: the caller's bounds.
        unsafe {
            let wv = [vld1q_f32(w), vld1q_f32(w.add(4))];
            let xv = vld1q_f32(x);
            let f = |a: float32x4_t, w: float32x4_t, l: i32| fma1(a, xv, w, l);
            fmla_rows!(acc, f, wv);
            (w, x) = (w.add(ROWS), x.add(xs));
        }
    }
    acc
}

/// The sums of 8 rows × 1 column: `[rows 0–3, rows 4–7]`.
///
/// # Safety
/// As [`tile8`], 1 column.
#[inline(always)]
unsafe fn tile1(
    w: *const f32,
    bias: [float32x4_t; 2],
    x: *const f32,
    xs: usize,
    k: usize,
) -> [float32x4_t; 2] {
    let mut acc = bias;
    let (mut w, mut x) = (w, x);
    for _ in 0..k {
        // SAFETY: the caller's bounds.
        unsafe {
            let xv = *x;
            acc[0] = vfmaq_n_f32(acc[0], vld1q_f32(w), xv);
            acc[1] = vfmaq_n_f32(acc[1], vld1q_f32(w.add(4)), xv);
            (w, x) = (w.add(ROWS), x.add(xs));
        }
    }
    acc
}

/// Each of the 8 bias values in all four lanes.
#[inline(always)]
fn lanes(b: [float32x4_t; 2]) -> [float32x4_t; ROWS] {
    // SAFETY: register-only NEON (baseline on aarch64).
    unsafe {
        [
            vdupq_laneq_f32::<0>(b[0]),
            vdupq_laneq_f32::<1>(b[0]),
            vdupq_laneq_f32::<2>(b[0]),
            vdupq_laneq_f32::<3>(b[0]),
            vdupq_laneq_f32::<0>(b[1]),
            vdupq_laneq_f32::<1>(b[1]),
            vdupq_laneq_f32::<2>(b[1]),
            vdupq_laneq_f32::<3>(b[1]),
        ]
    }
}

/// `a + x · w.s[l]` (fused), `l` a constant after inlining.
#[inline(always)]
fn fma1(a: float32x4_t, x: float32x4_t, w: float32x4_t, l: i32) -> float32x4_t {
    // SAFETY: register-only NEON (baseline on aarch64).
    unsafe {
        match l {
            0 => vfmaq_laneq_f32::<0>(a, x, w),
            1 => vfmaq_laneq_f32::<1>(a, x, w),
            2 => vfmaq_laneq_f32::<2>(a, x, w),
            _ => vfmaq_laneq_f32::<3>(a, x, w),
        }
    }
}

/// [`fma1`] on both column halves.
#[inline(always)]
fn fma2(a: [float32x4_t; 2], x: [float32x4_t; 2], w: float32x4_t, l: i32) -> [float32x4_t; 2] {
    [fma1(a[0], x[0], w, l), fma1(a[1], x[1], w, l)]
}
