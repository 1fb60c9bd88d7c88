//! The `--http ADDR` endpoint of `kestrel run`, on its own thread (`tiny_http`: a small
//! synchronous server, no async runtime):
//!
//! - `GET /metrics`: [`Metrics::render`], Prometheus' text format;
//! - `GET /healthz`: `200 ok` while frames flow, `503` once no frame was processed for the
//!   configured silence (a hung camera or pipeline; systemd's watchdog covers a hung process);
//! - `GET /snapshot.jpg`: the next processed frame, annotated ([`LiveSnapshot`]), or the last
//!   one when no frame comes within 2 s; `503` before the first;
//! - anything else: 404; a method other than GET or HEAD: 405.
//!
//! Who may ask: the endpoint listens where it is told, `127.0.0.1` when given only a port.
//! With a bearer token configured ([`Served::token`], config `http_token` or
//! `http_token_file`), every path but `/healthz` (the probe of a load balancer or of systemd,
//! which tells nothing about the camera) answers `401` unless the request carries
//! `Authorization: Bearer TOKEN`, compared in constant time. Bound to any address other than
//! loopback the token is required: [`HttpServer::start`] refuses to listen without one, since
//! `/snapshot.jpg` shows whatever the camera sees to anyone on the network. There is no TLS:
//! the token protects against other hosts on a trusted network, a reverse proxy with TLS
//! protects it on an untrusted one.
//!
//! A scrape allocates its response on this thread; the frame loop only updates atomics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::live_snapshot::LiveSnapshot;
use super::metrics::Metrics;
use crate::secret::Secret;

/// The shortest bearer token accepted (a token anyone could guess protects nothing).
pub const MIN_TOKEN: usize = 16;

/// Parses the endpoint's address: `HOST:PORT`, or a bare `PORT` for `127.0.0.1:PORT` (the
/// endpoint stays on this machine unless an address says otherwise).
pub fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = addr.trim().parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    addr.parse()
        .map_err(|e| format!("expected HOST:PORT or PORT, e.g. 127.0.0.1:9464 ({e})"))
}

/// How long `/snapshot.jpg` waits for the next frame before serving the last one.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(2);

/// What the endpoint serves.
#[derive(Debug, Clone)]
pub struct Served {
    /// The cameras: `/metrics` shows them all, `/healthz` fails when one falls silent,
    /// `/snapshot.jpg?camera=NAME` shows one (the first without `?camera`).
    pub cameras: Vec<ServedCamera>,
    /// Time without a frame after which `/healthz` fails.
    pub silence: Duration,
    /// The bearer token every path but `/healthz` asks for; required off loopback.
    pub token: Option<Secret>,
}

/// One camera's counters and latest frame.
#[derive(Debug, Clone)]
pub struct ServedCamera {
    /// Its name (`[[camera]]`), or its source for a process with one camera.
    pub name: String,
    /// `/metrics` and `/healthz`.
    pub metrics: Arc<Metrics>,
    /// `/snapshot.jpg`.
    pub live: Arc<LiveSnapshot>,
}

impl Served {
    /// The camera `/snapshot.jpg?camera=NAME` asks for; the first without a query.
    fn camera(&self, query: Option<&str>) -> Option<&ServedCamera> {
        let name = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("camera="));
        match name {
            None => self.cameras.first(),
            Some(name) => self.cameras.iter().find(|c| c.name == name),
        }
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("--http {addr}: cannot listen: {source}")]
pub struct HttpError {
    /// The address asked for.
    pub addr: String,
    /// Why binding failed (address in use, not an address of this machine, …).
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// The running endpoint; dropping it stops the server and joins its thread.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl HttpServer {
    /// Listens on `addr` (`HOST:PORT`; port 0 picks a free one) and serves `served`.
    pub fn start(addr: &str, served: Served) -> Result<HttpServer, HttpError> {
        let err = |source| HttpError {
            addr: addr.to_string(),
            source,
        };
        let parsed = parse_addr(addr).map_err(|e| err(e.into()))?;
        if !parsed.ip().is_loopback() && served.token.is_none() {
            return Err(err(format!(
                "{} is reachable from other machines, and /metrics and /snapshot.jpg would be \
                 open to them: set a bearer token (http_token_file or http_token in the \
                 config), or listen on 127.0.0.1",
                parsed.ip()
            )
            .into()));
        }
        let server = Arc::new(tiny_http::Server::http(parsed).map_err(err)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| err("not an IP socket".into()))?;
        let guarded = if served.token.is_some() {
            " (bearer token required but for /healthz)"
        } else {
            ""
        };
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("kestrel-http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    respond(request, &served);
                }
            })
            .map_err(|e| err(e.into()))?;
        log::info!("serving /metrics, /healthz and /snapshot.jpg on http://{addr}{guarded}");
        Ok(HttpServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on (the port the system picked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(request: tiny_http::Request, served: &Served) {
    use tiny_http::{Header, Method, Response};
    let text = |ct: &str| Header::from_bytes("Content-Type", ct).expect("a valid header");
    let (path, query) = match request.url().split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.url(), None),
    };
    if path != "/healthz" {
        if let Some(token) = &served.token {
            if !authorized(&request, token) {
                let response = Response::from_string("unauthorized: Authorization: Bearer TOKEN\n")
                    .with_status_code(401)
                    .with_header(
                        Header::from_bytes("WWW-Authenticate", "Bearer").expect("a valid header"),
                    );
                if let Err(e) = request.respond(response) {
                    log::debug!("http: {e}");
                }
                return;
            }
        }
    }
    let response = match (request.method(), path) {
        (Method::Get | Method::Head, "/metrics") => Response::from_string(
            super::metrics::render_all(served.cameras.iter().map(|c| &*c.metrics)),
        )
        .with_header(text("text/plain; version=0.0.4; charset=utf-8")),
        (Method::Get | Method::Head, "/healthz") => {
            let silent: Vec<String> = served
                .cameras
                .iter()
                .filter(|c| c.metrics.silence() >= served.silence)
                .map(|c| {
                    let quiet = c.metrics.silence().as_secs_f64();
                    match served.cameras.len() {
                        1 => format!("no frame for {quiet:.1} s"),
                        _ => format!("camera {}: no frame for {quiet:.1} s", c.name),
                    }
                })
                .collect();
            if silent.is_empty() {
                Response::from_string("ok\n").with_header(text("text/plain; charset=utf-8"))
            } else {
                Response::from_string(format!(
                    "{} (limit {:.1} s)\n",
                    silent.join("; "),
                    served.silence.as_secs_f64()
                ))
                .with_status_code(503)
                .with_header(text("text/plain; charset=utf-8"))
            }
        }
        (Method::Get | Method::Head, "/snapshot.jpg") => match served.camera(query) {
            None => Response::from_string("no such camera\n").with_status_code(404),
            Some(camera) => match camera.live.request(SNAPSHOT_PATIENCE) {
                Some(jpeg) => Response::from_data(jpeg).with_header(text("image/jpeg")),
                None => Response::from_string("no frame yet\n").with_status_code(503),
            },
        },
        (Method::Get | Method::Head, _) => {
            Response::from_string("not found: /metrics, /healthz, /snapshot.jpg\n")
                .with_status_code(404)
        }
        _ => Response::from_string("method not allowed\n").with_status_code(405),
    };
    if let Err(e) = request.respond(response) {
        log::debug!("http: {e}");
    }
}

/// Whether `request` carries `Authorization: Bearer TOKEN` with the right token.
fn authorized(request: &tiny_http::Request, token: &Secret) -> bool {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .any(|h| {
            let value = h.value.as_str().trim();
            let Some((scheme, given)) = value.split_once(' ') else {
                return false;
            };
            scheme.eq_ignore_ascii_case("bearer") && token.matches(given.trim().as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::stats::Stages;
    use crate::pipeline::tasks::{Task, TaskResult};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn served(m: &Arc<Metrics>, silence_s: u64) -> Served {
        Served {
            cameras: vec![ServedCamera {
                name: "c".into(),
                metrics: m.clone(),
                live: Arc::new(LiveSnapshot::new()),
            }],
            silence: Duration::from_secs(silence_s),
            token: None,
        }
    }

    #[test]
    fn two_cameras_share_the_families_and_a_silent_one_fails_healthz() {
        let cams: Vec<Arc<Metrics>> = ["door", "yard"]
            .iter()
            .map(|c| Arc::new(Metrics::new(c, "m", Duration::ZERO, &Task::Raw)))
            .collect();
        cams[0].frame(
            Duration::from_millis(5),
            &Stages::default(),
            &TaskResult::None,
        );
        let mut both = served(&cams[0], 60);
        both.cameras.push(ServedCamera {
            name: "yard".into(),
            metrics: cams[1].clone(),
            live: Arc::new(LiveSnapshot::new()),
        });
        both.silence = Duration::from_millis(200);
        let server = HttpServer::start("127.0.0.1:0", both).unwrap();
        let (code, body) = get(server.addr(), "/metrics");
        assert_eq!(code, 200);
        assert_eq!(
            body.matches("# TYPE kestrel_frames_total counter").count(),
            1,
            "{body}"
        );
        assert!(
            body.contains("kestrel_frames_total{camera=\"door\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("kestrel_frames_total{camera=\"yard\"} 0"),
            "{body}"
        );
        // The yard camera has never sent a frame: once the silence is over, /healthz says so.
        std::thread::sleep(Duration::from_millis(250));
        let (code, body) = get(server.addr(), "/healthz");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("camera yard: no frame"), "{body}");
        assert_eq!(get(server.addr(), "/snapshot.jpg?camera=gate").0, 404);
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        get_with(addr, path, "")
    }

    /// One GET with `headers` (each ending in CRLF): (status, the whole reply).
    fn get_with(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let code = body[9..12].parse().unwrap();
        (code, body)
    }

    #[test]
    fn serves_metrics_and_health() {
        let m = Arc::new(Metrics::new("c", "m", Duration::ZERO, &Task::Raw));
        let server = HttpServer::start("127.0.0.1:0", served(&m, 60)).unwrap();
        let (code, body) = get(server.addr(), "/metrics");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("text/plain; version=0.0.4"), "{body}");
        assert!(
            body.contains("kestrel_frames_total{camera=\"c\"} 0"),
            "{body}"
        );
        m.frame(Duration::ZERO, &Stages::default(), &TaskResult::None);
        assert!(get(server.addr(), "/metrics")
            .1
            .contains("kestrel_frames_total{camera=\"c\"} 1"));
        assert_eq!(get(server.addr(), "/healthz").0, 200);
        assert_eq!(get(server.addr(), "/nope").0, 404);
        drop(server);

        let strict = HttpServer::start("127.0.0.1:0", served(&m, 0)).unwrap();
        let (code, body) = get(strict.addr(), "/healthz");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("no frame for"), "{body}");
    }

    #[test]
    fn a_bad_address_names_itself() {
        let m = Arc::new(Metrics::new("c", "m", Duration::ZERO, &Task::Raw));
        let e = HttpServer::start("localhost", served(&m, 0)).err().unwrap();
        assert!(
            e.to_string().starts_with("--http localhost: cannot listen"),
            "{e}"
        );
        let taken = HttpServer::start("127.0.0.1:0", served(&m, 0)).unwrap();
        let e = HttpServer::start(&taken.addr().to_string(), served(&m, 0))
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot listen"), "{e}");
    }

    #[test]
    fn a_token_guards_every_path_but_healthz() {
        let m = Arc::new(Metrics::new("c", "m", Duration::ZERO, &Task::Raw));
        let token = "0123456789abcdef-token";
        let guarded = Served {
            token: Some(Secret::new(token)),
            ..served(&m, 60)
        };
        let server = HttpServer::start("127.0.0.1:0", guarded).unwrap();
        let addr = server.addr();
        for path in ["/metrics", "/snapshot.jpg", "/nope"] {
            let (code, body) = get(addr, path);
            assert_eq!(code, 401, "{path}: {body}");
            assert!(body.contains("WWW-Authenticate: Bearer"), "{body}");
            for wrong in [
                "Bearer 0123456789abcdef-tokeN\r\n",
                "Bearer 0123456789abcdef-token-and-more\r\n",
                "Basic 0123456789abcdef-token\r\n",
                "Bearer\r\n",
            ] {
                let (code, _) = get_with(addr, path, &format!("Authorization: {wrong}"));
                assert_eq!(code, 401, "{path} with {wrong:?}");
            }
        }
        let (code, body) = get_with(
            addr,
            "/metrics",
            &format!("Authorization: Bearer {token}\r\n"),
        );
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("kestrel_frames_total"), "{body}");
        let (code, _) = get_with(
            addr,
            "/metrics",
            &format!("authorization: bearer {token}\r\n"),
        );
        assert_eq!(code, 200);
        assert_eq!(get(addr, "/healthz").0, 200);
    }

    #[test]
    fn off_loopback_a_token_is_required() {
        let m = Arc::new(Metrics::new("c", "m", Duration::ZERO, &Task::Raw));
        let e = HttpServer::start("0.0.0.0:0", served(&m, 0)).err().unwrap();
        let shown = e.to_string();
        assert!(
            shown.contains("0.0.0.0 is reachable from other machines")
                && shown.contains("http_token"),
            "{shown}"
        );
        let guarded = Served {
            token: Some(Secret::new("0123456789abcdef")),
            ..served(&m, 0)
        };
        assert!(HttpServer::start("0.0.0.0:0", guarded).is_ok());
        // A bare port is loopback.
        assert_eq!(
            parse_addr("9464").unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert!(parse_addr("localhost").is_err());
    }
}
