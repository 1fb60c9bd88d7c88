//! f32 matrix-product kernels of `kestrel_linear` (a float 1×1 convolution or dense layer),
//! behind one trait, chosen once at start-up like the other kernel families.
//!
//! # What they compute
//!
//! `Y[o, c] = clamp(acc)` with `acc = bias[o]`, then `acc = fma(W[o, k], X[k, c], acc)` for
//! `k = 0 … K−1` in that order (one fused multiply-add per term, one rounding each), for
//! `o < M` output channels and `c < N` columns. `clamp` is `min(max(acc, low), high)` when the
//! layer has a fused ReLU or clip (a NaN sum becomes `low`, as `f32::max` does), and nothing
//! otherwise. Every kernel performs exactly these operations in this order, whatever its tile,
//! so all kernels give the same bits as [`generic()`] (tested under qemu as a Cortex-A72 and
//! A76, and on x86 with AVX2). The portable kernel uses `f32::mul_add`, one instruction on
//! aarch64 and on x86 with FMA, a library call elsewhere (x86 without FMA has no vector
//! kernel here either; tract's own ops serve those CPUs better, `--linear tract`).
//!
//! # Layouts
//!
//! * `X` is read in place: `X[k, c]` at `x[k · x_stride + c]`, the channels-first layout of
//!   one image (`x_stride` = H·W), so the op needs no packing copy. A kernel's tile reads a
//!   few consecutive columns of each k row.
//! * Weights are packed once at load per block of [`ROWS`] = 8 rows: `[row block][K][8]`,
//!   rows past M zero; the bias likewise padded to whole blocks ([`PackedWeights`]).
//! * `Y[o, c]` at `y[(o − first row) · y_stride + c]`: each output row contiguous, as a
//!   channels-first output is.
//!
//! Implementations: [`generic`](mod@generic) (portable, one output at a time), `neon`
//! (`neon`: tiles of 8 rows × 8 columns, 16 accumulators, `fmla` by element; its main loop
//! 72 instructions per 4 k, 64 of them `fmla`; 4- and 1-column tiles for the rest of a row),
//! `x86`
//! (`x86-avx2`: AVX2 + FMA, tiles of 4 rows × 16 columns, per k two loads, four broadcasts
//! and eight FMAs; `x86-avx512`: tiles of 8 rows × 32 columns, per k two loads, eight
//! broadcasts and 16 FMAs). [`select`] picks the best one the CPU has, once per process;
//! `KESTREL_KERNELS=NAME` forces one.

pub mod generic;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod x86;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::OnceLock;

/// Rows per packed weight block.
pub const ROWS: usize = 8;

/// The clamp fused after the sum: `min(max(acc, low), high)`, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clamp {
    /// Lower bound (0 for a ReLU).
    pub low: f32,
    /// Upper bound (6 for a ReLU6; `f32::INFINITY` for a ReLU).
    pub high: f32,
    /// Whether the clamp applies at all.
    pub on: bool,
}

impl Clamp {
    /// No activation.
    pub const NONE: Clamp = Clamp {
        low: f32::NEG_INFINITY,
        high: f32::INFINITY,
        on: false,
    };

    /// `min(max(x, low), high)`.
    pub fn new(low: f32, high: f32) -> Clamp {
        Clamp {
            low,
            high,
            on: true,
        }
    }

    /// The activation of one sum.
    #[inline(always)]
    pub fn apply(self, acc: f32) -> f32 {
        if self.on {
            acc.max(self.low).min(self.high)
        } else {
            acc
        }
    }
}

/// Weights and bias packed for the kernels: `[row block][K][ROWS]` f32, rows past M zero.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeights {
    data: Vec<f32>,
    bias: Vec<f32>,
    rows: usize,
    k: usize,
}

impl PackedWeights {
    /// Packs `w` (`[rows, k]` row-major) and `bias` (`[rows]`). Panics on other lengths or
    /// `k == 0` (the op checks its tensors first).
    pub fn new(w: &[f32], bias: &[f32], rows: usize, k: usize) -> PackedWeights {
        assert!(k > 0 && rows > 0, "weights must have rows and k");
        assert_eq!(w.len(), rows * k, "weights must be rows × k");
        assert_eq!(bias.len(), rows, "bias must have one value per row");
        let blocks = rows.div_ceil(ROWS);
        let mut data = vec![0f32; blocks * k * ROWS];
        for o in 0..rows {
            let (rb, r) = (o / ROWS, o % ROWS);
            for kk in 0..k {
                data[(rb * k + kk) * ROWS + r] = w[o * k + kk];
            }
        }
        let mut padded = bias.to_vec();
        padded.resize(blocks * ROWS, 0.0);
        PackedWeights {
            data,
            bias: padded,
            rows,
            k,
        }
    }

    /// Output rows (M).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Reduction length (K).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Row blocks (M / [`ROWS`] rounded up).
    pub fn blocks(&self) -> usize {
        self.rows.div_ceil(ROWS)
    }

    /// Block `rb`'s weights, `[K][ROWS]`.
    pub fn block(&self, rb: usize) -> &[f32] {
        &self.data[rb * self.k * ROWS..][..self.k * ROWS]
    }

    /// Block `rb`'s bias, [`ROWS`] values.
    pub fn bias(&self, rb: usize) -> &[f32; ROWS] {
        self.bias[rb * ROWS..][..ROWS]
            .try_into()
            .expect("whole blocks")
    }

    /// Output rows of block `rb` that exist (8 but for the last block).
    pub fn rows_in(&self, rb: usize) -> usize {
        (self.rows - rb * ROWS).min(ROWS)
    }
}

/// One product: the rows of `blocks` (row blocks of `w`) over columns `0..cols`.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Packed weights and bias.
    pub w: &'a PackedWeights,
    /// The row blocks to compute; `y`'s first row is `blocks.start · ROWS`.
    pub blocks: Range<usize>,
    /// `X[k, c]` at `x[k · x_stride + c]`.
    pub x: &'a [f32],
    /// Distance between two k rows of `x`.
    pub x_stride: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between two rows of the output.
    pub y_stride: usize,
    /// The fused activation.
    pub clamp: Clamp,
}

impl Job<'_> {
    /// Output rows this job writes.
    pub fn out_rows(&self) -> usize {
        (self.blocks.end * ROWS).min(self.w.rows) - self.blocks.start * ROWS
    }

    /// Panics unless every read and write the kernels make lies in `x` and `y`: the blocks
    /// exist, `x` holds K rows of `cols` columns `x_stride` apart and `y` the job's rows
    /// `y_stride` apart.
    pub fn check(&self, y: &[f32]) {
        let w = self.w;
        assert!(
            self.blocks.start <= self.blocks.end && self.blocks.end <= w.blocks(),
            "row blocks {:?} of {}",
            self.blocks,
            w.blocks()
        );
        assert!(
            self.x_stride >= self.cols && self.y_stride >= self.cols,
            "strides shorter than the columns"
        );
        if self.cols == 0 || self.blocks.is_empty() {
            return;
        }
        assert!(
            self.x.len() >= (w.k - 1) * self.x_stride + self.cols,
            "input holds {} values, the product reads {} × {} ({} apart)",
            self.x.len(),
            w.k,
            self.cols,
            self.x_stride
        );
        assert!(
            y.len() >= (self.out_rows() - 1) * self.y_stride + self.cols,
            "output holds {} values, the product writes {} × {} ({} apart)",
            y.len(),
            self.out_rows(),
            self.cols,
            self.y_stride
        );
    }
}

/// Bytes of packed weights a kernel keeps in cache while it runs them over every column
/// ([`Job::chunks`]).
pub const WEIGHT_CHUNK_BYTES: usize = 32 * 1024;

impl Job<'_> {
    /// The job's row blocks in chunks of at most [`WEIGHT_CHUNK_BYTES`] of weights (at least
    /// one block each). A kernel runs one chunk over all columns, panel by panel, before the
    /// next: the chunk's weights stay in the core's caches across the panels and each input
    /// panel across the chunk's blocks, where one row block over all columns (the input
    /// streamed once per block) or one panel over all rows (all the weights streamed once per
    /// panel) would go to memory for large layers.
    pub fn chunks(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let per_block = self.w.k() * ROWS * std::mem::size_of::<f32>();
        let chunk = (WEIGHT_CHUNK_BYTES / per_block).max(1);
        self.blocks
            .clone()
            .step_by(chunk)
            .map(move |b| b..(b + chunk).min(self.blocks.end))
    }
}

/// A vector kernel's body for one clamp setting: `(job, y)` with `y` pointing into the
/// output `job.check` accepted.
pub(crate) type Body = unsafe fn(&Job<'_>, *mut f32);

/// Checks `job` against `y`, skips an empty job, and runs `clamped` or `unclamped` (a vector
/// kernel's body compiled with and without the clamp).
///
/// # Safety
/// Both bodies must be safe to call on this CPU for any job that passed [`Job::check`].
pub(crate) unsafe fn run_checked(job: &Job<'_>, y: &mut [f32], clamped: Body, unclamped: Body) {
    job.check(y);
    if job.cols == 0 || job.blocks.is_empty() {
        return;
    }
    let body = if job.clamp.on { clamped } else { unclamped };
    // SAFETY: the caller's contract; the job passed its check.
    unsafe { body(job, y.as_mut_ptr()) }
}

/// A float matrix-product kernel.
pub trait LinearKernel: Send + Sync + Debug {
    /// Short name, for logs and benchmarks (`generic`, `x86-avx2`, `x86-avx512`, `neon`).
    fn name(&self) -> &'static str;

    /// Computes the job's output rows into `y` (module docs). Panics if the job fails
    /// [`Job::check`].
    fn run(&self, job: &Job<'_>, y: &mut [f32]);
}

/// The portable kernel.
pub fn generic() -> &'static dyn LinearKernel {
    &generic::Generic
}

/// Every kernel this CPU can run, portable first and fastest last: `generic`, then `x86-avx2`
/// (with FMA) and `x86-avx512` on x86-64, or `neon` on aarch64.
pub fn available() -> Vec<&'static dyn LinearKernel> {
    let mut kernels = vec![generic()];
    #[cfg(target_arch = "x86_64")]
    kernels.extend(x86::Avx2::detect());
    #[cfg(target_arch = "x86_64")]
    kernels.extend(x86::Avx512::detect());
    #[cfg(target_arch = "aarch64")]
    kernels.push(neon::Neon::detect());
    kernels
}

/// The kernel the op uses: the fastest available, unless `KESTREL_KERNELS` names another
/// (the rule is [`super::pick_by_name`]). Decided once per process.
pub fn select() -> &'static dyn LinearKernel {
    static CHOICE: OnceLock<&'static dyn LinearKernel> = OnceLock::new();
    *CHOICE.get_or_init(|| super::select_from("linear", available(), |k| k.name()))
}
