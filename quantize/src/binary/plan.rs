//! Which nodes of the decluttered graph become binary ops, and in which form values travel.
//!
//! Three passes over tract's typed graph (eval order):
//!
//! 1. **forward**: binarisers ([`super::patterns::binariser`]) make *binary values*; a
//!    max-pool, a positive scalar `Mul` or a reshape of a binary value is still one (max-pool
//!    becomes the bitwise AND of `kestrel_binary_max_pool`). A `Conv` or `EinSum` (dense) whose
//!    data is a binary value and whose weights are ±α per output channel is a binary layer;
//!    the per-channel `Mul`/`Add` chain after it (what is left of a batch-norm) folds into its
//!    output stage.
//! 2. **backward**: which values are needed as floats (graph outputs, inputs of float ops)
//!    and which as packed bits (inputs of binary layers).
//! 3. **decisions**: a binary layer whose result is only binarised, by binarisers whose
//!    outputs are only needed packed, outputs packed bits (its threshold *is* the next
//!    binariser: consecutive binary layers never unpack); otherwise it outputs floats and a
//!    `kestrel_bitpack` packs what the next binary layer needs.

use std::collections::{HashMap, HashSet};

use kestrel_runtime::ops::bconv::{ConvGeometry, PadMode};
use kestrel_runtime::ops::bmaxpool::BinaryMaxPool;
use kestrel_runtime::ops::output_stage::{affine, OutputKind};
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::patterns::{
    binariser, konst, per_channel_affine, pm_alpha, positive_scalar_mul, Affine, Binariser,
    BinariserKind,
};

/// How the bits of a binary value are laid out once packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A feature map `[N, C, H, W]`, packed `[N, H, W, ⌈C/64⌉]`.
    Nchw {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A row of `k` values per batch item, packed `[N, ⌈k/64⌉]`.
    Flat {
        /// Values per row.
        k: usize,
    },
}

impl Layout {
    /// Values per batch item.
    pub fn volume(self) -> usize {
        match self {
            Layout::Nchw { c, h, w } => c * h * w,
            Layout::Flat { k } => k,
        }
    }

    /// Words per packed row (one batch item).
    pub fn row_words(self) -> usize {
        match self {
            Layout::Nchw { c, h, w } => h * w * c.div_ceil(64),
            Layout::Flat { k } => k.div_ceil(64),
        }
    }

    /// Bit position, in a packed row, of the value at row-major index `i` of the float
    /// tensor (batch axis excluded).
    pub fn bit_of(self, i: usize) -> usize {
        match self {
            Layout::Nchw { c, h, w } => {
                let (ci, y, x) = (i / (h * w), (i / w) % h, i % w);
                (y * w + x) * c.div_ceil(64) * 64 + ci
            }
            Layout::Flat { .. } => i,
        }
    }

    /// The layout of a float fact: rank 4 is NCHW, anything else a flat row per batch item
    /// (axis 0 is the batch for rank ≥ 2; a rank-1 value is one row).
    pub fn of_fact(fact: &TypedFact) -> Option<(usize, Layout)> {
        let dims = fact.shape.as_concrete()?;
        match dims.len() {
            4 => Some((
                dims[0],
                Layout::Nchw {
                    c: dims[1],
                    h: dims[2],
                    w: dims[3],
                },
            )),
            1 => Some((1, Layout::Flat { k: dims[0] })),
            0 => None,
            _ => Some((
                dims[0],
                Layout::Flat {
                    k: dims[1..].iter().product(),
                },
            )),
        }
    }
}

/// A binary value: `scale · b(x)` for some float `x`, `batch` items of `layout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BVal {
    /// Positive scale of the ±1 values.
    pub scale: f32,
    /// Batch size.
    pub batch: usize,
    /// Packed layout.
    pub layout: Layout,
}

/// Nodes that carry a binary value to another binary value.
#[derive(Debug, Clone)]
pub enum PassThrough {
    /// Max-pool: bitwise AND on packed bits.
    MaxPool(BinaryMaxPool),
    /// Multiplication by a positive scalar: only the scale changes.
    Scale,
    /// A reshape: the packed bits do not move.
    Reshape,
}

/// What a binary layer computes.
#[derive(Debug, Clone)]
pub enum LayerKind {
    /// Binary conv2d, weights `[C_out, C_in, KH, KW]` (±α).
    Conv {
        /// Geometry.
        geometry: ConvGeometry,
        /// The float ±α kernel.
        kernel: Arc<Tensor>,
    },
    /// Binary dense, weights `[N_out, K]` (±α) with K in the data's row-major order.
    Dense {
        /// The float ±α weights.
        weights: Arc<Tensor>,
    },
}

/// A layer to become a binary op.
#[derive(Debug, Clone)]
pub struct LayerPlan {
    /// The `Conv` / `EinSum` node.
    pub node: usize,
    /// Its binary data input.
    pub data: OutletId,
    /// Conv or dense.
    pub kind: LayerKind,
    /// Output multiplier per channel (`scale · α_c`, then the folded `Mul`s).
    pub mul: Vec<f32>,
    /// Output bias per channel (the layer's bias, then the folded `Mul`s and `Add`s).
    pub bias: Vec<f32>,
    /// The `Mul`/`Add` nodes folded into the output stage.
    pub folds: Vec<usize>,
    /// The value the layer stands for (output of the last folded node).
    pub out: OutletId,
    /// Packed or float output (decided in the last pass).
    pub output: OutputKind,
    /// Bit-MACs per inference.
    pub bit_macs: u64,
}

/// The whole plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// Binary values by outlet.
    pub bvals: HashMap<OutletId, BVal>,
    /// Binariser nodes.
    pub binarisers: HashMap<usize, Binariser>,
    /// Condition nodes (`x >= 0`) of select-style binarisers, only feeding them: node →
    /// binariser node. They are part of the binariser.
    pub conds: HashMap<usize, usize>,
    /// Pass-through nodes.
    pub pass: HashMap<usize, PassThrough>,
    /// Binary layers by node.
    pub layers: HashMap<usize, LayerPlan>,
    /// Nodes folded into a layer's output stage.
    pub folded: HashSet<usize>,
    /// Binarisers whose result is the packed output of the layer before them.
    pub absorbed: HashSet<usize>,
    /// Values needed as floats.
    pub needs_float: HashSet<OutletId>,
    /// Values needed as packed bits.
    pub needs_packed: HashSet<OutletId>,
    /// Warnings for the user (layer names included).
    pub warnings: Vec<String>,
}

/// Plans the binary conversion of a decluttered model.
pub fn plan(model: &TypedModel) -> TractResult<Plan> {
    let order = model.eval_order()?;
    let mut plan = Plan::default();
    forward(model, &order, &mut plan)?;
    plan.collect_folds();
    backward(model, &order, &mut plan)?;
    decide(model, &mut plan)?;
    Ok(plan)
}

fn forward(model: &TypedModel, order: &[usize], plan: &mut Plan) -> TractResult<()> {
    for &n in order {
        let node = model.node(n);
        if node.outputs.len() != 1 {
            continue;
        }
        let out = OutletId::new(n, 0);
        let fact = &node.outputs[0].fact;
        if let Some(b) = binariser(model, node) {
            if plan.bvals.contains_key(&b.input) {
                continue; // binarising a binary value: leave it to tract
            }
            if let Some((batch, layout)) = Layout::of_fact(fact) {
                if b.kind == BinariserKind::Select {
                    let cond = node.inputs[0].node;
                    if model.node(cond).outputs[0].successors.len() == 1 {
                        plan.conds.insert(cond, n);
                    }
                }
                plan.binarisers.insert(n, b);
                plan.bvals.insert(
                    out,
                    BVal {
                        scale: b.scale,
                        batch,
                        layout,
                    },
                );
            }
            continue;
        }
        // Everything below consumes a binary value.
        let Some((&input, bval)) = node
            .inputs
            .iter()
            .find_map(|i| plan.bvals.get(i).map(|b| (i, *b)))
        else {
            continue;
        };
        if let Some(layer) = binary_layer(model, node, input, bval)? {
            plan.layers.insert(n, layer);
            continue;
        }
        if let Some(s) = positive_scalar_mul(model, node, input) {
            plan.pass.insert(n, PassThrough::Scale);
            plan.bvals.insert(
                out,
                BVal {
                    scale: bval.scale * s,
                    ..bval
                },
            );
        } else if let Some(pool) = binary_max_pool(model, node, bval)? {
            let (batch, layout) = Layout::of_fact(fact).context("max-pool output")?;
            plan.pass.insert(n, PassThrough::MaxPool(pool));
            plan.bvals.insert(
                out,
                BVal {
                    batch,
                    layout,
                    ..bval
                },
            );
        } else if let Some(op) = node.op_as::<AxisOp>() {
            let volume_kept = fact
                .shape
                .as_concrete()
                .is_some_and(|d| d.iter().product::<usize>() == bval.batch * bval.layout.volume());
            let batch_kept = match fact.shape.as_concrete() {
                Some(d) if d.len() >= 2 => d[0] == bval.batch,
                _ => bval.batch == 1,
            };
            if !matches!(op, AxisOp::Move(..)) && volume_kept && batch_kept {
                plan.pass.insert(n, PassThrough::Reshape);
                plan.bvals.insert(out, bval);
            }
        }
    }
    Ok(())
}

fn binary_max_pool(
    model: &TypedModel,
    node: &TypedNode,
    bval: BVal,
) -> TractResult<Option<BinaryMaxPool>> {
    let Some(op) = node.op_as::<MaxPool>() else {
        return Ok(None);
    };
    let Layout::Nchw { h, w, .. } = bval.layout else {
        return Ok(None);
    };
    let spec = &op.pool_spec;
    if op.with_index_outputs.is_some()
        || spec.data_format != DataFormat::NCHW
        || spec.kernel_shape.len() != 2
        || spec.dilations().iter().any(|d| *d != 1)
        || model.outlet_fact(node.inputs[0])?.rank() != 4
    {
        return Ok(None);
    }
    let Some(padding) = explicit_padding(spec, h, w) else {
        return Ok(None);
    };
    let strides = spec.strides();
    let Ok(pool) = BinaryMaxPool::new(
        [spec.kernel_shape[0], spec.kernel_shape[1]],
        [strides[0], strides[1]],
        padding,
    ) else {
        return Ok(None);
    };
    // The op's own output size must be the graph's (ceil-mode pools differ: stay float).
    let want = node.outputs[0].fact.shape.as_concrete().map(|d| d.to_vec());
    let [pt, pl, pb, pr] = padding;
    let oh = (h + pt + pb)
        .checked_sub(spec.kernel_shape[0])
        .map(|r| r / strides[0] + 1);
    let ow = (w + pl + pr)
        .checked_sub(spec.kernel_shape[1])
        .map(|r| r / strides[1] + 1);
    match (want, oh, ow) {
        (Some(d), Some(oh), Some(ow)) if d[2] == oh && d[3] == ow => Ok(Some(pool)),
        _ => Ok(None),
    }
}

/// Top, left, bottom, right padding of a 2-D pool spec on an `h × w` input.
fn explicit_padding(spec: &PoolSpec, h: usize, w: usize) -> Option<[usize; 4]> {
    if matches!(spec.padding, PaddingSpec::ExplicitOnnxPool(_, _, true)) {
        return None;
    }
    let p = spec.computed_padding(&[h, w]);
    Some([
        p[0].pad_before,
        p[1].pad_before,
        p[0].pad_after,
        p[1].pad_after,
    ])
}

fn binary_layer(
    model: &TypedModel,
    node: &TypedNode,
    data: OutletId,
    bval: BVal,
) -> TractResult<Option<LayerPlan>> {
    let made = if let Some(conv) = node.op_as::<Conv>() {
        binary_conv(model, node, conv, data, bval)?
    } else if let Some(einsum) = node.op_as::<EinSum>() {
        binary_dense(model, node, einsum, data, bval)?
    } else {
        None
    };
    let Some((kind, alpha, bias, channel_axis, bit_macs)) = made else {
        return Ok(None);
    };
    let mut mul: Vec<f64> = alpha
        .iter()
        .map(|a| *a as f64 * bval.scale as f64)
        .collect();
    let mut bias: Vec<f64> = bias.iter().map(|b| *b as f64).collect();
    // Fold the per-channel Mul/Add chain that follows.
    let channels = mul.len();
    let mut out = OutletId::new(node.id, 0);
    let mut folds = vec![];
    loop {
        let succ = &model.node(out.node).outputs[out.slot].successors;
        if succ.len() != 1 || model.output_outlets()?.contains(&out) {
            break;
        }
        let next = model.node(succ[0].node);
        match per_channel_affine(model, next, out, channel_axis, channels) {
            Some(Affine::Mul(k)) => {
                for c in 0..channels {
                    mul[c] *= k[c] as f64;
                    bias[c] *= k[c] as f64;
                }
            }
            Some(Affine::Add(k)) => {
                for c in 0..channels {
                    bias[c] += k[c] as f64;
                }
            }
            None => break,
        }
        folds.push(next.id);
        out = OutletId::new(next.id, 0);
    }
    Ok(Some(LayerPlan {
        node: node.id,
        data,
        kind,
        mul: mul.iter().map(|v| *v as f32).collect(),
        bias: bias.iter().map(|v| *v as f32).collect(),
        folds,
        out,
        output: OutputKind::Float,
        bit_macs,
    }))
}

type Made = Option<(LayerKind, Vec<f32>, Vec<f32>, usize, u64)>;

fn binary_conv(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
    data: OutletId,
    bval: BVal,
) -> TractResult<Made> {
    let spec = &conv.pool_spec;
    let Layout::Nchw { c, h, w } = bval.layout else {
        return Ok(None);
    };
    if node.inputs[0] != data
        || conv.q_params.is_some()
        || conv.group != 1
        || conv.kernel_fmt != KernelFormat::OIHW
        || spec.data_format != DataFormat::NCHW
        || spec.kernel_shape.len() != 2
        || model.outlet_fact(data)?.rank() != 4
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let (Some(kernel), Some(bias)) = (konst(model, node.inputs[1]), konst(model, node.inputs[2]))
    else {
        return Ok(None);
    };
    let Some(alpha) = pm_alpha(&kernel, 0) else {
        return Ok(None);
    };
    let c_out = kernel.shape()[0];
    let bias = per_channel_values(&bias, c_out)?;
    let Some(bias) = bias else { return Ok(None) };
    let Some(padding) = explicit_padding(spec, h, w) else {
        return Ok(None);
    };
    let (strides, dilations) = (spec.strides(), spec.dilations());
    let geometry = ConvGeometry {
        c_in: c,
        c_out,
        kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
        stride: [strides[0], strides[1]],
        dilation: [dilations[0], dilations[1]],
        padding,
        pad_mode: PadMode::Zero,
    };
    let Ok((oh, ow)) = geometry.output_size(h, w) else {
        return Ok(None);
    };
    let out = node.outputs[0].fact.shape.as_concrete().map(|d| d.to_vec());
    if out != Some(vec![bval.batch, c_out, oh, ow]) || kernel.shape()[1] != c {
        return Ok(None);
    }
    let bit_macs = (bval.batch * c_out * oh * ow * geometry.taps_bits()) as u64;
    Ok(Some((
        LayerKind::Conv { geometry, kernel },
        alpha,
        bias,
        1,
        bit_macs,
    )))
}

/// A bias constant as one value per channel (a scalar is broadcast).
fn per_channel_values(t: &Tensor, channels: usize) -> TractResult<Option<Vec<f32>>> {
    let t = t.cast_to::<f32>()?;
    let view = t.try_as_plain_ram()?;
    let v = view.as_slice::<f32>()?;
    Ok(match v.len() {
        1 => Some(vec![v[0]; channels]),
        n if n == channels => Some(v.to_vec()),
        _ => None,
    })
}

fn binary_dense(
    model: &TypedModel,
    node: &TypedNode,
    op: &EinSum,
    data: OutletId,
    bval: BVal,
) -> TractResult<Made> {
    if op.q_params.is_some() || node.inputs.len() != 2 || op.operating_dt != f32::datum_type() {
        return Ok(None);
    }
    let (ds, ws) = if node.inputs[0] == data {
        (0, 1)
    } else {
        (1, 0)
    };
    if node.inputs[ds] != data {
        return Ok(None);
    }
    let Some(weights) = konst(model, node.inputs[ws]) else {
        return Ok(None);
    };
    let axes = &op.axes;
    let chars = |io: InOut| -> TractResult<Vec<char>> {
        (0..axes.rank(io))
            .map(|i| Ok(axes.axis((io, i))?.repr))
            .collect()
    };
    let (dc, wc, oc) = (
        chars(InOut::In(ds))?,
        chars(InOut::In(ws))?,
        chars(InOut::Out(0))?,
    );
    let data_fact = model.outlet_fact(data)?;
    let Some(ddims) = data_fact.shape.as_concrete() else {
        return Ok(None);
    };
    // Batch axis: axis 0 of a rank ≥ 2 data tensor when the weights do not have it.
    let batch_axis = (dc.len() >= 2 && !wc.contains(&dc[0])).then_some(dc[0]);
    let contracted: Vec<char> = dc
        .iter()
        .copied()
        .filter(|c| Some(*c) != batch_axis)
        .collect();
    let outs: Vec<char> = wc.iter().copied().filter(|c| !dc.contains(c)).collect();
    let [n_axis] = outs[..] else { return Ok(None) };
    let ok = contracted.iter().all(|c| wc.contains(c) && !oc.contains(c))
        && wc.len() == contracted.len() + 1
        && oc.contains(&n_axis)
        && oc.iter().all(|c| *c == n_axis || Some(*c) == batch_axis)
        && match batch_axis {
            Some(b) => ddims[0] == bval.batch && (oc.contains(&b) || bval.batch == 1),
            None => bval.batch == 1,
        };
    // Output order must be (batch, n) or (n): the dense op writes [N, N_out].
    let n_pos = oc.iter().position(|c| *c == n_axis);
    if !ok || n_pos.is_none() || (oc.len() == 2 && oc[1] != n_axis) {
        return Ok(None);
    }
    let k: usize = ddims
        .iter()
        .zip(&dc)
        .filter(|(_, c)| Some(**c) != batch_axis)
        .map(|(d, _)| *d)
        .product();
    if k != bval.layout.volume() {
        return Ok(None);
    }
    // Weights as [n, contracted axes in the data's order].
    let perm: Vec<usize> = std::iter::once(n_axis)
        .chain(contracted.iter().copied())
        .map(|c| wc.iter().position(|x| *x == c).unwrap())
        .collect();
    let w = weights.cast_to::<f32>()?.into_owned().permute_axes(&perm)?;
    let n_out = w.shape()[0];
    let w = w.into_shape(&[n_out, k])?;
    let Some(alpha) = pm_alpha(&w, 0) else {
        return Ok(None);
    };
    let bit_macs = (bval.batch * n_out * k) as u64;
    Ok(Some((
        LayerKind::Dense {
            weights: w.into_arc_tensor(),
        },
        alpha,
        vec![0.0; n_out],
        n_pos.unwrap(),
        bit_macs,
    )))
}

fn backward(model: &TypedModel, order: &[usize], plan: &mut Plan) -> TractResult<()> {
    for o in model.output_outlets()? {
        plan.needs_float.insert(*o);
    }
    for &n in order.iter().rev() {
        let node = model.node(n);
        let out = OutletId::new(n, 0);
        if plan.folded_node(n) || plan.conds.contains_key(&n) {
            continue;
        }
        if let Some(layer) = plan.layers.get(&n) {
            plan.needs_packed.insert(layer.data);
        } else if let Some(b) = plan.binarisers.get(&n) {
            if plan.needs_float.contains(&out) {
                plan.needs_float.insert(b.input);
            }
        } else if plan.pass.contains_key(&n) {
            let input = *node
                .inputs
                .iter()
                .find(|i| plan.bvals.contains_key(i))
                .context("pass-through without binary input")?;
            if plan.needs_float.contains(&out) {
                plan.needs_float.insert(input);
            }
            if plan.needs_packed.contains(&out) {
                plan.needs_packed.insert(input);
            }
        } else {
            for i in &node.inputs {
                plan.needs_float.insert(*i);
            }
        }
    }
    Ok(())
}

fn decide(model: &TypedModel, plan: &mut Plan) -> TractResult<()> {
    let layer_by_out: HashMap<OutletId, usize> =
        plan.layers.values().map(|l| (l.out, l.node)).collect();
    // Binarisers needed packed: absorbed by the layer before them, or packed from floats.
    let mut packs_floats = vec![];
    for (&n, b) in &plan.binarisers {
        if !plan.needs_packed.contains(&OutletId::new(n, 0)) {
            continue;
        }
        let absorbable =
            layer_by_out.contains_key(&b.input) && !plan.needs_float.contains(&b.input);
        if !absorbable {
            packs_floats.push(b.input);
        }
    }
    plan.needs_float.extend(packs_floats);
    let mut absorbed = HashSet::new();
    let mut warnings = vec![];
    for layer in plan.layers.values_mut() {
        let succ = &model.outlet_successors(layer.out);
        let binarising = |s: &InletId| plan.conds.get(&s.node).copied().unwrap_or(s.node);
        let packed = !plan.needs_float.contains(&layer.out)
            && !succ.is_empty()
            && succ.iter().all(|s| {
                let b = binarising(s);
                plan.binarisers
                    .get(&b)
                    .is_some_and(|b| b.input == layer.out)
                    && plan.needs_packed.contains(&OutletId::new(binarising(s), 0))
            });
        if !packed {
            continue;
        }
        layer.output = OutputKind::Packed;
        for s in succ.iter() {
            let b = binarising(s);
            absorbed.insert(s.node);
            absorbed.insert(b);
            if plan.binarisers[&b].kind == BinariserKind::Sign {
                let name = &model.node(layer.node).name;
                let k = match &layer.kind {
                    LayerKind::Conv { geometry, .. } => geometry.taps_bits(),
                    LayerKind::Dense { weights } => weights.shape()[1],
                } as i32;
                if let Some((c, d)) = exact_zero(&layer.mul, &layer.bias, k) {
                    warnings.push(format!(
                        "layer '{name}': channel {c} is exactly 0 when its dot product is {d}; \
                         ONNX Sign(0) = 0 there but Kestrel binarises 0 to +1"
                    ));
                }
            }
        }
    }
    plan.absorbed = absorbed;
    // Sign on a float value that can be exactly 0 (graph inputs, ReLU/Clip/Max outputs).
    for (&n, b) in &plan.binarisers {
        if b.kind != BinariserKind::Sign || plan.absorbed.contains(&n) {
            continue;
        }
        let producer = model.node(b.input.node);
        let op = producer.op.name();
        if ["Source", "Max", "Min", "Clip", "Relu"].contains(&op.as_ref()) {
            warnings.push(format!(
                "'{}': Sign of the output of '{}' ({op}), which can be exactly 0: ONNX Sign(0) = 0 \
                 but Kestrel binarises 0 to +1",
                model.node(n).name,
                producer.name
            ));
        }
    }
    warnings.sort();
    plan.warnings = warnings;
    Ok(())
}

/// A channel and an integer dot product in `[-k, k]` at which `mul·dot + bias` is exactly 0.
fn exact_zero(mul: &[f32], bias: &[f32], k: i32) -> Option<(usize, i32)> {
    for (c, (&m, &b)) in mul.iter().zip(bias).enumerate() {
        if m == 0.0 {
            if b == 0.0 {
                return Some((c, 0));
            }
            continue;
        }
        let guess = (-(b as f64) / m as f64).round() as i64;
        for d in guess - 1..=guess + 1 {
            if d.abs() <= k as i64 && affine(m, b, d as i32) == 0.0 {
                return Some((c, d as i32));
            }
        }
    }
    None
}

impl Plan {
    /// True for a node folded into a layer's output stage.
    pub fn folded_node(&self, n: usize) -> bool {
        self.folded.contains(&n)
    }

    /// Fills [`Plan::folded`] from the layers (called by [`plan`] between passes).
    fn collect_folds(&mut self) {
        self.folded = self.layers.values().flat_map(|l| l.folds.clone()).collect();
    }
}
