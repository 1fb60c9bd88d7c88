//! f32 max-pooling kernels of `kestrel_max_pool_2x2`, behind one trait, chosen once at start-up
//! like the other kernel families.
//!
//! # What they compute
//!
//! One plane of `h × w` floats (rows contiguous) becomes `⌊h/2⌋ × ⌊w/2⌋`:
//!
//! ```text
//! out[r, c] = max(max(in[2r, 2c], in[2r+1, 2c]), max(in[2r, 2c+1], in[2r+1, 2c+1]))
//! ```
//!
//! (a last odd row or column is dropped: ONNX `MaxPool` with `ceil_mode = 0`). A maximum of
//! non-NaN floats is exact, so every kernel gives the same result whatever order it combines
//! the four values in, up to the sign of a zero maximum where +0 and −0 meet; with a NaN
//! among them the result is unspecified (a NaN or one of the others), as in tract and
//! onnxruntime.
//!
//! The vector kernels take the vertical maximum of two rows a vector at a time, then the
//! pairwise maximum of neighbouring columns (NEON `fmaxp`; AVX2 an even/odd shuffle), so each
//! output costs well under one instruction.

pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

/// A 2×2 stride-2 max-pooling kernel: one plane per call.
pub trait PoolKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `x86-avx2`, `x86-avx512`, `neon`).
    fn name(&self) -> &'static str;

    /// Pools the `h × w` plane `src` into `out`, `⌊h/2⌋ × ⌊w/2⌋` (module docs). Panics when
    /// the lengths disagree.
    fn max_2x2(&self, src: &[f32], h: usize, w: usize, out: &mut [f32]);
}

/// Checks [`PoolKernel::max_2x2`]'s contract; returns the output rows and columns.
pub(crate) fn check(src: &[f32], h: usize, w: usize, out: &[f32]) -> (usize, usize) {
    assert_eq!(src.len(), h * w, "max_2x2: src must hold h × w floats");
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(
        out.len(),
        oh * ow,
        "max_2x2: out must hold ⌊h/2⌋ × ⌊w/2⌋ floats"
    );
    (oh, ow)
}

/// The portable kernel.
pub fn generic() -> &'static dyn PoolKernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last: `generic`, then `x86-avx2`
/// (also named `x86-avx512` where the CPU has AVX-512F, so that one name forces every family)
/// on x86-64, or `neon` on aarch64.
pub fn available() -> Vec<&'static dyn PoolKernel> {
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    kernels.extend(
        [x86::Avx2::detect(), x86::Avx2::detect_avx512()]
            .into_iter()
            .flatten(),
    );
    #[cfg(target_arch = "aarch64")]
    kernels.push(neon::Neon::detect());
    kernels
}

/// The kernel the op uses: the fastest available, unless `KESTREL_KERNELS` names another
/// (the rule is [`super::pick_by_name`]). Decided once per process.
pub fn select() -> &'static dyn PoolKernel {
    static CHOICE: OnceLock<&'static dyn PoolKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("pool", available(), |k| k.name()))
}
