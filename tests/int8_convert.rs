//! int8 end to end: ONNX → `convert_int8` (calibrate, rewrite, write, reload) → runtime load →
//! infer → compare with onnxruntime's float outputs; the collapse guard; bad calibration input.
//!
//! Documented accuracy (per-channel weights, min/max calibration on the fixture's samples):
//! tiny-fire's softmax output within 25 dB SQNR of onnxruntime's float output (measured
//! ~39 dB), same arg-max on every sample.

use std::path::Path;

use kestrel::Fixture;
use kestrel_quantize::int8::calib::Method;
use kestrel_quantize::int8::data::CalibSource;
use kestrel_quantize::int8::images::Preprocess;
use kestrel_quantize::int8::metrics::{argmax, ErrorSums};
use kestrel_quantize::int8::{convert_int8, ActivationBits, Int8Error, Int8Options, KeepFloat};
use kestrel_runtime::io::npy::{read_arrays, write_arrays};
use kestrel_runtime::tract_core::prelude::*;
use kestrel_runtime::{infer, LoadOptions, Model};

/// End-to-end SQNR the int8 tiny-fire must reach against onnxruntime's float output.
const TINY_FIRE_MIN_SQNR_DB: f64 = 25.0;

fn options(fx: &Fixture, calib: &Path, method: Method) -> Int8Options {
    let mut o = Int8Options::new(CalibSource {
        path: calib.to_path_buf(),
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.input_shapes = vec![fx.input_shape_arg().parse().unwrap()];
    o.method = method;
    // tiny-fire's 3×3 convolutions in int8 too (float by default): these tests measure int8.
    o.int8_spatial = true;
    o
}

fn sqnr_against_reference(fx: &Fixture, graph: &Path) -> (f64, usize, usize) {
    let model = Model::load(graph, &LoadOptions { threads: Some(1) }).unwrap();
    let (_, input) = read_arrays(&fx.input).unwrap().remove(0);
    let got = infer::infer(&model, &[input]).unwrap().remove(0);
    let (_, want) = read_arrays(&fx.expected).unwrap().remove(0);
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (
        got.try_as_plain_ram().unwrap(),
        want.try_as_plain_ram().unwrap(),
    );
    let (g, w) = (g.as_slice::<f32>().unwrap(), w.as_slice::<f32>().unwrap());
    let mut sums = ErrorSums::default();
    sums.add(w, g);
    let row = want.shape()[1];
    let agree = w
        .chunks(row)
        .zip(g.chunks(row))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    (sums.sqnr_db(), agree, want.shape()[0])
}

#[test]
fn tiny_fire_int8_runs_in_the_runtime_close_to_float() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.int8.nnef.tar");
    let report = convert_int8(&fx.onnx, &out, &options(&fx, &fx.input, Method::MinMax)).unwrap();
    assert!(out.is_file());
    assert!(report.layers.len() >= 6, "{report:?}");
    // Every layer int8 but the stem conv on the image, float by default (--int8-stem).
    for l in &report.layers {
        assert_eq!(l.int8, l.name != "conv1", "{}", report.to_text());
    }
    assert!(report.reload_relative_diff <= 1e-4);
    assert!(
        report.outputs[0].sqnr_db >= TINY_FIRE_MIN_SQNR_DB,
        "{}",
        report.to_text()
    );
    // The file holds real int8 ops, not fake-quantized float: Kestrel's int8 convolution for
    // the 3×3 convs, its fused product for the 1×1 convs and the dense layers.
    let graph = nnef_text(&out);
    assert!(graph.contains("kestrel_int8_conv("), "{graph}");
    assert!(graph.contains("kestrel_int8_linear("), "{graph}");
    assert!(!graph.contains("tract_core_einsum_q"), "{graph}");
    assert!(!graph.contains("tract_core_qconv"), "{graph}");

    let (sqnr, agree, n) = sqnr_against_reference(&fx, &out);
    assert!(
        sqnr >= TINY_FIRE_MIN_SQNR_DB,
        "int8 vs onnxruntime float: {sqnr:.1} dB"
    );
    assert_eq!(agree, n, "top-1 differs from float");

    // The stem too (`--int8-stem`): Kestrel's int8 convolution quantizing the image per
    // channel, every layer int8.
    let mut o = options(&fx, &fx.input, Method::MinMax);
    o.int8_stem = true;
    let stem_out = dir.path().join("tiny.stem.nnef.tar");
    let stem_report = convert_int8(&fx.onnx, &stem_out, &o).unwrap();
    assert!(
        stem_report.layers.iter().all(|l| l.int8),
        "{}",
        stem_report.to_text()
    );
    let graph = nnef_text(&stem_out);
    assert!(graph.contains("input_scales"), "{graph}");
    let (stem_sqnr, stem_agree, _) = sqnr_against_reference(&fx, &stem_out);
    assert!(
        stem_sqnr >= TINY_FIRE_MIN_SQNR_DB,
        "int8 stem: {stem_sqnr:.1} dB"
    );
    assert_eq!(stem_agree, n, "int8 stem: top-1 differs from float");

    // tract's own quantized ops instead (`--tract-int8-ops`): the same quantization but for
    // the 3×3 convolutions' inputs, one range per tensor where Kestrel's op quantizes them per
    // channel, so Kestrel's graph is at least as accurate (weights rounded to nearest on both
    // sides: the stem is int8 here, and beside GPTQ-rounded layers its error would dominate
    // the comparison).
    let mut o = options(&fx, &fx.input, Method::MinMax);
    o.gptq = false;
    let nearest_out = dir.path().join("tiny.nearest.nnef.tar");
    convert_int8(&fx.onnx, &nearest_out, &o).unwrap();
    let (sqnr, _, _) = sqnr_against_reference(&fx, &nearest_out);
    let tract_out = dir.path().join("tiny.tract-ops.nnef.tar");
    o.tract_ops = true;
    o.int8_stem = true;
    let tract_report = convert_int8(&fx.onnx, &tract_out, &o).unwrap();
    assert!(tract_report.layers.iter().all(|l| l.int8));
    let graph = nnef_text(&tract_out);
    assert!(graph.contains("tract_core_einsum_q") && !graph.contains("kestrel_int8_linear("));
    assert!(graph.contains("tract_core_qconv") && !graph.contains("kestrel_int8_conv("));
    let (tract_sqnr, tract_agree, _) = sqnr_against_reference(&fx, &tract_out);
    assert_eq!(tract_agree, n);
    assert!(
        tract_sqnr >= TINY_FIRE_MIN_SQNR_DB && sqnr > tract_sqnr - 1.0,
        "fused {sqnr:.1} dB vs tract ops {tract_sqnr:.1} dB\n{}",
        tract_report.to_text()
    );
}

#[test]
fn every_calibration_method_and_per_tensor_weights_convert() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Lower bounds measured on this fixture's 3 calibration samples: entropy clips the
    // logits of so small a set hard (~19 dB), so it runs forced here.
    for (i, (method, min_db)) in [(Method::Entropy, 12.0), (Method::Percentile(99.9), 20.0)]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("m{i}.nnef.tgz"));
        let mut o = options(&fx, &fx.input, method);
        o.force = true;
        let r = convert_int8(&fx.onnx, &out, &o).unwrap();
        assert_eq!(r.method, method);
        assert!(
            r.outputs[0].sqnr_db >= min_db,
            "{method:?}: {}",
            r.to_text()
        );
    }
    let mut o = options(&fx, &fx.input, Method::MinMax);
    o.per_channel = false;
    let r = convert_int8(&fx.onnx, &dir.path().join("t.nnef.tgz"), &o).unwrap();
    assert!(!r.per_channel && r.outputs[0].sqnr_db > 0.0);
}

#[test]
fn keep_float_by_name_leaves_that_layer_in_float() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.nnef.tar");
    let mut o = options(&fx, &fx.input, Method::MinMax);
    o.keep_float = KeepFloat::Names(vec!["fc.ab".into()]);
    let r = convert_int8(&fx.onnx, &out, &o).unwrap();
    // The named layer, and the stem (float by default).
    assert_eq!(r.kept_float, vec!["conv1".to_string(), "fc.ab".to_string()]);
    let fc = r.layers.iter().find(|l| l.name == "fc.ab").unwrap();
    assert!(!fc.int8);
    assert_eq!(nnef_text(&out).matches("kestrel_int8_linear(").count(), 2);
}

/// A model built so that int8 collapses (`tests/fixtures/make_int8_collapse.py`).
fn collapse_fixture() -> std::path::PathBuf {
    kestrel::fixtures_dir()
        .join("onnx")
        .join("int8-collapse.onnx")
}

fn collapse_calibration(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("calib.npy");
    let values: Vec<f32> = (0..5 * 128)
        .map(|i| ((i * 37) % 101) as f32 - 50.0)
        .collect();
    let t = tract_ndarray::Array4::from_shape_vec((5, 2, 8, 8), values).unwrap();
    write_arrays(&path, &[("calib", &t.into_tensor())]).unwrap();
    path
}

/// Equalization off: it rescues this model (tests/int8_equalize.rs), and these tests are about
/// the refusal.
fn collapse_options(dir: &Path) -> Int8Options {
    let mut o = Int8Options::new(CalibSource {
        path: collapse_calibration(dir),
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.equalize = false;
    o.int8_spatial = true;
    o.activation_bits = ActivationBits::Eight;
    o
}

#[test]
fn a_collapsing_model_is_refused_and_nothing_written() {
    // Every layer int8 (`--keep-float none`): below the floor, a refusal.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("collapse.nnef.tgz");
    let mut o = collapse_options(dir.path());
    o.keep_float = KeepFloat::None;
    let err = convert_int8(&collapse_fixture(), &out, &o).unwrap_err();
    match &err {
        Int8Error::Collapse {
            sqnr_db, floor_db, ..
        } => {
            assert!(*sqnr_db < 5.0 && *floor_db == 25.0, "{err}")
        }
        other => panic!("expected a collapse, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("nothing written"), "{msg}");
    assert!(
        msg.contains("--keep-float auto")
            && msg.contains("without --no-equalize")
            && msg.contains("without --activation-bits 8"),
        "the hint offers what was not tried: {msg}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only calib.npy"
    );

    // --force writes it and says so.
    let mut o = collapse_options(dir.path());
    o.keep_float = KeepFloat::None;
    o.force = true;
    let r = convert_int8(&collapse_fixture(), &out, &o).unwrap();
    assert!(r.forced && out.is_file());
    assert!(r.to_text().contains("WARNING"));
}

#[test]
fn kxk_convolutions_stay_float_by_default() {
    // tiny-fire's 3×3 convolutions (`Conv` after declutter; its 1×1 ones become `EinSum`)
    // stay float unless --int8-spatial: tract's im2col + int8 product costs more than them.
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fx, &fx.input, Method::MinMax);
    o.int8_spatial = false;
    o.force = true;
    let r = convert_int8(&fx.onnx, &dir.path().join("t.nnef.tgz"), &o).unwrap();
    let convs: Vec<_> = r.layers.iter().filter(|l| l.op == "Conv").collect();
    assert!(
        !convs.is_empty() && convs.iter().all(|l| !l.int8),
        "{}",
        r.to_text()
    );
    assert!(r.layers.iter().any(|l| l.int8), "{}", r.to_text());
}

#[test]
fn keep_float_auto_always_lands() {
    // The collapse fixture without equalization: no int8 layer survives the floor, so `auto`
    // keeps every layer float, writes the graph and says so; its hint is never printed.
    // The default (`Floor`) lands the same way.
    for keep in [KeepFloat::Floor, KeepFloat::Fewest, KeepFloat::Auto(5.0)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("auto.nnef.tgz");
        let mut o = collapse_options(dir.path());
        o.keep_float = keep.clone();
        let r = convert_int8(&collapse_fixture(), &out, &o)
            .unwrap_or_else(|e| panic!("{keep:?} refused: {e}"));
        assert!(out.is_file() && !r.forced, "{keep:?}");
        assert!(r.outputs[0].sqnr_db >= 25.0, "{}", r.to_text());
        assert!(r.layers.iter().all(|l| !l.int8), "{}", r.to_text());
    }
}

#[test]
fn a_detector_sidecar_measures_box_agreement() {
    // The synthetic YOLOv5 head on 3 real pictures (tests/fixtures/make_detect_reference.py):
    // two calibrate, one is held out; the sidecar's decoder runs on both graphs' outputs.
    let dir = tempfile::tempdir().unwrap();
    let onnx = kestrel::fixtures_dir()
        .join("onnx")
        .join("yolov5-synthetic.onnx");
    let calib = kestrel::fixtures_dir().join("ref").join("yolov5.input.npy");
    let sidecar = dir.path().join("y.kestrel.toml");
    std::fs::write(
        &sidecar,
        "task = \"detect\"\nlabels = [\"a\", \"b\", \"c\"]\n[detect]\nhead = \"yolo\"\n\
         version = 5\ncoords = \"pixels\"\nscore_threshold = 0.25\n",
    )
    .unwrap();
    let mut o = Int8Options::new(CalibSource {
        path: calib,
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.sidecar = Some(sidecar.clone());
    o.force = true;
    let out = dir.path().join("y.nnef.tgz");
    let r = convert_int8(&onnx, &out, &o).unwrap();
    let d = r.detections.as_ref().expect("a box check");
    assert!(d.reference_boxes > 0, "{}", r.to_text());
    assert!(d.matched <= d.reference_boxes.min(d.int8_boxes));
    assert!(
        r.to_text().contains("detections (sidecar decoder"),
        "{}",
        r.to_text()
    );
    assert_eq!(r.top1_agreement, None, "not a classifier");

    // A sidecar that does not fit the model is bad input naming the sidecar.
    std::fs::write(
        &sidecar,
        "task = \"detect\"\nlabels = [\"a\"]\n[detect]\nhead = \"ssd\"\nboxes_output = 0\n\
         scores_output = 0\n[detect.anchors]\ninput_size = [64, 64]\nnum_layers = 1\n\
         strides = [8]\n",
    )
    .unwrap();
    let e = convert_int8(&onnx, &dir.path().join("z.nnef.tgz"), &o).unwrap_err();
    assert!(e.is_bad_input(), "{e}");
    assert!(e.to_string().contains("y.kestrel.toml"), "{e}");
}

#[test]
fn bad_calibration_input_names_the_file() {
    let fx = Fixture::load("tiny-fire").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.nnef.tgz");
    // An array of the wrong shape.
    let wrong = dir.path().join("wrong.npy");
    let t = tract_ndarray::Array4::<f32>::zeros((2, 3, 8, 8));
    write_arrays(&wrong, &[("wrong", &t.into_tensor())]).unwrap();
    let e = convert_int8(&fx.onnx, &out, &options(&fx, &wrong, Method::MinMax)).unwrap_err();
    assert!(e.is_bad_input());
    let msg = e.to_string();
    assert!(
        msg.contains("wrong.npy") && msg.contains("[2, 3, 8, 8]"),
        "{msg}"
    );
    // One sample: nothing left to hold out.
    let one = dir.path().join("one.npy");
    let t = tract_ndarray::Array4::<f32>::zeros((1, 1, 28, 28));
    write_arrays(&one, &[("one", &t.into_tensor())]).unwrap();
    let e = convert_int8(&fx.onnx, &out, &options(&fx, &one, Method::MinMax)).unwrap_err();
    assert!(e.is_bad_input());
    let msg = e.to_string();
    assert!(
        msg.contains("one.npy") && msg.contains("at least 2"),
        "{msg}"
    );
    // A file that is not an array.
    let junk = dir.path().join("junk.npz");
    std::fs::write(&junk, b"hello").unwrap();
    let msg = convert_int8(&fx.onnx, &out, &options(&fx, &junk, Method::MinMax))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("junk.npz"), "{msg}");
    // A missing folder.
    let missing = dir.path().join("no-such-dir");
    let msg = convert_int8(&fx.onnx, &out, &options(&fx, &missing, Method::MinMax))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no-such-dir"), "{msg}");
    assert!(!out.exists());
}

/// The graph text of an uncompressed NNEF tar (the tar stores it verbatim).
fn nnef_text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}
