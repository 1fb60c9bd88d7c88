//! int8 depthwise-convolution kernels of `kestrel_int8_depthwise`, behind one trait, chosen once
//! at start-up like the other kernel families.
//!
//! # What they compute
//!
//! The op lays out each channel's plane as the float depthwise op does (`super::depthwise`:
//! every kernel tap is one offset, stride 2 through phase planes), in the layout the kernel
//! reads ([`InputFormat`]): i16 values `q − zp` (the input's int8 codes minus their zero
//! point, so the padding is plain 0), or the i8 codes `q` themselves with the padding at `zp`
//! (half the bytes, and what `sdot` multiplies). Weights are symmetric i8 codes (in
//! `[−127, 127]`), held as i16. With `x = q − zp` either way, a kernel computes, for every
//! output row `r < rows` and column `c < cols`,
//!
//! ```text
//! acc = bias + Σ_t w[t] · x[taps[t] + r·row_step + c]          exact in i32
//! out = act(f32(acc) · scale)                                    (Out::F32)
//! ```
//!
//! with `act` the float depthwise kernels' [`Activation`] (clamp, then optional HardSwish),
//! applied operation by operation. An int8 output ([`Out::I8`], output scale `1 / inv` and zero
//! point `zp`) requantizes with constants computed once per plane ([`Requant`]):
//!
//! ```text
//! a   = f32(acc)
//! v   = a · m                                          no HardSwish          m = scale · inv
//!     = (a · m) · unit(a · s6 + ½)                     HardSwish             s6 = scale · ⅙
//!     = (x · inv) · gate(x),  x = clamp(a · scale)     a clamp, then HardSwish
//! out = min(max(round_half_even(v) + zp, lo), hi)      in i32, rounding saturated
//! ```
//!
//! with `unit(t) = min(max(t, 0), 1)`, `gate` HardSwish's factor (`hardswish_gate`), `m` and
//! `s6` f32 products computed once per plane, and `[lo, hi]` the activation's clamp in codes
//! (`round(low · inv) + zp`, …) within `[−128, 127]` (the whole range with HardSwish): a ReLU
//! or ReLU6 costs no float operation, HardSwish five, and the codes need no float zero-point
//! add or clamp. The sum is exact (`|q − zp| ≤ 255`, `|w| ≤ 127`, at most 49
//! taps: below 2^21), so the order of the taps does not matter, and every kernel does the
//! float steps with the same IEEE operations in the same order: all kernels agree bit for bit
//! with [`generic()`].
//!
//! As in the float kernels, vector kernels run whole vectors along a row and may read up to
//! [`SLACK`] values past it. What they store stays inside the plane: the NEON kernel ends a
//! row with a vector overlapping the one before it, and lets a row narrower than a vector
//! spill into the rows stored after it.

#[cfg(target_arch = "aarch64")]
pub mod dot;
pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod pad;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

pub(crate) use super::depthwise::Square;
pub use super::depthwise::{hardswish_gate, unit, Activation};

/// Values a [`PlaneJob`]'s input must hold past the start of its last output row's last tap
/// read, beyond `cols`, so that vector kernels may run whole vectors of up to 16 lanes.
pub const SLACK: usize = 16;

/// Largest `|input|` of a job: `|q − zp|` for i8 codes and a zero point in `[−128, 127]`.
pub const MAX_INPUT: i16 = 255;

/// Values an [`Input::Codes`] plane holds past what [`SLACK`] asks: the `sdot` kernel loads
/// 32 bytes per phase and input row for a tile of 16 columns.
pub const CODES_SLACK: usize = 16;

/// The padded-plane layout a kernel reads ([`Depthwise8Kernel::format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// i16 `q − zp`, padding 0 ([`Input::Offsets`]).
    Offsets,
    /// i8 codes `q`, padding `zp`, [`CODES_SLACK`] more values ([`Input::Codes`]).
    Codes,
}

/// A channel's padded plane (phase planes for stride 2), laid out by the op.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// `q − zp` as i16 (in `[−255, 255]`); the padding is 0.
    Offsets(&'a [i16]),
    /// The codes `q` and their zero point (in `[−128, 127]`); the padding holds `zp`.
    Codes(&'a [i8], i32),
}

impl Input<'_> {
    /// Values the plane holds.
    pub fn len(&self) -> usize {
        match self {
            Input::Offsets(v) => v.len(),
            Input::Codes(v, _) => v.len(),
        }
    }

    /// Whether the plane is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `q − zp` at `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> i32 {
        match *self {
            Input::Offsets(v) => i32::from(v[i]),
            Input::Codes(v, zp) => i32::from(v[i]) - zp,
        }
    }
}

/// What every plane of a layer shares: each tap's read offset for output row 0, column 0,
/// the step between output rows' reads, the output size, and the taps' 3×3 or 5×5 structure
/// for the NEON kernel's square tiles. Built once per layer ([`Geometry::new`] checks the taps
/// and finds how far the reads go), so that a plane's check is a few comparisons.
#[derive(Debug, Clone, Copy)]
pub struct Geometry<'a> {
    taps: &'a [usize],
    row_step: usize,
    rows: usize,
    cols: usize,
    /// Values a plane's input holds at least: past the last row's last tap read, `cols` and
    /// [`SLACK`] (0 for an empty output).
    reads: usize,
    // Only the NEON kernel runs square tiles.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    square: Option<Square>,
}

impl<'a> Geometry<'a> {
    /// The geometry of `rows × cols` outputs reading at `taps` (offsets for output row 0,
    /// column 0), output rows `row_step` apart. Panics without taps, with more than 49, or
    /// if the reads' extent overflows.
    pub fn new(taps: &'a [usize], row_step: usize, [rows, cols]: [usize; 2]) -> Geometry<'a> {
        assert!(!taps.is_empty(), "a depthwise job needs taps");
        assert!(taps.len() <= 49, "at most 7x7 taps");
        let last_tap = *taps.iter().max().expect("taps");
        // `rows · cols` (the check's output size) must not overflow either.
        let reads = match rows > 0 && cols > 0 {
            true => (rows - 1)
                .checked_mul(row_step)
                .and_then(|r| {
                    r.checked_add(last_tap)?
                        .checked_add(cols)?
                        .checked_add(SLACK)
                })
                .filter(|_| rows.checked_mul(cols).is_some())
                .expect("a depthwise job's reads overflow"),
            false => 0,
        };
        let square = Square::find(taps, row_step);
        if let Some(sq) = square {
            // The square tiles read only at offsets up to the last tap, a row_step apart.
            assert!(
                sq.k * sq.k == taps.len()
                    && sq.stride * sq.ld == row_step
                    && sq.last_tap() <= last_tap,
                "a depthwise job's square does not fit its taps"
            );
        }
        Geometry {
            taps,
            row_step,
            rows,
            cols,
            reads,
            square,
        }
    }

    /// Offset of each tap's read for output row 0, column 0.
    pub fn taps(&self) -> &'a [usize] {
        self.taps
    }

    /// Distance in a plane's input between output row `r` and `r + 1`'s reads.
    pub fn row_step(&self) -> usize {
        self.row_step
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Output columns (the output plane is `rows × cols`, rows contiguous).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The taps' square structure, if they have one.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub(crate) fn square(&self) -> Option<Square> {
        self.square
    }
}

/// One channel of an int8 depthwise convolution (module docs).
#[derive(Debug, Clone, Copy)]
pub struct PlaneJob<'a> {
    /// The channel's padded plane, laid out by the op.
    pub input: Input<'a>,
    /// The layer's taps and output size.
    pub geometry: Geometry<'a>,
    /// One weight per tap, in `[−127, 127]`.
    pub weights: &'a [i16],
    /// The channel's i32 bias (at the scale `scale`).
    pub bias: i32,
    /// The channel's dequantization scale (input scale × weight scale).
    pub scale: f32,
    /// The fused activation.
    pub act: Activation,
}

/// Where a job's output plane goes.
#[derive(Debug)]
pub enum Out<'a> {
    /// Floats.
    F32(&'a mut [f32]),
    /// int8 codes, requantized as [`Requant`] says (module docs).
    I8 {
        /// The plane.
        out: &'a mut [i8],
        /// 1 / output scale.
        inv_scale: f32,
        /// Output zero point, in `[−128, 127]`.
        zp: i32,
    },
}

impl Out<'_> {
    /// Values the plane holds.
    pub fn len(&self) -> usize {
        match self {
            Out::F32(o) => o.len(),
            Out::I8 { out, .. } => out.len(),
        }
    }

    /// Whether the plane is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PlaneJob<'_> {
    /// Checks the contract of [`Depthwise8Kernel::run`]: one weight per tap, an output of
    /// `rows × cols`, and every read (with [`SLACK`] past each row, and [`CODES_SLACK`] more
    /// for codes) inside `input`, whose zero point is in `[−128, 127]`. The weights are the
    /// op's to keep in `[−127, 127]` (checked in debug builds) and offsets in `[−255, 255]`:
    /// then the sums are exact (module docs).
    pub fn check(&self, out_len: usize) {
        let g = &self.geometry;
        assert_eq!(g.taps.len(), self.weights.len(), "one weight per tap");
        debug_assert!(
            self.weights.iter().all(|w| (-127..=127).contains(w)),
            "weights in [-127, 127]"
        );
        assert_eq!(out_len, g.rows * g.cols, "out must hold rows × cols");
        let reads = match self.input {
            Input::Offsets(_) => g.reads,
            Input::Codes(_, zp) => {
                assert!((-128..=127).contains(&zp), "input zero point {zp}");
                g.reads + CODES_SLACK
            }
        };
        assert!(
            reads <= self.input.len(),
            "depthwise job reads past its input"
        );
    }

    /// The bias that makes `Σ w · q` over codes the sum over offsets: `bias − zp · Σ w`
    /// (wrapping: the full sum is exact in i32, module docs).
    pub fn codes_bias(&self, zp: i32) -> i32 {
        let sum: i32 = self.weights.iter().map(|&w| i32::from(w)).sum();
        self.bias.wrapping_sub(zp.wrapping_mul(sum))
    }

    /// The float result of an accumulator (bias included): `act(f32(acc) · scale)`.
    #[inline(always)]
    pub fn value(&self, acc: i32) -> f32 {
        self.act.apply(acc as f32 * self.scale)
    }

    /// The int8 output stage's constants for an output scale `1 / inv_scale` and zero point
    /// `zp` (module docs). Panics unless `zp` is in `[−128, 127]`.
    pub fn requant(&self, inv_scale: f32, zp: i32) -> Requant {
        assert!((-128..=127).contains(&zp), "output zero point {zp}");
        // The clamp's ends in codes, exact in f64 (±∞ for no clamp saturate to the range).
        let code = |v: f32| {
            let c = (f64::from(v) * f64::from(inv_scale)).round_ties_even() + f64::from(zp);
            c.clamp(-128.0, 127.0) as i32
        };
        let (lo, hi) = match self.act.hardswish {
            true => (-128, 127),
            false => (code(self.act.low), code(self.act.high)),
        };
        Requant {
            mul: self.scale * inv_scale,
            sixth: self.scale * (1.0 / 6.0),
            inv_scale,
            zp,
            lo,
            hi,
        }
    }

    /// The int8 code of an accumulator (bias included), by the constants of
    /// [`PlaneJob::requant`].
    #[inline(always)]
    pub fn code(&self, rq: &Requant, acc: i32) -> i8 {
        let a = acc as f32;
        let v = match (self.act.hardswish, self.act.clamps()) {
            (false, _) => a * rq.mul,
            (true, false) => (a * rq.mul) * unit(a * rq.sixth + 0.5),
            (true, true) => {
                let x = self.act.clamp(a * self.scale);
                (x * rq.inv_scale) * hardswish_gate(x)
            }
        };
        let r = round_i32(v);
        r.saturating_add(rq.zp).max(rq.lo).min(rq.hi) as i8
    }
}

/// `round_half_even(v)` as i32, saturated, NaN to 0: what `fcvtns` gives. On x86-64 one
/// `cvtss2si` (which rounds half to even under the default rounding mode), NaN masked to 0
/// and `v` raised to −2^31 first, and `i32::MIN` from a positive overflow saturated: the
/// baseline x86-64 has no rounding instruction, and `round_ties_even` there is a library
/// call, the int8 depthwise copy's bottleneck.
#[inline(always)]
pub fn round_i32(v: f32) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is baseline on x86-64.
        let r = unsafe {
            let x = _mm_set_ss(v);
            let x = _mm_and_ps(x, _mm_cmpord_ss(x, x));
            _mm_cvtss_si32(_mm_max_ss(x, _mm_set_ss(-2_147_483_648.0)))
        };
        // `cvtss2si` gives i32::MIN for anything at or past 2^31.
        if r == i32::MIN && v > 0.0 {
            i32::MAX
        } else {
            r
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // `as` saturates and takes NaN to 0; the value is already an integer.
        v.round_ties_even() as i32
    }
}

/// The constants of one plane's int8 output stage (module docs), from
/// [`PlaneJob::requant`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Requant {
    /// `scale · inv_scale`: one accumulator step in output codes.
    pub mul: f32,
    /// `scale · ⅙`: one accumulator step in HardSwish's gate (HardSwish without a clamp).
    pub sixth: f32,
    /// 1 / output scale.
    pub inv_scale: f32,
    /// Output zero point.
    pub zp: i32,
    /// Smallest code: the activation's lower clamp in codes (−128 with HardSwish).
    pub lo: i32,
    /// Largest code: the activation's upper clamp in codes (127 with HardSwish).
    pub hi: i32,
}

/// An int8 depthwise-convolution kernel: one channel plane per call.
pub trait Depthwise8Kernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `neon`, `neon-dotprod`).
    fn name(&self) -> &'static str;

    /// The layout the op should lay planes out in for it. Every kernel takes both; the
    /// other one may run slower.
    fn format(&self) -> InputFormat {
        InputFormat::Offsets
    }

    /// Computes the job's output plane into `out` (module docs). Panics if the job fails
    /// [`PlaneJob::check`].
    fn run(&self, job: &PlaneJob<'_>, out: Out<'_>);
}

/// The portable kernel.
pub fn generic() -> &'static dyn Depthwise8Kernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last: `generic`, then `neon` on
/// aarch64 and `neon-dotprod` where the core has FEAT_DotProd, `x86-avx2` on x86-64 with
/// AVX2.
pub fn available() -> Vec<&'static dyn Depthwise8Kernel> {
    #[allow(unused_mut)]
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "aarch64")]
    kernels.extend(std::iter::once(neon::Neon::detect()).chain(dot::NeonDot::detect()));
    #[cfg(target_arch = "x86_64")]
    kernels.extend(x86::Avx2::detect());
    kernels
}

/// The kernel the op uses: the fastest available, unless `KESTREL_KERNELS` names another
/// (the rule is [`super::pick_by_name`]). Decided once per process.
pub fn select() -> &'static dyn Depthwise8Kernel {
    static CHOICE: OnceLock<&'static dyn Depthwise8Kernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("int8 depthwise", available(), |k| k.name()))
}

/// The definition, one output at a time (for the kernels' tests).
pub fn reference(job: &PlaneJob<'_>, out: Out<'_>) {
    job.check(out.len());
    let acc = |r: usize, c: usize| {
        let base = r * job.geometry.row_step + c;
        job.geometry
            .taps
            .iter()
            .zip(job.weights)
            .fold(job.bias, |a, (&t, &w)| {
                a + i32::from(w) * job.input.get(base + t)
            })
    };
    match out {
        Out::F32(o) => {
            for (i, v) in o.iter_mut().enumerate() {
                *v = job.value(acc(i / job.geometry.cols, i % job.geometry.cols));
            }
        }
        Out::I8 { out, inv_scale, zp } => {
            let rq = job.requant(inv_scale, zp);
            for (i, v) in out.iter_mut().enumerate() {
                *v = job.code(&rq, acc(i / job.geometry.cols, i % job.geometry.cols));
            }
        }
    }
}
