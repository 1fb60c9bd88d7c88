//! The per-layer conversion report of binary conversion: what each conv/dense layer became,
//! its weight bytes before and after, and its work per inference.

use serde::Serialize;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::plan::{LayerKind, PassThrough, Plan};

/// One conv or dense layer of the source graph.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerReport {
    /// Node name (the ONNX node's).
    pub name: String,
    /// Shape summary, e.g. `conv 3x3 24->70 @16x16`.
    pub layer: String,
    /// `binary conv2d`, `binary dense` or `float`.
    pub became: String,
    /// Output of a binary layer: `packed` (the next layer's bits) or `float`.
    pub output: Option<String>,
    /// Weight bytes in the source graph (f32).
    pub weight_bytes_before: usize,
    /// Weight bytes in the converted graph (packed bits plus per-channel multiplier and bias
    /// for binary layers).
    pub weight_bytes_after: usize,
    /// Bit-MACs per inference (binary layers).
    pub bit_macs: u64,
    /// Float MACs per inference (float layers).
    pub float_macs: u64,
}

/// The binary conversion's report.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct BinaryReport {
    /// Conv and dense layers, in graph order.
    pub layers: Vec<LayerReport>,
    /// Max-pools that became bitwise ANDs on packed bits.
    pub binary_max_pools: usize,
    /// Float tensors packed into bits (`kestrel_bitpack`): entries into the binary domain.
    pub bitpacks: usize,
    /// Sum of weight bytes before.
    pub weight_bytes_before: usize,
    /// Sum of weight bytes after.
    pub weight_bytes_after: usize,
    /// Bit-MACs per inference, all binary layers.
    pub bit_macs: u64,
    /// Float MACs per inference, all float conv/dense layers.
    pub float_macs: u64,
    /// Warnings (Sign(0) conventions, layers kept float and why).
    pub warnings: Vec<String>,
}

/// Builds the report of `plan` on `model` (the decluttered source graph).
pub fn report(model: &TypedModel, plan: &Plan) -> TractResult<BinaryReport> {
    let mut r = BinaryReport {
        warnings: plan.warnings.clone(),
        binary_max_pools: plan
            .pass
            .iter()
            .filter(|(n, p)| {
                matches!(p, PassThrough::MaxPool(_))
                    && plan.needs_packed.contains(&OutletId::new(**n, 0))
            })
            .count(),
        bitpacks: plan
            .binarisers
            .keys()
            .filter(|n| {
                plan.needs_packed.contains(&OutletId::new(**n, 0)) && !plan.absorbed.contains(n)
            })
            .count(),
        ..BinaryReport::default()
    };
    for n in model.eval_order()? {
        let node = model.node(n);
        let (is_conv, is_dense) = (node.op_is::<Conv>(), node.op_is::<EinSum>());
        if !is_conv && !is_dense {
            continue;
        }
        let consts: Vec<Arc<Tensor>> = node
            .inputs
            .iter()
            .filter_map(|i| model.outlet_fact(*i).ok()?.konst.clone())
            .collect();
        if consts.is_empty() {
            continue; // a matmul of two activations is not a layer with weights
        }
        let before: usize = consts
            .iter()
            .filter(|t| t.len() > 1)
            .map(|t| t.len() * t.datum_type().size_of())
            .sum();
        let out_volume: u64 = node.outputs[0]
            .fact
            .shape
            .as_concrete()
            .map(|d| d.iter().product::<usize>() as u64)
            .unwrap_or(0);
        let layer = describe(model, node);
        let entry = match plan.layers.get(&n) {
            Some(l) => {
                let (after, became) = match &l.kind {
                    LayerKind::Conv { geometry, .. } => (
                        geometry.c_out
                            * geometry.kernel[0]
                            * geometry.kernel[1]
                            * geometry.in_words()
                            * 8,
                        "binary conv2d",
                    ),
                    LayerKind::Dense { weights } => {
                        let words = plan.bvals[&l.data].layout.row_words();
                        (weights.shape()[0] * words * 8, "binary dense")
                    }
                };
                LayerReport {
                    name: node.name.clone(),
                    layer,
                    became: became.into(),
                    output: Some(l.output.as_str().into()),
                    weight_bytes_before: before,
                    weight_bytes_after: after + 8 * l.mul.len(),
                    bit_macs: l.bit_macs,
                    float_macs: 0,
                }
            }
            None => {
                let kernel = consts.iter().map(|t| t.len()).max().unwrap_or(0) as u64;
                let macs = match node.op_as::<Conv>() {
                    Some(conv) => {
                        // out volume × (taps per output) = out volume × kernel / C_out
                        out_volume * kernel / conv.output_channels().max(1) as u64
                    }
                    None => einsum_macs(model, node).unwrap_or(0),
                };
                LayerReport {
                    name: node.name.clone(),
                    layer,
                    became: "float".into(),
                    output: None,
                    weight_bytes_before: before,
                    weight_bytes_after: before,
                    bit_macs: 0,
                    float_macs: macs,
                }
            }
        };
        r.weight_bytes_before += entry.weight_bytes_before;
        r.weight_bytes_after += entry.weight_bytes_after;
        r.bit_macs += entry.bit_macs;
        r.float_macs += entry.float_macs;
        r.layers.push(entry);
    }
    Ok(r)
}

/// Product of every axis of an einsum (each output element sums over the contracted ones).
fn einsum_macs(model: &TypedModel, node: &TypedNode) -> Option<u64> {
    let op = node.op_as::<EinSum>()?;
    let mut total = 1u64;
    for axis in op.axes.iter_all_axes() {
        let dim = axis
            .inputs
            .iter()
            .enumerate()
            .find_map(|(slot, pos)| {
                let p = *pos.first()?;
                model.outlet_fact(node.inputs[slot]).ok()?.shape[p]
                    .to_i64()
                    .ok()
                    .map(|d| d as usize)
            })
            .unwrap_or(1);
        total *= dim as u64;
    }
    Some(total)
}

fn describe(model: &TypedModel, node: &TypedNode) -> String {
    let shape = |o: OutletId| {
        model
            .outlet_fact(o)
            .ok()
            .and_then(|f| f.shape.as_concrete().map(|d| d.to_vec()))
            .unwrap_or_default()
    };
    let input = shape(node.inputs[0]);
    let output = shape(OutletId::new(node.id, 0));
    match node.op_as::<Conv>() {
        Some(conv) if input.len() == 4 && output.len() == 4 => format!(
            "conv {}x{} {}->{} @{}x{}",
            conv.pool_spec.kernel_shape.first().copied().unwrap_or(1),
            conv.pool_spec.kernel_shape.get(1).copied().unwrap_or(1),
            input[1],
            output[1],
            output[2],
            output[3]
        ),
        Some(_) => format!("conv {input:?}->{output:?}"),
        None => {
            let out: usize = output.iter().product();
            let k = einsum_macs(model, node).unwrap_or(0) as usize / out.max(1);
            format!("dense {k}->{out}")
        }
    }
}

impl BinaryReport {
    /// Human-readable table.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "  layers:");
        let _ = writeln!(
            s,
            "    {:<24} {:<28} {:<22} {:>12} {:>12} {:>14}",
            "name", "layer", "became", "weights B", "after B", "MACs"
        );
        for l in &self.layers {
            let became = match &l.output {
                Some(o) => format!("{} ({o} out)", l.became),
                None => l.became.clone(),
            };
            let macs = if l.bit_macs > 0 {
                format!("{} bit", l.bit_macs)
            } else {
                format!("{} f32", l.float_macs)
            };
            let _ = writeln!(
                s,
                "    {:<24} {:<28} {:<22} {:>12} {:>12} {:>14}",
                l.name, l.layer, became, l.weight_bytes_before, l.weight_bytes_after, macs
            );
        }
        let binary = self.layers.iter().filter(|l| l.bit_macs > 0).count();
        let _ = writeln!(
            s,
            "  binary  {binary} of {} layers, {} max-pools on bits, {} bitpacks; weights {} B -> {} B; \
             {} bit-MACs + {} f32 MACs per inference",
            self.layers.len(),
            self.binary_max_pools,
            self.bitpacks,
            self.weight_bytes_before,
            self.weight_bytes_after,
            self.bit_macs,
            self.float_macs
        );
        for w in &self.warnings {
            let _ = writeln!(s, "  warning {w}");
        }
        s
    }
}
