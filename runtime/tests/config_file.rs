//! `kestrel run --config FILE`: the file's settings apply, flags override them, a bad file is
//! refused with its line and key (exit 2) before anything runs.

mod common;

use common::{json_lines, kestrel};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn settings_come_from_the_file_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "kestrel.toml",
        "source = \"synthetic\"\nsize = \"96x64\"\nfps = 0\nframes = 4\ntop_k = 1\nthreads = 1\n",
    );
    let out = kestrel()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    let (frames, summary) = lines.split_at(lines.len() - 1);
    assert_eq!(frames.len(), 4, "frames = 4 from the file");
    assert!(frames
        .iter()
        .all(|l| l["top"].as_array().map(Vec::len) == Some(1)));
    assert_eq!(summary[0]["summary"]["frames"], 4);

    let out = kestrel()
        .args(["run", "--frames", "2", "--top-k", "2", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "--frames 2 overrides the file");
    assert_eq!(lines[0]["top"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_bad_file_names_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "fps = 0\n\nsoruce = \"synthetic\"\n",
            "line 3, key `soruce`",
        ),
        ("frames = 2\nsize = \"big\"\n", "line 2, key `size`"),
        ("pixel_format = \"bgr\"\n", "line 1, key `pixel_format`"),
        ("fps = [\n", "line 1"),
    ] {
        let config = write(dir.path(), "bad.toml", text);
        let out = kestrel()
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert!(
            stderr.contains(&format!("config {}, {expected}", config.display())),
            "{text:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing runs: {text:?}");
    }
    let missing = dir.path().join("missing.toml");
    let out = kestrel()
        .args(["run", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn no_config_and_config_conflict() {
    let out = kestrel()
        .args(["run", "--no-config", "--config", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
