//! Bit kernels of the binary operators, behind one trait, chosen once at start-up.
//!
//! Every binary layer (conv2d through a packed im2col, dense directly) reduces to one
//! primitive: an XOR-popcount matrix product over bit-packed rows,
//!
//! ```text
//! out[m·N + n] = Σ_{l < words} popcount(a[m·words + l] XOR b[n·words + l])     (m < M, n < N)
//! ```
//!
//! where `a` holds M rows of input patches and `b` N rows of weights, `words` u64 each, bit 1
//! meaning −1. The op turns popcounts into dot products (`dot = K − 2·popcount`, padding bits
//! are 0 on both sides so they never count) and applies its fused output stage.
//!
//! Implementations: [`generic`] (portable, `u64::count_ones`), `x86` (POPCNT, AVX2) and `neon`
//! (aarch64). [`select`] picks the best one the CPU supports, once; `KESTREL_KERNELS=generic`
//! forces the portable one. Every accelerated kernel is tested bit for bit against the portable
//! one (on aarch64 under qemu in CI).

pub mod generic;
pub mod mst;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

/// An XOR-popcount matrix product over bit-packed rows.
pub trait BinaryKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `x86-popcnt`, `neon`…).
    fn name(&self) -> &'static str;

    /// Computes `out[m·n_rows + n] = Σ_l popcount(a[m·words + l] ^ b[n·words + l])` for every
    /// row `m` of `a` and `n` of `b`. `a.len()` and `b.len()` are multiples of `words`;
    /// `out.len() == (a.len() / words) · (b.len() / words)`. `words` may be any size ≥ 1.
    fn xor_popcount(&self, a: &[u64], b: &[u64], words: usize, out: &mut [u32]);
}

/// Checks the shape contract of [`BinaryKernel::xor_popcount`]; returns (M, N).
pub fn check_dims(a: &[u64], b: &[u64], words: usize, out: &[u32]) -> (usize, usize) {
    assert!(words > 0, "words must be positive");
    assert_eq!(a.len() % words, 0, "a is not whole rows");
    assert_eq!(b.len() % words, 0, "b is not whole rows");
    let (m, n) = (a.len() / words, b.len() / words);
    assert_eq!(out.len(), m * n, "out must hold M×N counts");
    (m, n)
}

/// The portable kernel.
pub fn generic() -> &'static dyn BinaryKernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last (for tests, benchmarks and
/// [`select`]): `generic`, then `x86-popcnt`, `x86-avx2` on x86-64, or `neon` on aarch64.
pub fn available() -> Vec<&'static dyn BinaryKernel> {
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    kernels.extend(
        [x86::Popcnt::detect(), x86::Avx2::detect()]
            .into_iter()
            .flatten(),
    );
    #[cfg(target_arch = "aarch64")]
    kernels.extend(neon::Neon::detect());
    kernels
}

/// The kernel the ops use: the fastest available, unless `KESTREL_KERNELS=generic`.
/// Decided once per process.
pub fn select() -> &'static dyn BinaryKernel {
    static CHOICE: OnceLock<&'static dyn BinaryKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let forced = std::env::var("KESTREL_KERNELS").ok();
        let kernel = match forced.as_deref() {
            Some("generic") => generic(),
            Some(other) if !other.is_empty() => {
                log::warn!("KESTREL_KERNELS={other} is not known (use 'generic'); auto-selecting");
                *available().last().expect("generic is always available")
            }
            _ => *available().last().expect("generic is always available"),
        };
        log::info!("binary kernel: {}", kernel.name());
        kernel
    })
}
