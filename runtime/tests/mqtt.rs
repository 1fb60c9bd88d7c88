//! `kestrel run --mqtt`: a real `mosquitto` broker started on 127.0.0.1 (a free port), a
//! subscriber (rumqttc) receiving every frame's JSON line; then the broker restarted in the
//! middle of a run — the publisher reconnects and messages flow again.
//!
//! Needs `mosquitto` (apt `mosquitto`; `.ci/run` installs it).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::broker::{free_port, start_broker, subscribe};
use common::{have, json_lines, kestrel};

#[test]
fn a_subscriber_receives_every_frame() {
    if !have("mosquitto", "mosquitto") {
        return;
    }
    let port = free_port();
    let _broker = start_broker(port);
    let rx = subscribe(port, "kestrel/test");
    let out = kestrel()
        .args(["run", "--frames", "5", "--fps", "0"])
        .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}/kestrel/test")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines[5]["summary"]["mqtt_dropped"], 0);
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let payload = rx.recv_timeout(Duration::from_secs(10)).expect("a message");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v, lines[seqs.len()], "the message is the frame's JSON line");
        seqs.push(v["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
}

#[test]
fn publishing_survives_a_broker_restart() {
    if !have("mosquitto", "mosquitto") {
        return;
    }
    let port = free_port();
    let broker = start_broker(port);
    let run = kestrel()
        .args([
            "run",
            "--source",
            "synthetic",
            "--fps",
            "20",
            "--size",
            "64x48",
        ])
        .args([
            "--mqtt",
            &format!("mqtt://127.0.0.1:{port}/kestrel/restart"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seq = |payload: Vec<u8>| {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        v["seq"].as_u64().unwrap()
    };
    // Messages flow through the first broker...
    let rx = subscribe(port, "kestrel/restart");
    let before = seq(rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a first message"));
    drop(broker); // ...which is killed: the publisher loses its connection.
    std::thread::sleep(Duration::from_millis(500));
    let _broker = start_broker(port);
    let rx = subscribe(port, "kestrel/restart");
    // Newer frames arrive once the publisher has reconnected (backoff ≤ 5 s). Messages
    // unacknowledged at the kill may come again first (QoS 1 is at least once).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = seq(rx
            .recv_timeout(left)
            .expect("newer messages after the restart"));
        if got > before + 5 {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
