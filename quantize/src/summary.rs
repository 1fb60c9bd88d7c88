//! What a graph is made of: operator histogram and parameter bytes.

use std::collections::BTreeMap;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;

/// Counts of a graph's operators (constants and sources excluded) and its parameter bytes.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct GraphStats {
    /// Operator name → number of nodes.
    pub ops: BTreeMap<String, usize>,
    /// Bytes of every constant tensor (weights, biases, folded batch-norm factors…).
    pub param_bytes: usize,
    /// Number of constant tensors.
    pub consts: usize,
}

/// Counts `model`'s operators and constants.
pub fn graph_stats(model: &TypedModel) -> GraphStats {
    let mut stats = GraphStats::default();
    for node in model.nodes() {
        if let Some(k) = node.op_as::<Const>() {
            stats.consts += 1;
            let t = k.val();
            stats.param_bytes += t.len() * t.datum_type().size_of();
            continue;
        }
        let name = node.op().name();
        if name == "Source" {
            continue;
        }
        *stats.ops.entry(name.to_string()).or_default() += 1;
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math;

    #[test]
    fn counts_ops_and_constant_bytes() {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([4])).unwrap();
        let w = m.add_const("w", tensor1(&[1f32, 2., 3., 4.])).unwrap();
        let y = m.wire_node("mul", math::mul(), &[x, w]).unwrap();
        m.select_output_outlets(&y).unwrap();
        let s = graph_stats(&m);
        assert_eq!(s.param_bytes, 16);
        assert_eq!(s.consts, 1);
        assert_eq!(s.ops.values().sum::<usize>(), 1);
    }
}
