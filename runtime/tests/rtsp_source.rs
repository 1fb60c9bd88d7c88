//! The native `rtsp://` source against a real RTSP server (GStreamer's rtsp-server, started
//! by the test): H.264 decoded to the picture the server encoded, RTP/JPEG passed on, a
//! password that works and never shows, and a server that goes away and comes back.
#![cfg(feature = "rtsp")]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::broker::free_port;
use common::rtsp::{have_rtsp_server, RtspServer};
use common::{have, kestrel, text};
use kestrel_runtime::camera::{self, PixelFormat, SourceOptions};

fn ready() -> bool {
    have("gst-launch-1.0", "gstreamer1.0-tools") && have_rtsp_server()
}

/// One 320x240 I420 frame of `videotestsrc`'s SMPTE bars, what the server encodes.
fn reference_bars() -> Vec<u8> {
    let out = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=1", "!"])
        .args([
            "video/x-raw,format=I420,width=320,height=240",
            "!",
            "fdsink",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 320 * 240 * 3 / 2);
    out.stdout
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

#[test]
fn h264_decodes_to_the_picture_the_server_encoded_and_jpeg_passes_through() {
    if !ready() {
        return;
    }
    let port = free_port();
    let _server = RtspServer::start(port, None);
    let bars = reference_bars();

    let url = format!("rtsp://127.0.0.1:{port}/h264");
    let mut source = camera::open(&url, &SourceOptions::default()).unwrap();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let f = source.next_frame().unwrap().unwrap();
        assert_eq!((f.format, f.width, f.height), (PixelFormat::I420, 320, 240));
        assert_eq!(f.data.len(), bars.len());
        // The top two thirds: the bars (the bottom right corner is noise, new each frame).
        let y = 320 * 160;
        let db = psnr(&f.data[..y], &bars[..y]);
        assert!(db > 35.0, "luma PSNR {db:.1} dB against the server's bars");
        let (u, v) = (320 * 240, 320 * 240 + 160 * 120);
        let db = psnr(&f.data[u..u + 160 * 80], &bars[u..u + 160 * 80]);
        assert!(db > 35.0, "U PSNR {db:.1} dB against the server's bars");
        let db = psnr(&f.data[v..v + 160 * 80], &bars[v..v + 160 * 80]);
        assert!(db > 35.0, "V PSNR {db:.1} dB against the server's bars");
        seqs.push(f.seq);
    }
    assert_eq!(seqs, [0, 1, 2]);
    assert_eq!(source.counters().reconnects, 0);

    let url = format!("rtsp://127.0.0.1:{port}/test");
    let mut source = camera::open(&url, &SourceOptions::default()).unwrap();
    let f = source.next_frame().unwrap().unwrap();
    assert_eq!(
        (f.format, f.width, f.height),
        (PixelFormat::Mjpeg, 320, 240)
    );
    assert_eq!(&f.data[..2], [0xff, 0xd8], "a JPEG starts with SOI");
}

#[test]
fn a_camera_with_a_password_reconnects_when_its_server_comes_back_and_never_shows_it() {
    if !ready() {
        return;
    }
    let port = free_port();
    let server = RtspServer::start(port, Some("cam:hunter2"));
    let url = format!("rtsp://cam:hunter2@127.0.0.1:{port}/h264");
    let mut child = kestrel()
        .args(["run", "--no-config", "--frames", "40", "--source", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for _ in 0..10 {
        stdout += &lines.next().unwrap().unwrap();
    }
    // The server goes away and comes back on the same port, with the same password.
    drop(server);
    std::thread::sleep(Duration::from_secs(2));
    let server = RtspServer::start(port, Some("cam:hunter2"));
    for line in lines {
        stdout += &line.unwrap();
        stdout.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    drop(server);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let s = &summary["summary"];
    assert_eq!(s["frames"], 40, "{summary}");
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{summary}");
    assert!(s["outage_s"].as_f64().unwrap() >= 1.5, "{summary}");
    assert!(
        stderr.contains(&format!("rtsp://cam:***@127.0.0.1:{port}/h264")),
        "{stderr}"
    );
    for (name, stream) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !stream.contains("hunter2"),
            "the password is in {name}:\n{stream}"
        );
    }

    // A wrong password: the camera's refusal, named, and the password still not shown.
    let _server = RtspServer::start(port, Some("cam:hunter2"));
    let url = format!("rtsp://cam:sesame@127.0.0.1:{port}/h264");
    let out = kestrel()
        .args([
            "run",
            "--no-config",
            "--frames",
            "1",
            "--exit-on-source-error",
        ])
        .args(["--source", &url])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("401") && stderr.contains("USER:PASSWORD"),
        "{stderr}"
    );
    assert!(!stderr.contains("sesame") && !text(&out.stdout).contains("sesame"));
}

#[test]
fn a_password_file_gives_the_url_user_its_password() {
    if !ready() {
        return;
    }
    let port = free_port();
    let _server = RtspServer::start(port, Some("cam:hunter2"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cam.pass");
    std::fs::write(&file, "hunter2\n").unwrap();
    let mode = |m| {
        let mut p = std::fs::metadata(&file).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, m);
        std::fs::set_permissions(&file, p).unwrap();
    };
    mode(0o600);
    let run = |url: &str| {
        kestrel()
            .args([
                "run",
                "--no-config",
                "--frames",
                "3",
                "--exit-on-source-error",
            ])
            .args([
                "--source",
                url,
                "--source-password-file",
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let url = format!("rtsp://cam@127.0.0.1:{port}/h264");
    let out = run(&url);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(common::json_lines(&out.stdout)[3]["summary"]["frames"], 3);
    assert!(!stderr.contains("hunter2") && !text(&out.stdout).contains("hunter2"));

    // Open to others, or for a URL without a user: refused at start, exit 2, naming the file.
    mode(0o644);
    let out = run(&url);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    mode(0o600);
    let out = run(&format!("rtsp://127.0.0.1:{port}/h264"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("source_password_file") && stderr.contains("USER@"),
        "{stderr}"
    );
}
