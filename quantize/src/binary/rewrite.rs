//! Builds the converted graph from a [`Plan`]: a new typed model where binary layers are
//! Kestrel's ops and everything else is the source node, copied.
//!
//! Constants are added only where a copied node uses them, so the float kernels of layers
//! that became binary are not written to the graph.

use std::collections::HashMap;

use kestrel_runtime::ops::bconv::BinaryConv2d;
use kestrel_runtime::ops::bdense::BinaryDense;
use kestrel_runtime::ops::bitpack::Bitpack;
use kestrel_runtime::ops::output_stage::OutputKind;
use kestrel_runtime::ops::packing::{pack_conv_weights, sign_bit_f32};
use tract_onnx::tract_core::internal::*;

use super::plan::{LayerKind, LayerPlan, Layout, PassThrough, Plan};

struct Translation<'a> {
    src: &'a TypedModel,
    plan: &'a Plan,
    new: TypedModel,
    float: HashMap<OutletId, OutletId>,
    packed: HashMap<OutletId, OutletId>,
}

/// The converted graph.
pub fn rewrite(src: &TypedModel, plan: &Plan) -> TractResult<TypedModel> {
    let mut t = Translation {
        src,
        plan,
        new: TypedModel::default(),
        float: HashMap::new(),
        packed: HashMap::new(),
    };
    for n in src.eval_order()? {
        t.node(n)
            .with_context(|| format!("converting node '{}'", src.node(n).name))?;
    }
    let outputs = src
        .output_outlets()?
        .iter()
        .map(|o| t.float(*o))
        .collect::<TractResult<Vec<_>>>()?;
    t.new.select_output_outlets(&outputs)?;
    for (old, new) in src.output_outlets()?.iter().zip(&outputs) {
        if let Some(label) = src.outlet_label(*old) {
            t.new.set_outlet_label(*new, label.to_string())?;
        }
    }
    t.new.properties = src.properties.clone();
    t.new.into_compact()
}

impl Translation<'_> {
    fn node(&mut self, n: usize) -> TractResult<()> {
        let plan = self.plan;
        if plan.folded_node(n) || plan.absorbed.contains(&n) || plan.conds.contains_key(&n) {
            return Ok(()); // conditions are copied with their binariser
        }
        let node = self.src.node(n);
        if let Some(layer) = plan.layers.get(&n) {
            return self.layer(layer);
        }
        if node.op_is::<tract_onnx::tract_core::ops::source::TypedSource>() {
            let fact = node.outputs[0].fact.clone();
            let id = self.new.add_source(&node.name, fact)?;
            self.float.insert(OutletId::new(n, 0), id);
            return Ok(());
        }
        if node.op_is::<tract_onnx::tract_core::ops::konst::Const>() {
            return Ok(()); // added where used
        }
        let out = OutletId::new(n, 0);
        let (needs_float, needs_packed) = (
            plan.needs_float.contains(&out),
            plan.needs_packed.contains(&out),
        );
        if let Some(b) = plan.binarisers.get(&n) {
            if needs_packed {
                let packed = self.bitpack(b.input, &node.name)?;
                self.packed.insert(out, packed);
            }
            if needs_float {
                if plan.conds.contains_key(&node.inputs[0].node) {
                    self.copy(node.inputs[0].node)?;
                }
                self.copy(n)?;
            }
            return Ok(());
        }
        if let Some(pass) = plan.pass.get(&n) {
            if needs_packed {
                let input = *node
                    .inputs
                    .iter()
                    .find(|i| self.packed.contains_key(i))
                    .context("packed input missing")?;
                let packed = self.packed[&input];
                let result = match pass {
                    PassThrough::MaxPool(pool) => {
                        let name = self.new.unique_name(format!("{}.binary", node.name));
                        self.new.wire_node(name, pool.clone(), &[packed])?[0]
                    }
                    PassThrough::Scale | PassThrough::Reshape => packed,
                };
                self.packed.insert(out, result);
            }
            if needs_float {
                self.copy(n)?;
            }
            return Ok(());
        }
        self.copy(n)
    }

    /// The new-graph outlet of a float value of the source graph.
    fn float(&mut self, o: OutletId) -> TractResult<OutletId> {
        if let Some(id) = self.float.get(&o) {
            return Ok(*id);
        }
        let node = self.src.node(o.node);
        let Some(k) = node.outputs[o.slot].fact.konst.clone() else {
            bail!("internal: float value of '{}' is not available", node.name);
        };
        let name = self.new.unique_name(&node.name);
        let id = self.new.add_const(name, k)?;
        self.float.insert(o, id);
        Ok(id)
    }

    fn copy(&mut self, n: usize) -> TractResult<()> {
        let node = self.src.node(n);
        let inputs = node
            .inputs
            .iter()
            .map(|i| self.float(*i))
            .collect::<TractResult<TVec<_>>>()?;
        let name = self.new.unique_name(&node.name);
        let outs = self.new.wire_node(name, node.op.clone(), &inputs)?;
        for (slot, o) in outs.iter().enumerate() {
            self.float.insert(OutletId::new(n, slot), *o);
        }
        Ok(())
    }

    /// Packs the float value `x`: `[N, C, H, W]` as a feature map, anything else as rows.
    fn bitpack(&mut self, x: OutletId, name: &str) -> TractResult<OutletId> {
        let fact = self.src.outlet_fact(x)?.clone();
        let (batch, layout) = Layout::of_fact(&fact).context("bitpack input")?;
        let mut wire = self.float(x)?;
        if let Layout::Flat { k } = layout {
            if fact.rank() != 2 {
                let from = fact.shape.to_tvec();
                let to = tvec![batch.to_dim(), k.to_dim()];
                let rname = self.new.unique_name(format!("{name}.rows"));
                let op = AxisOp::Reshape(0, from, to);
                wire = self.new.wire_node(rname, op, &[wire])?[0];
            }
        }
        let pname = self.new.unique_name(format!("{name}.bitpack"));
        Ok(self.new.wire_node(pname, Bitpack, &[wire])?[0])
    }

    fn layer(&mut self, layer: &LayerPlan) -> TractResult<()> {
        let plan = self.plan;
        let src = self.src;
        let data = *self
            .packed
            .get(&layer.data)
            .context("packed input of a binary layer missing")?;
        let layout = plan.bvals[&layer.data].layout;
        let mul = tensor1(&layer.mul).into_arc_tensor();
        let bias = tensor1(&layer.bias).into_arc_tensor();
        let out_name = src.node(layer.out.node).name.clone();
        let out_fact = src.outlet_fact(layer.out)?.clone();
        // A float dense result [N, N_out] may need a reshape to the graph's shape: then the
        // reshape carries the source name (graph outputs keep their names).
        let reshaped = layer.output == OutputKind::Float
            && matches!(layer.kind, LayerKind::Dense { .. })
            && out_fact.rank() != 2;
        let op_name = if reshaped {
            self.new
                .unique_name(format!("{}.binary", src.node(layer.node).name))
        } else {
            self.new.unique_name(&out_name)
        };
        let wire = match &layer.kind {
            LayerKind::Conv { geometry, kernel } => {
                let g = geometry;
                let view = kernel.try_as_plain_ram()?;
                let packed = pack_conv_weights(
                    view.as_slice::<f32>()?,
                    g.c_out,
                    g.c_in,
                    g.kernel[0],
                    g.kernel[1],
                );
                let cw = g.in_words();
                let weights = tensor1(&packed)
                    .into_shape(&[g.c_out, g.kernel[0], g.kernel[1], cw])?
                    .into_arc_tensor();
                let op = BinaryConv2d::new(*g, weights, layer.output, mul, bias)?;
                self.new.wire_node(op_name, op, &[data])?[0]
            }
            LayerKind::Dense { weights } => {
                let (n_out, k) = (weights.shape()[0], weights.shape()[1]);
                let words = layout.row_words();
                let mut packed = vec![0u64; n_out * words];
                let view = weights.try_as_plain_ram()?;
                for (row, dst) in view
                    .as_slice::<f32>()?
                    .chunks_exact(k)
                    .zip(packed.chunks_exact_mut(words))
                {
                    for (i, &w) in row.iter().enumerate() {
                        let bit = layout.bit_of(i);
                        dst[bit / 64] |= sign_bit_f32(w) << (bit % 64);
                    }
                }
                let weights = tensor1(&packed)
                    .into_shape(&[n_out, words])?
                    .into_arc_tensor();
                let op = BinaryDense::new(k, weights, layer.output, mul, bias)?;
                self.new.wire_node(op_name, op, &[data])?[0]
            }
        };
        match layer.output {
            OutputKind::Float => {
                let got = self.new.outlet_fact(wire)?.shape.to_tvec();
                let want = out_fact.shape.to_tvec();
                let wire = if !reshaped {
                    ensure!(
                        got == want,
                        "binary layer gives {got:?}, the graph has {want:?}"
                    );
                    wire
                } else {
                    let name = self.new.unique_name(&out_name);
                    self.new
                        .wire_node(name, AxisOp::Reshape(0, got, want), &[wire])?[0]
                };
                self.float.insert(layer.out, wire);
            }
            OutputKind::Packed => {
                for s in src.outlet_successors(layer.out).iter() {
                    let b = plan.conds.get(&s.node).copied().unwrap_or(s.node);
                    self.packed.insert(OutletId::new(b, 0), wire);
                }
            }
        }
        Ok(())
    }
}
