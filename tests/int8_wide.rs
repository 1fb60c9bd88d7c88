//! 16-bit layer inputs (`--activation-bits`) and error-compensating weight rounding on
//! `int8-equalize.onnx` without equalization (tests/fixtures/make_int8_equalize.py): pw3 reads
//! depthwise outputs whose channel ranges are 10^4 apart, which one 8-bit step crushes.
//! 16 bits rescue it, the default finds that alone, the graph says so and the runtime runs it.

use std::path::{Path, PathBuf};

use kestrel_quantize::int8::data::CalibSource;
use kestrel_quantize::int8::images::Preprocess;
use kestrel_quantize::int8::{convert_int8, ActivationBits, Int8Options, Int8Report};
use kestrel_runtime::io::npy::write_arrays;
use kestrel_runtime::tract_core::prelude::*;

fn fixture() -> PathBuf {
    kestrel::fixtures_dir()
        .join("onnx")
        .join("int8-equalize.onnx")
}

/// `n` deterministic inputs `[n, 3, 16, 16]` in one .npy.
fn calibration(dir: &Path, n: usize) -> PathBuf {
    let v = kestrel::normalish(n * 3 * 16 * 16, 0x9e37_79b9_7f4a_7c15);
    let path = dir.join("calib.npy");
    let t = tract_ndarray::Array4::from_shape_vec((n, 3, 16, 16), v).unwrap();
    write_arrays(&path, &[("calib", &t.into_tensor())]).unwrap();
    path
}

fn convert(dir: &Path, name: &str, set: impl Fn(&mut Int8Options)) -> Int8Report {
    let mut o = Int8Options::new(CalibSource {
        path: calibration(dir, 40),
        preprocess: Preprocess::default(),
        count: 0,
    });
    o.equalize = false;
    set(&mut o);
    convert_int8(&fixture(), &dir.join(format!("{name}.nnef.tar")), &o)
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
    // 8-bit inputs reach about 34 dB here: a 40 dB floor needs 16 bits somewhere.
    let dir = tempfile::tempdir().unwrap();
    let r = convert(dir.path(), "auto", |o| o.sqnr_floor_db = 40.0);
    assert!(!r.forced && r.outputs[0].sqnr_db >= 40.0, "{}", r.to_text());
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
