//! Cross-layer equalization with bias absorption (Nagel et al., "Data-Free Quantization
//! Through Weight Equalization and Bias Correction", ICCV 2019), for the tensor that int8 here
//! actually quantizes per tensor: the input of an int8 layer.
//!
//! A pair is a producer layer `P` (any conv or dense layer, float or int8) whose only reader is
//! a consumer layer `C` that is quantized. Between them, channel `i` of the activation `x` is
//! rewritten as `x'ᵢ = (xᵢ − cᵢ) / sᵢ`:
//! - `P`'s output channel `i` is divided by `sᵢ` (weights and bias) and its bias shifted by
//!   `−cᵢ/sᵢ`; a ReLU commutes with a positive scale, a clip `min(·, hi)` becomes the
//!   per-channel clip `(hi − cᵢ)/sᵢ`;
//! - `C`'s input column `i` is multiplied by `sᵢ`, and `Σᵢ C[o, i]·cᵢ` is added to its bias.
//!
//! The scale is exact. The shift (*bias absorption*) is exact for a linear `P`; after a ReLU
//! it is exact while `P`'s pre-activation stays ≥ `cᵢ`, so `cᵢ` is the smallest value channel
//! `i` took on the calibration samples less a margin (`ABSORB_MARGIN`; Nagel et al. use
//! `β − 3γ` from batch-norm statistics for the same purpose), and only channels that never
//! came near 0 move. A shift needs a
//! consumer without zero padding (a 1×1 convolution or a dense layer): padding would read
//! `x' = 0`, i.e. `x = cᵢ`.
//!
//! Why the scale `sᵢ = √(rᵢ / wᵢ)` (`rᵢ` the channel's range after the shift, `wᵢ` the largest
//! |weight| of `C`'s column `i`): with per-channel weight scales, `P`'s own weight grid does not
//! change when its output channels are scaled, so what the scale trades is the one step of the
//! per-tensor activation against the per-output-channel steps of `C`'s weights. At
//! `sᵢ = √(rᵢ/wᵢ)` channel `i`'s activation range and weight column range both become
//! `√(rᵢ·wᵢ)`: CLE's geometric mean applied to the pair of ranges that are quantized (the same
//! balance as SmoothQuant's α = ½). A channel with a range 100× its neighbours' no longer sets
//! the step that rounds them all to a handful of codes.
//!
//! Not equalized (left as they are, logged at debug level): a producer read by more than one
//! node (a residual `Add` and a branch: scaling it would change the other reader), a producer
//! that is int8 with a clip (its output stage clamps with one bound for all channels), a
//! depthwise or grouped consumer, and axes that do not line up.

use std::collections::HashMap;

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::math;

use super::layers::{Layer, LayerOp};
use super::observe::Watcher;

/// Scales are kept within `[1/LIMIT, LIMIT]`: a dead channel (range 0) or an all-zero weight
/// column would otherwise ask for 0 or ∞.
const LIMIT: f32 = 1e4;

/// After a ReLU, the offset absorbed is the channel's calibration minimum less this share of
/// its range: inputs unlike the calibration ones may dip a little lower, and a value below the
/// offset is where absorption is not exact (the role of the 3σ in Nagel et al.'s `β − 3γ`).
const ABSORB_MARGIN: f32 = 0.1;

/// One equalized producer → consumer pair, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    /// The producer layer.
    pub producer: String,
    /// The consumer layer.
    pub consumer: String,
    /// Channels between them.
    pub channels: usize,
    /// Channels whose offset moved into the consumer's bias.
    pub shifted: usize,
    /// Largest / median channel range of the activation, before.
    pub act_spread_before: f32,
    /// The same, after.
    pub act_spread_after: f32,
    /// Largest / median column range of the consumer's weights, before.
    pub weight_spread_before: f32,
    /// The same, after.
    pub weight_spread_after: f32,
}

/// A pair found in the graph, before measuring.
#[derive(Debug, Clone)]
struct Candidate {
    producer: usize,
    consumer: usize,
    /// Axis of the consumer's weights that holds its input channels.
    weight_in_axis: usize,
    /// The consumer reads without zero padding, so a shift can be absorbed.
    can_shift: bool,
}

/// The equalized float graph (same function, same layer names) and what moved.
pub struct Equalized {
    /// The graph, to find layers in and calibrate again.
    pub graph: TypedModel,
    /// The pairs equalized.
    pub pairs: Vec<PairReport>,
}

/// Per-channel min and max of one tensor over samples.
#[derive(Debug, Clone)]
struct ChannelRange {
    lo: Vec<f32>,
    hi: Vec<f32>,
}

/// Equalizes every pair of `layers` whose consumer `quantized` says is int8, with ranges
/// measured on `samples`. `None` when no pair qualifies.
pub fn equalize(
    float: &TypedModel,
    layers: &[Layer],
    quantized: &dyn Fn(&Layer) -> bool,
    samples: &[Tensor],
    threads: usize,
) -> TractResult<Option<Equalized>> {
    let candidates = candidates(float, layers, quantized)?;
    if candidates.is_empty() {
        return Ok(None);
    }
    let watched: Vec<OutletId> = candidates
        .iter()
        .map(|c| layers[c.producer].output)
        .collect();
    let ranges = channel_ranges(float, &watched, layers, &candidates, samples, threads)?;
    let mut weights: Vec<Option<(Tensor, Vec<f32>)>> = vec![None; layers.len()];
    let mut clips: HashMap<usize, Vec<f32>> = HashMap::new();
    let mut pairs = vec![];
    for (cand, range) in candidates.iter().zip(&ranges) {
        let (p, c) = (&layers[cand.producer], &layers[cand.consumer]);
        let n = p.channels();
        // Shift: a linear producer's channels are centred; after a ReLU, channels that never
        // reached 0 move down to it.
        let shift: Vec<f32> = (0..n)
            .map(|i| match (cand.can_shift, p.relu.is_some()) {
                (false, _) => 0.0,
                (true, true) => {
                    (range.lo[i] - ABSORB_MARGIN * (range.hi[i] - range.lo[i])).max(0.0)
                }
                (true, false) => (range.lo[i] + range.hi[i]) / 2.0,
            })
            .collect();
        let r: Vec<f32> = (0..n)
            .map(|i| (range.hi[i] - shift[i]).max(shift[i] - range.lo[i]))
            .collect();
        let w = column_ranges(&c.weights, cand.weight_in_axis)?;
        let (r_max, w_max) = (max(&r), max(&w));
        if r_max <= 0.0 || w_max <= 0.0 {
            continue;
        }
        let scale: Vec<f32> = r
            .iter()
            .zip(&w)
            .map(|(r, w)| {
                if *r <= 0.0 {
                    1.0 // a dead channel: nothing to balance
                } else if *w <= 0.0 {
                    LIMIT // nobody reads it: out of the way of the others
                } else {
                    ((r / w) * (w_max / r_max)).sqrt().clamp(1.0 / LIMIT, LIMIT)
                }
            })
            .collect();
        let r_after: Vec<f32> = r.iter().zip(&scale).map(|(r, s)| r / s).collect();
        let w_after: Vec<f32> = w.iter().zip(&scale).map(|(w, s)| w * s).collect();
        // Consumer: columns × s, bias + W·c (with the consumer's weights before this scale).
        let (cw, cb) = weights[cand.consumer]
            .take()
            .unwrap_or_else(|| (c.weights.clone(), c.bias.clone()));
        let absorbed = absorb(&cw, c.weight_out_axis, cand.weight_in_axis, &shift)?;
        let cw = scale_axis(&cw, cand.weight_in_axis, &scale)?;
        let cb: Vec<f32> = cb.iter().zip(&absorbed).map(|(b, a)| b + a).collect();
        weights[cand.consumer] = Some((cw, cb));
        // Producer: output channels ÷ s, bias (b − c)/s, clip (hi − c)/s per channel.
        let (pw, pb) = weights[cand.producer]
            .take()
            .unwrap_or_else(|| (p.weights.clone(), p.bias.clone()));
        let inverse: Vec<f32> = scale.iter().map(|s| 1.0 / s).collect();
        let pw = scale_axis(&pw, p.weight_out_axis, &inverse)?;
        let pb: Vec<f32> = (0..n).map(|i| (pb[i] - shift[i]) / scale[i]).collect();
        weights[cand.producer] = Some((pw, pb));
        if let Some(Some(hi)) = p.relu {
            clips.insert(
                cand.producer,
                (0..n).map(|i| (hi - shift[i]) / scale[i]).collect(),
            );
        }
        pairs.push(PairReport {
            producer: p.name.clone(),
            consumer: c.name.clone(),
            channels: n,
            shifted: shift.iter().filter(|c| **c != 0.0).count(),
            act_spread_before: spread(&range_widths(range)),
            act_spread_after: spread(&r_after),
            weight_spread_before: spread(&w),
            weight_spread_after: spread(&w_after),
        });
    }
    if pairs.is_empty() {
        return Ok(None);
    }
    let graph = rebuild(float, layers, &weights, &clips)?;
    Ok(Some(Equalized { graph, pairs }))
}

/// The producer → consumer pairs of `layers` that can be equalized exactly.
fn candidates(
    model: &TypedModel,
    layers: &[Layer],
    quantized: &dyn Fn(&Layer) -> bool,
) -> TractResult<Vec<Candidate>> {
    let by_input: HashMap<OutletId, Vec<usize>> =
        layers
            .iter()
            .enumerate()
            .fold(HashMap::new(), |mut m, (ix, l)| {
                m.entry(l.input).or_default().push(ix);
                m
            });
    let mut found = vec![];
    for (pi, p) in layers.iter().enumerate() {
        let Some(readers) = by_input.get(&p.output) else {
            continue;
        };
        let why_not = |why: &str| {
            log::debug!("equalization: '{}' left as is: {why}", p.name);
        };
        let successors = model.outlet_successors(p.output);
        if model.outputs.contains(&p.output) || successors.len() != 1 || readers.len() != 1 {
            why_not("its output has other readers (a residual sum or a branch)");
            continue;
        }
        let ci = readers[0];
        let c = &layers[ci];
        if !quantized(c) {
            continue;
        }
        if quantized(p) && matches!(p.relu, Some(Some(_))) {
            why_not("an int8 producer with a clip (one bound for every channel)");
            continue;
        }
        let Some((in_axis, weight_in_axis, can_shift)) = consumer_axes(model, c)? else {
            why_not("its reader is grouped, or its axes are not a plain channel contraction");
            continue;
        };
        if in_axis != p.channel_axis || c.weights.shape()[weight_in_axis] != p.channels() {
            why_not("the channel axes of producer and consumer do not line up");
            continue;
        }
        found.push(Candidate {
            producer: pi,
            consumer: ci,
            weight_in_axis,
            can_shift,
        });
    }
    Ok(found)
}

/// For a consumer layer: the channel axis of its input tensor, the axis of its weights holding
/// input channels, and whether it reads without zero padding. `None` for grouped convolutions
/// and products that are not one contraction of the input's channel axis.
fn consumer_axes(model: &TypedModel, c: &Layer) -> TractResult<Option<(usize, usize, bool)>> {
    match &c.op {
        LayerOp::Conv(conv) => {
            if conv.group != 1 {
                return Ok(None);
            }
            let shape = model.outlet_fact(c.input)?.shape.to_tvec();
            let c_axis = conv.pool_spec.data_format.shape(shape)?.c_axis();
            let unit = conv.pool_spec.kernel_shape.iter().all(|k| *k == 1);
            Ok(Some((c_axis, 1, unit)))
        }
        LayerOp::EinSum(axes) => {
            let mut found = None;
            for axis in axes.iter_all_axes() {
                if axis.inputs[1].len() == 1
                    && axis.inputs[0].len() == 1
                    && axis.outputs[0].is_empty()
                {
                    if found.is_some() {
                        return Ok(None);
                    }
                    found = Some((axis.inputs[0][0], axis.inputs[1][0]));
                }
            }
            Ok(found.map(|(x, w)| (x, w, true)))
        }
    }
}

/// Per-channel min and max of each watched producer output over `samples`.
fn channel_ranges(
    float: &TypedModel,
    watched: &[OutletId],
    layers: &[Layer],
    candidates: &[Candidate],
    samples: &[Tensor],
    threads: usize,
) -> TractResult<Vec<ChannelRange>> {
    let watcher = Watcher::new(float, watched, threads)?;
    let mut ranges: Vec<ChannelRange> = candidates
        .iter()
        .map(|c| {
            let n = layers[c.producer].channels();
            ChannelRange {
                lo: vec![f32::INFINITY; n],
                hi: vec![f32::NEG_INFINITY; n],
            }
        })
        .collect();
    for s in samples {
        let (_, tensors) = watcher.run(s)?;
        for ((range, t), cand) in ranges.iter_mut().zip(&tensors).zip(candidates) {
            let axis = layers[cand.producer].channel_axis;
            let view = t.to_plain_array_view::<f32>()?;
            for (i, lane) in view.axis_iter(tract_ndarray::Axis(axis)).enumerate() {
                for v in lane.iter() {
                    range.lo[i] = range.lo[i].min(*v);
                    range.hi[i] = range.hi[i].max(*v);
                }
            }
        }
    }
    for r in &mut ranges {
        for (lo, hi) in r.lo.iter_mut().zip(r.hi.iter_mut()) {
            if !lo.is_finite() || !hi.is_finite() {
                (*lo, *hi) = (0.0, 0.0);
            }
        }
    }
    Ok(ranges)
}

/// The largest |value| of each slice of `weights` along `axis`.
fn column_ranges(weights: &Tensor, axis: usize) -> TractResult<Vec<f32>> {
    let view = weights.to_plain_array_view::<f32>()?;
    Ok(view
        .axis_iter(tract_ndarray::Axis(axis))
        .map(|lane| lane.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect())
}

/// `weights` with slice `i` along `axis` multiplied by `factors[i]`.
fn scale_axis(weights: &Tensor, axis: usize, factors: &[f32]) -> TractResult<Tensor> {
    let mut w = weights.clone();
    let mut view = w.to_plain_array_view_mut::<f32>()?;
    for (i, mut lane) in view.axis_iter_mut(tract_ndarray::Axis(axis)).enumerate() {
        lane.mapv_inplace(|v| v * factors[i]);
    }
    Ok(w)
}

/// Per output channel `o`: `Σ W[o, i, …]·shift[i]` (what a constant input `shift` adds).
fn absorb(
    weights: &Tensor,
    out_axis: usize,
    in_axis: usize,
    shift: &[f32],
) -> TractResult<Vec<f32>> {
    let view = weights.to_plain_array_view::<f32>()?;
    Ok(view
        .axis_iter(tract_ndarray::Axis(out_axis))
        .map(|w_o| {
            // `in_axis` counted in the full tensor; one axis fewer once `out_axis` is gone.
            let axis = if in_axis > out_axis {
                in_axis - 1
            } else {
                in_axis
            };
            w_o.axis_iter(tract_ndarray::Axis(axis))
                .zip(shift)
                .map(|(lane, c)| lane.iter().map(|w| (*w as f64) * (*c as f64)).sum::<f64>())
                .sum::<f64>() as f32
        })
        .collect())
}

fn max(v: &[f32]) -> f32 {
    v.iter().copied().fold(0f32, f32::max)
}

fn range_widths(r: &ChannelRange) -> Vec<f32> {
    r.lo.iter()
        .zip(&r.hi)
        .map(|(lo, hi)| hi.max(0.0) - lo.min(0.0))
        .collect()
}

/// Largest / median of the non-zero values (1 when there are none).
fn spread(v: &[f32]) -> f32 {
    let mut nz: Vec<f32> = v.iter().copied().filter(|x| *x > 0.0).collect();
    if nz.is_empty() {
        return 1.0;
    }
    nz.sort_by(f32::total_cmp);
    nz[nz.len() - 1] / nz[nz.len() / 2]
}

/// `float` with every layer in `weights` re-emitted from its new weights and bias (its
/// batch-norm nodes already folded into them), its ReLU, and a clip per channel where
/// `clips` has one. Head nodes keep their names, so layer names (and `--keep-float` lists)
/// still apply.
fn rebuild(
    float: &TypedModel,
    layers: &[Layer],
    weights: &[Option<(Tensor, Vec<f32>)>],
    clips: &HashMap<usize, Vec<f32>>,
) -> TractResult<TypedModel> {
    let by_output: HashMap<usize, usize> = layers
        .iter()
        .enumerate()
        .filter(|(ix, _)| weights[*ix].is_some())
        .map(|(ix, l)| (l.output.node, ix))
        .collect();
    let absorbed: std::collections::HashSet<usize> = by_output
        .values()
        .flat_map(|ix| layers[*ix].nodes.iter().copied())
        .filter(|n| !by_output.contains_key(n))
        .collect();
    let mut dst = TypedModel::default();
    let mut map: HashMap<OutletId, OutletId> = HashMap::new();
    for id in float.eval_order()? {
        let node = float.node(id);
        if let Some(&ix) = by_output.get(&id) {
            let layer = &layers[ix];
            let (w, b) = weights[ix].as_ref().expect("filtered on Some");
            let out = emit(&mut dst, float, &map, layer, w, b, clips.get(&ix))
                .with_context(|| format!("equalizing layer '{}'", layer.name))?;
            map.insert(layer.output, out);
            continue;
        }
        if absorbed.contains(&id) {
            continue;
        }
        let outputs = if float.inputs.iter().any(|i| i.node == id) {
            tvec!(dst.add_source(&node.name, node.outputs[0].fact.clone())?)
        } else {
            let inputs = node
                .inputs
                .iter()
                .map(|i| map.get(i).copied().context("input not computed"))
                .collect::<TractResult<TVec<_>>>()?;
            dst.wire_node(&node.name, node.op.clone(), &inputs)?
        };
        for (ix, o) in outputs.into_iter().enumerate() {
            map.insert(OutletId::new(id, ix), o);
        }
    }
    let outputs = float
        .outputs
        .iter()
        .map(|o| map.get(o).copied().context("output not computed"))
        .collect::<TractResult<Vec<_>>>()?;
    dst.select_output_outlets(&outputs)?;
    dst.inputs = float
        .inputs
        .iter()
        .map(|i| map.get(i).copied().context("input not computed"))
        .collect::<TractResult<Vec<_>>>()?;
    Ok(dst)
}

/// Wires one layer: head (`Conv` with its bias input, or `EinSum` + a per-channel `Add`),
/// then `Max(·, 0)` and `Min(·, clip)` as the layer had them.
fn emit(
    dst: &mut TypedModel,
    float: &TypedModel,
    map: &HashMap<OutletId, OutletId>,
    layer: &Layer,
    weights: &Tensor,
    bias: &[f32],
    clip: Option<&Vec<f32>>,
) -> TractResult<OutletId> {
    let input = *map.get(&layer.input).context("layer input not computed")?;
    let name = &layer.name;
    let konst = |dst: &mut TypedModel, suffix: &str, t: Tensor| -> TractResult<OutletId> {
        let n = dst.unique_name(format!("{name}.{suffix}")).to_string();
        dst.add_const(n, t)
    };
    let mut out = match &layer.op {
        LayerOp::Conv(conv) => {
            let k = konst(dst, "eq_kernel", weights.clone())?;
            let b = konst(dst, "eq_bias", tensor1(bias))?;
            let op: Conv = conv.as_ref().clone();
            dst.wire_node(name, op, &[input, k, b])?[0]
        }
        LayerOp::EinSum(_) => {
            let head = float.node_by_name(name)?;
            let k = konst(dst, "eq_weights", weights.clone())?;
            let raw = dst.wire_node(name, head.op.clone(), &[input, k])?[0];
            let b = konst(
                dst,
                "eq_bias",
                per_channel(dst, raw, layer.channel_axis, bias)?,
            )?;
            let n = dst.unique_name(format!("{name}.eq_bias_add")).to_string();
            dst.wire_node(n, math::add(), &[raw, b])?[0]
        }
    };
    if let Some(hi) = layer.relu {
        let rank = dst.outlet_fact(out)?.rank();
        let zero = konst(dst, "eq_relu0", tensor0(0f32).broadcast_into_rank(rank)?)?;
        let n = dst.unique_name(format!("{name}.eq_relu")).to_string();
        out = dst.wire_node(n, math::max(), &[out, zero])?[0];
        let bound = match (clip, hi) {
            (Some(per), _) => Some(per_channel(dst, out, layer.channel_axis, per)?),
            (None, Some(hi)) => Some(tensor0(hi).broadcast_into_rank(rank)?),
            (None, None) => None,
        };
        if let Some(bound) = bound {
            let k = konst(dst, "eq_clip", bound)?;
            let n = dst.unique_name(format!("{name}.eq_clip")).to_string();
            out = dst.wire_node(n, math::min(), &[out, k])?[0];
        }
    }
    Ok(out)
}

/// `values` as a constant that broadcasts along `axis` of `like`'s rank.
fn per_channel(
    dst: &TypedModel,
    like: OutletId,
    axis: usize,
    values: &[f32],
) -> TractResult<Tensor> {
    let rank = dst.outlet_fact(like)?.rank();
    let mut shape = vec![1usize; rank];
    shape[axis] = values.len();
    Tensor::from_shape(&shape, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbs_a_constant_input_per_output_channel() {
        // W: [O=2, I=3]; input shift c = (1, 0, 2) adds W·c.
        let w = tensor2(&[[1f32, 5.0, 2.0], [0.5, 1.0, -1.0]]);
        assert_eq!(absorb(&w, 0, 1, &[1.0, 0.0, 2.0]).unwrap(), vec![5.0, -1.5]);
        // The same weights stored [I, O].
        let wt = tensor2(&[[1f32, 0.5], [5.0, 1.0], [2.0, -1.0]]);
        assert_eq!(
            absorb(&wt, 1, 0, &[1.0, 0.0, 2.0]).unwrap(),
            vec![5.0, -1.5]
        );
    }

    #[test]
    fn column_ranges_and_spread() {
        let w = tensor2(&[[1f32, -8.0], [-2.0, 4.0]]);
        assert_eq!(column_ranges(&w, 1).unwrap(), vec![2.0, 8.0]);
        assert_eq!(column_ranges(&w, 0).unwrap(), vec![8.0, 4.0]);
        assert_eq!(spread(&[1.0, 2.0, 8.0]), 4.0);
        assert_eq!(spread(&[0.0]), 1.0);
    }
}
