//! Where a written int8 graph stops matching the one built: when the NNEF reload of a graph
//! computes something else, the converter names the first node (in evaluation order) whose
//! output differs, so the error says which op does not survive serialisation.
//!
//! Both graphs are compared before optimisation: the built graph as it is written, the file
//! as `Model::parse_bytes` reads it. Nodes are matched by name (the NNEF writer keeps them);
//! a node whose output datum types differ (a quantized type whose scale or zero point was
//! lost) diverges even when its integers agree.

use std::collections::HashMap;

use tract_onnx::prelude::*;

use crate::verify::compare;

/// The first node whose output differs between `built` and `reloaded` on `input`, as a
/// sentence (`None` when every shared node agrees within `tolerance`, relative).
pub fn first_divergence(
    built: &TypedModel,
    reloaded: &TypedModel,
    input: &Tensor,
    tolerance: f64,
) -> TractResult<Option<String>> {
    // The reloaded graph's outlets by NNEF identifier. The loader may wire helpers for an
    // assignment `x = …`: a `mul` becomes nodes `x` (cast), `x_0` (cast), `x_1` (the mul), and
    // the identifier's value is the last of them. So `x_N` after an `x` stands for `x`.
    let mut by_name: HashMap<&str, OutletId> = HashMap::new();
    for node in reloaded.nodes() {
        let outlet = OutletId::new(node.id, 0);
        by_name.insert(node.name.as_str(), outlet);
        if let Some((base, n)) = node.name.rsplit_once('_') {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && by_name.contains_key(base)
            {
                by_name.insert(base, outlet);
            }
        }
    }
    // Outlets of the built graph with a namesake of the same type, in evaluation order.
    let mut pairs = vec![];
    for id in built.eval_order()? {
        let node = built.node(id);
        for slot in 0..node.outputs.len() {
            let outlet = OutletId::new(id, slot);
            let name = built.outlet_label(outlet).unwrap_or(if slot == 0 {
                node.name.as_str()
            } else {
                ""
            });
            if let Some(&other) = by_name.get(name) {
                pairs.push((outlet, other));
            }
        }
    }
    let run = |model: &TypedModel, outlets: Vec<OutletId>| -> TractResult<TVec<TValue>> {
        let mut model = model.clone();
        model.select_output_outlets(&outlets)?;
        model
            .into_runnable()?
            .run(tvec!(input.clone().into_tvalue()))
    };
    let a = run(built, pairs.iter().map(|p| p.0).collect())?;
    let b = run(reloaded, pairs.iter().map(|p| p.1).collect())?;
    for ((x, y), &(outlet, pair_other)) in a.iter().zip(b.iter()).zip(&pairs) {
        let node = built.node(outlet.node);
        let other = reloaded.node(pair_other.node);
        let inputs = |m: &TypedModel, n: &TypedNode| {
            n.inputs
                .iter()
                .map(|i| {
                    let f = m
                        .outlet_fact(*i)
                        .map(|f| format!("{f:?}"))
                        .unwrap_or_default();
                    format!("{} {f}", m.node(i.node).name)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let what = format!(
            "node '{}' ({}; inputs built: {}; reloaded: {})",
            node.name,
            node.op.name(),
            inputs(built, node),
            inputs(reloaded, other)
        );
        if x.datum_type() != y.datum_type() {
            return Ok(Some(format!(
                "{what}: output type {:?} built, {:?} reloaded",
                x.datum_type(),
                y.datum_type()
            )));
        }
        if x.shape() != y.shape() {
            return Ok(Some(format!(
                "{what}: output shape {:?} built, {:?} reloaded",
                x.shape(),
                y.shape()
            )));
        }
        // Tensors that do not cast to numbers (opaque ones) are not compared.
        let Ok(d) = compare(&node.name, x, y) else {
            continue;
        };
        if d.relative.is_nan() || d.relative > tolerance {
            return Ok(Some(format!(
                "{what}: output differs by {:.3e} (relative)",
                d.relative
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cast::cast;

    /// x → cast to QI8(0, scale) named `q` → back to f32 named `y`.
    fn graph(scale: f32) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", TypedFact::shape::<f32, _>([4])).unwrap();
        let qdt = DatumType::QI8(QParams::ZpScale {
            zero_point: 0,
            scale,
        });
        let q = m.wire_node("q", cast(qdt), &[x]).unwrap();
        let y = m.wire_node("y", cast(f32::datum_type()), &q).unwrap();
        m.select_output_outlets(&y).unwrap();
        m
    }

    #[test]
    fn names_the_first_node_whose_output_differs() {
        let input = tensor1(&[0.1f32, -0.2, 0.3, 0.05]);
        let same = first_divergence(&graph(0.01), &graph(0.01), &input, 1e-6).unwrap();
        assert_eq!(same, None);
        let what = first_divergence(&graph(0.01), &graph(0.0100001), &input, 1e-6)
            .unwrap()
            .expect("the scales differ");
        assert!(what.starts_with("node 'q' (Cast"), "{what}");
        assert!(what.contains("output type"), "{what}");
    }
}
