//! The `kestrel-quantize` command as a user runs it: exit codes (0 success, 1 failure,
//! 2 usage error or bad input) and messages that name the file, never a panic.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `kestrel-quantize ARGS`, checks the exit code, returns stderr.
fn exits(code: i32, args: &[&OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel-quantize"))
        .args(args)
        .output()
        .expect("start kestrel-quantize");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

fn os(s: &str) -> &OsStr {
    s.as_ref()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn convert_succeeds_with_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.nnef.tgz");
    let model = repo().join("tests/fixtures/onnx/tiny-fire.onnx");
    exits(
        0,
        &[os("convert"), model.as_os_str(), os("-o"), out.as_os_str()],
    );
    assert!(out.is_file());
}

#[test]
fn bad_models_and_values_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let corrupt = inputs.join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07this is not a protobuf model at all").unwrap();
    let truncated = inputs.join("truncated.onnx");
    let tiny = std::fs::read(repo().join("tests/fixtures/onnx/tiny-fire.onnx")).unwrap();
    std::fs::write(&truncated, &tiny[..tiny.len() / 2]).unwrap();
    let missing = inputs.join("missing.onnx");
    let bad_npy = inputs.join("bad.npy");
    std::fs::write(&bad_npy, b"\x93NUMPY garbage").unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("m.nnef.tgz");
    let (o, tiny) = (
        out.as_os_str(),
        repo().join("tests/fixtures/onnx/tiny-fire.onnx"),
    );
    let ppocr = repo().join("tests/fixtures/onnx/ppocr-cls.onnx");
    let bipolar = repo().join("tests/fixtures/onnx/bnn-bad-bipolar.onnx");
    let wrong_ext = out_dir.join("m.onnx");
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (
            vec![os("convert"), missing.as_os_str(), os("-o"), o],
            "missing.onnx",
        ),
        (
            vec![os("convert"), corrupt.as_os_str(), os("-o"), o],
            "corrupt.onnx",
        ),
        (
            vec![os("convert"), truncated.as_os_str(), os("-o"), o],
            "truncated.onnx",
        ),
        // Open dimensions without --input-shape; an --input-shape naming no input.
        (
            vec![os("convert"), ppocr.as_os_str(), os("-o"), o],
            "--input-shape",
        ),
        (
            vec![
                os("convert"),
                tiny.as_os_str(),
                os("-o"),
                o,
                os("--input-shape"),
                os("nope=1,1,28,28"),
            ],
            "'nope'",
        ),
        (
            vec![
                os("convert"),
                tiny.as_os_str(),
                os("-o"),
                o,
                os("--verify-data"),
                bad_npy.as_os_str(),
            ],
            "bad.npy",
        ),
        (
            vec![os("convert"), bipolar.as_os_str(), os("-o"), o],
            "bnn-bad-bipolar.onnx",
        ),
        // Wrong output extension.
        (
            vec![
                os("convert"),
                tiny.as_os_str(),
                os("-o"),
                wrong_ext.as_os_str(),
            ],
            "m.onnx",
        ),
        // Usage errors (clap).
        (vec![os("convert"), tiny.as_os_str()], "--output"),
        (
            vec![os("convert"), tiny.as_os_str(), os("-o"), o, os("--bogus")],
            "--bogus",
        ),
        (
            vec![
                os("convert"),
                tiny.as_os_str(),
                os("-o"),
                o,
                os("--binary"),
                os("maybe"),
            ],
            "maybe",
        ),
        (
            vec![
                os("convert"),
                tiny.as_os_str(),
                os("-o"),
                o,
                os("--mst-depth"),
                os("0"),
            ],
            "0",
        ),
        (
            vec![
                os("convert"),
                tiny.as_os_str(),
                os("-o"),
                o,
                os("--input-shape"),
                os("x"),
            ],
            "x",
        ),
        (vec![os("frobnicate")], "frobnicate"),
    ];
    // Flags of the float/binary path that `--int8` would silently ignore are refused.
    let calib = repo().join("tests/fixtures/ref/tiny-fire.input.npy");
    let mut cases = cases;
    for flag in [
        &["--binary", "off"][..],
        &["--verify-data", "x.npy"],
        &["--mst", "off"],
        &["--mst-depth", "4"],
        &["--mst-dot", "dots"],
        &["--tolerance", "1e-3"],
    ] {
        let mut args = vec![
            os("convert"),
            tiny.as_os_str(),
            os("-o"),
            o,
            os("--int8"),
            os("--calib"),
            calib.as_os_str(),
        ];
        args.extend(flag.iter().map(|f| os(f)));
        cases.push((args, flag[0]));
    }
    for (args, needle) in cases {
        let err = exits(2, &args);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            entries(&out_dir).is_empty(),
            "{args:?} wrote {:?}",
            entries(&out_dir)
        );
    }
}

#[test]
fn a_failed_verification_exits_1_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nnef.tgz");
    let tiny = repo().join("tests/fixtures/onnx/tiny-fire.onnx");
    let err = exits(
        1,
        &[
            os("convert"),
            tiny.as_os_str(),
            os("-o"),
            out.as_os_str(),
            os("--tolerance=-1"),
        ],
    );
    assert!(err.contains("verification failed"), "{err}");
    assert!(entries(dir.path()).is_empty());
}
