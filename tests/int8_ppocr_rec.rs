//! The PP-OCRv4 text recognizer (CRNN/SVTR-style, `models/fetch_ppocr_rec.sh`, not committed:
//! 10 MB) converted float and int8 and run in the runtime. The tests are `#[ignore]`d because
//! the model is not in the repository: `.ci/run` fetches it and runs them with `--ignored`; by
//! hand, `sh models/fetch_ppocr_rec.sh` then
//! `cargo test -p kestrel --test int8_ppocr_rec -- --ignored` (the model read from
//! `/tmp/kestrel-models/ppocr_rec.onnx` or `$KESTREL_PPOCR_REC`; the text lines need Pillow).
//!
//! int8 calibration: text lines rendered by `models/make_text_lines.py` (Pillow), 48x320, BGR,
//! (x/255 − 0.5)/0.5 as rapidocr feeds it. A written int8 graph must reload identically and
//! keep its per-time-step arg-max sequence (what CTC decoding reads) at least
//! [`MIN_STEP_AGREEMENT`] like float's on held-out lines. It used to be refused: tract writes
//! activation scales with 9 decimals, and this deep network drifted ~19% on reload until the
//! converter chose scales the text keeps exactly (`int8::qparams::nnef_exact`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kestrel_quantize::int8::calib::Method;
use kestrel_quantize::int8::data::CalibSource;
use kestrel_quantize::int8::images::Preprocess;
use kestrel_quantize::int8::{convert_int8, Int8Options, KeepFloat};
use kestrel_quantize::{convert, load::InputShape, ConvertOptions};
use kestrel_runtime::{LoadOptions, Model};

/// Fraction of time steps whose arg-max symbol agrees float vs int8 (held-out lines).
const MIN_STEP_AGREEMENT: f64 = 95.0;

/// The recognizer's ONNX; panics, saying how to fetch it, when it is missing.
fn model() -> PathBuf {
    let path = std::env::var_os("KESTREL_PPOCR_REC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/kestrel-models/ppocr_rec.onnx"));
    assert!(
        path.is_file(),
        "{} not found: run models/fetch_ppocr_rec.sh, or set KESTREL_PPOCR_REC",
        path.display()
    );
    path
}

fn text_lines(dir: &Path, count: usize) -> PathBuf {
    let out = dir.join("lines");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/make_text_lines.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .args(["--count", &count.to_string()])
        .status()
        .expect("python3 runs models/make_text_lines.py");
    assert!(status.success(), "{} failed", script.display());
    out
}

fn shape() -> InputShape {
    "x=1,3,48,320".parse().unwrap()
}

#[test]
#[ignore = "needs the PP-OCR recognizer (not committed): sh models/fetch_ppocr_rec.sh; CI runs it"]
fn ppocr_rec_converts_float_and_runs() {
    let onnx = model();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.nnef.tgz");
    let options = ConvertOptions {
        input_shapes: vec![shape()],
        ..ConvertOptions::default()
    };
    // The ONNX metadata holds the 6625-symbol dictionary (quotes, newlines): it must survive
    // the NNEF text (percent-encoded) instead of making the file unreadable.
    let report = convert(&onnx, &out, &options).unwrap();
    assert!(report.verification.iter().all(|d| d.excess(1e-4) <= 1.0));
    let m = Model::load(&out, &LoadOptions { threads: Some(1) }).unwrap();
    assert_eq!(m.outputs()[0].shape.last(), Some(&6625));
}

#[test]
#[ignore = "needs the PP-OCR recognizer (not committed): sh models/fetch_ppocr_rec.sh; CI runs it"]
fn ppocr_rec_int8_reloads_exactly_and_keeps_the_ctc_sequence() {
    let onnx = model();
    let dir = tempfile::tempdir().unwrap();
    let mut o = Int8Options::new(CalibSource {
        path: text_lines(dir.path(), 24),
        preprocess: Preprocess {
            mean: vec![0.5],
            std: vec![0.5],
            bgr: true,
            ..Preprocess::default()
        },
        count: 0,
    });
    o.input_shapes = vec![shape()];
    o.method = Method::MinMax;
    o.threads = 2;
    o.keep_float = KeepFloat::None;
    o.force = true;
    let out = dir.path().join("rec.int8.nnef.tgz");
    // Forced past the SQNR floor (minmax on every layer: ~19 dB here); the reload must be
    // exact and the CTC-relevant arg-max sequence must hold.
    let r = convert_int8(&onnx, &out, &o).unwrap();
    assert_eq!(r.reload_relative_diff, 0.0, "{}", r.to_text());
    assert!(
        r.top1_agreement.unwrap_or(0.0) >= MIN_STEP_AGREEMENT,
        "per-step arg-max agreement {:.1}%\n{}",
        r.top1_agreement.unwrap_or(0.0),
        r.to_text()
    );
    Model::load(&out, &LoadOptions { threads: Some(1) }).unwrap();
}
