//! The runtime's detection decoders against references decoded independently: each graph
//! is run by onnxruntime and its outputs decoded by numpy code in
//! `tests/fixtures/make_detect_reference.py` (anchors, box coder, sigmoid, per-class NMS),
//! the detections written to `tests/fixtures/ref/*.expected.json`. Here the converted graph
//! runs in Kestrel and its outputs go through the sidecar-configured [`Detector`]: the same
//! objects must come out (class, score within 2e-3, box corners within 2e-3).
//!
//! - SSD: the shipped `models/ssdlite-mobilenet-v2` (a real person detector) on scikit-image
//!   photographs, with its own sidecar (generated anchors), at two score thresholds.
//! - YOLOv5 (`[1, N, 5+C]` rows, objectness) and YOLOv8 (`[1, 4+C, N]` columns): small graphs
//!   with seeded random weights that end the way those exporters' graphs end.

use std::path::{Path, PathBuf};

use kestrel_runtime::io::npy;
use kestrel_runtime::pipeline::detect::{Detection, Detector, MAX_DETECTIONS};
use kestrel_runtime::pipeline::sidecar::Sidecar;
use kestrel_runtime::pipeline::tasks::{Task, TaskResult};
use kestrel_runtime::{LoadOptions, Model};
use serde_json::Value;
use tract_nnef::internal::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn reference(name: &str) -> Value {
    let path = repo().join("tests/fixtures/ref").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn array(name: &str) -> Tensor {
    let path = repo().join("tests/fixtures/ref").join(name);
    npy::read_arrays(&path).unwrap().remove(0).1
}

/// A task from `sidecar` with the reference's thresholds, bound to `model`.
fn task(sidecar: &Sidecar, model: &Model, score: f32, iou: f32, max: usize) -> Task {
    let Task::Detect { detector, labels } = sidecar.task(1) else {
        panic!("{}: not a detect sidecar", sidecar.path().display())
    };
    let mut config = detector.config().clone();
    config.score_threshold = score;
    config.iou_threshold = iou;
    config.max_detections = max.min(MAX_DETECTIONS);
    let mut task = Task::Detect {
        detector: Box::new(Detector::new(config).unwrap()),
        labels,
    };
    task.bind(model).unwrap();
    task
}

fn detect(model: &Model, task: &mut Task, input: Tensor) -> Vec<Detection> {
    let outputs = model.run(tvec![input.into_tvalue()]).unwrap();
    let mut result = TaskResult::None;
    task.apply(&outputs, &mut result).unwrap();
    let TaskResult::Detections(found) = result else {
        panic!("no detections result")
    };
    found.to_vec()
}

/// Every expected detection is found once, and nothing else.
fn assert_same(what: &str, got: &[Detection], want: &[Value]) {
    let show: Vec<_> = got.iter().map(|d| (d.class, d.score, d.bbox)).collect();
    assert_eq!(got.len(), want.len(), "{what}: got {show:?}, want {want:?}");
    for w in want {
        let class = w["class"].as_u64().unwrap() as u32;
        let score = w["score"].as_f64().unwrap() as f32;
        let bbox: Vec<f32> = w["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let found = got.iter().any(|d| {
            d.class == class
                && (d.score - score).abs() <= 2e-3
                && d.bbox.iter().zip(&bbox).all(|(a, b)| (a - b).abs() <= 2e-3)
        });
        assert!(found, "{what}: {w} not among {show:?}");
    }
}

#[test]
fn ssd_matches_the_numpy_decoder_on_onnxruntime_outputs() {
    let dir = repo().join("models/ssdlite-mobilenet-v2");
    let graph = dir.join("ssdlite-mobilenet-v2.nnef.tgz");
    let model = Model::load(&graph, &LoadOptions::default()).unwrap();
    let sidecar = Sidecar::find(&graph).unwrap().expect("the shipped sidecar");
    let reference = reference("ssdlite.expected.json");
    let images = array("ssdlite.images.npy");
    let n = images.shape()[0];
    let images = images.cast_to::<f32>().unwrap().into_owned();
    let mut checked = 0;
    for run in reference["results"].as_array().unwrap() {
        let mut task = task(
            &sidecar,
            &model,
            run["score_threshold"].as_f64().unwrap() as f32,
            run["iou_threshold"].as_f64().unwrap() as f32,
            run["max_detections"].as_u64().unwrap() as usize,
        );
        for (i, image) in run["images"].as_array().unwrap().iter().enumerate() {
            assert!(i < n);
            let sample = images.slice(0, i, i + 1).unwrap();
            let view = sample.try_as_plain_ram().unwrap();
            let pixels: Vec<f32> = view
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|v| v / 127.5 - 1.0)
                .collect();
            let input = Tensor::from_shape(sample.shape(), &pixels).unwrap();
            let got = detect(&model, &mut task, input);
            let what = format!("{} at score ≥ {}", image["name"], run["score_threshold"]);
            assert_same(&what, &got, image["detections"].as_array().unwrap());
            checked += got.len();
        }
    }
    assert!(checked >= 4, "the references hold people: {checked}");
}

fn yolo(version: u8) {
    let reference = reference(&format!("yolov{version}.expected.json"));
    let graph = repo().join(format!(
        "tests/fixtures/ref/yolov{version}-synthetic.nnef.tgz"
    ));
    let model = Model::load(&graph, &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sidecar = dir.path().join("y.kestrel.toml");
    std::fs::write(
        &sidecar,
        format!(
            "task = \"detect\"\nlabels = [\"a\", \"b\", \"c\"]\n[detect]\nhead = \"yolo\"\n\
             version = {version}\ncoords = \"pixels\"\n"
        ),
    )
    .unwrap();
    let sidecar = Sidecar::load(&sidecar).unwrap();
    let mut task = task(
        &sidecar,
        &model,
        reference["score_threshold"].as_f64().unwrap() as f32,
        reference["iou_threshold"].as_f64().unwrap() as f32,
        reference["max_detections"].as_u64().unwrap() as usize,
    );
    let inputs = array(&format!("yolov{version}.input.npy"));
    let mut checked = 0;
    for (i, image) in reference["images"].as_array().unwrap().iter().enumerate() {
        let input = inputs.slice(0, i, i + 1).unwrap();
        let got = detect(&model, &mut task, input);
        let what = format!("yolov{version} {}", image["name"]);
        assert_same(&what, &got, image["detections"].as_array().unwrap());
        checked += got.len();
    }
    assert!(
        checked >= 3,
        "yolov{version}: the references hold boxes: {checked}"
    );
}

#[test]
fn yolov5_rows_match_the_numpy_decoder() {
    yolo(5);
}

#[test]
fn yolov8_columns_match_the_numpy_decoder() {
    yolo(8);
}
