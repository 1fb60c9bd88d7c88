//! The aarch64 depthwise kernel (`neon`, any ARMv8 core): the output plane in tiles of 2 rows ×
//! 4 vectors of 4 lanes, or 4 rows × 2 vectors on narrow planes (a partial last vector stored
//! through a stack buffer), the tile's accumulators in registers across all taps: per tap one
//! `ld1r` weight, then one load and one `fmla` per accumulator.

use std::arch::aarch64::*;

use super::{DepthwiseKernel, PlaneJob};

/// The NEON kernel.
#[derive(Debug)]
pub struct Neon(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 CPU).
    pub fn detect() -> &'static dyn DepthwiseKernel {
        &Neon(())
    }
}

impl DepthwiseKernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn run(&self, job: &PlaneJob<'_>, out: &mut [f32]) {
        job.check(out);
        // SAFETY: NEON is baseline on aarch64; the job passed its check, so every read (whole
        // vectors included) is inside `job.input` and every store inside `out`.
        unsafe { run_neon(job, out.as_mut_ptr()) }
    }
}

#[target_feature(enable = "neon")]
unsafe fn run_neon(job: &PlaneJob<'_>, out: *mut f32) {
    let (cols, n) = (job.cols, job.taps.len());
    let (taps, weights) = (job.taps.as_ptr(), job.weights.as_ptr());
    let act = job.act;
    let (low, high) = (vdupq_n_f32(act.low), vdupq_n_f32(act.high));
    let (sixth, half) = (vdupq_n_f32(1.0 / 6.0), vdupq_n_f32(0.5));
    let (zero, one) = (vdupq_n_f32(0.0), vdupq_n_f32(1.0));
    let apply = |acc: float32x4_t| {
        let x = vminq_f32(vmaxq_f32(acc, low), high);
        if act.hardswish {
            let t = vaddq_f32(vmulq_f32(x, sixth), half);
            vmulq_f32(x, vminq_f32(vmaxq_f32(t, zero), one))
        } else {
            x
        }
    };
    let (input, step) = (job.input.as_ptr(), job.row_step);
    let store = |dst: *mut f32, v: float32x4_t, valid: usize| {
        if valid >= 4 {
            vst1q_f32(dst, v);
        } else {
            let mut buf = [0f32; 4];
            vst1q_f32(buf.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, valid);
        }
    };
    // One tile: rows r..r+R × V vectors from column c.
    macro_rules! tile {
        ($r:expr, $c:expr, $rows:literal, $vecs:literal) => {{
            let (r, c) = ($r, $c);
            let mut acc = [[vdupq_n_f32(job.bias); $vecs]; $rows];
            for t in 0..n {
                let w = vld1q_dup_f32(weights.add(t));
                let p = input.add(r * step + *taps.add(t) + c);
                for (i, row) in acc.iter_mut().enumerate() {
                    for (j, a) in row.iter_mut().enumerate() {
                        *a = vfmaq_f32(*a, w, vld1q_f32(p.add(i * step + 4 * j)));
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, a) in row.iter().enumerate() {
                    let col = c + 4 * j;
                    if col < cols {
                        store(out.add((r + i) * cols + col), apply(*a), cols - col);
                    }
                }
            }
        }};
    }
    // Tile shapes by what is left of the row: 2 rows × 4 vectors where 13+ columns are left,
    // else 4 rows × 2 vectors (5–12 columns: 7×7 planes), else 4 rows × 1 vector; always at
    // least four accumulators for the `fmla` latency, eight where the plane allows.
    let rows = job.rows;
    let mut c = 0;
    while c < cols {
        let left = cols - c;
        let mut r = 0;
        if left > 12 {
            while r + 2 <= rows {
                tile!(r, c, 2, 4);
                r += 2;
            }
            if r < rows {
                tile!(r, c, 1, 4);
            }
            c += 16;
        } else if left > 4 {
            while r + 4 <= rows {
                tile!(r, c, 4, 2);
                r += 4;
            }
            while r < rows {
                tile!(r, c, 1, 2);
                r += 1;
            }
            c += 8;
        } else {
            while r + 4 <= rows {
                tile!(r, c, 4, 1);
                r += 4;
            }
            while r < rows {
                tile!(r, c, 1, 1);
                r += 1;
            }
            c += 4;
        }
    }
}
