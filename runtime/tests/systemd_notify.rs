//! `kestrel run` under a `Type=notify` unit: the messages systemd would receive on its
//! notification socket (a datagram socket bound by the test, as systemd binds one): `READY=1`
//! first, `WATCHDOG=1` pings from the frame loop at half of `WATCHDOG_USEC`, `STOPPING=1` last.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{kestrel, text};

/// Runs 40 synthetic frames at 20 fps with the given watchdog environment; returns the
/// notifications in order.
fn notifications(watchdog_pid: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut cmd = kestrel();
    cmd.args(["run", "--frames", "40", "--fps", "20"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    if let Some(pid) = watchdog_pid {
        cmd.env("WATCHDOG_PID", pid);
    }
    // Read while the run goes on, as systemd does: a datagram socket's queue is short, and a
    // full one blocks the sender.
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let reader = std::thread::spawn(move || {
        let mut messages = vec![];
        let mut buf = [0u8; 256];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let m = text(&buf[..n]).trim().to_string();
                    let last = m == "STOPPING=1";
                    messages.push(m);
                    if last {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // Quiet, and the run is over: nothing more will come.
                    if finished.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                }
                Err(e) => panic!("notification socket: {e}"),
            }
        }
        messages
    });
    let out = cmd.output().expect("start kestrel");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(out.status.success(), "{}", text(&out.stderr));
    reader.join().unwrap()
}

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let m = notifications(None);
    assert_eq!(m.first().map(String::as_str), Some("READY=1"), "{m:?}");
    assert_eq!(m.last().map(String::as_str), Some("STOPPING=1"), "{m:?}");
    // Two seconds of frames, a ping every 100 ms: allow for a slow start (qemu).
    let pings = m.iter().filter(|s| *s == "WATCHDOG=1").count();
    assert!(pings >= 5, "{pings} pings: {m:?}");
    assert!(
        m.iter()
            .all(|s| ["READY=1", "WATCHDOG=1", "STOPPING=1"].contains(&s.as_str())),
        "{m:?}"
    );
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_pinged() {
    // systemd sets WATCHDOG_PID to the main process; a child that inherits it must not ping.
    let m = notifications(Some("1"));
    assert_eq!(m, ["READY=1", "STOPPING=1"], "{m:?}");
}
