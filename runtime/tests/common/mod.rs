//! Helpers shared by the integration tests (each test file includes this module with
//! `mod common;`): starting `kestrel`, the repository, tools, JSON lines, graph files.
#![allow(dead_code)]

pub mod broker;
pub mod clip;
pub mod rtsp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `kestrel` binary, started through `KESTREL_TEST_EXEC_WRAPPER` when set (qemu-user
/// for cross-built test runs).
pub fn kestrel() -> Command {
    let bin = env!("CARGO_BIN_EXE_kestrel");
    match std::env::var("KESTREL_TEST_EXEC_WRAPPER") {
        Ok(wrapper) if !wrapper.trim().is_empty() => {
            let mut parts = wrapper.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap());
            cmd.args(parts).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` from /proc).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether `tool` runs here. Missing on CI is a failure (`.ci/run` installs it); elsewhere the
/// caller skips, saying so.
pub fn have(tool: &str, package: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "mosquitto" {
            "-h"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing on CI (.ci/run installs {package})"
        );
        eprintln!("{tool} not installed: test skipped (apt install {package})");
    }
    ok
}

/// Bytes (a child's stdout or stderr) as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout parsed as JSON lines.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `gst-launch-1.0 -q videotestsrc … ! CAPS ! fdsink` as a shell command line.
pub fn gst_command(extra_src: &str, caps: &str) -> String {
    format!("gst-launch-1.0 -q videotestsrc {extra_src} ! {caps} ! fdsink")
}

/// Writes `model` as a gzipped NNEF tar at `path` in Kestrel's dialect, as the converter does.
pub fn write_nnef_tgz(model: &kestrel_runtime::tract_core::prelude::TypedModel, path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    kestrel_runtime::ops::registry::nnef()
        .write_to_tar(model, gz)
        .unwrap()
        .finish()
        .unwrap();
}
