//! What "the int8 graph agrees with float" means for each kind of model output.
//!
//! SQNR is measured on every output. On top of it:
//! - a **classifier** (the model's only output, `[N, C]` or `[N, T, C]` with `C ≥ 2`): the
//!   arg-max over the last axis agrees (per sample, or per time step of a sequence model);
//! - **scores** (per anchor, per pixel: an output whose name says score, logit, class, conf or
//!   prob, whose last axis is 1, or a one-channel map `[N, 1, H, W]`): the `k` highest entries
//!   of float are among int8's `k` highest ([`TOP_K`]), and the best score moves little;
//! - a **detector** with a sidecar (`--sidecar`): both graphs' outputs go through the runtime's
//!   own decoder and NMS at the sidecar's threshold, and the boxes are matched one to one
//!   (same class, IoU ≥ 0.5). This is what a camera user sees; the measures above are what a
//!   model without a sidecar can be held to.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kestrel_runtime::model::{LoadOptions, Model};
use kestrel_runtime::pipeline::detect::heads::Activation;
use kestrel_runtime::pipeline::detect::{nms::iou, Detection, Detector, Head, MAX_DETECTIONS};
use kestrel_runtime::pipeline::sidecar::Sidecar;
use kestrel_runtime::pipeline::tasks::Task;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;

/// Entries compared by the top-k agreement of a score output.
pub const TOP_K: usize = 10;

/// IoU at which an int8 box matches a float box.
pub const MATCH_IOU: f32 = 0.5;

/// Agreement (percent) the keep-float search aims at: top-1 of a classifier, boxes of a
/// detector.
pub const AGREEMENT_TARGET: f64 = 99.0;

/// Agreement (percent) the keep-float search aims at for the top-k entries of a score output
/// without a sidecar: the 10th-best anchor of an image without objects is background noise,
/// whose rank int8 may swap with its neighbours without changing any detection.
pub const TOP_K_TARGET: f64 = 90.0;

/// How an output is judged beyond SQNR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Arg-max over rows of this length.
    Classes {
        /// Length of the last axis.
        row: usize,
    },
    /// Top-k entries and the best score.
    Scores,
    /// SQNR only (box regressions, embeddings).
    Values,
}

/// The kind of each output of `model`; `detector` (a detect sidecar was given): no output is
/// a classifier's, whatever its shape (a YOLO head's `[1, N, 5 + C]` rows are boxes).
pub fn output_kinds(model: &TypedModel, detector: bool) -> TractResult<Vec<OutputKind>> {
    let single = model.outputs.len() == 1 && !detector;
    model
        .outputs
        .iter()
        .map(|o| {
            let fact = model.outlet_fact(*o)?;
            let shape: Vec<usize> = fact
                .shape
                .iter()
                .map(|d| d.to_usize().unwrap_or(1))
                .collect();
            let name = model.node(o.node).name.to_lowercase();
            Ok(kind_of(single, &name, &shape))
        })
        .collect()
}

fn kind_of(single: bool, name: &str, shape: &[usize]) -> OutputKind {
    let last = shape.last().copied().unwrap_or(1);
    if single && (shape.len() == 2 || shape.len() == 3) && last >= 2 {
        return OutputKind::Classes { row: last };
    }
    let named = ["score", "logit", "class", "conf", "prob"]
        .iter()
        .any(|w| name.contains(w));
    let map = shape.len() == 4 && shape[1] == 1;
    let per_entry = shape.len() >= 2 && last == 1;
    if named || map || per_entry {
        OutputKind::Scores
    } else {
        OutputKind::Values
    }
}

/// Boxes of both graphs, counted over samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BoxCounts {
    /// Float boxes.
    pub reference: usize,
    /// int8 boxes.
    pub int8: usize,
    /// Pairs matched (same class, IoU ≥ [`MATCH_IOU`]).
    pub matched: usize,
}

impl BoxCounts {
    /// Matched / int8 boxes (1 when there are none).
    pub fn precision(&self) -> f64 {
        ratio(self.matched, self.int8)
    }

    /// Matched / float boxes (1 when there are none).
    pub fn recall(&self) -> f64 {
        ratio(self.matched, self.reference)
    }

    /// The lower of precision and recall, percent: every extra and every missing box counts.
    pub fn agreement(&self) -> f64 {
        100.0 * self.precision().min(self.recall())
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// The runtime's detector, bound to the float graph's outputs by a sidecar.
#[derive(Clone)]
pub struct BoxCheck {
    detector: Detector,
    /// The sidecar.
    pub path: PathBuf,
}

impl BoxCheck {
    /// Reads the sidecar at `path` and binds its detector to `float`'s outputs.
    pub fn new(path: &Path, float: &TypedModel) -> Result<BoxCheck, String> {
        let sidecar = Sidecar::load(path).map_err(|e| e.to_string())?;
        let model = Model::from_typed(
            "sidecar check",
            float.clone(),
            &LoadOptions { threads: Some(1) },
            Instant::now(),
        )
        .map_err(|e| format!("{e:#}"))?;
        match sidecar.task_for(1, &model).map_err(|e| e.to_string())? {
            Task::Detect { detector, .. } => Ok(BoxCheck {
                detector: *detector,
                path: path.to_path_buf(),
            }),
            _ => Err("the sidecar's task is not `detect`".into()),
        }
    }

    /// The SSD score output the decoder reads through a sigmoid or a softmax: (output index,
    /// activation). Its SQNR is measured on what the decoder reads, the probabilities: raw
    /// background logits reach −10³ on some pictures (BlazeFace), where a ±1% error is
    /// invisible after the sigmoid but would dominate a logit SQNR.
    pub fn score_activation(&self) -> Option<(usize, Activation)> {
        match &self.detector.config().head {
            Head::Ssd(h) if !matches!(h.activation, Activation::None) => {
                Some((h.scores_output, h.activation))
            }
            _ => None,
        }
    }

    /// Decodes both graphs' outputs of one sample and adds the boxes to `counts`.
    pub fn compare(
        &mut self,
        reference: &[Tensor],
        got: &[Tensor],
        counts: &mut BoxCounts,
    ) -> TractResult<()> {
        let r = self.decode(reference)?;
        let g = self.decode(got)?;
        counts.reference += r.len();
        counts.int8 += g.len();
        counts.matched += matches(&r, &g);
        Ok(())
    }

    fn decode(
        &mut self,
        outputs: &[Tensor],
    ) -> TractResult<heapless::Vec<Detection, MAX_DETECTIONS>> {
        let values: TVec<TValue> = outputs.iter().map(|t| t.clone().into_tvalue()).collect();
        let mut out = heapless::Vec::new();
        self.detector.run(&values, &mut out)?;
        Ok(out)
    }
}

/// `values` through `activation`, rows of `row` values for a softmax.
pub fn activate(values: &[f32], activation: Activation, row: usize) -> Vec<f32> {
    match activation {
        Activation::None => values.to_vec(),
        Activation::Sigmoid => values.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
        Activation::Softmax => values
            .chunks(row.max(1))
            .flat_map(|r| {
                let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = r.iter().map(|v| (v - m).exp()).collect();
                let sum: f32 = e.iter().sum();
                e.into_iter().map(move |v| v / sum)
            })
            .collect(),
    }
}

/// One-to-one matches of same-class boxes at IoU ≥ [`MATCH_IOU`], greedy by IoU.
pub fn matches(reference: &[Detection], got: &[Detection]) -> usize {
    let mut pairs: Vec<(f32, usize, usize)> = vec![];
    for (i, r) in reference.iter().enumerate() {
        for (j, g) in got.iter().enumerate() {
            let v = iou(&r.bbox, &g.bbox);
            if r.class == g.class && v >= MATCH_IOU {
                pairs.push((v, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_r, mut used_g) = (vec![false; reference.len()], vec![false; got.len()]);
    let mut n = 0;
    for (_, i, j) in pairs {
        if !used_r[i] && !used_g[j] {
            used_r[i] = true;
            used_g[j] = true;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_shapes_and_names() {
        assert_eq!(
            kind_of(true, "probs", &[1, 4]),
            OutputKind::Classes { row: 4 }
        );
        assert_eq!(
            kind_of(true, "softmax", &[1, 40, 6625]),
            OutputKind::Classes { row: 6625 }
        );
        assert_eq!(
            kind_of(true, "sigmoid_0", &[1, 1, 96, 96]),
            OutputKind::Scores
        );
        assert_eq!(
            kind_of(false, "classificators", &[1, 896, 1]),
            OutputKind::Scores
        );
        assert_eq!(
            kind_of(false, "class_logits", &[1, 1917, 2]),
            OutputKind::Scores
        );
        assert_eq!(
            kind_of(false, "regressors", &[1, 896, 16]),
            OutputKind::Values
        );
        assert_eq!(
            kind_of(false, "box_encodings", &[1, 1917, 4]),
            OutputKind::Values
        );
    }

    fn det(class: u32, x: f32) -> Detection {
        Detection {
            class,
            score: 0.9,
            bbox: [x, 0.0, x + 0.2, 0.2],
            track: None,
        }
    }

    #[test]
    fn activations() {
        let s = activate(&[0.0, -1000.0], Activation::Sigmoid, 1);
        assert_eq!(s, vec![0.5, 0.0]);
        let p = activate(&[1.0, 1.0, 0.0, 1000.0], Activation::Softmax, 2);
        assert_eq!(p, vec![0.5, 0.5, 0.0, 1.0]);
    }

    #[test]
    fn boxes_match_one_to_one_by_class() {
        let r = [det(0, 0.0), det(0, 0.5), det(1, 0.0)];
        let g = [det(0, 0.01), det(1, 0.5), det(1, 0.02)];
        assert_eq!(matches(&r, &g), 2);
        let c = BoxCounts {
            reference: 3,
            int8: 3,
            matched: 2,
        };
        assert!((c.agreement() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(BoxCounts::default().agreement(), 100.0);
    }
}
