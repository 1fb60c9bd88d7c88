//! `kestrel run` end to end on real byte-stream sources: GStreamer through `cmd:`, a producer
//! killed mid-stream (the run reconnects and `seq` keeps rising), a pipe with the wrong frame
//! size, Y4M files with `--loop`, a model sidecar, SIGTERM, a stop on a quiet command, and a
//! camera password that never reaches the output.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{gst_command, have, json_lines, kestrel, repo, text};

#[test]
fn gstreamer_yuyv_through_cmd() {
    if !have("gst-launch-1.0", "gstreamer1.0-tools") {
        return;
    }
    let cmd = gst_command(
        "is-live=true",
        "video/x-raw,format=YUY2,width=320,height=240,framerate=30/1",
    );
    let out = kestrel()
        .args([
            "run",
            "--source",
            &format!("cmd:{cmd}"),
            "--pixel-format",
            "yuyv",
        ])
        .args(["--size", "320x240", "--frames", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 9);
    let summary = &lines[8]["summary"];
    assert_eq!(summary["frames"], 8);
    for stage in ["capture", "wait", "convert", "resize", "infer", "post"] {
        let p = &summary["stages_ms"][stage];
        assert!(
            p["p99"].as_f64().unwrap() >= p["p50"].as_f64().unwrap(),
            "{stage}: {p}"
        );
    }
    assert!(lines[0]["stages"]["convert_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn exit_on_source_error_ends_the_run_when_the_command_ends() {
    let out = kestrel()
        .args([
            "run",
            "--source",
            "cmd:head -c 24 /dev/zero",
            "--pixel-format",
            "gray",
        ])
        .args(["--size", "4x2", "--exit-on-source-error"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("command ended"),
        "{}",
        text(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert!(lines.last().unwrap().get("summary").is_some());
}

#[test]
fn a_camera_password_in_the_source_never_reaches_the_output() {
    // A cmd: pipeline that holds its camera's URL, as the RTSP recipes do; it ends after 4
    // frames and the run ends with it (the error path prints the source too).
    let source = "cmd:head -c 32 /dev/zero # rtsp://cam:hunter2@192.0.2.7:554/stream1";
    let out = kestrel()
        .args(["-vv", "run", "--source", source, "--pixel-format", "gray"])
        .args(["--size", "4x2", "--exit-on-source-error"])
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("rtsp://cam:***@192.0.2.7"), "{stderr}");
    let lines = json_lines(&out.stdout);
    let last = lines.last().unwrap().to_string();
    assert!(last.contains("\"summary\""), "{last}");
    assert!(
        last.contains("rtsp://cam:***@192.0.2.7:554/stream1"),
        "{last}"
    );
    // A password over plain mqtt:// is refused (it would travel in clear text; mqtts:// or
    // --mqtt-insecure), without echoing it.
    let out = kestrel()
        .args(["run", "--frames", "1"])
        .args([
            "--mqtt",
            "mqtt://kestrel:s3cret-mqtt@127.0.0.1:1883/kestrel",
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kestrel:***@127.0.0.1"), "{stderr}");
    assert!(stderr.contains("clear text"), "{stderr}");
    assert!(!stderr.contains("s3cret-mqtt"), "{stderr}");
}

#[test]
fn a_producer_killed_mid_stream_is_respawned_and_seq_keeps_rising() {
    if !have("gst-launch-1.0", "gstreamer1.0-tools") {
        return;
    }
    // A live 50 fps stream, killed (SIGKILL, mid-frame as likely as not) after 0.4 s.
    let gst = gst_command(
        "is-live=true",
        "video/x-raw,format=I420,width=64,height=48,framerate=50/1",
    );
    let cmd = format!("{gst} & p=$!; sleep 0.4; kill -9 $p");
    let out = kestrel()
        .args([
            "run",
            "--source",
            &format!("cmd:{cmd}"),
            "--pixel-format",
            "i420",
        ])
        .args(["--size", "64x48", "--frames", "40"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 41);
    let seqs: Vec<u64> = lines[..40]
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    let summary = &lines[40]["summary"];
    assert!(summary["reconnects"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["outage_s"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(
        text(&out.stderr).contains("respawning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_pipe_with_the_wrong_frame_size_names_expected_and_received_bytes() {
    let mut child = kestrel()
        .args([
            "run",
            "--source",
            "pipe:",
            "--pixel-format",
            "yuyv",
            "--size",
            "640x480",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Five 320x240 YUYV frames: 768000 bytes, one 640x480 frame and 153600 bytes over.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![128u8; 5 * 320 * 240 * 2])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("expected 614400 bytes") && err.contains("received 153600 bytes"),
        "{err}"
    );
    assert!(err.contains("320x240 yuyv"), "{err}");
    // The whole frame that did come was processed, and the summary printed.
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.last().unwrap()["summary"]["frames"], 1);
}

#[test]
fn y4m_files_loop_and_unpaced_files_drop_nothing() {
    if !have("gst-launch-1.0", "gstreamer1.0-good") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.y4m");
    let status = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=5", "!"])
        .args([
            "video/x-raw,format=I420,width=96,height=64",
            "!",
            "y4menc",
            "!",
        ])
        .arg("filesink")
        .arg(format!("location={}", path.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = kestrel()
        .args(["run", "--source", &format!("file:{}", path.display())])
        .args(["--loop", "--fps", "0", "--frames", "12"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    let seqs: Vec<u64> = lines[..12]
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..12).collect::<Vec<_>>());
    assert_eq!(lines[12]["summary"]["dropped"], 0);
}

#[test]
fn the_sidecar_names_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("cls.nnef.tgz");
    std::fs::copy(repo().join("models/ppocr-cls/ppocr-cls.nnef.tgz"), &model).unwrap();
    std::fs::write(
        dir.path().join("cls.kestrel.toml"),
        "task = \"classify\"\nlabels = [\"upright\", \"upside-down\"]\n\
         [preprocess]\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n[classify]\ntop_k = 1\n",
    )
    .unwrap();
    let out = kestrel()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--frames",
            "3",
            "--fps",
            "0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    let top = lines[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 1);
    assert!(["upright", "upside-down"].contains(&top[0]["label"].as_str().unwrap()));

    std::fs::write(dir.path().join("cls.kestrel.toml"), "task = \"segment\"\n").unwrap();
    let out = kestrel()
        .args(["run", "--model", model.to_str().unwrap(), "--frames", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cls.kestrel.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sigterm_finishes_the_frame_prints_the_summary_and_exits_0() {
    let mut child = kestrel()
        .args(["run", "--source", "synthetic", "--fps", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..3 {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"seq\""), "{line}");
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let last = json_lines(rest.as_bytes()).pop().unwrap();
    assert!(last["summary"]["frames"].as_u64().unwrap() >= 3, "{last}");
}

#[test]
fn stopping_on_a_quiet_command_leaves_no_process_behind() {
    // A pipeline that never writes a frame: the run stops with its capture thread blocked on
    // the pipe, and every process of the command (its own process group) goes with it.
    let marker = format!("sleep 61{}", std::process::id() % 1000);
    let alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", &format!("^{marker}")]) // the sleep itself, not the run naming it
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let mut child = kestrel()
        .args([
            "run",
            "--no-config",
            "--pixel-format",
            "gray",
            "--size",
            "64x48",
        ])
        .arg("--source")
        .arg(format!("cmd:{marker} | cat"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !alive() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let stopped = Instant::now();
    while alive() {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "`{marker} | cat` outlived the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn snapshots_are_written_into_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    let out = kestrel()
        .args(["run", "--frames", "3", "--fps", "0", "--size", "64x48"])
        .args(["--snapshot", snaps.to_str().unwrap(), "--every", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "kestrel-00000000.jpg",
            "kestrel-00000001.jpg",
            "kestrel-00000002.jpg"
        ]
    );
}
