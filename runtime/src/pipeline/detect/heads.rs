//! The detection head families: how a model's outputs encode boxes and class scores.
//!
//! - **SSD** ([`SsdHead`]): per anchor, a box regression `(ty, tx, th, tw)` (or `(tx, ty, tw,
//!   th)`) against the anchor `(ya, xa, ha, wa)` and a row of class scores. The box has centre
//!   `(ty·v0·ha + ya, tx·v1·wa + xa)` and size `(exp(th·v2)·ha, exp(tw·v3)·wa)` — the SSD /
//!   TensorFlow box coder, `v` the variances (`[0.1, 0.1, 0.2, 0.2]` = TF's scale factors 10,
//!   10, 5, 5). With `exp_box_size = false` the size is `(th·v2·ha, tw·v3·wa)` (MediaPipe's
//!   BlazeFace). A box row may carry more than four values (keypoints): the first four are
//!   the box.
//! - **YOLO** ([`YoloHead`]): one tensor of `N` rows of `(cx, cy, w, h, [objectness,] class
//!   scores…)`, decoded inside the graph as exported by YOLOv5/YOLOv8-style exporters, in
//!   input pixels (or relative). v5 rows have an objectness and the score of class `k` is
//!   `objectness · p_k`; v8 rows have none. The tensor may be `[1, N, F]` (rows) or `[1, F,
//!   N]` (YOLOv8's export): with labels, the axis of size `F` (4 or 5 plus the class count)
//!   is the feature axis; without, each version's export layout is assumed (v5 rows, v8
//!   columns).
//! - **Boxes** ([`BoxesHead`]): finished boxes (`xyxy`, `yxyx` or `cxcywh`, relative or in
//!   pixels) and a separate score tensor, one row per box.
//!
//! Boxes go to NMS as decoded and are clipped to the image afterwards, the order of both
//! TensorFlow's SSD post-processor and Ultralytics' `non_max_suppression`.
//!
//! Scores pass through an activation (none, sigmoid, softmax over the row). The score test
//! runs on raw values where it can (a sigmoid threshold becomes a logit threshold), so the
//! activation and the box decoding run only for the few candidates that pass.

use super::anchors::Anchor;
use super::nms::Candidates;
use super::Detection;

/// How raw scores become probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Already probabilities.
    None,
    /// Independent sigmoid per class.
    Sigmoid,
    /// Softmax over a row's classes (background included).
    Softmax,
}

/// Order of the four regression values of an SSD box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxOrder {
    /// `(ty, tx, th, tw)` (TensorFlow).
    Yxhw,
    /// `(tx, ty, tw, th)` (MediaPipe, Caffe).
    Xywh,
}

/// Layout of finished boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxFormat {
    /// `[x0, y0, x1, y1]`
    Xyxy,
    /// `[y0, x0, y1, x1]` (TensorFlow)
    Yxyx,
    /// `[cx, cy, w, h]`
    Cxcywh,
}

/// Units of box coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coords {
    /// Fractions of the image, 0..1.
    Relative,
    /// Pixels of the model input.
    Pixels,
}

/// YOLO output layout generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YoloVersion {
    /// `cx, cy, w, h, objectness, classes…`
    V5,
    /// `cx, cy, w, h, classes…`
    V8,
}

/// An SSD head.
#[derive(Debug, Clone)]
pub struct SsdHead {
    /// Index of the box output.
    pub boxes_output: usize,
    /// Index of the score output.
    pub scores_output: usize,
    /// Order of the regression values.
    pub box_order: BoxOrder,
    /// Box-coder variances `(y, x, h, w)`.
    pub variances: [f32; 4],
    /// Sizes decode as `exp(t·v)·anchor` (true) or `t·v·anchor`.
    pub exp_box_size: bool,
    /// Score activation.
    pub activation: Activation,
    /// Class 0 is background and never reported.
    pub background: bool,
    /// The anchors, in the head's order.
    pub anchors: Vec<Anchor>,
}

/// A YOLO head.
#[derive(Debug, Clone)]
pub struct YoloHead {
    /// Index of the output.
    pub output: usize,
    /// Row layout.
    pub version: YoloVersion,
    /// Units of the boxes.
    pub coords: Coords,
    /// Activation of objectness and class scores (exports usually apply it already).
    pub activation: Activation,
}

/// A head that outputs finished boxes and their scores.
#[derive(Debug, Clone)]
pub struct BoxesHead {
    /// Index of the box output.
    pub boxes_output: usize,
    /// Index of the score output.
    pub scores_output: usize,
    /// Box layout.
    pub format: BoxFormat,
    /// Units of the boxes.
    pub coords: Coords,
    /// Score activation.
    pub activation: Activation,
    /// Class 0 is background and never reported.
    pub background: bool,
}

/// A strided 2-D view of an output: element `(item, feature)` is at
/// `item·item_stride + feature·feature_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Matrix {
    /// Items (anchors, boxes).
    pub items: usize,
    /// Values per item.
    pub features: usize,
    /// Distance between items.
    pub item_stride: usize,
    /// Distance between an item's values.
    pub feature_stride: usize,
}

impl Matrix {
    /// Items as rows: `[…, items, features]`.
    pub fn rows(items: usize, features: usize) -> Matrix {
        Matrix {
            items,
            features,
            item_stride: features,
            feature_stride: 1,
        }
    }

    /// Items as columns: `[…, features, items]`.
    pub fn columns(items: usize, features: usize) -> Matrix {
        Matrix {
            items,
            features,
            item_stride: 1,
            feature_stride: items,
        }
    }

    /// Elements the view spans.
    pub fn len(&self) -> usize {
        self.items * self.features
    }

    /// True for an empty view.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn at(&self, data: &[f32], item: usize, feature: usize) -> f32 {
        data[item * self.item_stride + feature * self.feature_stride]
    }
}

/// The score threshold in raw units for a monotonic activation (`None` for softmax).
fn raw_threshold(activation: Activation, threshold: f32) -> Option<f32> {
    match activation {
        Activation::None => Some(threshold),
        Activation::Sigmoid => Some(if threshold <= 0.0 {
            f32::NEG_INFINITY
        } else if threshold >= 1.0 {
            f32::INFINITY
        } else {
            (threshold / (1.0 - threshold)).ln()
        }),
        Activation::Softmax => None,
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What the collectors share: the threshold, multi-label and the class range.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    /// Minimum score (after the activation).
    pub threshold: f32,
    /// Every class above the threshold is a candidate (else only the best per item).
    pub multi_label: bool,
    /// First class reported (1 when class 0 is background).
    pub first_class: usize,
}

/// Collects the candidates of one item's score row: calls `push(class, score)` for each
/// class that passes. `row(k)` reads raw score `k` of `classes`.
#[inline]
fn select_row(
    sel: &Selection,
    activation: Activation,
    raw_bar: Option<f32>,
    classes: usize,
    row: impl Fn(usize) -> f32,
    mut push: impl FnMut(usize, f32),
) {
    match raw_bar {
        Some(bar) => {
            if sel.multi_label {
                for k in sel.first_class..classes {
                    let x = row(k);
                    if x >= bar {
                        let p = if activation == Activation::Sigmoid {
                            sigmoid(x)
                        } else {
                            x
                        };
                        push(k, p);
                    }
                }
            } else {
                let (mut best, mut best_x) = (usize::MAX, f32::NEG_INFINITY);
                for k in sel.first_class..classes {
                    let x = row(k);
                    if x > best_x {
                        (best, best_x) = (k, x);
                    }
                }
                if best != usize::MAX && best_x >= bar {
                    let p = if activation == Activation::Sigmoid {
                        sigmoid(best_x)
                    } else {
                        best_x
                    };
                    push(best, p);
                }
            }
        }
        None => {
            // Softmax over the whole row.
            let mut max = f32::NEG_INFINITY;
            for k in 0..classes {
                max = max.max(row(k));
            }
            if !max.is_finite() {
                return;
            }
            let mut sum = 0.0;
            for k in 0..classes {
                sum += (row(k) - max).exp();
            }
            let mut best = (usize::MAX, f32::NEG_INFINITY);
            for k in sel.first_class..classes {
                let p = (row(k) - max).exp() / sum;
                if sel.multi_label {
                    if p >= sel.threshold {
                        push(k, p);
                    }
                } else if p > best.1 {
                    best = (k, p);
                }
            }
            if !sel.multi_label && best.0 != usize::MAX && best.1 >= sel.threshold {
                push(best.0, best.1);
            }
        }
    }
}

/// The box if every coordinate is finite.
fn finite_box(b: [f32; 4]) -> Option<[f32; 4]> {
    b.iter().all(|v| v.is_finite()).then_some(b)
}

fn push(out: &mut Candidates, class: usize, score: f32, bbox: Option<[f32; 4]>) {
    if let Some(bbox) = bbox {
        if score.is_finite() && bbox[2] > bbox[0] && bbox[3] > bbox[1] {
            out.push(Detection {
                class: class as u32,
                score,
                bbox,
                track: None,
            });
        }
    }
}

/// The candidates of a head with a box output and a score output, one row per item: each
/// (item, class) pair that passes the threshold, its box decoded by `decode(values, item)`
/// into `[x0, y0, x1, y1]` once per item.
fn collect_rows(
    (bd, bm): (&[f32], Matrix),
    (sd, sm): (&[f32], Matrix),
    activation: Activation,
    sel: &Selection,
    out: &mut Candidates,
    decode: impl Fn([f32; 4], usize) -> [f32; 4],
) {
    let raw_bar = raw_threshold(activation, sel.threshold);
    for i in 0..sm.items {
        let mut decoded: Option<Option<[f32; 4]>> = None;
        select_row(
            sel,
            activation,
            raw_bar,
            sm.features,
            |k| sm.at(sd, i, k),
            |k, p| {
                if p < out.bar() {
                    return;
                }
                let b = *decoded.get_or_insert_with(|| {
                    let r = [0, 1, 2, 3].map(|f| bm.at(bd, i, f));
                    finite_box(decode(r, i))
                });
                push(out, k, p, b);
            },
        );
    }
}

impl SsdHead {
    /// Decodes anchor `a`'s regression into `[x0, y0, x1, y1]` (not clamped).
    #[inline]
    fn decode(&self, r: [f32; 4], a: usize) -> [f32; 4] {
        let (ty, tx, th, tw) = match self.box_order {
            BoxOrder::Yxhw => (r[0], r[1], r[2], r[3]),
            BoxOrder::Xywh => (r[1], r[0], r[3], r[2]),
        };
        let [ya, xa, ha, wa] = self.anchors[a];
        let v = self.variances;
        let cy = ty * v[0] * ha + ya;
        let cx = tx * v[1] * wa + xa;
        let (h, w) = if self.exp_box_size {
            ((th * v[2]).exp() * ha, (tw * v[3]).exp() * wa)
        } else {
            (th * v[2] * ha, tw * v[3] * wa)
        };
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }

    /// Pushes the candidates of one frame. `boxes` and `scores` are the two outputs with
    /// their views (checked when the detector was bound).
    pub fn collect(
        &self,
        boxes: (&[f32], Matrix),
        scores: (&[f32], Matrix),
        sel: &Selection,
        out: &mut Candidates,
    ) {
        collect_rows(boxes, scores, self.activation, sel, out, |r, a| {
            self.decode(r, a)
        })
    }
}

/// Converts a box in `format` and `coords` to relative `[x0, y0, x1, y1]`; `size` is the
/// input `(width, height)`.
#[inline]
fn to_xyxy(r: [f32; 4], format: BoxFormat, coords: Coords, size: (f32, f32)) -> [f32; 4] {
    let b = match format {
        BoxFormat::Xyxy => r,
        BoxFormat::Yxyx => [r[1], r[0], r[3], r[2]],
        BoxFormat::Cxcywh => [
            r[0] - r[2] / 2.0,
            r[1] - r[3] / 2.0,
            r[0] + r[2] / 2.0,
            r[1] + r[3] / 2.0,
        ],
    };
    match coords {
        Coords::Relative => b,
        Coords::Pixels => [b[0] / size.0, b[1] / size.1, b[2] / size.0, b[3] / size.1],
    }
}

impl YoloHead {
    /// Values before the class scores in a row.
    pub fn box_values(&self) -> usize {
        match self.version {
            YoloVersion::V5 => 5,
            YoloVersion::V8 => 4,
        }
    }

    /// Pushes the candidates of one frame; `size` is the input `(width, height)`.
    pub fn collect(
        &self,
        data: &[f32],
        m: Matrix,
        size: (f32, f32),
        sel: &Selection,
        out: &mut Candidates,
    ) {
        let first = self.box_values();
        let classes = m.features - first;
        let act = |x: f32| match self.activation {
            Activation::Sigmoid => sigmoid(x),
            _ => x,
        };
        // Softmax makes no sense across a YOLO row's independent scores: the sidecar refuses it.
        let raw_bar = raw_threshold(self.activation, sel.threshold);
        for i in 0..m.items {
            let objectness = match self.version {
                YoloVersion::V5 => {
                    let o = act(m.at(data, i, 4));
                    // The class probabilities are at most 1: a weak objectness rules the row out.
                    if o.is_nan() || o < sel.threshold {
                        continue;
                    }
                    o
                }
                YoloVersion::V8 => 1.0,
            };
            let mut decoded: Option<Option<[f32; 4]>> = None;
            let mut emit = |k: usize, p: f32| {
                let score = p * objectness;
                if score < sel.threshold || score < out.bar() {
                    return;
                }
                let b = *decoded.get_or_insert_with(|| {
                    let r = [0, 1, 2, 3].map(|f| m.at(data, i, f));
                    finite_box(to_xyxy(r, BoxFormat::Cxcywh, self.coords, size))
                });
                push(out, k, score, b);
            };
            match self.version {
                // v8: the class score is the score: test it raw.
                YoloVersion::V8 => select_row(
                    sel,
                    self.activation,
                    raw_bar,
                    classes,
                    |k| m.at(data, i, first + k),
                    &mut emit,
                ),
                // v5: the score is objectness · p, so the class test runs after the product.
                YoloVersion::V5 => {
                    let plain = Selection {
                        threshold: sel.threshold / objectness,
                        ..*sel
                    };
                    select_row(
                        &plain,
                        self.activation,
                        raw_threshold(self.activation, plain.threshold),
                        classes,
                        |k| m.at(data, i, first + k),
                        &mut emit,
                    )
                }
            }
        }
    }
}

impl BoxesHead {
    /// Pushes the candidates of one frame; `size` is the input `(width, height)`.
    pub fn collect(
        &self,
        boxes: (&[f32], Matrix),
        scores: (&[f32], Matrix),
        size: (f32, f32),
        sel: &Selection,
        out: &mut Candidates,
    ) {
        collect_rows(boxes, scores, self.activation, sel, out, |r, _| {
            to_xyxy(r, self.format, self.coords, size)
        })
    }
}
