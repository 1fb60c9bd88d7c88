//! f32 depthwise-convolution kernels of `kestrel_depthwise`, behind one trait, chosen once at
//! start-up like the binary and int8 kernels.
//!
//! # What they compute
//!
//! One channel of a depthwise convolution is a small 2-D convolution of one plane. The op
//! (`crate::ops::depthwise`) lays the channel's zero-padded plane out so that every kernel tap
//! is one offset into a buffer (a [`PlaneJob`]): for stride 1 the padded plane itself, rows
//! `ld` apart; for stride 2 its even columns then its odd columns (two *phase* planes), so
//! that consecutive outputs of a tap read consecutive floats at every stride. A kernel then
//! computes, for every output row `r < rows` and column `c < cols`,
//!
//! ```text
//! acc = bias
//! acc = acc + w[t] · input[taps[t] + r·row_step + c]     for t = 0, 1, … in order
//! out[r·cols + c] = act(acc)
//! ```
//!
//! with `act` the fused activation ([`Activation`]): clamp to `[low, high]` (none, ReLU,
//! ReLU6), then optionally HardSwish `x · min(max(x·(1/6) + 1/2, 0), 1)`.
//!
//! What every plane of a layer shares is a [`Layout`], built and checked once per layer: the
//! taps, sizes and activation, how far a plane's reads reach, and the square structure the
//! NEON kernel's register tiles need; each plane then passes three length checks
//! ([`DepthwiseKernel::run_plane`]). [`DepthwiseKernel::run`] takes a whole [`PlaneJob`]
//! (layout and data) for tests and benchmarks.
//!
//! Padding, borders and strides are all in the layout: the inner loop has no border case, and
//! a vector kernel runs whole vectors along a row (the last one partial: its extra lanes read
//! [`SLACK`] floats past the row and are never stored).
//!
//! # Rounding
//!
//! The vector kernels (`x86-avx2` with FMA, `x86-avx512`, `neon`) accumulate with a fused
//! multiply-add per tap in tap order and apply the activation with separate IEEE multiplies
//! and adds: they agree bit for bit with each other and with [`reference_fma`]. The portable
//! kernel ([`generic`](mod@generic)) multiplies and adds separately (a scalar FMA is a library
//! call where the CPU lacks one); it differs from them by at most the bound of
//! [`fma_bound`]: `2·(T+1)·u·(|bias| + Σ_t |w[t]·x_t|)` for `T` taps, `u = 2⁻²⁴`, before the
//! activation. A clamp keeps that bound; HardSwish (slope at most 1.5) multiplies it by 1.5
//! and adds its own few roundings.
//! NaN inputs propagate in no specified way.

pub mod fp16;
pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod pad;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt::Debug;
use std::sync::OnceLock;

use crate::kernels::int8::codes::quantize_codes;
use crate::kernels::int8::Quantizer;

/// Floats a [`PlaneJob`]'s input must hold past the start of its last output row's last tap
/// read, beyond `cols`, so that vector kernels may run whole vectors of up to 16 lanes.
pub const SLACK: usize = 16;

/// The activation fused into a depthwise kernel's output stage: clamp, then optional HardSwish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activation {
    /// Lower clamp (`−∞` for none, 0 for ReLU).
    pub low: f32,
    /// Upper clamp (`+∞` for none, 6 for ReLU6).
    pub high: f32,
    /// HardSwish after the clamp.
    pub hardswish: bool,
}

impl Activation {
    /// No activation.
    pub const NONE: Activation = Activation {
        low: f32::NEG_INFINITY,
        high: f32::INFINITY,
        hardswish: false,
    };

    /// Whether it clamps at all (a finite `low` or `high`).
    #[inline(always)]
    pub fn clamps(&self) -> bool {
        self.low != f32::NEG_INFINITY || self.high != f32::INFINITY
    }

    /// The clamp alone: `min(max(x, low), high)`, as the vector units compute it.
    #[inline(always)]
    pub fn clamp(&self, x: f32) -> f32 {
        min(max(x, self.low), self.high)
    }

    /// The activation applied to one value (the kernels' arithmetic, operation by operation).
    #[inline(always)]
    pub fn apply(&self, acc: f32) -> f32 {
        let x = self.clamp(acc);
        if self.hardswish {
            x * hardswish_gate(x)
        } else {
            x
        }
    }
}

/// HardSwish's factor, `min(max(x · ⅙ + ½, 0), 1)` (`hardswish(x) = x · gate`), operation by
/// operation as the vector kernels compute it.
#[inline(always)]
pub fn hardswish_gate(x: f32) -> f32 {
    unit(x * (1.0 / 6.0) + 0.5)
}

/// `min(max(t, 0), 1)`, as the vector units compute it for non-NaN values.
#[inline(always)]
pub fn unit(t: f32) -> f32 {
    min(max(t, 0.0), 1.0)
}

/// `max` as the vector units compute it for non-NaN values.
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// `min` as the vector units compute it for non-NaN values.
#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// One channel of a depthwise convolution, as offsets into its laid-out input (module docs).
#[derive(Debug, Clone, Copy)]
pub struct PlaneJob<'a> {
    /// The channel's padded plane (phase planes for stride 2), laid out by the op.
    pub input: &'a [f32],
    /// Offset of each tap's read for output row 0, column 0.
    pub taps: &'a [usize],
    /// One weight per tap.
    pub weights: &'a [f32],
    /// The channel's bias.
    pub bias: f32,
    /// Distance in `input` between output row `r` and `r + 1`'s reads.
    pub row_step: usize,
    /// Output rows.
    pub rows: usize,
    /// Output columns (the output plane is `rows × cols`, rows contiguous).
    pub cols: usize,
    /// The fused activation.
    pub act: Activation,
}

impl PlaneJob<'_> {
    /// Checks the contract of [`DepthwiseKernel::run`]: one weight per tap, an output of
    /// `rows × cols`, and every read (with [`SLACK`] past each row) inside `input`.
    pub fn check(&self, out: &[f32]) {
        Layout::of(self).check(&self.plane(), out);
    }

    /// The job's own data.
    pub fn plane(&self) -> Plane<'_> {
        Plane {
            input: self.input,
            weights: self.weights,
            bias: self.bias,
        }
    }
}

/// What every plane of a layer shares: a [`PlaneJob`] without the plane's data, with what the
/// kernels derive from it worked out once per layer instead of once per plane (how far a
/// plane's reads reach, the square structure of 3×3 and 5×5 kernels).
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    taps: &'a [usize],
    row_step: usize,
    rows: usize,
    cols: usize,
    act: Activation,
    /// Input floats a plane's reads need, [`SLACK`] included (0 for an empty output).
    reach: usize,
    /// The kernel's square structure, if it is 3×3 or 5×5 and has one (read by the NEON
    /// kernel only).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    square: Option<Square>,
}

/// A K×K kernel's structure in the op's layout: `taps[K·ky + kx] = column[kx] + ky·ld`,
/// `row_step = stride·ld`, and `column[kx] = column[kx % column_stride] + kx / column_stride`
/// (the phase planes of a stride along the rows). The NEON kernel's square tiles need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Square {
    /// K: 3 or 5.
    pub k: usize,
    /// Distance between kernel rows.
    pub ld: usize,
    /// The stride between output rows: 1 or 2.
    pub stride: usize,
    /// The stride between output columns: 1 or 2 (its phase planes).
    pub column_stride: usize,
    /// Each kernel column's offset (`[..k]`).
    pub column: [usize; 5],
}

impl Square {
    /// The structure of a 3×3 or 5×5 kernel's `taps` at `row_step`, if they have one.
    pub(crate) fn find(taps: &[usize], row_step: usize) -> Option<Square> {
        Square::of::<3>(taps, row_step).or_else(|| Square::of::<5>(taps, row_step))
    }

    /// The largest offset a square tile reads for output row 0, column 0: the last kernel
    /// row's rightmost column (the largest tap).
    pub(crate) fn last_tap(&self) -> usize {
        (self.k - 1) * self.ld + self.column[..self.k].iter().max().copied().unwrap_or(0)
    }

    fn of<const K: usize>(taps: &[usize], row_step: usize) -> Option<Square> {
        if taps.len() != K * K {
            return None;
        }
        let column: [usize; K] = std::array::from_fn(|kx| taps[kx]);
        let ld = taps[K].checked_sub(taps[0]).filter(|&ld| ld > 0)?;
        let regular = taps
            .chunks_exact(K)
            .zip((0..K).map(|ky| ky * ld))
            .all(|(row, base)| row.iter().zip(&column).all(|(&tap, &c)| tap == c + base));
        let stride = row_step / ld;
        let phased = |s: usize| (0..K).all(|kx| column[kx] == column[kx % s] + kx / s);
        let column_stride = [1, 2].into_iter().find(|&s| phased(s))?;
        (regular && (1..=2).contains(&stride) && stride * ld == row_step).then(|| Square {
            k: K,
            ld,
            stride,
            column_stride,
            column: std::array::from_fn(|kx| column.get(kx).copied().unwrap_or(0)),
        })
    }
}

impl<'a> Layout<'a> {
    /// The layout of `rows × cols` output planes read through `taps` (module docs).
    /// Panics without taps.
    pub fn new(
        taps: &'a [usize],
        row_step: usize,
        rows: usize,
        cols: usize,
        act: Activation,
    ) -> Layout<'a> {
        assert!(!taps.is_empty(), "a depthwise job needs taps");
        let reach = if rows > 0 && cols > 0 {
            taps.iter().max().expect("taps") + (rows - 1) * row_step + cols + SLACK
        } else {
            0
        };
        let square = Square::find(taps, row_step);
        Layout {
            taps,
            row_step,
            rows,
            cols,
            act,
            reach,
            square,
        }
    }

    /// The layout of `job`'s plane.
    pub fn of(job: &PlaneJob<'a>) -> Layout<'a> {
        Layout::new(job.taps, job.row_step, job.rows, job.cols, job.act)
    }

    /// The job of one plane of this layout.
    pub fn job<'b>(&'b self, plane: Plane<'b>) -> PlaneJob<'b> {
        PlaneJob {
            input: plane.input,
            taps: self.taps,
            weights: plane.weights,
            bias: plane.bias,
            row_step: self.row_step,
            rows: self.rows,
            cols: self.cols,
            act: self.act,
        }
    }

    /// Checks one plane against the layout: one weight per tap, an output of `rows × cols`,
    /// and every read (with [`SLACK`] past each row) inside `input`. Three comparisons.
    pub fn check(&self, plane: &Plane<'_>, out: &[f32]) {
        self.check_lengths(plane.weights.len(), plane.input.len(), out.len());
    }

    /// [`Layout::check`] on lengths alone (weights, input values, output floats): the
    /// binary16 kernels' planes too.
    pub(crate) fn check_lengths(&self, weights: usize, input: usize, out: usize) {
        assert_eq!(self.taps.len(), weights, "one weight per tap");
        assert_eq!(out, self.rows * self.cols, "out must hold rows × cols");
        assert!(self.reach <= input, "depthwise job reads past its input");
    }
}

/// One plane's own data: its laid-out input, its weights (one per tap) and its bias.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The channel's padded plane (phase planes for stride 2).
    pub input: &'a [f32],
    /// One weight per tap.
    pub weights: &'a [f32],
    /// The channel's bias.
    pub bias: f32,
}

/// A depthwise-convolution kernel: one channel plane per call.
pub trait DepthwiseKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `x86-avx2`, `x86-avx512`, `neon`).
    fn name(&self) -> &'static str;

    /// Computes the output of `plane`, laid out as `layout` says, into `out` (module docs).
    /// Panics if the plane fails [`Layout::check`].
    fn run_plane(&self, layout: &Layout<'_>, plane: Plane<'_>, out: &mut [f32]);

    /// Computes the int8 codes of `plane` into `out`: each output quantized with `q` as
    /// [`crate::kernels::int8::quantize`] does it (the next int8 layer's quantization; NaN
    /// unspecified). By default the f32 output goes to `tmp` (`out`'s length) and is quantized
    /// from there ([`crate::kernels::int8::codes::quantize_codes`]) while it is in cache.
    /// Panics as [`Self::run_plane`], or if the lengths differ.
    fn run_plane_codes(
        &self,
        layout: &Layout<'_>,
        plane: Plane<'_>,
        q: Quantizer,
        out: &mut [i8],
        tmp: &mut [f32],
    ) {
        self.run_plane(layout, plane, tmp);
        quantize_codes(tmp, q, out);
    }

    /// Computes the job's output plane into `out` (module docs). Panics if the job fails
    /// [`PlaneJob::check`].
    fn run(&self, job: &PlaneJob<'_>, out: &mut [f32]) {
        self.run_plane(&Layout::of(job), job.plane(), out)
    }
}

/// The portable kernel.
pub fn generic() -> &'static dyn DepthwiseKernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last: `generic`, then
/// `x86-avx2` (with FMA) and `x86-avx512` on x86-64, or `neon` on aarch64.
pub fn available() -> Vec<&'static dyn DepthwiseKernel> {
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
pub fn select() -> &'static dyn DepthwiseKernel {
    static CHOICE: OnceLock<&'static dyn DepthwiseKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("depthwise", available(), |k| k.name()))
}

/// The vector kernels' result, computed one scalar FMA at a time (for their bit-exactness
/// tests; slow where the CPU has no FMA instruction).
pub fn reference_fma(job: &PlaneJob<'_>, out: &mut [f32]) {
    job.check(out);
    for r in 0..job.rows {
        let base = r * job.row_step;
        for c in 0..job.cols {
            let mut acc = job.bias;
            for (&t, &w) in job.taps.iter().zip(job.weights) {
                acc = w.mul_add(job.input[base + t + c], acc);
            }
            out[r * job.cols + c] = job.act.apply(acc);
        }
    }
}

/// The largest difference allowed between the portable kernel and [`reference_fma`] at row
/// `r`, column `c`, before the activation: `2·(T+1)·u·(|bias| + Σ_t |w[t]·x_t|)`, twice the
/// classic bound `γ_{T+1}` of a sum of `T+1` terms evaluated in any of the two ways.
pub fn fma_bound(job: &PlaneJob<'_>, r: usize, c: usize) -> f32 {
    let base = r * job.row_step + c;
    let magnitude: f64 = job
        .taps
        .iter()
        .zip(job.weights)
        .map(|(&t, &w)| (w as f64 * job.input[base + t] as f64).abs())
        .sum::<f64>()
        + (job.bias as f64).abs();
    let n = job.taps.len() as f64 + 1.0;
    (2.0 * n * f64::from(f32::EPSILON) * 0.5 * magnitude * 1.0001) as f32
}

/// `p`, which the compiler cannot see through: a tile's row pointers are then offsets from
/// its own base rather than per-plane pointers hoisted out of the tile loops (dozens for a
/// 5×5 tile, spilled to the stack and reloaded in every tile).
// The asm reads and writes no memory: it only hides where the pointer came from.
#[allow(clippy::pointers_in_nomem_asm_block)]
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn opaque<T>(p: *const T) -> *const T {
    let mut p = p;
    // SAFETY: an empty instruction sequence; `p` is unchanged.
    unsafe {
        std::arch::asm!("/* {p} */", p = inout(reg) p, options(pure, nomem, nostack, preserves_flags))
    };
    p
}

/// Calls `$m!` with the square job shapes the NEON kernels (f32 and binary16) tile, one per
/// line: module name, K, (row stride, column stride), the input rows of a four-row tile (none:
/// the shape has no four-row tiles), of a two-row tile, of a one-row tile, and the kernel
/// columns. Stride-1 shapes take four-row tiles: each input row loaded once serves four output
/// rows (K + 3 row loads per 4 rows instead of K + 1 per 2); stride-2 ones stop at two, where
/// a taller tile's loads save less and its code would double again. [`Square::find`] yields K 3 or 5 and strides 1 or 2;
/// a shape not listed runs per-tap tiles.
#[cfg(target_arch = "aarch64")]
macro_rules! square_shapes {
    ($m:ident) => {
        $m! {
            k3s1, 3, (1, 1), [0 1 2 3 4 5], [0 1 2 3], [0 1 2], [0 1 2];
            k3s2, 3, (2, 2), [], [0 1 2 3 4], [0 1 2], [0 1 2];
            k3s2x1, 3, (2, 1), [], [0 1 2 3 4], [0 1 2], [0 1 2];
            k5s1, 5, (1, 1), [0 1 2 3 4 5 6 7], [0 1 2 3 4 5], [0 1 2 3 4], [0 1 2 3 4];
            k5s2, 5, (2, 2), [], [0 1 2 3 4 5 6], [0 1 2 3 4], [0 1 2 3 4];
            k5s2x1, 5, (2, 1), [], [0 1 2 3 4 5 6], [0 1 2 3 4], [0 1 2 3 4];
        }
    };
}
#[cfg(target_arch = "aarch64")]
pub(crate) use square_shapes;
