//! The model's sidecar, `MODEL.kestrel.toml` next to the graph (`yolo.nnef.tgz` →
//! `yolo.kestrel.toml`): what the outputs mean and how frames are prepared.
//!
//! ```toml
//! task = "classify"                 # classify | detect | raw
//! labels = ["0", "180"]             # or labels_file = "labels.txt" (one per line, relative)
//!
//! [preprocess]
//! mean = [0.485, 0.456, 0.406]      # pixels scaled to 0..1, then (x - mean) / std
//! std = [0.229, 0.224, 0.225]
//!
//! [classify]
//! top_k = 3
//!
//! [detect]                        # see pipeline::detect::heads for each family
//! head = "ssd"                      # ssd | yolo | boxes
//! score_threshold = 0.5
//! iou_threshold = 0.45              # NMS, per class (class_agnostic = true: across classes)
//! max_detections = 100
//! multi_label = false               # every class above the threshold, not only the best
//! boxes_output = 0                  # ssd, boxes: output indices
//! scores_output = 1
//! activation = "sigmoid"            # none | sigmoid | softmax
//! background = true                 # class 0 is background (ssd default true)
//! box_order = "yxhw"                # ssd: yxhw (TensorFlow) | xywh (MediaPipe)
//! variances = [0.1, 0.1, 0.2, 0.2]  # ssd: 1 / TF's scale factors
//! exp_box_size = true               # ssd: sizes are exp(t·v)·anchor (false: t·v·anchor)
//! [detect.anchors]                  # ssd: generated (MediaPipe's SsdAnchorsCalculator)
//! input_size = [300, 300]           # height, width
//! num_layers = 6
//! min_scale = 0.2
//! max_scale = 0.95
//! strides = [16, 32, 64, 128, 256, 512]      # or feature_maps = [[19, 19], [10, 10], …]
//! aspect_ratios = [1.0, 2.0, 0.5, 3.0, 0.3333]
//! reduce_boxes_in_lowest_layer = true
//! interpolated_scale_aspect_ratio = 1.0
//! anchor_offset = [0.5, 0.5]        # x, y, in cells
//! fixed_anchor_size = false
//! # or, instead of [detect.anchors], anchors listed per feature map:
//! # [[detect.anchor_layers]]
//! # feature_map = [19, 19]          # rows, columns
//! # sizes = [[0.1, 0.1], [0.2, 0.1]]  # anchor [height, width], relative to the image
//! #
//! # head = "yolo": output = 0, version = 5 | 8, coords = "pixels" | "relative"
//! # head = "boxes": boxes_output, scores_output, box_format = "xyxy" | "yxyx" | "cxcywh",
//! #                 coords, activation, background
//! ```
//!
//! Unknown keys are errors (a typo must not silently fall back to a default); every error
//! names the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::detect::anchors::{check_grids, grid_anchors, Anchor, AnchorGrid, SsdAnchorOptions};
use super::detect::heads::{
    Activation, BoxFormat, BoxOrder, BoxesHead, Coords, SsdHead, YoloHead, YoloVersion,
};
use super::detect::{DetectConfig, Detector, Head};
use super::preprocess::Normalize;
use super::tasks::Task;
use crate::model::Model;

/// A sidecar that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("model sidecar {path}: {reason}")]
pub struct SidecarError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TaskKind {
    #[default]
    Classify,
    Detect,
    Raw,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Preprocess {
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Classify {
    top_k: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorLayer {
    feature_map: [usize; 2],
    sizes: Vec<[f32; 2]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Anchors {
    input_size: Option<[usize; 2]>,
    num_layers: Option<usize>,
    min_scale: Option<f32>,
    max_scale: Option<f32>,
    strides: Option<Vec<usize>>,
    feature_maps: Option<Vec<[usize; 2]>>,
    aspect_ratios: Option<Vec<f32>>,
    reduce_boxes_in_lowest_layer: Option<bool>,
    interpolated_scale_aspect_ratio: Option<f32>,
    anchor_offset: Option<[f32; 2]>,
    fixed_anchor_size: Option<bool>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
enum HeadName {
    #[default]
    Ssd,
    Yolo,
    Boxes,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ActivationName {
    None,
    Sigmoid,
    Softmax,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum BoxOrderName {
    Yxhw,
    Xywh,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum BoxFormatName {
    Xyxy,
    Yxyx,
    Cxcywh,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CoordsName {
    Pixels,
    Relative,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Detect {
    #[serde(default)]
    head: HeadName,
    score_threshold: Option<f32>,
    iou_threshold: Option<f32>,
    max_detections: Option<usize>,
    multi_label: Option<bool>,
    class_agnostic: Option<bool>,
    boxes_output: Option<usize>,
    scores_output: Option<usize>,
    activation: Option<ActivationName>,
    background: Option<bool>,
    box_order: Option<BoxOrderName>,
    variances: Option<[f32; 4]>,
    exp_box_size: Option<bool>,
    anchors: Option<Anchors>,
    anchor_layers: Option<Vec<AnchorLayer>>,
    output: Option<usize>,
    version: Option<u8>,
    coords: Option<CoordsName>,
    box_format: Option<BoxFormatName>,
}

fn activation(a: Option<ActivationName>, default: Activation) -> Activation {
    match a {
        None => default,
        Some(ActivationName::None) => Activation::None,
        Some(ActivationName::Sigmoid) => Activation::Sigmoid,
        Some(ActivationName::Softmax) => Activation::Softmax,
    }
}

fn coords(c: Option<CoordsName>) -> Coords {
    match c {
        Some(CoordsName::Relative) => Coords::Relative,
        _ => Coords::Pixels,
    }
}

impl Detect {
    /// The keys set that the chosen head does not read.
    fn stray_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let (ssd, yolo, boxes) = (
            self.head == HeadName::Ssd,
            self.head == HeadName::Yolo,
            self.head == HeadName::Boxes,
        );
        let mut check = |set: bool, applies: bool, key| {
            if set && !applies {
                keys.push(key);
            }
        };
        check(self.boxes_output.is_some(), ssd || boxes, "boxes_output");
        check(self.scores_output.is_some(), ssd || boxes, "scores_output");
        check(self.background.is_some(), ssd || boxes, "background");
        check(self.box_order.is_some(), ssd, "box_order");
        check(self.variances.is_some(), ssd, "variances");
        check(self.exp_box_size.is_some(), ssd, "exp_box_size");
        check(self.anchors.is_some(), ssd, "anchors");
        check(self.anchor_layers.is_some(), ssd, "anchor_layers");
        check(self.output.is_some(), yolo, "output");
        check(self.version.is_some(), yolo, "version");
        check(self.coords.is_some(), yolo || boxes, "coords");
        check(self.box_format.is_some(), boxes, "box_format");
        keys
    }

    /// The detector configuration; the message names the `detect.` key at fault.
    fn config(&self) -> Result<DetectConfig, String> {
        let stray = self.stray_keys();
        if !stray.is_empty() {
            let head = format!("{:?}", self.head).to_lowercase();
            return Err(format!(
                "detect.{} does not apply to head = \"{head}\"",
                stray.join(", detect.")
            ));
        }
        let head = match self.head {
            HeadName::Ssd => {
                let anchors = match (&self.anchors, &self.anchor_layers) {
                    (Some(_), Some(_)) => {
                        return Err("give detect.anchors or detect.anchor_layers, not both".into())
                    }
                    (None, None) => {
                        return Err(
                            "head = \"ssd\" needs [detect.anchors] or [[detect.anchor_layers]]"
                                .into(),
                        )
                    }
                    (Some(a), None) => a.generate()?,
                    (None, Some(layers)) => {
                        let grids: Vec<AnchorGrid> = layers
                            .iter()
                            .map(|l| AnchorGrid {
                                feature_map: (l.feature_map[0], l.feature_map[1]),
                                sizes: l.sizes.clone(),
                            })
                            .collect();
                        check_grids(&grids).map_err(|e| format!("detect.anchor_layers: {e}"))?;
                        grid_anchors(&grids)
                    }
                };
                Head::Ssd(SsdHead {
                    boxes_output: self.boxes_output.unwrap_or(0),
                    scores_output: self.scores_output.unwrap_or(1),
                    box_order: match self.box_order {
                        Some(BoxOrderName::Xywh) => BoxOrder::Xywh,
                        _ => BoxOrder::Yxhw,
                    },
                    variances: self.variances.unwrap_or([0.1, 0.1, 0.2, 0.2]),
                    exp_box_size: self.exp_box_size.unwrap_or(true),
                    activation: activation(self.activation, Activation::Sigmoid),
                    background: self.background.unwrap_or(true),
                    anchors,
                })
            }
            HeadName::Yolo => {
                let version = match self.version {
                    Some(5) => YoloVersion::V5,
                    Some(8) => YoloVersion::V8,
                    Some(v) => {
                        return Err(format!(
                            "detect.version = {v}: expected 5 (objectness) or 8 (none)"
                        ))
                    }
                    None => return Err("head = \"yolo\" needs detect.version = 5 or 8".into()),
                };
                let activation = activation(self.activation, Activation::None);
                if activation == Activation::Softmax {
                    return Err(
                        "detect.activation = \"softmax\" does not apply to YOLO scores".into(),
                    );
                }
                Head::Yolo(YoloHead {
                    output: self.output.unwrap_or(0),
                    version,
                    coords: coords(self.coords),
                    activation,
                })
            }
            HeadName::Boxes => Head::Boxes(BoxesHead {
                boxes_output: self.boxes_output.unwrap_or(0),
                scores_output: self.scores_output.unwrap_or(1),
                format: match self.box_format {
                    Some(BoxFormatName::Yxyx) => BoxFormat::Yxyx,
                    Some(BoxFormatName::Cxcywh) => BoxFormat::Cxcywh,
                    _ => BoxFormat::Xyxy,
                },
                coords: coords(self.coords),
                activation: activation(self.activation, Activation::None),
                background: self.background.unwrap_or(false),
            }),
        };
        let config = DetectConfig {
            head,
            score_threshold: self.score_threshold.unwrap_or(0.5),
            iou_threshold: self.iou_threshold.unwrap_or(0.45),
            max_detections: self.max_detections.unwrap_or(100),
            multi_label: self.multi_label.unwrap_or(false),
            class_agnostic: self.class_agnostic.unwrap_or(false),
        };
        config.validate()?;
        Ok(config)
    }
}

impl Anchors {
    fn generate(&self) -> Result<Vec<Anchor>, String> {
        let d = SsdAnchorOptions::default();
        let feature_maps: Vec<(usize, usize)> = self
            .feature_maps
            .as_ref()
            .map(|f| f.iter().map(|m| (m[0], m[1])).collect())
            .unwrap_or_default();
        if !feature_maps.is_empty() && self.strides.is_some() {
            return Err("give detect.anchors.strides or .feature_maps, not both".into());
        }
        if feature_maps.is_empty() && self.input_size.is_none() {
            return Err(
                "detect.anchors.strides needs detect.anchors.input_size = [height, width]".into(),
            );
        }
        let num_layers = self
            .num_layers
            .unwrap_or(self.strides.as_ref().map_or(feature_maps.len(), Vec::len));
        let options = SsdAnchorOptions {
            input_size: self.input_size.map_or(d.input_size, |s| (s[0], s[1])),
            num_layers,
            min_scale: self.min_scale.unwrap_or(d.min_scale),
            max_scale: self.max_scale.unwrap_or(d.max_scale),
            feature_maps,
            strides: self.strides.clone().unwrap_or_default(),
            aspect_ratios: self.aspect_ratios.clone().unwrap_or(vec![1.0]),
            reduce_boxes_in_lowest_layer: self.reduce_boxes_in_lowest_layer.unwrap_or(false),
            interpolated_scale_aspect_ratio: self.interpolated_scale_aspect_ratio.unwrap_or(1.0),
            anchor_offset: self.anchor_offset.map_or(d.anchor_offset, |o| (o[0], o[1])),
            fixed_anchor_size: self.fixed_anchor_size.unwrap_or(false),
        };
        options
            .validate()
            .map_err(|e| format!("detect.anchors: {e}"))?;
        Ok(options.generate())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    task: TaskKind,
    labels: Option<Vec<String>>,
    labels_file: Option<PathBuf>,
    #[serde(default)]
    preprocess: Preprocess,
    #[serde(default)]
    classify: Classify,
    detect: Option<Detect>,
}

/// A parsed sidecar.
#[derive(Debug)]
pub struct Sidecar {
    path: PathBuf,
    file: File,
    labels: Vec<String>,
    detector: Option<Detector>,
}

/// Where the sidecar of `model` would be: the graph's name without `.nnef.tgz`, `.nnef.tar`,
/// `.tgz`, `.tar` or `.nnef`, plus `.kestrel.toml`, in the same folder.
pub fn sidecar_path(model: &Path) -> PathBuf {
    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".nnef.tgz", ".nnef.tar", ".tgz", ".tar", ".nnef"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    model.with_file_name(format!("{stem}.kestrel.toml"))
}

impl Sidecar {
    /// The sidecar next to `model`, if there is one.
    pub fn find(model: &Path) -> Result<Option<Sidecar>, SidecarError> {
        let path = sidecar_path(model);
        if !path.exists() {
            return Ok(None);
        }
        Sidecar::load(&path).map(Some)
    }

    /// Reads and checks a sidecar.
    pub fn load(path: &Path) -> Result<Sidecar, SidecarError> {
        let err = |reason: String| SidecarError {
            path: path.into(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| err(e.to_string()))?
            .len();
        if len > crate::config::MAX_BYTES {
            return Err(err(format!(
                "{len} bytes; a sidecar is at most {}",
                crate::config::MAX_BYTES
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: File = toml::from_str(&text).map_err(|e| err(e.to_string().trim().into()))?;
        let labels = match (&file.labels, &file.labels_file) {
            (Some(_), Some(_)) => return Err(err("give labels or labels_file, not both".into())),
            (Some(l), None) => l.clone(),
            (None, Some(f)) => {
                let p = path.parent().unwrap_or(Path::new(".")).join(f);
                let mut text = String::new();
                std::fs::File::open(&p)
                    .and_then(|file| {
                        use std::io::Read;
                        file.take(crate::config::MAX_BYTES + 1)
                            .read_to_string(&mut text)
                    })
                    .map_err(|e| err(format!("labels_file {}: {e}", p.display())))?;
                if text.len() as u64 > crate::config::MAX_BYTES {
                    return Err(err(format!(
                        "labels_file {}: more than {} bytes",
                        p.display(),
                        crate::config::MAX_BYTES
                    )));
                }
                text.lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            }
            (None, None) => Vec::new(),
        };
        if let Some(std) = file.preprocess.std {
            if std.iter().any(|&s| s.is_nan() || s <= 0.0) {
                return Err(err("preprocess.std must be positive".into()));
            }
        }
        let detector = match (file.task, &file.detect) {
            (TaskKind::Detect, None) => {
                return Err(err("task = \"detect\" needs a [detect] table".into()))
            }
            (TaskKind::Detect, Some(d)) => Some(d.config().and_then(Detector::new).map_err(err)?),
            (_, Some(_)) => return Err(err("a [detect] table needs task = \"detect\"".into())),
            _ => None,
        };
        Ok(Sidecar {
            path: path.into(),
            file,
            labels,
            detector,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The labels file it names, resolved against its folder (packages ship it too).
    pub fn labels_file(&self) -> Option<PathBuf> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        self.file.labels_file.as_ref().map(|f| parent.join(f))
    }

    /// The normalisation it declares (`None` if it declares none).
    pub fn normalize(&self) -> Option<Normalize> {
        let p = &self.file.preprocess;
        (p.mean.is_some() || p.std.is_some()).then(|| {
            Normalize::from_mean_std(p.mean.unwrap_or([0.0; 3]), p.std.unwrap_or([1.0; 3]))
        })
    }

    /// Its classification `top_k`, if given.
    pub fn top_k(&self) -> Option<usize> {
        self.file.classify.top_k
    }

    /// The task, with `top_k` for classifiers (a detector not yet bound to a model: see
    /// [`Sidecar::task_for`]).
    pub fn task(&self, top_k: usize) -> Task {
        match (self.file.task, &self.detector) {
            (TaskKind::Detect, Some(d)) => Task::Detect {
                detector: Box::new(d.clone()),
                labels: self.labels.clone(),
            },
            (TaskKind::Raw, _) => Task::Raw,
            _ => Task::classify(self.labels.clone(), top_k),
        }
    }

    /// The task bound to `model`: a detector's head checked against the model's outputs (an
    /// error names this file, the sidecar key and both shapes).
    pub fn task_for(&self, top_k: usize, model: &Model) -> Result<Task, SidecarError> {
        let mut task = self.task(top_k);
        task.bind(model).map_err(|reason| SidecarError {
            path: self.path.clone(),
            reason,
        })?;
        Ok(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn paths() {
        assert_eq!(
            sidecar_path(Path::new("/m/yolo.nnef.tgz")),
            Path::new("/m/yolo.kestrel.toml")
        );
        assert_eq!(
            sidecar_path(Path::new("m/net")),
            Path::new("m/net.kestrel.toml")
        );
    }

    #[test]
    fn classify_with_labels_file_and_normalisation() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "labels.txt", "cat\n\ndog\n");
        let model = dir.path().join("net.nnef.tgz");
        write(
            dir.path(),
            "net.kestrel.toml",
            "labels_file = \"labels.txt\"\n[preprocess]\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n[classify]\ntop_k = 1\n",
        );
        let s = Sidecar::find(&model).unwrap().unwrap();
        assert_eq!(s.top_k(), Some(1));
        assert_eq!(
            s.normalize(),
            Some(Normalize::from_mean_std([0.5; 3], [0.5; 3]))
        );
        let t = s.task(1);
        assert_eq!(
            (t.label(0), t.label(1), t.label(2)),
            (Some("cat"), Some("dog"), None)
        );
        assert!(Sidecar::find(&dir.path().join("other.nnef.tgz"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn detect_builds_anchors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.kestrel.toml",
            "task = \"detect\"\nlabels = [\"bg\", \"person\"]\n[detect]\nscore_threshold = 0.3\n\
             [[detect.anchor_layers]]\nfeature_map = [2, 3]\nsizes = [[0.1, 0.1], [0.2, 0.1]]\n",
        );
        let s = Sidecar::load(&p).unwrap();
        let Task::Detect { detector, labels } = s.task(3) else {
            panic!("not detect")
        };
        let Head::Ssd(head) = &detector.config().head else {
            panic!("not ssd")
        };
        assert_eq!(head.anchors.len(), 12);
        assert_eq!(labels[1], "person");
        assert_eq!(detector.config().score_threshold, 0.3);
    }

    #[test]
    fn generated_anchors_and_other_heads() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.kestrel.toml",
            "task = \"detect\"\n[detect]\nmulti_label = true\n[detect.anchors]\n\
             input_size = [300, 300]\nnum_layers = 6\nmin_scale = 0.2\nmax_scale = 0.95\n\
             strides = [16, 32, 64, 128, 256, 512]\naspect_ratios = [1.0, 2.0, 0.5, 3.0, 0.3333]\n\
             reduce_boxes_in_lowest_layer = true\n",
        );
        let s = Sidecar::load(&p).unwrap();
        let Task::Detect { detector, .. } = s.task(3) else {
            panic!("not detect")
        };
        let Head::Ssd(head) = &detector.config().head else {
            panic!("not ssd")
        };
        assert_eq!(head.anchors.len(), 1917);
        assert!(detector.config().multi_label);
        let p = write(
            dir.path(),
            "y.kestrel.toml",
            "task = \"detect\"\n[detect]\nhead = \"yolo\"\nversion = 8\ncoords = \"relative\"\n",
        );
        let Task::Detect { detector, .. } = Sidecar::load(&p).unwrap().task(3) else {
            panic!("not detect")
        };
        assert!(
            matches!(&detector.config().head, Head::Yolo(y) if y.version == YoloVersion::V8 && y.coords == Coords::Relative)
        );
    }

    #[test]
    fn mistakes_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("task = \"segment\"\n", "segment"),
            ("tsk = \"raw\"\n", "tsk"),
            ("task = \"detect\"\n", "[detect]"),
            ("task = \"detect\"\n[detect]\n", "anchor_layers"),
            ("task = \"detect\"\n[detect]\nhead = \"yolo\"\n", "version = 5 or 8"),
            ("task = \"detect\"\n[detect]\nhead = \"yolo\"\nversion = 7\n", "detect.version = 7"),
            ("task = \"detect\"\n[detect]\nhead = \"yolo\"\nversion = 8\nvariances = [1, 1, 1, 1]\n", "detect.variances"),
            ("task = \"detect\"\n[detect]\nhead = \"boxes\"\nscore_threshold = 1.5\n", "detect.score_threshold"),
            ("task = \"detect\"\n[detect]\nhead = \"boxes\"\nmax_detections = 0\n", "detect.max_detections"),
            ("task = \"detect\"\n[detect]\n[detect.anchors]\nstrides = [8]\n", "input_size"),
            ("task = \"detect\"\n[detect]\n[detect.anchors]\nfeature_maps = [[2, 2]]\naspect_ratios = []\n", "detect.anchors: aspect_ratios"),
            ("[detect]\nhead = \"boxes\"\n", "task = \"detect\""),
            ("task = \"detect\"\n[detect]\n[detect.anchors]\ninput_size = [1000000, 1000000]\nstrides = [1]\n", "more than"),
            ("task = \"detect\"\n[detect]\n[[detect.anchor_layers]]\nfeature_map = [100000, 100000]\nsizes = [[0.1, 0.1]]\n", "detect.anchor_layers"),
            ("[preprocess]\nstd = [0, 1, 1]\n", "positive"),
            ("labels_file = \"missing.txt\"\n", "missing.txt"),
        ] {
            let p = write(dir.path(), "x.kestrel.toml", text);
            let e = Sidecar::load(&p).unwrap_err().to_string();
            assert!(
                e.contains("x.kestrel.toml") && e.contains(needle),
                "{text}: {e}"
            );
        }
    }
}
