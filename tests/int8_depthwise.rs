//! int8 depthwise layers (`--int8-depthwise`) on `int8-equalize.onnx`, a MobileNet-style chain
//! (stem, pw1, dw1 with ReLU6, pw2, dw2 linear, pw3; tests/fixtures/make_int8_equalize.py):
//! each depthwise layer becomes one `kestrel_int8_depthwise`, the ones an 8-bit int8 layer
//! reads write i8 (no float tensor between pw1, dw1 and pw2), and the graph lands above the
//! SQNR floor, checked by the converter against the runtime's reload; and on
//! `int8-dw-hardswish.onnx`, a depthwise layer reading a float HardSwish quantizes it per
//! channel.

use std::path::{Path, PathBuf};

use kestrel_quantize::int8::data::CalibSource;
use kestrel_quantize::int8::images::Preprocess;
use kestrel_quantize::int8::{convert_int8, ActivationBits, Int8Options, KeepFloat};
use kestrel_runtime::io::npy::write_arrays;
use kestrel_runtime::tract_core::prelude::*;

fn calibration(dir: &Path, n: usize) -> PathBuf {
    let v = kestrel::normalish(n * 3 * 16 * 16, 0x9e37_79b9_7f4a_7c15);
    let path = dir.join("calib.npy");
    let t = tract_ndarray::Array4::from_shape_vec((n, 3, 16, 16), v).unwrap();
    write_arrays(&path, &[("calib", &t.into_tensor())]).unwrap();
    path
}

/// Converts fixture `name` with every layer int8 (depthwise ones too, 8-bit inputs) at SQNR
/// floor `floor`, options changed by `more`: the report and the graph's text.
fn convert(
    name: &str,
    floor: f64,
    more: impl FnOnce(&mut Int8Options),
) -> (kestrel_quantize::int8::Int8Report, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Int8Options::new(CalibSource {
        path: calibration(dir.path(), 40),
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.int8_depthwise = true;
    o.activation_bits = ActivationBits::Eight;
    o.keep_float = KeepFloat::None;
    o.sqnr_floor_db = floor;
    more(&mut o);
    let out = dir.path().join("dw8.nnef.tar");
    let fixture = kestrel::fixtures_dir().join("onnx").join(name);
    let report = convert_int8(&fixture, &out, &o).unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
    (report, text)
}

/// The graph's `kestrel_int8_depthwise` lines.
fn depthwise_calls(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("kestrel_int8_depthwise("))
        .collect()
}

#[test]
fn depthwise_layers_run_in_int8_between_int8_layers() {
    let (report, text) = convert("int8-equalize.onnx", 20.0, |_| {});
    let calls = depthwise_calls(&text);
    assert_eq!(calls.len(), 2, "{text}");
    // dw1 (ReLU6, read by pw2) writes i8; the graph keeps no tract convolution for them.
    assert!(
        calls
            .iter()
            .any(|l| l.contains("output = \"int8\"") && l.contains("activation = \"clip\"")),
        "{calls:#?}"
    );
    assert!(!text.contains("kestrel_depthwise("), "{text}");
    // Both depthwise layers read i8 written by an int8 layer: one range per tensor.
    assert!(
        report.layers.iter().all(|l| l.input_channels.is_none()),
        "{}",
        report.to_text()
    );
    let dws: Vec<_> = report
        .layers
        .iter()
        .filter(|l| l.name.starts_with("dw"))
        .collect();
    assert!(
        dws.len() == 2 && dws.iter().all(|l| l.int8),
        "{}",
        report.to_text()
    );
    assert!(
        !report.forced && report.outputs[0].sqnr_db >= 20.0,
        "{}",
        report.to_text()
    );
}

/// `int8-dw-hardswish.onnx` (tests/fixtures/make_int8_dw_hardswish.py): dw1 reads a
/// HardSwish whose channels' ranges lie 10^3 apart. The converter moves the HardSwish into
/// `kestrel_int8_depthwise` and quantizes its output per channel there (`input_zero_points`,
/// `input_scales`), and the
/// graph lands above the default floor (29.2 dB; one range for all channels gives 5.4 dB).
#[test]
fn a_float_depthwise_input_is_quantized_per_channel() {
    let (report, text) = convert("int8-dw-hardswish.onnx", 25.0, |o| o.equalize = false);
    let calls = depthwise_calls(&text);
    assert_eq!(calls.len(), 1, "{text}");
    assert!(
        calls[0].contains("input_scales = [")
            && calls[0].contains("input_zero_points = [")
            && calls[0].contains("input_activation = \"hardswish\""),
        "{calls:#?}"
    );
    assert!(
        report
            .layers
            .iter()
            .filter(|l| l.name != "stem")
            .all(|l| l.int8)
            && !report.forced,
        "{}",
        report.to_text()
    );
    assert!(report.outputs[0].sqnr_db >= 25.0, "{}", report.to_text());
    // The report says which layer reads its input per channel, with one range per channel.
    let dw1 = report.layers.iter().find(|l| l.name == "dw1").unwrap();
    assert_eq!(dw1.input_channels.as_ref().map(Vec::len), Some(32));
    assert!(
        report
            .to_text()
            .contains("inputs quantized per channel: dw1"),
        "{}",
        report.to_text()
    );
}

/// With float depthwise layers (the default), an int8 graph lets them run in binary16 on
/// FEAT_FP16 cores (`precision = "f16"`: their calibrated ranges are small); the report says
/// so, and `depthwise_f16 = false` (`--depthwise-f32`) keeps them f32. Either way dw2 writes
/// the int8 codes of pw3, the 1×1 int8 layer reading it (`output = "int8"`); dw1 does not: a
/// per-channel clip of the equalization stands between it and pw2.
#[test]
fn float_depthwise_layers_of_an_int8_graph_may_run_in_binary16() {
    for half in [true, false] {
        let (report, text) = convert("int8-equalize.onnx", 20.0, |o| {
            o.int8_depthwise = false;
            o.depthwise_f16 = half;
        });
        let calls: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("kestrel_depthwise("))
            .collect();
        assert_eq!(calls.len(), 2, "{text}");
        let f16 = calls
            .iter()
            .filter(|l| l.contains("precision = \"f16\""))
            .count();
        assert_eq!(f16, if half { 2 } else { 0 }, "{calls:#?}");
        let codes: Vec<_> = calls
            .iter()
            .filter(|l| l.contains("output = \"int8\""))
            .collect();
        assert!(codes.len() == 1 && codes[0].contains("dw2 ="), "{calls:#?}");
        assert!(
            report
                .to_text()
                .contains("1 writing int8 codes for the int8 layer after it"),
            "{}",
            report.to_text()
        );
        assert_eq!(
            report
                .to_text()
                .contains("2 in binary16 on FEAT_FP16 cores"),
            half,
            "{}",
            report.to_text()
        );
    }
}
