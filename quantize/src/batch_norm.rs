//! Folds the batch-norm left after a 1×1 convolution or a `Gemm` into its weights.
//!
//! tract's declutter turns a 1×1 convolution into an `EinSum` and keeps the batch-norm after it
//! as a per-channel `Mul` and `Add` (`crate::int8::layers`). tract's matrix product then runs
//! them in its output stage, per tile: a multiply and an add per output, and the fused-op
//! dispatch around them. Folding the scale into the weights (`W'[o, ·] = s[o] · W[o, ·]`, the
//! shifts into one bias per channel) leaves the product and one `Add`, which tract fuses as its
//! bias, as every peer runtime does. The result differs from the unfolded graph by rounding
//! only (the product of the scale and each weight is rounded once, offline).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;

use crate::int8::layers::{find_layers, LayerOp};

/// Folds the batch-norm of every `EinSum` layer of `model` (decluttered, float) that has a
/// per-channel `Mul` after it; returns the graph and how many layers were folded.
pub fn fold(model: TypedModel) -> TractResult<(TypedModel, usize)> {
    let layers = find_layers(&model)?;
    let mut model = model;
    let mut folded = 0;
    for layer in layers {
        let LayerOp::EinSum(_) = &layer.op else {
            continue;
        };
        let bin = |id: &usize| {
            model
                .node(*id)
                .op_as::<TypedBinOp>()
                .map(|op| op.0.name().to_string())
        };
        // The batch-norm: the Mul / Add chain after the head, before any ReLU or clip.
        let chain: Vec<usize> = layer.nodes[1..]
            .iter()
            .take_while(|id| matches!(bin(id).as_deref(), Some("Mul" | "Add")))
            .copied()
            .collect();
        if !chain.iter().any(|id| bin(id).as_deref() == Some("Mul")) {
            continue;
        }
        let head = model.node(layer.nodes[0]);
        let einsum = head
            .op_as::<EinSum>()
            .expect("an EinSum layer's head")
            .clone();
        let weight_fact = model.outlet_fact(head.inputs[1])?;
        if weight_fact.datum_type != f32::datum_type()
            || head.outputs[0].fact.datum_type != f32::datum_type()
        {
            continue;
        }
        let (x, name) = (head.inputs[0], head.name.clone());
        let rank = head.outputs[0].fact.rank();
        let mut bias_shape = tvec![1; rank];
        bias_shape[layer.channel_axis] = layer.channels();
        let bias = tensor1(&layer.bias).into_shape(&bias_shape)?;
        let last = OutletId::new(*chain.last().expect("a Mul"), 0);

        let mut patch = TypedModelPatch::new(format!("fold batch-norm into {name}"));
        let x = patch.tap_model(&model, x)?;
        let w = patch.add_const(format!("{name}.folded"), layer.weights.clone())?;
        let y = patch.wire_node(&name, einsum, &[x, w])?[0];
        let b = patch.add_const(format!("{name}.folded_bias"), bias)?;
        let y = patch.wire_node(format!("{name}.bias"), math::add(), &[y, b])?[0];
        patch.shunt_outside(&model, last, y)?;
        patch.apply(&mut model)?;
        folded += 1;
    }
    Ok((model.into_compact()?, folded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_runtime::random::random_tensor;
    use tract_onnx::tract_core::internal::*;
    use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
    use tract_onnx::tract_core::ops::nn::DataFormat;

    /// `x [1, 16, 5, 7]` → 1×1 conv (16 → 8) as tract declutters it → batch-norm `Mul`, `Add`
    /// → ReLU.
    fn graph() -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 16, 5, 7])).unwrap();
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![1, 1],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: None,
                input_channels: 16,
                output_channels: 8,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let w = m
            .add_const(
                "w",
                random_tensor(DatumType::F32, &[8, 16, 1, 1], 1).unwrap(),
            )
            .unwrap();
        let b = m.add_const("b", tensor1(&[0f32; 8])).unwrap();
        let mut y = m.wire_node("conv", conv, &[x, w, b]).unwrap()[0];
        for (name, op, seed) in [("bn.mul", math::mul(), 2), ("bn.add", math::add(), 3)] {
            let k = random_tensor(DatumType::F32, &[1, 8, 1, 1], seed).unwrap();
            let k = m.add_const(format!("{name}.k"), k).unwrap();
            y = m.wire_node(name, op, &[y, k]).unwrap()[0];
        }
        let zero = m
            .add_const("zero", tensor0(0f32).broadcast_into_rank(4).unwrap())
            .unwrap();
        y = m.wire_node("relu", math::max(), &[y, zero]).unwrap()[0];
        m.select_output_outlets(&[y]).unwrap();
        m.into_decluttered().unwrap()
    }

    fn run(m: &TypedModel) -> Tensor {
        let x = random_tensor(DatumType::F32, &[1, 16, 5, 7], 9).unwrap();
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
    fn the_scale_moves_into_the_weights_and_the_outputs_stay_close() {
        let source = graph();
        assert!(
            ops(&source).iter().any(|n| n == "Mul"),
            "{:?}",
            ops(&source)
        );
        let (folded, n) = fold(source.clone()).unwrap();
        assert_eq!(n, 1);
        let names = ops(&folded);
        assert!(!names.iter().any(|n| n == "Mul"), "{names:?}");
        assert_eq!(names.iter().filter(|n| *n == "Add").count(), 1, "{names:?}");
        assert!(
            names.iter().any(|n| n == "Max"),
            "the ReLU stays: {names:?}"
        );
        run(&source)
            .close_enough(&run(&folded), Approximation::Approximate)
            .unwrap();
    }

    #[test]
    fn a_layer_without_a_scale_is_left_alone() {
        let (folded, n) = fold(graph()).unwrap();
        let (again, m) = fold(folded.clone()).unwrap();
        assert_eq!((n, m), (1, 0));
        assert_eq!(ops(&again), ops(&folded));
    }
}
