//! Measuring an int8 graph against float on a set of samples: per-layer SQNR (accumulated or
//! isolated), end-to-end SQNR and the agreement measures of [`super::agreement`].
//!
//! The float [`Reference`] is computed once per sample set; an [`Evaluator`] then builds and
//! runs int8 variants (which layers float, which bias shifts) against it.

use std::collections::{HashMap, HashSet};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::agreement::{
    activate, BoxCheck, BoxCounts, OutputKind, AGREEMENT_TARGET, TOP_K, TOP_K_TARGET,
};
use super::layers::Layer;
use super::metrics::{max_difference, row_agreement, top_k_overlap, ErrorSums};
use super::mixed::Precision;
use super::observe::{values, Watcher};
use super::qparams::ActQ;
use super::rewrite::{build, RewriteOptions};

/// The float outputs and layer outputs on a sample set.
pub struct Reference {
    outputs: Vec<Vec<Tensor>>,
    layers: Vec<Vec<Tensor>>,
}

impl Reference {
    /// Runs the float graph on `samples`, keeping every layer's output.
    pub fn new(
        float: &TypedModel,
        layers: &[Layer],
        samples: &[Tensor],
        threads: usize,
    ) -> TractResult<Reference> {
        let watched: Vec<OutletId> = layers.iter().map(|l| l.output).collect();
        let watcher = Watcher::new(float, &watched, threads)?;
        let mut r = Reference {
            outputs: vec![],
            layers: vec![],
        };
        for s in samples {
            let (o, l) = watcher.run(s)?;
            r.outputs.push(o);
            r.layers.push(l);
        }
        Ok(r)
    }

    /// Replaces the model outputs by `original`'s on the same samples: the end-to-end error is
    /// then measured against the source graph, even when the layers came from an equalized
    /// copy of it.
    pub fn outputs_from(
        &mut self,
        original: &TypedModel,
        samples: &[Tensor],
        threads: usize,
    ) -> TractResult<()> {
        let watcher = Watcher::new(original, &[], threads)?;
        self.outputs = samples
            .iter()
            .map(|s| Ok(watcher.run(s)?.0))
            .collect::<TractResult<_>>()?;
        Ok(())
    }

    /// Per-channel means of every layer's float output (channels on `Layer::channel_axis`).
    pub fn channel_means(&self, layers: &[Layer]) -> TractResult<Vec<Vec<f64>>> {
        let mut sums: Vec<ChannelMeans> = layers.iter().map(ChannelMeans::new).collect();
        for sample in &self.layers {
            for (m, t) in sums.iter_mut().zip(sample) {
                m.add(t)?;
            }
        }
        Ok(sums.iter().map(ChannelMeans::means).collect())
    }
}

/// Per-channel running sums of one layer's output.
pub struct ChannelMeans {
    axis: usize,
    sums: Vec<f64>,
    count: usize,
}

impl ChannelMeans {
    /// Empty sums for `layer`'s output.
    pub fn new(layer: &Layer) -> ChannelMeans {
        ChannelMeans {
            axis: layer.channel_axis,
            sums: vec![0.0; layer.channels()],
            count: 0,
        }
    }

    /// Adds one tensor (f32, channels on the layer's channel axis).
    pub fn add(&mut self, t: &Tensor) -> TractResult<()> {
        let view = t.to_plain_array_view::<f32>()?;
        ensure!(
            view.shape().get(self.axis) == Some(&self.sums.len()),
            "channel axis {} of {:?} is not {} channels",
            self.axis,
            view.shape(),
            self.sums.len()
        );
        for (c, lane) in view.axis_iter(tract_ndarray::Axis(self.axis)).enumerate() {
            self.sums[c] += lane.iter().map(|v| *v as f64).sum::<f64>();
        }
        self.count += view.len() / self.sums.len().max(1);
        Ok(())
    }

    /// The means.
    pub fn means(&self) -> Vec<f64> {
        self.sums
            .iter()
            .map(|s| s / self.count.max(1) as f64)
            .collect()
    }
}

/// How far one int8 graph is from float.
pub struct Evaluation {
    /// Per layer (empty unless layers were exposed): SQNR dB, cosine.
    pub layers: Vec<(f64, f64)>,
    /// Per model output.
    pub outputs: Vec<OutputEval>,
    /// Top-1 agreement of a classifier output, percent of its rows (arg-max over the last
    /// axis: per sample for a classifier, per time step for a sequence model).
    pub top1: Option<f64>,
    /// Boxes decoded by the sidecar's detector from both graphs.
    pub boxes: Option<BoxCounts>,
}

/// How far one output is from float.
#[derive(Debug, Clone)]
pub struct OutputEval {
    /// Output name.
    pub name: String,
    /// The decoder's activation the SQNR is measured after (`sigmoid`, `softmax`), if any.
    pub activation: Option<String>,
    /// SQNR, dB.
    pub sqnr_db: f64,
    /// Cosine similarity.
    pub cosine: f64,
    /// For scores: percent of float's top-k entries among int8's (see [`super::agreement`]).
    pub top_k: Option<f64>,
    /// For scores: mean |Δ| of the best score, in the output's units.
    pub max_score_diff: Option<f64>,
}

impl Evaluation {
    /// The lowest end-to-end SQNR over the outputs.
    pub fn worst_sqnr(&self) -> f64 {
        self.outputs
            .iter()
            .map(|o| o.sqnr_db)
            .fold(f64::INFINITY, f64::min)
    }

    /// The agreement that matters for this model: (what, percent, target percent). Boxes for
    /// a detector with a sidecar (when the samples hold any), else top-1 of a classifier, else
    /// the worst top-k of the score outputs; `None` when the model has none of these.
    pub fn agreement(&self) -> Option<(&'static str, f64, f64)> {
        // Samples without a single box (calibration pictures without objects) say nothing
        // about boxes: the next measure speaks instead.
        if let Some(b) = self.boxes.filter(|b| b.reference + b.int8 > 0) {
            return Some(("detections", b.agreement(), AGREEMENT_TARGET));
        }
        if let Some(t) = self.top1 {
            return Some(("top-1", t, AGREEMENT_TARGET));
        }
        self.outputs
            .iter()
            .filter_map(|o| o.top_k)
            .reduce(f64::min)
            .map(|t| ("top-10 scores", t, TOP_K_TARGET))
    }

    /// End-to-end SQNR at least `floor_db` on every output and the agreement at its target.
    pub fn meets(&self, floor_db: f64) -> bool {
        self.worst_sqnr() >= floor_db && self.agreement().is_none_or(|(_, v, t)| v >= t)
    }

    /// "top-1 agreement 98.7%" and the like, for messages.
    pub fn agreement_text(&self) -> String {
        match self.agreement() {
            Some((what, v, _)) => format!("{what} agreement {v:.1}%"),
            None => "no agreement measure for these outputs".into(),
        }
    }
}

/// Builds and measures int8 variants of one float graph on one sample set.
pub struct Evaluator<'a> {
    /// The decluttered float graph.
    pub float: &'a TypedModel,
    /// Its quantizable layers.
    pub layers: &'a [Layer],
    /// Activation parameters.
    pub act: &'a HashMap<OutletId, ActQ>,
    /// Per-channel weights.
    pub per_channel: bool,
    /// Requantize every int8 layer's output (`RewriteOptions::requantize_all`).
    pub requantize_all: bool,
    /// tract's quantized ops instead of Kestrel's (`RewriteOptions::tract_ops`).
    pub tract_ops: bool,
    /// Layers that can never be int8 (float even in the isolated measures).
    pub unquantizable: HashSet<String>,
    /// Error-compensated weights (`RewriteOptions::rounded`).
    pub rounded: Arc<HashMap<String, super::qparams::QWeights>>,
    /// Per-channel depthwise input parameters (`RewriteOptions::channel_act`).
    pub channel_act: Arc<HashMap<OutletId, Vec<ActQ>>>,
    /// Threads per run.
    pub threads: usize,
    /// The samples.
    pub samples: &'a [Tensor],
    /// Float results on them.
    pub reference: Reference,
    /// How each output is judged ([`super::agreement::output_kinds`] of the source graph).
    pub kinds: Vec<OutputKind>,
    /// The sidecar's detector, when one was given.
    pub boxes: Option<BoxCheck>,
}

impl Evaluator<'_> {
    /// The int8 graph with `plan`'s precisions and `shift` added to biases: end-to-end
    /// error, and per-layer error (accumulated through the graph) when `per_layer`.
    pub fn evaluate(
        &self,
        plan: &Precision,
        shift: &HashMap<String, Vec<f32>>,
        per_layer: bool,
    ) -> TractResult<Evaluation> {
        let mut rewrite = self.options(plan);
        rewrite.expose_layers = per_layer;
        rewrite.bias_shift = shift.clone();
        self.run(&rewrite)
    }

    /// Each layer `plan` quantizes, quantized alone at its `plan` precision (every other
    /// layer float): the worst end-to-end SQNR over the outputs, per layer name. Unlike
    /// [`Self::isolated`], which measures a layer's own output, this is measured where the
    /// floor is, after everything downstream: a score head whose logits are 50 dB accurate
    /// can still move a sigmoid near 0.5 by 0.4 (BlazeFace's 8×8 face head reads values up to
    /// ~300 through weights that give logits of −30 000).
    pub fn sensitivity(
        &self,
        plan: &Precision,
        shift: &HashMap<String, Vec<f32>>,
    ) -> TractResult<Vec<(String, f64)>> {
        let quantized: Vec<&Layer> = self
            .layers
            .iter()
            .filter(|l| !plan.float.contains(&l.name) && !self.unquantizable.contains(&l.name))
            .collect();
        let mut out = Vec::with_capacity(quantized.len());
        for l in &quantized {
            let alone = Precision {
                float: self
                    .layers
                    .iter()
                    .filter(|o| o.name != l.name)
                    .map(|o| o.name.clone())
                    .collect(),
                wide: plan
                    .wide
                    .iter()
                    .filter(|n| **n == l.name)
                    .cloned()
                    .collect(),
            };
            let e = self.evaluate(&alone, shift, false)?;
            out.push((l.name.clone(), e.worst_sqnr()));
        }
        Ok(out)
    }

    /// Every layer quantized on its own, reading float inputs: (SQNR dB, cosine) per layer.
    pub fn isolated(&self, shift: &HashMap<String, Vec<f32>>) -> TractResult<Vec<(f64, f64)>> {
        let mut rewrite = self.options(&Precision::default());
        rewrite.expose_layers = true;
        rewrite.isolated = true;
        rewrite.bias_shift = shift.clone();
        Ok(self.run(&rewrite)?.layers)
    }

    /// Per-channel means of every layer's output, each layer quantized alone (isolated) at
    /// `plan`'s precision.
    pub fn isolated_channel_means(&self, plan: &Precision) -> TractResult<Vec<Vec<f64>>> {
        let mut rewrite = self.options(plan);
        rewrite.expose_layers = true;
        rewrite.isolated = true;
        let int8 = build(self.float, self.layers, self.act, &rewrite)?;
        let n_outputs = self.float.outputs.len();
        let watcher = Watcher::new(&int8.model, &[], self.threads)?;
        let mut sums: Vec<ChannelMeans> = self.layers.iter().map(ChannelMeans::new).collect();
        for s in self.samples {
            let (mut got, _) = watcher.run(s)?;
            for (m, t) in sums.iter_mut().zip(got.split_off(n_outputs).iter()) {
                m.add(t)?;
            }
        }
        Ok(sums.iter().map(ChannelMeans::means).collect())
    }

    fn options(&self, plan: &Precision) -> RewriteOptions {
        let mut keep = plan.float.clone();
        keep.extend(self.unquantizable.iter().cloned());
        let mut r = RewriteOptions::new(self.per_channel, keep);
        r.requantize_all = self.requantize_all;
        r.tract_ops = self.tract_ops;
        r.wide = plan.wide.clone();
        r.rounded = self.rounded.clone();
        r.channel_act = self.channel_act.clone();
        r
    }

    fn run(&self, rewrite: &RewriteOptions) -> TractResult<Evaluation> {
        let int8 = build(self.float, self.layers, self.act, rewrite)?;
        let n_outputs = self.float.outputs.len();
        let watcher = Watcher::new(&int8.model, &[], self.threads)?;
        let mut layer_sums = vec![ErrorSums::default(); int8.exposed.len()];
        let mut output_sums = vec![ErrorSums::default(); n_outputs];
        let mut top_k = vec![(0usize, 0usize); n_outputs];
        let mut max_diff = vec![0f64; n_outputs];
        let (mut agree, mut rows) = (0usize, 0usize);
        let mut boxes = self.boxes.clone();
        let activated = boxes.as_ref().and_then(|b| b.score_activation());
        let mut counts = BoxCounts::default();
        for (ix, s) in self.samples.iter().enumerate() {
            let (mut got, _) = watcher.run(s)?;
            let got_layers = got.split_off(n_outputs);
            for (sum, (r, g)) in layer_sums
                .iter_mut()
                .zip(self.reference.layers[ix].iter().zip(&got_layers))
            {
                sum.add(values(r)?, values(g)?);
            }
            let reference = &self.reference.outputs[ix];
            for (o, (rt, gt)) in reference.iter().zip(&got).enumerate() {
                let (r, g) = (values(rt)?, values(gt)?);
                match activated {
                    Some((i, act)) if i == o => {
                        let row = rt.shape().last().copied().unwrap_or(1);
                        output_sums[o].add(&activate(r, act, row), &activate(g, act, row));
                    }
                    _ => output_sums[o].add(r, g),
                }
                match self.kinds[o] {
                    OutputKind::Classes { row } => {
                        let (a, n) = row_agreement(r, g, row);
                        agree += a;
                        rows += n;
                    }
                    OutputKind::Scores => {
                        let (a, n) = top_k_overlap(r, g, TOP_K);
                        top_k[o].0 += a;
                        top_k[o].1 += n;
                        max_diff[o] += max_difference(r, g);
                    }
                    OutputKind::Values => {}
                }
            }
            if let Some(b) = boxes.as_mut() {
                b.compare(reference, &got, &mut counts)?;
            }
        }
        let names = self
            .float
            .outputs
            .iter()
            .map(|o| self.float.node(o.node).name.clone());
        let n = self.samples.len().max(1) as f64;
        let outputs = names
            .zip(&output_sums)
            .enumerate()
            .map(|(o, (name, sums))| {
                let scores = self.kinds[o] == OutputKind::Scores;
                OutputEval {
                    name,
                    activation: activated
                        .filter(|(i, _)| *i == o)
                        .map(|(_, a)| format!("{a:?}").to_lowercase()),
                    sqnr_db: sums.sqnr_db(),
                    cosine: sums.cosine(),
                    top_k: scores.then(|| 100.0 * top_k[o].0 as f64 / top_k[o].1.max(1) as f64),
                    max_score_diff: scores.then(|| max_diff[o] / n),
                }
            })
            .collect();
        Ok(Evaluation {
            layers: layer_sums
                .iter()
                .map(|s| (s.sqnr_db(), s.cosine()))
                .collect(),
            outputs,
            top1: (rows > 0).then(|| 100.0 * agree as f64 / rows as f64),
            boxes: boxes.map(|_| counts),
        })
    }
}
