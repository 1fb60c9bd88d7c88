//! `kestrel_depthwise`: a float depthwise 2-D convolution (one filter per channel, channels
//! first: `[N, C, H, W]` or `[C, H, W]`), with its bias and activation (ReLU, ReLU6 / clip, HardSwish) fused,
//! and optionally the HardSwish of its input (MobileNetV3's expansion convolutions end in one).
//!
//! Per channel, the op copies the plane into a zero-padded buffer laid out so that every
//! kernel tap is one offset (`crate::kernels::depthwise`): rows `ld` floats apart, and at
//! column stride 2 the even padded columns in one phase plane and the odd ones in another, so
//! that a tap's consecutive outputs read consecutive floats. The kernels then run whole
//! vectors along output rows with no border case; the padding is written once per task (it is
//! the same for every channel) and only the interior is copied per channel. An input HardSwish
//! is applied during that copy, with tract's arithmetic (`crate::kernels::depthwise::pad`): the
//! op then gives the bits tract's `HardSwish` followed by the op would, with one pass over the
//! plane instead of two.
//!
//! The output is f32, or (`output = "int8"`, `output_zero_point`, `output_scale`, typed `QI8`)
//! the int8 codes the next int8 layer reads: quantized as that layer would quantize the f32
//! output (`crate::kernels::int8::quantize`), plane by plane while it is in cache, so no f32
//! tensor is written between the two;
//! a `precision = "f16"` layer on a FEAT_FP16 core computes the codes in its binary16 output
//! stage instead (`crate::kernels::depthwise::fp16`).
//!
//! Shapes the op takes: kernels up to 7×7, strides 1 or 2 on each axis, zero padding smaller
//! than the kernel, dilation 1, one output channel per input channel. The converter leaves
//! any other depthwise convolution to tract.

use tract_nnef::internal::*;
use tract_nnef::ser::{array, invocation, numeric, string};

use super::int8_linear::{read_output, write_output, Int8Output};
use super::parallel::{run_indexed, threads, Disjoint};
use super::scratch::{self, Padded};
use crate::kernels::depthwise::fp16::{self, HalfCodes, HalfPlane};
use crate::kernels::depthwise::{self as dw, Activation, Layout, Plane, SLACK};
use crate::kernels::int8::{codes::quantize_codes, Quantizer};
use crate::kernels::linear::Clamp;

/// NNEF name.
pub const NAME: &str = "kestrel_depthwise";

/// Largest kernel height and width.
pub const MAX_KERNEL: usize = 7;

/// The activation fused after the convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fused {
    /// None.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), high)` (ReLU6 with `high = 6`).
    Clip(f32),
    /// `x · min(max(x/6 + 1/2, 0), 1)`.
    HardSwish,
}

impl std::hash::Hash for Fused {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let Fused::Clip(high) = self {
            high.to_bits().hash(state);
        }
    }
}

impl Fused {
    /// The clamp of the float product ops (`kestrel_linear`, `kestrel_conv`), which take
    /// none, ReLU or a finite positive clip: anything else is an error naming `op`.
    pub(crate) fn product_clamp(self, op: &str) -> TractResult<Clamp> {
        match self {
            Fused::None => Ok(Clamp::NONE),
            Fused::Relu => Ok(Clamp::new(0.0, f32::INFINITY)),
            Fused::Clip(high) => {
                ensure!(
                    high.is_finite() && high > 0.0,
                    "{op}: clip {high} must be finite and positive"
                );
                Ok(Clamp::new(0.0, high))
            }
            Fused::HardSwish => bail!("{op}: takes no fused HardSwish (none, relu or clip)"),
        }
    }

    /// The kernels' form of the activation.
    pub(crate) fn activation(self) -> Activation {
        let clamp = |low, high| Activation {
            low,
            high,
            hardswish: false,
        };
        match self {
            Fused::None => Activation::NONE,
            Fused::Relu => clamp(0.0, f32::INFINITY),
            Fused::Clip(high) => clamp(0.0, high),
            Fused::HardSwish => Activation {
                hardswish: true,
                ..Activation::NONE
            },
        }
    }
}

/// What the op applies to its input before the convolution (while copying each plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputActivation {
    /// Nothing.
    #[default]
    None,
    /// tract's HardSwish, `(x · min(max(x + 3, 0), 6)) · (1/6)`.
    HardSwish,
}

/// The arithmetic the op may use (`precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// binary16 planes, weights and sums where the core has FEAT_FP16 arithmetic
    /// (`crate::kernels::depthwise::fp16`: its error bound and why), f32 elsewhere.
    F16,
}

/// The depthwise convolution operator.
#[derive(Debug, Clone)]
pub struct Depthwise {
    /// Weights `[C, KH, KW]` f32.
    pub weights: Arc<Tensor>,
    /// Bias `[C]` f32.
    pub bias: Arc<Tensor>,
    /// Stride along height and width (1 or 2).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// The fused activation.
    pub fused: Fused,
    /// The activation applied to the input first.
    pub input: InputActivation,
    /// The arithmetic it may use.
    pub precision: Precision,
    /// What it writes: f32, or int8 codes for an int8 layer.
    pub output: Int8Output,
    /// The weights rounded to binary16 (for [`Precision::F16`]; empty otherwise).
    halves: Arc<Vec<u16>>,
}

impl std::hash::Hash for Depthwise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.weights.hash(state);
        self.bias.hash(state);
        self.stride.hash(state);
        self.padding.hash(state);
        self.fused.hash(state);
        self.input.hash(state);
        self.precision.hash(state);
        self.output.hash(state);
    }
}

impl PartialEq for Depthwise {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.bias == other.bias
            && self.stride == other.stride
            && self.padding == other.padding
            && self.fused == other.fused
            && self.input == other.input
            && self.precision == other.precision
            && self.output == other.output
    }
}

impl Eq for Depthwise {}

impl Depthwise {
    /// Builds the op, checking weights `[C, KH, KW]` (KH, KW ≤ [`MAX_KERNEL`]), bias `[C]`,
    /// strides 1 or 2, padding smaller than the kernel and a finite positive clip.
    pub fn new(
        weights: Arc<Tensor>,
        bias: Arc<Tensor>,
        stride: [usize; 2],
        padding: [usize; 4],
        fused: Fused,
    ) -> TractResult<Depthwise> {
        let s = weights.shape();
        ensure!(
            weights.datum_type() == f32::datum_type()
                && s.len() == 3
                && s[0] > 0
                && (1..=MAX_KERNEL).contains(&s[1])
                && (1..=MAX_KERNEL).contains(&s[2]),
            "{NAME}: weights must be f32 [C, KH, KW] with KH, KW in 1..={MAX_KERNEL}, got {:?} {s:?}",
            weights.datum_type()
        );
        super::window::check_bias(NAME, &bias, s[0])?;
        super::window::check_geometry(NAME, [s[1], s[2]], stride, padding)?;
        if let Fused::Clip(high) = fused {
            ensure!(
                high.is_finite() && high > 0.0,
                "{NAME}: clip {high} must be finite and positive"
            );
        }
        Ok(Depthwise {
            weights,
            bias,
            stride,
            padding,
            fused,
            input: InputActivation::None,
            precision: Precision::F32,
            output: Int8Output::Float,
            halves: Arc::default(),
        })
    }

    /// The op writing `output` (f32, or int8 codes with a zero point in `[−128, 127]` and a
    /// finite positive scale).
    pub fn with_output(self, output: Int8Output) -> TractResult<Depthwise> {
        output.check(NAME)?;
        Ok(Depthwise { output, ..self })
    }

    /// The op applying `input` to its input first.
    pub fn with_input(self, input: InputActivation) -> Depthwise {
        Depthwise { input, ..self }
    }

    /// The op computing at `precision` (its binary16 weights rounded here, once).
    pub fn with_precision(self, precision: Precision) -> TractResult<Depthwise> {
        let halves = match precision {
            Precision::F32 => Arc::default(),
            Precision::F16 => {
                let w = self.weights.try_as_plain_ram()?;
                let w = w.as_slice::<f32>()?;
                Arc::new(w.iter().map(|&x| fp16::to_half(x)).collect())
            }
        };
        Ok(Depthwise {
            precision,
            halves,
            ..self
        })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.weights.shape()[0]
    }

    /// Kernel height and width.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weights.shape()[1], self.weights.shape()[2]]
    }

    fn output_size(&self, h: usize, w: usize) -> TractResult<(usize, usize)> {
        let [kh, kw] = self.kernel();
        super::window::output_hw([h, w], self.padding, [kh, kw], self.stride)
            .with_context(|| format!("{NAME}: a {kh}x{kw} kernel does not fit a {h}x{w} input"))
    }

    /// The padded layout of one channel (module docs): row length, phase plane length, and
    /// the tap offsets (`taps[..KH·KW]`).
    fn layout(&self, h: usize, w: usize) -> (usize, usize, [usize; MAX_KERNEL * MAX_KERNEL]) {
        layout(self.kernel(), self.padding, self.stride, [h, w])
    }
}

/// The padded layout of one `[h, w]` channel plane for a `[kh, kw]` kernel (module docs): row
/// length, phase plane length, and the tap offsets (`taps[..KH·KW]`), in values. The int8
/// depthwise op lays its planes out the same way.
pub(crate) fn layout(
    [kh, kw]: [usize; 2],
    [pt, pl, pb, pr]: [usize; 4],
    stride: [usize; 2],
    [h, w]: [usize; 2],
) -> (usize, usize, [usize; MAX_KERNEL * MAX_KERNEL]) {
    let sx = stride[1];
    let ld = (w + pl + pr).div_ceil(sx) + SLACK;
    let phase_len = (h + pt + pb) * ld;
    let mut taps = [0; MAX_KERNEL * MAX_KERNEL];
    for ky in 0..kh {
        for kx in 0..kw {
            taps[ky * kw + kx] = (kx % sx) * phase_len + ky * ld + kx / sx;
        }
    }
    (ld, phase_len, taps)
}

impl Op for Depthwise {
    fn name(&self) -> StaticName {
        "KestrelDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let [kh, kw] = self.kernel();
        let kernel = match (self.precision, fp16::select()) {
            (Precision::F16, Some(k)) => k.name(),
            _ => dw::select().name(),
        };
        Ok(vec![format!(
            "{kh}x{kw} stride {:?} padding {:?} input {:?} {:?} {:?} out {:?}, kernel {kernel}",
            self.stride, self.padding, self.input, self.fused, self.precision, self.output,
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Depthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type(),
            "{NAME}: input must be f32, got {:?}",
            input.datum_type()
        );
        let plan = self.plan(input.shape())?;
        let dt = self.output.datum_type();
        // SAFETY: `run` writes every element (each plane by one kernel call).
        let mut out = unsafe { Tensor::uninitialized_dt(dt, &plan.output_shape)? };
        {
            let view = input.try_as_plain_ram()?;
            let mut out_view = out.try_as_plain_ram_mut()?;
            let dst = match self.output {
                Int8Output::Float => Dst::F32(Disjoint::new(out_view.as_slice_mut::<f32>()?)),
                Int8Output::Int8 { zero_point, scale } => Dst::Codes(
                    // SAFETY: a QI8 tensor holds i8 values.
                    Disjoint::new(unsafe { out_view.as_slice_mut_unchecked::<i8>() }),
                    Quantizer {
                        inv_scale: 1.0 / scale,
                        zp: zero_point,
                    },
                ),
            };
            self.run(&plan, view.as_slice::<f32>()?, dst)?;
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

/// Where the planes go: f32, or int8 codes quantized with the next layer's quantizer.
enum Dst<'a> {
    F32(Disjoint<'a, f32>),
    Codes(Disjoint<'a, i8>, Quantizer),
}

impl Dst<'_> {
    /// Writes plane `p` (`len` values) from its f32 computation `f`: in place, or into
    /// scratch and then quantized.
    ///
    /// # Safety
    /// Plane `p` belongs to the calling task alone.
    unsafe fn write(&self, p: usize, len: usize, f: impl FnOnce(&mut [f32])) {
        match self {
            // SAFETY: the caller's.
            Dst::F32(out) => f(unsafe { out.part(p * len, len) }),
            Dst::Codes(out, q) => scratch::plane_out(len, |tmp| {
                f(tmp);
                // SAFETY: the caller's.
                quantize_codes(tmp, *q, unsafe { out.part(p * len, len) });
            }),
        }
    }
}

/// The geometry of one evaluation: the planes, their padded layout and the output.
struct Plan {
    /// Output tensor shape.
    output_shape: TVec<usize>,
    /// Planes (images × channels), channels, input and output plane sizes.
    planes: usize,
    channels: usize,
    hw: [usize; 2],
    out_hw: [usize; 2],
    /// Row length of the padded layout, length of one phase plane, taps (`[..KH·KW]`).
    ld: usize,
    phase_len: usize,
    taps: [usize; MAX_KERNEL * MAX_KERNEL],
}

impl Depthwise {
    /// The plan of an input of `shape` (`[N, C, H, W]` or `[C, H, W]`).
    fn plan(&self, s: &[usize]) -> TractResult<Plan> {
        let r = s.len();
        ensure!(
            (r == 3 || r == 4) && s[r - 3] == self.channels(),
            "{NAME}: input must be [N, {c}, H, W] or [{c}, H, W], got {s:?}",
            c = self.channels(),
        );
        let (h, w) = (s[r - 2], s[r - 1]);
        let (oh, ow) = self.output_size(h, w)?;
        let mut output_shape: TVec<usize> = s.into();
        output_shape[r - 2] = oh;
        output_shape[r - 1] = ow;
        let (ld, phase_len, taps) = self.layout(h, w);
        Ok(Plan {
            output_shape,
            planes: s[..r - 2].iter().product(),
            channels: s[r - 3],
            hw: [h, w],
            out_hw: [oh, ow],
            ld,
            phase_len,
            taps,
        })
    }

    /// Runs `plan` from `x` into `dst`, the planes split over the executor's threads; each
    /// task zeroes its padded buffer once (the padding is the same for every plane) and copies
    /// each plane's interior into it. A `precision = "f16"` layer runs in binary16 where a
    /// half-precision kernel is selected.
    fn run(&self, plan: &Plan, x: &[f32], dst: Dst<'_>) -> TractResult<()> {
        let [h, w] = plan.hw;
        let plane_out = plan.out_hw[0] * plan.out_hw[1];
        if plan.planes == 0 || plane_out == 0 {
            return Ok(());
        }
        let bias = self.bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<f32>()?;
        let [kh, kw] = self.kernel();
        let taps_n = kh * kw;
        let [pt, pl, _, _] = self.padding;
        let (sy, sx) = (self.stride[0], self.stride[1]);
        let placement = dw::pad::Placement {
            ld: plan.ld,
            phase_len: plan.phase_len,
            top: pt,
            left: pl,
            stride: sx,
        };
        let hardswish = self.input == InputActivation::HardSwish;
        let act = self.fused.activation();
        let taps = &plan.taps[..taps_n];
        let layout = Layout::new(taps, sy * plan.ld, plan.out_hw[0], plan.out_hw[1], act);
        let buf_len = sx * plan.phase_len;
        if let (Precision::F16, Some(kernel)) = (self.precision, fp16::select()) {
            let filler = fp16::pad::HalfFill::new(placement, [h, w], buf_len, hardswish);
            let weights = &self.halves;
            // Codes from the binary16 stage where its constants fit binary16.
            let codes = match &dst {
                Dst::Codes(_, q) if bias.iter().all(|b| b.abs() <= fp16::MAX_CODES_BIAS) => {
                    HalfCodes::new(act, q.inv_scale, q.zp)
                }
                _ => None,
            };
            self.each_plane::<u16>(
                plan,
                x,
                |buf, src| kernel.fill(&filler, buf, src),
                |buf, ch, p| {
                    let plane = HalfPlane {
                        input: buf,
                        weights: &weights[ch * taps_n..][..taps_n],
                        bias: bias[ch],
                    };
                    match (&dst, &codes) {
                        (Dst::Codes(out, _), Some(q)) => {
                            // SAFETY: plane p belongs to this task alone.
                            let out = unsafe { out.part(p * plane_out, plane_out) };
                            kernel.run_plane_codes(&layout, plane, q, out)
                        }
                        // SAFETY: as above.
                        _ => unsafe {
                            dst.write(p, plane_out, |o| kernel.run_plane(&layout, plane, o))
                        },
                    }
                },
            );
            return Ok(());
        }
        let weights = self.weights.try_as_plain_ram()?;
        let weights = weights.as_slice::<f32>()?;
        let filler = dw::pad::PlaneFill::new(placement, [h, w], buf_len, hardswish);
        let kernel = dw::select();
        self.each_plane::<f32>(
            plan,
            x,
            |buf, src| filler.fill(buf, src),
            |buf, ch, p| {
                let plane = Plane {
                    input: buf,
                    weights: &weights[ch * taps_n..][..taps_n],
                    bias: bias[ch],
                };
                match &dst {
                    // SAFETY: plane p belongs to this task alone.
                    Dst::F32(out) => kernel.run_plane(&layout, plane, unsafe {
                        out.part(p * plane_out, plane_out)
                    }),
                    Dst::Codes(out, q) => scratch::plane_out(plane_out, |tmp| {
                        // SAFETY: as above.
                        let out = unsafe { out.part(p * plane_out, plane_out) };
                        kernel.run_plane_codes(&layout, plane, *q, out, tmp)
                    }),
                }
            },
        );
        Ok(())
    }

    /// The task loop of [`Depthwise::run`] for padded planes of `B`: each task borrows its
    /// buffer, zeroes it, and for each of its planes `fill`s it from the input plane, then
    /// calls `plane(buffer, channel, plane index)`.
    fn each_plane<B: Padded>(
        &self,
        plan: &Plan,
        x: &[f32],
        fill: impl Fn(&mut [B], &[f32]) + Sync,
        plane: impl Fn(&[B], usize, usize) + Sync,
    ) {
        let plane_in = plan.hw[0] * plan.hw[1];
        let buf_len = self.stride[1] * plan.phase_len;
        let tasks = threads().min(plan.planes);
        run_indexed(tasks, |t| {
            let range = t * plan.planes / tasks..(t + 1) * plan.planes / tasks;
            B::scratch(buf_len, |buf| {
                buf.fill(B::default());
                let mut ch = range.start % plan.channels;
                for p in range {
                    fill(buf, &x[p * plane_in..][..plane_in]);
                    plane(buf, ch, p);
                    ch = if ch + 1 == plan.channels { 0 } else { ch + 1 };
                }
            })
        });
    }
}

impl TypedOp for Depthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        let r = f.rank();
        ensure!(
            f.datum_type == f32::datum_type()
                && (r == 3 || r == 4)
                && f.shape[r - 3].to_usize().ok() == Some(self.channels()),
            "{NAME}: input must be f32 [N, {c}, H, W] or [{c}, H, W], got {f:?}",
            c = self.channels()
        );
        let (oh, ow) = self.output_size(f.shape[r - 2].to_usize()?, f.shape[r - 1].to_usize()?)?;
        let mut shape = f.shape.to_tvec();
        shape[r - 2] = oh.into();
        shape[r - 1] = ow.into();
        Ok(tvec!(self.output.datum_type().fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?.remove(0);
        let [kh, kw] = self.kernel();
        let macs = out.shape.iter().product::<TDim>() * (kh * kw);
        Ok(tvec!((Cost::FMA(f32::datum_type()), macs)))
    }

    as_op!();
}

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Scalar.tensor().named("weights"),
            TypeName::Scalar.tensor().named("bias"),
            TypeName::Integer.array().named("stride"),
            TypeName::Integer.array().named("padding"),
            TypeName::String.named("activation").default("none"),
            TypeName::Scalar.named("clip").default(0.0),
            TypeName::String.named("input_activation").default("none"),
            TypeName::String.named("precision").default("f32"),
            TypeName::String.named("output").default("float"),
            TypeName::Integer.named("output_zero_point").default(0),
            TypeName::Scalar.named("output_scale").default(1.0),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let weights: Arc<Tensor> = invocation.named_arg_as(builder, "weights")?;
    let bias: Arc<Tensor> = invocation.named_arg_as(builder, "bias")?;
    let (stride, padding) = super::window::read_window(builder, invocation, NAME)?;
    let fused = read_fused(builder, invocation, NAME)?;
    let precision = match invocation
        .named_arg_as::<String>(builder, "precision")?
        .as_str()
    {
        "f32" => Precision::F32,
        "f16" => Precision::F16,
        other => bail!("{NAME}: unknown precision '{other}' (expected f32 or f16)"),
    };
    let op = Depthwise::new(weights, bias, stride, padding, fused)?
        .with_input(read_input_activation(builder, invocation, NAME)?)
        .with_precision(precision)?
        .with_output(read_output(builder, invocation, NAME)?)?;
    builder.wire(op, &[input])
}

/// The input activation of a depthwise op's invocation (`input_activation`).
pub(crate) fn read_input_activation(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    op: &str,
) -> TractResult<InputActivation> {
    Ok(
        match invocation
            .named_arg_as::<String>(builder, "input_activation")?
            .as_str()
        {
            "none" => InputActivation::None,
            "hardswish" => InputActivation::HardSwish,
            other => {
                bail!("{op}: unknown input_activation '{other}' (expected none or hardswish)")
            }
        },
    )
}

/// Writes `input_activation` unless it is none.
pub(crate) fn write_input_activation(
    input: InputActivation,
    attributes: &mut Vec<(&'static str, RValue)>,
) {
    if input == InputActivation::HardSwish {
        attributes.push(("input_activation", string("hardswish")));
    }
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &Depthwise) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), &op.weights)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &op.bias)?;
    let ints = |v: &[usize]| array(v.iter().map(numeric).collect::<Vec<_>>());
    let mut attributes = vec![("stride", ints(&op.stride)), ("padding", ints(&op.padding))];
    write_fused(op.fused, &mut attributes);
    write_input_activation(op.input, &mut attributes);
    if op.precision == Precision::F16 {
        attributes.push(("precision", string("f16")));
    }
    if op.output != Int8Output::Float {
        write_output(op.output, &mut attributes);
    }
    Ok(Some(invocation(NAME, &[input, weights, bias], &attributes)))
}

/// The fused activation of a depthwise op's invocation (`activation`, `clip`).
pub(crate) fn read_fused(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    op: &str,
) -> TractResult<Fused> {
    Ok(
        match invocation
            .named_arg_as::<String>(builder, "activation")?
            .as_str()
        {
            "none" => Fused::None,
            "relu" => Fused::Relu,
            "clip" => Fused::Clip(invocation.named_arg_as(builder, "clip")?),
            "hardswish" => Fused::HardSwish,
            other => {
                bail!("{op}: unknown activation '{other}' (expected none, relu, clip or hardswish)")
            }
        },
    )
}

/// Appends the attributes [`read_fused`] reads.
pub(crate) fn write_fused(fused: Fused, attributes: &mut Vec<(&'static str, RValue)>) {
    let activation = match fused {
        Fused::None => "none",
        Fused::Relu => "relu",
        Fused::Clip(high) => {
            attributes.push(("clip", numeric(high)));
            "clip"
        }
        Fused::HardSwish => "hardswish",
    };
    attributes.push(("activation", string(activation)));
}
