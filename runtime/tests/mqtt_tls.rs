//! `kestrel run --mqtt mqtts://…` against a real `mosquitto` configured here with TLS: a CA, a
//! server certificate for 127.0.0.1 and a client certificate made with the `openssl` CLI, a
//! password file made with `mosquitto_passwd`. The broker also listens on a plain anonymous
//! port (`per_listener_settings`), where the test's subscriber reads what kestrel published.
//!
//! Checked: with the right password (from a password file named in a config file, or in the
//! URL) every frame arrives; with a wrong password, or a broker certificate from a CA kestrel
//! does not trust, the run goes on to its last frame and its summary counts the failed
//! connections; with `require_certificate` a client without a certificate gets nothing
//! through and one with a certificate does; missing or open key and CA files are refused at
//! start (exit 2). No output stream of any run (stdout's JSON lines and summary, stderr's
//! log at -v) holds the password.
//!
//! Needs `mosquitto` and `openssl` (apt `mosquitto`, `openssl`; `.ci/run` installs them).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use common::broker::{free_port, spawn_mosquitto, subscribe};
use common::{have, json_lines, kestrel, text};

/// The broker's password for user `kestrel`: searched for in every output.
const PASSWORD: &str = "Tr0ub4dor-kestrel-test-pw";

/// A CA, the broker's certificate (127.0.0.1, signed by the CA), a client certificate (signed
/// by the CA), and a second CA that signed nothing the broker shows.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        pki.ca("ca");
        pki.ca("rogue-ca");
        pki.leaf(
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf("client", "ca", "extendedKeyUsage=clientAuth\n");
        pki.leaf("other-client", "ca", "extendedKeyUsage=clientAuth\n");
        for key in ["client.key", "other-client.key"] {
            chmod(&pki.path(key), 0o600);
        }
        pki
    }

    /// `openssl ARGS` in the PKI's folder (`args` split at white space).
    fn openssl(&self, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            text(&out.stderr)
        );
    }

    /// A self-signed CA: `name.key`, `name.pem`.
    fn ca(&self, name: &str) {
        self.openssl(&format!(
            "req -x509 {NEW_KEY} -keyout {name}.key -out {name}.pem -days 2 \
             -subj /CN=kestrel-test-{name} -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ));
    }

    /// A certificate signed by `ca` with `extensions` (lines of an openssl extension file):
    /// `name.key`, `name.pem`.
    fn leaf(&self, name: &str, ca: &str, extensions: &str) {
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{extensions}")).unwrap();
        self.openssl(&format!(
            "req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN=kestrel-test-{name}"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 \
             -out {name}.pem -extfile {name}.ext"
        ));
    }
}

/// A new P-256 key, unencrypted (`openssl req` arguments).
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// mosquitto with a TLS listener (password file, or client certificates when `mutual`) and a
/// plain anonymous one for the test's subscriber. `user root`: started as root (a CI
/// container), mosquitto would otherwise switch to its own user, which cannot read the
/// test's private folder; started as anyone else, it stays who it is anyway.
struct TlsBroker {
    child: Child,
    tls: u16,
    plain: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_broker(pki: &Pki, mutual: bool) -> TlsBroker {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let made = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&passwd)
        .args(["kestrel", PASSWORD])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let (tls, plain) = (free_port(), free_port());
    let auth = if mutual {
        "require_certificate true\nallow_anonymous true\n".to_string()
    } else {
        format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        )
    };
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nper_listener_settings true\npersistence false\n\
             listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{auth}\
             listener {plain} 127.0.0.1\nallow_anonymous true\n",
            pki.path("ca.pem").display(),
            pki.path("server.pem").display(),
            pki.path("server.key").display(),
        ),
    )
    .unwrap();
    let child = spawn_mosquitto(&conf, &[tls, plain]);
    TlsBroker {
        child,
        tls,
        plain,
        _dir: dir,
    }
}

fn tools() -> bool {
    have("mosquitto", "mosquitto") && have("openssl", "openssl")
}

/// A PKI and a broker using it (`mutual`: client certificates instead of passwords); `None`
/// where the tools are missing (the test is skipped).
fn setup(mutual: bool) -> Option<(Pki, TlsBroker)> {
    if !tools() {
        return None;
    }
    let pki = Pki::new();
    let broker = start_tls_broker(&pki, mutual);
    Some((pki, broker))
}

/// `kestrel run` on `frames` synthetic frames at `fps` (0: at once) with `-v` (its log on
/// stderr) and `args`; its output, checked for the password on every stream.
fn run(frames: u32, fps: u32, args: &[&str]) -> Output {
    let out = kestrel()
        .args([
            "-v",
            "run",
            "--no-config",
            "--source",
            "synthetic",
            "--size",
            "64x48",
        ])
        .args(["--fps", &fps.to_string(), "--frames", &frames.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert_no_password(&out);
    out
}

fn assert_no_password(out: &Output) {
    for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !text(stream).contains(PASSWORD),
            "the password is in {name}:\n{}",
            text(stream)
        );
    }
}

/// The summary line of a finished run (exit 0 asked of it).
fn summary(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out.stdout);
    lines.last().unwrap()["summary"].clone()
}

/// `n` frame lines from the subscriber, in order of `seq`.
fn receive(rx: &std::sync::mpsc::Receiver<Vec<u8>>, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let payload = rx.recv_timeout(Duration::from_secs(20)).expect("a message");
            assert!(!String::from_utf8_lossy(&payload).contains(PASSWORD));
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn the_right_password_over_tls_publishes_every_frame() {
    let Some((pki, broker)) = setup(false) else {
        return;
    };
    // From a config file (mode 600: it names a secret file, it holds no secret itself) and a
    // password file.
    let rx = subscribe(broker.plain, "kestrel/tls");
    let password_file = pki.path("mqtt.pass");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    chmod(&password_file, 0o600);
    let config = pki.path("kestrel.toml");
    std::fs::write(
        &config,
        format!(
            "source = \"synthetic\"\nsize = \"64x48\"\nfps = 0\nframes = 5\n\
             mqtt = \"mqtts://127.0.0.1:{}/kestrel/tls\"\nmqtt_user = \"kestrel\"\n\
             mqtt_password_file = \"mqtt.pass\"\nmqtt_ca = \"ca.pem\"\n",
            broker.tls
        ),
    )
    .unwrap();
    let out = kestrel()
        .args(["-v", "run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_no_password(&out);
    let s = summary(&out);
    assert_eq!(s["mqtt_dropped"], 0, "{s}");
    assert_eq!(s["mqtt_connection_errors"], 0, "{s}");
    assert_eq!(receive(&rx, 5), [0, 1, 2, 3, 4]);

    // The password in the URL: the log shows the broker with the password as ***.
    let rx = subscribe(broker.plain, "kestrel/url");
    let url = format!(
        "mqtts://kestrel:{PASSWORD}@127.0.0.1:{}/kestrel/url",
        broker.tls
    );
    let ca = pki.path("ca.pem").display().to_string();
    let out = run(5, 0, &["--mqtt", &url, "--mqtt-ca", &ca]);
    let s = summary(&out);
    assert_eq!(s["mqtt_dropped"], 0, "{s}");
    let err = text(&out.stderr);
    let shown = format!(
        "mqtts://kestrel:***@127.0.0.1:{}/kestrel/url: connected",
        broker.tls
    );
    assert!(err.contains(&shown), "{err}");
    assert_eq!(receive(&rx, 5), [0, 1, 2, 3, 4]);
}

#[test]
fn a_wrong_password_or_an_untrusted_broker_leaves_the_run_going() {
    let Some((pki, broker)) = setup(false) else {
        return;
    };
    let url = |password: &str| {
        format!(
            "mqtts://kestrel:{password}@127.0.0.1:{}/kestrel/bad",
            broker.tls
        )
    };
    let wrong = format!("{PASSWORD}-not");
    let ca = pki.path("ca.pem");
    let rogue = pki.path("rogue-ca.pem");
    for (url, ca, why) in [
        (url(&wrong), &ca, "the broker refused the credentials"),
        (
            url(PASSWORD),
            &rogue,
            "TLS: the broker's certificate is not accepted (UnknownIssuer)",
        ),
    ] {
        let ca = ca.display().to_string();
        let out = run(30, 20, &["--mqtt", &url, "--mqtt-ca", &ca]);
        let err = text(&out.stderr);
        assert!(!err.contains(&wrong), "{err}");
        // Every frame went through; the broker's refusals are counted, logged, retried.
        let s = summary(&out);
        assert_eq!(s["frames"], 30, "{s}");
        assert!(s["mqtt_connection_errors"].as_u64().unwrap() >= 2, "{s}");
        let shown = format!(
            "mqtt mqtts://kestrel:***@127.0.0.1:{}/kestrel/bad: cannot connect: {why}",
            broker.tls
        );
        assert!(err.contains(&shown), "{shown} not in:\n{err}");
    }
}

#[test]
fn mutual_tls_admits_only_a_client_with_a_certificate() {
    let Some((pki, broker)) = setup(true) else {
        return;
    };
    let url = format!("mqtts://127.0.0.1:{}/kestrel/mtls", broker.tls);
    let ca = pki.path("ca.pem").display().to_string();
    let rx = subscribe(broker.plain, "kestrel/mtls");
    let out = run(30, 20, &["--mqtt", &url, "--mqtt-ca", &ca]);
    let s = summary(&out);
    assert_eq!(s["frames"], 30, "{s}");
    assert!(s["mqtt_connection_errors"].as_u64().unwrap() >= 1, "{s}");
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot connect: TLS: the broker ended the handshake (CertificateRequired)"),
        "{err}"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "a client without a certificate published"
    );
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let out = run(
        5,
        0,
        &[
            "--mqtt",
            &url,
            "--mqtt-ca",
            &ca,
            "--mqtt-cert",
            cert,
            "--mqtt-key",
            key,
        ],
    );
    let s = summary(&out);
    assert_eq!(s["mqtt_connection_errors"], 0, "{s}");
    assert_eq!(receive(&rx, 5), [0, 1, 2, 3, 4]);
}

#[test]
fn unusable_tls_files_are_refused_at_start() {
    if !tools() {
        return;
    }
    let pki = Pki::new();
    let url = "mqtts://127.0.0.1:9/kestrel/files";
    let ca = pki.path("ca.pem").display().to_string();
    let cert = pki.path("client.pem").display().to_string();
    let other_key = pki.path("other-client.key").display().to_string();
    let missing = pki.path("missing.pem").display().to_string();
    let open_key = pki.path("open.key");
    std::fs::copy(pki.path("client.key"), &open_key).unwrap();
    chmod(&open_key, 0o644);
    let open_key = open_key.display().to_string();
    let not_pem = pki.path("client.ext").display().to_string();
    // (CA file, client key file with the client certificate, what the refusal says)
    for (ca, key, needle) in [
        (&missing, None, format!("mqtt_ca {missing}")),
        (
            &not_pem,
            None,
            format!("mqtt_ca {not_pem}: holds no PEM certificate"),
        ),
        (&ca, Some(&missing), format!("mqtt_key {missing}")),
        (
            &ca,
            Some(&open_key),
            format!("(mode 0644): chmod 600 {open_key}"),
        ),
        (&ca, Some(&other_key), "do not go together".to_string()),
    ] {
        let mut args = vec!["--mqtt-ca", ca.as_str()];
        if let Some(key) = key {
            args.extend(["--mqtt-cert", cert.as_str(), "--mqtt-key", key.as_str()]);
        }
        let out = kestrel()
            .args(["run", "--no-config", "--frames", "1", "--mqtt", url])
            .args(&args)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&needle), "{needle} not in: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: no frame before the refusal"
        );
    }
}
