//! Finding the layers int8 quantization rewrites, with batch-norm and activations folded in.
//!
//! tract's declutter folds a batch-norm into a regular convolution but leaves it as a per-channel
//! `Mul` + `Add` after depthwise convolutions and after the `EinSum` a 1×1 convolution or a
//! `Gemm` becomes. A [`Layer`] is one linear op (float `Conv`, or `EinSum` with a constant
//! `[O, I]` weight operand) plus the chain of single-consumer per-channel `Mul`/`Add` nodes that
//! follow it, folded into its weights and bias, plus a fused ReLU (`Max(x, 0)`) and optional
//! clip (`Min(x, c)`), which the int8 output stage does for free by clamping to the quantized
//! range.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::konst::Const;

use kestrel_runtime::ops::channels_first::ChannelsFirst;

/// The linear op at the head of a layer.
#[derive(Debug, Clone)]
pub enum LayerOp {
    /// A float convolution (OIHW kernel), quantized as tract's `Conv{q_params}`.
    Conv(Box<Conv>),
    /// A matrix product with a constant weight in slot 1, quantized as `EinSum{q_params}`.
    EinSum(Box<AxesMapping>),
}

/// One quantizable layer of a decluttered float graph.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Name of the head node (the Conv or EinSum).
    pub name: String,
    /// The activation input (outlet in the float graph).
    pub input: OutletId,
    /// The layer's output: the last node absorbed (outlet in the float graph).
    pub output: OutletId,
    /// Every node the layer replaces, head first.
    pub nodes: Vec<usize>,
    /// The linear op.
    pub op: LayerOp,
    /// Float weights with batch-norm scales folded in (Conv: OIHW; EinSum: as in the graph).
    pub weights: Tensor,
    /// Axis of `weights` holding the output channels.
    pub weight_out_axis: usize,
    /// Axis of the layer's output tensor holding the channels.
    pub channel_axis: usize,
    /// Float bias per output channel, batch-norm shifts folded in.
    pub bias: Vec<f32>,
    /// A ReLU (or ReLU6-style clip, `Some(hi)`) follows and is folded into the output stage.
    pub relu: Option<Option<f32>>,
}

impl Layer {
    /// Number of output channels.
    pub fn channels(&self) -> usize {
        self.bias.len()
    }

    /// A stem convolution: k×k (not 1×1), not grouped, on at most 4 channels of a graph
    /// input of `model` (an image), read directly or through layout changes and constant
    /// scaling (an NHWC model's transpose, an in-graph normalization). Its product is tiny
    /// (K = C_in·k·k) next to the im2col and casts around it.
    pub fn is_stem(&self, model: &TypedModel) -> bool {
        reads_graph_input(model, self.input)
            && matches!(&self.op, LayerOp::Conv(c)
                if c.group == 1
                    && c.input_channels() <= 4
                    && c.pool_spec.kernel_shape.iter().product::<usize>() > 1)
    }

    /// Input channels of a convolution (`None` for a matrix product).
    pub fn input_channels(&self) -> Option<usize> {
        match &self.op {
            LayerOp::Conv(c) => Some(c.input_channels()),
            LayerOp::EinSum(_) => None,
        }
    }

    /// A k×k convolution (some kernel dimension above 1), not grouped: in int8 it runs as
    /// `kestrel_int8_conv` (or, with tract's ops or a geometry that op does not take,
    /// tract's im2col + int8 product between two casts).
    pub fn is_spatial(&self) -> bool {
        matches!(&self.op, LayerOp::Conv(c)
            if c.group == 1 && c.pool_spec.kernel_shape.iter().product::<usize>() > 1)
    }

    /// A grouped convolution with one input channel per group (depthwise).
    pub fn is_depthwise(&self) -> bool {
        matches!(&self.op, LayerOp::Conv(c) if c.group > 1 && c.group == c.input_channels())
    }
}

/// Whether `outlet` is a graph input, or is computed from one by layout changes, casts and
/// arithmetic with constants only.
fn reads_graph_input(model: &TypedModel, mut outlet: OutletId) -> bool {
    for _ in 0..16 {
        if model.inputs.contains(&outlet) {
            return true;
        }
        let node = model.node(outlet.node);
        let is_layout = node.op_is::<AxisOp>()
            || node.op_is::<ChannelsFirst>()
            || node.op_is::<tract_onnx::tract_core::ops::cast::Cast>();
        if is_layout && node.inputs.len() == 1 {
            outlet = node.inputs[0];
        } else if let Some((_, _, other)) = bin_with_const(model, outlet.node) {
            outlet = other;
        } else {
            return false;
        }
    }
    false
}

/// The constant value of an outlet, if it has one.
fn konst(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    let fact = model.outlet_fact(outlet).ok()?;
    if let Some(k) = &fact.konst {
        return Some(k.clone());
    }
    model
        .node(outlet.node)
        .op_as::<Const>()
        .map(|c| c.val().clone())
}

/// The f32 values of a constant.
fn f32s(t: &Tensor) -> Option<Vec<f32>> {
    let t = t.cast_to::<f32>().ok()?;
    let view = t.try_as_plain_ram().ok()?;
    view.as_slice::<f32>().ok().map(|s| s.to_vec())
}

/// Values of a constant broadcast per channel along `axis` of an output of rank `rank`, or
/// `None` if the constant varies along another axis.
fn per_channel(t: &Tensor, rank: usize, axis: usize, channels: usize) -> Option<Vec<f32>> {
    let values = f32s(t)?;
    if values.len() == 1 {
        return Some(vec![values[0]; channels]);
    }
    if t.rank() > rank {
        return None;
    }
    // Align to the right (numpy broadcasting).
    let offset = rank - t.rank();
    for (ix, d) in t.shape().iter().enumerate() {
        let expected = if ix + offset == axis { channels } else { 1 };
        if *d != expected {
            return None;
        }
    }
    Some(values)
}

fn single_successor(model: &TypedModel, outlet: OutletId) -> Option<usize> {
    if model.outputs.contains(&outlet) {
        return None;
    }
    let succ = &model.outlet_successors(outlet);
    (succ.len() == 1).then(|| succ[0].node)
}

/// A binary op with one constant operand: (op name, constant, other operand).
fn bin_with_const(model: &TypedModel, node: usize) -> Option<(String, Arc<Tensor>, OutletId)> {
    let n = model.node(node);
    let op = n.op_as::<TypedBinOp>()?;
    if n.inputs.len() != 2 {
        return None;
    }
    let name = op.0.name().to_string();
    if let Some(k) = konst(model, n.inputs[1]) {
        Some((name, k, n.inputs[0]))
    } else {
        konst(model, n.inputs[0]).map(|k| (name, k, n.inputs[1]))
    }
}

/// Reads a layer head: its weights, bias and where its output channels are.
fn head(model: &TypedModel, node: &TypedNode) -> Option<(LayerOp, Tensor, usize, Vec<f32>, usize)> {
    if let Some(conv) = node.op_as::<Conv>() {
        if conv.q_params.is_some()
            || conv.kernel_fmt != KernelFormat::OIHW
            || node.inputs.len() != 3
        {
            return None;
        }
        if model.outlet_fact(node.inputs[0]).ok()?.datum_type != f32::datum_type() {
            return None;
        }
        let w = konst(model, node.inputs[1])?;
        let b = konst(model, node.inputs[2])?;
        let co = conv.output_channels();
        let bias = f32s(&b)?;
        let bias = match bias.len() {
            1 => vec![bias[0]; co],
            n if n == co => bias,
            _ => return None,
        };
        let out_shape = &node.outputs[0].fact.shape;
        let c_axis = conv
            .pool_spec
            .data_format
            .shape(out_shape.to_tvec())
            .ok()?
            .c_axis();
        let w = w.cast_to::<f32>().ok()?.into_owned();
        return Some((LayerOp::Conv(Box::new(conv.clone())), w, 0, bias, c_axis));
    }
    let einsum = node.op_as::<EinSum>()?;
    if einsum.q_params.is_some() || node.inputs.len() != 2 {
        return None;
    }
    if model.outlet_fact(node.inputs[0]).ok()?.datum_type != f32::datum_type() {
        return None;
    }
    let w = konst(model, node.inputs[1])?;
    if w.rank() != 2 || konst(model, node.inputs[0]).is_some() {
        return None;
    }
    let axes = &einsum.axes;
    // The weight's axes: one contracted with the activation, one carried to the output.
    let mut out_w_axis = None;
    let mut out_axis = None;
    let mut contracted = 0;
    for axis in axes.iter_all_axes() {
        let in_w = axis.inputs[1].len();
        if in_w == 0 {
            continue;
        }
        if in_w != 1 {
            return None;
        }
        let in_x = axis.inputs[0].len();
        let in_out = axis.outputs[0].len();
        match (in_x, in_out) {
            (1, 0) => contracted += 1,
            (0, 1) => {
                out_w_axis = Some(axis.inputs[1][0]);
                out_axis = Some(axis.outputs[0][0]);
            }
            _ => return None,
        }
    }
    let (wa, oa) = (out_w_axis?, out_axis?);
    if contracted != 1 {
        return None;
    }
    let co = w.shape()[wa];
    let w = w.cast_to::<f32>().ok()?.into_owned();
    Some((
        LayerOp::EinSum(Box::new(axes.clone())),
        w,
        wa,
        vec![0.0; co],
        oa,
    ))
}

/// Finds every quantizable layer of a decluttered float graph, in evaluation order.
pub fn find_layers(model: &TypedModel) -> TractResult<Vec<Layer>> {
    let mut layers = vec![];
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some((op, mut weights, weight_out_axis, mut bias, c_axis)) = head(model, node) else {
            continue;
        };
        let co = bias.len();
        let rank = node.outputs[0].fact.rank();
        let mut nodes = vec![id];
        let mut output = OutletId::new(id, 0);
        // Fold per-channel Mul / Add (batch-norm left after depthwise convs and einsums).
        while let Some(next) = single_successor(model, output) {
            let Some((name, k, other)) = bin_with_const(model, next) else {
                break;
            };
            if other != output || model.outlet_fact(OutletId::new(next, 0))?.rank() != rank {
                break;
            }
            let Some(values) = per_channel(&k, rank, c_axis, co) else {
                break;
            };
            match name.as_str() {
                "Mul" => {
                    scale_out_channels(&mut weights, weight_out_axis, &values)?;
                    bias.iter_mut().zip(&values).for_each(|(b, s)| *b *= s);
                }
                "Add" => bias.iter_mut().zip(&values).for_each(|(b, t)| *b += t),
                _ => break,
            }
            nodes.push(next);
            output = OutletId::new(next, 0);
        }
        // ReLU (Max with 0), then an optional upper clip (Min with a positive constant).
        let mut relu = None;
        if let Some(next) = single_successor(model, output) {
            if let Some((name, k, other)) = bin_with_const(model, next) {
                let zero = f32s(&k).is_some_and(|v| v.iter().all(|x| *x == 0.0));
                if name == "Max" && other == output && zero {
                    nodes.push(next);
                    output = OutletId::new(next, 0);
                    relu = Some(None);
                    if let Some(after) = single_successor(model, output) {
                        if let Some((name, k, other)) = bin_with_const(model, after) {
                            let v = f32s(&k).unwrap_or_default();
                            let same = !v.is_empty() && v.iter().all(|x| *x == v[0] && *x > 0.0);
                            if name == "Min" && other == output && same {
                                nodes.push(after);
                                output = OutletId::new(after, 0);
                                relu = Some(Some(v[0]));
                            }
                        }
                    }
                }
            }
        }
        layers.push(Layer {
            name: node.name.clone(),
            input: node.inputs[0],
            output,
            nodes,
            op,
            weights,
            weight_out_axis,
            channel_axis: c_axis,
            bias,
            relu,
        });
    }
    Ok(layers)
}

/// Multiplies every output channel `o` of `weights` (channels along `axis`) by `scales[o]`.
fn scale_out_channels(weights: &mut Tensor, axis: usize, scales: &[f32]) -> TractResult<()> {
    let mut view = weights.to_plain_array_view_mut::<f32>()?;
    for (o, mut lane) in view.axis_iter_mut(tract_ndarray::Axis(axis)).enumerate() {
        lane.mapv_inplace(|w| w * scales[o]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stem_behind_an_input_transpose_is_a_stem() {
        use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
        use tract_onnx::tract_core::ops::nn::DataFormat;
        for kestrel in [false, true] {
            let mut m = TypedModel::default();
            let x = m.add_source("x", f32::fact([1, 8, 8, 3])).unwrap();
            let x = if kestrel {
                m.wire_node("t", ChannelsFirst, &[x]).unwrap()[0]
            } else {
                m.wire_node("t", AxisOp::Move(3, 1), &[x]).unwrap()[0]
            };
            let w = m
                .add_const("w", Tensor::zero::<f32>(&[4, 3, 3, 3]).unwrap())
                .unwrap();
            let b = m
                .add_const("b", Tensor::zero::<f32>(&[4]).unwrap())
                .unwrap();
            let conv = Conv {
                pool_spec: PoolSpec {
                    data_format: DataFormat::NCHW,
                    kernel_shape: tvec![3, 3],
                    padding: PaddingSpec::Valid,
                    dilations: None,
                    strides: None,
                    input_channels: 3,
                    output_channels: 4,
                },
                kernel_fmt: KernelFormat::OIHW,
                group: 1,
                q_params: None,
            };
            let y = m.wire_node("stem", conv, &[x, w, b]).unwrap();
            m.select_output_outlets(&y).unwrap();
            let layers = find_layers(&m).unwrap();
            assert_eq!(layers.len(), 1);
            assert!(layers[0].is_stem(&m), "kestrel transpose: {kestrel}");
        }
    }

    #[test]
    fn per_channel_constants_broadcast_from_the_right() {
        let t = tensor3(&[[[1f32]], [[2.0]], [[3.0]]]); // 3,1,1
        assert_eq!(per_channel(&t, 3, 0, 3), Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(per_channel(&t, 4, 1, 3), Some(vec![1.0, 2.0, 3.0]));
        assert_eq!(per_channel(&t, 3, 1, 3), None);
        assert_eq!(per_channel(&tensor0(2f32), 3, 0, 2), Some(vec![2.0, 2.0]));
    }

    #[test]
    fn scales_output_channels() {
        let mut w = tensor2(&[[1f32, 1.0], [1.0, 1.0], [2.0, 2.0]]);
        scale_out_channels(&mut w, 0, &[1.0, 2.0, 0.5]).unwrap();
        assert_eq!(w, tensor2(&[[1f32, 1.0], [2.0, 2.0], [1.0, 1.0]]));
    }
}
