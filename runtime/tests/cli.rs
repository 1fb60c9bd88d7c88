//! The `kestrel` command as a user runs it: output, exit codes and error messages.
//!
//! Cross-built test runs (aarch64 under qemu-user) cannot exec an aarch64 binary without
//! binfmt_misc; CI sets `KESTREL_TEST_EXEC_WRAPPER="qemu-aarch64 -L /usr/aarch64-linux-gnu"`
//! and the binary is started through it.

mod common;

use std::process::Output;

use common::{kestrel, repo};

fn run(args: &[&str]) -> Output {
    kestrel().args(args).output().expect("start kestrel")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_with_defaults_prints_frames_and_a_summary() {
    let out = run(&["run", "--fps", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(lines.len(), 101, "100 frames and a summary");
    for (i, l) in lines[..100].iter().enumerate() {
        assert_eq!(l["seq"], i as u64);
        assert!(l["latency_ms"].as_f64().unwrap() >= l["infer_ms"].as_f64().unwrap());
        let top = l["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        let p: f64 = top.iter().map(|c| c["score"].as_f64().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-4, "softmax scores sum to 1: {l}");
        assert!(["0", "180"].contains(&top[0]["label"].as_str().unwrap()));
    }
    let s = &lines[100]["summary"];
    assert_eq!(s["frames"], 100);
    assert!(s["fps"].as_f64().unwrap() > 0.0);
    assert!(
        s["latency_ms"]["p99"].as_f64().unwrap() >= s["latency_ms"]["median"].as_f64().unwrap()
    );
    assert_eq!(lines[100]["source"], "synthetic");
}

#[test]
fn default_run_is_paced_and_bounded() {
    let out = run(&["run", "--frames", "5", "--fps", "100", "--top-k", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 6);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().nth(4).unwrap()).unwrap();
    assert_eq!(last["top"].as_array().unwrap().len(), 1);
    // Frame 4 is due 40 ms after the first.
    assert!(last["t_capture_ms"].as_f64().unwrap() >= 39.0, "{last}");
}

#[test]
fn infer_on_the_bundled_model_matches_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.npz");
    let model = repo().join("models/ppocr-cls/ppocr-cls.nnef.tgz");
    let input = repo().join("tests/fixtures/ref/ppocr-cls.input.npy");
    let out = kestrel()
        .arg("infer")
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = kestrel_runtime::io::npy::read_arrays(&out_path).unwrap();
    let want = kestrel_runtime::io::npy::read_arrays(
        &repo().join("tests/fixtures/ref/ppocr-cls.expected.npz"),
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0, want[0].0,
        "outputs keyed by the source model's output name"
    );
    assert_eq!(got[0].1.shape(), &[3, 2]);
    let g = got[0].1.try_as_plain_ram().unwrap();
    let w = want[0].1.try_as_plain_ram().unwrap();
    for (a, b) in g
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(w.as_slice::<f32>().unwrap())
    {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn infer_with_a_wrong_shape_names_input_expected_and_given() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/ppocr-cls/ppocr-cls.nnef.tgz");
    let input = repo().join("tests/fixtures/ref/tiny-fire.input.npy");
    let out = kestrel()
        .arg("infer")
        .arg(&model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("o.npz"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("'x'") && err.contains("f32 1,3,48,192") && err.contains("4,1,28,28"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no output written"
    );
}

#[test]
fn corrupt_and_missing_models_exit_2_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.nnef.tgz");
    std::fs::write(&corrupt, b"\x1f\x8b\x08\x00garbage").unwrap();
    for path in [corrupt.clone(), dir.path().join("missing.nnef.tgz")] {
        let out = kestrel().arg("info").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name) && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_source_is_a_usage_error() {
    let out = run(&["run", "--source", "v4l9:/dev/nothing", "--frames", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("v4l9:/dev/nothing"));
}

#[test]
fn bench_json_has_the_figures() {
    let out = run(&[
        "bench",
        "--warmup",
        "1",
        "--runs",
        "5",
        "--profile-runs",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "load_ms",
        "first_run_ms",
        "latency_ms",
        "top_nodes",
        "by_op",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["runs"], 5);
    let l = &v["latency_ms"];
    assert!(l["min"].as_f64().unwrap() <= l["median"].as_f64().unwrap());
    assert!(l["median"].as_f64().unwrap() <= l["max"].as_f64().unwrap());
    let shares: f64 = v["by_op"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-6, "op shares sum to 1: {shares}");
    assert!(v["top_nodes"][0]["op"].as_str().is_some());
}

#[test]
fn kernel_choice_can_be_forced_to_the_portable_one() {
    let out = kestrel()
        .arg("info")
        .env("KESTREL_KERNELS", "generic")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("binary kernel generic"),
        "{}",
        text(&out.stdout)
    );
    let out = kestrel()
        .arg("info")
        .env_remove("KESTREL_KERNELS")
        .output()
        .unwrap();
    let line = text(&out.stdout);
    let auto = line
        .lines()
        .find(|l| l.starts_with("binary kernel"))
        .unwrap()
        .to_string();
    if cfg!(target_arch = "aarch64") {
        assert_eq!(auto, "binary kernel neon");
    }
    eprintln!("auto-selected: {auto}");
}
