//! `detect`: object detection heads decoded into boxes, then non-maximum suppression.
//!
//! A [`Detector`] is built from a [`DetectConfig`] (the model's sidecar says which head
//! family and its parameters: [`heads`]), then *bound* to the model: the shapes of the
//! outputs it reads are checked against the head (anchor count, values per box, class count)
//! and turned into strided views, so a mismatch is an error at load time that names the
//! sidecar key and both shapes — never a panic or garbage boxes at run time. Per frame it
//! collects the (item, class) pairs above the score threshold ([`heads`]), decodes their
//! boxes, and suppresses overlaps per class ([`nms`]). Boxes are `[x0, y0, x1, y1]` relative
//! to the image. All scratch space is allocated when the detector is bound: no allocation
//! per frame.

pub mod anchors;
pub mod heads;
pub mod nms;

use serde::Serialize;
use tract_nnef::internal::*;

use crate::model::TensorSpec;
use heads::{BoxesHead, Matrix, Selection, SsdHead, YoloHead};
use nms::Candidates;

/// Most detections a frame reports.
pub const MAX_DETECTIONS: usize = 128;

/// Most candidates (above the score threshold, before NMS) a frame keeps; see [`nms`].
pub const MAX_CANDIDATES: usize = 16384;

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
    /// The id of the track following this object (set by the tracker, once the track is
    /// confirmed); `None` before tracking or for an unconfirmed track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<u32>,
}

/// The head family and its parameters.
#[derive(Debug, Clone)]
pub enum Head {
    /// Box regressions against anchors, and class scores.
    Ssd(SsdHead),
    /// One tensor of centre-size boxes with (objectness and) class scores.
    Yolo(YoloHead),
    /// Finished boxes and scores.
    Boxes(BoxesHead),
}

/// A detection head's description and its post-processing (from the sidecar).
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// How the outputs encode boxes.
    pub head: Head,
    /// Minimum score.
    pub score_threshold: f32,
    /// IoU above which the weaker of two boxes (of the same class) is suppressed.
    pub iou_threshold: f32,
    /// Most detections reported (≤ [`MAX_DETECTIONS`]).
    pub max_detections: usize,
    /// Every class above the threshold is a candidate, not only an item's best.
    pub multi_label: bool,
    /// Suppress overlaps across classes too.
    pub class_agnostic: bool,
}

impl DetectConfig {
    /// Checks the post-processing parameters; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |x: f32| x.is_finite() && (0.0..=1.0).contains(&x);
        if !unit(self.score_threshold) {
            return Err(format!(
                "detect.score_threshold = {}: must be within 0..1",
                self.score_threshold
            ));
        }
        if !unit(self.iou_threshold) {
            return Err(format!(
                "detect.iou_threshold = {}: must be within 0..1",
                self.iou_threshold
            ));
        }
        if !(1..=MAX_DETECTIONS).contains(&self.max_detections) {
            return Err(format!(
                "detect.max_detections = {}: must be within 1..={MAX_DETECTIONS}",
                self.max_detections
            ));
        }
        Ok(())
    }
}

/// The views of the outputs a bound detector reads.
#[derive(Debug, Clone, Copy)]
struct Bound {
    /// Box (or YOLO) output index and view.
    boxes: (usize, Matrix),
    /// Score output index and view (the same as `boxes` for YOLO).
    scores: (usize, Matrix),
    /// Classes the score rows hold (background included).
    classes: usize,
    /// Input `(width, height)`, pixels.
    size: (f32, f32),
}

/// Decodes and suppresses; keeps its scratch space between frames.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectConfig,
    bound: Option<Bound>,
    candidates: Candidates,
    /// Score from which boxes are kept, when below the configured threshold (a tracker's
    /// low-score stage wants the weak boxes too).
    keep_from: Option<f32>,
}

fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// `output #i \`name\` [shape]`, or an error naming `key` when the model has no output `i`.
fn output<'a>(outputs: &'a [TensorSpec], i: usize, key: &str) -> Result<Named<'a>, String> {
    let spec = outputs
        .get(i)
        .ok_or_else(|| format!("{key} = {i}, but the model has {} output(s)", outputs.len()))?;
    if spec.datum_type != DatumType::F32 {
        return Err(format!(
            "{key} = {i}: output #{i} `{}` is {:?}, not f32",
            spec.name, spec.datum_type
        ));
    }
    let label = format!("output #{i} `{}` {}", spec.name, shape(&spec.shape));
    Ok((spec, label))
}

/// An output and how messages name it (`output #i \`name\` [shape]`).
type Named<'a> = (&'a TensorSpec, String);

/// The box and score outputs of a two-output head, checked to be two different f32 outputs.
fn box_and_score_outputs(
    outputs: &[TensorSpec],
    boxes: usize,
    scores: usize,
) -> Result<(Named<'_>, Named<'_>), String> {
    let b = output(outputs, boxes, "detect.boxes_output")?;
    let s = output(outputs, scores, "detect.scores_output")?;
    if boxes == scores {
        return Err("detect.boxes_output and detect.scores_output name the same output".into());
    }
    Ok((b, s))
}

/// With a background class, at least one other class must be scored.
fn check_background(background: bool, classes: usize, scores: &str) -> Result<(), String> {
    if background && classes < 2 {
        return Err(format!(
            "detect.background = true, but {scores} has {classes} score column(s): no object class"
        ));
    }
    Ok(())
}

/// Rows of `last`-sized items: `(items, last)` when the shape is `[…, items, last]`-like.
fn rows_of(spec: &TensorSpec) -> Option<(usize, usize)> {
    let last = *spec.shape.last()?;
    let total = spec.len();
    (last > 0 && total > 0).then(|| (total / last, last))
}

impl Detector {
    /// A detector for `config` (checked; the message names the sidecar key).
    pub fn new(config: DetectConfig) -> Result<Detector, String> {
        config.validate()?;
        if let Head::Ssd(h) = &config.head {
            if h.anchors.is_empty() {
                return Err("detect.anchors: the SSD head has no anchors".into());
            }
        }
        Ok(Detector {
            config,
            bound: None,
            candidates: Candidates::with_capacity(2),
            keep_from: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    /// Keeps boxes from `score` up (clamped to 0..1) when that is below the configured
    /// threshold: a tracker's second stage matches weak boxes to its tracks. Whoever reads
    /// the detections decides which weak ones to report.
    pub fn keep_weak(&mut self, score: f32) {
        let s = score.clamp(0.0, 1.0);
        self.keep_from = (s < self.config.score_threshold).then_some(s);
    }

    /// Classes of the score rows (background included), once bound.
    pub fn classes(&self) -> Option<usize> {
        self.bound.map(|b| b.classes)
    }

    /// Checks the head against the model's outputs and input size `(height, width)` and
    /// prepares the views; `labels` is the number of class names the sidecar gives (0: none;
    /// it settles a YOLO tensor's orientation). The message names the sidecar key and the
    /// shapes that disagree.
    pub fn bind(
        &mut self,
        outputs: &[TensorSpec],
        input: (usize, usize),
        labels: usize,
    ) -> Result<(), String> {
        let size = (input.1 as f32, input.0 as f32);
        let bound = match &self.config.head {
            Head::Ssd(h) => {
                let ((b, bl), (s, sl)) =
                    box_and_score_outputs(outputs, h.boxes_output, h.scores_output)?;
                let n = h.anchors.len();
                let (bn, bk) = rows_of(b).ok_or_else(|| format!("{bl} is empty"))?;
                if bk < 4 || bn != n {
                    return Err(format!(
                        "detect.anchors make {n} anchors of 4 box values, but {bl} holds {bn} rows of {bk}"
                    ));
                }
                let (sn, classes) = rows_of(s).ok_or_else(|| format!("{sl} is empty"))?;
                if sn != n {
                    return Err(format!(
                        "detect.anchors make {n} anchors, but {sl} holds {sn} rows of {classes} class scores"
                    ));
                }
                check_background(h.background, classes, &sl)?;
                Bound {
                    boxes: (h.boxes_output, Matrix::rows(n, bk)),
                    scores: (h.scores_output, Matrix::rows(n, classes)),
                    classes,
                    size,
                }
            }
            Head::Yolo(h) => {
                let (o, ol) = output(outputs, h.output, "detect.output")?;
                let extra = h.box_values();
                let s = &o.shape;
                let lead: usize = s.iter().rev().skip(2).product();
                if s.len() < 2 || lead != 1 {
                    return Err(format!(
                        "detect.head = \"yolo\": {ol} is not [1, N, F] or [1, F, N]"
                    ));
                }
                let (a, c) = (s[s.len() - 2], s[s.len() - 1]);
                let want = (labels > 0).then_some(labels + extra);
                let matrix = match want {
                    Some(f) if c == f => Matrix::rows(a, c),
                    Some(f) if a == f => Matrix::columns(c, a),
                    Some(f) => {
                        return Err(format!(
                            "labels: {labels} names make rows of {f} values ({extra} box values + {labels} classes), but {ol} has neither axis of {f}"
                        ))
                    }
                    // Without labels, each version's export layout: v5 rows, v8 columns.
                    None if h.version == heads::YoloVersion::V5 => Matrix::rows(a, c),
                    None => Matrix::columns(c, a),
                };
                if matrix.features <= extra || matrix.items == 0 {
                    return Err(format!(
                        "detect.version: rows of {} values need more than {extra} (box values), {ol}",
                        matrix.features
                    ));
                }
                Bound {
                    boxes: (h.output, matrix),
                    scores: (h.output, matrix),
                    classes: matrix.features - extra,
                    size,
                }
            }
            Head::Boxes(h) => {
                let ((b, bl), (s, sl)) =
                    box_and_score_outputs(outputs, h.boxes_output, h.scores_output)?;
                let (bn, bk) = rows_of(b).ok_or_else(|| format!("{bl} is empty"))?;
                if bk != 4 {
                    return Err(format!(
                        "detect.head = \"boxes\" reads rows of 4 box values, but {bl} has rows of {bk}"
                    ));
                }
                let classes = if s.len() == bn {
                    1
                } else {
                    rows_of(s).map_or(0, |r| r.1)
                };
                if classes == 0 || s.len() != bn * classes {
                    return Err(format!(
                        "detect.scores_output: {bl} holds {bn} boxes, but {sl} is not {bn} rows of class scores"
                    ));
                }
                check_background(h.background, classes, &sl)?;
                Bound {
                    boxes: (h.boxes_output, Matrix::rows(bn, 4)),
                    scores: (h.scores_output, Matrix::rows(bn, classes)),
                    classes,
                    size,
                }
            }
        };
        let per_item = if self.config.multi_label {
            bound.classes
        } else {
            1
        };
        let capacity = (bound.scores.1.items * per_item).clamp(4 * MAX_DETECTIONS, MAX_CANDIDATES);
        self.candidates = Candidates::with_capacity(capacity);
        self.bound = Some(bound);
        Ok(())
    }

    /// Detections of one frame from the model's outputs, best first, into `out`.
    pub fn run(
        &mut self,
        outputs: &[TValue],
        out: &mut heapless::Vec<Detection, MAX_DETECTIONS>,
    ) -> TractResult<()> {
        let Some(b) = self.bound else {
            bail!("the detector was not bound to the model's outputs");
        };
        let tensor = |i: usize| outputs.get(i).with_context(|| format!("no output #{i}"));
        let (bt, st) = (tensor(b.boxes.0)?, tensor(b.scores.0)?);
        let (bv, sv) = (bt.try_as_plain_ram()?, st.try_as_plain_ram()?);
        let check = |data: &[f32], (i, m): (usize, Matrix)| -> TractResult<()> {
            ensure!(
                data.len() >= m.len(),
                "output #{i} has {} values, the detector reads {}",
                data.len(),
                m.len()
            );
            Ok(())
        };
        let bd = bv.as_slice::<f32>().context("the box output must be f32")?;
        let sd = sv
            .as_slice::<f32>()
            .context("the score output must be f32")?;
        check(bd, b.boxes)?;
        check(sd, b.scores)?;
        let c = &self.config;
        let threshold = self.keep_from.unwrap_or(c.score_threshold);
        self.candidates.clear();
        match &c.head {
            Head::Ssd(h) => {
                let sel = Selection {
                    threshold,
                    multi_label: c.multi_label,
                    first_class: usize::from(h.background),
                };
                h.collect(
                    (bd, b.boxes.1),
                    (sd, b.scores.1),
                    &sel,
                    &mut self.candidates,
                )
            }
            Head::Yolo(h) => {
                let sel = Selection {
                    threshold,
                    multi_label: c.multi_label,
                    first_class: 0,
                };
                h.collect(bd, b.boxes.1, b.size, &sel, &mut self.candidates)
            }
            Head::Boxes(h) => {
                let sel = Selection {
                    threshold,
                    multi_label: c.multi_label,
                    first_class: usize::from(h.background),
                };
                h.collect(
                    (bd, b.boxes.1),
                    (sd, b.scores.1),
                    b.size,
                    &sel,
                    &mut self.candidates,
                )
            }
        }
        self.candidates
            .suppress(c.iou_threshold, c.class_agnostic, c.max_detections, out);
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::anchors::{grid_anchors, AnchorGrid};
    use super::heads::*;
    use super::*;

    fn spec(name: &str, shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datum_type: DatumType::F32,
            shape: shape.to_vec(),
        }
    }

    fn value(shape: &[usize], data: &[f32]) -> TValue {
        Tensor::from_shape(shape, data).unwrap().into_tvalue()
    }

    fn config(head: Head) -> DetectConfig {
        DetectConfig {
            head,
            score_threshold: 0.5,
            iou_threshold: 0.5,
            max_detections: 10,
            multi_label: false,
            class_agnostic: false,
        }
    }

    fn ssd(anchors: Vec<[f32; 4]>, activation: Activation) -> Head {
        Head::Ssd(SsdHead {
            boxes_output: 0,
            scores_output: 1,
            box_order: BoxOrder::Yxhw,
            variances: [0.1, 0.1, 0.2, 0.2],
            exp_box_size: true,
            activation,
            background: true,
            anchors,
        })
    }

    fn run(d: &mut Detector, outputs: &[TValue]) -> Vec<Detection> {
        let mut out = heapless::Vec::new();
        d.run(outputs, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn ssd_boxes_decode_like_the_box_coder() {
        let anchors = grid_anchors(&[AnchorGrid {
            feature_map: (2, 2),
            sizes: vec![[0.5, 0.5]],
        }]);
        let mut d = Detector::new(config(ssd(anchors, Activation::None))).unwrap();
        d.bind(
            &[spec("b", &[1, 4, 1, 4]), spec("s", &[1, 4, 3])],
            (300, 300),
            0,
        )
        .unwrap();
        assert_eq!(d.classes(), Some(3));
        // Anchor 0 (centre 0.25, 0.25, size 0.5): shift down by 1·0.1·0.5, height ×2.
        let ln2 = std::f32::consts::LN_2;
        let mut boxes = vec![0f32; 16];
        boxes[..4].copy_from_slice(&[1.0, 0.0, ln2 / 0.2, 0.0]);
        // classes: background, a, b; anchors 1 and 2 are background, 3 is weak.
        let scores = [0.1, 0.9, 0.0, 0.9, 0.0, 0.0, 0.9, 0.0, 0.0, 0.2, 0.3, 0.4];
        let got = run(
            &mut d,
            &[value(&[1, 4, 1, 4], &boxes), value(&[1, 4, 3], &scores)],
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].class, got[0].score, got[0].track), (1, 0.9, None));
        let want = [0.0, 0.0, 0.5, 0.8]; // y: 0.3 ± 0.5 clamped; x: 0.25 ± 0.25
        for (g, w) in got[0].bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn shapes_that_do_not_fit_name_the_key_and_both_shapes() {
        let anchors = vec![[0.5, 0.5, 1.0, 1.0]; 1917];
        let mut d = Detector::new(config(ssd(anchors, Activation::Sigmoid))).unwrap();
        let e = d
            .bind(
                &[spec("box", &[1, 1000, 4]), spec("cls", &[1, 1000, 91])],
                (300, 300),
                0,
            )
            .unwrap_err();
        assert!(
            e.contains("detect.anchors") && e.contains("1917") && e.contains("[1, 1000, 4]"),
            "{e}"
        );
        let e = d
            .bind(
                &[spec("box", &[1, 1917, 4]), spec("cls", &[1, 1900, 91])],
                (300, 300),
                0,
            )
            .unwrap_err();
        assert!(e.contains("`cls` [1, 1900, 91]"), "{e}");
        let e = d
            .bind(&[spec("box", &[1, 1917, 4])], (300, 300), 0)
            .unwrap_err();
        assert!(
            e.contains("detect.scores_output = 1") && e.contains("1 output"),
            "{e}"
        );
        let mut y = Detector::new(config(Head::Yolo(YoloHead {
            output: 0,
            version: YoloVersion::V8,
            coords: Coords::Pixels,
            activation: Activation::None,
        })))
        .unwrap();
        let e = y
            .bind(&[spec("out", &[1, 84, 8400])], (640, 640), 3)
            .unwrap_err();
        assert!(
            e.contains("labels: 3") && e.contains("[1, 84, 8400]"),
            "{e}"
        );
        assert!(y
            .bind(&[spec("out", &[1, 84, 8400])], (640, 640), 80)
            .is_ok());
        assert!(y
            .bind(&[spec("out", &[2, 84, 8400])], (640, 640), 80)
            .is_err());
        let mut d = Detector::new(config(ssd(vec![[0.5; 4]], Activation::None))).unwrap();
        let mut out = heapless::Vec::new();
        assert!(d.run(&[], &mut out).is_err(), "unbound");
    }

    #[test]
    fn softmax_and_sigmoid_scores() {
        let a = vec![[0.5, 0.5, 1.0, 1.0]];
        let outs = [spec("b", &[1, 1, 4]), spec("s", &[1, 1, 2])];
        let mut d = Detector::new(config(ssd(a.clone(), Activation::Softmax))).unwrap();
        d.bind(&outs, (10, 10), 0).unwrap();
        let boxes = value(&[1, 1, 4], &[0.0; 4]);
        let got = run(&mut d, &[boxes.clone(), value(&[1, 1, 2], &[0.0, 2.0])]);
        let p = 2f32.exp() / (1.0 + 2f32.exp());
        assert!((got[0].score - p).abs() < 1e-6, "{got:?}");
        let mut d = Detector::new(config(ssd(a, Activation::Sigmoid))).unwrap();
        d.bind(&outs, (10, 10), 0).unwrap();
        let got = run(&mut d, &[boxes.clone(), value(&[1, 1, 2], &[5.0, -1.0])]);
        assert!(got.is_empty(), "sigmoid(-1) is below 0.5: {got:?}");
        let got = run(&mut d, &[boxes.clone(), value(&[1, 1, 2], &[5.0, 1.0])]);
        assert!((got[0].score - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
        // NaN scores and boxes are no detection.
        let got = run(&mut d, &[boxes, value(&[1, 1, 2], &[0.0, f32::NAN])]);
        assert!(got.is_empty());
        let got = run(
            &mut d,
            &[
                value(&[1, 1, 4], &[f32::NAN, 0.0, 0.0, 0.0]),
                value(&[1, 1, 2], &[0.0, 3.0]),
            ],
        );
        assert!(got.is_empty());
    }

    #[test]
    fn multi_label_reports_every_class_above_the_threshold() {
        let a = vec![[0.5, 0.5, 0.5, 0.5]];
        let mut c = config(ssd(a, Activation::None));
        c.multi_label = true;
        let mut d = Detector::new(c).unwrap();
        d.bind(&[spec("b", &[1, 1, 4]), spec("s", &[1, 1, 4])], (10, 10), 0)
            .unwrap();
        let got = run(
            &mut d,
            &[
                value(&[1, 1, 4], &[0.0; 4]),
                value(&[1, 1, 4], &[0.9, 0.6, 0.8, 0.1]),
            ],
        );
        let classes: Vec<u32> = got.iter().map(|d| d.class).collect();
        assert_eq!(classes, [2, 1], "background excluded, best first");
    }

    #[test]
    fn yolo_rows_and_columns_decode_alike() {
        // Two boxes in a 100×50 (w×h) input; v5 rows: cx, cy, w, h, obj, c0, c1.
        let rows = [
            50.0, 25.0, 20.0, 10.0, 0.9, 0.1, 0.8, // score 0.72, class 1
            10.0, 10.0, 4.0, 4.0, 0.4, 1.0, 0.0, // objectness 0.4 < 0.5
        ];
        let mut v5 = Detector::new(config(Head::Yolo(YoloHead {
            output: 0,
            version: YoloVersion::V5,
            coords: Coords::Pixels,
            activation: Activation::None,
        })))
        .unwrap();
        v5.bind(&[spec("o", &[1, 2, 7])], (50, 100), 0).unwrap();
        let got = run(&mut v5, &[value(&[1, 2, 7], &rows)]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].class, 1);
        assert!((got[0].score - 0.72).abs() < 1e-6);
        let want = [0.4, 0.4, 0.6, 0.6];
        for (g, w) in got[0].bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        // v8 columns: [1, 4 + 2, N].
        let cols = [
            50.0, 10.0, // cx
            25.0, 10.0, // cy
            20.0, 4.0, // w
            10.0, 4.0, // h
            0.1, 0.3, // class 0
            0.7, 0.2, // class 1
        ];
        let mut v8 = Detector::new(config(Head::Yolo(YoloHead {
            output: 0,
            version: YoloVersion::V8,
            coords: Coords::Pixels,
            activation: Activation::None,
        })))
        .unwrap();
        v8.bind(&[spec("o", &[1, 6, 2])], (50, 100), 2).unwrap();
        let got = run(&mut v8, &[value(&[1, 6, 2], &cols)]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].class, got[0].score), (1, 0.7));
        for (g, w) in got[0].bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn finished_boxes_in_pixels_and_tf_order() {
        let mut d = Detector::new(config(Head::Boxes(BoxesHead {
            boxes_output: 1,
            scores_output: 0,
            format: BoxFormat::Yxyx,
            coords: Coords::Pixels,
            activation: Activation::None,
            background: false,
        })))
        .unwrap();
        d.bind(&[spec("s", &[1, 2]), spec("b", &[1, 2, 4])], (100, 200), 0)
            .unwrap();
        let got = run(
            &mut d,
            &[
                value(&[1, 2], &[0.3, 0.95]),
                value(&[1, 2, 4], &[0.0, 0.0, 10.0, 10.0, 10.0, 20.0, 60.0, 120.0]),
            ],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].class, 0);
        assert_eq!(got[0].bbox, [0.1, 0.1, 0.6, 0.6]);
    }
}
