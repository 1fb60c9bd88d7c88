//! Puts Kestrel's float 1×1 convolution / dense op (`kestrel_linear`) where tract's `EinSum`
//! stood, with the bias `Add` and the ReLU or ReLU6-style clip after it fused
//! (`kestrel_runtime::ops::linear`).
//!
//! A layer is taken when its product keeps the input's axes in place (the contracted axis
//! becomes the output channels; size-1 axes it drops or adds are dropped or added after the
//! op, which keeps every axis) and each image's columns are
//! contiguous: the axes after the channels hold at least 8 values (a channels-first plane),
//! or there is one column in all (a dense layer on one sample). Anything else stays tract's
//! and the report says why: a channels-last 1×1 convolution has one column per pixel, which
//! tract's packed product serves better.

use kestrel_runtime::ops::depthwise::Fused;
use kestrel_runtime::ops::linear::Linear;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::change_axes::AxisOp;

use crate::float_ops::{all_f32, PlacementReport};
use crate::int8::layers::{find_layers, LayerOp};
use crate::int8::rewrite::fused_axes;

/// The fewest columns per image the op takes (one 8-column tile of the NEON kernel) when
/// there is more than one image.
const MIN_COLUMNS: usize = 8;

/// Replaces every float `EinSum` layer of `model` (decluttered) the op can take.
///
/// The layers are found again after each replacement: a layer reading the output of one
/// replaced before it (two 1×1 layers in a row) must see the new op's outlet, not the old one.
pub fn place(model: TypedModel) -> TractResult<(TypedModel, PlacementReport)> {
    let mut model = model;
    let mut report = PlacementReport::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let next = find_layers(&model)?
            .into_iter()
            .find(|l| matches!(l.op, LayerOp::EinSum(_)) && !seen.contains(&l.name));
        let Some(layer) = next else {
            break;
        };
        seen.insert(layer.name.clone());
        let LayerOp::EinSum(expr) = &layer.op else {
            continue;
        };
        let expr = expr.to_string();
        let head = model.node(layer.nodes[0]);
        let name = head.name.clone();
        if !all_f32(&model, head, &[head.inputs[0], head.inputs[1]]) {
            report.keep("linear", &name, "not f32".into());
            continue;
        }
        let Some(axes) = fused_axes(&model, &layer) else {
            report.keep(
                "linear",
                &name,
                format!(
                    "its product ({expr}, input {:?}) is not a 1×1 convolution or dense layer",
                    model
                        .outlet_fact(layer.input)
                        .map(|f| format!("{:?}", f.shape))
                        .unwrap_or_default()
                ),
            );
            continue;
        };
        if axes.axis != axes.output_axis {
            report.keep(
                "linear",
                &name,
                "it moves the channel axis (channels first in, channels last out)".into(),
            );
            continue;
        }
        let x = head.inputs[0];
        let shape = model
            .outlet_fact(x)?
            .shape
            .as_concrete()
            .map(|s| s.to_vec());
        let Some(shape) = shape else {
            report.keep("linear", &name, "its input shape is left open".into());
            continue;
        };
        let outer: usize = shape[..axes.axis].iter().product();
        let inner: usize = shape[axes.axis + 1..].iter().product();
        if inner < MIN_COLUMNS && outer * inner != 1 {
            report.keep(
                "linear",
                &name,
                format!("{inner} columns per image (channels last): tract's product fits better"),
            );
            continue;
        }
        let weights = if layer.weight_out_axis == 0 {
            layer.weights.clone()
        } else {
            layer.weights.clone().permute_axes(&[1, 0])?
        };
        let fused = match layer.relu {
            None => Fused::None,
            Some(None) => Fused::Relu,
            Some(Some(high)) => Fused::Clip(high),
        };
        let op = Linear::new(
            Arc::new(weights),
            Arc::new(tensor1(&layer.bias)),
            axes.axis,
            fused,
        )?;
        let mut patch = TypedModelPatch::new(format!("kestrel_linear for {name}"));
        let tapped = patch.tap_model(&model, x)?;
        let mut y = patch.wire_node(format!("{name}.linear"), op, &[tapped])?[0];
        // The op keeps every axis; the size-1 axes the product dropped or added follow it.
        for &d in axes.dropped.iter().rev() {
            y = patch.wire_node(format!("{name}.squeeze.{d}"), AxisOp::Rm(d), &[y])?[0];
        }
        for &a in &axes.added {
            y = patch.wire_node(format!("{name}.unsqueeze.{a}"), AxisOp::Add(a), &[y])?[0];
        }
        patch.shunt_outside(&model, layer.output, y)?;
        patch.apply(&mut model)?;
        model = model.into_compact()?;
        report.replaced += 1;
    }
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_runtime::random::random_tensor;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// A 1×1 convolution `cin` → `cout` in `format`, OIHW weights.
    fn conv1x1(format: DataFormat, cin: usize, cout: usize) -> Conv {
        Conv {
            pool_spec: PoolSpec {
                data_format: format,
                kernel_shape: tvec![1, 1],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: None,
                input_channels: cin,
                output_channels: cout,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        }
    }

    /// `x` → 1×1 conv (16 → 12) with a bias → batch-norm `Mul`, `Add` → ReLU6 clip, in
    /// `format`, as tract declutters it.
    fn graph(format: DataFormat, shape: [usize; 4]) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(shape)).unwrap();
        let conv = conv1x1(format, 16, 12);
        let w = random_tensor(DatumType::F32, &[12, 16, 1, 1], 1).unwrap();
        let w = m.add_const("w", w).unwrap();
        let b = m
            .add_const("b", random_tensor(DatumType::F32, &[12], 4).unwrap())
            .unwrap();
        let mut y = m.wire_node("conv", conv, &[x, w, b]).unwrap()[0];
        let c_shape = if format == DataFormat::NCHW {
            [1, 12, 1, 1]
        } else {
            [1, 1, 1, 12]
        };
        for (name, op, seed) in [("bn.mul", math::mul(), 2), ("bn.add", math::add(), 3)] {
            let k = random_tensor(DatumType::F32, &c_shape, seed).unwrap();
            let k = m.add_const(format!("{name}.k"), k).unwrap();
            y = m.wire_node(name, op, &[y, k]).unwrap()[0];
        }
        for (name, op, v) in [("relu", math::max(), 0f32), ("six", math::min(), 6.0)] {
            let k = m
                .add_const(name, tensor0(v).broadcast_into_rank(4).unwrap())
                .unwrap();
            y = m.wire_node(format!("{name}.op"), op, &[y, k]).unwrap()[0];
        }
        m.select_output_outlets(&[y]).unwrap();
        m.into_decluttered().unwrap()
    }

    fn run(m: &TypedModel, shape: [usize; 4]) -> Tensor {
        let x = random_tensor(DatumType::F32, &shape, 9).unwrap();
        let plan = m.clone().into_runnable().unwrap();
        plan.run(tvec!(x.into_tvalue()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    fn ops(m: &TypedModel) -> Vec<String> {
        m.nodes.iter().map(|n| n.op.name().to_string()).collect()
    }

    #[test]
    fn a_channels_first_layer_becomes_one_op_with_its_bias_and_clip() {
        let shape = [2, 16, 5, 7];
        let source = graph(DataFormat::NCHW, shape);
        let (folded, _) = crate::batch_norm::fold(source.clone()).unwrap();
        let (placed, report) = place(folded).unwrap();
        assert_eq!((report.replaced, report.kept.len()), (1, 0), "{report:?}");
        let names = ops(&placed);
        assert_eq!(names, ["Source", "KestrelLinear"], "{names:?}");
        run(&source, shape)
            .close_enough(&run(&placed, shape), Approximation::Approximate)
            .unwrap();
    }

    /// Two 1×1 layers in a row (16 → 12 → 8, channels first, biases): the second reads the
    /// first's output, which the first replacement rewires.
    #[test]
    fn two_layers_in_a_row_both_become_the_op() {
        let shape = [1, 16, 5, 7];
        let mut m = TypedModel::default();
        let mut y = m.add_source("x", f32::fact(shape)).unwrap();
        for (i, (cin, cout)) in [(16, 12), (12, 8)].into_iter().enumerate() {
            let conv = conv1x1(DataFormat::NCHW, cin, cout);
            let w = random_tensor(DatumType::F32, &[cout, cin, 1, 1], 10 + i as u64).unwrap();
            let w = m.add_const(format!("w{i}"), w).unwrap();
            let b = random_tensor(DatumType::F32, &[cout], 20 + i as u64).unwrap();
            let b = m.add_const(format!("b{i}"), b).unwrap();
            y = m.wire_node(format!("conv{i}"), conv, &[y, w, b]).unwrap()[0];
        }
        m.select_output_outlets(&[y]).unwrap();
        let source = m.into_decluttered().unwrap();
        let (placed, report) = place(source.clone()).unwrap();
        assert_eq!((report.replaced, report.kept.len()), (2, 0), "{report:?}");
        let names = ops(&placed);
        let linear = names.iter().filter(|n| *n == "KestrelLinear").count();
        assert_eq!(linear, 2, "{names:?}");
        assert!(!names.iter().any(|n| n == "EinSum"), "{names:?}");
        run(&source, shape)
            .close_enough(&run(&placed, shape), Approximation::Approximate)
            .unwrap();
    }

    #[test]
    fn a_channels_last_layer_stays_tracts_and_says_why() {
        let shape = [1, 5, 7, 16];
        let (placed, report) = place(graph(DataFormat::NHWC, shape)).unwrap();
        assert_eq!(report.replaced, 0);
        assert_eq!(report.kept.len(), 1, "{report:?}");
        assert!(report.kept[0].1.contains("columns"), "{report:?}");
        assert!(!ops(&placed).iter().any(|n| n == "KestrelLinear"));
    }
}
