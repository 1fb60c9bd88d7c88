//! Bit-packing kernels of `kestrel_bitpack`: floats → the packed binary layout of
//! [`crate::ops::packing`], behind one trait, chosen once at start-up like the other kernel
//! families.
//!
//! # What they compute
//!
//! A value packs to bit 1 (−1) when `x < 0` or NaN and to bit 0 (+1) when `x ≥ 0`, −0
//! included: the bit is `!(x ≥ 0)`, the ordered comparison every vector unit has.
//!
//! - [`BitpackKernel::pack_planes`] turns `C` channel planes of `P` pixels (`[C, H, W]`,
//!   `P = H·W`) into `P` pixels of `⌈C/64⌉` words (`[H, W, ⌈C/64⌉]`): channel `c` of pixel `p`
//!   is bit `c % 64` of word `p·⌈C/64⌉ + c/64`. Bits past the last channel are 0.
//! - [`BitpackKernel::pack_row`] packs a row of `K` values into `⌈K/64⌉` words, value `i` at
//!   bit `i % 64` of word `i/64`, bits past `K` 0.
//!
//! # How the planes are packed
//!
//! Packing planes is a transpose: a channel plane's consecutive values land in consecutive
//! words, one bit each. The vector kernels keep one 32-bit accumulator per pixel and lane and
//! walk a group's channels from the highest to the lowest, shifting each accumulator left by
//! one and adding the new bit (`acc = 2·acc + bit`): after 32 channels channel `g` sits at
//! bit `g`. Two such halves (channels 0–31 and 32–63 of a word) are interleaved into the
//! 64-bit words. Per value that is one load (a whole vector of pixels of one channel), one
//! compare and one or two integer operations — no per-bit shifts, no read-modify-write of the
//! output, each output word written once.
//!
//! All kernels compute the same bits: they are tested equal to [`reference_planes`] and
//! [`reference_row`] (the scalar definition) on every tail and on ±0, NaN and ±∞.

pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

use crate::ops::packing::{sign_bit_f32, words_for, WORD_BITS};

/// A bit-packing kernel.
pub trait BitpackKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `x86-avx2`, `x86-avx512`, `neon`).
    fn name(&self) -> &'static str;

    /// Packs `channels` planes (`src`, channel `c` at `c·P`, `P = src.len() / channels`) into
    /// `out`, `P · ⌈channels/64⌉` words (module docs). Panics when the lengths disagree.
    fn pack_planes(&self, src: &[f32], channels: usize, out: &mut [u64]);

    /// Packs `src` into `out`, `⌈src.len()/64⌉` words (module docs). Panics when the lengths
    /// disagree.
    fn pack_row(&self, src: &[f32], out: &mut [u64]);
}

/// Checks [`BitpackKernel::pack_planes`]'s contract; returns (pixels per plane, words per pixel).
pub(crate) fn check_planes(src: &[f32], channels: usize, out: &[u64]) -> (usize, usize) {
    assert!(channels > 0, "bitpack needs at least one channel");
    assert_eq!(src.len() % channels, 0, "bitpack: planes of equal size");
    let (plane, words) = (src.len() / channels, words_for(channels));
    assert_eq!(
        out.len(),
        plane * words,
        "bitpack: out must hold P·⌈C/64⌉ words"
    );
    (plane, words)
}

/// Checks [`BitpackKernel::pack_row`]'s contract.
pub(crate) fn check_row(src: &[f32], out: &[u64]) {
    assert_eq!(
        out.len(),
        words_for(src.len()),
        "bitpack: out must hold ⌈K/64⌉ words"
    );
}

/// A vector kernel's planes loop: packs pixels `0..done` of `(src, plane, channels, out,
/// words)` and returns `done`.
pub(crate) type PlanesBody = unsafe fn(*const f32, usize, usize, *mut u64, usize) -> usize;

/// A vector kernel's row loop: packs the whole words `0..done` of `(src, len, out)` and
/// returns `done`.
pub(crate) type RowBody = unsafe fn(*const f32, usize, *mut u64) -> usize;

/// Checks the contract, runs `body`, and packs the pixels it left portably.
///
/// # Safety
/// `body` must be callable on this CPU and must read only pixels `< plane` of channels
/// `< channels` and write only `out[p·words + j]` for pixels `< plane`, words `< words`.
pub(crate) unsafe fn planes_with(body: PlanesBody, src: &[f32], channels: usize, out: &mut [u64]) {
    let (plane, words) = check_planes(src, channels, out);
    let done = body(src.as_ptr(), plane, channels, out.as_mut_ptr(), words);
    generic::pack_pixels(src, plane, channels, done, plane, out, words);
}

/// Checks the contract, runs `body`, and packs the words it left portably.
///
/// # Safety
/// `body` must be callable on this CPU and must read only whole 64-value chunks of `src` and
/// write only `out[w]` for those chunks.
pub(crate) unsafe fn row_with(body: RowBody, src: &[f32], out: &mut [u64]) {
    check_row(src, out);
    let done = body(src.as_ptr(), src.len(), out.as_mut_ptr());
    generic::Generic.pack_row(&src[done * WORD_BITS..], &mut out[done..]);
}

/// The portable kernel.
pub fn generic() -> &'static dyn BitpackKernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last: `generic`, then `x86-avx2`
/// and `x86-avx512` on x86-64, or `neon` on aarch64.
pub fn available() -> Vec<&'static dyn BitpackKernel> {
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    kernels.extend(
        [x86::Avx2::detect(), x86::Avx512::detect()]
            .into_iter()
            .flatten(),
    );
    #[cfg(target_arch = "aarch64")]
    kernels.push(neon::Neon::detect());
    kernels
}

/// The kernel the op uses: the fastest available, unless `KESTREL_KERNELS` names another
/// (the rule is [`super::pick_by_name`]). Decided once per process.
pub fn select() -> &'static dyn BitpackKernel {
    static CHOICE: OnceLock<&'static dyn BitpackKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("bitpack", available(), |k| k.name()))
}

/// The definition of [`BitpackKernel::pack_planes`], one bit at a time (for tests).
pub fn reference_planes(src: &[f32], channels: usize, out: &mut [u64]) {
    let (plane, words) = check_planes(src, channels, out);
    out.fill(0);
    for c in 0..channels {
        for p in 0..plane {
            out[p * words + c / WORD_BITS] |= sign_bit_f32(src[c * plane + p]) << (c % WORD_BITS);
        }
    }
}

/// The definition of [`BitpackKernel::pack_row`], one bit at a time (for tests).
pub fn reference_row(src: &[f32], out: &mut [u64]) {
    check_row(src, out);
    out.fill(0);
    for (i, &v) in src.iter().enumerate() {
        out[i / WORD_BITS] |= sign_bit_f32(v) << (i % WORD_BITS);
    }
}
