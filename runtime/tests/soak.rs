//! A long `kestrel run` stays flat: the resident set size (`VmRSS` of the running process,
//! read from /proc) late in a run is within a small bound of what it was early on.
//!
//! The short form of the soak in the hardening notes (100 000 frames): 1500 frames of the
//! bundled model on the synthetic source, unpaced (`--fps 0`), one thread; RSS sampled once
//! the run is warm (frame 300) and near its end (frame 1450): about 30 s at 50 fps on a busy
//! machine. Under qemu-user (cross-built test runs) frames cost far more: 150 frames,
//! sampled at 50 and 140.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{kestrel, rss_kib};

#[test]
fn rss_does_not_grow_over_a_long_run() {
    if !cfg!(target_os = "linux") {
        eprintln!("needs /proc: skipped");
        return;
    }
    let emulated = std::env::var("KESTREL_TEST_EXEC_WRAPPER").is_ok_and(|w| !w.trim().is_empty());
    let (frames, early, late) = if emulated {
        (150u64, 50u64, 140u64)
    } else {
        (1500, 300, 1450)
    };
    let mut child = kestrel()
        .args([
            "run",
            "--source",
            "synthetic",
            "--fps",
            "0",
            "--threads",
            "1",
        ])
        .args(["--frames", &frames.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kestrel");
    let pid = child.id();
    let mut samples = vec![];
    let mut lines = 0u64;
    let mut summary = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        if let Some(s) = v.get("summary") {
            summary = Some(s.clone());
            continue;
        }
        lines += 1;
        let seq = v["seq"].as_u64().unwrap();
        if seq == early || seq == late {
            samples.push((seq, rss_kib(pid)));
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(lines, frames);
    let summary = summary.expect("summary line");
    let [(_, start), (_, end)] = samples[..] else {
        panic!("samples {samples:?}")
    };
    eprintln!(
        "RSS at frame {early}: {start} KiB, at frame {late}: {end} KiB ({:+} KiB), {:.1} fps",
        end as i64 - start as i64,
        summary["fps"].as_f64().unwrap()
    );
    // No per-frame allocation survives a frame: the set is flat but for allocator noise.
    assert!(
        end <= start + 2048,
        "RSS grew from {start} KiB at frame {early} to {end} KiB at frame {late}"
    );
}
