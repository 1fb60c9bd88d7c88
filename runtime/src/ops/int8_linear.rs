//! `kestrel_int8_linear`: an int8 1×1 convolution or dense layer with its quantization fused.
//!
//! The input is viewed as `[outer, K, inner]` around its contracted `axis` (`[N, C, H·W]` for
//! an NCHW 1×1 convolution, `[N, K, 1]` for a dense layer on `[N, K]`); the output holds the
//! input's other axes in order with the `O` output channels at `output_axis` (as built, the
//! same position as `axis`). `Y[O, columns] = W[O, K] · X[K, columns]` in int8 with i32 sums,
//! through the kernels of [`crate::kernels::int8`]; [`Int8Linear::layout`] says how the
//! columns lie (channels first: per image over the contiguous `inner`; channels last: over
//! every position at once, k contiguous).
//!
//! tract moves MobileNet-style graphs to channels last (its fastest aarch64 depthwise kernel
//! is channel-inner) by moving axes through the ops that allow it. This op allows a move of
//! either channel axis, absorbing it like tract's `EinSum` (its two sides may then differ:
//! channels-first input, channels-last output), so the int8 graph keeps that layout too.
//!
//! What tract 0.23.9 runs as four ops (a quantizing cast, `Conv`/`EinSum{q_params}`, a cast of
//! the i32 accumulator to f32, a per-channel multiply, plus a ReLU or clip) is one op here:
//! * a float input is quantized (scale `input_scale`, zero point `input_zero_point`, i8) while
//!   it is packed for the kernel, column block by column block; an i8 input (from another int8
//!   layer) is only repacked;
//! * the output stage adds `bias − zp·Σ W` (i32), converts to f32, multiplies by `scale[o]`
//!   (the input scale × the channel's weight scale), clamps to `[low, high]` (a fused ReLU or
//!   clip), and stores f32 or, with `output = "int8"`, requantizes to i8
//!   (`output_zero_point`, `output_scale`).
//!
//! With `input_bits = 16` (a float input only) the input is quantized to 16 bits instead
//! (`input_zero_point` in `[−32768, 32767]`): the weights stay i8 and the products run on the
//! same int8 kernels, once per digit of the 16-bit codes (`q = 256·hi + lo + 128`, see
//! [`k8::pack_f32_digits`]), and the two i32 sums meet in i64 in the second product's output
//! stage ([`k8::Wide`]):
//! `y = (256·Σ W·hi + Σ W·lo + bias + (128 − zp)·Σ W) · scale[o]`. Twice the multiplies of an
//! 8-bit input, for an input step 256 times finer: what a layer needs whose input has a few
//! values far out in the tails (a detector's peaks), where one 8-bit step over the whole
//! range crushes everything else. (TFLite calls this the 16×8 mode.) Where the kernel has a
//! one-product twin ([`k8::Int8Kernel::codes16`]: ARMv8.0 NEON, whose 8-bit products are no
//! faster than its 16-bit ones) and `K ≤` [`k8::MAX_K16`], the codes are packed as i16 and
//! multiplied once, `y = (Σ W·q + bias − zp·Σ W) · scale[o]`: the same integer, rounded once,
//! so the same bits. The correction is added in i32 (the 8-bit stage) where no row's sum can
//! leave i32 (`32768·Σ|W| + |bias − zp·Σ W| < 2^31`, most layers), in i64 otherwise.
//!
//! Work is split over the runtime's threads by column blocks (64 columns per task, each task
//! packing its columns and multiplying them while they are in cache); when that leaves threads
//! idle (small late feature maps) the op packs every block first and splits the rows too.

use tract_nnef::internal::*;
use tract_nnef::ser::{numeric, string};

use super::parallel::{run_indexed, Disjoint};
use super::scratch;
use crate::kernels::int8::{self as k8, PackedWeights, Stage, Strides, COLS};

/// NNEF name.
pub const NAME: &str = "kestrel_int8_linear";

/// Column blocks per task.
const BLOCKS_PER_TASK: usize = 4;

/// The clamp bound meaning "none".
pub const NO_CLAMP: f32 = f32::MAX;

/// What the op writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Int8Output {
    /// f32.
    Float,
    /// i8 with this zero point and scale (typed `QI8`).
    Int8 {
        /// Zero point.
        zero_point: i32,
        /// Scale.
        scale: f32,
    },
}

impl Int8Output {
    /// The output's type: f32, or `QI8` with the zero point and scale.
    pub fn datum_type(&self) -> DatumType {
        match *self {
            Int8Output::Float => f32::datum_type(),
            Int8Output::Int8 { zero_point, scale } => {
                DatumType::QI8(QParams::ZpScale { zero_point, scale })
            }
        }
    }

    /// Checks an i8 output's zero point (in `[−128, 127]`) and scale (finite, positive),
    /// naming `op`.
    pub fn check(&self, op: &str) -> TractResult<()> {
        if let Int8Output::Int8 { zero_point, scale } = *self {
            ensure!(
                (-128..=127).contains(&zero_point) && scale.is_finite() && scale > 0.0,
                "{op}: output zero point {zero_point} must be in [-128, 127] and scale {scale} finite and positive"
            );
        }
        Ok(())
    }
}

impl std::hash::Hash for Int8Output {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if let Int8Output::Int8 { zero_point, scale } = *self {
            zero_point.hash(state);
            scale.to_bits().hash(state);
        }
    }
}

/// The int8 linear operator.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    /// Weights `[O, K]` i8, in `[−127, 127]`.
    pub weights: Arc<Tensor>,
    /// i32 bias `[O]` at the scale `input_scale · weight_scale[o]`.
    pub bias: Arc<Tensor>,
    /// f32 `[O]`: `input_scale · weight_scale[o]`.
    pub scale: Arc<Tensor>,
    /// Contracted axis of the input.
    pub axis: usize,
    /// Axis of the output holding the output channels (the other axes keep the input's
    /// order). Equal to `axis` as built; tract may move either side to channels last (see
    /// [`Int8Linear::layout`]).
    pub output_axis: usize,
    /// Input quantization: zero point (of an i8 code, or of a 16-bit one with `input_bits`
    /// 16).
    pub input_zero_point: i32,
    /// Input quantization: 8 or 16 bits (16: a float input quantized to 16 bits, see the
    /// module docs).
    pub input_bits: u32,
    /// Input quantization: scale.
    pub input_scale: f32,
    /// Lower clamp of the float result (`-NO_CLAMP`: none).
    pub low: f32,
    /// Upper clamp (`NO_CLAMP`: none).
    pub high: f32,
    /// Output type.
    pub output: Int8Output,
    packed: Arc<PackedWeights>,
    corr: Vec<i32>,
    corr_u: Vec<i32>,
    scales: Vec<f32>,
    /// 16-bit input: per row `bias + (128 − zp)·Σ W` (added to `256·Σ W·hi + Σ W·lo`).
    corr16: Vec<i64>,
    /// 16-bit input in one product: the kernel (`self.packed` is in its format), and, where
    /// `Σ W·q + bias − zp·Σ W` may leave i32 for some row, that correction in i64 (otherwise
    /// the stage adds `corr` in i32, exactly, and converts once as the i64 stage would).
    kernel16: Option<&'static dyn k8::Int8Kernel>,
    corr_q: Option<Vec<i64>>,
    /// 16-bit input: per row, what makes a kernel's stored sum `Σ W·digit` (0 over signed
    /// codes, `−128·Σ W` over offset-binary ones).
    digit_corr: Vec<i32>,
    digit_corr_u: Vec<i32>,
}

impl PartialEq for Int8Linear {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.bias == other.bias
            && self.scale == other.scale
            && self.axis == other.axis
            && self.output_axis == other.output_axis
            && self.input_zero_point == other.input_zero_point
            && self.input_bits == other.input_bits
            && self.input_scale.to_bits() == other.input_scale.to_bits()
            && self.low.to_bits() == other.low.to_bits()
            && self.high.to_bits() == other.high.to_bits()
            && self.output == other.output
    }
}

impl Eq for Int8Linear {}

impl Int8Linear {
    /// Builds the op reading an 8-bit input, checking the parameters against each other.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weights: Arc<Tensor>,
        bias: Arc<Tensor>,
        scale: Arc<Tensor>,
        axis: usize,
        input_zero_point: i32,
        input_scale: f32,
        clamp: (f32, f32),
        output: Int8Output,
    ) -> TractResult<Int8Linear> {
        let input = (input_zero_point, input_scale, 8);
        Self::build(weights, bias, scale, axis, input, clamp, output)
    }

    /// Builds the op reading a float input quantized to 16 bits (zero point in
    /// `[−32768, 32767]`; `bias` and `scale` at that input scale), see the module docs.
    #[allow(clippy::too_many_arguments)]
    pub fn new_wide(
        weights: Arc<Tensor>,
        bias: Arc<Tensor>,
        scale: Arc<Tensor>,
        axis: usize,
        input_zero_point: i32,
        input_scale: f32,
        clamp: (f32, f32),
        output: Int8Output,
    ) -> TractResult<Int8Linear> {
        let input = (input_zero_point, input_scale, 16);
        Self::build(weights, bias, scale, axis, input, clamp, output)
    }

    fn build(
        weights: Arc<Tensor>,
        bias: Arc<Tensor>,
        scale: Arc<Tensor>,
        axis: usize,
        (input_zero_point, input_scale, input_bits): (i32, f32, u32),
        (low, high): (f32, f32),
        output: Int8Output,
    ) -> TractResult<Int8Linear> {
        ensure!(
            weights.datum_type() == i8::datum_type() && weights.rank() == 2,
            "{NAME}: weights must be i8 [O, K], got {:?} {:?}",
            weights.datum_type(),
            weights.shape()
        );
        let (o, k) = (weights.shape()[0], weights.shape()[1]);
        ensure!(
            o > 0 && k > 0,
            "{NAME}: zero-sized weights {:?}",
            weights.shape()
        );
        ensure!(
            bias.datum_type() == i32::datum_type() && bias.shape() == [o],
            "{NAME}: bias must be i32 [{o}], got {:?} {:?}",
            bias.datum_type(),
            bias.shape()
        );
        ensure!(
            scale.datum_type() == f32::datum_type() && scale.shape() == [o],
            "{NAME}: scale must be f32 [{o}], got {:?} {:?}",
            scale.datum_type(),
            scale.shape()
        );
        let w = weights.try_as_plain_ram()?;
        let w = w.as_slice::<i8>()?;
        ensure!(
            w.iter().all(|&v| v != i8::MIN),
            "{NAME}: weights must lie in [-127, 127] (symmetric quantization)"
        );
        let scales = scale.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        ensure!(
            scales.iter().all(|s| s.is_finite() && *s > 0.0),
            "{NAME}: scales must be finite and positive"
        );
        ensure!(
            input_scale.is_finite() && input_scale > 0.0,
            "{NAME}: input_scale {input_scale} must be finite and positive"
        );
        let code = match input_bits {
            8 => -128..=127,
            16 => -32768..=32767,
            b => bail!("{NAME}: input_bits {b} (expected 8 or 16)"),
        };
        ensure!(
            code.contains(&input_zero_point),
            "{NAME}: input_zero_point {input_zero_point} is not a {input_bits}-bit code"
        );
        ensure!(
            !low.is_nan() && !high.is_nan() && low <= high,
            "{NAME}: clamp [{low}, {high}] is empty"
        );
        output.check(NAME)?;
        let bias_v = bias.try_as_plain_ram()?.as_slice::<i32>()?.to_vec();
        let mut corr = Vec::with_capacity(o);
        let mut corr_u = Vec::with_capacity(o);
        let (mut corr16, mut digit_corr, mut digit_corr_u) = (vec![], vec![], vec![]);
        // The one-product form of a 16-bit input where the kernel has one and K allows it.
        let kernel16 = if input_bits == 16 && k <= k8::MAX_K16 {
            k8::select().codes16()
        } else {
            None
        };
        let (mut corr_q, mut fits_i32) = (vec![], true);
        for (row, b) in w.chunks_exact(k).zip(&bias_v) {
            // |Σ W| ≤ 127·K: i64 keeps the products exact for any K; the sums are wrapped to
            // i32 like the kernels' accumulators.
            let sum: i64 = row.iter().map(|&v| v as i64).sum();
            if input_bits == 16 {
                corr16.push(*b as i64 + (128 - input_zero_point as i64) * sum);
                digit_corr.push(0);
                digit_corr_u.push((-128 * sum) as i32);
            }
            let c = *b as i64 - input_zero_point as i64 * sum;
            if kernel16.is_some() {
                // |Σ W·q| ≤ 32768·Σ|W|.
                let reach = 32768 * row.iter().map(|&v| (v as i64).abs()).sum::<i64>();
                fits_i32 &= reach + c.abs() <= i32::MAX as i64;
                corr_q.push(c);
            }
            corr.push(c as i32);
            corr_u.push((c - 128 * sum) as i32);
        }
        // Packed in the format of the kernel `eval` will run (chosen once per process).
        let format = kernel16.unwrap_or(k8::select()).format();
        let packed = Arc::new(PackedWeights::new(w, o, k, format));
        Ok(Int8Linear {
            weights,
            bias,
            scale,
            axis,
            output_axis: axis,
            input_zero_point,
            input_bits,
            input_scale,
            low,
            high,
            output,
            packed,
            corr,
            corr_u,
            scales,
            corr16,
            kernel16,
            corr_q: (kernel16.is_some() && !fits_i32).then_some(corr_q),
            digit_corr,
            digit_corr_u,
        })
    }

    /// The op on another layout: input channels on `axis`, output channels on `output_axis`
    /// (checked against the input when typed, see [`Int8Linear::layout`]).
    pub fn with_axes(mut self, axis: usize, output_axis: usize) -> Int8Linear {
        self.axis = axis;
        self.output_axis = output_axis;
        self
    }

    /// Output channels (O).
    pub fn outputs(&self) -> usize {
        self.packed.rows()
    }

    /// Reduction length (K).
    pub fn k(&self) -> usize {
        self.packed.k()
    }

    /// `(outer, inner)` of an input shape, checking the contracted axis.
    fn split(&self, shape: &[usize]) -> TractResult<(usize, usize)> {
        ensure!(
            self.axis < shape.len() && shape[self.axis] == self.k(),
            "{NAME}: input {shape:?} has no axis {} of {} channels",
            self.axis,
            self.k()
        );
        let outer = shape[..self.axis].iter().product();
        let inner = shape[self.axis + 1..].iter().product();
        Ok((outer, inner))
    }

    /// The output shape of an input shape: the input's axes without `axis`, the output
    /// channels inserted at `output_axis`.
    fn output_shape<D: Clone>(&self, input: &[D], o: D) -> TractResult<TVec<D>> {
        ensure!(
            self.axis < input.len() && self.output_axis < input.len(),
            "{NAME}: axes {} / {} of a rank-{} input",
            self.axis,
            self.output_axis,
            input.len()
        );
        let mut shape: TVec<D> = input.into();
        shape.remove(self.axis);
        shape.insert(self.output_axis, o);
        Ok(shape)
    }

    /// How a product over an input of this shape runs: `(images, columns, input strides,
    /// output strides)`. The same layout on both sides: one product per index before the axis
    /// over the contiguous columns after it (channels first), or one product over all
    /// positions (channels last). Different layouts (tract moved one side to channels last,
    /// the way it feeds its depthwise kernel) need each side to be channels first or last.
    pub fn layout(&self, shape: &[usize]) -> TractResult<(usize, usize, Strides, Strides)> {
        let (outer, inner) = self.split(shape)?;
        let (k, o) = (self.k(), self.outputs());
        if self.axis == self.output_axis {
            return Ok(if inner == 1 {
                (1, outer, Strides { k: 1, c: k }, Strides { k: 1, c: o })
            } else {
                let ld = Strides { k: inner, c: 1 };
                (outer, inner, ld, ld)
            });
        }
        let n = outer * inner;
        let out = self.output_shape(shape, o)?;
        let (o_outer, o_inner): (usize, usize) = (
            out[..self.output_axis].iter().product(),
            out[self.output_axis + 1..].iter().product(),
        );
        let side = |outer: usize, inner: usize, c: usize| {
            if outer == 1 {
                Some(Strides { k: n, c: 1 })
            } else if inner == 1 {
                Some(Strides { k: 1, c })
            } else {
                None
            }
        };
        match (side(outer, inner, k), side(o_outer, o_inner, o)) {
            (Some(i), Some(out)) => Ok((1, n, i, out)),
            _ => bail!(
                "{NAME}: input {shape:?} (axis {}) and output {out:?} (axis {}) are not each \
                 channels first or last",
                self.axis,
                self.output_axis
            ),
        }
    }

    fn output_dt(&self) -> DatumType {
        self.output.datum_type()
    }
}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "KestrelInt8Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}{}→{} on axis {} → {}",
            match (self.input_bits, self.kernel16) {
                (16, Some(_)) => "16-bit (one product) ",
                (16, None) => "16-bit (two digit products) ",
                _ => "",
            },
            self.k(),
            self.outputs(),
            self.axis,
            match self.output {
                Int8Output::Float => "f32",
                Int8Output::Int8 { .. } => "i8",
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let plan = self.plan(input.shape())?;
        let float_in = input.datum_type() == f32::datum_type();
        ensure!(
            float_in || input.datum_type().unquantized() == i8::datum_type(),
            "{NAME}: input must be f32 or i8, got {:?}",
            input.datum_type()
        );
        ensure!(
            float_in || self.input_bits == 8,
            "{NAME}: a 16-bit input must be f32"
        );
        let shape = self.output_shape(input.shape(), self.outputs())?;
        // SAFETY: every element is written by the kernels below (all rows × valid columns).
        let mut out = unsafe { Tensor::uninitialized_dt(self.output_dt(), &shape)? };
        if plan.n == 0 || plan.images == 0 {
            return Ok(tvec!(out.into_tvalue()));
        }
        let view = input.try_as_plain_ram()?;
        {
            let mut out_view = out.try_as_plain_ram_mut()?;
            let out_ptr = out_view.as_bytes_mut().as_mut_ptr();
            let x = if float_in {
                Codes::F32(view.as_slice::<f32>()?)
            } else {
                // SAFETY: i8 and QI8 tensors hold i8 values.
                Codes::I8(unsafe { view.as_slice_unchecked::<i8>() })
            };
            match x {
                Codes::F32(x) if self.input_bits == 16 && self.kernel16.is_none() => {
                    self.run_digits(&plan, x, out_ptr)
                }
                x => self.run_codes(&plan, x, out_ptr)?,
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// An input: floats (quantized while packed) or i8 codes (repacked).
#[derive(Clone, Copy)]
enum Codes<'a> {
    F32(&'a [f32]),
    I8(&'a [i8]),
}

/// How one evaluation splits its work, from the input's shape: `images` products over `n`
/// columns laid out as `ld_in` / `ld_out`, in column blocks of `COLS` (`step` packed bytes
/// each) grouped into `tasks`, each split again into `row_tasks` over the `row_blocks` when
/// the columns leave threads idle.
struct Plan {
    images: usize,
    n: usize,
    ld_in: Strides,
    ld_out: Strides,
    blocks: usize,
    step: usize,
    tasks: usize,
    row_blocks: usize,
    row_tasks: usize,
}

impl Plan {
    /// Column blocks of task `t`.
    fn columns(&self, t: usize) -> std::ops::Range<usize> {
        t * BLOCKS_PER_TASK..((t + 1) * BLOCKS_PER_TASK).min(self.blocks)
    }

    /// Row blocks of row task `r`.
    fn rows(&self, r: usize) -> std::ops::Range<usize> {
        let per = self.row_blocks.div_ceil(self.row_tasks);
        (r * per).min(self.row_blocks)..((r + 1) * per).min(self.row_blocks)
    }
}

/// Row tasks per column task: more than one when the column tasks cannot keep every thread
/// busy (at least two row blocks, 8 output channels, per task).
fn row_tasks(tasks: usize, row_blocks: usize) -> usize {
    let threads = super::parallel::threads();
    if threads == 1 || tasks >= 2 * threads {
        1
    } else {
        (2 * threads)
            .div_ceil(tasks)
            .min(row_blocks.div_ceil(2))
            .max(1)
    }
}

impl Int8Linear {
    /// The plan of an evaluation on an input of `shape` (see [`Int8Linear::layout`]).
    fn plan(&self, shape: &[usize]) -> TractResult<Plan> {
        let (images, n, ld_in, ld_out) = self.layout(shape)?;
        let blocks = n.div_ceil(COLS);
        let tasks = blocks.div_ceil(BLOCKS_PER_TASK);
        let row_blocks = self.outputs().div_ceil(k8::ROWS);
        Ok(Plan {
            images,
            n,
            ld_in,
            ld_out,
            blocks,
            step: self.packed.format().block_bytes(self.k()),
            tasks,
            row_blocks,
            row_tasks: row_tasks(tasks, row_blocks),
        })
    }

    /// One product per image: an 8-bit input, or a 16-bit one in one product (packed as i16
    /// codes by its kernel, the sums completed by the i64 correction where they need it),
    /// written at `out` (the output tensor's bytes).
    fn run_codes(&self, plan: &Plan, x: Codes<'_>, out: *mut u8) -> TractResult<()> {
        let (o, k, n) = (self.outputs(), self.k(), plan.n);
        let kernel = self.kernel16.unwrap_or(k8::select());
        let step = plan.step;
        let q = k8::Quantizer {
            inv_scale: 1.0 / self.input_scale,
            zp: self.input_zero_point,
        };
        scratch::bytes(plan.blocks * step, |packed| {
            let packed = Disjoint::new(packed);
            for b in 0..plan.images {
                let image = b * k * n..(b + 1) * k * n;
                // SAFETY: image b's rows start there.
                let stage_out =
                    SendOutput(unsafe { self.destination(out, b * o * n, plan.ld_out) });
                let pack = |t: usize| {
                    let range = plan.columns(t);
                    // SAFETY: column task t alone uses blocks `range` of the packed buffer.
                    let part = unsafe { packed.part(range.start * step, range.len() * step) };
                    let (ld, blocks) = (plan.ld_in, range.clone());
                    match x {
                        Codes::F32(x) => {
                            let x = &x[image.clone()];
                            kernel.pack_f32(
                                &k8::Pack {
                                    x,
                                    k,
                                    n,
                                    ld,
                                    blocks,
                                },
                                q,
                                part,
                            )
                        }
                        Codes::I8(x) => {
                            let x = &x[image.clone()];
                            kernel.pack_i8(
                                &k8::Pack {
                                    x,
                                    k,
                                    n,
                                    ld,
                                    blocks,
                                },
                                part,
                            )
                        }
                    }
                    (range, part)
                };
                let compute = |range: std::ops::Range<usize>, x: &[u8], rows| {
                    kernel.run(&k8::Job {
                        w: &self.packed,
                        x,
                        first_block: range.start,
                        blocks: range.len(),
                        row_blocks: rows,
                        n,
                        stage: self.stage(stage_out.get()),
                    })
                };
                if plan.row_tasks == 1 {
                    // Each task packs its columns and multiplies them at once (still in cache).
                    run_indexed(plan.tasks, |t| {
                        let (range, part) = pack(t);
                        compute(range, part, 0..plan.row_blocks);
                    });
                } else {
                    // Too few columns for the threads (late, small feature maps): pack
                    // every column block, then split the rows too.
                    run_indexed(plan.tasks, |t| {
                        pack(t);
                    });
                    run_indexed(plan.tasks * plan.row_tasks, |t| {
                        let (c, r) = (t / plan.row_tasks, t % plan.row_tasks);
                        let range = plan.columns(c);
                        let (start, len) = (range.start * step, range.len() * step);
                        // SAFETY: the packing tasks above have finished; every task only reads
                        // (shared slices of the same bytes).
                        let part = unsafe {
                            std::slice::from_raw_parts(packed.ptr(start, start + len), len)
                        };
                        let rows = plan.rows(r);
                        if !rows.is_empty() {
                            compute(range, part, rows);
                        }
                    });
                }
            }
            TractResult::Ok(())
        })
    }

    /// A 16-bit input in two digit products (see the module docs), written at `out` (the
    /// output tensor's bytes, f32 or i8). The two digit planes of each column block are
    /// quantized and packed in one pass; per task, the kernel runs over the high digits into
    /// i32 sums (per-thread scratch) and over the low digits with the combining stage
    /// ([`k8::Wide`]), which reads those sums back and writes the output. Tasks split as
    /// [`Int8Linear::run_codes`]'s do.
    fn run_digits(&self, plan: &Plan, x: &[f32], out: *mut u8) {
        let kernel = k8::select();
        let (o, k, n, step) = (self.outputs(), self.k(), plan.n, plan.step);
        let q = k8::Quantizer {
            inv_scale: 1.0 / self.input_scale,
            zp: self.input_zero_point,
        };
        let out = SendPtr(out);
        scratch::bytes(2 * plan.blocks * step, |packed| {
            let (hi, lo) = packed.split_at_mut(plan.blocks * step);
            let (hi, lo) = (Disjoint::new(hi), Disjoint::new(lo));
            for b in 0..plan.images {
                let image = &x[b * k * n..(b + 1) * k * n];
                let out_at = b * o * n;
                let pack = |t: usize| {
                    let range = plan.columns(t);
                    let (start, len) = (range.start * step, range.len() * step);
                    // SAFETY: column task t alone writes blocks `range`; readers come after.
                    let (h, l) = unsafe { (hi.part(start, len), lo.part(start, len)) };
                    let p = k8::Pack {
                        x: image,
                        k,
                        n,
                        ld: plan.ld_in,
                        blocks: range,
                    };
                    kernel.pack_f32_digits(&p, q, h, l);
                };
                let compute = |t: usize, rows: std::ops::Range<usize>| {
                    let range = plan.columns(t);
                    let c0 = range.start * COLS;
                    let cols = (n - c0).min(range.len() * COLS);
                    let (start, len) = (range.start * step, range.len() * step);
                    // SAFETY: the packing of task t has finished; every task only reads
                    // (shared slices of the same bytes).
                    let (h, l) = unsafe {
                        (
                            std::slice::from_raw_parts(hi.ptr(start, start + len), len),
                            std::slice::from_raw_parts(lo.ptr(start, start + len), len),
                        )
                    };
                    let ld_out = plan.ld_out;
                    // SAFETY: column c0 < n of image b lies in the output.
                    let dst =
                        unsafe { self.destination(out.get(), out_at + c0 * ld_out.c, ld_out) };
                    self.run_wide(kernel, (h, l), (range.len(), cols, rows), dst);
                };
                if plan.row_tasks == 1 {
                    // Each task packs its columns and multiplies them at once (still in cache).
                    run_indexed(plan.tasks, |t| {
                        pack(t);
                        compute(t, 0..plan.row_blocks);
                    });
                } else {
                    run_indexed(plan.tasks, pack);
                    run_indexed(plan.tasks * plan.row_tasks, |t| {
                        let rows = plan.rows(t % plan.row_tasks);
                        if !rows.is_empty() {
                            compute(t / plan.row_tasks, rows);
                        }
                    });
                }
            }
        });
    }

    /// The output stage of a one-product run writing to `out` (with the i64 correction of a
    /// 16-bit input where its sums may leave i32).
    fn stage(&self, out: k8::Output) -> Stage<'_> {
        Stage {
            corr: &self.corr,
            corr_u: &self.corr_u,
            scale: &self.scales,
            lo: self.low,
            hi: self.high,
            out,
            wide: self
                .corr_q
                .as_ref()
                .map(|corr| k8::Wide { high: None, corr }),
        }
    }

    /// Bytes of packed input [`Int8Linear::product_codes`] needs for `n` columns.
    pub(crate) fn packed_len(&self, n: usize) -> usize {
        self.packed.format().packed_len(self.k(), n)
    }

    /// One product on this thread over `n` columns of i8 codes `x` laid out as `ld` (an
    /// 8-bit op, the input's zero point already in its correction): packed into `packed`
    /// ([`Int8Linear::packed_len`] bytes or more), every output channel written to the output
    /// tensor's bytes `out` from element `at` on, laid out as `ld_out`.
    ///
    /// # Safety
    /// `out`, from element `at`, must hold the O × `n` outputs `ld_out` places, of the op's
    /// output type, written by no one else meanwhile.
    pub(crate) unsafe fn product_codes(
        &self,
        (x, n, ld): (&[i8], usize, Strides),
        packed: &mut [u8],
        (out, at, ld_out): (*mut u8, usize, Strides),
    ) {
        debug_assert!(self.input_bits == 8 && self.kernel16.is_none());
        if n == 0 {
            return;
        }
        let kernel = k8::select();
        let (k, blocks) = (self.k(), n.div_ceil(COLS));
        let packed = &mut packed[..self.packed_len(n)];
        kernel.pack_i8(
            &k8::Pack {
                x,
                k,
                n,
                ld,
                blocks: 0..blocks,
            },
            packed,
        );
        kernel.run(&k8::Job {
            w: &self.packed,
            x: packed,
            first_block: 0,
            blocks,
            row_blocks: 0..self.outputs().div_ceil(k8::ROWS),
            n,
            // SAFETY: the caller's contract.
            stage: self.stage(unsafe { self.destination(out, at, ld_out) }),
        });
    }

    /// The kernels' destination for the output tensor's bytes `out` from element `at` on,
    /// laid out as `ld`.
    ///
    /// # Safety
    /// `at` must lie in the output.
    unsafe fn destination(&self, out: *mut u8, at: usize, ld: Strides) -> k8::Output {
        // SAFETY: the caller's contract; the output's type is the one `self.output` says.
        unsafe {
            match self.output {
                Int8Output::Float => k8::Output::F32 {
                    ptr: (out as *mut f32).add(at),
                    ld,
                },
                Int8Output::Int8 { zero_point, scale } => k8::Output::I8 {
                    ptr: (out as *mut i8).add(at),
                    ld,
                    inv_scale: 1.0 / scale,
                    zp: zero_point as f32,
                },
            }
        }
    }

    /// The two products of a 16-bit input over one column task: `blocks` packed blocks of
    /// the high and low digits (`digits`), `cols` valid columns (numbered from 0), row blocks
    /// `rows`, written to `out`.
    fn run_wide(
        &self,
        kernel: &dyn k8::Int8Kernel,
        digits: (&[u8], &[u8]),
        (blocks, cols, rows): (usize, usize, std::ops::Range<usize>),
        out: k8::Output,
    ) {
        let o = self.outputs();
        // The high sums in the layout the kernel's vectors read.
        let ld = if kernel.sums_rows_contiguous() {
            Strides { k: 1, c: o }
        } else {
            Strides { k: cols, c: 1 }
        };
        scratch::ints(o * cols, |high| {
            let job = |x, stage| k8::Job {
                w: &self.packed,
                x,
                first_block: 0,
                blocks,
                row_blocks: rows.clone(),
                n: cols,
                stage,
            };
            let stage = Stage {
                corr: &self.digit_corr,
                corr_u: &self.digit_corr_u,
                scale: &self.scales,
                lo: -NO_CLAMP,
                hi: NO_CLAMP,
                out: k8::Output::I32 {
                    ptr: high.as_mut_ptr(),
                    ld,
                },
                wide: None,
            };
            kernel.run(&job(digits.0, stage));
            let wide = k8::Wide {
                high: Some(k8::HighSums {
                    ptr: high.as_ptr(),
                    ld,
                }),
                corr: &self.corr16,
            };
            let stage = Stage {
                lo: self.low,
                hi: self.high,
                out,
                wide: Some(wide),
                ..stage
            };
            kernel.run(&job(digits.1, stage));
        });
    }
}

/// The output tensor's bytes, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
impl SendPtr {
    /// The pointer (a method, so a closure captures the wrapper, not its field).
    fn get(self) -> *mut u8 {
        self.0
    }
}

// SAFETY: tasks write disjoint column ranges of the output through it.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// The output pointer, shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct SendOutput(k8::Output);
impl SendOutput {
    /// The output (a method, so a closure captures the wrapper, not its field).
    fn get(self) -> k8::Output {
        self.0
    }
}

// SAFETY: tasks write disjoint column ranges of the output through it.
unsafe impl Send for SendOutput {}
// SAFETY: as above.
unsafe impl Sync for SendOutput {}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        let dt = f.datum_type;
        ensure!(
            dt == f32::datum_type() || dt.unquantized() == i8::datum_type(),
            "{NAME}: input must be f32 or i8, got {f:?}"
        );
        ensure!(
            self.input_bits == 8 || dt == f32::datum_type(),
            "{NAME}: a 16-bit input must be f32, got {f:?}"
        );
        if let Some(QParams::ZpScale { zero_point, scale }) = dt.qparams() {
            ensure!(
                zero_point == self.input_zero_point && scale == self.input_scale,
                "{NAME}: input quantized as {dt:?}, the op expects zero point {} scale {}",
                self.input_zero_point,
                self.input_scale
            );
        }
        ensure!(
            self.axis < f.rank(),
            "{NAME}: axis {} of a rank-{} input",
            self.axis,
            f.rank()
        );
        ensure!(
            f.shape[self.axis] == self.k().to_dim(),
            "{NAME}: input axis {} is {}, weights take {}",
            self.axis,
            f.shape[self.axis],
            self.k()
        );
        let shape = self.output_shape(&f.shape.to_tvec(), self.outputs().to_dim())?;
        if let Some(concrete) = f.shape.as_concrete() {
            self.layout(concrete)?;
        }
        Ok(tvec!(self.output_dt().fact(shape)))
    }

    /// Like tract's `EinSum`, the op absorbs a move of its channel axis on either side (it
    /// then reads or writes that side channels last): that is how tract brings a depthwise
    /// conv's input to channels last, where its fastest depthwise kernel runs. Any other
    /// change that keeps both channel axes whole goes through the op to both sides.
    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        let mut shape = model.outlet_fact(node.inputs[0])?.shape.to_tvec();
        let absorbed = match (io, change) {
            (InOut::Out(0), AxisOp::Move(from, to)) if *from == self.output_axis => {
                Some(Int8Linear {
                    output_axis: *to,
                    ..self.clone()
                })
            }
            (InOut::In(0), AxisOp::Move(from, to)) if *from == self.axis => {
                change.change_shape_array(&mut shape, false)?;
                Some(Int8Linear {
                    axis: *to,
                    ..self.clone()
                })
            }
            _ => None,
        };
        if let Some(op) = absorbed {
            let fits = shape
                .iter()
                .map(|d| d.to_usize().ok())
                .collect::<Option<TVec<usize>>>()
                .is_none_or(|s| op.layout(&s).is_ok());
            if !fits {
                return Ok(None);
            }
            return Ok(Some(AxisChangeConsequence {
                substitute_op: Some(Box::new(op)),
                wire_changes: tvec!((io, change.clone())),
            }));
        }
        if let AxisOp::Reshape(..) = change {
            return Ok(None);
        }
        if self.axis != self.output_axis {
            return Ok(None);
        }
        let Some(axis) = change.transform_axis(self.axis) else {
            return Ok(None);
        };
        let op = Int8Linear {
            axis,
            output_axis: axis,
            ..self.clone()
        };
        Ok(Some(AxisChangeConsequence::new(
            model,
            node,
            Some(Box::new(op)),
            change,
        )))
    }

    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Integer.tensor().named("weights"),
            TypeName::Integer.tensor().named("bias"),
            TypeName::Scalar.tensor().named("scale"),
            TypeName::Integer.named("axis"),
            TypeName::Integer.named("output_axis").default(-1),
            TypeName::Integer.named("input_zero_point"),
            TypeName::Scalar.named("input_scale"),
            TypeName::Integer.named("input_bits").default(8),
            TypeName::Scalar.named("low"),
            TypeName::Scalar.named("high"),
            TypeName::String.named("output"),
            TypeName::Integer.named("output_zero_point").default(0),
            TypeName::Scalar.named("output_scale").default(1.0),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input: OutletId = invocation.named_arg_as(builder, "input")?;
    let weights: Arc<Tensor> = invocation.named_arg_as(builder, "weights")?;
    let bias: Arc<Tensor> = invocation.named_arg_as(builder, "bias")?;
    let scale: Arc<Tensor> = invocation.named_arg_as(builder, "scale")?;
    let axis: usize = invocation.named_arg_as(builder, "axis")?;
    let output_axis: i64 = invocation.named_arg_as(builder, "output_axis")?;
    let zp = int_arg(builder, invocation, NAME, "input_zero_point")?;
    let input_scale: f32 = invocation.named_arg_as(builder, "input_scale")?;
    let low: f32 = invocation.named_arg_as(builder, "low")?;
    let high: f32 = invocation.named_arg_as(builder, "high")?;
    let output = read_output(builder, invocation, NAME)?;
    let bits = int_arg(builder, invocation, NAME, "input_bits")?;
    let quant = (zp, input_scale, u32::try_from(bits).unwrap_or(0));
    let op = Int8Linear::build(weights, bias, scale, axis, quant, (low, high), output)?;
    let op = match output_axis {
        -1 => op,
        a => Int8Linear {
            output_axis: usize::try_from(a)
                .with_context(|| format!("{NAME}: output_axis = {a} is negative"))?,
            ..op
        },
    };
    builder.wire(op, &[input])
}

/// An integer attribute of `op`'s invocation that must fit i32.
pub(crate) fn int_arg(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    op: &str,
    name: &str,
) -> TractResult<i32> {
    let v: i64 = invocation.named_arg_as(builder, name)?;
    i32::try_from(v).with_context(|| format!("{op}: {name} = {v} out of range"))
}

/// The output type of an int8 op's invocation (`output`, `output_zero_point`,
/// `output_scale`).
pub(crate) fn read_output(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    op: &str,
) -> TractResult<Int8Output> {
    Ok(
        match invocation
            .named_arg_as::<String>(builder, "output")?
            .as_str()
        {
            "float" => Int8Output::Float,
            "int8" => Int8Output::Int8 {
                zero_point: int_arg(builder, invocation, op, "output_zero_point")?,
                scale: invocation.named_arg_as(builder, "output_scale")?,
            },
            other => bail!("{op}: unknown output '{other}' (expected \"float\" or \"int8\")"),
        },
    )
}

/// Appends the attributes [`read_output`] reads.
pub(crate) fn write_output(output: Int8Output, attributes: &mut Vec<(&'static str, RValue)>) {
    match output {
        Int8Output::Float => attributes.push(("output", string("float"))),
        Int8Output::Int8 { zero_point, scale } => {
            attributes.push(("output", string("int8")));
            attributes.push(("output_zero_point", numeric(zero_point)));
            attributes.push(("output_scale", numeric(scale)));
        }
    }
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &Int8Linear) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), &op.weights)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &op.bias)?;
    let scale = ast.konst_variable(format!("{}_scale", node.name), &op.scale)?;
    let mut attributes = vec![
        ("axis", numeric(op.axis)),
        ("output_axis", numeric(op.output_axis)),
        ("input_zero_point", numeric(op.input_zero_point)),
        ("input_scale", numeric(op.input_scale)),
        ("input_bits", numeric(op.input_bits)),
        ("low", numeric(op.low)),
        ("high", numeric(op.high)),
    ];
    write_output(op.output, &mut attributes);
    Ok(Some(tract_nnef::ser::invocation(
        NAME,
        &[input, weights, bias, scale],
        &attributes,
    )))
}
