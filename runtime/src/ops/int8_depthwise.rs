//! `kestrel_int8_depthwise`: an int8 depthwise 2-D convolution (one filter per channel,
//! channels first: `[N, C, H, W]` or `[C, H, W]`) with its quantization, bias and activation
//! (ReLU, ReLU6 / clip, HardSwish) fused.
//!
//! ```text
//! y[n, c, oy, ox] = act(scale[c] · (bias[c] + Σ_{ky, kx} w[c, ky, kx] · (q[n, c, oy·sy + ky − pt, ox·sx + kx − pl] − zp)))
//! ```
//!
//! with `q` the input's int8 codes (zero point `zp`; `q − zp` is 0 outside the plane), `w` symmetric per-channel i8 weights in `[−127, 127]`, `bias` i32 at the scale
//! `scale[c]` = the channel's input scale × its weight scale, and `act` as in
//! `kestrel_depthwise`.
//! The output is f32, or requantized to i8 (`output_zero_point`, `output_scale`, typed `QI8`)
//! for another int8 layer to read.
//!
//! The input is the previous int8 layer's i8 codes (one zero point and scale for the tensor),
//! or floats, quantized (`round(x / s)` clamped to the codes, `depthwise8::pad`) while each
//! plane is copied into its padded layout: no separate quantizing op, no float tensor between
//! two int8 layers. A float input may have its own zero point and scale per channel
//! ([`InputQuant::Channels`]):
//! the layer before a depthwise convolution (an expansion 1×1 and its HardSwish) leaves
//! channels whose ranges differ by 10–100×, and one step for all of them rounds the narrow
//! ones to a few codes. Per channel it costs nothing: each plane is quantized on its own
//! anyway and the channel's scale is already in `scale[c]`. A float input may also go through
//! a HardSwish first (`input_activation`, as in `kestrel_depthwise`; tract's steps, its final
//! `· ⅙` folded into the quantization's multiply): the HardSwish of a MobileNetV3 expansion
//! layer is then applied while each plane is quantized, never written out.
//!
//! The layout and the geometry (kernels up to 7×7, strides 1 or 2, zero padding smaller than
//! the kernel) are `kestrel_depthwise`'s; the kernels are `crate::kernels::depthwise8`, exact
//! in i32 and bit for bit the same on every CPU. Each task lays its planes out in the form its
//! kernel reads: i16 `q − zp` with the padding 0, written once, or (the `sdot` kernel) the i8
//! codes with the padding at the plane's zero point, written again whenever that changes.

use tract_nnef::ast::Literal;
use tract_nnef::internal::*;
use tract_nnef::ser::{array, invocation, numeric};

use super::depthwise::{
    layout, read_fused, read_input_activation, write_fused, write_input_activation, Fused,
    InputActivation, MAX_KERNEL,
};
use super::int8_linear::{int_arg, read_output, write_output, Int8Output};
use super::parallel::{run_indexed, threads, Disjoint};
use super::scratch;
use crate::kernels::depthwise8::pad::{self, Placement, Source};
use crate::kernels::depthwise8::{self as dw8, Input, InputFormat, Out, PlaneJob};

/// NNEF name.
pub const NAME: &str = "kestrel_int8_depthwise";

/// The int8 depthwise convolution operator.
#[derive(Debug, Clone)]
pub struct Int8Depthwise {
    /// Weights `[C, KH, KW]` i8, in `[−127, 127]`.
    pub weights: Arc<Tensor>,
    /// i32 bias `[C]` at the scale `scale[c]`.
    pub bias: Arc<Tensor>,
    /// f32 `[C]`: input scale × the channel's weight scale.
    pub scale: Arc<Tensor>,
    /// Stride along height and width (1 or 2).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
    /// The fused activation.
    pub fused: Fused,
    /// Input quantization.
    pub input: InputQuant,
    /// The activation applied to a float input before it is quantized (tract's HardSwish,
    /// operation by operation, as `kestrel_depthwise` applies it).
    pub input_activation: InputActivation,
    /// Output type.
    pub output: Int8Output,
    weights16: Vec<i16>,
}

impl std::hash::Hash for Int8Depthwise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.weights.hash(state);
        self.bias.hash(state);
        self.stride.hash(state);
        self.padding.hash(state);
        self.input.hash(state);
        self.input_activation.hash(state);
    }
}

impl PartialEq for Int8Depthwise {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights
            && self.bias == other.bias
            && self.scale == other.scale
            && self.stride == other.stride
            && self.padding == other.padding
            && self.fused == other.fused
            && self.input == other.input
            && self.input_activation == other.input_activation
            && self.output == other.output
    }
}

impl Eq for Int8Depthwise {}

/// How [`Int8Depthwise`] reads its input: `real = (q − zero point) · scale`.
#[derive(Debug, Clone)]
pub enum InputQuant {
    /// One zero point (in `[−128, 127]`) and scale for the tensor: the i8 codes an int8 layer
    /// wrote, or a float input quantized with them.
    Tensor {
        /// Zero point.
        zero_point: i32,
        /// Scale.
        scale: f32,
    },
    /// One per channel, for a float input only (module docs).
    Channels {
        /// Zero points, in `[−128, 127]`.
        zero_points: Vec<i32>,
        /// Scales.
        scales: Vec<f32>,
    },
}

impl From<(i32, f32)> for InputQuant {
    fn from((zero_point, scale): (i32, f32)) -> InputQuant {
        InputQuant::Tensor { zero_point, scale }
    }
}

impl PartialEq for InputQuant {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &[f32], b: &[f32]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        match (self, other) {
            (
                InputQuant::Tensor { zero_point, scale },
                InputQuant::Tensor {
                    zero_point: z,
                    scale: s,
                },
            ) => zero_point == z && scale.to_bits() == s.to_bits(),
            (
                InputQuant::Channels {
                    zero_points,
                    scales,
                },
                InputQuant::Channels {
                    zero_points: z,
                    scales: s,
                },
            ) => zero_points == z && same(scales, s),
            _ => false,
        }
    }
}

impl Eq for InputQuant {}

impl std::hash::Hash for InputQuant {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            InputQuant::Tensor { zero_point, scale } => {
                zero_point.hash(state);
                scale.to_bits().hash(state);
            }
            InputQuant::Channels {
                zero_points,
                scales,
            } => {
                zero_points.hash(state);
                scales.iter().for_each(|s| s.to_bits().hash(state));
            }
        }
    }
}

impl InputQuant {
    /// Channel `c`'s zero point and scale.
    pub fn of(&self, c: usize) -> (i32, f32) {
        match self {
            InputQuant::Tensor { zero_point, scale } => (*zero_point, *scale),
            InputQuant::Channels {
                zero_points,
                scales,
            } => (zero_points[c], scales[c]),
        }
    }

    /// Checks every zero point is in `[−128, 127]` and every scale finite and positive, one
    /// per channel of `channels` for [`InputQuant::Channels`]; errors name the op `op`.
    pub(crate) fn check(&self, op: &str, channels: usize) -> TractResult<()> {
        let (zps, scales): (&[i32], &[f32]) = match self {
            InputQuant::Tensor { zero_point, scale } => (
                std::slice::from_ref(zero_point),
                std::slice::from_ref(scale),
            ),
            InputQuant::Channels {
                zero_points,
                scales,
            } => {
                ensure!(
                    zero_points.len() == channels && scales.len() == channels,
                    "{op}: {} input zero points and {} input scales for {channels} channels",
                    zero_points.len(),
                    scales.len()
                );
                (zero_points, scales)
            }
        };
        if let Some(z) = zps.iter().find(|z| !(-128..=127).contains(*z)) {
            bail!("{op}: input zero point {z} outside [-128, 127]");
        }
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            bail!("{op}: input scale {s} must be finite and positive");
        }
        Ok(())
    }
}

impl Int8Depthwise {
    /// Builds the op, checking weights `[C, KH, KW]` i8 in `[−127, 127]` (KH, KW ≤
    /// [`MAX_KERNEL`]), bias i32 `[C]`, scale f32 `[C]` (finite, positive), strides 1 or 2,
    /// padding smaller than the kernel, a finite positive clip, input zero points in
    /// `[−128, 127]` (one per channel with [`InputQuant::Channels`]) and finite positive input
    /// and output scales.
    pub fn new(
        (weights, bias, scale): (Arc<Tensor>, Arc<Tensor>, Arc<Tensor>),
        stride: [usize; 2],
        padding: [usize; 4],
        fused: Fused,
        input: InputQuant,
        output: Int8Output,
    ) -> TractResult<Int8Depthwise> {
        let s = weights.shape().to_vec();
        ensure!(
            weights.datum_type().unquantized() == i8::datum_type()
                && s.len() == 3
                && s[0] > 0
                && (1..=MAX_KERNEL).contains(&s[1])
                && (1..=MAX_KERNEL).contains(&s[2]),
            "{NAME}: weights must be i8 [C, KH, KW] with KH, KW in 1..={MAX_KERNEL}, got {:?} {s:?}",
            weights.datum_type()
        );
        let w8 = weights.try_as_plain_ram()?;
        // SAFETY: i8 and QI8 tensors hold i8 values.
        let w8 = unsafe { w8.as_slice_unchecked::<i8>() };
        ensure!(
            !w8.contains(&i8::MIN),
            "{NAME}: weights must lie in [-127, 127]"
        );
        let c = s[0];
        ensure!(
            bias.datum_type() == i32::datum_type() && bias.shape() == [c],
            "{NAME}: bias must be i32 [{c}], got {:?} {:?}",
            bias.datum_type(),
            bias.shape()
        );
        ensure!(
            scale.datum_type() == f32::datum_type() && scale.shape() == [c],
            "{NAME}: scale must be f32 [{c}], got {:?} {:?}",
            scale.datum_type(),
            scale.shape()
        );
        // The kernels' i32 sums: bias plus at most KH·KW products of 127 · 255.
        let products = (s[1] * s[2]) as i64 * 127 * i64::from(dw8::MAX_INPUT);
        ensure!(
            bias.try_as_plain_ram()?
                .as_slice::<i32>()?
                .iter()
                .all(|&b| i64::from(b).abs() + products <= i64::from(i32::MAX)),
            "{NAME}: a bias is too large for the i32 sums"
        );
        ensure!(
            scale
                .try_as_plain_ram()?
                .as_slice::<f32>()?
                .iter()
                .all(|v| v.is_finite() && *v > 0.0),
            "{NAME}: scales must be finite and positive"
        );
        ensure!(
            stride.iter().all(|s| (1..=2).contains(s)),
            "{NAME}: strides must be 1 or 2, got {stride:?}"
        );
        let [pt, pl, pb, pr] = padding;
        ensure!(
            pt < s[1] && pb < s[1] && pl < s[2] && pr < s[2],
            "{NAME}: padding {padding:?} must be smaller than the kernel {}x{}",
            s[1],
            s[2]
        );
        if let Fused::Clip(high) = fused {
            ensure!(
                high.is_finite() && high > 0.0,
                "{NAME}: clip {high} must be finite and positive"
            );
        }
        input.check(NAME, c)?;
        output.check(NAME)?;
        let weights16 = w8.iter().map(|&w| i16::from(w)).collect();
        Ok(Int8Depthwise {
            weights,
            bias,
            scale,
            stride,
            padding,
            fused,
            input,
            input_activation: InputActivation::None,
            output,
            weights16,
        })
    }

    /// The op with `input` applied to its (float) input first.
    pub fn with_input(self, input: InputActivation) -> Int8Depthwise {
        Int8Depthwise {
            input_activation: input,
            ..self
        }
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

    fn output_dt(&self) -> DatumType {
        self.output.datum_type()
    }

    /// Checks an input type: f32, or i8 codes whose quantization (if typed) is the op's.
    fn check_input(&self, dt: DatumType) -> TractResult<()> {
        ensure!(
            dt == f32::datum_type() || dt.unquantized() == i8::datum_type(),
            "{NAME}: input must be f32 or i8, got {dt:?}"
        );
        if dt == f32::datum_type() {
            return Ok(());
        }
        ensure!(
            self.input_activation == InputActivation::None,
            "{NAME}: an input activation needs a float input, got {dt:?}"
        );
        let InputQuant::Tensor {
            zero_point: zp,
            scale: s,
        } = self.input
        else {
            bail!(
                "{NAME}: an i8 input ({dt:?}) needs one zero point and scale, not one per channel"
            );
        };
        if let Some(QParams::ZpScale { zero_point, scale }) = dt.qparams() {
            ensure!(
                zero_point == zp && scale == s,
                "{NAME}: input quantized as {dt:?}, the op expects zero point {zp} scale {s}"
            );
        }
        Ok(())
    }

    /// Output shape of an input of `shape` (`[N, C, H, W]` or `[C, H, W]`).
    fn output_shape(&self, s: &[usize]) -> TractResult<TVec<usize>> {
        let r = s.len();
        ensure!(
            (r == 3 || r == 4) && s[r - 3] == self.channels(),
            "{NAME}: input must be [N, {c}, H, W] or [{c}, H, W], got {s:?}",
            c = self.channels(),
        );
        let (oh, ow) = self.output_size(s[r - 2], s[r - 1])?;
        let mut out: TVec<usize> = s.into();
        out[r - 2] = oh;
        out[r - 1] = ow;
        Ok(out)
    }

    /// Runs the planes of `x` (`shape`) into `out`, split over the executor's threads; each
    /// task writes its padded buffer's padding (once, or per zero point) and lays out each
    /// plane's interior in it.
    fn run(&self, shape: &[usize], x: Src<'_>, out: Dst<'_>) -> TractResult<()> {
        let r = shape.len();
        let [h, w] = [shape[r - 2], shape[r - 1]];
        let (oh, ow) = self.output_size(h, w)?;
        let planes: usize = shape[..r - 2].iter().product();
        let plane_out = oh * ow;
        if planes == 0 || plane_out == 0 {
            return Ok(());
        }
        let [kh, kw] = self.kernel();
        let (ld, phase_len, taps) = layout([kh, kw], self.padding, self.stride, [h, w]);
        let taps = &taps[..kh * kw];
        let geometry = dw8::Geometry::new(taps, self.stride[0] * ld, [oh, ow]);
        let bias = self.bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<i32>()?;
        let scale = self.scale.try_as_plain_ram()?;
        let scale = scale.as_slice::<f32>()?;
        let channels = self.channels();
        let act = self.fused.activation();
        let at = Placement {
            ld,
            phase_len,
            top: self.padding[0],
            left: self.padding[1],
            stride: self.stride[1],
        };
        let kernel = dw8::select();
        let tasks = threads().min(planes);
        let plane = |p: usize| {
            let (zp, scale) = self.input.of(p % channels);
            match x {
                Src::I8(s) => Source::I8(&s[p * h * w..][..h * w], zp),
                Src::F32(s) => {
                    let s = &s[p * h * w..][..h * w];
                    match self.input_activation {
                        InputActivation::None => Source::F32(s, 1.0 / scale, zp),
                        InputActivation::HardSwish => Source::HardSwishF32(s, 1.0 / scale, zp),
                    }
                }
            }
        };
        let (f32_out, i8_out, requant) = match out {
            Dst::F32(o) => (Some(Disjoint::new(o)), None, (0.0, 0)),
            Dst::I8(o, inv, zp) => (None, Some(Disjoint::new(o)), (inv, zp)),
        };
        // Plane p through the kernel, its input laid out in `input`.
        let compute = |p: usize, input: Input<'_>| {
            let ch = p % channels;
            let job = PlaneJob {
                input,
                geometry,
                weights: &self.weights16[ch * kh * kw..][..kh * kw],
                bias: bias[ch],
                scale: scale[ch],
                act,
            };
            // SAFETY: plane p belongs to this task alone.
            let dst = unsafe {
                match (&f32_out, &i8_out) {
                    (Some(o), _) => Out::F32(o.part(p * plane_out, plane_out)),
                    (_, Some(o)) => Out::I8 {
                        out: o.part(p * plane_out, plane_out),
                        inv_scale: requant.0,
                        zp: requant.1,
                    },
                    _ => unreachable!("one output"),
                }
            };
            kernel.run(&job, dst);
        };
        let len = self.stride[1] * phase_len;
        run_indexed(tasks, |t| {
            let range = t * planes / tasks..(t + 1) * planes / tasks;
            match kernel.format() {
                // The padding is 0 for every plane: written once.
                InputFormat::Offsets => scratch::shorts(len, |buf| {
                    buf.fill(0);
                    for p in range {
                        pad::fill(buf, plane(p), [h, w], &at);
                        compute(p, Input::Offsets(buf));
                    }
                }),
                // The padding is the plane's zero point: written again when it changes.
                InputFormat::Codes => scratch::codes(len + dw8::CODES_SLACK, |buf| {
                    let mut padding = None;
                    for p in range {
                        let src = plane(p);
                        let zp = src.zero_point();
                        if padding != Some(zp) {
                            buf.fill(zp as i8);
                            padding = Some(zp);
                        }
                        pad::fill_codes(buf, src, [h, w], &at);
                        compute(p, Input::Codes(buf, zp));
                    }
                }),
            }
        });
        Ok(())
    }
}

/// The input of one evaluation.
#[derive(Clone, Copy)]
enum Src<'a> {
    I8(&'a [i8]),
    F32(&'a [f32]),
}

/// The output buffer of one evaluation.
enum Dst<'a> {
    F32(&'a mut [f32]),
    I8(&'a mut [i8], f32, i32),
}

impl Op for Int8Depthwise {
    fn name(&self) -> StaticName {
        "KestrelInt8Depthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let [kh, kw] = self.kernel();
        Ok(vec![format!(
            "{kh}x{kw} stride {:?} padding {:?} {:?} → {}, kernel {}",
            self.stride,
            self.padding,
            self.fused,
            match self.output {
                Int8Output::Float => "f32",
                Int8Output::Int8 { .. } => "i8",
            },
            dw8::select().name()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Depthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        self.check_input(input.datum_type())?;
        let shape = self.output_shape(input.shape())?;
        // SAFETY: `run` writes every element (each plane by one kernel call).
        let mut out = unsafe { Tensor::uninitialized_dt(self.output_dt(), &shape)? };
        {
            let view = input.try_as_plain_ram()?;
            let source = if input.datum_type() == f32::datum_type() {
                Src::F32(view.as_slice::<f32>()?)
            } else {
                // SAFETY: i8 and QI8 tensors hold i8 values.
                Src::I8(unsafe { view.as_slice_unchecked::<i8>() })
            };
            let mut out_view = out.try_as_plain_ram_mut()?;
            let dst = match self.output {
                Int8Output::Float => Dst::F32(out_view.as_slice_mut::<f32>()?),
                Int8Output::Int8 { zero_point, scale } => Dst::I8(
                    // SAFETY: a QI8 tensor holds i8 values.
                    unsafe { out_view.as_slice_mut_unchecked::<i8>() },
                    1.0 / scale,
                    zero_point,
                ),
            };
            self.run(input.shape(), source, dst)?;
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Depthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        self.check_input(f.datum_type)?;
        let r = f.rank();
        ensure!(
            (r == 3 || r == 4) && f.shape[r - 3].to_usize().ok() == Some(self.channels()),
            "{NAME}: input must be [N, {c}, H, W] or [{c}, H, W], got {f:?}",
            c = self.channels()
        );
        let (oh, ow) = self.output_size(f.shape[r - 2].to_usize()?, f.shape[r - 1].to_usize()?)?;
        let mut shape = f.shape.to_tvec();
        shape[r - 2] = oh.into();
        shape[r - 1] = ow.into();
        Ok(tvec!(self.output_dt().fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?.remove(0);
        let [kh, kw] = self.kernel();
        let macs = out.shape.iter().product::<TDim>() * (kh * kw);
        Ok(tvec!((Cost::FMA(i32::datum_type()), macs)))
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
        TypeName::String.named("activation").default("none"),
        TypeName::Scalar.named("clip").default(0.0),
    ];
    parameters.extend(input_quant_parameters());
    parameters.extend([
        TypeName::String.named("output"),
        TypeName::String.named("input_activation").default("none"),
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

/// The NNEF parameters of an [`InputQuant`]: `input_zero_point` and `input_scale` (one for
/// the tensor), or the lists `input_zero_points` and `input_scales` (one per channel).
pub(crate) fn input_quant_parameters() -> [Parameter; 4] {
    [
        TypeName::Integer.named("input_zero_point").default(0),
        TypeName::Scalar.named("input_scale").default(1.0),
        TypeName::Integer
            .array()
            .named("input_zero_points")
            .default(Literal::Array(vec![])),
        TypeName::Scalar
            .array()
            .named("input_scales")
            .default(Literal::Array(vec![])),
    ]
}

/// The [`InputQuant`] of an invocation of `op` (see [`input_quant_parameters`]).
pub(crate) fn read_input_quant(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    op: &str,
) -> TractResult<InputQuant> {
    let zero_points: TVec<i64> = invocation.named_arg_as(builder, "input_zero_points")?;
    let scales: TVec<f32> = invocation.named_arg_as(builder, "input_scales")?;
    Ok(if zero_points.is_empty() && scales.is_empty() {
        InputQuant::Tensor {
            zero_point: int_arg(builder, invocation, op, "input_zero_point")?,
            scale: invocation.named_arg_as(builder, "input_scale")?,
        }
    } else {
        let zero_points = zero_points
            .iter()
            .map(|&z| i32::try_from(z).with_context(|| format!("{op}: input zero point {z}")))
            .collect::<TractResult<Vec<i32>>>()?;
        InputQuant::Channels {
            zero_points,
            scales: scales.to_vec(),
        }
    })
}

/// Appends the attributes [`read_input_quant`] reads.
pub(crate) fn write_input_quant(input: &InputQuant, attributes: &mut Vec<(&'static str, RValue)>) {
    match input {
        InputQuant::Tensor { zero_point, scale } => {
            attributes.push(("input_zero_point", numeric(zero_point)));
            attributes.push(("input_scale", numeric(scale)));
        }
        InputQuant::Channels {
            zero_points,
            scales,
        } => {
            let list = array(zero_points.iter().map(numeric).collect::<Vec<_>>());
            attributes.push(("input_zero_points", list));
            attributes.push((
                "input_scales",
                array(scales.iter().map(numeric).collect::<Vec<_>>()),
            ));
        }
    }
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let weights: Arc<Tensor> = invocation.named_arg_as(builder, "weights")?;
    let bias: Arc<Tensor> = invocation.named_arg_as(builder, "bias")?;
    let scale: Arc<Tensor> = invocation.named_arg_as(builder, "scale")?;
    let (stride, padding) = super::window::read_window(builder, invocation, NAME)?;
    let fused = read_fused(builder, invocation, NAME)?;
    let output = read_output(builder, invocation, NAME)?;
    let quant = read_input_quant(builder, invocation, NAME)?;
    let op = Int8Depthwise::new(
        (weights, bias, scale),
        stride,
        padding,
        fused,
        quant,
        output,
    )?
    .with_input(read_input_activation(builder, invocation, NAME)?);
    builder.wire(op, &[input])
}

fn dump(
    ast: &mut IntoAst,
    node: &TypedNode,
    op: &Int8Depthwise,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), &op.weights)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &op.bias)?;
    let scale = ast.konst_variable(format!("{}_scale", node.name), &op.scale)?;
    let ints = |v: &[usize]| array(v.iter().map(numeric).collect::<Vec<_>>());
    let mut attributes = vec![("stride", ints(&op.stride)), ("padding", ints(&op.padding))];
    write_input_quant(&op.input, &mut attributes);
    write_fused(op.fused, &mut attributes);
    write_input_activation(op.input_activation, &mut attributes);
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

    /// A 2-channel 3×3 op on a 5×6 plane against the definition computed here in i64 and f64
    /// (for these small values the float stage is exact up to one rounding).
    fn op(stride: usize, output: Int8Output) -> Int8Depthwise {
        let w: Vec<i8> = (0..18).map(|i| (i * 37 % 255 - 127) as i8).collect();
        let weights = Tensor::from_shape(&[2, 3, 3], &w)
            .unwrap()
            .into_arc_tensor();
        let bias = tensor1(&[100i32, -250]).into_arc_tensor();
        let scale = tensor1(&[0.01f32, 0.02]).into_arc_tensor();
        Int8Depthwise::new(
            (weights, bias, scale),
            [stride, stride],
            [1, 1, 1, 1],
            Fused::None,
            (5, 0.1).into(),
            output,
        )
        .unwrap()
    }

    /// Runs the op alone in a plan on `input`.
    fn run(op: &Int8Depthwise, input: Tensor) -> TractResult<Tensor> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", input.datum_type().fact(input.shape()))?;
        let y = m.wire_node("dw", op.clone(), &[x])?;
        m.select_output_outlets(&y)?;
        let plan = m.into_runnable()?;
        Ok(plan
            .run(tvec!(input.into_tvalue()))?
            .remove(0)
            .into_tensor())
    }

    /// With each channel's own input zero point `zps[c]`.
    fn definition(op: &Int8Depthwise, q: &[i8], zps: [i64; 2], [h, w]: [usize; 2]) -> Vec<f64> {
        let (oh, ow) = op.output_size(h, w).unwrap();
        let s = op.stride[0] as isize;
        let wt = op.weights.try_as_plain_ram().unwrap();
        let wt = wt.as_slice::<i8>().unwrap();
        let bias = op.bias.try_as_plain_ram().unwrap();
        let bias = bias.as_slice::<i32>().unwrap();
        let scale = op.scale.try_as_plain_ram().unwrap();
        let scale = scale.as_slice::<f32>().unwrap();
        let mut out = vec![];
        for c in 0..2 {
            for oy in 0..oh as isize {
                for ox in 0..ow as isize {
                    let mut acc = bias[c] as i64;
                    for ky in 0..3isize {
                        for kx in 0..3isize {
                            let (y, x) = (oy * s + ky - 1, ox * s + kx - 1);
                            if (0..h as isize).contains(&y) && (0..w as isize).contains(&x) {
                                let v =
                                    q[c * h * w + (y as usize) * w + x as usize] as i64 - zps[c];
                                acc += wt[c * 9 + (ky * 3 + kx) as usize] as i64 * v;
                            }
                        }
                    }
                    out.push(acc as f64 * scale[c] as f64);
                }
            }
        }
        out
    }

    /// `got` (f32) against the definition, within a relative 1e-6.
    fn assert_close(got: &Tensor, want: &[f64]) {
        let got = got.try_as_plain_ram().unwrap();
        let got = got.as_slice::<f32>().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{g} vs {w}"
            );
        }
    }

    #[test]
    fn i8_and_f32_inputs_give_the_definition() {
        let (h, w) = (5, 6);
        let q: Vec<i8> = (0..2 * h * w).map(|i| (i * 53 % 256) as u8 as i8).collect();
        for stride in [1, 2] {
            let op = op(stride, Int8Output::Float);
            let want = definition(&op, &q, [5, 5], [h, w]);
            let dt = DatumType::QI8(QParams::ZpScale {
                zero_point: 5,
                scale: 0.1,
            });
            let codes = Tensor::from_shape(&[1, 2, h, w], &q).unwrap();
            let codes = unsafe { codes.into_array_unchecked::<i8>() };
            let codes = Tensor::from(codes).cast_to_dt(dt).unwrap().into_owned();
            // Floats that quantize back to the same codes.
            let floats: Vec<f32> = q.iter().map(|&v| (v as f32 - 5.0) * 0.1).collect();
            let floats = Tensor::from_shape(&[1, 2, h, w], &floats).unwrap();
            for input in [codes, floats] {
                assert_close(&run(&op, input).unwrap(), &want);
            }
        }
    }

    #[test]
    fn an_int8_output_is_typed_and_requantized() {
        let (h, w) = (5, 6);
        let q: Vec<i8> = (0..2 * h * w).map(|i| (i * 29 % 256) as u8 as i8).collect();
        let output = Int8Output::Int8 {
            zero_point: -3,
            scale: 0.5,
        };
        let op = op(1, output);
        let want = definition(&op, &q, [5, 5], [h, w]);
        let input = Tensor::from_shape(&[2, h, w], &q).unwrap();
        let got = run(&op, input).unwrap();
        assert_eq!(
            got.datum_type(),
            DatumType::QI8(QParams::ZpScale {
                zero_point: -3,
                scale: 0.5
            })
        );
        let got = got.try_as_plain_ram().unwrap();
        let got = unsafe { got.as_slice_unchecked::<i8>() };
        for (g, w) in got.iter().zip(&want) {
            let q = (w / 0.5 - 3.0).round_ties_even().clamp(-128.0, 127.0);
            assert!((*g as f64 - q).abs() <= 1.0, "{g} vs {q}");
        }
    }

    /// Per-channel input parameters: each float plane quantized with its own zero point and
    /// scale gives the definition on the codes it quantizes to; the op survives an NNEF round
    /// trip; an i8 input is refused.
    #[test]
    fn a_float_input_is_quantized_per_channel() {
        let (h, w) = (5, 6);
        let q: Vec<i8> = (0..2 * h * w).map(|i| (i * 53 % 256) as u8 as i8).collect();
        let (zps, scales) = ([5, -40], [0.1f32, 0.0025]);
        let base = op(1, Int8Output::Float);
        // `scale[c]` = the channel's input scale × weight scale (weight scales 0.1 and 8).
        let scale = tensor1(&[0.1f32 * 0.1, 0.0025 * 8.0]).into_arc_tensor();
        let per_channel = Int8Depthwise::new(
            (base.weights.clone(), base.bias.clone(), scale),
            [1, 1],
            [1, 1, 1, 1],
            Fused::None,
            InputQuant::Channels {
                zero_points: zps.to_vec(),
                scales: scales.to_vec(),
            },
            Int8Output::Float,
        )
        .unwrap();
        let floats: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = i / (h * w);
                (v as f32 - zps[c] as f32) * scales[c]
            })
            .collect();
        let floats = Tensor::from_shape(&[1, 2, h, w], &floats).unwrap();
        let want = definition(&per_channel, &q, [5, -40], [h, w]);
        assert_close(&run(&per_channel, floats).unwrap(), &want);
        // NNEF round trip: the arrays come back.
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 2, h, w])).unwrap();
        let y = m.wire_node("dw", per_channel.clone(), &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let nnef = crate::ops::registry::nnef();
        let mut buf = vec![];
        nnef.write_to_tar(&m, &mut buf).unwrap();
        let back = nnef.model_for_read(&mut &buf[..]).unwrap();
        let op = back
            .nodes()
            .iter()
            .find_map(|n| n.op_as::<Int8Depthwise>())
            .expect("the op after a round trip");
        assert_eq!(op, &per_channel);
        // An i8 input has one zero point: refused.
        let codes = Tensor::from_shape(&[1, 2, h, w], &q).unwrap();
        let e = run(&per_channel, codes).unwrap_err();
        assert!(format!("{e:#}").contains("per channel"), "{e:#}");
        // Wrong lengths are load errors.
        let e = Int8Depthwise::new(
            (base.weights.clone(), base.bias.clone(), base.scale.clone()),
            [1, 1],
            [1; 4],
            Fused::None,
            InputQuant::Channels {
                zero_points: vec![0],
                scales: vec![1.0, 1.0],
            },
            Int8Output::Float,
        )
        .unwrap_err();
        assert!(format!("{e}").contains("2 channels"), "{e}");
    }

    /// With a HardSwish input activation the op gives what it gives without one on tract's
    /// HardSwish of the input: the same codes here (HardSwish's `· ⅙` joins the quantization's
    /// multiply, which moves only values within an ulp or two of a rounding tie; this input's
    /// scaled HardSwish values are multiples of 1/15, none near a tie). The activation
    /// survives an NNEF round trip and refuses an i8 input.
    #[test]
    fn an_input_hardswish_is_tracts_hardswish_first() {
        let (h, w) = (5, 6);
        let x: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 37 % 61) as f32 - 30.0) * 0.2)
            .collect();
        let plain = op(2, Int8Output::Float);
        let hs = plain.clone().with_input(InputActivation::HardSwish);
        let after: Vec<f32> = x
            .iter()
            .map(|&v| crate::kernels::depthwise::pad::hardswish(v))
            .collect();
        let input = |v: &[f32]| Tensor::from_shape(&[1, 2, h, w], v).unwrap();
        let got = run(&hs, input(&x)).unwrap();
        let want = run(&plain, input(&after)).unwrap();
        assert_eq!(got, want);
        let mut m = TypedModel::default();
        let s = m.add_source("x", f32::fact([1, 2, h, w])).unwrap();
        let y = m.wire_node("dw", hs.clone(), &[s]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let nnef = crate::ops::registry::nnef();
        let mut buf = vec![];
        nnef.write_to_tar(&m, &mut buf).unwrap();
        let back = nnef.model_for_read(&mut &buf[..]).unwrap();
        let op = back.nodes().iter().find_map(|n| n.op_as::<Int8Depthwise>());
        assert_eq!(op, Some(&hs));
        let codes = Tensor::from_shape(&[1, 2, h, w], &vec![0i8; 2 * h * w]).unwrap();
        let e = run(&hs, codes).unwrap_err();
        assert!(format!("{e:#}").contains("input activation"), "{e:#}");
    }

    #[test]
    fn bad_parameters_are_refused_with_the_op_named() {
        let weights = Tensor::from_shape(&[1, 3, 3], &[i8::MIN; 9]).unwrap();
        let e = Int8Depthwise::new(
            (
                weights.into_arc_tensor(),
                tensor1(&[0i32]).into_arc_tensor(),
                tensor1(&[1.0f32]).into_arc_tensor(),
            ),
            [1, 1],
            [1; 4],
            Fused::None,
            (0, 1.0).into(),
            Int8Output::Float,
        )
        .unwrap_err();
        assert!(format!("{e}").contains(NAME), "{e}");
        let o = op(1, Int8Output::Float);
        let wrong = Tensor::zero::<f32>(&[1, 3, 5, 5]).unwrap();
        let e = run(&o, wrong).unwrap_err();
        assert!(format!("{e:#}").contains(NAME), "{e:#}");
    }
}
