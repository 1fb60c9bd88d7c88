//! Secrets at the boundary of `kestrel run`, on the real binary: a config file holding a
//! password and readable by others is refused (exit 2, the path and the `chmod`), and so is a
//! password file open to its group; `--http` on an address other than loopback refuses to
//! start without a bearer token, and with one (from `http_token_file`) answers `/metrics` only
//! to a request that carries it, `/healthz` to anyone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::broker::free_port;
use common::{kestrel, text};

const TOKEN: &str = "kestrel-test-token-0123456789";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One HTTP/1.1 GET to 127.0.0.1 with `headers` (each ending in CRLF): the status, or `None`
/// while nothing listens.
fn status(port: u16, path: &str, headers: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.get(9..12)?.parse().ok()
}

#[test]
fn a_config_or_password_file_open_to_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kestrel.toml");
    std::fs::write(
        &config,
        "frames = 1\nmqtt = \"mqtts://127.0.0.1:9/k\"\nmqtt_user = \"cam\"\n\
         mqtt_password = \"hunter2-in-config\"\n",
    )
    .unwrap();
    chmod(&config, 0o644);
    let out = kestrel()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("chmod 640 {}", config.display())) && err.contains("mqtt_password"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let password = dir.path().join("mqtt.pass");
    std::fs::write(&password, "hunter2-in-file\n").unwrap();
    chmod(&password, 0o640);
    let out = kestrel()
        .args(["run", "--no-config", "--frames", "1"])
        .args([
            "--mqtt",
            "mqtts://cam@127.0.0.1:9/k",
            "--mqtt-password-file",
        ])
        .arg(&password)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("(mode 0640): chmod 600 {}", password.display())),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn off_loopback_metrics_need_the_bearer_token() {
    let port = free_port();
    let addr = format!("0.0.0.0:{port}");
    let out = kestrel()
        .args(["run", "--no-config", "--frames", "1", "--http", &addr])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("0.0.0.0 is reachable from other machines") && err.contains("http_token"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("http.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    chmod(&token, 0o600);
    let config = dir.path().join("kestrel.toml");
    std::fs::write(
        &config,
        format!(
            "source = \"synthetic\"\nsize = \"64x48\"\nfps = 20\nhttp = \"{addr}\"\n\
             http_token_file = \"http.token\"\n"
        ),
    )
    .unwrap();
    let mut child = kestrel()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while status(port, "/healthz", "") != Some(200) {
        if start.elapsed() > Duration::from_secs(120) || child.try_wait().unwrap().is_some() {
            child.kill().ok();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("/healthz never answered 200; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    assert_eq!(status(port, "/metrics", ""), Some(401));
    assert_eq!(
        status(port, "/metrics", &bearer("wrong-token-0123456789")),
        Some(401)
    );
    assert_eq!(status(port, "/snapshot.jpg", ""), Some(401));
    assert_eq!(status(port, "/metrics", &bearer(TOKEN)), Some(200));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!text(&out.stderr).contains(TOKEN));
}
