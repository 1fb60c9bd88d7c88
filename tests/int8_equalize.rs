//! Detector-style int8 on `int8-equalize.onnx`, a MobileNet-style chain whose depthwise
//! outputs span 10^4 in range (tests/fixtures/make_int8_equalize.py).
//!
//! Cross-layer equalization (quantize/src/int8/equalize.rs): the equalized float graph
//! computes what the source does, and int8 with equalization is closer to float than without;
//! the collapse fixture that one activation scale destroys is rescued by it.
//!
//! 16-bit layer inputs (`--activation-bits`) and GPTQ rounding, without equalization: pw3's
//! inputs, which one 8-bit step crushes, are rescued by 16 bits; the default finds that alone,
//! the graph says so and the runtime runs it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kestrel_quantize::int8::data::CalibSource;
use kestrel_quantize::int8::equalize::equalize;
use kestrel_quantize::int8::images::Preprocess;
use kestrel_quantize::int8::layers::find_layers;
use kestrel_quantize::int8::metrics::ErrorSums;
use kestrel_quantize::int8::{convert_int8, ActivationBits, Int8Options, Int8Report};
use kestrel_quantize::load::load_onnx;
use kestrel_runtime::io::npy::write_arrays;
use kestrel_runtime::tract_core::prelude::*;
use kestrel_runtime::{LoadOptions, Model};

fn fixture(name: &str) -> PathBuf {
    kestrel::fixtures_dir().join("onnx").join(name)
}

/// `n` inputs `[1, 3, 16, 16]` of a fixed pseudo-random normal-ish pattern.
fn samples(n: usize) -> Vec<Tensor> {
    let all = kestrel::normalish(n * 3 * 16 * 16, 0x2545_f491_4f6c_dd1d);
    all.chunks_exact(3 * 16 * 16)
        .map(|v| {
            tract_ndarray::Array4::from_shape_vec((1, 3, 16, 16), v.to_vec())
                .unwrap()
                .into_tensor()
        })
        .collect()
}

fn calibration(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("calib.npy");
    let all: Vec<f32> = samples(n).iter().flat_map(|t| values(t).to_vec()).collect();
    let t = tract_ndarray::Array4::from_shape_vec((n, 3, 16, 16), all).unwrap();
    write_arrays(&path, &[("calib", &t.into_tensor())]).unwrap();
    path
}

fn values(t: &Tensor) -> &[f32] {
    t.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap()
}

fn run(model: &TypedModel, input: &Tensor) -> Tensor {
    let m = Model::from_typed(
        "t",
        model.clone(),
        &LoadOptions { threads: Some(1) },
        Instant::now(),
    )
    .unwrap();
    m.run(tvec!(input.clone().into_tvalue())).unwrap()[0]
        .clone()
        .into_tensor()
}

#[test]
fn the_equalized_graph_computes_the_same_function() {
    let float = load_onnx(&fixture("int8-equalize.onnx"), &[])
        .unwrap()
        .into_decluttered()
        .unwrap();
    let layers = find_layers(&float).unwrap();
    let calib = samples(24);
    let quantized = |l: &kestrel_quantize::int8::layers::Layer| !l.is_depthwise();
    let eq = equalize(&float, &layers, &quantized, &calib, 1)
        .unwrap()
        .expect("pairs to equalize");
    let pairs: HashSet<(String, String)> = eq
        .pairs
        .iter()
        .map(|p| (p.producer.clone(), p.consumer.clone()))
        .collect();
    assert!(
        pairs.contains(&("dw2".into(), "pw3.einsum".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("dw1".into(), "pw2.einsum".into())),
        "{pairs:?}"
    );
    let dw2 = eq.pairs.iter().find(|p| p.producer == "dw2").unwrap();
    // Each channel's activation range and weight column range meet at their geometric mean.
    assert!(
        dw2.act_spread_after * 3.0 < dw2.act_spread_before
            && (dw2.act_spread_after - dw2.weight_spread_after).abs() < 1e-3 * dw2.act_spread_after,
        "activation ranges balanced: {dw2:?}"
    );
    assert!(dw2.shifted > 0, "dw2's offsets absorbed: {dw2:?}");
    // On the calibration inputs every absorbed offset is exact: only float rounding differs.
    // On others, a ReLU producer's channel may dip below the offset it gave away (the
    // documented approximation of bias absorption): still far below int8's own error.
    let sqnr = |input: &Tensor| {
        let (a, b) = (run(&float, input), run(&eq.graph, input));
        let mut e = ErrorSums::default();
        e.add(values(&a), values(&b));
        e.sqnr_db()
    };
    for input in &calib[..4] {
        assert!(sqnr(input) > 100.0, "calibration input: {} dB", sqnr(input));
    }
    for input in samples(30).iter().skip(24) {
        assert!(sqnr(input) > 60.0, "held-out input: {} dB", sqnr(input));
    }
}

#[test]
fn equalization_raises_the_int8_sqnr_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let calib = calibration(dir.path(), 40);
    let options = |equalize: bool| {
        let mut o = Int8Options::new(CalibSource {
            path: calib.clone(),
            preprocess: Preprocess::default(),
            count: 0,
        });
        o.equalize = equalize;
        o.force = true;
        // Equalization is for 8-bit inputs (16-bit ones are tests/int8_wide.rs).
        o.activation_bits = ActivationBits::Eight;
        o
    };
    let src = fixture("int8-equalize.onnx");
    let off = convert_int8(&src, &dir.path().join("off.nnef.tgz"), &options(false)).unwrap();
    let on = convert_int8(&src, &dir.path().join("on.nnef.tgz"), &options(true)).unwrap();
    let (a, b) = (off.outputs[0].sqnr_db, on.outputs[0].sqnr_db);
    assert!(
        on.equalization.applied && b > a + 3.0,
        "SQNR without {a:.1} dB, with {b:.1} dB: {}",
        on.equalization.decision
    );
    assert!(!off.equalization.applied);
    let text = on.to_text();
    assert!(
        text.contains("equalization kept") && text.contains("dw2 -> pw3"),
        "{text}"
    );
    // Layer names survive equalization: the same layers are int8 in both graphs.
    let int8 = |r: &kestrel_quantize::int8::Int8Report| -> Vec<String> {
        r.layers
            .iter()
            .filter(|l| l.int8)
            .map(|l| l.name.clone())
            .collect()
    };
    assert_eq!(int8(&off), int8(&on));
}

#[test]
fn equalization_rescues_the_collapse_fixture() {
    // One constant channel of 1000 beside a signal of 1e-3 (make_int8_collapse.py): without
    // equalization the signal rounds to zero (tests/int8_convert.rs checks the refusal).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calib.npy");
    let values: Vec<f32> = (0..5 * 128)
        .map(|i| ((i * 37) % 101) as f32 - 50.0)
        .collect();
    let t = tract_ndarray::Array4::from_shape_vec((5, 2, 8, 8), values).unwrap();
    write_arrays(&path, &[("calib", &t.into_tensor())]).unwrap();
    let mut o = Int8Options::new(CalibSource {
        path,
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.int8_spatial = true; // conv_b (3×3) is the layer that collapses
    let out = dir.path().join("rescued.nnef.tgz");
    let r = convert_int8(&fixture("int8-collapse.onnx"), &out, &o).unwrap();
    assert!(r.equalization.applied, "{}", r.equalization.decision);
    assert!(
        r.outputs[0].sqnr_db >= 30.0 && !r.forced && out.is_file(),
        "{}",
        r.to_text()
    );
}

/// `n` deterministic inputs `[n, 3, 16, 16]` in one .npy (other values than `samples`).
fn wide_calibration(dir: &Path, n: usize) -> PathBuf {
    let v = kestrel::normalish(n * 3 * 16 * 16, 0x9e37_79b9_7f4a_7c15);
    let path = dir.join("calib.npy");
    let t = tract_ndarray::Array4::from_shape_vec((n, 3, 16, 16), v).unwrap();
    write_arrays(&path, &[("calib", &t.into_tensor())]).unwrap();
    path
}

fn convert(dir: &Path, name: &str, set: impl Fn(&mut Int8Options)) -> Int8Report {
    let mut o = Int8Options::new(CalibSource {
        path: wide_calibration(dir, 40),
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.equalize = false;
    set(&mut o);
    convert_int8(
        &fixture("int8-equalize.onnx"),
        &dir.join(format!("{name}.nnef.tar")),
        &o,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn sixteen_bit_inputs_rescue_what_eight_bits_crush() {
    let dir = tempfile::tempdir().unwrap();
    let eight = convert(dir.path(), "eight", |o| {
        o.activation_bits = ActivationBits::Eight;
        o.force = true;
    });
    let sixteen = convert(dir.path(), "sixteen", |o| {
        o.activation_bits = ActivationBits::Sixteen
    });
    let (a, b) = (eight.outputs[0].sqnr_db, sixteen.outputs[0].sqnr_db);
    assert!(b > a + 10.0, "8-bit {a:.1} dB, 16-bit {b:.1} dB");
    let wide: Vec<&str> = sixteen
        .layers
        .iter()
        .filter(|l| l.input_bits == Some(16))
        .map(|l| l.name.as_str())
        .collect();
    assert!(wide.contains(&"pw3.einsum"), "{}", sixteen.to_text());
    assert_eq!(wide.len(), sixteen.wide_inputs.len());
    assert!(eight.wide_inputs.is_empty());
    assert!(sixteen.to_text().contains("a16"), "{}", sixteen.to_text());
    // The graph written says so, and reloads (the converter compares the reloaded graph).
    let text = nnef_text(&dir.path().join("sixteen.nnef.tar"));
    assert!(text.contains("input_bits = 16"), "{text}");
}

#[test]
fn the_default_widens_only_what_the_floor_needs() {
    // 8-bit inputs reach about 34 dB here: a 36 dB floor needs 16 bits somewhere.
    let dir = tempfile::tempdir().unwrap();
    let r = convert(dir.path(), "auto", |o| o.sqnr_floor_db = 36.0);
    assert!(!r.forced && r.outputs[0].sqnr_db >= 36.0, "{}", r.to_text());
    assert!(
        r.wide_inputs.contains(&"pw3.einsum".to_string()),
        "{}",
        r.to_text()
    );
    let int8 = r.layers.iter().filter(|l| l.int8).count();
    assert!(
        r.wide_inputs.len() < int8,
        "not every layer: {}",
        r.to_text()
    );
}

#[test]
fn gptq_rounding_is_closer_to_float_than_nearest_with_16_bit_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let sqnr = |gptq: bool| {
        let r = convert(dir.path(), if gptq { "gptq" } else { "nearest" }, |o| {
            o.activation_bits = ActivationBits::Sixteen;
            o.gptq = gptq;
        });
        r.outputs[0].sqnr_db
    };
    let (nearest, gptq) = (sqnr(false), sqnr(true));
    // Once inputs are 16-bit the weights' rounding is what is left (the unit tests of
    // `rounding` show the gain on strongly correlated inputs; these are nearly independent).
    assert!(gptq > nearest, "nearest {nearest:.1} dB, GPTQ {gptq:.1} dB");
}

fn nnef_text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}
