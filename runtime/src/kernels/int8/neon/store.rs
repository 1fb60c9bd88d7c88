//! The output stage of the NEON kernels, on tiles whose sums come as one vector per column
//! with the 4 rows of a row block in its lanes. The output path ([`Sink`]) is chosen once per
//! job and monomorphized into the kernel's loops ([`Tiles`]); its stage vectors (correction,
//! scale, clamp) are loaded once per row block.
//!
//! * Channels-last output (an NHWC graph's layout; rows contiguous): one `st1` per column
//!   (f32, or the i32 sums of a 16-bit input's high digits) or one 4-byte store (i8), no
//!   transpose.
//! * Channels-first f32 through the plain stage: the kernel's row tiles
//!   ([`Tiles::rows_f32`], [`RowStage`]), whose vectors hold 4 columns of one row, one `st1`
//!   each and no transpose. Otherwise (a 16-bit input's stages, `smull`'s last 1–3 columns of
//!   a block) 4 columns are transposed (`trn1`/`trn2`) into 4 rows, one `st1` each.
//! * Channels-first i8 (an NCHW graph's int8 layer writing the next int8 layer's codes): 4
//!   columns quantized, narrowed into one register and transposed by one `tbl`, one 4-byte
//!   store per row.
//! * The combining stage of a 16-bit input ([`Wide`](super::super::Wide), high sums stored
//!   channels last): per column, the 4 rows' high sums are loaded by one `ld1`, widened and
//!   shifted (`sshll`), the low sums added (`saddw`) and the i64 correction, converted by
//!   `scvtf` to f64 (exact below 2^53) and `fcvtn` to f32 (one rounding, as the portable
//!   `i64 as f32`), then the float stage and the stores above.
//! * The one-product stage of a 16-bit input (a [`Wide`](super::super::Wide) stage without
//!   high sums): the sums widened and added to the i64 correction (`saddw`), then as above.
//! * Anything else (the last, partial row block; other strides): the
//!   portable stage, element by element.

use std::arch::aarch64::*;
use std::ops::Range;

use super::super::{HighSums, Job, Output, Stage, Wide, COLS, ROWS};
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

    /// Channels-first f32 output (row `o` at `ptr + o · ldk`, its columns contiguous) of the
    /// whole row blocks `rows` through the plain stage (no 16-bit input); `CLAMP` is false
    /// only where [`unclamped`] holds. The default runs [`Tiles::blocks`] into a sink that
    /// transposes 4 column vectors into 4 row vectors (and always clamps); a kernel whose
    /// tiles can hold columns in lanes overrides it and stores no transpose.
    ///
    /// # Safety
    /// As [`Tiles::blocks`]; `job.stage.wide` is `None` and its output is `ptr`, `ldk`.
    #[inline(always)]
    unsafe fn rows_f32<const CLAMP: bool>(
        job: &Job<'_>,
        rows: Range<usize>,
        ptr: *mut f32,
        ldk: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            Self::blocks(job, rows, |o0| RowsF32 {
                ptr: ptr.add(o0 * ldk),
                ldk,
                y: StageVectors::load(&job.stage, o0),
            })
        }
    }
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
    // SAFETY (all): the job is checked; every sink writes inside the output it describes (and
    // reads inside `wide.high`, which covers the same rows and columns).
    unsafe {
        match (stage.out, stage.wide) {
            (Output::I32 { ptr, ld }, _) if ld.k == 1 => T::blocks(job, whole, |o0| ColumnsI32 {
                ptr: ptr.add(o0),
                ldc: ld.c,
                corr: vld1q_s32(stage.corr[o0..o0 + ROWS].as_ptr()),
            }),
            (Output::I32 { .. }, _) => T::blocks(job, whole, |o0| Portable { stage, o0, m }),
            (Output::F32 { ptr, ld }, None) if ld.c == 1 => {
                if unclamped(stage, whole.clone()) {
                    T::rows_f32::<false>(job, whole, ptr, ld.k)
                } else {
                    T::rows_f32::<true>(job, whole, ptr, ld.k)
                }
            }
            (_, None) => float::<T, _>(job, whole, |o0| StageVectors::load(stage, o0)),
            (_, Some(Wide { high: None, corr })) => {
                float::<T, _>(job, whole, |o0| ExactVectors::load(stage, corr, o0))
            }
            (
                _,
                Some(Wide {
                    high: Some(h),
                    corr,
                }),
            ) if h.ld.k == 1 => {
                float::<T, _>(job, whole, |o0| WideVectors::load(stage, h, corr, o0))
            }
            _ => T::blocks(job, whole, |o0| Portable { stage, o0, m }),
        }
        T::blocks(job, partial, |o0| Portable { stage, o0, m });
    }
}

/// The float outputs (f32, i8) of row blocks `rows`, through the float stage `y(o0)`.
///
/// # Safety
/// As [`run`]'s.
#[inline(always)]
unsafe fn float<T: Tiles, Y: Apply>(job: &Job<'_>, rows: Range<usize>, y: impl Fn(usize) -> Y) {
    let stage = &job.stage;
    let m = job.w.rows();
    // SAFETY: the caller's contract.
    unsafe {
        match stage.out {
            Output::F32 { ptr, ld } if ld.k == 1 => T::blocks(job, rows, |o0| ColumnsF32 {
                ptr: ptr.add(o0),
                ldc: ld.c,
                y: y(o0),
            }),
            Output::F32 { ptr, ld } if ld.c == 1 => T::blocks(job, rows, |o0| RowsF32 {
                ptr: ptr.add(o0 * ld.k),
                ldk: ld.k,
                y: y(o0),
            }),
            Output::I8 {
                ptr,
                ld,
                inv_scale,
                zp,
            } if ld.k == 1 => T::blocks(job, rows, |o0| ColumnsI8 {
                ptr: ptr.add(o0),
                ldc: ld.c,
                y: y(o0),
                inv: vdupq_n_f32(inv_scale),
                zp: vdupq_n_f32(zp),
            }),
            Output::I8 {
                ptr,
                ld,
                inv_scale,
                zp,
            } if ld.c == 1 => T::blocks(job, rows, |o0| RowsI8 {
                ptr: ptr.add(o0 * ld.k),
                ldk: ld.k,
                y: y(o0),
                inv: vdupq_n_f32(inv_scale),
                zp: vdupq_n_f32(zp),
            }),
            _ => T::blocks(job, rows, |o0| Portable { stage, o0, m }),
        }
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

/// Hands the `cols` valid columns of a block's tile (one vector per column, from column `c0`)
/// to the sink, 4 at a time. The tile is indexed by constants only: indexed by a run-time
/// column it would live on the stack (16 stores per tile) instead of in its registers.
///
/// # Safety
/// The sink's: columns `c0..c0 + cols` lie in the output.
#[inline(always)]
pub unsafe fn put_block<S: Sink>(s: &S, c0: usize, cols: usize, acc: &[int32x4_t; COLS]) {
    // SAFETY: the caller's contract: columns below `cols` lie in the output.
    unsafe {
        put_quad(s, c0, cols, [acc[0], acc[1], acc[2], acc[3]]);
        put_quad(
            s,
            c0 + 4,
            cols.saturating_sub(4),
            [acc[4], acc[5], acc[6], acc[7]],
        );
        put_quad(
            s,
            c0 + 8,
            cols.saturating_sub(8),
            [acc[8], acc[9], acc[10], acc[11]],
        );
        put_quad(
            s,
            c0 + 12,
            cols.saturating_sub(12),
            [acc[12], acc[13], acc[14], acc[15]],
        );
    }
}

/// The first `min(n, 4)` columns of `v` to the sink at column `c`.
///
/// # Safety
/// The sink's: those columns lie in the output.
#[inline(always)]
unsafe fn put_quad<S: Sink>(s: &S, c: usize, n: usize, v: [int32x4_t; 4]) {
    // SAFETY: the caller's contract.
    unsafe {
        match n {
            0 => {}
            1 => s.put(c, [v[0]]),
            2 => s.put(c, [v[0], v[1]]),
            3 => s.put(c, [v[0], v[1], v[2]]),
            _ => s.put(c, v),
        }
    }
}

/// A float stage of a whole row block: column `c`'s sums (lanes: the 4 rows) to floats.
trait Apply {
    /// The stage's floats for column `c`.
    ///
    /// # Safety
    /// Column `c` lies in the output (and in what the stage reads).
    unsafe fn apply(&self, c: usize, sums: int32x4_t) -> float32x4_t;
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

    /// `scvtf`, `fmul`, clamp: the portable stage's operations on 4 rows.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn scale_clamp(&self, y: float32x4_t) -> float32x4_t {
        let y = vmulq_f32(y, self.scale);
        vminnmq_f32(vmaxnmq_f32(y, self.lo), self.hi)
    }
}

impl Apply for StageVectors {
    /// Add, `scvtf`, `fmul`, clamp.
    #[inline(always)]
    unsafe fn apply(&self, _c: usize, sums: int32x4_t) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64.
        unsafe { self.scale_clamp(vcvtq_f32_s32(vaddq_s32(sums, self.corr))) }
    }
}

/// The combining stage of a 16-bit input on a whole row block: the high digits' sums of
/// column `c` at `high + c · ldc` (4 contiguous rows).
struct WideVectors {
    high: *const i32,
    ldc: usize,
    corr: [int64x2_t; 2],
    y: StageVectors,
}

impl WideVectors {
    /// Rows `o0..o0 + 4` of `stage`, `high` and `corr` (checked: a whole row block;
    /// `high.ld.k` = 1).
    ///
    /// # Safety
    /// NEON, always present on aarch64.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn load(stage: &Stage<'_>, high: HighSums, corr: &[i64], o0: usize) -> WideVectors {
        assert!(high.ld.k == 1);
        // SAFETY: NEON; both loads check their rows.
        unsafe {
            WideVectors {
                high: high.ptr.wrapping_add(o0),
                ldc: high.ld.c,
                corr: corr_vectors(corr, o0),
                y: StageVectors::load(stage, o0),
            }
        }
    }
}

/// Rows `o0..o0 + 4` of an i64 correction, 2 per vector.
///
/// # Safety
/// NEON, always present on aarch64.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn corr_vectors(corr: &[i64], o0: usize) -> [int64x2_t; 2] {
    let c = &corr[o0..o0 + ROWS];
    // SAFETY: 4 values, just checked.
    unsafe { [vld1q_s64(c.as_ptr()), vld1q_s64(c.as_ptr().add(2))] }
}

/// The one-product stage of a 16-bit input ([`Format::CODES16`](super::super::Format)) on a
/// whole row block: the sums, exact in i32, plus the i64 correction.
struct ExactVectors {
    corr: [int64x2_t; 2],
    y: StageVectors,
}

impl ExactVectors {
    /// Rows `o0..o0 + 4` of `stage` and `corr` (checked: a whole row block).
    ///
    /// # Safety
    /// NEON, always present on aarch64.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn load(stage: &Stage<'_>, corr: &[i64], o0: usize) -> ExactVectors {
        // SAFETY: NEON; both loads check their rows.
        unsafe {
            ExactVectors {
                corr: corr_vectors(corr, o0),
                y: StageVectors::load(stage, o0),
            }
        }
    }
}

impl Apply for ExactVectors {
    /// `sums + corr` in i64 (`saddw`), to f64 (`scvtf`, exact), to f32 (`fcvtn`, the one
    /// rounding), then `fmul` and clamp.
    #[inline(always)]
    unsafe fn apply(&self, _c: usize, sums: int32x4_t) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64.
        unsafe {
            let lo = vaddw_s32(self.corr[0], vget_low_s32(sums));
            let hi = vaddw_high_s32(self.corr[1], sums);
            let f = vcvt_high_f32_f64(vcvt_f32_f64(vcvtq_f64_s64(lo)), vcvtq_f64_s64(hi));
            self.y.scale_clamp(f)
        }
    }
}

impl Apply for WideVectors {
    /// `256 · high + sums + corr` in i64 (`sshll`, `saddw`, `add`), to f64 (`scvtf`, exact),
    /// to f32 (`fcvtn`, the one rounding), then `fmul` and clamp.
    #[inline(always)]
    unsafe fn apply(&self, c: usize, sums: int32x4_t) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64; column c's 4 rows lie in `high` (the
        // caller's contract).
        unsafe {
            let h = vld1q_s32(self.high.add(c * self.ldc));
            let lo = vaddw_s32(vshll_n_s32::<8>(vget_low_s32(h)), vget_low_s32(sums));
            let hi = vaddw_high_s32(vshll_high_n_s32::<8>(h), sums);
            let (lo, hi) = (vaddq_s64(lo, self.corr[0]), vaddq_s64(hi, self.corr[1]));
            let f = vcvt_high_f32_f64(vcvt_f32_f64(vcvtq_f64_s64(lo)), vcvtq_f64_s64(hi));
            self.y.scale_clamp(f)
        }
    }
}

/// f32, channels last: column `c`'s 4 rows are contiguous at `ptr + c · ldc`.
struct ColumnsF32<Y> {
    ptr: *mut f32,
    ldc: usize,
    y: Y,
}

impl<Y: Apply> Sink for ColumnsF32<Y> {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        for (j, s) in sums.into_iter().enumerate() {
            // SAFETY: NEON is always present on aarch64; the column lies in the output.
            unsafe { vst1q_f32(self.ptr.add((c + j) * self.ldc), self.y.apply(c + j, s)) };
        }
    }
}

/// i8, channels last: column `c`'s 4 rows are 4 contiguous bytes at `ptr + c · ldc`.
struct ColumnsI8<Y> {
    ptr: *mut i8,
    ldc: usize,
    y: Y,
    inv: float32x4_t,
    zp: float32x4_t,
}

impl<Y: Apply> Sink for ColumnsI8<Y> {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        for (j, s) in sums.into_iter().enumerate() {
            // SAFETY: as in ColumnsF32; 4 bytes of the column lie in the output.
            unsafe {
                let q = vmovn_s32(quantize_s32(self.y.apply(c + j, s), self.inv, self.zp));
                let b = vmovn_s16(vcombine_s16(q, q));
                let word = vget_lane_u32::<0>(vreinterpret_u32_s8(b));
                std::ptr::write_unaligned(self.ptr.add((c + j) * self.ldc) as *mut u32, word);
            }
        }
    }
}

/// The byte order that turns 4 columns of 4 rows' codes (byte `4·column + row`) into 4 rows of
/// 4 columns (byte `4·row + column`).
const TRANSPOSE_4X4_BYTES: [u8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// i8, channels first: row `r` at `ptr + r · ldk`, its columns contiguous (the codes an NCHW
/// graph's int8 layer writes for the int8 layer after it). 4 columns' codes are narrowed into
/// one register, transposed by one table lookup and stored as one 4-byte word per row; fewer
/// go byte by byte.
struct RowsI8<Y> {
    ptr: *mut i8,
    ldk: usize,
    y: Y,
    inv: float32x4_t,
    zp: float32x4_t,
}

impl<Y: Apply> Sink for RowsI8<Y> {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        // SAFETY: as in ColumnsF32; 4 rows × NC columns from c lie in the output.
        unsafe {
            let q: [int32x4_t; NC] = std::array::from_fn(|j| {
                quantize_s32(self.y.apply(c + j, sums[j]), self.inv, self.zp)
            });
            if NC == 4 {
                // Codes are in [−128, 127]: the narrowing moves keep them exactly.
                let lo = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
                let hi = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
                let bytes = vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(lo), vmovn_s16(hi)));
                let order = vld1q_u8(TRANSPOSE_4X4_BYTES.as_ptr());
                let rows = vreinterpretq_u32_u8(vqtbl1q_u8(bytes, order));
                let at = |r: usize| self.ptr.add(r * self.ldk + c) as *mut u32;
                std::ptr::write_unaligned(at(0), vgetq_lane_u32::<0>(rows));
                std::ptr::write_unaligned(at(1), vgetq_lane_u32::<1>(rows));
                std::ptr::write_unaligned(at(2), vgetq_lane_u32::<2>(rows));
                std::ptr::write_unaligned(at(3), vgetq_lane_u32::<3>(rows));
            } else {
                for (j, q) in q.into_iter().enumerate() {
                    let mut a = [0i32; 4];
                    vst1q_s32(a.as_mut_ptr(), q);
                    for (r, v) in a.into_iter().enumerate() {
                        *self.ptr.add(r * self.ldk + c + j) = v as i8;
                    }
                }
            }
        }
    }
}

/// f32, channels first: row `r` at `ptr + r · ldk`, its columns contiguous. 4 columns are
/// transposed into 4 rows and stored with one `st1` each; fewer go lane by lane.
struct RowsF32<Y> {
    ptr: *mut f32,
    ldk: usize,
    y: Y,
}

impl<Y: Apply> Sink for RowsF32<Y> {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        // SAFETY: as in ColumnsF32; 4 rows × NC columns from c lie in the output.
        unsafe {
            let y: [float32x4_t; NC] = std::array::from_fn(|j| self.y.apply(c + j, sums[j]));
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

/// Corrected i32 sums (a 16-bit input's high digits), channels last: column `c`'s 4 rows at
/// `ptr + c · ldc`, one `st1` each.
struct ColumnsI32 {
    ptr: *mut i32,
    ldc: usize,
    corr: int32x4_t,
}

impl Sink for ColumnsI32 {
    #[inline(always)]
    unsafe fn put<const NC: usize>(&self, c: usize, sums: [int32x4_t; NC]) {
        for (j, s) in sums.into_iter().enumerate() {
            // SAFETY: NEON is always present on aarch64; the column lies in the output.
            unsafe { vst1q_s32(self.ptr.add((c + j) * self.ldc), vaddq_s32(s, self.corr)) };
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

/// The largest scale whose products with i32 sums (below 2³¹ in magnitude, exactly 2³¹ at
/// most once converted) stay finite, so a clamp to `±f32::MAX` changes none of them.
const UNCLAMPED_SCALE: f32 = 79_228_162_514_264_337_593_543_950_336.0; // 2^96

/// Whether the stage's clamp changes no value of row blocks `rows`: it is `±f32::MAX` (none)
/// and every row's scale is at most 2⁹⁶ in magnitude (NaN is not).
fn unclamped(stage: &Stage<'_>, rows: Range<usize>) -> bool {
    let used = &stage.scale[rows.start * ROWS..rows.end * ROWS];
    stage.lo == -f32::MAX && stage.hi == f32::MAX && used.iter().all(|s| s.abs() <= UNCLAMPED_SCALE)
}

/// The plain stage of one row block on vectors whose lanes are 4 columns of one row (row
/// tiles, channels-first f32): `scvtf`, `fmul` by the row's lane of the scales, and the clamp
/// if `CLAMP` (leave it out only where [`unclamped`] holds) — the portable stage's
/// operations, so the same bits.
pub struct RowStage<const CLAMP: bool> {
    scale: float32x4_t,
    lo: float32x4_t,
    hi: float32x4_t,
}

impl<const CLAMP: bool> RowStage<CLAMP> {
    /// Rows `o0..o0 + 4` of `stage`. Panics unless they are a whole row block.
    #[inline(always)]
    pub fn load(stage: &Stage<'_>, o0: usize) -> Self {
        let scale = &stage.scale[o0..o0 + ROWS];
        // SAFETY: 4 floats, just checked; NEON is always present on aarch64.
        unsafe {
            RowStage {
                scale: vld1q_f32(scale.as_ptr()),
                lo: vdupq_n_f32(stage.lo),
                hi: vdupq_n_f32(stage.hi),
            }
        }
    }

    /// Row `R`'s corrected sums to floats.
    #[inline(always)]
    pub fn row<const R: i32>(&self, sums: int32x4_t) -> float32x4_t {
        // SAFETY: NEON is always present on aarch64.
        unsafe {
            let y = vmulq_laneq_f32::<R>(vcvtq_f32_s32(sums), self.scale);
            if CLAMP {
                vminnmq_f32(vmaxnmq_f32(y, self.lo), self.hi)
            } else {
                y
            }
        }
    }
}

/// Stores the first `n` (1–4) lanes of `v` at `dst`, with no call.
///
/// # Safety
/// `dst` is valid for `n` floats.
#[inline(always)]
pub unsafe fn store_part(dst: *mut f32, v: float32x4_t, n: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        match n {
            4.. => vst1q_f32(dst, v),
            3 => {
                vst1_f32(dst, vget_low_f32(v));
                vst1q_lane_f32::<2>(dst.add(2), v);
            }
            2 => vst1_f32(dst, vget_low_f32(v)),
            _ => vst1q_lane_f32::<0>(dst, v),
        }
    }
}

/// The transposing channels-first sink of row block `o0` ([`Tiles::rows_f32`]'s default),
/// for a kernel's partial tiles.
///
/// # Safety
/// As [`Tiles::rows_f32`]; rows `o0..o0 + 4` are a whole row block.
#[inline(always)]
pub unsafe fn rows_sink<'a>(
    stage: &'a Stage<'_>,
    o0: usize,
    ptr: *mut f32,
    ldk: usize,
) -> impl Sink + 'a {
    // SAFETY: the caller's contract; NEON.
    unsafe {
        RowsF32 {
            ptr: ptr.add(o0 * ldk),
            ldk,
            y: StageVectors::load(stage, o0),
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
