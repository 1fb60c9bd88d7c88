//! `detect`: SSD-style detection heads — box regressions against a grid of anchors and
//! per-anchor class scores — decoded and filtered by non-maximum suppression.
//!
//! Decoding (the SSD / TF object-detection box coder): for an anchor with centre `(ya, xa)`
//! and size `(ha, wa)` and an encoding `(ty, tx, th, tw)` (or `(tx, ty, tw, th)` with
//! `box_order = "xywh"`), the box has centre `(ty·v0·ha + ya, tx·v1·wa + xa)` and size
//! `(exp(th·v2)·ha, exp(tw·v3)·wa)`, `v` the variances (`[0.1, 0.1, 0.2, 0.2]`, i.e. TF's
//! scale factors 10, 10, 5, 5). Heads that output finished corners (`encoding = "corners"`,
//! `[ymin, xmin, ymax, xmax]`) skip decoding. Anchors come from the sidecar's layers: for a
//! feature map `h × w`, one anchor per cell centre `((i+0.5)/h, (j+0.5)/w)` and per listed
//! `[height, width]` (relative to the image).
//!
//! Each anchor keeps its best class (background excluded); candidates above the score
//! threshold are sorted and suppressed per class at the IoU threshold; at most
//! `max_detections` (≤ [`MAX_DETECTIONS`]) are kept. All scratch space is allocated when the
//! detector is built: no allocation per frame.

use serde::Serialize;

/// Most detections a frame reports.
pub const MAX_DETECTIONS: usize = 32;

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// Class index in the model's score output.
    pub class: u32,
    /// Its score (after the activation).
    pub score: f32,
    /// `[x_min, y_min, x_max, y_max]`, relative to the image (0..1).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

/// How the box output is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Regressions against anchors, `(y, x, h, w)` order.
    AnchorsYxhw,
    /// Regressions against anchors, `(x, y, w, h)` order.
    AnchorsXywh,
    /// Finished boxes `[ymin, xmin, ymax, xmax]`.
    Corners,
}

/// How raw scores become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Already probabilities.
    None,
    /// Independent sigmoid per class (TF SSD).
    Sigmoid,
    /// Softmax over the classes of an anchor (Caffe SSD).
    Softmax,
}

/// A detection head's description (from the sidecar).
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Index of the box output.
    pub boxes_output: usize,
    /// Index of the score output.
    pub scores_output: usize,
    /// Box encoding.
    pub encoding: Encoding,
    /// Box coder variances `(y, x, h, w)`.
    pub variances: [f32; 4],
    /// Score activation.
    pub activation: Activation,
    /// Class 0 is background and never reported.
    pub background: bool,
    /// Minimum score.
    pub score_threshold: f32,
    /// IoU above which the weaker of two same-class boxes is suppressed.
    pub iou_threshold: f32,
    /// Most detections reported (≤ [`MAX_DETECTIONS`]).
    pub max_detections: usize,
    /// Anchors `(cy, cx, h, w)`, relative; empty for `Corners`.
    pub anchors: Vec<[f32; 4]>,
}

/// One layer of an anchor grid.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGrid {
    /// Feature map rows and columns.
    pub feature_map: (usize, usize),
    /// Anchor `[height, width]`s at every cell, relative to the image.
    pub sizes: Vec<[f32; 2]>,
}

/// The anchors `(cy, cx, h, w)` of grid layers, layer by layer, row-major, sizes innermost.
pub fn grid_anchors(layers: &[AnchorGrid]) -> Vec<[f32; 4]> {
    let mut anchors = Vec::new();
    for AnchorGrid {
        feature_map: (fh, fw),
        sizes,
    } in layers
    {
        for i in 0..*fh {
            for j in 0..*fw {
                let cy = (i as f32 + 0.5) / *fh as f32;
                let cx = (j as f32 + 0.5) / *fw as f32;
                for [h, w] in sizes {
                    anchors.push([cy, cx, *h, *w]);
                }
            }
        }
    }
    anchors
}

/// Decodes and suppresses; keeps its scratch space between frames.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectConfig,
    candidates: Vec<Detection>,
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

impl Detector {
    /// A detector for `config`.
    pub fn new(mut config: DetectConfig) -> Detector {
        config.max_detections = config.max_detections.clamp(1, MAX_DETECTIONS);
        let capacity = config.anchors.len().max(1024);
        Detector {
            config,
            candidates: Vec::with_capacity(capacity),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// Detections from the flat box output (`n × 4`) and score output (`n × classes`).
    pub fn run(
        &mut self,
        boxes: &[f32],
        scores: &[f32],
        out: &mut heapless::Vec<Detection, MAX_DETECTIONS>,
    ) -> Result<(), String> {
        let c = &self.config;
        if !boxes.len().is_multiple_of(4) {
            return Err(format!(
                "box output has {} values, not a multiple of 4",
                boxes.len()
            ));
        }
        let n = boxes.len() / 4;
        if n == 0 || !scores.len().is_multiple_of(n) {
            return Err(format!("{n} boxes but {} scores", scores.len()));
        }
        let classes = scores.len() / n;
        if c.encoding != Encoding::Corners && c.anchors.len() != n {
            return Err(format!(
                "the model gives {n} boxes but the sidecar's anchor layers make {}",
                c.anchors.len()
            ));
        }
        let first_class = usize::from(c.background);
        if classes <= first_class {
            return Err(format!("{classes} score column(s): no object class"));
        }
        self.candidates.clear();
        for a in 0..n {
            let row = &scores[a * classes..(a + 1) * classes];
            let (mut best, mut best_score) = (first_class, f32::NEG_INFINITY);
            for (k, &s) in row.iter().enumerate().skip(first_class) {
                if s > best_score {
                    (best, best_score) = (k, s);
                }
            }
            let score = match c.activation {
                Activation::None => best_score,
                Activation::Sigmoid => 1.0 / (1.0 + (-best_score).exp()),
                Activation::Softmax => {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = row.iter().map(|&s| (s - max).exp()).sum();
                    (best_score - max).exp() / sum
                }
            };
            if score.is_nan() || score < c.score_threshold {
                continue;
            }
            let r = &boxes[a * 4..a * 4 + 4];
            let [ymin, xmin, ymax, xmax] = match c.encoding {
                Encoding::Corners => [r[0], r[1], r[2], r[3]],
                Encoding::AnchorsYxhw | Encoding::AnchorsXywh => {
                    let (ty, tx, th, tw) = match c.encoding {
                        Encoding::AnchorsYxhw => (r[0], r[1], r[2], r[3]),
                        _ => (r[1], r[0], r[3], r[2]),
                    };
                    let [ya, xa, ha, wa] = c.anchors[a];
                    let v = c.variances;
                    let cy = ty * v[0] * ha + ya;
                    let cx = tx * v[1] * wa + xa;
                    let h = (th * v[2]).exp() * ha;
                    let w = (tw * v[3]).exp() * wa;
                    [cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0]
                }
            };
            if self.candidates.len() < self.candidates.capacity() {
                self.candidates.push(Detection {
                    class: best as u32,
                    score,
                    bbox: [xmin, ymin, xmax, ymax].map(|v| v.clamp(0.0, 1.0)),
                });
            }
        }
        self.candidates
            .sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
        out.clear();
        for cand in &self.candidates {
            if out.len() == c.max_detections {
                break;
            }
            let suppressed = out
                .iter()
                .any(|d| d.class == cand.class && iou(&d.bbox, &cand.bbox) > c.iou_threshold);
            if !suppressed {
                let _ = out.push(*cand);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(encoding: Encoding, anchors: Vec<[f32; 4]>) -> DetectConfig {
        DetectConfig {
            boxes_output: 0,
            scores_output: 1,
            encoding,
            variances: [0.1, 0.1, 0.2, 0.2],
            activation: Activation::None,
            background: true,
            score_threshold: 0.5,
            iou_threshold: 0.5,
            max_detections: 10,
            anchors,
        }
    }

    #[test]
    fn anchors_decode_like_the_ssd_box_coder() {
        let anchors = grid_anchors(&[AnchorGrid {
            feature_map: (2, 2),
            sizes: vec![[0.5, 0.5]],
        }]);
        assert_eq!(anchors.len(), 4);
        assert_eq!(anchors[3], [0.75, 0.75, 0.5, 0.5]);
        let mut d = Detector::new(config(Encoding::AnchorsYxhw, anchors));
        // Anchor 0 (centre 0.25, 0.25): shift down by 0.1·0.5·1.0 = 0.05, height ×e^(0.2·ln2/0.2)=2.
        let ln2 = std::f32::consts::LN_2;
        let mut boxes = vec![0f32; 16];
        boxes[..4].copy_from_slice(&[1.0, 0.0, ln2 / 0.2, 0.0]);
        // classes: background, a, b
        let scores = [0.1, 0.9, 0.0, 0.9, 0.0, 0.0, 0.9, 0.0, 0.0, 0.2, 0.3, 0.4];
        let mut out = heapless::Vec::new();
        d.run(&boxes, &scores, &mut out).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        let got = out[0];
        assert_eq!((got.class, got.score), (1, 0.9));
        let want = [0.0, 0.0, 0.5, 0.8]; // y: 0.3 ± 0.5 clamped; x: 0.25 ± 0.25
        for (g, w) in got.bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn nms_suppresses_same_class_overlaps_only() {
        let boxes = [
            0.0, 0.0, 0.5, 0.5, // a, 0.9
            0.0, 0.0, 0.5, 0.55, // a, 0.8: overlaps the first -> suppressed
            0.0, 0.0, 0.5, 0.5, // b, 0.7: other class -> kept
            0.6, 0.6, 1.0, 1.0, // a, 0.6: apart -> kept
            0.6, 0.6, 1.0, 1.0, // a, 0.4: below threshold
        ];
        let scores = [
            0.0, 0.9, 0.0, //
            0.0, 0.8, 0.0, //
            0.0, 0.0, 0.7, //
            0.0, 0.6, 0.0, //
            0.0, 0.4, 0.0,
        ];
        let mut d = Detector::new(config(Encoding::Corners, vec![]));
        let mut out = heapless::Vec::new();
        d.run(&boxes, &scores, &mut out).unwrap();
        let got: Vec<(u32, f32)> = out.iter().map(|d| (d.class, d.score)).collect();
        assert_eq!(got, [(1, 0.9), (2, 0.7), (1, 0.6)]);
        assert_eq!(out[2].bbox, [0.6, 0.6, 1.0, 1.0]);
    }

    #[test]
    fn shape_mismatches_are_errors() {
        let mut d = Detector::new(config(Encoding::AnchorsYxhw, vec![[0.5, 0.5, 1.0, 1.0]]));
        let mut out = heapless::Vec::new();
        let e = d.run(&[0.0; 8], &[0.0; 4], &mut out).unwrap_err();
        assert!(e.contains("2 boxes") && e.contains("make 1"), "{e}");
        assert!(d.run(&[0.0; 5], &[0.0; 2], &mut out).is_err());
    }

    #[test]
    fn softmax_and_sigmoid() {
        let mut c = config(Encoding::Corners, vec![]);
        c.activation = Activation::Softmax;
        let mut d = Detector::new(c.clone());
        let mut out = heapless::Vec::new();
        d.run(&[0.0, 0.0, 1.0, 1.0], &[0.0, 2.0], &mut out).unwrap();
        let p = 2f32.exp() / (1.0 + 2f32.exp());
        assert!((out[0].score - p).abs() < 1e-6);
        c.activation = Activation::Sigmoid;
        let mut d = Detector::new(c);
        d.run(&[0.0, 0.0, 1.0, 1.0], &[5.0, -1.0], &mut out)
            .unwrap();
        assert!(out.is_empty(), "sigmoid(-1) is below 0.5: {out:?}");
    }
}
