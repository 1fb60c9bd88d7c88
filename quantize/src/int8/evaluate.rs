//! Measuring an int8 graph against float on a set of samples: per-layer SQNR (accumulated or
//! isolated), end-to-end SQNR and top-1 agreement.
//!
//! The float [`Reference`] is computed once per sample set; an [`Evaluator`] then builds and
//! runs int8 variants (which layers float, which bias shifts) against it.

use std::collections::{HashMap, HashSet};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::layers::Layer;
use super::metrics::{row_agreement, ErrorSums};
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
    /// Per model output: name, SQNR dB, cosine.
    pub outputs: Vec<(String, f64, f64)>,
    /// Top-1 agreement of the first output, percent of its rows (arg-max over the last axis:
    /// per sample for a classifier, per time step for a sequence model).
    pub top1: f64,
}

impl Evaluation {
    /// The lowest end-to-end SQNR over the outputs.
    pub fn worst_sqnr(&self) -> f64 {
        self.outputs
            .iter()
            .map(|o| o.1)
            .fold(f64::INFINITY, f64::min)
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
    /// Threads per run.
    pub threads: usize,
    /// The samples.
    pub samples: &'a [Tensor],
    /// Float results on them.
    pub reference: Reference,
}

impl Evaluator<'_> {
    /// The int8 graph with `keep` in float and `shift` added to biases: end-to-end error,
    /// and per-layer error (accumulated through the graph) when `per_layer`.
    pub fn evaluate(
        &self,
        keep: &HashSet<String>,
        shift: &HashMap<String, Vec<f32>>,
        per_layer: bool,
    ) -> TractResult<Evaluation> {
        let mut rewrite = self.options(keep.clone());
        rewrite.expose_layers = per_layer;
        rewrite.bias_shift = shift.clone();
        self.run(&rewrite)
    }

    /// Every layer quantized on its own, reading float inputs: (SQNR dB, cosine) per layer.
    pub fn isolated(&self, shift: &HashMap<String, Vec<f32>>) -> TractResult<Vec<(f64, f64)>> {
        let mut rewrite = self.options(HashSet::new());
        rewrite.expose_layers = true;
        rewrite.isolated = true;
        rewrite.bias_shift = shift.clone();
        Ok(self.run(&rewrite)?.layers)
    }

    /// Per-channel means of every layer's output, each layer quantized alone (isolated),
    /// `keep` float.
    pub fn isolated_channel_means(&self, keep: &HashSet<String>) -> TractResult<Vec<Vec<f64>>> {
        let mut rewrite = self.options(keep.clone());
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

    fn options(&self, mut keep: HashSet<String>) -> RewriteOptions {
        keep.extend(self.unquantizable.iter().cloned());
        let mut r = RewriteOptions::new(self.per_channel, keep);
        r.requantize_all = self.requantize_all;
        r.tract_ops = self.tract_ops;
        r
    }

    fn run(&self, rewrite: &RewriteOptions) -> TractResult<Evaluation> {
        let int8 = build(self.float, self.layers, self.act, rewrite)?;
        let n_outputs = self.float.outputs.len();
        let watcher = Watcher::new(&int8.model, &[], self.threads)?;
        let mut layer_sums = vec![ErrorSums::default(); int8.exposed.len()];
        let mut output_sums = vec![ErrorSums::default(); n_outputs];
        let (mut agree, mut rows) = (0usize, 0usize);
        let row = self
            .float
            .outlet_fact(self.float.outputs[0])?
            .shape
            .last()
            .and_then(|d| d.to_usize().ok())
            .unwrap_or(1);
        for (ix, s) in self.samples.iter().enumerate() {
            let (mut got, _) = watcher.run(s)?;
            let got_layers = got.split_off(n_outputs);
            for (sum, (r, g)) in layer_sums
                .iter_mut()
                .zip(self.reference.layers[ix].iter().zip(&got_layers))
            {
                sum.add(values(r)?, values(g)?);
            }
            for (sum, (r, g)) in output_sums
                .iter_mut()
                .zip(self.reference.outputs[ix].iter().zip(&got))
            {
                sum.add(values(r)?, values(g)?);
            }
            let (r, g) = (values(&self.reference.outputs[ix][0])?, values(&got[0])?);
            let (a, n) = row_agreement(r, g, row);
            agree += a;
            rows += n;
        }
        let names = self
            .float
            .outputs
            .iter()
            .map(|o| self.float.node(o.node).name.clone());
        Ok(Evaluation {
            layers: layer_sums
                .iter()
                .map(|s| (s.sqnr_db(), s.cosine()))
                .collect(),
            outputs: names
                .zip(&output_sums)
                .map(|(n, s)| (n, s.sqnr_db(), s.cosine()))
                .collect(),
            top1: 100.0 * agree as f64 / rows.max(1) as f64,
        })
    }
}
