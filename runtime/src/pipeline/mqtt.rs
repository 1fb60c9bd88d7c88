//! `--mqtt mqtt://HOST:PORT/TOPIC` or `mqtts://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC`: every
//! frame's JSON line published with QoS 1 through [`rumqttc`], over TLS (rustls on ring's
//! crypto, no OpenSSL) for `mqtts://`.
//!
//! Topics, under the run's `TOPIC`: `TOPIC` (each frame's line), `TOPIC/events/enter`,
//! `TOPIC/events/leave`, `TOPIC/events/cross` (one message per event), `TOPIC/counts` (the
//! zone and line counts, **retained**, republished when they change, so a subscriber that
//! connects later gets the current counts at once) and `TOPIC/status` (the periodic status
//! line). Every message is QoS 1.
//!
//! The broker ([`BrokerSettings`]): the URL; for `mqtts://` the system's root certificates
//! (`rustls-native-certs`: what the OS's `ca-certificates` keeps current) or a private CA
//! (`--mqtt-ca`), and a client certificate and key for mutual TLS; a user name and password
//! from the URL, the settings, or a password file. A password over plain `mqtt://` travels in
//! clear text and is refused unless `--mqtt-insecure`. Everything a file or setting gets wrong
//! is refused before the run starts ([`MqttError`], exit 2); the URL is only ever shown with
//! its password as `***`.
//!
//! Three parts: the run loop [`MqttSink::publish`]es into a bounded queue (when it is full the
//! oldest message is dropped and counted: fresh results matter more than old ones); a
//! publisher thread moves messages from the queue into rumqttc; a connection thread drives
//! rumqttc's event loop, which reconnects by itself (we wait 0.1 → 5 s between failed
//! attempts) and resends unacknowledged QoS 1 messages. A broker that cannot be reached, whose
//! certificate is not trusted, or that refuses the credentials is logged (naming the broker,
//! never the secret), counted ([`MqttSink::connection_errors`]) and tried again with the same
//! backoff; the camera loop never waits for it. While the broker is away, rumqttc's own
//! request channel fills, the publisher blocks, and our queue drops oldest. At the end
//! [`MqttSink::finish`] waits (bounded) for the queue to drain and the acks to arrive.
//!
//! Each message allocates its payload (rumqttc takes ownership of a `Vec`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::analytics::EventKind;
use crate::camera::Backoff;
use crate::redact::redact;
use crate::secret::{self, Secret, SecretFileError};

/// Messages the queue holds before dropping the oldest.
pub const QUEUE: usize = 256;

/// A bad `--mqtt` URL.
#[derive(Debug, thiserror::Error)]
#[error("--mqtt '{url}': {reason}")]
pub struct MqttUrlError {
    url: String,
    reason: &'static str,
}

/// What an `mqtt://` or `mqtts://` URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// Host name or IP address (what a TLS certificate must name).
    pub host: String,
    /// Port: 1883 for `mqtt://`, 8883 for `mqtts://` unless given.
    pub port: u16,
    /// The run's topic.
    pub topic: String,
    /// `USER@`, percent-decoded.
    pub user: Option<String>,
    /// `USER:PASSWORD@`, percent-decoded.
    pub password: Option<Secret>,
}

/// Parses `mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC` (port 1883 by default) or the same with
/// `mqtts://` (port 8883). A user or password holding `@`, `:` or `/` is percent-encoded
/// (`%40`, `%3A`, `%2F`). Errors show the URL with its password as `***`.
pub fn parse_url(url: &str) -> Result<BrokerUrl, MqttUrlError> {
    let err = |reason| MqttUrlError {
        url: redact(url).into_owned(),
        reason,
    };
    let (tls, rest) =
        match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(err(
                "expected mqtt://HOST[:PORT]/TOPIC or mqtts://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC",
            )),
        };
    let (authority, topic) = rest.split_once('/').ok_or_else(|| err("no /TOPIC"))?;
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(err("the topic must be non-empty and have no wildcards"));
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, password) = match u.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (u, None),
            };
            let user = percent_decode(user).ok_or_else(|| err("bad %-escape in the user"))?;
            if user.is_empty() {
                return Err(err("an empty user before @"));
            }
            let password = password
                .map(|p| percent_decode(p).ok_or_else(|| err("bad %-escape in the password")))
                .transpose()?;
            (Some(user), password.map(Secret::new))
        }
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| err("bad port"))?),
        None => (hostport, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(err("no host"));
    }
    Ok(BrokerUrl {
        tls,
        host: host.into(),
        port,
        topic: topic.into(),
        user,
        password,
    })
}

/// `%XX` escapes decoded; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How a run reaches its broker: the `--mqtt` URL and what the `--mqtt-*` flags and `mqtt_*`
/// keys add. A user or password in the URL wins over the settings'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerSettings {
    /// The `--mqtt` URL as given (shown only through [`redact`]).
    pub url: String,
    /// `mqtt_user` / `--mqtt-user`.
    pub user: Option<String>,
    /// `mqtt_password` (from the config file).
    pub password: Option<Secret>,
    /// `mqtt_password_file` / `--mqtt-password-file`: a file holding only the password.
    pub password_file: Option<PathBuf>,
    /// `mqtt_ca` / `--mqtt-ca`: PEM certificates trusted instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// `mqtt_cert` / `--mqtt-cert`: the client's PEM certificate chain (mutual TLS).
    pub cert: Option<PathBuf>,
    /// `mqtt_key` / `--mqtt-key`: the client's PEM private key (mutual TLS).
    pub key: Option<PathBuf>,
    /// `mqtt_insecure` / `--mqtt-insecure`: allow a password over plain `mqtt://`.
    pub insecure: bool,
}

impl BrokerSettings {
    /// The URL's topic (`None` when the URL does not parse: connecting reports that).
    pub fn topic(&self) -> Option<String> {
        parse_url(&self.url).ok().map(|u| u.topic)
    }

    /// The same broker and credentials, publishing under `topic` (a camera's own).
    pub fn with_topic(&self, topic: &str) -> BrokerSettings {
        let mut settings = self.clone();
        if let Some((scheme, rest)) = self.url.split_once("://") {
            let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
            settings.url = format!("{scheme}://{authority}/{topic}");
        }
        settings
    }
}

/// MQTT settings that cannot be used: the run does not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The URL itself.
    #[error(transparent)]
    Url(#[from] MqttUrlError),
    /// A password, CA, certificate or key file.
    #[error("--mqtt: {0}")]
    File(#[from] SecretFileError),
    /// Settings that do not fit together (shown with the URL redacted).
    #[error("--mqtt '{url}': {reason}")]
    Settings {
        /// The URL, its password as `***`.
        url: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

/// The connection settings rumqttc gets, and the broker as logs show it.
struct Prepared {
    options: MqttOptions,
    topic: String,
    label: String,
}

impl BrokerSettings {
    /// Checks the settings and reads their files: the URL, the credentials (a password needs
    /// TLS or `insecure`), the CA, certificate and key (TLS only; the key file private to its
    /// owner).
    fn prepare(&self) -> Result<Prepared, MqttError> {
        let url = parse_url(&self.url)?;
        let label = redact(&self.url).into_owned();
        let bad = |reason: String| MqttError::Settings {
            url: label.clone(),
            reason,
        };
        let password = match (&url.password, &self.password, &self.password_file) {
            (Some(p), _, _) | (None, Some(p), _) => Some(p.clone()),
            (None, None, Some(file)) => Some(secret::read_secret_file(file, "mqtt_password_file")?),
            (None, None, None) => None,
        };
        let user = url.user.clone().or_else(|| self.user.clone());
        if password.is_some() && user.is_none() {
            return Err(bad(
                "a password needs a user name (USER:PASSWORD@ in the URL, or mqtt_user)".into(),
            ));
        }
        if !url.tls {
            if password.is_some() && !self.insecure {
                return Err(bad(
                    "a password over plain mqtt:// travels in clear text: use \
                     mqtts://, or --mqtt-insecure (mqtt_insecure = true) to send it anyway"
                        .into(),
                ));
            }
            if self.ca.is_some() || self.cert.is_some() || self.key.is_some() {
                return Err(bad(
                    "a CA, certificate or key is for TLS: use mqtts://".into()
                ));
            }
        }
        // One connection per camera: a broker drops the older of two clients with one id.
        static CLIENTS: AtomicU64 = AtomicU64::new(0);
        let client = CLIENTS.fetch_add(1, Ordering::Relaxed);
        let mut options = MqttOptions::new(
            match client {
                0 => format!("kestrel-{}", std::process::id()),
                n => format!("kestrel-{}-{n}", std::process::id()),
            },
            url.host.clone(),
            url.port,
        );
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(user) = user {
            options.set_credentials(
                user,
                password.as_ref().map_or("", |p| p.expose()).to_string(),
            );
        }
        if url.tls {
            let config = self.tls_config(&bad)?;
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
            ));
        }
        Ok(Prepared {
            options,
            topic: url.topic,
            label,
        })
    }

    /// rustls on ring: the CA file's certificates or the system's roots, and the client's
    /// certificate and key when both are given.
    fn tls_config(
        &self,
        bad: &dyn Fn(String) -> MqttError,
    ) -> Result<rustls::ClientConfig, MqttError> {
        // ring, not aws-lc-rs: it cross-builds for the boards with the C cross-compiler alone.
        // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange
        // (X25519MLKEM768); the broker link carries counts and events, not long-lived secrets.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in pem_certificates(ca, "mqtt_ca")? {
                    roots.add(cert).map_err(|e| {
                        file_error(ca, "mqtt_ca", format!("not a CA certificate ({e})"))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    log::warn!("system root certificates: {e}");
                }
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(bad("no system root certificates found (install \
                         ca-certificates, or give the broker's CA with --mqtt-ca)"
                        .into()));
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        match (&self.cert, &self.key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = pem_certificates(cert, "mqtt_cert")?;
                secret::check_private(key, secret::OWNER_ONLY, "mqtt_key")?;
                let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    file_error(key, "mqtt_key", format!("no PEM private key ({e})"))
                })?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    bad(format!(
                        "the client certificate {} and key {} do not go together ({e})",
                        cert.display(),
                        key.display()
                    ))
                })
            }
            _ => Err(bad(
                "mutual TLS needs both --mqtt-cert and --mqtt-key (mqtt_cert, mqtt_key)".into(),
            )),
        }
    }
}

fn file_error(path: &Path, what: &str, reason: String) -> SecretFileError {
    SecretFileError {
        what: what.into(),
        path: path.into(),
        reason,
    }
}

/// The PEM certificates of `path`; at least one.
fn pem_certificates(
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, SecretFileError> {
    let err = |reason: String| file_error(path, what, reason);
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A failed or lost connection in words that say what to fix, without the credentials (which
/// no rumqttc or rustls error carries).
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => "the broker refused the credentials (wrong user name or password?)".into(),
        ConnectionError::ConnectionRefused(code) => format!("the broker refused: {code:?}"),
        _ => match find_rustls(e) {
            Some(rustls::Error::InvalidCertificate(c)) => format!(
                "TLS: the broker's certificate is not accepted ({c:?}): is it signed by the CA \
                 given with --mqtt-ca (or a system root), unexpired, and issued for this host?"
            ),
            Some(rustls::Error::AlertReceived(a)) => format!(
                "TLS: the broker ended the handshake ({a:?}): does it want a client certificate \
                 (--mqtt-cert, --mqtt-key) that it trusts?"
            ),
            Some(other) => format!("TLS: {other}"),
            None => e.to_string(),
        },
    }
}

/// The rustls error inside `e`, through rumqttc's TLS, state and I/O wrappers (a handshake
/// refused by the broker surfaces on the first read, as an I/O error inside a state error).
fn find_rustls(e: &ConnectionError) -> Option<&rustls::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
        }
        cause = c.source();
    }
    None
}

/// Which topic under the run's topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `TOPIC`: a frame's line.
    Frame,
    /// `TOPIC/events/KIND`.
    Event(EventKind),
    /// `TOPIC/counts`, retained.
    Counts,
    /// `TOPIC/status`.
    Status,
}

impl Topic {
    fn index(self) -> usize {
        match self {
            Topic::Frame => 0,
            Topic::Event(EventKind::Enter) => 1,
            Topic::Event(EventKind::Leave) => 2,
            Topic::Event(EventKind::Cross) => 3,
            Topic::Counts => 4,
            Topic::Status => 5,
        }
    }
}

/// The topic names under `base`, by [`Topic`] index.
fn topic_names(base: &str) -> [String; 6] {
    [
        base.to_string(),
        format!("{base}/events/enter"),
        format!("{base}/events/leave"),
        format!("{base}/events/cross"),
        format!("{base}/counts"),
        format!("{base}/status"),
    ]
}

#[derive(Default)]
struct Queue {
    messages: Mutex<VecDeque<(Topic, Vec<u8>)>>,
    cv: Condvar,
    closed: AtomicBool,
    dropped: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
}

/// Publishes JSON lines to an MQTT topic.
pub struct MqttSink {
    queue: Arc<Queue>,
    client: Client,
    publisher: Option<JoinHandle<()>>,
    connection: Option<JoinHandle<()>>,
    /// The URL as logs show it: its password as `***`.
    url: String,
}

impl MqttSink {
    /// Checks `broker` and connects to it in the background: files and settings that cannot
    /// be used are refused now; a broker that cannot be reached (or refuses the credentials or
    /// the TLS handshake) is tried again with backoff while the run goes on.
    pub fn connect(broker: &BrokerSettings) -> Result<MqttSink, MqttError> {
        let Prepared {
            options,
            topic,
            label,
        } = broker.prepare()?;
        let (client, mut connection) = Client::new(options, 16);
        let queue = Arc::new(Queue::default());
        let q = queue.clone();
        let url = label.clone();
        let connection = std::thread::Builder::new()
            .name("kestrel-mqtt-conn".into())
            .spawn(move || {
                let mut backoff = Backoff::new();
                let mut connected = false;
                for event in connection.iter() {
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            log::info!("mqtt {label}: connected");
                            connected = true;
                            backoff.reset();
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            q.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if q.closed.load(Ordering::Relaxed) {
                                break;
                            }
                            q.errors.fetch_add(1, Ordering::Relaxed);
                            let why = describe(&e);
                            if connected {
                                log::warn!("mqtt {label}: connection lost ({why}); reconnecting");
                            } else {
                                log::warn!("mqtt {label}: cannot connect: {why}");
                            }
                            connected = false;
                            std::thread::sleep(backoff.next_delay());
                        }
                    }
                }
            })
            .expect("spawn mqtt thread");
        let q = queue.clone();
        let c = client.clone();
        let topics = topic_names(&topic);
        let publisher = std::thread::Builder::new()
            .name("kestrel-mqtt-pub".into())
            .spawn(move || loop {
                let message = {
                    let mut m = q.messages.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        if let Some(msg) = m.pop_front() {
                            break Some(msg);
                        }
                        if q.closed.load(Ordering::Relaxed) {
                            break None;
                        }
                        m = q.cv.wait(m).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let Some((to, message)) = message else { return };
                let retain = to == Topic::Counts;
                if c.publish(
                    topics[to.index()].as_str(),
                    QoS::AtLeastOnce,
                    retain,
                    message,
                )
                .is_err()
                {
                    return;
                }
                q.published.fetch_add(1, Ordering::Relaxed);
            })
            .expect("spawn mqtt thread");
        Ok(MqttSink {
            queue,
            client,
            publisher: Some(publisher),
            connection: Some(connection),
            url,
        })
    }

    /// Queues one frame line; drops the oldest message when the queue is full.
    pub fn publish(&mut self, payload: &[u8]) {
        self.publish_to(Topic::Frame, payload)
    }

    /// Queues one message to `topic`; drops the oldest message when the queue is full.
    pub fn publish_to(&mut self, topic: Topic, payload: &[u8]) {
        let mut m = self
            .queue
            .messages
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if m.len() >= QUEUE {
            m.pop_front();
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
        m.push_back((topic, payload.to_vec()));
        drop(m);
        self.queue.cv.notify_one();
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Connection attempts that failed (unreachable broker, TLS handshake, refused
    /// credentials) and connections lost, so far.
    pub fn connection_errors(&self) -> u64 {
        self.queue.errors.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for every queued message to be published and acknowledged, then
    /// disconnects. Messages still unacknowledged count as dropped.
    pub fn finish(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let q = &self.queue;
        let pending = || {
            let queued = q.messages.lock().map(|m| m.len()).unwrap_or(0) as u64;
            queued + q.published.load(Ordering::Relaxed)
                - q.acked
                    .load(Ordering::Relaxed)
                    .min(q.published.load(Ordering::Relaxed))
        };
        while pending() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = pending();
        if left > 0 {
            log::warn!(
                "mqtt {}: {left} message(s) not acknowledged at exit",
                self.url
            );
            q.dropped.fetch_add(left, Ordering::Relaxed);
        }
        q.closed.store(true, Ordering::Relaxed);
        q.cv.notify_all();
        let _ = self.client.disconnect();
        for handle in [self.publisher.take(), self.connection.take()]
            .into_iter()
            .flatten()
        {
            let until = Instant::now() + Duration::from_millis(500);
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_topic_keeps_the_broker_and_its_user() {
        let b = BrokerSettings {
            url: "mqtts://cam:pw@broker:8883/site/frames".into(),
            ..BrokerSettings::default()
        };
        assert_eq!(b.topic().as_deref(), Some("site/frames"));
        let door = b.with_topic("site/frames/door");
        assert_eq!(door.url, "mqtts://cam:pw@broker:8883/site/frames/door");
        assert_eq!(door.topic().as_deref(), Some("site/frames/door"));
    }

    fn plain(host: &str, port: u16, topic: &str) -> BrokerUrl {
        BrokerUrl {
            tls: false,
            host: host.into(),
            port,
            topic: topic.into(),
            user: None,
            password: None,
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884/kestrel/cam0").unwrap(),
            plain("127.0.0.1", 1884, "kestrel/cam0")
        );
        assert_eq!(parse_url("mqtt://broker/t").unwrap().port, 1883);
        let tls = parse_url("mqtts://broker.example/k/cam1").unwrap();
        assert_eq!((tls.tls, tls.port, tls.user), (true, 8883, None));
        let full = parse_url("mqtts://cam%40site:p%3Aw%2Fd@10.0.0.2:8884/k").unwrap();
        assert_eq!((full.host.as_str(), full.port), ("10.0.0.2", 8884));
        assert_eq!(full.user.as_deref(), Some("cam@site"));
        assert_eq!(full.password.as_ref().map(Secret::expose), Some("p:w/d"));
        let user_only = parse_url("mqtts://cam@h/k").unwrap();
        assert_eq!(
            (user_only.user.as_deref(), user_only.password),
            (Some("cam"), None)
        );
        for bad in [
            "http://x/t",
            "mqtt://x",
            "mqtt://x/",
            "mqtt://:1/t",
            "mqtt://x:port/t",
            "mqtt://x/a/#",
            "mqtts://u:pw@/t",
            "mqtts://:pw@h/t",
            "mqtts://u:%zz@h/t",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        // Errors never show the password.
        let e = parse_url("mqtts://u:hunter2@h:x/t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("u:***@h") && !e.contains("hunter2"), "{e}");
    }

    fn settings(url: &str) -> BrokerSettings {
        BrokerSettings {
            url: url.into(),
            ..BrokerSettings::default()
        }
    }

    fn refusal(broker: &BrokerSettings) -> String {
        let e = broker.prepare().err().expect("refused").to_string();
        assert!(!e.contains("hunter2"), "{e}");
        e
    }

    #[test]
    fn a_password_over_plain_mqtt_needs_insecure() {
        let e = refusal(&settings("mqtt://u:hunter2@127.0.0.1/t"));
        assert!(
            e.contains("clear text") && e.contains("--mqtt-insecure"),
            "{e}"
        );
        assert!(e.contains("mqtt://u:***@127.0.0.1/t"), "{e}");
        let from_settings = BrokerSettings {
            user: Some("u".into()),
            password: Some(Secret::new("hunter2")),
            ..settings("mqtt://127.0.0.1/t")
        };
        assert!(refusal(&from_settings).contains("clear text"));
        let insecure = BrokerSettings {
            insecure: true,
            ..from_settings
        };
        assert!(insecure.prepare().is_ok());
        // Anonymous plain MQTT stays as it was.
        assert!(settings("mqtt://127.0.0.1/t").prepare().is_ok());
    }

    #[test]
    fn settings_that_do_not_fit_are_refused() {
        let no_user = BrokerSettings {
            password: Some(Secret::new("hunter2")),
            ..settings("mqtts://127.0.0.1/t")
        };
        assert!(refusal(&no_user).contains("needs a user"));
        let ca_on_plain = BrokerSettings {
            ca: Some("/nonexistent/ca.pem".into()),
            ..settings("mqtt://127.0.0.1/t")
        };
        assert!(refusal(&ca_on_plain).contains("use mqtts://"));
        let missing_ca = BrokerSettings {
            ca: Some("/nonexistent/ca.pem".into()),
            ..settings("mqtts://127.0.0.1/t")
        };
        let e = refusal(&missing_ca);
        assert!(e.contains("mqtt_ca /nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let e = refusal(&BrokerSettings {
            ca: Some(not_pem.clone()),
            ..settings("mqtts://127.0.0.1/t")
        });
        assert!(e.contains("no PEM certificate"), "{e}");
        let half = BrokerSettings {
            cert: Some(not_pem),
            ..settings("mqtts://127.0.0.1/t")
        };
        assert!(refusal(&half).contains("both --mqtt-cert and --mqtt-key"));
        let missing_password_file = BrokerSettings {
            user: Some("u".into()),
            password_file: Some(dir.path().join("none")),
            ..settings("mqtts://127.0.0.1/t")
        };
        assert!(refusal(&missing_password_file).contains("mqtt_password_file"));
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        // Nothing listens on this port: messages pile up and the oldest go.
        let mut sink = MqttSink::connect(&settings("mqtt://127.0.0.1:9/t")).unwrap();
        for i in 0..(QUEUE + 40) {
            sink.publish(format!("{i}").as_bytes());
        }
        // The publisher thread may have moved a few into rumqttc's channel; the rest are
        // dropped oldest-first.
        assert!(sink.dropped() >= 40 - 17, "{}", sink.dropped());
        let front = sink
            .queue
            .messages
            .lock()
            .unwrap()
            .back()
            .map(|m| m.1.clone());
        assert_eq!(front.as_deref(), Some(format!("{}", QUEUE + 39).as_bytes()));
        sink.finish(Duration::from_millis(50));
        assert!(sink.dropped() >= 40);
    }
}
