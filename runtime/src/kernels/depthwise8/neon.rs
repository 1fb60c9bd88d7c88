//! The aarch64 int8 depthwise kernel (`neon`, any ARMv8 core): each output row in vectors of
//! 16 columns (8 on the last, narrow part of a row), the four i32x4 sums in registers across
//! all taps: per tap one `ld1r` weight, two loads of 8 i16 values and four widening
//! multiply-adds (`smlal`/`smlal2`). The output stage converts four lanes per instruction
//! (`scvtf`, `fmul`, the activation) and either stores floats or requantizes (`fmul`, `fadd`,
//! clamp, `fcvtns`, two narrowing moves) and stores 16 codes at once; a partial last vector
//! goes through a stack buffer.

use std::arch::aarch64::*;

use super::{Depthwise8Kernel, Out, PlaneJob};

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
        unsafe {
            match out {
                Out::F32(o) => run_neon(job, Dst::F32(o.as_mut_ptr())),
                Out::I8 { out, inv_scale, zp } => {
                    run_neon(job, Dst::I8(out.as_mut_ptr(), inv_scale, zp))
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Dst {
    F32(*mut f32),
    I8(*mut i8, f32, f32),
}

#[target_feature(enable = "neon")]
unsafe fn run_neon(job: &PlaneJob<'_>, dst: Dst) {
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
        let x = vminq_f32(vmaxq_f32(x, low), high);
        if act.hardswish {
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
                store(&acc, at, left);
                c += 16;
            } else {
                let mut acc = [bias; 2];
                for t in 0..n {
                    let w = vld1q_dup_s16(weights.add(t));
                    let x0 = vld1q_s16(base.add(*taps.add(t) + c));
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(x0), vget_low_s16(w));
                    acc[1] = vmlal_high_s16(acc[1], x0, w);
                }
                store(&acc, at, left);
                c += 8;
            }
        }
    }
}
