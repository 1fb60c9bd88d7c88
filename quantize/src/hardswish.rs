//! Recognises HardSwish written out as elementwise ops and puts tract's `HardSwish` in its
//! place.
//!
//! Exporters without an ONNX `HardSwish` (PaddlePaddle's, older PyTorch opsets) write
//! `x · clip(x + 3, 0, 6) / 6` as five nodes: after tract's declutter an `Add` of 3, a `Max`
//! with 0 and a `Min` with 6 (either order), a `Mul` by `x` and a `Mul` by ⅙ (or a `Div` by
//! 6). Each is a pass over the tensor, and none is fused into the convolutions around it:
//! Kestrel's depthwise ops take a HardSwish before or after them (`kestrel_depthwise`,
//! `kestrel_int8_depthwise`), but only tract's op. Replaced by that op, the same graph runs
//! the HardSwish inside the depthwise convolution next to it, or as one pass elsewhere.
//!
//! tract's HardSwish computes the same function (`x · max(min(x + 3, 6), 0) · ⅙`); its
//! result may differ from the five nodes' in the last bit (the order of the products), which
//! the converter's verification measures like any other rounding.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::math::{Add, Div, Max, Min, Mul};
use tract_onnx::tract_core::ops::nn::hard_swish;

use crate::binary::patterns::{konst, uniform};

/// Replaces every written-out HardSwish of `model` (a decluttered f32 graph) by tract's op;
/// returns how many. The nodes replaced are left dead for the caller's compaction.
pub fn recognize(model: &mut TypedModel) -> TractResult<usize> {
    let mut found = 0;
    for id in model.eval_order()? {
        if let Some(patch) = patch_for(model, id)? {
            patch.apply(model)?;
            found += 1;
        }
    }
    Ok(found)
}

/// `model` with its written-out HardSwishes replaced ([`recognize`]) and compacted; logs how
/// many.
pub fn recognized(mut model: TypedModel) -> TractResult<TypedModel> {
    let found = recognize(&mut model)?;
    if found == 0 {
        return Ok(model);
    }
    log::info!("{found} HardSwish written out as elementwise ops run as tract's HardSwish");
    model.into_compact()
}

/// The binary op of node `id` if it is a `B`: its two inputs.
fn binary<B: BinMiniOp>(model: &TypedModel, id: usize) -> Option<[OutletId; 2]> {
    let node = model.node(id);
    let op = node.op_as::<TypedBinOp>()?;
    (op.0.is::<B>() && node.inputs.len() == 2).then(|| [node.inputs[0], node.inputs[1]])
}

/// Whether `outlet` is a constant holding one value equal to `value` (any rank: a broadcast
/// scalar).
fn is_scalar(model: &TypedModel, outlet: OutletId, value: f32) -> bool {
    konst(model, outlet).is_some_and(|k| k.len() == 1 && uniform(&k) == Some(value))
}

/// The non-constant input of a binary `B` node (commutative: `Add`, `Mul`, `Max`, `Min`)
/// whose other input is the scalar `value`.
fn with_scalar<B: BinMiniOp>(model: &TypedModel, id: usize, value: f32) -> Option<OutletId> {
    let [a, b] = binary::<B>(model, id)?;
    if is_scalar(model, b, value) {
        Some(a)
    } else if is_scalar(model, a, value) {
        Some(b)
    } else {
        None
    }
}

/// Whether `outlet` is read by exactly one node and is no model output.
fn single(model: &TypedModel, outlet: OutletId) -> bool {
    !model.outputs.contains(&outlet) && model.outlet_successors(outlet).len() == 1
}

/// The input `x` of `clip(x + 3, 0, 6)` ending at `outlet`, if it is one.
fn clip_input(model: &TypedModel, outlet: OutletId) -> Option<OutletId> {
    if !single(model, outlet) {
        return None;
    }
    // min(max(v, 0), 6) or max(min(v, 6), 0).
    let inner = with_scalar::<Min>(model, outlet.node, 6.0)
        .and_then(|u| Some((u, with_scalar::<Max>(model, u.node, 0.0)?)))
        .or_else(|| {
            let u = with_scalar::<Max>(model, outlet.node, 0.0)?;
            Some((u, with_scalar::<Min>(model, u.node, 6.0)?))
        });
    let (u, v) = inner?;
    if !single(model, u) || !single(model, v) {
        return None;
    }
    with_scalar::<Add>(model, v.node, 3.0)
}

/// The patch replacing the HardSwish ending at node `id` (its `· ⅙` or `/ 6`), if it is one.
fn patch_for(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let sixth = with_scalar::<Mul>(model, id, 1.0 / 6.0).or_else(|| {
        let [a, b] = binary::<Div>(model, id)?;
        is_scalar(model, b, 6.0).then_some(a)
    });
    let Some(product) = sixth else {
        return Ok(None);
    };
    if !single(model, product) {
        return Ok(None);
    }
    let Some([a, b]) = binary::<Mul>(model, product.node) else {
        return Ok(None);
    };
    let x = [(a, b), (b, a)]
        .into_iter()
        .find(|&(x, t)| clip_input(model, t) == Some(x))
        .map(|(x, _)| x);
    let Some(x) = x else {
        return Ok(None);
    };
    if model.outlet_fact(x)?.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let node = model.node(id);
    let mut patch = TypedModelPatch::new(format!("HardSwish at {}", node.name));
    let input = patch.tap_model(model, x)?;
    let out = patch.wire_node(&node.name, hard_swish(), &[input])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), out)?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_first as run;
    use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
    use tract_onnx::tract_core::ops::math;

    /// How the graph writes the HardSwish.
    #[derive(Clone, Copy)]
    enum Form {
        /// `Max` then `Min`, `Mul` by ⅙.
        MaxMin,
        /// `Min` then `Max`, `Div` by 6, constants on the left.
        MinMaxDiv,
        /// Like `MaxMin`, but adding 2.5: not a HardSwish.
        Shifted,
        /// Like `MaxMin`, with the clip's output also a model output.
        Shared,
    }

    fn graph(form: Form) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 4, 5, 5])).unwrap();
        let k = |m: &mut TypedModel, name: &str, v: f32| {
            m.add_const(name, tensor0(v).broadcast_into_rank(4).unwrap())
                .unwrap()
        };
        let three = k(
            &mut m,
            "three",
            if let Form::Shifted = form { 2.5 } else { 3.0 },
        );
        let (zero, six) = (k(&mut m, "zero", 0.0), k(&mut m, "six", 6.0));
        let v = m.wire_node("add", math::add(), &[x, three]).unwrap()[0];
        let t = match form {
            Form::MinMaxDiv => {
                let u = m.wire_node("min", math::min(), &[six, v]).unwrap()[0];
                m.wire_node("max", math::max(), &[zero, u]).unwrap()[0]
            }
            _ => {
                let u = m.wire_node("max", math::max(), &[v, zero]).unwrap()[0];
                m.wire_node("min", math::min(), &[u, six]).unwrap()[0]
            }
        };
        let p = m.wire_node("mul", math::mul(), &[t, x]).unwrap()[0];
        let y = match form {
            Form::MinMaxDiv => m.wire_node("div", math::div(), &[p, six]).unwrap()[0],
            _ => {
                let sixth = k(&mut m, "sixth", 1.0 / 6.0);
                m.wire_node("scale", math::mul(), &[p, sixth]).unwrap()[0]
            }
        };
        let mut outputs = vec![y];
        if let Form::Shared = form {
            outputs.push(t);
        }
        m.select_output_outlets(&outputs).unwrap();
        m
    }

    fn hardswishes(m: &TypedModel) -> usize {
        m.nodes()
            .iter()
            .filter(|n| {
                n.op_as::<ElementWiseOp>()
                    .is_some_and(|e| e.0.name() == "HardSwish")
            })
            .count()
    }

    #[test]
    fn a_written_out_hardswish_becomes_tract_s_op_with_the_same_values() {
        let mut values: Vec<f32> = (0..100).map(|i| (i as f32 - 50.0) * 0.13).collect();
        values[..4].copy_from_slice(&[-3.0, 3.0, 0.0, -1.5]);
        let x = Tensor::from_shape(&[1, 4, 5, 5], &values).unwrap();
        for form in [Form::MaxMin, Form::MinMaxDiv] {
            let source = graph(form);
            let found = recognized(source.clone()).unwrap();
            assert_eq!(hardswishes(&found), 1);
            assert_eq!(
                found.nodes().len(),
                2,
                "the source and the HardSwish: {found}"
            );
            let (want, got) = (run(&source, &x), run(&found, &x));
            let want = want.to_plain_array_view::<f32>().unwrap();
            let got = got.to_plain_array_view::<f32>().unwrap();
            for (w, g) in want.iter().zip(got.iter()) {
                assert!((w - g).abs() <= 1e-6 * w.abs().max(1.0), "{w} vs {g}");
            }
        }
    }

    #[test]
    fn anything_else_is_left_as_it_is() {
        for form in [Form::Shifted, Form::Shared] {
            let mut m = graph(form);
            assert_eq!(recognize(&mut m).unwrap(), 0);
            assert_eq!(hardswishes(&m), 0);
        }
    }
}
