//! `kestrel_int8_conv`: an int8 2-D convolution (one group, channels first: `[N, C, H, W]` or
//! `[C, H, W]`) with its quantization, bias and ReLU / clip fused.
//!
//! ```text
//! y[n, o, oy, ox] = act(scale[o] · (bias[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · (q[n, c, oy·sy + ky − pt, ox·sx + kx − pl] − zp[c])))
//! ```
//!
//! with `q` the input's int8 codes (`q − zp[c]` is 0 outside the plane), `w` symmetric
//! per-output-channel i8 weights in `[−127, 127]`, `bias` i32 at the scale `scale[o]`, and
//! `act` a clamp to `[low, high]` (a ReLU or a clip). The output is f32, or requantized to i8
//! (`output_zero_point`, `output_scale`, typed `QI8`) for another int8 layer to read.
//!
//! The input is the previous int8 layer's i8 codes (one zero point and scale for the tensor),
//! or floats, quantized here as `kestrel_int8_linear` quantizes its float input — with one
//! zero point and scale per input channel if the op has them ([`InputQuant::Channels`]).
//! Nothing else in the op knows the input scales: for per-channel input the converter folds
//! each channel's scale into that channel's weights before quantizing them per output channel
//! (`scale[o]` is then that weight scale alone). That is what makes an image's stem
//! convolution exact in its input: a camera's 8-bit picture normalized per channel
//! (`(p / 255 − mean[c]) / std[c]`) has exactly 256 values per channel, one step
//! `1 / (255 · std[c])` apart, which a per-channel min/max calibration finds; quantized with
//! that step, every pixel is its own code again (up to a constant offset of less than half
//! a step, which bias correction absorbs), where one step for the three channels rounds
//! them all.
//!
//! How: per image, a float input is quantized once into codes ([`k8::codes`]); the
//! convolution's columns are built from the codes a few output rows at a time
//! ([`super::im2col`], the padding at each channel's zero point: 16 codes per step where
//! `kestrel_conv` moves 4 floats), and multiplied by the int8 kernels of
//! `kestrel_int8_linear` ([`crate::kernels::int8`]) while they are in cache: exact in i32,
//! the same bits on every CPU. Each channel's zero point goes into the output stage's
//! per-row correction (`bias[o] − Σ w[o, c, ·, ·] · zp[c]`, computed at load). Threads split
//! the output rows in chunks; each builds and multiplies its own.
//!
//! Shapes: kernels up to 7×7, strides 1 or 2, zero padding smaller than the kernel,
//! dilation 1, one group (`kestrel_conv`'s). Other weights, a bias or scale of another
//! length, zero points outside `[−128, 127]`, a correction outside i32 or an empty clamp are
//! load errors naming the op; an input without `C` channels, an i8 input whose
//! quantization is not the op's, or a plane the kernel does not fit, are run errors naming it.

use tract_nnef::internal::*;
use tract_nnef::ser::{array, invocation, numeric};

use super::im2col::{im2col, Window};
use super::int8_depthwise::{read_input_quant, write_input_quant, InputQuant};
use super::int8_linear::{read_output, write_output, Int8Linear, Int8Output, NO_CLAMP};
use super::parallel::{run_indexed, threads, Disjoint};
use super::scratch;
use crate::kernels::int8::{self as k8, Strides};

/// NNEF name.
pub const NAME: &str = "kestrel_int8_conv";

/// Largest kernel height and width (`kestrel_conv`'s).
pub const MAX_KERNEL: usize = super::conv::MAX_KERNEL;

/// Bytes of columns built per chunk (32 KiB), unless [`MIN_CHUNK_COLUMNS`] need more.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// The fewest output positions per chunk (whole output rows, at least one), as
/// `kestrel_conv`'s chunks: enough columns to pay for each weight block's loads.
pub const MIN_CHUNK_COLUMNS: usize = super::conv::MIN_CHUNK_COLUMNS;

/// The int8 convolution operator.
#[derive(Debug, Clone)]
pub struct Int8Conv {
    /// Weights `[O, C, KH, KW]` i8, in `[−127, 127]`.
    pub weights: Arc<Tensor>,
    /// i32 bias `[O]` at the scale `scale[o]`.
    pub bias: Arc<Tensor>,
    /// f32 `[O]`: what multiplies each output channel's integer sum.
    pub scale: Arc<Tensor>,
    /// Strides (1 or 2), height then width.
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// How the input is quantized: one zero point and scale, or one per input channel.
    pub input: InputQuant,
    /// Lower clamp of the float result (`-NO_CLAMP`: none).
    pub low: f32,
    /// Upper clamp (`NO_CLAMP`: none).
    pub high: f32,
    /// Output type.
    pub output: Int8Output,
    /// The product: weights `[O, C·KH·KW]`, the zero points' correction in its bias.
    product: Arc<Int8Linear>,
}

impl std::hash::Hash for Int8Conv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.weights.hash(state);
        self.bias.hash(state);
        self.scale.hash(state);
        self.stride.hash(state);
        self.padding.hash(state);
        self.input.hash(state);
        self.low.to_bits().hash(state);
        self.high.to_bits().hash(state);
    }
}

impl PartialEq for Int8Conv {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.bias == other.bias
            && self.scale == other.scale
            && self.stride == other.stride
            && self.padding == other.padding
            && self.input == other.input
            && self.low.to_bits() == other.low.to_bits()
            && self.high.to_bits() == other.high.to_bits()
            && self.output == other.output
    }
}

impl Eq for Int8Conv {}

impl Int8Conv {
    /// Builds the op, checking weights i8 `[O, C, KH, KW]` in `[−127, 127]` (every size above
    /// 0, the kernel at most [`MAX_KERNEL`]), bias i32 `[O]`, scale f32 `[O]` (finite,
    /// positive), strides 1 or 2, padding smaller than the kernel, input zero points in
    /// `[−128, 127]` (one per input channel with [`InputQuant::Channels`]) with finite
    /// positive scales, a non-empty clamp, and that each row's correction fits i32.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (weights, bias, scale): (Arc<Tensor>, Arc<Tensor>, Arc<Tensor>),
        stride: [usize; 2],
        padding: [usize; 4],
        input: InputQuant,
        (low, high): (f32, f32),
        output: Int8Output,
    ) -> TractResult<Int8Conv> {
        let s = weights.shape();
        ensure!(
            weights.datum_type() == i8::datum_type() && s.len() == 4 && s.iter().all(|&d| d > 0),
            "{NAME}: weights must be i8 [O, C, KH, KW] with every size above 0, got {:?} {s:?}",
            weights.datum_type()
        );
        let (o, c, kh, kw) = (s[0], s[1], s[2], s[3]);
        ensure!(
            kh <= MAX_KERNEL && kw <= MAX_KERNEL,
            "{NAME}: kernel {kh}x{kw} above {MAX_KERNEL}x{MAX_KERNEL}"
        );
        super::window::check_geometry(NAME, [kh, kw], stride, padding)?;
        input.check(NAME, c)?;
        ensure!(
            bias.datum_type() == i32::datum_type() && bias.shape() == [o],
            "{NAME}: bias must be i32 [{o}], got {:?} {:?}",
            bias.datum_type(),
            bias.shape()
        );
        // The zero points' share of each row's sum, `Σ w[o, c, ·, ·] · zp[c]`, joins the bias:
        // the product then reads the codes as they are (zero point 0).
        let w = weights.try_as_plain_ram()?;
        let w = w.as_slice::<i8>()?;
        let b = bias.try_as_plain_ram()?;
        let b = b.as_slice::<i32>()?;
        let tap = kh * kw;
        let corrected = w
            .chunks_exact(c * tap)
            .zip(b)
            .map(|(row, &b)| {
                let zp_sum: i64 = row
                    .chunks_exact(tap)
                    .enumerate()
                    .map(|(ci, taps)| {
                        input.of(ci).0 as i64 * taps.iter().map(|&v| v as i64).sum::<i64>()
                    })
                    .sum();
                i32::try_from(b as i64 - zp_sum)
            })
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|_| format_err!("{NAME}: bias − Σ w · zp leaves i32"))?;
        let flat = weights.clone().into_tensor().into_shape(&[o, c * tap])?;
        let product = Int8Linear::new(
            Arc::new(flat),
            Arc::new(tensor1(&corrected)),
            scale.clone(),
            0,
            0,
            1.0,
            (low, high),
            output,
        )
        .map_err(|e| format_err!("{NAME}: {e}"))?;
        Ok(Int8Conv {
            weights,
            bias,
            scale,
            stride,
            padding,
            input,
            low,
            high,
            output,
            product: Arc::new(product),
        })
    }

    /// Output channels (O).
    pub fn outputs(&self) -> usize {
        self.weights.shape()[0]
    }

    /// Input channels (C).
    pub fn inputs(&self) -> usize {
        self.weights.shape()[1]
    }

    /// Kernel height and width.
    pub fn kernel(&self) -> [usize; 2] {
        let s = self.weights.shape();
        [s[2], s[3]]
    }

    /// Output height and width of an `[h, w]` plane, or why the kernel does not fit it.
    fn out_hw(&self, hw: [usize; 2]) -> TractResult<[usize; 2]> {
        super::window::fitted_hw(NAME, hw, self.padding, self.kernel(), self.stride)
    }

    /// `(images, window, output height)` of an input of `shape` (`[N, C, H, W]` or
    /// `[C, H, W]`), checked.
    fn window(&self, shape: &[usize]) -> TractResult<(usize, Window, usize)> {
        let geometry = (self.inputs(), self.kernel(), self.stride, self.padding);
        Window::of_input(NAME, geometry, shape)
    }

    fn output_dt(&self) -> DatumType {
        self.output.datum_type()
    }

    /// Checks an i8 input's quantization (`dt`) is the op's.
    fn check_codes(&self, dt: DatumType) -> TractResult<()> {
        let (zp, scale) = match (dt.qparams(), &self.input) {
            (Some(QParams::ZpScale { zero_point, scale }), InputQuant::Tensor { .. }) => {
                (zero_point, scale)
            }
            (None, InputQuant::Tensor { .. }) => (0, 1.0),
            _ => bail!("{NAME}: an i8 input needs one zero point and scale, got {dt:?}"),
        };
        let (z, s) = self.input.of(0);
        ensure!(
            zp == z && scale == s,
            "{NAME}: input quantized as {dt:?}, the op expects zero point {z} scale {s}"
        );
        Ok(())
    }

    /// Output rows per chunk for a window of `k` matrix rows and `wo` output columns.
    fn chunk_rows(k: usize, wo: usize, out_h: usize) -> usize {
        (CHUNK_BYTES / (k * wo))
            .max(MIN_CHUNK_COLUMNS.div_ceil(wo))
            .clamp(1, out_h.max(1))
    }

    /// Runs image `n`'s codes `codes` (`[C, H, W]`) through the window `g` into the output
    /// tensor's bytes `out` (`[N, O, Ho, Wo]` of the op's output type).
    fn run_image(&self, g: &Window, out_h: usize, codes: &[i8], out: &Disjoint<'_, u8>, n: usize) {
        let (k, wo) = (g.k(), g.out_w);
        let plane = out_h * wo;
        let bytes = self.outputs() * plane * self.output_dt().size_of();
        // Image n's outputs, which this call's tasks write in disjoint chunks of rows.
        let base = SendPtr(out.ptr(n * bytes, (n + 1) * bytes));
        let rows = Self::chunk_rows(k, wo, out_h);
        let chunks = out_h.div_ceil(rows);
        let tasks = threads().min(chunks);
        let tap = g.kernel[0] * g.kernel[1];
        let ld = rows * wo;
        let packed_len = self.product.packed_len(ld);
        run_indexed(tasks, |t| {
            let mine = t * chunks / tasks..(t + 1) * chunks / tasks;
            if mine.is_empty() {
                return;
            }
            scratch::bytes(k * ld + packed_len, |buf| {
                let (cols_buf, packed) = buf.split_at_mut(k * ld);
                // SAFETY: i8 and u8 have the same size and alignment.
                let cols_buf: &mut [i8] = unsafe {
                    std::slice::from_raw_parts_mut(cols_buf.as_mut_ptr() as *mut i8, k * ld)
                };
                // Each matrix row's padding is its channel's zero point; `im2col` leaves
                // the padding columns as they are in every chunk.
                for (kk, row) in cols_buf.chunks_exact_mut(ld).enumerate() {
                    row.fill(self.input.of(kk / tap).0 as i8);
                }
                for chunk in mine {
                    let r0 = chunk * rows;
                    let r1 = (r0 + rows).min(out_h);
                    let cols = (r1 - r0) * wo;
                    im2col(codes, g, r0..r1, cols_buf, ld, |c| self.input.of(c).0 as i8);
                    // SAFETY: `base` holds the image's O planes; rows r0..r1 of each belong to
                    // this task alone.
                    unsafe {
                        self.product.product_codes(
                            (cols_buf, cols, Strides { k: ld, c: 1 }),
                            packed,
                            (base.get(), r0 * wo, Strides { k: plane, c: 1 }),
                        )
                    };
                }
            });
        });
    }
}

/// An image's output bytes, shared by the tasks that write its disjoint chunks of rows.
#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
impl SendPtr {
    /// The pointer (a method, so a closure captures the wrapper, not its field).
    fn get(self) -> *mut u8 {
        self.0
    }
}

// SAFETY: tasks write disjoint rows of the output through it.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl Op for Int8Conv {
    fn name(&self) -> StaticName {
        "KestrelInt8Conv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let [kh, kw] = self.kernel();
        Ok(vec![format!(
            "{}→{} {kh}x{kw} stride {:?} padding {:?}, input {}, → {}, kernel {}",
            self.inputs(),
            self.outputs(),
            self.stride,
            self.padding,
            match self.input {
                InputQuant::Tensor { .. } => "per tensor",
                InputQuant::Channels { .. } => "per channel",
            },
            match self.output {
                Int8Output::Float => "f32",
                Int8Output::Int8 { .. } => "i8",
            },
            k8::select().name()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Conv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let dt = input.datum_type();
        let float_in = dt == f32::datum_type();
        ensure!(
            float_in || dt.unquantized() == i8::datum_type(),
            "{NAME}: input must be f32 or i8, got {dt:?}"
        );
        if !float_in {
            self.check_codes(dt)?;
        }
        let (images, g, oh) = self.window(input.shape())?;
        let r = input.rank();
        let mut shape: TVec<usize> = input.shape().into();
        shape[r - 3] = self.outputs();
        shape[r - 2] = oh;
        shape[r - 1] = g.out_w;
        // SAFETY: `run_image` writes every element (each chunk of rows of every channel).
        let mut out = unsafe { Tensor::uninitialized_dt(self.output_dt(), &shape)? };
        let [c, h, w] = g.input;
        let (image_len, out_len) = (c * h * w, self.outputs() * oh * g.out_w);
        if out_len == 0 {
            return Ok(tvec!(out.into_tvalue()));
        }
        {
            let view = input.try_as_plain_ram()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let out_bytes = Disjoint::new(out_view.as_bytes_mut());
            if float_in {
                let x = view.as_slice::<f32>()?;
                scratch::codes(image_len, |codes| {
                    for n in 0..images {
                        let image = &x[n * image_len..][..image_len];
                        for (ci, (src, dst)) in image
                            .chunks_exact(h * w)
                            .zip(codes.chunks_exact_mut(h * w))
                            .enumerate()
                        {
                            let (zp, scale) = self.input.of(ci);
                            let q = k8::Quantizer {
                                inv_scale: 1.0 / scale,
                                zp,
                            };
                            k8::codes::quantize_codes(src, q, dst);
                        }
                        self.run_image(&g, oh, codes, &out_bytes, n);
                    }
                });
            } else {
                // SAFETY: i8 and QI8 tensors hold i8 values.
                let x = unsafe { view.as_slice_unchecked::<i8>() };
                for n in 0..images {
                    let image = &x[n * image_len..][..image_len];
                    self.run_image(&g, oh, image, &out_bytes, n);
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Conv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        let r = f.rank();
        let dt = f.datum_type;
        ensure!(
            (dt == f32::datum_type() || dt.unquantized() == i8::datum_type())
                && (3..=4).contains(&r)
                && f.shape[r - 3].to_usize().ok() == Some(self.inputs()),
            "{NAME}: input must be f32 or i8 [N, {c}, H, W] or [{c}, H, W], got {f:?}",
            c = self.inputs()
        );
        if dt != f32::datum_type() {
            self.check_codes(dt)?;
        }
        let (h, w) = (f.shape[r - 2].to_usize(), f.shape[r - 1].to_usize());
        let (Ok(h), Ok(w)) = (h, w) else {
            bail!("{NAME}: the plane size must be known, got {f:?}");
        };
        let [oh, ow] = self.out_hw([h, w])?;
        let mut shape = f.shape.to_tvec();
        shape[r - 3] = self.outputs().into();
        shape[r - 2] = oh.into();
        shape[r - 1] = ow.into();
        Ok(tvec!(self.output_dt().fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?.remove(0);
        let [kh, kw] = self.kernel();
        let macs = out.shape.iter().product::<TDim>() * (self.inputs() * kh * kw);
        Ok(tvec!((Cost::FMA(i8::datum_type()), macs)))
    }

    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    let mut parameters = vec![
        TypeName::Scalar.tensor().named("input"),
        TypeName::Integer.tensor().named("weights"),
        TypeName::Integer.tensor().named("bias"),
        TypeName::Scalar.tensor().named("scale"),
        TypeName::Integer.array().named("stride"),
        TypeName::Integer.array().named("padding"),
    ];
    parameters.extend(super::int8_depthwise::input_quant_parameters());
    parameters.extend([
        TypeName::Scalar.named("low").default(-NO_CLAMP),
        TypeName::Scalar.named("high").default(NO_CLAMP),
        TypeName::String.named("output"),
        TypeName::Integer.named("output_zero_point").default(0),
        TypeName::Scalar.named("output_scale").default(1.0),
    ]);
    registry.register_primitive(
        NAME,
        &parameters,
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let weights: Arc<Tensor> = invocation.named_arg_as(builder, "weights")?;
    let bias: Arc<Tensor> = invocation.named_arg_as(builder, "bias")?;
    let scale: Arc<Tensor> = invocation.named_arg_as(builder, "scale")?;
    let (stride, padding) = super::window::read_window(builder, invocation, NAME)?;
    let quant = read_input_quant(builder, invocation, NAME)?;
    let low: f32 = invocation.named_arg_as(builder, "low")?;
    let high: f32 = invocation.named_arg_as(builder, "high")?;
    let output = read_output(builder, invocation, NAME)?;
    let op = Int8Conv::new(
        (weights, bias, scale),
        stride,
        padding,
        quant,
        (low, high),
        output,
    )?;
    builder.wire(op, &[input])
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &Int8Conv) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), &op.weights)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &op.bias)?;
    let scale = ast.konst_variable(format!("{}_scale", node.name), &op.scale)?;
    let ints = |v: &[usize]| array(v.iter().map(numeric).collect::<Vec<_>>());
    let mut attributes = vec![("stride", ints(&op.stride)), ("padding", ints(&op.padding))];
    write_input_quant(&op.input, &mut attributes);
    attributes.push(("low", numeric(op.low)));
    attributes.push(("high", numeric(op.high)));
    write_output(op.output, &mut attributes);
    Ok(Some(invocation(
        NAME,
        &[input, weights, bias, scale],
        &attributes,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8::quantize;
    use tract_linalg::multithread::{multithread_tract_scope, Executor};

    /// A deterministic stream in [−1, 1).
    fn stream(seed: u32) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// The definition: each input value's code (`quantize` with its channel's parameters, or
    /// the code itself), the sum over the taps inside the plane exact in i64, then the output
    /// stage's steps (`(bias + Σ) as f32 · scale`, clamped; requantized for an i8 output).
    fn reference(op: &Int8Conv, codes: &[i8], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
        let [kh, kw] = op.kernel();
        let (o, [sy, sx], [pt, pl, ..]) = (op.outputs(), op.stride, op.padding);
        let [oh, ow] = op.out_hw([h, w]).unwrap();
        let wt = op.weights.try_as_plain_ram().unwrap();
        let wt = wt.as_slice::<i8>().unwrap();
        let b = op.bias.try_as_plain_ram().unwrap();
        let b = b.as_slice::<i32>().unwrap();
        let sc = op.scale.try_as_plain_ram().unwrap();
        let sc = sc.as_slice::<f32>().unwrap();
        let mut out = vec![];
        for img in 0..n {
            for oc in 0..o {
                for yy in 0..oh {
                    for xx in 0..ow {
                        let mut acc = b[oc] as i64;
                        for ci in 0..c {
                            let zp = op.input.of(ci).0 as i64;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (yy * sy + ky) as isize - pt as isize;
                                    let ix = (xx * sx + kx) as isize - pl as isize;
                                    if (0..h as isize).contains(&iy)
                                        && (0..w as isize).contains(&ix)
                                    {
                                        let q = codes
                                            [((img * c + ci) * h + iy as usize) * w + ix as usize];
                                        let wv = wt[((oc * c + ci) * kh + ky) * kw + kx];
                                        acc += (q as i64 - zp) * wv as i64;
                                    }
                                }
                            }
                        }
                        let y = (acc as i32 as f32 * sc[oc]).max(op.low).min(op.high);
                        out.push(match op.output {
                            Int8Output::Float => y,
                            Int8Output::Int8 { zero_point, scale } => {
                                quantize(y, 1.0 / scale, zero_point as f32) as f32
                            }
                        });
                    }
                }
            }
        }
        out
    }

    /// `op` on `input` through a one-op plan, as a loaded graph runs it.
    fn eval(op: &Int8Conv, input: Tensor) -> TractResult<Tensor> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", TypedFact::shape_and_dt_of(&input))?;
        let y = m.wire_node("conv", op.clone(), &[x])?;
        m.select_output_outlets(&y)?;
        let plan = m.into_runnable()?;
        Ok(plan
            .run(tvec!(input.into_tvalue()))?
            .remove(0)
            .into_tensor())
    }

    /// An op with random weights in [−127, 127], bias and scales.
    fn op(
        [o, c, kh, kw]: [usize; 4],
        stride: [usize; 2],
        padding: [usize; 4],
        input: InputQuant,
        clamp: (f32, f32),
        output: Int8Output,
    ) -> Int8Conv {
        let mut r = stream((o * 31 + c * 7 + kh) as u32);
        let w: Vec<i8> = (0..o * c * kh * kw).map(|_| (r() * 127.0) as i8).collect();
        let b: Vec<i32> = (0..o).map(|_| (r() * 5000.0) as i32).collect();
        let s: Vec<f32> = (0..o).map(|_| 1e-3 * (1.5 + r())).collect();
        Int8Conv::new(
            (
                Arc::new(Tensor::from_shape(&[o, c, kh, kw], &w).unwrap()),
                Arc::new(tensor1(&b)),
                Arc::new(tensor1(&s)),
            ),
            stride,
            padding,
            input,
            clamp,
            output,
        )
        .unwrap()
    }

    #[test]
    fn matches_the_definition_on_every_geometry() {
        let mut r = stream(7);
        for (shape, [o, kh, kw], stride, padding, per_channel, clamp, int8_out) in [
            // The stem: 3 channels of a picture, each with its own zero point and step.
            (
                [1, 3, 17, 38],
                [16, 3, 3],
                [2, 2],
                [1, 1, 1, 1],
                true,
                (-NO_CLAMP, NO_CLAMP),
                false,
            ),
            (
                [2, 5, 9, 8],
                [11, 3, 3],
                [1, 1],
                [1, 1, 1, 1],
                false,
                (0.0, 6.0),
                false,
            ),
            (
                [1, 4, 12, 12],
                [9, 5, 5],
                [2, 2],
                [2, 2, 2, 2],
                true,
                (0.0, NO_CLAMP),
                true,
            ),
            (
                [1, 3, 8, 8],
                [8, 3, 3],
                [2, 2],
                [0, 0, 1, 1],
                false,
                (-NO_CLAMP, NO_CLAMP),
                true,
            ),
            (
                [1, 2, 7, 9],
                [3, 2, 3],
                [1, 2],
                [0, 1, 1, 0],
                true,
                (-NO_CLAMP, NO_CLAMP),
                false,
            ),
            (
                [1, 1, 3, 3],
                [2, 7, 7],
                [1, 1],
                [3, 3, 3, 3],
                false,
                (-NO_CLAMP, NO_CLAMP),
                false,
            ),
            // Long columns (K = 144) in chunks of rows, the last partial; 17 rows (a
            // partial row block) and 50 columns (a partial column block).
            (
                [1, 16, 39, 50],
                [17, 3, 3],
                [1, 1],
                [1, 1, 1, 1],
                false,
                (0.0, 6.0),
                false,
            ),
            // Two images, stride 2 over wide rows (the vector steps of the columns).
            (
                [2, 8, 31, 130],
                [17, 3, 3],
                [2, 2],
                [1, 1, 1, 1],
                true,
                (-NO_CLAMP, NO_CLAMP),
                true,
            ),
        ] {
            let [n, c, h, w] = shape;
            let input = if per_channel {
                InputQuant::Channels {
                    zero_points: (0..c).map(|i| (i as i32 * 37) % 200 - 100).collect(),
                    scales: (0..c).map(|i| 0.01 * (1.0 + i as f32)).collect(),
                }
            } else {
                InputQuant::Tensor {
                    zero_point: -7,
                    scale: 0.013,
                }
            };
            let output = if int8_out {
                Int8Output::Int8 {
                    zero_point: 3,
                    scale: 0.05,
                }
            } else {
                Int8Output::Float
            };
            let op = op(
                [o, c, kh, kw],
                stride,
                padding,
                input.clone(),
                clamp,
                output,
            );
            let x: Vec<f32> = (0..n * c * h * w).map(|_| 1.5 * r()).collect();
            // Float input: the codes the op quantizes it to.
            let codes: Vec<i8> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (zp, s) = input.of(i / (h * w) % c);
                    quantize(v, 1.0 / s, zp as f32)
                })
                .collect();
            let want = reference(&op, &codes, shape);
            let input_f32 = Tensor::from_shape(&shape, &x).unwrap();
            // Three threads split the output rows in chunks: the same values.
            let threaded = multithread_tract_scope(Executor::multithread(3), || {
                eval(&op, input_f32.clone()).unwrap()
            });
            let got = eval(&op, input_f32).unwrap();
            assert_eq!(got, threaded, "{shape:?}: threads");
            let [oh, ow] = op.out_hw([h, w]).unwrap();
            assert_eq!(got.shape(), [n, o, oh, ow]);
            let values: Vec<f32> = if int8_out {
                let v = got.try_as_plain_ram().unwrap();
                // SAFETY: a QI8 tensor holds i8 values.
                unsafe { v.as_slice_unchecked::<i8>() }
                    .iter()
                    .map(|&q| q as f32)
                    .collect()
            } else {
                got.try_as_plain_ram()
                    .unwrap()
                    .as_slice::<f32>()
                    .unwrap()
                    .to_vec()
            };
            assert_eq!(
                values, want,
                "{shape:?} {o}x{kh}x{kw} s{stride:?} p{padding:?}"
            );
            // The same codes as an i8 input (one zero point and scale only).
            if let InputQuant::Tensor { zero_point, scale } = input {
                let dt = DatumType::QI8(QParams::ZpScale { zero_point, scale });
                let t = Tensor::from_shape(&shape, &codes)
                    .unwrap()
                    .cast_to_dt(dt)
                    .unwrap()
                    .into_owned();
                let got = eval(&op, t).unwrap();
                let v = got.try_as_plain_ram().unwrap();
                let values: Vec<f32> = if int8_out {
                    // SAFETY: a QI8 tensor holds i8 values.
                    unsafe { v.as_slice_unchecked::<i8>() }
                        .iter()
                        .map(|&q| q as f32)
                        .collect()
                } else {
                    v.as_slice::<f32>().unwrap().to_vec()
                };
                assert_eq!(values, want, "i8 input {shape:?}");
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let w = |s: &[usize]| Arc::new(Tensor::zero::<i8>(s).unwrap());
        let (b, s) = (
            Arc::new(Tensor::zero::<i32>(&[4]).unwrap()),
            Arc::new(tensor1(&[1f32; 4])),
        );
        let q = InputQuant::Tensor {
            zero_point: 0,
            scale: 0.1,
        };
        let none = (-NO_CLAMP, NO_CLAMP);
        let new = |weights, stride, padding, input, clamp| {
            Int8Conv::new(
                (weights, b.clone(), s.clone()),
                stride,
                padding,
                input,
                clamp,
                Int8Output::Float,
            )
        };
        assert!(new(w(&[4, 3, 3, 3]), [2, 2], [1; 4], q.clone(), none).is_ok());
        let channels = |n: usize| InputQuant::Channels {
            zero_points: vec![0; n],
            scales: vec![0.1; n],
        };
        for (weights, stride, padding, input, clamp) in [
            (w(&[4, 3, 9, 9]), [1, 1], [1; 4], q.clone(), none),
            (w(&[4, 3, 3, 3]), [3, 3], [1; 4], q.clone(), none),
            (w(&[4, 3, 3, 3]), [1, 1], [3, 1, 1, 1], q.clone(), none),
            (w(&[5, 3, 3, 3]), [1, 1], [1; 4], q.clone(), none),
            (w(&[4, 3, 3, 3]), [1, 1], [1; 4], channels(2), none),
            (w(&[4, 3, 3, 3]), [1, 1], [1; 4], q.clone(), (1.0, 0.0)),
            (
                w(&[4, 3, 3, 3]),
                [1, 1],
                [1; 4],
                InputQuant::Tensor {
                    zero_point: 200,
                    scale: 0.1,
                },
                none,
            ),
        ] {
            let err = new(weights, stride, padding, input, clamp).unwrap_err();
            assert!(err.to_string().contains(NAME), "{err}");
        }
        let op = new(w(&[4, 3, 3, 3]), [1, 1], [0; 4], q, none).unwrap();
        let small = Tensor::zero::<f32>(&[1, 3, 2, 2]).unwrap();
        let err = eval(&op, small).unwrap_err();
        assert!(format!("{err:?}").contains("does not fit"), "{err:?}");
        let wrong = Tensor::zero::<f32>(&[1, 2, 5, 5]).unwrap();
        let err = eval(&op, wrong).unwrap_err();
        assert!(format!("{err:?}").contains(NAME), "{err:?}");
        // Codes quantized otherwise than the op reads them.
        let dt = DatumType::QI8(QParams::ZpScale {
            zero_point: 1,
            scale: 0.1,
        });
        let codes = Tensor::zero::<i8>(&[1, 3, 5, 5])
            .unwrap()
            .cast_to_dt(dt)
            .unwrap()
            .into_owned();
        let err = eval(&op, codes).unwrap_err();
        assert!(format!("{err:?}").contains(NAME), "{err:?}");
    }
}
