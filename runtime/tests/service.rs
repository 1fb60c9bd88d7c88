//! `kestrel run` as a service: with `--http`, a real run serves `/metrics` that Prometheus'
//! own linter (`promtool check metrics`, Debian package `prometheus`) accepts, with the run's
//! counters in it, `/healthz` that turns 503 when frames stop, and `/snapshot.jpg`; with
//! `--model FILE`, SIGHUP or a change of the file reloads the model, and a corrupt one leaves
//! the old running; an RTSP camera through `cmd:` GStreamer (a real RTSP server, stopped and
//! started again) reconnects.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::broker::free_port;
use common::rtsp::{have_rtsp_server, RtspServer};
use common::{have, kestrel, repo, text};

/// One HTTP/1.1 GET: (status, body as text).
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let (code, _, body) = get_bytes(port, path)?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// One HTTP/1.1 GET: (status, headers, body).
fn get_bytes(port: u16, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(reply.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&reply[..end]).into_owned();
    let code = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, head, reply[end..].to_vec()))
}

/// Polls `path` until it answers `code` (or panics after `limit`, with the child's stderr).
fn wait_for(child: &mut Child, port: u16, path: &str, code: u16, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok((c, body)) = get(port, path) {
            if c == code {
                return body;
            }
        }
        if start.elapsed() > limit || child.try_wait().unwrap().is_some() {
            child.kill().ok();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("{path} never answered {code} within {limit:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in\n{metrics}"))
}

#[test]
fn a_run_serves_metrics_health_and_snapshots() {
    let port = free_port();
    // A paced synthetic source with no frame limit: the run lasts until it is killed.
    let mut child = kestrel()
        .args(["run", "--no-config", "--source", "synthetic", "--fps", "20"])
        .args(["--size", "64x48", "--http", &format!("127.0.0.1:{port}")])
        .args(["--healthz-silence", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(120);
    wait_for(&mut child, port, "/healthz", 200, limit);
    let start = Instant::now();
    let mut metrics = wait_for(&mut child, port, "/metrics", 200, limit);
    while value(&metrics, "kestrel_frames_total{camera=\"synthetic\"}") < 5.0 {
        assert!(start.elapsed() < limit, "frames do not advance:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
        metrics = get(port, "/metrics").unwrap().1;
    }
    for series in [
        "kestrel_frames_dropped_total{camera=\"synthetic\"}",
        "kestrel_bad_frames_total{camera=\"synthetic\"}",
        "kestrel_latency_seconds_count{camera=\"synthetic\"}",
        "kestrel_model_load_seconds{camera=\"synthetic\"}",
    ] {
        assert!(value(&metrics, series) >= 0.0);
    }
    assert!(metrics.contains(
        "kestrel_stage_seconds_bucket{camera=\"synthetic\",stage=\"infer\",le=\"+Inf\"}"
    ));
    assert!(
        metrics
            .contains("kestrel_model_info{camera=\"synthetic\",model=\"<bundled ppocr-cls>\"} 1"),
        "{metrics}"
    );
    assert_eq!(get(port, "/nothing").unwrap().0, 404);

    promtool_accepts(&metrics);
    let (code, head, jpeg) = get_bytes(port, "/snapshot.jpg").unwrap();
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_lowercase().contains("content-type: image/jpeg"),
        "{head}"
    );
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG starts with SOI");
    // SIGHUP with the bundled model: nothing to reload, and the run goes on.
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended the run");
    assert_eq!(get(port, "/healthz").unwrap().0, 200);

    // A source that never delivers a frame: /healthz fails once the silence is over.
    child.kill().ok();
    child.wait().ok();
    let port = free_port();
    let mut quiet = kestrel()
        .args([
            "run",
            "--no-config",
            "--source",
            "pipe:",
            "--pixel-format",
            "gray",
        ])
        .args(["--size", "64x48", "--http", &format!("127.0.0.1:{port}")])
        .args(["--healthz-silence", "1"])
        .current_dir(repo())
        .stdin(Stdio::piped()) // held open, never written: no frame, no end of stream
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = wait_for(&mut quiet, port, "/healthz", 503, limit);
    assert!(body.starts_with("no frame for"), "{body}");
    assert_eq!(
        get(port, "/snapshot.jpg").unwrap().0,
        503,
        "no frame, no snapshot"
    );
    // SIGTERM: a clean stop, even with the capture thread blocked on the quiet pipe.
    std::process::Command::new("kill")
        .args(["-TERM", &quiet.id().to_string()])
        .status()
        .unwrap();
    let status = quiet.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `promtool check metrics` on `metrics` (skipped where promtool is missing, but on CI).
fn promtool_accepts(metrics: &str) {
    if !have("promtool", "prometheus") {
        return;
    }
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = lint.stdin.take().unwrap();
    stdin.write_all(metrics.as_bytes()).unwrap();
    drop(stdin);
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn zone_and_line_series_pass_promtool() {
    use kestrel_runtime::analytics::track::TrackerConfig;
    use kestrel_runtime::analytics::zones::{AnchorPoint, LineSpec, ZoneSpec};
    use kestrel_runtime::analytics::{Analytics, AnalyticsConfig};
    use kestrel_runtime::pipeline::detect::{Detection, MAX_DETECTIONS};
    use kestrel_runtime::pipeline::metrics::Metrics;
    use kestrel_runtime::pipeline::tasks::Task;

    let config = AnalyticsConfig {
        tracker: TrackerConfig {
            min_hits: 1,
            ..TrackerConfig::default()
        },
        classes: vec![],
        zones: vec![ZoneSpec {
            name: "door".into(),
            polygon: vec![[0.0, 0.0], [0.6, 0.0], [0.6, 1.0], [0.0, 1.0]],
            classes: vec![],
            anchor: AnchorPoint::Bottom,
        }],
        lines: vec![LineSpec {
            name: "gate".into(),
            a: [0.5, 0.0],
            b: [0.5, 1.0],
            classes: vec![],
            anchor: AnchorPoint::Bottom,
        }],
    };
    let labels = ["background", "person"].map(String::from).to_vec();
    let mut a = Analytics::new(&config, &labels, 2).unwrap();
    let m = Metrics::new("rtsp://cam/1", "m", Duration::ZERO, &Task::Raw).with_regions(Some(&a));
    let zone = "kestrel_zone_objects{camera=\"rtsp://cam/1\",zone=\"door\",class=\"person\"}";
    assert!(!m.render().contains(zone), "no class seen in the zone yet");
    // A person walks right, from inside the zone across the line and out of the zone.
    for i in 0..10 {
        let x = 0.3 + i as f32 * 0.05;
        let mut v: heapless::Vec<Detection, MAX_DETECTIONS> = heapless::Vec::new();
        let bbox = [x - 0.05, 0.4, x + 0.05, 0.8];
        let person = Detection {
            class: 1,
            score: 0.9,
            bbox,
            track: None,
        };
        v.push(person).unwrap();
        a.update(&mut v);
        if a.counts_changed() {
            m.counts(&a);
        }
        if i == 0 {
            assert!(
                m.render().contains(&format!("{zone} 1\n")),
                "{}",
                m.render()
            );
        }
    }
    let text = m.render();
    // Out of the zone: 0, and the series stays.
    assert!(text.contains(&format!("{zone} 0\n")), "{text}");
    let crossed = "kestrel_line_crossings_total{camera=\"rtsp://cam/1\",line=\"gate\",\
                   direction=\"out\",class=\"person\"} 1\n";
    assert!(text.contains(crossed), "{text}");
    assert!(!text.contains("direction=\"in\""), "{text}");
    promtool_accepts(&text);
}

/// Waits until `series` in `/metrics` reaches `at_least`; returns the page.
fn wait_metric(child: &mut Child, port: u16, series: &str, at_least: f64) -> String {
    let start = Instant::now();
    loop {
        let page = wait_for(child, port, "/metrics", 200, Duration::from_secs(120));
        if value(&page, series) >= at_least {
            return page;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{series} stays below {at_least}:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    let status = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_reloads_the_model_and_a_corrupt_one_leaves_the_old_running() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = repo().join("models/ppocr-cls");
    let model = dir.path().join("m.nnef.tgz");
    let good = std::fs::read(shipped.join("ppocr-cls.nnef.tgz")).unwrap();
    std::fs::write(&model, &good).unwrap();
    std::fs::copy(
        shipped.join("ppocr-cls.kestrel.toml"),
        dir.path().join("m.kestrel.toml"),
    )
    .unwrap();
    let port = free_port();
    let mut child = kestrel()
        .args([
            "run",
            "-v",
            "--no-config",
            "--source",
            "synthetic",
            "--fps",
            "20",
        ])
        .args(["--size", "64x48", "--http", &format!("127.0.0.1:{port}")])
        .arg("--model")
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let frames = "kestrel_frames_total{camera=\"synthetic\"}";
    let failed = "kestrel_model_reloads_total{camera=\"synthetic\",result=\"failed\"}";
    let ok = "kestrel_model_reloads_total{camera=\"synthetic\",result=\"ok\"}";
    let page = wait_metric(&mut child, port, frames, 3.0);
    assert_eq!(value(&page, failed) + value(&page, ok), 0.0, "{page}");

    // A corrupt file: the reload fails, the old model goes on.
    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    signal(&child, "-HUP");
    let page = wait_metric(&mut child, port, failed, 1.0);
    assert_eq!(value(&page, ok), 0.0, "{page}");
    let before = value(&page, frames);
    wait_metric(&mut child, port, frames, before + 3.0);

    // The good file again: swapped in, frames go on.
    std::fs::write(&model, &good).unwrap();
    signal(&child, "-HUP");
    let page = wait_metric(&mut child, port, ok, 1.0);
    wait_metric(&mut child, port, frames, value(&page, frames) + 3.0);

    // No signal: the file watcher sees the file written again.
    let reloads = value(&page, ok);
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&model, &good).unwrap();
    wait_metric(&mut child, port, ok, reloads + 1.0);

    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("model reload failed, the running model stays"),
        "{err}"
    );
    assert!(err.contains("model reloaded"), "{err}");
}

#[test]
fn an_rtsp_camera_through_gstreamer_reconnects_when_its_server_comes_back() {
    if !have("gst-launch-1.0", "gstreamer1.0-tools") || !have_rtsp_server() {
        return;
    }
    let (rtsp, http) = (free_port(), free_port());
    let server = RtspServer::start(rtsp, None);
    let source = format!(
        "cmd:gst-launch-1.0 -q rtspsrc location=rtsp://127.0.0.1:{rtsp}/test protocols=tcp \
         latency=0 ! rtpjpegdepay ! jpegdec ! videoconvert ! videoscale \
         ! video/x-raw,format=I420,width=320,height=240 ! fdsink"
    );
    let mut child = kestrel()
        .args([
            "run",
            "--no-config",
            "--pixel-format",
            "i420",
            "--size",
            "320x240",
        ])
        .args(["--source", &source, "--http", &format!("127.0.0.1:{http}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let camera = format!("{{camera=\"{source}\"}}");
    let frames = format!("kestrel_frames_total{camera}");
    let reconnects = format!("kestrel_source_reconnects_total{camera}");
    let page = wait_metric(&mut child, http, &frames, 10.0);
    assert_eq!(value(&page, &reconnects), 0.0, "{page}");

    // The server goes away, and comes back on the same port.
    drop(server);
    std::thread::sleep(Duration::from_secs(2));
    let server = RtspServer::start(rtsp, None);
    let page = wait_metric(&mut child, http, &reconnects, 1.0);
    wait_metric(&mut child, http, &frames, value(&page, &frames) + 10.0);

    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(server);
}

#[test]
fn a_bad_http_address_is_a_usage_error_naming_it() {
    let out = kestrel()
        .args(["run", "--no-config", "--frames", "1", "--http", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("--http localhost"), "{err}");
}
