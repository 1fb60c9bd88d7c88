//! The shipped MNIST binary networks (`models/mnist-bnn`), end to end on the whole t10k set:
//! the converted graph (binary ops, Kestrel runtime) against its ONNX source (float ops,
//! tract-onnx), image by image — identical decisions on all 10 000 images, logits within 1e-4
//! of their magnitude — and the accuracy the model card states. Two models: the plain one
//! (every layer dense), and the MST-regularised one (`train.py --mst-tie`), whose binary convs
//! the converter turns into MST trees: there the test proves the MST kernels exact on a real
//! network.

use std::path::PathBuf;
use std::time::Instant;

use kestrel::{argmax, max_abs_diff, mnist_t10k};
use kestrel_quantize::load::load_onnx;
use kestrel_quantize::{convert, ConvertOptions};
use kestrel_runtime::{infer, LoadOptions, Model};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("mnist-bnn")
}

/// The accuracy written in the model card (`KEY: NN.NN%`).
fn card_accuracy(key: &str) -> f64 {
    let card = std::fs::read_to_string(model_dir().join("README.md")).unwrap();
    let line = card
        .lines()
        .find(|l| l.contains(key))
        .expect("the card states the measured accuracy");
    let value = line
        .split(':')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(['%', '*', ' ']);
    value.trim_start_matches('*').parse().unwrap()
}

#[test]
fn converted_mnist_bnn_equals_its_source_on_all_of_t10k() {
    let report = check_on_t10k("mnist-bnn.onnx", "t10k accuracy (kestrel)");
    assert!(
        report.mst.iter().all(|l| l.kernel == "dense"),
        "{:?}",
        report.mst
    );
}

#[test]
fn mst_mnist_bnn_runs_its_trees_and_equals_its_source_on_all_of_t10k() {
    let report = check_on_t10k("mnist-bnn-mst.onnx", "t10k accuracy (kestrel, MST model)");
    let kernels: Vec<&str> = report.mst.iter().map(|l| l.kernel.as_str()).collect();
    assert_eq!(kernels, ["mst", "mst", "dense"], "{:?}", report.mst);
    // The convs execute at most half the dense word-ops (fc1 stays dense; per inference the
    // convs run 196 and 49 rows, fc1 one, so the whole network is below half too).
    for l in &report.mst[..2] {
        assert!(l.word_ops * 2 <= l.dense_word_ops, "{l:?}");
    }
}

/// Converts `models/mnist-bnn/NAME` with the default options and compares it with its source
/// on all of t10k; the accuracy must be the card's line `KEY: NN.NN%`.
fn check_on_t10k(name: &str, key: &str) -> kestrel_quantize::ConvertReport {
    let onnx = model_dir().join(name);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("converted.nnef.tgz");
    let report = convert(&onnx, &out, &ConvertOptions::default()).unwrap();
    let binary = report.binary.as_ref().unwrap();
    assert_eq!(
        binary.layers.iter().filter(|l| l.bit_macs > 0).count(),
        3,
        "{binary:?}"
    );

    let (images, labels) = mnist_t10k().unwrap();
    let options = LoadOptions { threads: Some(2) };
    let converted = Model::load(&out, &options).unwrap();
    let source = Model::from_typed(
        "mnist-bnn.onnx",
        load_onnx(&onnx, &[]).unwrap(),
        &options,
        Instant::now(),
    )
    .unwrap();
    let got = infer::infer(&converted, std::slice::from_ref(&images))
        .unwrap()
        .remove(0);
    let want = infer::infer(&source, &[images]).unwrap().remove(0);
    let (g, w) = (
        got.try_as_plain_ram().unwrap(),
        want.try_as_plain_ram().unwrap(),
    );
    let (g, w) = (g.as_slice::<f32>().unwrap(), w.as_slice::<f32>().unwrap());
    assert_eq!(g.len(), labels.len() * 10);
    let mut correct = 0;
    for (i, ((gs, ws), label)) in g.chunks(10).zip(w.chunks(10)).zip(&labels).enumerate() {
        assert_eq!(
            argmax(gs),
            argmax(ws),
            "image {i}: decisions differ: {gs:?} vs {ws:?}"
        );
        let (worst, scale) = max_abs_diff(gs, ws);
        assert!(
            worst <= 1e-4 * scale,
            "image {i}: logits differ by {worst} (scale {scale})"
        );
        correct += (argmax(gs) == *label as usize) as usize;
    }
    let accuracy = 100.0 * correct as f64 / labels.len() as f64;
    eprintln!("{name} t10k accuracy (kestrel): {accuracy:.2}%");
    assert!(
        (accuracy - card_accuracy(key)).abs() < 0.005,
        "{name}: the card says {}%, measured {accuracy:.2}%",
        card_accuracy(key)
    );
    report
}
