//! Pattern matchers on tract's decluttered graph: binarisers, ±α weights, per-channel affine
//! constants. What they match is tract's canonical form after `into_decluttered()`:
//!
//! - ONNX `Sign` → an element-wise op named `Sign`;
//! - `Where(x >= 0, 1, -1)` and QONNX `BipolarQuant` → `Iff(GTE(x, 0), c, −c)`, possibly
//!   followed by a `Mul` by a positive scalar (the activation scale; a scale of 1 is removed);
//!   `Where(x < 0, -c, c)` is the same binariser;
//! - a batch-norm or `Mul`/`Add` after a conv is usually folded by tract into the kernel and
//!   bias, so ±1 weights arrive as ±α_c per output channel: exactly what [`pm_alpha`] finds.

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;

/// How a binariser is written in the source graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinariserKind {
    /// ONNX `Sign`: `Sign(0) = 0`, where Kestrel gives +1.
    Sign,
    /// `Where(x >= 0, c, -c)` or QONNX `BipolarQuant`: 0 gives +c, as Kestrel does.
    Select,
}

/// A node computing `scale · b(input)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Binariser {
    /// The float value binarised.
    pub input: OutletId,
    /// The positive scale of the ±1 output.
    pub scale: f32,
    /// Its source form.
    pub kind: BinariserKind,
}

/// The constant value of an outlet, if it is one.
pub fn konst(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    model.outlet_fact(outlet).ok()?.konst.clone()
}

/// `Some(v)` when every element of the f32 tensor `t` equals `v` (and `t` is not empty).
pub fn uniform(t: &Tensor) -> Option<f32> {
    let t = t.cast_to::<f32>().ok()?;
    let view = t.try_as_plain_ram().ok()?;
    let values = view.as_slice::<f32>().ok()?;
    let first = *values.first()?;
    values.iter().all(|v| *v == first).then_some(first)
}

fn bin_op_name(node: &TypedNode) -> Option<String> {
    node.op_as::<TypedBinOp>().map(|op| op.0.name().to_string())
}

/// Recognises a binariser node.
pub fn binariser(model: &TypedModel, node: &TypedNode) -> Option<Binariser> {
    let out = &node.outputs.first()?.fact;
    if out.datum_type != f32::datum_type() {
        return None;
    }
    if let Some(op) = node.op_as::<ElementWiseOp>() {
        if op.0.name() == "Sign" {
            return Some(Binariser {
                input: node.inputs[0],
                scale: 1.0,
                kind: BinariserKind::Sign,
            });
        }
        return None;
    }
    if node.op.name() != "Iff" || node.inputs.len() != 3 {
        return None;
    }
    let a = uniform(&*konst(model, node.inputs[1])?)?;
    let b = uniform(&*konst(model, node.inputs[2])?)?;
    let cond = model.node(node.inputs[0].node);
    let op = bin_op_name(cond)?;
    if cond.inputs.len() != 2 || uniform(&*konst(model, cond.inputs[1])?)? != 0.0 {
        return None;
    }
    let x = cond.inputs[0];
    let scale = match op.as_str() {
        "GTE" if a > 0.0 && b == -a => a,
        "LT" if b > 0.0 && a == -b => b,
        _ => return None,
    };
    // The binarised value must have the output's shape (no broadcast by the select).
    let xf = model.outlet_fact(x).ok()?;
    if xf.datum_type != f32::datum_type() || xf.shape != out.shape {
        return None;
    }
    Some(Binariser {
        input: x,
        scale,
        kind: BinariserKind::Select,
    })
}

/// The other input of a two-input node one of whose inputs is `input`.
fn other_input(node: &TypedNode, input: OutletId) -> Option<OutletId> {
    match node.inputs[..] {
        [a, b] if a == input => Some(b),
        [a, b] if b == input => Some(a),
        _ => None,
    }
}

/// A `Mul` of `input` by a positive scalar constant that leaves its shape unchanged:
/// `Some(scale)`.
pub fn positive_scalar_mul(model: &TypedModel, node: &TypedNode, input: OutletId) -> Option<f32> {
    if bin_op_name(node)? != "Mul" {
        return None;
    }
    let other = other_input(node, input)?;
    let k = konst(model, other)?;
    if k.shape().iter().any(|d| *d != 1) {
        return None;
    }
    let s = uniform(&k)?;
    (s > 0.0 && s.is_finite()).then_some(s)
}

/// When every slice of `w` along `axis` holds the values ±α_c for one α_c ≥ 0 (α_c = 0 only
/// for an all-zero slice), returns the α_c.
pub fn pm_alpha(w: &Tensor, axis: usize) -> Option<Vec<f32>> {
    if w.datum_type() != f32::datum_type() || axis >= w.rank() {
        return None;
    }
    let view = w.to_plain_array_view::<f32>().ok()?;
    let mut alphas = Vec::with_capacity(w.shape()[axis]);
    for slice in view.axis_iter(tract_ndarray::Axis(axis)) {
        let mut values = slice.iter().map(|v| v.abs());
        let alpha = values.next()?;
        if !alpha.is_finite() || !values.all(|v| v == alpha) {
            return None;
        }
        alphas.push(alpha);
    }
    Some(alphas)
}

/// Which element-wise affine op a node is, with its per-channel constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Affine {
    /// `y = x · k[c]`.
    Mul(Vec<f32>),
    /// `y = x + k[c]`.
    Add(Vec<f32>),
}

/// A `Mul` or `Add` of `input` (shape of rank r, `channels` along `channel_axis`) with a
/// constant that is per-channel (or a scalar) and does not change the shape.
pub fn per_channel_affine(
    model: &TypedModel,
    node: &TypedNode,
    input: OutletId,
    channel_axis: usize,
    channels: usize,
) -> Option<Affine> {
    let name = bin_op_name(node)?;
    if name != "Mul" && name != "Add" {
        return None;
    }
    let other = other_input(node, input)?;
    let in_fact = model.outlet_fact(input).ok()?;
    if node.outputs[0].fact.shape != in_fact.shape || in_fact.datum_type != f32::datum_type() {
        return None;
    }
    let k = konst(model, other)?;
    let rank = in_fact.rank();
    if k.datum_type() != f32::datum_type() || k.rank() > rank {
        return None;
    }
    // Right-align the constant's axes with the input's.
    let offset = rank - k.rank();
    let mut along = None;
    for (i, d) in k.shape().iter().enumerate() {
        match *d {
            1 => {}
            d if d == channels && i + offset == channel_axis => along = Some(i),
            _ => return None,
        }
    }
    let view = k.try_as_plain_ram().ok()?;
    let values = view.as_slice::<f32>().ok()?;
    let per_channel = match along {
        Some(_) => values.to_vec(),
        None => vec![*values.first()?; channels],
    };
    Some(if name == "Mul" {
        Affine::Mul(per_channel)
    } else {
        Affine::Add(per_channel)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_per_channel_alphas() {
        let w = tensor2(&[[0.5f32, -0.5, 0.5], [-2.0, -2.0, 2.0], [0.0, 0.0, 0.0]]);
        assert_eq!(pm_alpha(&w, 0), Some(vec![0.5, 2.0, 0.0]));
        assert_eq!(pm_alpha(&w, 1), None);
        let w = tensor2(&[[0.5f32, -0.25]]);
        assert_eq!(pm_alpha(&w, 0), None);
        let w = tensor2(&[[0.0f32, 1.0]]);
        assert_eq!(pm_alpha(&w, 0), None, "a zero among ±1 is not binary");
    }

    #[test]
    fn uniform_values() {
        assert_eq!(uniform(&tensor1(&[2f32, 2.0])), Some(2.0));
        assert_eq!(uniform(&tensor1(&[2f32, 1.0])), None);
        assert_eq!(uniform(&tensor1::<f32>(&[])), None);
    }
}
