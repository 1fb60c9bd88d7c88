//! The shipped MNIST binary network (`models/mnist-bnn`), end to end on the whole t10k set:
//! the converted graph (binary ops, Kestrel runtime) against its ONNX source (float ops,
//! tract-onnx), image by image — identical decisions on all 10 000 images, logits within 1e-4
//! of their magnitude — and the accuracy the model card states.

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

/// The accuracy written in the model card (`t10k accuracy (kestrel): NN.NN%`).
fn card_accuracy() -> f64 {
    let card = std::fs::read_to_string(model_dir().join("README.md")).unwrap();
    let line = card
        .lines()
        .find(|l| l.contains("t10k accuracy (kestrel)"))
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
    let onnx = model_dir().join("mnist-bnn.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist-bnn.nnef.tgz");
    let report = convert(&onnx, &out, &ConvertOptions::default()).unwrap();
    let binary = report.binary.unwrap();
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
    eprintln!("mnist-bnn t10k accuracy (kestrel): {accuracy:.2}%");
    assert!(
        (accuracy - card_accuracy()).abs() < 0.005,
        "the card says {}%, measured {accuracy:.2}%",
        card_accuracy()
    );
}
