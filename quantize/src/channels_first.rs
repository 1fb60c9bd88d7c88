//! Moves the channel axis of a channels-last input to the front, once, so the convolutions
//! after it run channels first.
//!
//! A TensorFlow model exported to ONNX reads an NHWC image; tract's declutter pushes the
//! exporter's transpose through the first convolutions, which it then keeps channels last
//! (`data_format: NHWC`) up to the first layer that can absorb the transpose (a 1×1 layer's
//! `EinSum`). Kestrel's convolution and depthwise ops are channels first, so those layers stay
//! tract's: on SSDLite-MobileNetV2 the stem, its ReLU6, the first depthwise layer and its
//! ReLU6, the slowest layers of the graph per multiply-add. This pass puts
//! one transpose after the input (`AxisOp::Move(3, 1)`: the image, the smallest tensor of the
//! chain) and has tract's own axis-change propagation turn every layer after it to channels
//! first, up to the layers that absorb the change. The graph computes the same values in the
//! same order per output; the converter's verification compares it with the source like any
//! other rewrite. Every f32 transpose of that kind, this one or one an exporter left, then
//! runs as Kestrel's `kestrel_channels_first` (NEON `ld3`/`ld4`) instead of tract's
//! element-by-element copy.
//!
//! It runs after declutter and is not undone by it later: the ops the converter then puts in
//! place (`kestrel_conv`, `kestrel_depthwise`, their int8 twins) take no axis change, so
//! tract's optimizer, on the device too, finds nothing to push the transpose through.

use std::collections::HashSet;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::change_axes::{AxisChange, AxisOp};
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_core::optim::change_axes::change_axes;

use kestrel_runtime::ops::channels_first::ChannelsFirst;

/// The channels-last convolutions of `model`.
fn channels_last_convs(model: &TypedModel) -> usize {
    model
        .nodes
        .iter()
        .filter(|n| {
            n.op_as::<Conv>()
                .is_some_and(|c| c.pool_spec.data_format.c_is_last())
        })
        .count()
}

/// `model` (decluttered) with each rank-4 input that feeds channels-last convolutions
/// transposed to channels first after it, when tract can carry the change through the layers
/// that read it (module docs); `model` unchanged otherwise. Logs what it did.
pub fn moved(model: TypedModel) -> TractResult<TypedModel> {
    let before = channels_last_convs(&model);
    let mut model = model;
    if before > 0 {
        for (ix, input) in model.input_outlets()?.to_vec().into_iter().enumerate() {
            if model.outlet_fact(input)?.rank() != 4 {
                continue;
            }
            match moved_input(&model, ix, input)? {
                Some(m) => model = m,
                None => log::info!(
                    "input {ix}: its channels-last layers stay so (the change of axes is blocked)"
                ),
            }
        }
        let after = channels_last_convs(&model);
        if after < before {
            log::info!(
                "{} channels-last convolution(s) after the input now channels first ({after} left)",
                before - after
            );
        }
    }
    kestrel_transposes(model)
}

/// `model` with every f32 `[N, H, W, C]` → `[N, C, H, W]` transpose (the one this pass puts
/// after an input, or one the exporter and tract left there) as `kestrel_channels_first`:
/// Kestrel's copy (NEON `ld3`/`ld4`), not tract's element walk.
fn kestrel_transposes(mut model: TypedModel) -> TractResult<TypedModel> {
    let mut found = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.op_as::<AxisOp>() != Some(&AxisOp::Move(3, 1)) {
            continue;
        }
        let fact = model.outlet_fact(node.inputs[0])?;
        if fact.rank() != 4 || fact.datum_type != f32::datum_type() {
            continue;
        }
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(&model, node.inputs[0])?;
        let y = patch.wire_node(&node.name, ChannelsFirst, &[x])?[0];
        patch.shunt_outside(&model, id.into(), y)?;
        patch.apply(&mut model)?;
        found += 1;
    }
    if found == 0 {
        return Ok(model);
    }
    log::info!("{found} channels-last to channels-first transpose(s) as kestrel_channels_first");
    model.into_compact()
}

/// `model` with input `input` (model input `ix`) followed by a transpose to channels first
/// and every layer after it changed to read that, or `None` if the change is blocked or
/// turns no convolution.
fn moved_input(model: &TypedModel, ix: usize, input: OutletId) -> TractResult<Option<TypedModel>> {
    let mut m = model.clone();
    let name = m.node(input.node).name.clone();
    let readers = m.outlet_successors(input).to_vec();
    let first = m.wire_node(
        format!("{name}.channels_first"),
        AxisOp::Move(3, 1),
        &[input],
    )?[0];
    let back = m.wire_node(
        format!("{name}.channels_last"),
        AxisOp::Move(1, 3),
        &[first],
    )?[0];
    for inlet in readers {
        m.add_edge(back, inlet)?;
    }
    if m.outputs.contains(&input) {
        return Ok(None);
    }
    // The change enters at `back`: its transpose becomes the identity, and every reader of
    // it changes to channels first, on through the graph until ops absorb it. Model inputs,
    // outputs and the new transpose are fixed.
    let mut locked = m.output_outlets()?.to_vec();
    locked.extend(m.input_outlets()?.iter().copied());
    locked.push(first);
    let change = AxisChange {
        outlet: back,
        op: AxisOp::Move(3, 1),
    };
    let Some((patch, _)) = change_axes(&m, &change, &locked, &[], &mut HashSet::new())? else {
        return Ok(None);
    };
    patch.apply(&mut m)?;
    let m = without_identities(m)?;
    if channels_last_convs(&m) >= channels_last_convs(model) {
        log::debug!("input {ix}: the change of axes turns no convolution");
        return Ok(None);
    }
    Ok(Some(m))
}

/// `model` without its `Identity` nodes, compacted.
fn without_identities(mut model: TypedModel) -> TractResult<TypedModel> {
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.op_is::<Identity>() {
            if let Some(patch) = TypedModelPatch::shunt_one_op(&model, node)? {
                patch.apply(&mut model)?;
            }
        }
    }
    model.into_compact()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_first as run;
    use kestrel_runtime::random::random_tensor;
    use tract_onnx::tract_core::ops::cnn::{KernelFormat, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::math;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// A k×k convolution of `x` (NHWC, `cin` → `cout` channels, `group` groups, stride 2
    /// for a 3×3 one with one group), weights and bias seeded by the name.
    fn conv(
        m: &mut TypedModel,
        name: &str,
        x: OutletId,
        [cin, cout, k, group]: [usize; 4],
    ) -> OutletId {
        let seed = name.len() as u64;
        let w = random_tensor(DatumType::F32, &[cout, cin / group, k, k], seed).unwrap();
        let w = m.add_const(format!("{name}.w"), w).unwrap();
        let b = random_tensor(DatumType::F32, &[cout], seed + 1).unwrap();
        let b = m.add_const(format!("{name}.b"), b).unwrap();
        let stride = if group == 1 && k == 3 { 2 } else { 1 };
        let p = k / 2;
        let op = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NHWC,
                kernel_shape: tvec![k, k],
                padding: PaddingSpec::Explicit(tvec![p, p], tvec![p, p]),
                dilations: None,
                strides: Some(tvec![stride, stride]),
                input_channels: cin,
                output_channels: cout,
            },
            kernel_fmt: KernelFormat::OIHW,
            group,
            q_params: None,
        };
        m.wire_node(name, op, &[x, w, b]).unwrap()[0]
    }

    /// `x [1, 9, 11, 3]` → 3×3 conv (3 → 8, NHWC, stride 2) → ReLU → 3×3 depthwise conv
    /// (NHWC) → 1×1 conv (8 → 5, NHWC) → the output, decluttered (the 1×1 conv an `EinSum`,
    /// as in a MobileNet's first block).
    fn graph() -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 9, 11, 3])).unwrap();
        let y = conv(&mut m, "stem", x, [3, 8, 3, 1]);
        let zero = tensor0(0f32).broadcast_into_rank(4).unwrap();
        let zero = m.add_const("zero", zero).unwrap();
        let y = m.wire_node("relu", math::max(), &[y, zero]).unwrap()[0];
        let y = conv(&mut m, "dw", y, [8, 8, 3, 8]);
        let y = conv(&mut m, "project", y, [8, 5, 1, 1]);
        m.select_output_outlets(&[y]).unwrap();
        m.into_decluttered().unwrap()
    }

    #[test]
    fn an_nhwc_chain_runs_channels_first_after_one_transpose_with_the_same_values() {
        let source = graph();
        assert_eq!(channels_last_convs(&source), 2, "{source}");
        let moved = moved(source.clone()).unwrap();
        assert_eq!(channels_last_convs(&moved), 0, "{moved}");
        let ops: Vec<_> = moved
            .nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .collect();
        assert_eq!(
            ops.iter().filter(|n| *n == "KestrelChannelsFirst").count(),
            1,
            "{ops:?}"
        );
        assert!(!moved.nodes.iter().any(|n| n.op_is::<AxisOp>()), "{ops:?}");
        assert_eq!(
            moved.outlet_fact(moved.outputs[0]).unwrap(),
            source.outlet_fact(source.outputs[0]).unwrap()
        );
        let x = random_tensor(DatumType::F32, &[1, 9, 11, 3], 7).unwrap();
        let (a, b) = (run(&source, &x), run(&moved, &x));
        // The same products in the same order per output: equal.
        assert_eq!(a, b);
    }

    #[test]
    fn an_input_transpose_left_by_the_exporter_becomes_kestrels() {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 4, 5, 3])).unwrap();
        let y = m.wire_node("t", AxisOp::Move(3, 1), &[x]).unwrap();
        let y = m.wire_node("neg", math::neg(), &y).unwrap();
        m.select_output_outlets(&y).unwrap();
        let moved = moved(m.clone()).unwrap();
        let ops: Vec<_> = moved
            .nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .collect();
        assert_eq!(ops, ["Source", "KestrelChannelsFirst", "Neg"]);
        let x = random_tensor(DatumType::F32, &[1, 4, 5, 3], 3).unwrap();
        assert_eq!(run(&m, &x), run(&moved, &x));
    }

    #[test]
    fn a_channels_first_graph_is_left_alone() {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 3, 4, 4])).unwrap();
        let y = m.wire_node("neg", math::neg(), &[x]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let moved = moved(m.clone()).unwrap();
        assert_eq!(moved.nodes.len(), m.nodes.len());
    }
}
