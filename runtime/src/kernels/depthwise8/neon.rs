//! The aarch64 int8 depthwise kernel (`neon`, any ARMv8 core): each output row in vectors of
//! 16 columns (8 on the last, narrow part of a row), the four i32x4 sums in registers across
//! all taps: per tap one `ld1r` weight, two loads of 8 i16 values and four widening
//! multiply-adds (`smlal`/`smlal2`). The output stage converts four lanes per instruction
//! (`scvtf`, `fmul`, the activation) and either stores floats or requantizes (`fmul`, `fadd`,
//! clamp, `fcvtns`, two narrowing moves) and stores 16 codes at once; a partial last vector
//! goes through a stack buffer.
//!
//! 3×3 and 5×5 jobs (a [`Square`]) run square tiles instead, as the float kernel does: 2
//! output rows × 16 columns with the weights in registers (`smlal` by element) and each input
//! row loaded once for both output rows (`square`).

use std::arch::aarch64::*;

use super::{Depthwise8Kernel, Out, PlaneJob, Square};

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn Depthwise8Kernel {
        &Neon(())
    }
}

impl Depthwise8Kernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run(&self, job: &PlaneJob<'_>, out: Out<'_>) {
        job.check(out.len());
        // SAFETY: NEON is baseline on aarch64; the job passed its check, so every read (whole
        // vectors included) is inside `job.input`, and every store is inside the plane
        // (`rows × cols`, partial vectors through a stack buffer).
        let dst = match out {
            Out::F32(o) => Dst::F32(o.as_mut_ptr()),
            Out::I8 { out, inv_scale, zp } => Dst::I8(out.as_mut_ptr(), inv_scale, zp),
        };
        // Clamping to (−∞, +∞) changes no value (`f32(acc) · scale` is never NaN): skipped,
        // as in the float kernel.
        let act = job.act;
        let clamp = act.low != f32::NEG_INFINITY || act.high != f32::INFINITY;
        unsafe {
            match (clamp, act.hardswish) {
                (_, false) => run_neon::<true, false>(job, dst),
                (false, true) => run_neon::<false, true>(job, dst),
                (true, true) => run_neon::<true, true>(job, dst),
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Dst {
    F32(*mut f32),
    I8(*mut i8, f32, f32),
}

/// The plane of `job` into `dst`. `CLAMP`: the activation clamps to `[low, high]`; `HS`:
/// HardSwish after it (the output stage compiled once per kind of activation).
#[target_feature(enable = "neon")]
unsafe fn run_neon<const CLAMP: bool, const HS: bool>(job: &PlaneJob<'_>, dst: Dst) {
    let (cols, n) = (job.cols, job.taps.len());
    let (taps, weights) = (job.taps.as_ptr(), job.weights.as_ptr());
    let act = job.act;
    let (low, high) = (vdupq_n_f32(act.low), vdupq_n_f32(act.high));
    let (sixth, half) = (vdupq_n_f32(1.0 / 6.0), vdupq_n_f32(0.5));
    let (zero, one) = (vdupq_n_f32(0.0), vdupq_n_f32(1.0));
    let (bias, scale) = (vdupq_n_s32(job.bias), vdupq_n_f32(job.scale));
    let (qmin, qmax) = (vdupq_n_f32(-128.0), vdupq_n_f32(127.0));
    // Requantization constants (unused for a float output).
    let (inv, zp) = match dst {
        Dst::I8(_, inv, zp) => (vdupq_n_f32(inv), vdupq_n_f32(zp)),
        Dst::F32(_) => (vdupq_n_f32(1.0), vdupq_n_f32(0.0)),
    };
    // The float value of four sums (`PlaneJob::value`, lane by lane).
    let value = |acc: int32x4_t| {
        let x = vmulq_f32(vcvtq_f32_s32(acc), scale);
        let x = if CLAMP {
            vminq_f32(vmaxq_f32(x, low), high)
        } else {
            x
        };
        if HS {
            let t = vaddq_f32(vmulq_f32(x, sixth), half);
            vmulq_f32(x, vminq_f32(vmaxq_f32(t, zero), one))
        } else {
            x
        }
    };
    // Stores `L` (8 or 16) outputs from `acc[..L/4]` at plane index `at`, `valid` of them.
    let store = |acc: &[int32x4_t], at: usize, valid: usize| {
        let lanes = acc.len() * 4;
        match dst {
            Dst::F32(o) => {
                let mut buf = std::mem::MaybeUninit::<[f32; 16]>::uninit();
                let full = valid >= lanes;
                let p = if full {
                    o.add(at)
                } else {
                    buf.as_mut_ptr().cast()
                };
                for (i, &a) in acc.iter().enumerate() {
                    vst1q_f32(p.add(4 * i), value(a));
                }
                if !full {
                    std::ptr::copy_nonoverlapping(buf.as_ptr().cast(), o.add(at), valid);
                }
            }
            Dst::I8(o, ..) => {
                let code = |a: int32x4_t| {
                    let v = vaddq_f32(vmulq_f32(value(a), inv), zp);
                    vmovn_s32(vcvtnq_s32_f32(vminq_f32(vmaxq_f32(v, qmin), qmax)))
                };
                let lo = vmovn_s16(vcombine_s16(code(acc[0]), code(acc[1])));
                let mut buf = std::mem::MaybeUninit::<[i8; 16]>::uninit();
                let full = valid >= lanes;
                let p = if full {
                    o.add(at)
                } else {
                    buf.as_mut_ptr().cast()
                };
                if lanes == 16 {
                    let hi = vmovn_s16(vcombine_s16(code(acc[2]), code(acc[3])));
                    vst1q_s8(p, vcombine_s8(lo, hi));
                } else {
                    vst1_s8(p, lo);
                }
                if !full {
                    std::ptr::copy_nonoverlapping(buf.as_ptr().cast(), o.add(at), valid);
                }
            }
        }
    };
    if let Some(sq) = job.square {
        return square(job, sq, store);
    }
    for r in 0..job.rows {
        let base = job.input.as_ptr().add(r * job.row_step);
        let mut c = 0;
        while c < cols {
            let left = cols - c;
            let at = r * cols + c;
            if left > 8 {
                let mut acc = [bias; 4];
                for t in 0..n {
                    let w = vld1q_dup_s16(weights.add(t));
                    let p = base.add(*taps.add(t) + c);
                    let (x0, x1) = (vld1q_s16(p), vld1q_s16(p.add(8)));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w));
                    acc[1] = vmlal_high_s16(acc[1], x0, w);
                    acc[2] = vmlal_s16(acc[2], vget_low_s16(x1), vget_low_s16(w));
                    acc[3] = vmlal_high_s16(acc[3], x1, w);
                }
                let out = acc;
                store(&out, at, left);
                c += 16;
            } else {
                let mut acc = [bias; 2];
                for t in 0..n {
                    let w = vld1q_dup_s16(weights.add(t));
                    let x0 = vld1q_s16(base.add(*taps.add(t) + c));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w));
                    acc[1] = vmlal_high_s16(acc[1], x0, w);
                }
                let out = acc;
                store(&out, at, left);
                c += 8;
            }
        }
    }
}

/// The square tiles of a 3×3 or 5×5 job: 2 output rows (1 for an odd last row) × 16 columns
/// (8 where at most 8 are left), the K² weights in registers (8 per vector, `smlal` by
/// element), each input row of the tile loaded once (one pointer per phase plane and input
/// row, kernel columns as constant offsets) for every output row that reads it. `store` writes
/// one output row's accumulators (`L/4` of them for `L` columns) at a plane index.
///
/// # Safety
/// The job passed its check with `sq` its square; NEON.
// `kx % s` in the tiles' macros is `kx % 1` for stride 1.
#[allow(clippy::modulo_one)]
#[target_feature(enable = "neon")]
unsafe fn square(job: &PlaneJob<'_>, sq: Square, store: impl Fn(&[int32x4_t], usize, usize)) {
    let (rows, cols, step, ld, col) = (job.rows, job.cols, job.row_step, sq.ld, sq.column);
    let input = job.input.as_ptr();
    let bias = vdupq_n_s32(job.bias);
    // The weights, zero-padded to 4 vectors of 8.
    let mut w = [0i16; 32];
    w[..job.weights.len()].copy_from_slice(job.weights);
    let wv: [int16x8_t; 4] = std::array::from_fn(|i| vld1q_s16(w.as_ptr().add(8 * i)));
    // Input row `u` (from the tile's first output row's first input row), kernel column
    // `kx`: its `V` vectors loaded once; output row `i` of the tile reads it as kernel row
    // `ky = u − s·i` and adds tap `K·ky + kx` when `0 ≤ ky < K` (known when compiling).
    macro_rules! step {
        ($a:ident, $p0:ident, $p1:ident, $k:literal, $s:literal, $v:literal,
         [$($i:literal)*], $u:literal, $kx:literal) => {{
            let p = if $kx % $s == 0 { $p0 } else { $p1 }.add($kx / $s);
            let x: [int16x8_t; $v] = std::array::from_fn(|j| vld1q_s16(p.add(8 * j)));
            $({
                const KY: usize = ($u as usize).wrapping_sub($s * $i);
                const T: usize = if KY < $k { $k * KY + $kx } else { 0 };
                if KY < $k {
                    for j in 0..$v {
                        const L: i32 = (T % 8) as i32;
                        $a[$i][2 * j] =
                            vmlal_laneq_s16::<L>($a[$i][2 * j], vget_low_s16(x[j]), wv[T / 8]);
                        $a[$i][2 * j + 1] =
                            vmlal_high_laneq_s16::<L>($a[$i][2 * j + 1], x[j], wv[T / 8]);
                    }
                }
            })*
        }};
    }
    macro_rules! row {
        ($a:ident, $base:expr, $k:literal, $s:literal, $v:literal, $is:tt, $u:literal,
         [$($kx:literal)*]) => {{
            let pu = $base.add($u * ld);
            let (p0, p1) = (pu.add(col[0]), pu.add(col[$s - 1]));
            $( step!($a, p0, p1, $k, $s, $v, $is, $u, $kx); )*
        }};
    }
    // A tile: output rows r..r+R × 8·V columns from c.
    macro_rules! tile {
        ($r:expr, $c:expr, $k:literal, $s:literal, $rows:literal, $is:tt, $v:literal,
         [$($u:literal)*], $kxs:tt) => {{
            let (r, c) = ($r, $c);
            let mut a = [[bias; 2 * $v]; $rows];
            let base = input.add(r * step + c);
            $( row!(a, base, $k, $s, $v, $is, $u, $kxs); )*
            for i in 0..$rows {
                // A copy: the tile's accumulators never have their address taken, so they
                // stay in registers across the taps.
                let acc: [int32x4_t; 2 * $v] = a[i];
                store(&acc, (r + i) * cols + c, cols - c);
            }
        }};
    }
    // Every row of the column block at c: pairs of rows, then an odd last row.
    macro_rules! block {
        ($c:expr, $v:literal, $k:literal, $s:literal, $u2:tt, $u1:tt, $kxs:tt) => {{
            let mut r = 0;
            while r + 2 <= rows {
                tile!(r, $c, $k, $s, 2, [0 1], $v, $u2, $kxs);
                r += 2;
            }
            if r < rows {
                tile!(r, $c, $k, $s, 1, [0], $v, $u1, $kxs);
            }
        }};
    }
    macro_rules! blocks {
        ($($rest:tt)*) => {{
            let mut c = 0;
            while c < cols {
                if cols - c > 8 {
                    block!(c, 2, $($rest)*);
                    c += 16;
                } else {
                    block!(c, 1, $($rest)*);
                    c += 8;
                }
            }
        }};
    }
    match (sq.k, sq.stride) {
        (3, 1) => blocks!(3, 1, [0 1 2 3], [0 1 2], [0 1 2]),
        (3, _) => blocks!(3, 2, [0 1 2 3 4], [0 1 2], [0 1 2]),
        (_, 1) => blocks!(5, 1, [0 1 2 3 4 5], [0 1 2 3 4], [0 1 2 3 4]),
        _ => blocks!(5, 2, [0 1 2 3 4 5 6], [0 1 2 3 4], [0 1 2 3 4]),
    }
}
