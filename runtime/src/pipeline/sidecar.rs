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
//! [detect]
//! boxes_output = 0                  # output indices
//! scores_output = 1
//! encoding = "anchors_yxhw"         # anchors_yxhw | anchors_xywh | corners
//! variances = [0.1, 0.1, 0.2, 0.2]
//! activation = "sigmoid"            # none | sigmoid | softmax
//! background = true                 # class 0 is background
//! score_threshold = 0.5
//! iou_threshold = 0.45
//! max_detections = 20
//! [[detect.anchor_layers]]
//! feature_map = [19, 19]            # rows, columns
//! sizes = [[0.1, 0.1], [0.2, 0.1]]  # anchor [height, width], relative to the image
//! ```
//!
//! Unknown keys are errors (a typo must not silently fall back to a default); every error
//! names the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::detect::{grid_anchors, Activation, AnchorGrid, DetectConfig, Detector, Encoding};
use super::preprocess::Normalize;
use super::tasks::Task;

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

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum EncodingName {
    AnchorsYxhw,
    AnchorsXywh,
    Corners,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ActivationName {
    None,
    Sigmoid,
    Softmax,
}

fn default_variances() -> [f32; 4] {
    [0.1, 0.1, 0.2, 0.2]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Detect {
    #[serde(default)]
    boxes_output: usize,
    #[serde(default = "one")]
    scores_output: usize,
    #[serde(default = "anchors_yxhw")]
    encoding: EncodingName,
    #[serde(default = "default_variances")]
    variances: [f32; 4],
    #[serde(default = "sigmoid")]
    activation: ActivationName,
    #[serde(default = "yes")]
    background: bool,
    #[serde(default = "half")]
    score_threshold: f32,
    #[serde(default = "iou")]
    iou_threshold: f32,
    #[serde(default = "twenty")]
    max_detections: usize,
    #[serde(default)]
    anchor_layers: Vec<AnchorLayer>,
}

fn one() -> usize {
    1
}
fn anchors_yxhw() -> EncodingName {
    EncodingName::AnchorsYxhw
}
fn sigmoid() -> ActivationName {
    ActivationName::Sigmoid
}
fn yes() -> bool {
    true
}
fn half() -> f32 {
    0.5
}
fn iou() -> f32 {
    0.45
}
fn twenty() -> usize {
    20
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
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: File = toml::from_str(&text).map_err(|e| err(e.to_string().trim().into()))?;
        let labels = match (&file.labels, &file.labels_file) {
            (Some(_), Some(_)) => return Err(err("give labels or labels_file, not both".into())),
            (Some(l), None) => l.clone(),
            (None, Some(f)) => {
                let p = path.parent().unwrap_or(Path::new(".")).join(f);
                std::fs::read_to_string(&p)
                    .map_err(|e| err(format!("labels_file {}: {e}", p.display())))?
                    .lines()
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
        match (file.task, &file.detect) {
            (TaskKind::Detect, None) => {
                return Err(err("task = \"detect\" needs a [detect] table".into()))
            }
            (TaskKind::Detect, Some(d)) => {
                let corners = matches!(d.encoding, EncodingName::Corners);
                if !corners && d.anchor_layers.is_empty() {
                    return Err(err(
                        "anchor encodings need [[detect.anchor_layers]] (or encoding = \"corners\")"
                            .into(),
                    ));
                }
                if d.boxes_output == d.scores_output {
                    return Err(err(
                        "boxes_output and scores_output are the same output".into()
                    ));
                }
                if !(0.0..=1.0).contains(&d.iou_threshold) {
                    return Err(err("iou_threshold must be within 0..1".into()));
                }
            }
            _ => {}
        }
        Ok(Sidecar {
            path: path.into(),
            file,
            labels,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// The task, with `top_k` for classifiers.
    pub fn task(&self, top_k: usize) -> Task {
        match (self.file.task, &self.file.detect) {
            (TaskKind::Detect, Some(d)) => {
                let layers: Vec<_> = d
                    .anchor_layers
                    .iter()
                    .map(|l| AnchorGrid {
                        feature_map: (l.feature_map[0], l.feature_map[1]),
                        sizes: l.sizes.clone(),
                    })
                    .collect();
                let config = DetectConfig {
                    boxes_output: d.boxes_output,
                    scores_output: d.scores_output,
                    encoding: match d.encoding {
                        EncodingName::AnchorsYxhw => Encoding::AnchorsYxhw,
                        EncodingName::AnchorsXywh => Encoding::AnchorsXywh,
                        EncodingName::Corners => Encoding::Corners,
                    },
                    variances: d.variances,
                    activation: match d.activation {
                        ActivationName::None => Activation::None,
                        ActivationName::Sigmoid => Activation::Sigmoid,
                        ActivationName::Softmax => Activation::Softmax,
                    },
                    background: d.background,
                    score_threshold: d.score_threshold,
                    iou_threshold: d.iou_threshold,
                    max_detections: d.max_detections,
                    anchors: grid_anchors(&layers),
                };
                Task::Detect {
                    detector: Box::new(Detector::new(config)),
                    labels: self.labels.clone(),
                }
            }
            (TaskKind::Raw, _) => Task::Raw,
            _ => Task::classify(self.labels.clone(), top_k),
        }
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
        assert_eq!(detector.config().anchors.len(), 12);
        assert_eq!(labels[1], "person");
    }

    #[test]
    fn mistakes_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("task = \"segment\"\n", "segment"),
            ("tsk = \"raw\"\n", "tsk"),
            ("task = \"detect\"\n", "[detect]"),
            ("task = \"detect\"\n[detect]\n", "anchor_layers"),
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
