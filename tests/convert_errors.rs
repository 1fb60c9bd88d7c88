//! The converter refuses bad input with a message naming the file and the problem, and
//! leaves no output file behind.

use std::path::Path;

use kestrel::Fixture;
use kestrel_quantize::{convert, load::InputShape, ConvertError, ConvertOptions};

fn only_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn missing_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnef.tgz");
    let err = convert(
        Path::new("/no/such/model.onnx"),
        &out,
        &ConvertOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::NotFound { .. }));
    assert!(err.to_string().contains("/no/such/model.onnx"), "{err}");
    assert!(only_entries(dir.path()).is_empty());
}

#[test]
fn corrupt_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"\x08\x07this is not a protobuf model at all").unwrap();
    let out = dir.path().join("m.nnef.tgz");
    let err = convert(&bad, &out, &ConvertOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bad.onnx"), "{err}");
    assert_eq!(only_entries(dir.path()), vec!["bad.onnx".to_string()]);
}

#[test]
fn open_dimensions_need_an_input_shape() {
    // ppocr-cls leaves height and width open.
    let fx = Fixture::load("ppocr-cls").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnef.tgz");
    let err = convert(&fx.onnx, &out, &ConvertOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--input-shape x=") && msg.contains("ppocr-cls.onnx"),
        "{msg}"
    );
    assert!(only_entries(dir.path()).is_empty());
}

#[test]
fn input_shape_for_an_unknown_input() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnef.tgz");
    let shape: InputShape = "nope=1,1,28,28".parse().unwrap();
    let options = ConvertOptions {
        input_shapes: vec![shape],
        ..ConvertOptions::default()
    };
    let msg = convert(&fx.onnx, &out, &options).unwrap_err().to_string();
    assert!(
        msg.contains("'nope'") && msg.contains("inputs are: x"),
        "{msg}"
    );
}

#[test]
fn wrong_output_extension() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let msg = convert(&fx.onnx, &out, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains(".nnef.tgz") && msg.contains("m.onnx"), "{msg}");
    assert!(only_entries(dir.path()).is_empty());
}

#[test]
fn failed_verification_leaves_no_file() {
    // A negative tolerance, which no graph can meet, forces the failure path.
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnef.tgz");
    let options = ConvertOptions {
        tolerance: -1.0,
        ..ConvertOptions::default()
    };
    let err = convert(&fx.onnx, &out, &options).unwrap_err();
    assert!(matches!(err, ConvertError::Verify { .. }), "{err}");
    assert!(err.to_string().contains("nothing written"), "{err}");
    assert!(
        only_entries(dir.path()).is_empty(),
        "{:?}",
        only_entries(dir.path())
    );
}
