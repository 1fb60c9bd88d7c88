//! aarch64 int8 kernels: `neon` (ARMv8.0, every Cortex-A: Raspberry Pi 4's A72, Jetson Nano's
//! A57) and `neon-dotprod` (`sdot`, ARMv8.2 FEAT_DotProd: Pi 5's A76, Jetson Orin's A78AE).
//! Both read signed input bytes, packed by [`pack`].
//!
//! * `neon-dotprod` ([`sdot`], [`Format::DOT4_I8`]): tile 4 rows × 16 columns, 16
//!   accumulators. Four groups of 4 k per loop turn, written out: one 4-register weight
//!   load, four 4-register input loads, 64 `sdot` by element (16 MACs each) and 2 loop
//!   instructions: 1 024 MACs in 71 instructions, ~14 per instruction, against 4 for an f32
//!   `fmla`.
//! * `neon` ([`smull`], [`Format::K16_I8`]): no ARMv8.0 instruction multiplies int8 into
//!   32-bit lanes, so products go through i16 (the gemmlowp scheme). One register holds 16 k of
//!   one row, another 16 k of one column; `smull` multiplies their low halves (8 products),
//!   `smlal2` adds the high halves' products into the same i16 lanes (two products of
//!   |w| ≤ 127 and |x| ≤ 128 stay below 2^15), `sadalp` adds pairs into the i32 accumulator:
//!   16 MACs in 3 instructions. Tile 4 rows × 4 columns, its loop written out: per 16 k, 2
//!   four-register loads, 48 multiply-adds and 2 loop instructions for 256 MACs, ~4.9 per
//!   instruction against `fmla`'s 4; 16 per 3 is the most ARMv8.0 allows. The 4 partial sums of each accumulator
//!   are added by `addp` at the end of a tile, into one vector per column whose lanes are the
//!   4 rows: the channels-last layout of an NHWC graph, stored with no transpose.
//!
//! * `neon-16x8` ([`smlal16`], [`Format::CODES16`]): the `neon` kernel's one-product twin for
//!   16-bit inputs ([`Int8Kernel::codes16`]): `smlal` by element on 16-bit lanes, 4 MACs per
//!   instruction, where the two digit products take 6 instructions for 16.
//!
//! Both pack float inputs 16 values at a time ([`pack`]): 8-bit codes, or the two digit
//! planes of a 16-bit input in one pass. The output stage ([`store`]) runs on 4 lanes (add,
//! `scvtf`, `fmul`, clamp with `fmaxnm`/`fminnm`, and for i8 `fcvtns`; a 16-bit input's
//! combining stage in i64 and f64 first) with the same IEEE operations as the portable stage,
//! so the kernels give the same bits (checked under qemu as a Cortex-A72 and an A76).
//! Channels-first f32 outputs (an NCHW graph's 1×1 layers) come from tiles whose lanes are 4
//! columns of one row ([`store::RowStage`]): stored as they are, with no transpose, and with
//! no clamp where the stage's clamp changes no value.
//!
//! Executed instructions of whole graphs with them: `benches/icount/README.md`.

pub mod pack;
pub mod sdot;
pub mod smlal16;
pub mod smull;
pub mod store;

use std::arch::aarch64::*;

use super::{Format, Int8Kernel, Job, Pack, Quantizer};

/// ARMv8.0 NEON kernel; a value exists only through [`Neon::detect`].
#[derive(Debug)]
pub struct Neon(());

/// NEON kernel with `sdot`; a value exists only through [`NeonDot::detect`], so only on a core
/// with FEAT_DotProd.
#[derive(Debug)]
pub struct NeonDot(());

impl Neon {
    /// The kernel (NEON is part of every aarch64 core Kestrel supports).
    pub fn detect() -> Option<&'static dyn Int8Kernel> {
        std::arch::is_aarch64_feature_detected!("neon").then_some(&Neon(()) as &dyn Int8Kernel)
    }
}

impl NeonDot {
    /// The kernel, if the core has FEAT_DotProd.
    pub fn detect() -> Option<&'static dyn Int8Kernel> {
        (std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("dotprod"))
        .then_some(&NeonDot(()) as &dyn Int8Kernel)
    }
}

impl Int8Kernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn format(&self) -> Format {
        smull::FORMAT
    }

    fn run(&self, job: &Job<'_>) {
        job.check(smull::FORMAT);
        // SAFETY: NEON detected; `check` verified the format and sizes the tiles rely on.
        unsafe { smull::run(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        pack::pack_f32(p, q, smull::FORMAT, out)
    }

    fn pack_f32_digits(&self, p: &Pack<'_, f32>, q: Quantizer, hi: &mut [u8], lo: &mut [u8]) {
        pack::pack_f32_digits(p, q, smull::FORMAT, hi, lo)
    }

    fn pack_i8(&self, p: &Pack<'_, i8>, out: &mut [u8]) {
        pack::pack_i8(p, smull::FORMAT, out)
    }

    fn sums_rows_contiguous(&self) -> bool {
        true
    }

    fn codes16(&self) -> Option<&'static dyn Int8Kernel> {
        Some(&smlal16::Smlal16(()))
    }
}

impl Int8Kernel for NeonDot {
    fn name(&self) -> &'static str {
        "neon-dotprod"
    }

    fn format(&self) -> Format {
        sdot::FORMAT
    }

    fn run(&self, job: &Job<'_>) {
        job.check(sdot::FORMAT);
        // SAFETY: dotprod detected; `check` verified the format and sizes the tiles rely on.
        unsafe { sdot::run(job) }
    }

    fn pack_f32(&self, p: &Pack<'_, f32>, q: Quantizer, out: &mut [u8]) {
        pack::pack_f32(p, q, sdot::FORMAT, out)
    }

    fn pack_f32_digits(&self, p: &Pack<'_, f32>, q: Quantizer, hi: &mut [u8], lo: &mut [u8]) {
        pack::pack_f32_digits(p, q, sdot::FORMAT, hi, lo)
    }

    fn pack_i8(&self, p: &Pack<'_, i8>, out: &mut [u8]) {
        pack::pack_i8(p, sdot::FORMAT, out)
    }

    fn sums_rows_contiguous(&self) -> bool {
        true
    }
}

/// Quantizes 4 floats to signed codes in 32-bit lanes with the portable quantizer's operations
/// (`fmul`, `fadd`, `fmaxnm` (a NaN gives −128), `fminnm`, `fcvtns` rounding half to even).
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn quantize_s32(v: float32x4_t, inv: float32x4_t, zp: float32x4_t) -> int32x4_t {
    let v = vaddq_f32(vmulq_f32(v, inv), zp);
    let v = vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(-128.0)), vdupq_n_f32(127.0));
    vcvtnq_s32_f32(v)
}

/// Quantizes 4 floats to 16-bit codes in 32-bit lanes, as [`quantize_s32`] with the clamp
/// at `[−32768, 32767]`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn quantize16_s32(v: float32x4_t, inv: float32x4_t, zp: float32x4_t) -> int32x4_t {
    let v = vaddq_f32(vmulq_f32(v, inv), zp);
    let v = vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(-32768.0)), vdupq_n_f32(32767.0));
    vcvtnq_s32_f32(v)
}

/// Narrows 16 codes in `[−128, 127]` (in 32-bit lanes) to their bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn narrow16(q: [int32x4_t; 4]) -> int8x16_t {
    let lo = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
    let hi = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    vcombine_s8(vmovn_s16(lo), vmovn_s16(hi))
}
