//! Half-precision depthwise kernels: `kestrel_depthwise` with `precision = "f16"` on cores
//! with FEAT_FP16 arithmetic (Pi 5's Cortex-A76, Orin's A78AE), where `fmla` on eight
//! 16-bit lanes does twice the work of the f32 kernels' four.
//!
//! # What they compute
//!
//! The f32 kernels' sum ([`super`]), with the plane, the weights and the running sum of the
//! taps in IEEE binary16, each multiply-add rounded once (to nearest, ties to even), then
//! widened to f32 (exactly), the bias added in f32 and the f32 kernels' activation applied:
//!
//! ```text
//! acc = 0
//! acc = fma_h(h(w[t]), input[taps[t] + r·row_step + c], acc)     for t = 0, 1, … in order
//! out[r·cols + c] = act(f32(acc) + bias)
//! ```
//!
//! The bias stays f32 because a batch-norm folded into the layer often makes it cancel most of
//! the taps' sum: in binary16 its own rounding would be a large part of a small result.
//!
//! `h` rounds an f32 to binary16, `fma_h` is a fused multiply-add rounded to binary16
//! ([`generic::fma`]), and the input is already binary16 (the op's padded copy rounds it, after
//! the input HardSwish, [`pad`]). Every kernel gives these bits: the NEON kernel's `fmla .8h`
//! and the portable kernel's exact emulation ([`generic`]) are tested against each other under
//! qemu as a Cortex-A76.
//!
//! # Int8 codes out
//!
//! Where the layer's output goes to an int8 layer (`kestrel_depthwise` with `output = "int8"`),
//! the output stage stays in binary16 and writes the codes ([`HalfKernel::run_plane_codes`],
//! [`codes`]): the bias added as two binary16 parts (`hi = h(bias)`, `lo = h(bias − hi)`: the
//! pair carries the bias to 2⁻²² of itself, so a bias that cancels the taps' sum leaves an
//! exact small result), the clamp at binary16 bounds, tract's HardSwish steps with the final
//! `· ⅙` and the quantizing multiply folded into one binary16 constant `k`, then rounding to
//! the nearest integer (ties to even), the zero point added, saturated to `[−128, 127]`:
//!
//! ```text
//! s = (acc + hi) + lo
//! s = min(max(s, h(low)), h(high))                       if the activation clamps
//! y = (min(max(s + 3, 0), 6) · s) · h(1 / (6·scale))     HardSwish
//! y = s · h(1 / scale)                                   otherwise
//! code = clamp(round(y) + zero point, −128, 127)
//! ```
//!
//! every operation rounded to binary16 (on eight lanes per instruction: 10 instructions and an
//! 8-byte store per 8 outputs, where the f32 stage widens, adds, activates and stores 32 bytes
//! in 16 and the next layer then quantizes them again). Besides the taps' sum's bound, the
//! code differs from the f32 stage's by the roundings of these few operations: each at most
//! half a binary16 step, 1/32 of a code near the top of the code range. The tests hold the
//! codes within one of the f32 stage's plus that bound, and equal for most outputs.
//!
//! # Why, and its error
//!
//! An int8 graph's depthwise layers read the output of an int8 layer and are read by one: the
//! 8-bit quantization on both sides (a step of about 1/256 of the range, 48 dB at best) swamps
//! binary16's 11-bit rounding (2⁻¹¹ of each value, ~66 dB per operation). Against the f32
//! kernels, each output differs by at most `(T + 3)·2⁻¹¹·(|bias| + Σ|w·x|)` before the
//! activation (`T` taps; the rounding of the input, of the weights, of each of the `T`
//! sums and of the bias addition; [`f16_bound`]), while the values stay below binary16's largest finite value, 65 504
//! (the converter checks the layer's calibrated input range, `quantize/src/depthwise.rs`). The
//! converter writes `precision = "f16"` only in int8 graphs, where it keeps the end-to-end
//! accuracy (`quantize/README.md`); a float graph's depthwise layers stay f32. A core without
//! FEAT_FP16 (Pi 4's A72, Nano's A57, x86) runs such a layer with the f32 kernels: f16 is a
//! permission, as XNNPACK's and ncnn's fp16 inference are.

pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod pad;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

use super::{Activation, Layout, PlaneJob};

/// One plane's own data in binary16 (raw bits): its laid-out input, its weights (one per
/// tap) and its bias.
#[derive(Debug, Clone, Copy)]
pub struct HalfPlane<'a> {
    /// The channel's padded plane (phase planes for stride 2), binary16 bits.
    pub input: &'a [u16],
    /// One weight per tap, binary16 bits.
    pub weights: &'a [u16],
    /// The channel's bias (f32: added after the binary16 sum is widened).
    pub bias: f32,
}

/// The constants of the binary16 stage that writes int8 codes (module docs), for one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfCodes {
    /// The activation's clamp bounds in binary16 (used where it clamps).
    pub low: u16,
    /// Upper bound.
    pub high: u16,
    /// The quantizing multiplier `h(1 / scale)`, or `h(1 / (6·scale))` after a HardSwish.
    pub k: u16,
    /// The output zero point, in `[−128, 127]`.
    pub zp: i16,
}

impl HalfCodes {
    /// The stage writing codes of scale `1 / inv_scale` and zero point `zp` after `act`, or
    /// `None` where binary16 cannot hold its multiplier as a normal number (the op then
    /// quantizes the f32 stage's output instead).
    pub fn new(act: Activation, inv_scale: f32, zp: i32) -> Option<HalfCodes> {
        let k = if act.hardswish {
            inv_scale / 6.0
        } else {
            inv_scale
        };
        let kh = to_half(k);
        let normal = (0x0400..0x7c00).contains(&(kh & 0x7fff)) && kh & 0x8000 == 0;
        (normal && (-128..=127).contains(&zp)).then(|| HalfCodes {
            low: to_half(act.low),
            high: to_half(act.high),
            k: kh,
            zp: zp as i16,
        })
    }
}

/// The largest bias (in magnitude) the binary16 codes stage takes: its high part stays far
/// from binary16's largest finite value.
pub const MAX_CODES_BIAS: f32 = 16384.0;

/// The two binary16 parts of a bias (module docs): `h(bias)` and `h(bias − h(bias))`.
#[inline]
pub fn split_bias(bias: f32) -> (u16, u16) {
    let hi = to_half(bias);
    (hi, to_half(bias - to_f32(hi)))
}

/// The codes stage of one output (module docs): `acc` the binary16 sum of its taps, `bias`
/// split by [`split_bias`], `act` the layer's activation (which parts apply).
#[inline]
pub fn codes(acc: u16, (hi, lo): (u16, u16), q: &HalfCodes, act: Activation) -> i8 {
    use generic::{add, max, min, mul};
    let mut s = add(add(acc, hi), lo);
    if act.clamps() {
        s = min(max(s, q.low), q.high);
    }
    let y = if act.hardswish {
        pad::hardswish_by(s, q.k)
    } else {
        mul(s, q.k)
    };
    // `fcvtns` to i16 (saturating), `sqadd` the zero point, `sqxtn` to i8.
    let r = to_f32(y).round_ties_even().clamp(-32768.0, 32767.0) as i32;
    (r + i32::from(q.zp)).clamp(-128, 127) as i8
}

/// A half-precision depthwise kernel: one channel plane per call.
pub trait HalfKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic-f16`, `neon-fp16`).
    fn name(&self) -> &'static str;

    /// Computes the output of `plane`, laid out as `layout` says, into `out` (module docs).
    /// Panics if the plane fails [`check`].
    fn run_plane(&self, layout: &Layout<'_>, plane: HalfPlane<'_>, out: &mut [f32]);

    /// Computes the int8 codes of `plane` with the binary16 codes stage `q` (module docs) into
    /// `out`. Panics if the plane fails [`check`] or its bias exceeds [`MAX_CODES_BIAS`].
    fn run_plane_codes(
        &self,
        layout: &Layout<'_>,
        plane: HalfPlane<'_>,
        q: &HalfCodes,
        out: &mut [i8],
    );

    /// Writes the f32 plane `src` into `buf`, the padded binary16 layout this kernel reads
    /// ([`pad`]; every kernel's fill gives the bits of [`pad::fill_portable`]). Panics unless
    /// the lengths are the fill's.
    fn fill(&self, fill: &pad::HalfFill, buf: &mut [u16], src: &[f32]) {
        pad::fill_portable(fill, buf, src)
    }
}

/// Checks one plane against `layout` (as [`Layout::check`]: one weight per tap, an output of
/// `rows × cols`, every read with [`super::SLACK`] past each row inside the input).
pub fn check(layout: &Layout<'_>, plane: &HalfPlane<'_>, out_len: usize) {
    layout.check_lengths(plane.weights.len(), plane.input.len(), out_len);
}

/// [`check`], and the bias within [`MAX_CODES_BIAS`] (for the codes stage).
pub fn check_codes(layout: &Layout<'_>, plane: &HalfPlane<'_>, out_len: usize) {
    check(layout, plane, out_len);
    assert!(
        plane.bias.abs() <= MAX_CODES_BIAS,
        "depthwise f16: a bias of {} for the codes stage",
        plane.bias
    );
}

/// The portable kernel (exact emulation: slow, for tests and for measuring on a host what a
/// FEAT_FP16 board computes).
pub fn generic() -> &'static dyn HalfKernel {
    &generic::Generic
}

/// Every half-precision kernel this CPU can run: `generic-f16`, then `neon-fp16` where the
/// core has FEAT_FP16.
pub fn available() -> Vec<&'static dyn HalfKernel> {
    #[cfg_attr(not(target_arch = "aarch64"), allow(unused_mut))]
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "aarch64")]
    kernels.extend(neon::NeonFp16::detect());
    kernels
}

/// The kernel `precision = "f16"` layers use, or `None` to run them with the f32 kernels:
/// `neon-fp16` where the core has FEAT_FP16; the emulation only where `KESTREL_KERNELS`
/// names it (`generic-f16`: a host computing what a FEAT_FP16 board does). Decided once per
/// process, logged.
pub fn select() -> Option<&'static dyn HalfKernel> {
    static CHOICE: OnceLock<Option<&'static dyn HalfKernel>> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let var = std::env::var("KESTREL_KERNELS").ok();
        let kernels = available();
        let chosen = match var.as_deref() {
            Some("generic-f16") => Some(generic()),
            _ => kernels.iter().copied().find(|k| k.name() != "generic-f16"),
        };
        match chosen {
            Some(k) => log::info!("depthwise f16 kernel: {}", k.name()),
            None => log::info!("depthwise f16 kernel: none (no FEAT_FP16): f16 layers run f32"),
        }
        chosen
    })
}

/// binary16 bits of `x`, rounded to nearest (ties to even), as `fcvtn` does.
#[inline]
pub fn to_half(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// The f32 value of binary16 bits (exact).
#[inline]
pub fn to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// The largest difference allowed between a half-precision kernel and the f32
/// [`super::reference_fma`] at row `r`, column `c` of `job` (the f32 job the half plane was
/// rounded from), before the activation: `(T + 3)·2⁻¹¹·(|bias| + Σ_t |w[t]·x_t|)` (module
/// docs), with a margin for the f32 sum's own rounding.
pub fn f16_bound(job: &PlaneJob<'_>, r: usize, c: usize) -> f32 {
    let base = r * job.row_step + c;
    let magnitude: f64 = job
        .taps
        .iter()
        .zip(job.weights)
        .map(|(&t, &w)| (w as f64 * job.input[base + t] as f64).abs())
        .sum::<f64>()
        + (job.bias as f64).abs();
    let n = job.taps.len() as f64 + 3.0;
    (n * 2f64.powi(-11) * magnitude * 1.01) as f32
}
