//! The output stage of the NEON kernels, on tiles whose sums come as one vector per column
//! with the 4 rows of a row block in its lanes. The output path ([`Sink`]) is chosen once per
//! job and monomorphized into the kernel's loops ([`Tiles`]); its stage vectors (correction,
//! scale, clamp) are loaded once per row block.
//!
//! * Channels-last output (an NHWC graph's layout; rows contiguous): one `st1` per column
//!   (f32) or one 4-byte store (i8), no transpose.
//! * Channels-first f32: 4 columns are transposed (`trn1`/`trn2`) into 4 rows, one `st1` each.
//! * Anything else (the last, partial row block; i8 channels first; other strides): the
//!   portable stage, element by element.

use std::arch::aarch64::*;
use std::ops::Range;

use super::super::{Job, Output, Stage, ROWS};
use super::quantize_s32;

/// A kernel's loops over a job's tiles.
pub trait Tiles {
    /// Every column block of the job × row blocks `rows`, each tile's column vectors handed
    /// to the sink `sink(o0)` of its row block.
    ///
    /// # Safety
    /// `job.check(the kernel's format)`; `rows` within the job's row blocks; the sinks'
    /// contracts.
    unsafe fn blocks<S: Sink>(job: &Job<'_>, rows: Range<usize>, sink: impl Fn(usize) -> S);
}

/// Runs a checked job with kernel `T`'s loops and the job's output path. Inlined into each
/// kernel's entry point, whose target features (`dotprod`) the loops need.
///
/// # Safety
/// `job.check(..)` with the format `T` reads must hold; the CPU must have `T`'s features.
#[inline(always)]
pub unsafe fn run<T: Tiles>(job: &Job<'_>) {
    let m = job.w.rows();
    let stage = &job.stage;
    // Whole row blocks take the vector paths; a partial last one the portable stage.
    let whole = job.row_blocks.start.min(m / ROWS)..job.row_blocks.end.min(m / ROWS);
    let partial = whole.end.max(job.row_blocks.start)..job.row_blocks.end;
    // SAFETY (both): the job is checked; every sink writes inside the output it describes.
    unsafe {
        match stage.out {
            Output::F32 { ptr, ld } if ld.k == 1 => T::blocks(job, whole, |o0| ColumnsF32 {
                ptr: ptr.add(o0),
                ldc: ld.c,
                y: StageVectors::load(stage, o0),
            }),
            Output::F32 { ptr, ld } if ld.c == 1 => T::blocks(job, whole, |o0| RowsF32 {
                ptr: ptr.add(o0 * ld.k),
                ldk: ld.k,
                y: StageVectors::load(stage, o0),
            }),
            Output::I8 {
                ptr,
                ld,
                inv_scale,
                zp,
            } if ld.k == 1 => T::blocks(job, whole, |o0| ColumnsI8 {
                ptr: ptr.add(o0),
                ldc: ld.c,
                y: StageVectors::load(stage, o0),
                inv: vdupq_n_f32(inv_scale),
                zp: vdupq_n_f32(zp),
            }),
            Output::I32 { ptr, ld } if ld.c == 1 => T::blocks(job, whole, |o0| RowsI32 {
                ptr: ptr.add(o0 * ld.k),
                ldk: ld.k,
                corr: vld1q_s32(stage.corr[o0..o0 + ROWS].as_ptr()),
            }),
            _ => T::blocks(job, whole, |o0| Portable { stage, o0, m }),
        }
        T::blocks(job, partial, |o0| Portable { stage, o0, m });
    }
}

/// Where the column vectors of one row block's tiles go.
pub trait Sink {
    /// Stores columns `c..c + NC` (each a vector of the row block's 4 rows).
    ///
    /// # Safety
    /// Those columns must lie in the output.
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]);
}

/// The float stage of a whole row block on vectors whose lanes are its 4 rows.
#[derive(Clone, Copy)]
struct StageVectors {
    corr: int32x4_t,
    scale: float32x4_t,
    lo: float32x4_t,
    hi: float32x4_t,
}

impl StageVectors {
    /// Rows `o0..o0 + 4` of `stage` (checked: a whole row block).
    ///
    /// # Safety
    /// NEON, always present on aarch64 (the `unsafe` of `target_feature`).
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn load(stage: &Stage<'_>, o0: usize) -> StageVectors {
        assert!(o0 + ROWS <= stage.corr.len().min(stage.scale.len()));
        // SAFETY: checked just above.
        unsafe {
            StageVectors {
                corr: vld1q_s32(stage.corr.as_ptr().add(o0)),
                scale: vld1q_f32(stage.scale.as_ptr().add(o0)),
                lo: vdupq_n_f32(stage.lo),
                hi: vdupq_n_f32(stage.hi),
            }
        }
    }

    /// Add, `scvtf`, `fmul`, clamp: the portable stage's operations on 4 rows.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn apply(&self, sums: int32x4_t) -> float32x4_t {
        let y = vmulq_f32(vcvtq_f32_s32(vaddq_s32(sums, self.corr)), self.scale);
        vminnmq_f32(vmaxnmq_f32(y, self.lo), self.hi)
    }
}

/// f32, channels last: column `c`'s 4 rows are contiguous at `ptr + c · ldc`.
struct ColumnsF32 {
    ptr: *mut f32,
    ldc: usize,
    y: StageVectors,
}

impl Sink for ColumnsF32 {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        for (j, s) in sums.into_iter().enumerate() {
            // SAFETY: NEON is always present on aarch64; the column lies in the output.
            unsafe { vst1q_f32(self.ptr.add((c + j) * self.ldc), self.y.apply(s)) };
        }
    }
}

/// i8, channels last: column `c`'s 4 rows are 4 contiguous bytes at `ptr + c · ldc`.
struct ColumnsI8 {
    ptr: *mut i8,
    ldc: usize,
    y: StageVectors,
    inv: float32x4_t,
    zp: float32x4_t,
}

impl Sink for ColumnsI8 {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        for (j, s) in sums.into_iter().enumerate() {
            // SAFETY: as in ColumnsF32; 4 bytes of the column lie in the output.
            unsafe {
                let q = vmovn_s32(quantize_s32(self.y.apply(s), self.inv, self.zp));
                let b = vmovn_s16(vcombine_s16(q, q));
                let word = vget_lane_u32::<0>(vreinterpret_u32_s8(b));
                std::ptr::write_unaligned(self.ptr.add((c + j) * self.ldc) as *mut u32, word);
            }
        }
    }
}

/// f32, channels first: row `r` at `ptr + r · ldk`, its columns contiguous. 4 columns are
/// transposed into 4 rows and stored with one `st1` each; fewer go lane by lane.
struct RowsF32 {
    ptr: *mut f32,
    ldk: usize,
    y: StageVectors,
}

impl Sink for RowsF32 {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        // SAFETY: as in ColumnsF32; 4 rows × NC columns from c lie in the output.
        unsafe {
            let y: [float32x4_t; NC] = std::array::from_fn(|j| self.y.apply(sums[j]));
            if NC == 4 {
                let rows = transpose4(std::array::from_fn(|j| y[j]));
                for (r, row) in rows.into_iter().enumerate() {
                    vst1q_f32(self.ptr.add(r * self.ldk + c), row);
                }
            } else {
                for (j, y) in y.into_iter().enumerate() {
                    let mut a = [0f32; 4];
                    vst1q_f32(a.as_mut_ptr(), y);
                    for (r, v) in a.into_iter().enumerate() {
                        *self.ptr.add(r * self.ldk + c + j) = v;
                    }
                }
            }
        }
    }
}

/// Corrected i32 sums, channels first (the digit products of a 16-bit input): row `r` at
/// `ptr + r · ldk`, its columns contiguous; 4 columns transposed into 4 rows as in `RowsF32`.
struct RowsI32 {
    ptr: *mut i32,
    ldk: usize,
    corr: int32x4_t,
}

impl Sink for RowsI32 {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        // SAFETY: as in RowsF32 (4 rows × NC columns from c lie in the output).
        unsafe {
            let y: [int32x4_t; NC] = std::array::from_fn(|j| vaddq_s32(sums[j], self.corr));
            if NC == 4 {
                let bits = std::array::from_fn(|j| vreinterpretq_f32_s32(y[j]));
                for (r, row) in transpose4(bits).into_iter().enumerate() {
                    vst1q_s32(self.ptr.add(r * self.ldk + c), vreinterpretq_s32_f32(row));
                }
            } else {
                for (j, y) in y.into_iter().enumerate() {
                    let mut a = [0i32; 4];
                    vst1q_s32(a.as_mut_ptr(), y);
                    for (r, v) in a.into_iter().enumerate() {
                        *self.ptr.add(r * self.ldk + c + j) = v;
                    }
                }
            }
        }
    }
}

/// Anything else (the partial last row block, i8 channels first, other strides): the
/// portable stage, element by element, rows `< m` only.
struct Portable<'a, 'b> {
    stage: &'a Stage<'b>,
    o0: usize,
    m: usize,
}

impl Sink for Portable<'_, '_> {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        for (j, s) in sums.into_iter().enumerate() {
            let mut a = [0i32; 4];
            // SAFETY: NEON is always present on aarch64.
            unsafe { vst1q_s32(a.as_mut_ptr(), s) };
            let rows = self.m.saturating_sub(self.o0).min(ROWS);
            for (r, &v) in a.iter().enumerate().take(rows) {
                // SAFETY: row o0 + r < m and column c + j lie in the output (caller).
                unsafe { self.stage.store(self.o0 + r, c + j, v) };
            }
        }
    }
}

/// Transposes a 4×4 matrix of 32-bit lanes (`trn1`/`trn2` on 32 then 64 bits).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn transpose4(y: [float32x4_t; 4]) -> [float32x4_t; 4] {
    let t0 = vreinterpretq_f64_f32(vtrn1q_f32(y[0], y[1]));
    let t1 = vreinterpretq_f64_f32(vtrn2q_f32(y[0], y[1]));
    let t2 = vreinterpretq_f64_f32(vtrn1q_f32(y[2], y[3]));
    let t3 = vreinterpretq_f64_f32(vtrn2q_f32(y[2], y[3]));
    [
        vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)),
        vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)),
        vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)),
        vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)),
    ]
}
