//! QONNX `BipolarQuant` import: `BipolarQuant(x, scale) = scale · (x ≥ 0 ? +1 : −1)`.
//!
//! Brevitas and FINN export binarised activations and weights as this custom op, in the
//! `onnx.brevitas`, `qonnx.custom_op.general` or `finn.custom_op.general` domain. tract-onnx
//! does not know it; [`onnx`] returns a tract-onnx framework that does. The op expands into
//! core ops — `Iff(x ≥ 0, 1, −1) · scale` — so the source graph evaluates exactly (reference
//! for verification), constant weights fold into ±scale tensors during declutter, and the
//! binary-layer recogniser ([`super::recognise`]) sees one binariser form (`Where`-style) for
//! `BipolarQuant` and `Where(x >= 0, 1, -1)` alike.
//!
//! Note `BipolarQuant(0) = +scale` (like Kestrel's binarisation) while ONNX `Sign(0) = 0`.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_core::ops::logic::{comp_gte, Iff};
use tract_onnx::tract_core::ops::math::mul;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::Onnx;

/// Domains in which `BipolarQuant` is recognised.
pub const DOMAINS: [&str; 3] = [
    "onnx.brevitas",
    "qonnx.custom_op.general",
    "finn.custom_op.general",
];

/// tract-onnx with `BipolarQuant` registered.
pub fn onnx() -> Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("BipolarQuant", bipolar_quant);
    onnx
}

fn bipolar_quant(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    ensure!(
        DOMAINS.contains(&node.domain.as_str()),
        "BipolarQuant node '{}' is in domain '{}'; Kestrel knows it in {}",
        node.name,
        node.domain,
        DOMAINS.join(", ")
    );
    let given = node.input.iter().filter(|i| !i.is_empty()).count();
    ensure!(
        node.input.len() == 2 && given == 2,
        "BipolarQuant node '{}' needs 2 inputs (x, scale), got {given}: the scale is missing",
        node.name
    );
    Ok((expand(BipolarQuant), vec![]))
}

/// The inference-time form of `BipolarQuant`.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
pub struct BipolarQuant;

impl Expansion for BipolarQuant {
    fn name(&self) -> StaticName {
        "BipolarQuant".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        tract_onnx::tract_hir::ops::binary::rules(s, inputs, outputs, |a, b| {
            ensure!(a == b, "BipolarQuant: x is {a:?} but scale is {b:?}");
            Ok(a)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = target.outlet_fact(inputs[0])?.clone();
        let dt = fact.datum_type;
        ensure!(dt.is_float(), "BipolarQuant: x must be float, got {dt:?}");
        let scalar = |v: f32| -> TractResult<Tensor> {
            let t = tensor0(v).cast_to_dt(dt)?.into_owned();
            t.broadcast_into_rank(fact.rank())
        };
        let zero = target.add_const(format!("{prefix}.zero"), scalar(0.0)?)?;
        let plus = target.add_const(format!("{prefix}.plus_one"), scalar(1.0)?)?;
        let minus = target.add_const(format!("{prefix}.minus_one"), scalar(-1.0)?)?;
        let ge = wire_with_rank_broadcast(
            format!("{prefix}.ge"),
            target,
            TypedBinOp(comp_gte(), None),
            &[inputs[0], zero],
        )?;
        let signs = target.wire_node(format!("{prefix}.select"), Iff, &[ge[0], plus, minus])?;
        wire_with_rank_broadcast(prefix, target, mul(), &[signs[0], inputs[1]])
    }
}
