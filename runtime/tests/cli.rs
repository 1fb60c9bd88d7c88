//! The `kestrel` command as a user runs it: output, exit codes and error messages.
//!
//! Cross-built test runs (aarch64 under qemu-user) cannot exec an aarch64 binary without
//! binfmt_misc; CI sets `KESTREL_TEST_EXEC_WRAPPER="qemu-aarch64 -L /usr/aarch64-linux-gnu"`
//! and the binary is started through it.

mod common;

use std::process::Output;

use common::{kestrel, repo, text};

fn run(args: &[&str]) -> Output {
    kestrel().args(args).output().expect("start kestrel")
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
    for kind in ["binary", "int8", "depthwise", "bitpack", "pool"] {
        assert!(
            text(&out.stdout).contains(&format!("{kind} kernel generic")),
            "{}",
            text(&out.stdout)
        );
    }
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
    let int8 = line
        .lines()
        .find(|l| l.starts_with("int8 kernel"))
        .unwrap()
        .to_string();
    let depthwise = line
        .lines()
        .find(|l| l.starts_with("depthwise kernel"))
        .unwrap()
        .to_string();
    let bitpack = line
        .lines()
        .find(|l| l.starts_with("bitpack kernel"))
        .unwrap()
        .to_string();
    if cfg!(target_arch = "aarch64") {
        assert_eq!(auto, "binary kernel neon");
        assert!(int8.starts_with("int8 kernel neon"), "{int8}");
        #[cfg(target_arch = "aarch64")]
        if !std::arch::is_aarch64_feature_detected!("dotprod") {
            assert!(int8.ends_with("channels: neon-16x8)"), "{int8}");
        }
        assert_eq!(depthwise, "depthwise kernel neon");
        assert_eq!(bitpack, "bitpack kernel neon");
    }
    eprintln!("auto-selected: {auto}, {int8}, {depthwise}, {bitpack}");
}

/// Runs `kestrel ARGS` and checks the exit code; the message must not be a panic.
fn exits(code: i32, args: &[&std::ffi::OsStr]) -> String {
    let out = kestrel().args(args).output().expect("start kestrel");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "kestrel {args:?}: {err}");
    assert!(!err.contains("panicked"), "kestrel {args:?}: {err}");
    err
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A model file whose tensor header claims 4 GiB over 16 bytes of data.
fn forged_model(dir: &std::path::Path) -> std::path::PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(
        "graph.nnef",
        b"version 1.0;\ngraph network(x) -> (y) {\n  x = external(shape = [1, 4]);\n  \
          w = variable<scalar>(label = \"w\", shape = [1, 4]);\n  y = add(x, w);\n}\n",
    );
    let mut dat = vec![];
    let w = kestrel_runtime::tract_core::prelude::Tensor::zero::<f32>(&[1, 4]).unwrap();
    kestrel_runtime::tract_nnef::tensors::write_tensor(&mut dat, &w).unwrap();
    dat[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    dat[12..16].copy_from_slice(&65536u32.to_le_bytes());
    dat[16..20].copy_from_slice(&16384u32.to_le_bytes());
    add("w.dat", &dat);
    let path = dir.join("forged.nnef.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn every_subcommand_exits_2_on_a_missing_corrupt_or_forged_model() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.nnef.tgz");
    std::fs::write(&corrupt, b"\x1f\x8b\x08\x00garbage").unwrap();
    let missing = dir.path().join("missing.nnef.tgz");
    let forged = forged_model(dir.path());
    let input = repo().join("tests/fixtures/ref/ppocr-cls.input.npy");
    let out = dir.path().join("out.npz");
    for model in [&missing, &corrupt, &forged] {
        let m = model.as_os_str();
        let name = model.file_name().unwrap().to_string_lossy().into_owned();
        for args in [
            vec![os("info"), m],
            vec![os("bench"), m, os("--runs"), os("1")],
            vec![os("run"), os("--model"), m, os("--frames"), os("1")],
            vec![
                os("infer"),
                m,
                os("--input"),
                input.as_os_str(),
                os("--output"),
                out.as_os_str(),
            ],
        ] {
            let err = exits(2, &args);
            assert!(err.contains(&name), "{args:?}: {err}");
        }
    }
    let err = exits(2, &[os("info"), forged.as_os_str()]);
    assert!(
        err.contains("w.dat") && err.contains("holds 16 bytes"),
        "{err}"
    );
    assert!(!out.exists(), "no output written");
}

#[test]
fn bad_flags_and_values_exit_2() {
    for args in [
        &["run", "--bogus"][..],
        &["run", "--size", "640"],
        &["run", "--pixel-format", "rgb48"],
        &["run", "--threads", "0"],
        &["run", "--fps", "fast"],
        &["run", "--top-k", "many"],
        &["infer"],
        &["infer", "m.nnef.tgz", "--input", "x.npy"],
        &["bench", "--runs", "many"],
        &["info", "a", "b"],
        &["frobnicate"],
        &[],
    ] {
        let args: Vec<_> = args.iter().map(|a| os(a)).collect();
        exits(2, &args);
    }
}

#[test]
fn infer_exits_2_on_bad_arrays_and_1_when_the_output_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("models/ppocr-cls/ppocr-cls.nnef.tgz");
    let good = repo().join("tests/fixtures/ref/ppocr-cls.input.npy");
    let corrupt = dir.path().join("corrupt.npy");
    std::fs::write(&corrupt, b"\x93NUMPY\x01\x00garbage").unwrap();
    let forged = dir.path().join("forged.npy");
    // A valid header claiming 10^12 floats over no data.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16 + 1).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.push(b'\n');
    std::fs::write(&forged, npy).unwrap();
    let missing = dir.path().join("missing.npy");
    let out = dir.path().join("out.npz");
    for input in [&corrupt, &forged, &missing] {
        let err = exits(
            2,
            &[
                os("infer"),
                model.as_os_str(),
                os("--input"),
                input.as_os_str(),
                os("--output"),
                out.as_os_str(),
            ],
        );
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "{err}");
    }
    assert!(!out.exists());
    // The output path is a directory: the run worked, writing failed.
    exits(
        1,
        &[
            os("infer"),
            model.as_os_str(),
            os("--input"),
            good.as_os_str(),
            os("--output"),
            dir.path().as_os_str(),
        ],
    );
}

#[test]
fn unreadable_sources_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file:{}", dir.path().join("missing.y4m").display());
    let err = exits(
        2,
        &[
            os("run"),
            os("--source"),
            os(&missing),
            os("--frames"),
            os("1"),
        ],
    );
    assert!(err.contains("missing.y4m"), "{err}");
    let raw = dir.path().join("odd.yuv");
    std::fs::write(&raw, [0u8; 1000]).unwrap();
    let raw = format!("file:{}", raw.display());
    exits(
        2,
        &[
            os("run"),
            os("--source"),
            os(&raw),
            os("--pixel-format"),
            os("i420"),
            os("--size"),
            os("64x48"),
            os("--fps"),
            os("0"),
        ],
    );
}
