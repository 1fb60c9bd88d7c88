//! Puts Kestrel's `kestrel_depthwise` where tract's float depthwise convolution stood, with the
//! batch-norm and activation after it folded in (ReLU, ReLU6 / clip, HardSwish): one op, one
//! pass over the plane, vectorised borders (see `kestrel_runtime::ops::depthwise`). A
//! HardSwish whose only reader is the op (MobileNetV3's expansion convolutions end in one)
//! moves into the op too, as its input activation: applied while the op copies each plane,
//! with tract's arithmetic, so the graph computes the same bits with one pass fewer.
//!
//! A depthwise convolution the op cannot take (channels last, a channel multiplier, dilation,
//! a stride above 2, a kernel above 7×7, padding as large as the kernel, a symbolic plane size)
//! stays tract's; the reason is logged and reported.

use std::collections::HashMap;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::nn::DataFormat;

use crate::float_ops::PlacementReport;
use crate::int8::layers::{find_layers, Layer, LayerOp};
use kestrel_runtime::ops::depthwise::{Depthwise, Fused, InputActivation, Precision, MAX_KERNEL};
use kestrel_runtime::ops::int8_depthwise::Int8Depthwise;
use kestrel_runtime::ops::int8_linear::{Int8Linear, Int8Output};

/// Replaces every depthwise convolution of `model` (a decluttered graph) the op can take.
pub fn place(model: TypedModel) -> TractResult<(TypedModel, PlacementReport)> {
    let mut report = PlacementReport::default();
    let layers: Vec<Layer> = find_layers(&model)?
        .into_iter()
        .filter(Layer::is_depthwise)
        .collect();
    let mut model = model;
    // Outlets replaced so far: a layer reading one reads its replacement.
    let mut moved: HashMap<OutletId, OutletId> = HashMap::new();
    for layer in &layers {
        match op_for(&model, layer) {
            Ok((op, output)) => {
                let mut patch = TypedModelPatch::new(format!("kestrel_depthwise {}", layer.name));
                let input = moved.get(&layer.input).copied().unwrap_or(layer.input);
                let x = patch.tap_model(&model, input)?;
                let name = model.node(output.node).name.clone();
                let y = patch.wire_node(name, op, &[x])?[0];
                patch.shunt_outside(&model, output, y)?;
                patch.apply(&mut model)?;
                // The patch adds one node, the op, last.
                let added = model.nodes.len() - 1;
                ensure!(
                    model.node(added).op_is::<Depthwise>(),
                    "depthwise rewrite: the patched graph does not end with the new op"
                );
                moved.insert(output, OutletId::new(added, 0));
                report.replaced += 1;
            }
            Err(why) => {
                report.keep("depthwise", &layer.name, why);
            }
        }
    }
    report.fused_inputs = fuse_input_hardswish(&mut model)?;
    Ok((model.into_compact()?, report))
}

/// A key of a depthwise layer's f32 weights (their bits, in order): how an int8 graph's
/// `kestrel_depthwise` ops are matched with the float layers they came from.
pub(crate) fn weights_key(weights: impl Iterator<Item = f32>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    weights.for_each(|w| w.to_bits().hash(&mut h));
    h.finish()
}

/// Sets `precision = "f16"` on each `kestrel_depthwise` of `model` whose weights have a key
/// of `keys` (an int8 graph's depthwise layers whose calibrated ranges binary16 holds with
/// room to spare, see `int8::half_safe`). Returns how many.
pub(crate) fn set_half_precision(
    model: &mut TypedModel,
    keys: &std::collections::HashSet<u64>,
) -> TractResult<usize> {
    let mut set = 0;
    for node in model.nodes.iter_mut() {
        let Some(op) = node.op_as::<Depthwise>() else {
            continue;
        };
        let key = {
            let w = op.weights.try_as_plain_ram()?;
            weights_key(w.as_slice::<f32>()?.iter().copied())
        };
        if !keys.contains(&key) {
            log::info!(
                "depthwise {}: stays f32 (its range does not fit binary16)",
                node.name
            );
            continue;
        }
        let op = op.clone().with_precision(Precision::F16)?;
        node.op = Box::new(op);
        set += 1;
    }
    Ok(set)
}

/// Makes each `kestrel_depthwise` of `model` whose readers are all `kestrel_int8_linear`s
/// quantizing it to 8-bit codes with one zero point and scale write those codes itself
/// (`output = "int8"`): the same codes (the op quantizes as the linear would, see
/// `kestrel_runtime::ops::depthwise`), no f32 tensor between the two, and on FEAT_FP16 cores
/// the binary16 stage makes them. Not where the graph exposes the output. Returns how many.
pub(crate) fn write_codes(model: &mut TypedModel) -> TractResult<usize> {
    let mut n = 0;
    for id in 0..model.nodes.len() {
        let Some(op) = model.node(id).op_as::<Depthwise>() else {
            continue;
        };
        let outlet = OutletId::new(id, 0);
        let succ = &model.node(id).outputs[0].successors;
        if op.output != Int8Output::Float || succ.is_empty() || model.outputs.contains(&outlet) {
            continue;
        }
        let mut quant: Option<(i32, f32)> = None;
        let all = succ
            .iter()
            .all(|s| match model.node(s.node).op_as::<Int8Linear>() {
                Some(l) if l.input_bits == 8 && s.slot == 0 => {
                    let q = (l.input_zero_point, l.input_scale);
                    *quant.get_or_insert(q) == q
                }
                _ => false,
            });
        let Some((zero_point, scale)) = quant.filter(|_| all) else {
            continue;
        };
        let op = op
            .clone()
            .with_output(Int8Output::Int8 { zero_point, scale })?;
        let input = model.outlet_fact(model.node(id).inputs[0])?.clone();
        let fact = op.output_facts(&[&input])?.remove(0);
        model.node_mut(id).op = Box::new(op);
        model.set_outlet_fact(outlet, fact)?;
        n += 1;
    }
    Ok(n)
}

/// Moves each HardSwish read by a `kestrel_depthwise` or `kestrel_int8_depthwise` alone into
/// that op (its input activation, applied while each plane is copied, before an int8 op
/// quantizes it); returns how many moved. The HardSwish nodes are left dead for the caller's
/// compaction.
fn fuse_input_hardswish(model: &mut TypedModel) -> TractResult<usize> {
    let ops: Vec<usize> = model
        .nodes
        .iter()
        .filter(|n| n.op_is::<Depthwise>() || n.op_is::<Int8Depthwise>())
        .map(|n| n.id)
        .collect();
    let mut fused = 0;
    for id in ops {
        let node = model.node(id);
        let (current, with): (InputActivation, Box<dyn TypedOp>) =
            match (node.op_as::<Depthwise>(), node.op_as::<Int8Depthwise>()) {
                (Some(op), _) => (
                    op.input,
                    Box::new(op.clone().with_input(InputActivation::HardSwish)),
                ),
                (_, Some(op)) => (
                    op.input_activation,
                    Box::new(op.clone().with_input(InputActivation::HardSwish)),
                ),
                _ => unreachable!("filtered"),
            };
        let input = node.inputs[0];
        let producer = model.node(input.node);
        let hardswish = producer
            .op_as::<ElementWiseOp>()
            .is_some_and(|e| e.0.name() == "HardSwish" && e.1.is_none());
        if current != InputActivation::None
            || !hardswish
            || producer.inputs.len() != 1
            || model.outputs.contains(&input)
            || model.outlet_successors(input).len() != 1
            || model.outlet_fact(producer.inputs[0])?.datum_type != f32::datum_type()
        {
            continue;
        }
        let (source, name) = (producer.inputs[0], node.name.clone());
        let mut patch = TypedModelPatch::new(format!("HardSwish into {name}"));
        let x = patch.tap_model(model, source)?;
        let y = patch.wire_node(name, with, &[x])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), y)?;
        patch.apply(model)?;
        fused += 1;
    }
    Ok(fused)
}

/// Where a depthwise layer's kernel reads: what `kestrel_depthwise` and
/// `kestrel_int8_depthwise` need of its convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides (1 or 2).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub padding: [usize; 4],
}

/// The geometry of `layer` if Kestrel's depthwise ops can take it, or why not.
pub(crate) fn geometry(model: &TypedModel, layer: &Layer) -> Result<Geometry, String> {
    let LayerOp::Conv(conv) = &layer.op else {
        return Err("not a convolution".into());
    };
    if conv.output_channels() != conv.input_channels() {
        return Err("a channel multiplier above 1".into());
    }
    window_geometry(model, layer)
}

/// The geometry of the convolution `layer` if Kestrel's windowed ops (`kestrel_depthwise`,
/// `kestrel_conv`) can take it: channels first, dilation 1, a kernel up to
/// [`MAX_KERNEL`]², strides 1 or 2, padding smaller than the kernel, a known plane size.
pub(crate) fn window_geometry(model: &TypedModel, layer: &Layer) -> Result<Geometry, String> {
    let LayerOp::Conv(conv) = &layer.op else {
        return Err("not a convolution".into());
    };
    let spec = &conv.pool_spec;
    if !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW) {
        return Err(format!(
            "data format {:?} (the op is channels first)",
            spec.data_format
        ));
    }
    if spec.dilations().iter().any(|&d| d != 1) {
        return Err(format!("dilation {:?}", spec.dilations()));
    }
    let kernel = &spec.kernel_shape;
    if kernel.len() != 2 || kernel.iter().any(|&k| k > MAX_KERNEL) {
        return Err(format!(
            "kernel {kernel:?} (at most {MAX_KERNEL}×{MAX_KERNEL})"
        ));
    }
    let stride = spec.strides();
    if stride.iter().any(|&s| !(1..=2).contains(&s)) {
        return Err(format!("stride {stride:?} (1 or 2)"));
    }
    let input = model.outlet_fact(layer.input).map_err(|e| e.to_string())?;
    let hw = input
        .shape
        .as_concrete()
        .filter(|s| s.len() >= 3)
        .map(|s| [s[s.len() - 2], s[s.len() - 1]])
        .ok_or_else(|| format!("input shape {:?} is not concrete", input.shape))?;
    let padded = spec.computed_padding(&hw);
    let padding = [
        padded[0].pad_before,
        padded[1].pad_before,
        padded[0].pad_after,
        padded[1].pad_after,
    ];
    if padding[0] >= kernel[0]
        || padding[2] >= kernel[0]
        || padding[1] >= kernel[1]
        || padding[3] >= kernel[1]
    {
        return Err(format!("padding {padding:?} as large as the kernel"));
    }
    Ok(Geometry {
        kernel: [kernel[0], kernel[1]],
        stride: [stride[0], stride[1]],
        padding,
    })
}

/// The op replacing `layer`, and the outlet it replaces (the layer's output, or the HardSwish
/// after it); or why the op cannot take it.
fn op_for(model: &TypedModel, layer: &Layer) -> Result<(Depthwise, OutletId), String> {
    let g = geometry(model, layer)?;
    let c = layer.channels();
    let weights = layer
        .weights
        .clone()
        .into_shape(&[c, g.kernel[0], g.kernel[1]])
        .map_err(|e| e.to_string())?;
    let bias = tensor1(&layer.bias);
    let mut output = layer.output;
    let fused = match layer.relu {
        Some(None) => Fused::Relu,
        Some(Some(high)) => Fused::Clip(high),
        None => match hardswish_after(model, output) {
            Some(node) => {
                output = OutletId::new(node, 0);
                Fused::HardSwish
            }
            None => Fused::None,
        },
    };
    let op = Depthwise::new(
        weights.into_arc_tensor(),
        bias.into_arc_tensor(),
        g.stride,
        g.padding,
        fused,
    )
    .map_err(|e| e.to_string())?;
    Ok((op, output))
}

/// The HardSwish node reading `outlet` alone, if there is one.
pub(crate) fn hardswish_after(model: &TypedModel, outlet: OutletId) -> Option<usize> {
    if model.outputs.contains(&outlet) {
        return None;
    }
    let succ = model.outlet_successors(outlet);
    let [next] = succ else {
        return None;
    };
    let node = model.node(next.node);
    node.op_as::<ElementWiseOp>()
        .filter(|op| op.0.name() == "HardSwish")
        .map(|_| node.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_runtime::random::random_tensor;
    use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::hard_swish;

    enum After {
        BatchNormRelu6,
        HardSwish,
    }

    /// `x [1, 8, 13, 11]` → depthwise 3×3 (stride, dilation, layout as given) → `after`.
    fn graph(stride: usize, dilation: usize, nhwc: bool, after: After) -> TypedModel {
        graph_after(stride, dilation, nhwc, false, after)
    }

    /// [`graph`], with a HardSwish on `x` first if `hardswish_first`.
    fn graph_after(
        stride: usize,
        dilation: usize,
        nhwc: bool,
        hardswish_first: bool,
        after: After,
    ) -> TypedModel {
        let c = 8;
        let shape = if nhwc { [1, 13, 11, c] } else { [1, c, 13, 11] };
        let mut m = TypedModel::default();
        let mut x = m.add_source("x", f32::fact(shape)).unwrap();
        if hardswish_first {
            x = m.wire_node("hs0", hard_swish(), &[x]).unwrap()[0];
        }
        let w = m
            .add_const(
                "w",
                random_tensor(DatumType::F32, &[c, 1, 3, 3], 1).unwrap(),
            )
            .unwrap();
        let b = m
            .add_const("b", random_tensor(DatumType::F32, &[c], 2).unwrap())
            .unwrap();
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: if nhwc {
                    DataFormat::NHWC
                } else {
                    DataFormat::NCHW
                },
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![1, 0], tvec![1, 1]),
                dilations: Some(tvec![dilation, dilation]),
                strides: Some(tvec![stride, stride]),
                input_channels: c,
                output_channels: c,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: c,
            q_params: None,
        };
        let mut y = m.wire_node("dw", conv, &[x, w, b]).unwrap()[0];
        let per_channel = |seed| {
            let shape = if nhwc { [1, 1, 1, c] } else { [1, c, 1, 1] };
            random_tensor(DatumType::F32, &shape, seed).unwrap()
        };
        let bin = |m: &mut TypedModel, name: &str, op, k: Tensor, y| {
            let k = m.add_const(format!("{name}.k"), k).unwrap();
            m.wire_node(name, op, &[y, k]).unwrap()[0]
        };
        match after {
            After::BatchNormRelu6 => {
                y = bin(&mut m, "bn.mul", math::mul(), per_channel(3), y);
                y = bin(&mut m, "bn.add", math::add(), per_channel(4), y);
                let zero = tensor0(0f32).broadcast_into_rank(4).unwrap();
                y = bin(&mut m, "relu", math::max(), zero, y);
                let six = tensor0(0.4f32).broadcast_into_rank(4).unwrap();
                y = bin(&mut m, "clip", math::min(), six, y);
            }
            After::HardSwish => y = m.wire_node("hs", hard_swish(), &[y]).unwrap()[0],
        }
        m.select_output_outlets(&[y]).unwrap();
        m.into_decluttered().unwrap()
    }

    /// The op names of `m`, in node order.
    fn op_names(m: &TypedModel) -> Vec<String> {
        m.nodes.iter().map(|n| n.op.name().to_string()).collect()
    }

    fn run(m: &TypedModel, seed: u64) -> Tensor {
        let shape = m
            .input_fact(0)
            .unwrap()
            .shape
            .as_concrete()
            .unwrap()
            .to_vec();
        let x = random_tensor(DatumType::F32, &shape, seed).unwrap();
        let plan = m.clone().into_runnable().unwrap();
        plan.run(tvec!(x.into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    #[test]
    fn depthwise_with_batch_norm_and_activation_becomes_one_op_with_the_same_outputs() {
        for (stride, after) in [
            (1, After::BatchNormRelu6),
            (2, After::BatchNormRelu6),
            (2, After::HardSwish),
        ] {
            let source = graph(stride, 1, false, after);
            let (placed, report) = place(source.clone()).unwrap();
            assert_eq!((report.replaced, report.kept.len()), (1, 0));
            assert_eq!(op_names(&placed), ["Source", "KestrelDepthwise"]);
            let (want, got) = (run(&source, 9), run(&placed, 9));
            // Folding the batch-norm into the weights rounds differently: close, not equal.
            want.close_enough(&got, Approximation::Approximate).unwrap();
        }
    }

    /// A HardSwish before the op moves into it: same bits as the op after tract's HardSwish.
    #[test]
    fn a_hardswish_read_by_the_op_alone_moves_into_it() {
        for stride in [1, 2] {
            let source = graph_after(stride, 1, false, true, After::HardSwish);
            let (placed, report) = place(source.clone()).unwrap();
            assert_eq!((report.replaced, report.fused_inputs), (1, 1));
            assert_eq!(op_names(&placed), ["Source", "KestrelDepthwise"]);
            let op = placed.nodes[1].op_as::<Depthwise>().unwrap();
            assert_eq!(op.input, InputActivation::HardSwish);
            // The same op after tract's HardSwish, unfused.
            let mut unfused = TypedModel::default();
            let x = unfused
                .add_source("x", source.input_fact(0).unwrap().clone())
                .unwrap();
            let h = unfused.wire_node("hs0", hard_swish(), &[x]).unwrap()[0];
            let plain = op.clone().with_input(InputActivation::None);
            let y = unfused.wire_node("dw", plain, &[h]).unwrap()[0];
            unfused.select_output_outlets(&[y]).unwrap();
            let (want, got) = (run(&unfused, 5), run(&placed, 5));
            assert_eq!(want, got, "stride {stride}");
            // And close to tract's own graph.
            run(&source, 5)
                .close_enough(&got, Approximation::Approximate)
                .unwrap();
        }
    }

    /// A HardSwish with another reader stays: the other reader needs its output.
    #[test]
    fn a_hardswish_with_another_reader_stays() {
        let mut source = graph_after(1, 1, false, true, After::HardSwish);
        let hs = source.node_by_name("hs0").unwrap().id;
        let out = source.output_outlets().unwrap()[0];
        source
            .select_output_outlets(&[out, OutletId::new(hs, 0)])
            .unwrap();
        let (placed, report) = place(source).unwrap();
        assert_eq!((report.replaced, report.fused_inputs), (1, 0));
        assert!(placed.nodes.iter().any(|n| n.op.name() == "HardSwish"));
    }

    #[test]
    fn depthwise_the_op_cannot_take_stays_tracts_with_the_reason() {
        for (dilation, nhwc, reason) in [(2, false, "dilation"), (1, true, "data format")] {
            let source = graph(1, dilation, nhwc, After::HardSwish);
            let (placed, report) = place(source.clone()).unwrap();
            assert_eq!(report.replaced, 0);
            assert!(report.kept[0].1.contains(reason), "{:?}", report.kept);
            assert_eq!(placed.nodes.len(), source.nodes.len());
        }
    }
}
