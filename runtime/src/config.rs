//! `kestrel.toml`: the settings of `kestrel run` as a service, read from
//! [`DEFAULT_PATH`] (`/etc/kestrel/kestrel.toml`, what the board packages install) or from
//! `--config FILE`.
//!
//! Every key is a `kestrel run` flag (dashes become underscores), plus `threads`; flags given
//! on the command line override the file, and the file overrides the built-in defaults:
//!
//! ```toml
//! threads = 4                                   # inference threads (default: every core)
//! model = "/usr/share/kestrel/models/ppocr-cls.nnef.tgz"   # relative paths: from this file's folder
//! source = "v4l2:/dev/video0"                   # synthetic | pipe: | cmd:"…" | file:PATH | v4l2:/dev/videoN | rtsp://…
//! source_password_file = "/etc/kestrel/cam.pass" # the password of rtsp://USER@…, alone, mode 600
//! pixel_format = "yuyv"                         # i420 | nv12 | yuyv | rgb24 | gray | mjpeg
//! size = "640x480"
//! fps = 30                                      # 0: as fast as possible
//! frames = 1000                                 # stop after N frames (default: run until stopped)
//! loop = false                                  # start a file source again at its end
//! exit_on_source_error = false                  # default: reconnect with backoff
//! top_k = 3
//! mean = [0.5, 0.5, 0.5]                        # one number or three
//! std = [0.5, 0.5, 0.5]
//! mqtt = "mqtt://localhost:1883/kestrel/frames"  # or mqtts://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC
//! mqtt_user = "cam-1"                           # unless the URL has USER@
//! mqtt_password_file = "/etc/kestrel/mqtt.pass" # the password alone, mode 600 (or mqtt_password)
//! mqtt_ca = "/etc/kestrel/broker-ca.pem"        # mqtts: trust this CA, not the system's roots
//! mqtt_cert = "/etc/kestrel/cam-1.pem"          # mqtts: mutual TLS, with mqtt_key (mode 600)
//! mqtt_key = "/etc/kestrel/cam-1.key"
//! mqtt_insecure = false                         # true: allow a password over plain mqtt://
//! snapshot = "/var/lib/kestrel/snapshots"
//! every = 10                                    # seconds between snapshots (0: every frame)
//! classes = ["person", "car"]                   # detections kept (default: every class)
//! status_every = 10                             # seconds between status lines (0: none)
//! http = "127.0.0.1:9464"                       # /metrics and /healthz (default: off; PORT = 127.0.0.1:PORT)
//! http_token_file = "/etc/kestrel/http.token"   # bearer token, needed off loopback (or http_token)
//! healthz_silence = 10                          # seconds without a frame before /healthz fails
//!
//! [tracker]                                     # ByteTrack settings (analytics::track)
//! min_hits = 3                                  # frames that confirm a track
//! max_misses = 30                               # frames a lost track is kept
//! high_score = 0.5
//! low_score = 0.1
//! new_track_score = 0.6
//! match_iou = 0.2
//! class_aware = true
//!
//! [[zone]]                                      # counted: objects inside now
//! name = "door"
//! polygon = [[0.1, 0.5], [0.5, 0.5], [0.5, 1.0], [0.1, 1.0]]   # relative x, y; ≥ 3 points
//! classes = ["person"]                          # optional filter
//! anchor = "bottom"                             # bottom (default) | center: the box's point
//!
//! [[line]]                                      # counted: crossings, per direction
//! name = "entrance"
//! a = [0.5, 0.0]                                # `in` = onto the right-hand side of a→b
//! b = [0.5, 1.0]
//! ```
//!
//! Several cameras in one process: a `[[camera]]` table each, instead of `source` (the two
//! exclude each other). A camera takes its own `source`, `size`, `fps`, `pixel_format`,
//! `mqtt_topic` (default: the `mqtt` URL's topic, then `/NAME`) and zones and lines
//! (`[[camera.zone]]`, `[[camera.line]]`; none: the file's `[[zone]]`s and `[[line]]`s); the
//! model and every other setting are the file's, shared. `--source` on the command line runs
//! that one source instead.
//!
//! ```toml
//! [[camera]]
//! name = "door"                                 # letters, digits, - _ . ; unique
//! source = "rtsp://viewer@10.0.0.21/stream1"
//! password_file = "/etc/kestrel/door.pass"      # viewer's password, alone, mode 600
//! [[camera.line]]
//! name = "threshold"
//! a = [0.0, 0.6]
//! b = [1.0, 0.6]
//!
//! [[camera]]
//! name = "yard"
//! source = "v4l2:/dev/video0"
//! size = "1280x720"
//! mqtt_topic = "site/outside/yard"
//! ```
//!
//! A configuration that cannot be used is refused before anything starts, with the file, the
//! line and the key ([`ConfigError`]): an unknown key (a typo must not silently fall back to a
//! default), a value of the wrong type, or a value out of range. A file that holds a secret
//! (`mqtt_password`, `http_token`, a URL with a password in `mqtt`, `source` or a camera's
//! `source`) and is open to
//! other users (mode & 0o007) is refused too, with the `chmod` that fixes it
//! ([`crate::secret`]: the group may read it, the packages install it `0640 root:kestrel`). Whether the source can be
//! opened or the model loaded is checked later, by the same code as for command-line flags.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::analytics::track::TrackerConfig;
use crate::analytics::zones::{AnchorPoint, LineSpec, ZoneSpec};
use crate::analytics::AnalyticsError;
use crate::camera::PixelFormat;
use crate::secret::Secret;

/// Where the board packages install the configuration, and where `kestrel run` looks for it
/// when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/kestrel/kestrel.toml";

/// The largest configuration file read (a settings file, not a data file).
pub const MAX_BYTES: u64 = 1 << 20;

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
    /// The offending key, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The settings of a configuration file; `None` where the file is silent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Inference threads.
    pub threads: Option<u16>,
    /// The model, resolved against the file's folder.
    pub model: Option<PathBuf>,
    /// The frame source URI.
    pub source: Option<String>,
    /// `source_password_file`: the password of the source URL's user, in a file of its own.
    pub source_password_file: Option<PathBuf>,
    /// Pixel format of raw frames, or forced on a camera.
    pub pixel_format: Option<PixelFormat>,
    /// Frame size (width, height).
    pub size: Option<(usize, usize)>,
    /// Frames per second (0: as fast as possible).
    pub fps: Option<f64>,
    /// Stop after this many frames.
    pub frames: Option<u64>,
    /// Start a file source again at its end.
    pub looping: Option<bool>,
    /// End the run when the source fails.
    pub exit_on_source_error: Option<bool>,
    /// Classes reported per frame.
    pub top_k: Option<usize>,
    /// Per-channel mean.
    pub mean: Option<[f32; 3]>,
    /// Per-channel std.
    pub std: Option<[f32; 3]>,
    /// MQTT URL.
    pub mqtt: Option<String>,
    /// MQTT user name.
    pub mqtt_user: Option<String>,
    /// MQTT password.
    pub mqtt_password: Option<Secret>,
    /// A file holding the MQTT password, resolved against the file's folder.
    pub mqtt_password_file: Option<PathBuf>,
    /// The CA certificates an `mqtts://` broker is checked against.
    pub mqtt_ca: Option<PathBuf>,
    /// The client certificate for mutual TLS.
    pub mqtt_cert: Option<PathBuf>,
    /// The client key for mutual TLS.
    pub mqtt_key: Option<PathBuf>,
    /// Allow a password over plain `mqtt://`.
    pub mqtt_insecure: Option<bool>,
    /// Snapshot folder, resolved against the file's folder.
    pub snapshot: Option<PathBuf>,
    /// Seconds between snapshots.
    pub every: Option<f64>,
    /// Class labels kept by a detection run.
    pub classes: Option<Vec<String>>,
    /// Seconds between status lines.
    pub status_every: Option<f64>,
    /// Address of the `/metrics` and `/healthz` endpoint.
    pub http: Option<String>,
    /// Bearer token the endpoint asks for.
    pub http_token: Option<Secret>,
    /// A file holding the bearer token, resolved against the file's folder.
    pub http_token_file: Option<PathBuf>,
    /// Seconds without a frame before `/healthz` fails.
    pub healthz_silence: Option<f64>,
    /// Tracker settings (`[tracker]`; defaults for the keys not given).
    pub tracker: Option<TrackerConfig>,
    /// Zones (`[[zone]]`), in file order.
    pub zones: Vec<ZoneSpec>,
    /// Lines (`[[line]]`), in file order.
    pub lines: Vec<LineSpec>,
    /// 1-based line of each `[[zone]]`'s name, for messages found later (class names).
    pub zone_lines: Vec<usize>,
    /// 1-based line of each `[[line]]`'s name.
    pub line_lines: Vec<usize>,
    /// Cameras (`[[camera]]`), in file order; none: the one `source`.
    pub cameras: Vec<CameraConfig>,
}

/// One number for all three channels, or three.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Triple {
    One(f32),
    Three(Vec<f32>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneFile {
    name: Spanned<String>,
    polygon: Spanned<Vec<[f32; 2]>>,
    classes: Option<Spanned<Vec<String>>>,
    anchor: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineFile {
    name: Spanned<String>,
    a: Spanned<[f32; 2]>,
    b: Spanned<[f32; 2]>,
    classes: Option<Spanned<Vec<String>>>,
    anchor: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackerFile {
    min_hits: Option<Spanned<i64>>,
    max_misses: Option<Spanned<i64>>,
    high_score: Option<Spanned<f32>>,
    low_score: Option<Spanned<f32>>,
    new_track_score: Option<Spanned<f32>>,
    match_iou: Option<Spanned<f32>>,
    class_aware: Option<bool>,
}

/// The file as written; spans give the line of each value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    threads: Option<Spanned<i64>>,
    model: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    source_password_file: Option<Spanned<String>>,
    pixel_format: Option<Spanned<String>>,
    size: Option<Spanned<String>>,
    fps: Option<Spanned<f64>>,
    frames: Option<Spanned<i64>>,
    #[serde(rename = "loop")]
    looping: Option<bool>,
    exit_on_source_error: Option<bool>,
    top_k: Option<Spanned<i64>>,
    mean: Option<Spanned<Triple>>,
    std: Option<Spanned<Triple>>,
    mqtt: Option<Spanned<String>>,
    mqtt_user: Option<Spanned<String>>,
    mqtt_password: Option<Spanned<String>>,
    mqtt_password_file: Option<Spanned<String>>,
    mqtt_ca: Option<Spanned<String>>,
    mqtt_cert: Option<Spanned<String>>,
    mqtt_key: Option<Spanned<String>>,
    mqtt_insecure: Option<bool>,
    snapshot: Option<Spanned<String>>,
    every: Option<Spanned<f64>>,
    classes: Option<Spanned<Vec<String>>>,
    status_every: Option<Spanned<f64>>,
    http: Option<Spanned<String>>,
    http_token: Option<Spanned<String>>,
    http_token_file: Option<Spanned<String>>,
    healthz_silence: Option<Spanned<f64>>,
    tracker: Option<TrackerFile>,
    #[serde(rename = "zone", default)]
    zones: Vec<ZoneFile>,
    #[serde(rename = "line", default)]
    lines: Vec<LineFile>,
    #[serde(rename = "camera", default)]
    cameras: Vec<CameraFile>,
}

/// One `[[camera]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraFile {
    name: Spanned<String>,
    source: Spanned<String>,
    password_file: Option<Spanned<String>>,
    pixel_format: Option<Spanned<String>>,
    size: Option<Spanned<String>>,
    fps: Option<Spanned<f64>>,
    mqtt_topic: Option<Spanned<String>>,
    #[serde(rename = "zone", default)]
    zones: Vec<ZoneFile>,
    #[serde(rename = "line", default)]
    lines: Vec<LineFile>,
}

/// A camera of a process that watches several (`[[camera]]`): its own source and frame
/// settings, zones and lines, and MQTT topic; the model, the tracker and every other setting
/// are the file's.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// Unique name: the `camera` field of its JSON lines and the label of its metrics.
    pub name: String,
    /// `--source` URI.
    pub source: String,
    /// A file holding only the password of the source URL's user (`rtsp://USER@…`).
    pub password_file: Option<PathBuf>,
    /// Pixel format of raw frames, or forced on a camera (else the file's).
    pub pixel_format: Option<PixelFormat>,
    /// Frame size (else the file's).
    pub size: Option<(usize, usize)>,
    /// Frames per second (else the file's).
    pub fps: Option<f64>,
    /// Topic its messages go to (else `TOPIC/NAME`, TOPIC from the `mqtt` URL).
    pub mqtt_topic: Option<String>,
    /// Its zones (`[[camera.zone]]`); none: the file's top-level zones.
    pub zones: Vec<ZoneSpec>,
    /// Its lines (`[[camera.line]]`); none: the file's top-level lines.
    pub lines: Vec<LineSpec>,
    /// 1-based line of its name in the file.
    pub line: usize,
}

/// Parses a frame size `WxH`, e.g. `640x480` (shared with the command line).
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or("expected WxH, e.g. 640x480")?;
    let w = w.trim().parse().map_err(|_| format!("bad width '{w}'"))?;
    let h = h.trim().parse().map_err(|_| format!("bad height '{h}'"))?;
    Ok((w, h))
}

/// Parses a pixel format name (shared with the command line).
pub fn parse_pixel_format(s: &str) -> Result<PixelFormat, String> {
    PixelFormat::parse(s).ok_or_else(|| {
        let names: Vec<_> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
        format!("unknown pixel format '{s}' (known: {})", names.join(", "))
    })
}

/// Where a configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `--config FILE`: the file must exist.
    Explicit(PathBuf),
    /// [`DEFAULT_PATH`] if it exists, else no configuration.
    Default,
    /// `--no-config`: none.
    None,
}

impl Config {
    /// Reads the configuration `location` names; `Ok(None)` when there is none to read.
    pub fn locate(location: &Location) -> Result<Option<Config>, ConfigError> {
        match location {
            Location::Explicit(path) => Config::load(path).map(Some),
            Location::Default => {
                let path = Path::new(DEFAULT_PATH);
                if path.exists() {
                    log::info!("reading {DEFAULT_PATH}");
                    Config::load(path).map(Some)
                } else {
                    Ok(None)
                }
            }
            Location::None => Ok(None),
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError {
            path: path.into(),
            line: None,
            key: None,
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.is_dir() {
            return Err(err("is a folder, not a file".into()));
        }
        if meta.len() > MAX_BYTES {
            return Err(err(format!(
                "{} bytes; a configuration file is at most {MAX_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            ConfigError {
                line: Some(line_of(&String::from_utf8_lossy(&e.into_bytes()), at)),
                ..err("not UTF-8 text".into())
            }
        })?;
        let config = Config::parse(&text, path)?;
        if let Some(what) = config.secret_held() {
            crate::secret::check_private(path, crate::secret::NOT_OTHERS, "config")
                .map_err(|e| err(format!("{what}: {}", e.reason)))?;
        }
        Ok(config)
    }

    /// The first setting of this file that is a secret (a password, a token, a URL with a
    /// password), to refuse the file when others can read it.
    pub fn secret_held(&self) -> Option<&'static str> {
        let url_password =
            |u: &Option<String>| u.as_deref().is_some_and(|u| crate::redact::redact(u) != u);
        if self.mqtt_password.is_some() {
            Some("mqtt_password")
        } else if self.http_token.is_some() {
            Some("http_token")
        } else if url_password(&self.mqtt) {
            Some("a password in mqtt")
        } else if url_password(&self.source) {
            Some("a password in source")
        } else if self
            .cameras
            .iter()
            .any(|c| url_password(&Some(c.source.clone())))
        {
            Some("a password in a camera's source")
        } else {
            None
        }
    }

    /// Parses configuration text; `origin` is the file it came from (for messages and for
    /// resolving relative paths).
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let line = span.as_ref().map(|s| line_of(text, s.start));
            ConfigError {
                path: origin.into(),
                line,
                key: span.and_then(|s| key_at(text, s)),
                reason: e.message().trim().to_string(),
            }
        })?;
        let bad = |key: &str, span: Range<usize>, reason: String| ConfigError {
            path: origin.into(),
            line: Some(line_of(text, span.start)),
            key: Some(key.into()),
            reason,
        };
        let base = origin.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let nonempty = |key: &str, v: Spanned<String>| {
            if v.get_ref().trim().is_empty() {
                Err(bad(key, v.span(), "is empty".into()))
            } else {
                Ok(v.into_inner())
            }
        };
        let count = |key: &str, v: Spanned<i64>, min: i64, max: i64| {
            let n = *v.get_ref();
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(bad(
                    key,
                    v.span(),
                    format!("{n} is out of range {min}..={max}"),
                ))
            }
        };
        let non_negative = |key: &str, v: Spanned<f64>| {
            let x = *v.get_ref();
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(bad(
                    key,
                    v.span(),
                    format!("{x} must be a finite number ≥ 0"),
                ))
            }
        };
        let triple = |key: &str, v: Spanned<Triple>, positive: bool| {
            let span = v.span();
            let t = match v.into_inner() {
                Triple::One(x) => [x; 3],
                Triple::Three(v) if v.len() == 3 => [v[0], v[1], v[2]],
                Triple::Three(v) => {
                    return Err(bad(
                        key,
                        span,
                        format!("expected one or three numbers, got {}", v.len()),
                    ))
                }
            };
            if t.iter().any(|x| !x.is_finite() || (positive && *x <= 0.0)) {
                let want = if positive { "positive" } else { "finite" };
                return Err(bad(
                    key,
                    span,
                    format!("{t:?}: every number must be {want}"),
                ));
            }
            Ok(t)
        };

        let pixel_format = |key: &str, v: Spanned<String>| {
            let span = v.span();
            parse_pixel_format(v.get_ref()).map_err(|e| bad(key, span, e))
        };
        let size = |key: &str, v: Spanned<String>| {
            let span = v.span();
            let (w, h) = parse_size(v.get_ref()).map_err(|e| bad(key, span.clone(), e))?;
            if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
                return Err(bad(
                    key,
                    span,
                    format!("{w}x{h} is out of range (1x1 to 16384x16384)"),
                ));
            }
            Ok((w, h))
        };

        let mut config = Config {
            path: origin.into(),
            looping: file.looping,
            exit_on_source_error: file.exit_on_source_error,
            ..Config::default()
        };
        if let Some(v) = file.threads {
            config.threads = Some(count("threads", v, 1, 256)? as u16);
        }
        if let Some(v) = file.model {
            config.model = Some(resolve(&nonempty("model", v)?));
        }
        if let Some(v) = file.source {
            config.source = Some(nonempty("source", v)?);
        }
        if let Some(v) = file.source_password_file {
            config.source_password_file = Some(resolve(&nonempty("source_password_file", v)?));
        }
        if let Some(v) = file.pixel_format {
            config.pixel_format = Some(pixel_format("pixel_format", v)?);
        }
        if let Some(v) = file.size {
            config.size = Some(size("size", v)?);
        }
        if let Some(v) = file.fps {
            config.fps = Some(non_negative("fps", v)?);
        }
        if let Some(v) = file.frames {
            config.frames = Some(count("frames", v, 1, i64::MAX)? as u64);
        }
        if let Some(v) = file.top_k {
            config.top_k = Some(count("top_k", v, 1, 1000)? as usize);
        }
        if let Some(v) = file.mean {
            config.mean = Some(triple("mean", v, false)?);
        }
        if let Some(v) = file.std {
            config.std = Some(triple("std", v, true)?);
        }
        if let Some(v) = file.mqtt {
            let span = v.span();
            let url = nonempty("mqtt", v)?;
            crate::pipeline::mqtt::parse_url(&url).map_err(|e| bad("mqtt", span, e.to_string()))?;
            config.mqtt = Some(url);
        }
        if let Some(v) = file.mqtt_user {
            config.mqtt_user = Some(nonempty("mqtt_user", v)?);
        }
        let one_of =
            |key: &str, a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| match (a, b) {
                (Some(_), Some(v)) => Err(bad(
                    key,
                    v.span(),
                    format!("give either {} or {key}, not both", &key[..key.len() - 5]),
                )),
                _ => Ok(()),
            };
        one_of(
            "mqtt_password_file",
            &file.mqtt_password,
            &file.mqtt_password_file,
        )?;
        one_of("http_token_file", &file.http_token, &file.http_token_file)?;
        if let Some(v) = file.mqtt_password {
            config.mqtt_password = Some(Secret::new(nonempty("mqtt_password", v)?));
        }
        if let Some(v) = file.mqtt_password_file {
            config.mqtt_password_file = Some(resolve(&nonempty("mqtt_password_file", v)?));
        }
        if let Some(v) = file.mqtt_ca {
            config.mqtt_ca = Some(resolve(&nonempty("mqtt_ca", v)?));
        }
        if let Some(v) = file.mqtt_cert {
            config.mqtt_cert = Some(resolve(&nonempty("mqtt_cert", v)?));
        }
        if let Some(v) = file.mqtt_key {
            config.mqtt_key = Some(resolve(&nonempty("mqtt_key", v)?));
        }
        config.mqtt_insecure = file.mqtt_insecure;
        if let Some(v) = file.http_token {
            let span = v.span();
            let token = nonempty("http_token", v)?;
            if token.len() < crate::pipeline::http::MIN_TOKEN {
                let min = crate::pipeline::http::MIN_TOKEN;
                return Err(bad(
                    "http_token",
                    span,
                    format!("shorter than {min} characters: too easy to guess"),
                ));
            }
            config.http_token = Some(Secret::new(token));
        }
        if let Some(v) = file.http_token_file {
            config.http_token_file = Some(resolve(&nonempty("http_token_file", v)?));
        }
        if let Some(v) = file.snapshot {
            config.snapshot = Some(resolve(&nonempty("snapshot", v)?));
        }
        if let Some(v) = file.every {
            config.every = Some(non_negative("every", v)?);
        }
        if let Some(v) = file.status_every {
            config.status_every = Some(non_negative("status_every", v)?);
        }
        if let Some(v) = file.http {
            let span = v.span();
            let addr = nonempty("http", v)?;
            crate::pipeline::http::parse_addr(&addr).map_err(|e| bad("http", span, e))?;
            config.http = Some(addr);
        }
        if let Some(v) = file.healthz_silence {
            config.healthz_silence = Some(non_negative("healthz_silence", v)?);
        }
        let class_list = |key: &str, v: Spanned<Vec<String>>| {
            let span = v.span();
            let list = v.into_inner();
            if list.iter().any(|c| c.trim().is_empty()) {
                return Err(bad(key, span, "a class name is empty".into()));
            }
            Ok(list)
        };
        if let Some(v) = file.classes {
            config.classes = Some(class_list("classes", v)?);
        }
        let anchor = |key: &str, v: Option<Spanned<String>>| match v {
            None => Ok(AnchorPoint::default()),
            Some(v) => AnchorPoint::parse(v.get_ref()).ok_or_else(|| {
                bad(
                    key,
                    v.span(),
                    format!("'{}': expected \"bottom\" or \"center\"", v.get_ref()),
                )
            }),
        };
        if let Some(t) = file.tracker {
            let d = TrackerConfig::default();
            let unit = |key: &str, v: Option<Spanned<f32>>, default: f32| match v {
                None => Ok(default),
                Some(v) => {
                    let x = *v.get_ref();
                    if x.is_finite() && (0.0..=1.0).contains(&x) {
                        Ok(x)
                    } else {
                        Err(bad(key, v.span(), format!("{x} must be within 0..1")))
                    }
                }
            };
            let frames = |key: &str, v: Option<Spanned<i64>>, default: u32| match v {
                None => Ok(default),
                Some(v) => count(key, v, 1, 100_000).map(|n| n as u32),
            };
            config.tracker = Some(TrackerConfig {
                min_hits: frames("tracker.min_hits", t.min_hits, d.min_hits)?,
                max_misses: frames("tracker.max_misses", t.max_misses, d.max_misses)?,
                high_score: unit("tracker.high_score", t.high_score, d.high_score)?,
                low_score: unit("tracker.low_score", t.low_score, d.low_score)?,
                new_track_score: unit(
                    "tracker.new_track_score",
                    t.new_track_score,
                    d.new_track_score,
                )?,
                match_iou: unit("tracker.match_iou", t.match_iou, d.match_iou)?,
                class_aware: t.class_aware.unwrap_or(d.class_aware),
                ..d
            });
        }
        let zones = |prefix: &str, zones: Vec<ZoneFile>| {
            let mut specs: Vec<ZoneSpec> = Vec::new();
            let mut lines = Vec::new();
            for (i, z) in zones.into_iter().enumerate() {
                let key = |field: &str| format!("{prefix}[{i}].{field}");
                let line = line_of(text, z.name.span().start);
                let spec = ZoneSpec {
                    name: z.name.get_ref().clone(),
                    polygon: z.polygon.get_ref().clone(),
                    classes: match z.classes {
                        Some(c) => class_list(&key("classes"), c)?,
                        None => Vec::new(),
                    },
                    anchor: anchor(&key("anchor"), z.anchor)?,
                };
                if let Err((field, reason)) = spec.validate() {
                    let span = if field == "name" {
                        z.name.span()
                    } else {
                        z.polygon.span()
                    };
                    return Err(bad(&key(field), span, reason));
                }
                if specs.iter().any(|o| o.name == spec.name) {
                    return Err(bad(
                        &key("name"),
                        z.name.span(),
                        format!("a zone named '{}' is already defined", spec.name),
                    ));
                }
                specs.push(spec);
                lines.push(line);
            }
            Ok((specs, lines))
        };
        let lines = |prefix: &str, lines: Vec<LineFile>| {
            let mut specs: Vec<LineSpec> = Vec::new();
            let mut at = Vec::new();
            for (i, l) in lines.into_iter().enumerate() {
                let key = |field: &str| format!("{prefix}[{i}].{field}");
                let line = line_of(text, l.name.span().start);
                let spec = LineSpec {
                    name: l.name.get_ref().clone(),
                    a: *l.a.get_ref(),
                    b: *l.b.get_ref(),
                    classes: match l.classes {
                        Some(c) => class_list(&key("classes"), c)?,
                        None => Vec::new(),
                    },
                    anchor: anchor(&key("anchor"), l.anchor)?,
                };
                if let Err((field, reason)) = spec.validate() {
                    let span = match field {
                        "name" => l.name.span(),
                        "a" => l.a.span(),
                        _ => l.b.span(),
                    };
                    return Err(bad(&key(field), span, reason));
                }
                if specs.iter().any(|o| o.name == spec.name) {
                    return Err(bad(
                        &key("name"),
                        l.name.span(),
                        format!("a line named '{}' is already defined", spec.name),
                    ));
                }
                specs.push(spec);
                at.push(line);
            }
            Ok((specs, at))
        };
        (config.zones, config.zone_lines) = zones("zone", file.zones)?;
        (config.lines, config.line_lines) = lines("line", file.lines)?;
        for (i, c) in file.cameras.into_iter().enumerate() {
            let key = |field: &str| format!("camera[{i}].{field}");
            let name_span = c.name.span();
            let name = nonempty(&key("name"), c.name)?;
            if !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            {
                return Err(bad(
                    &key("name"),
                    name_span,
                    format!("'{name}': use letters, digits, '-', '_' and '.' (it names MQTT topics and metric labels)"),
                ));
            }
            if config.cameras.iter().any(|o| o.name == name) {
                return Err(bad(
                    &key("name"),
                    name_span,
                    format!("a camera named '{name}' is already defined"),
                ));
            }
            let pixel_format = c
                .pixel_format
                .map(|v| pixel_format(&key("pixel_format"), v))
                .transpose()?;
            let size = c.size.map(|v| size(&key("size"), v)).transpose()?;
            let mqtt_topic = match c.mqtt_topic {
                None => None,
                Some(v) => {
                    let span = v.span();
                    let topic = nonempty(&key("mqtt_topic"), v)?;
                    if topic.contains(['+', '#']) || topic.starts_with('/') {
                        return Err(bad(
                            &key("mqtt_topic"),
                            span,
                            "a topic has no wildcards and does not start with '/'".into(),
                        ));
                    }
                    Some(topic)
                }
            };
            let (zones, _) = zones(&key("zone"), c.zones)?;
            let (lines, _) = lines(&key("line"), c.lines)?;
            config.cameras.push(CameraConfig {
                line: line_of(text, name_span.start),
                name,
                source: nonempty(&key("source"), c.source)?,
                password_file: c
                    .password_file
                    .map(|v| nonempty(&key("password_file"), v).map(|p| resolve(&p)))
                    .transpose()?,
                pixel_format,
                size,
                fps: c.fps.map(|v| non_negative(&key("fps"), v)).transpose()?,
                mqtt_topic,
                zones,
                lines,
            });
        }
        if config.source.is_some() && !config.cameras.is_empty() {
            return Err(ConfigError {
                path: origin.into(),
                line: config.cameras.first().map(|c| c.line),
                key: Some("camera".into()),
                reason: "`source` and `[[camera]]` exclude each other: put the source in a \
                         [[camera]] table"
                    .into(),
            });
        }
        Ok(config)
    }

    /// The error of an analytics setting found after the model loaded (e.g. a class name the
    /// model does not have), placed in this file when the setting came from it.
    pub fn place(&self, e: &AnalyticsError) -> Option<ConfigError> {
        let line = match e.item {
            Some(("zone", i)) => self.zone_lines.get(i).copied()?,
            Some(("line", i)) => self.line_lines.get(i).copied()?,
            None if e.what == "classes" => self.classes.as_ref().map(|_| 0)?,
            _ => return None,
        };
        let key = match e.item {
            Some((kind, i)) => format!("{kind}[{i}].{}", e.field.unwrap_or("name")),
            None => e.what.clone(),
        };
        Some(ConfigError {
            path: self.path.clone(),
            line: (line > 0).then_some(line),
            key: Some(key),
            reason: e.reason.clone(),
        })
    }
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key of the `key = value` line holding `span`, if the line has that form.
fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text.get(line_start..line_end)?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    plain.then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/kestrel/kestrel.toml"))
    }

    #[test]
    fn a_full_file_parses() {
        let c = parse(
            "threads = 4\nmodel = \"models/m.nnef.tgz\"\nsource = \"v4l2:/dev/video0\"\n\
             pixel_format = \"yuyv\"\nsize = \"320x240\"\nfps = 15\nframes = 50\nloop = true\n\
             exit_on_source_error = true\ntop_k = 2\nmean = 0.5\nstd = [0.2, 0.3, 0.4]\n\
             mqtt = \"mqtt://broker:1883/k\"\nsnapshot = \"/var/lib/kestrel/snaps\"\nevery = 2.5\n",
        )
        .unwrap();
        assert_eq!(c.threads, Some(4));
        assert_eq!(
            c.model.as_deref(),
            Some(Path::new("/etc/kestrel/models/m.nnef.tgz"))
        );
        assert_eq!(c.source.as_deref(), Some("v4l2:/dev/video0"));
        assert_eq!(c.pixel_format, Some(PixelFormat::Yuyv));
        assert_eq!(c.size, Some((320, 240)));
        assert_eq!(c.fps, Some(15.0));
        assert_eq!(c.frames, Some(50));
        assert_eq!(c.looping, Some(true));
        assert_eq!(c.exit_on_source_error, Some(true));
        assert_eq!(c.top_k, Some(2));
        assert_eq!(c.mean, Some([0.5; 3]));
        assert_eq!(c.std, Some([0.2, 0.3, 0.4]));
        assert_eq!(c.mqtt.as_deref(), Some("mqtt://broker:1883/k"));
        assert_eq!(
            c.snapshot.as_deref(),
            Some(Path::new("/var/lib/kestrel/snaps"))
        );
        assert_eq!(c.every, Some(2.5));
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let c = parse("# nothing\n").unwrap();
        assert_eq!(
            c,
            Config {
                path: "/etc/kestrel/kestrel.toml".into(),
                ..Config::default()
            }
        );
    }

    fn error(text: &str) -> ConfigError {
        parse(text).expect_err(text)
    }

    const CAMERAS: &str = "mqtt = \"mqtt://broker/site\"\n\
        [[camera]]\nname = \"door\"\nsource = \"rtsp://viewer@cam1/s\"\nfps = 10\n\
        password_file = \"door.pass\"\n\
        mqtt_topic = \"shop/door\"\n\
        [[camera.zone]]\nname = \"in\"\npolygon = [[0.1, 0.5], [0.5, 0.5], [0.5, 1.0]]\n\
        [[camera]]\nname = \"yard\"\nsource = \"v4l2:/dev/video0\"\nsize = \"320x240\"\n\
        pixel_format = \"yuyv\"\n";

    #[test]
    fn cameras_parse_with_their_own_settings_and_zones() {
        let c = parse(CAMERAS).unwrap();
        assert_eq!(c.cameras.len(), 2);
        let (door, yard) = (&c.cameras[0], &c.cameras[1]);
        assert_eq!(
            (door.name.as_str(), door.source.as_str()),
            ("door", "rtsp://viewer@cam1/s")
        );
        assert_eq!(
            door.password_file.as_deref(),
            Some(Path::new("/etc/kestrel/door.pass"))
        );
        assert_eq!((door.fps, door.size, door.line), (Some(10.0), None, 3));
        assert_eq!(door.mqtt_topic.as_deref(), Some("shop/door"));
        assert_eq!((door.zones.len(), door.zones[0].name.as_str()), (1, "in"));
        assert!(c.zones.is_empty(), "a camera's zone is not the file's");
        assert_eq!(
            (yard.size, yard.pixel_format),
            (Some((320, 240)), Some(PixelFormat::Yuyv))
        );
        assert_eq!((yard.mqtt_topic.as_deref(), yard.zones.len()), (None, 0));
    }

    #[test]
    fn bad_cameras_name_the_camera_and_the_line() {
        let twice = CAMERAS.replace("name = \"yard\"", "name = \"door\"");
        let e = error(&twice);
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("camera[1].name"), Some(12)),
            "{e}"
        );
        assert!(
            e.reason
                .contains("a camera named 'door' is already defined"),
            "{e}"
        );
        let e = error(&CAMERAS.replace("name = \"yard\"", "name = \"yard/2\""));
        assert_eq!(e.key.as_deref(), Some("camera[1].name"), "{e}");
        let e = error(&CAMERAS.replace("320x240", "0x240"));
        assert_eq!(e.key.as_deref(), Some("camera[1].size"), "{e}");
        let e = error(&CAMERAS.replace("shop/door", "shop/#"));
        assert_eq!(e.key.as_deref(), Some("camera[0].mqtt_topic"), "{e}");
        let e = error(&CAMERAS.replace("polygon = [[0.1, 0.5], ", "polygon = ["));
        assert_eq!(e.key.as_deref(), Some("camera[0].zone[0].polygon"), "{e}");
        let e = error(&format!("source = \"synthetic\"\n{CAMERAS}"));
        assert!(e.reason.contains("exclude each other"), "{e}");
        let e = error("[[camera]]\nname = \"x\"\n");
        assert!(e.reason.contains("source"), "{e}");
    }

    const ANALYTICS: &str = "classes = [\"person\", \"car\"]\nstatus_every = 5\n\
        [tracker]\nmin_hits = 2\nmax_misses = 15\n\
        [[zone]]\nname = \"door\"\npolygon = [[0.1, 0.5], [0.5, 0.5], [0.5, 1.0]]\n\
        classes = [\"person\"]\nanchor = \"center\"\n\
        [[line]]\nname = \"entrance\"\na = [0.5, 0.0]\nb = [0.5, 1.0]\n";

    #[test]
    fn zones_lines_and_tracker_parse() {
        let c = parse(ANALYTICS).unwrap();
        assert_eq!(
            c.classes.as_deref(),
            Some(&["person".to_string(), "car".to_string()][..])
        );
        assert_eq!(c.status_every, Some(5.0));
        let t = c.tracker.unwrap();
        assert_eq!((t.min_hits, t.max_misses), (2, 15));
        assert_eq!(t.high_score, TrackerConfig::default().high_score);
        assert_eq!(c.zones.len(), 1);
        assert_eq!(c.zones[0].polygon.len(), 3);
        assert_eq!(c.zones[0].anchor, AnchorPoint::Center);
        assert_eq!(c.zone_lines, [7]);
        assert_eq!(c.lines[0].b, [0.5, 1.0]);
        assert_eq!(c.line_lines, [12]);
        // A class name the model lacks, found later, is placed at its zone.
        let e = AnalyticsError {
            what: "zone[0] 'door'".into(),
            item: Some(("zone", 0)),
            field: Some("classes"),
            reason: "class 'persn' is not one of the model's labels".into(),
        };
        let placed = c.place(&e).unwrap();
        assert_eq!(
            (placed.line, placed.key.as_deref()),
            (Some(7), Some("zone[0].classes"))
        );
    }

    #[test]
    fn zones_and_lines_that_cannot_be_counted_are_refused_with_line_and_key() {
        for (text, line, key, needle) in [
            (
                "[[zone]]\nname = \"a\"\npolygon = [[0, 0], [1, 1]]\n",
                3,
                "zone[0].polygon",
                "at least 3",
            ),
            (
                "[[zone]]\nname = \"a\"\npolygon = [[0, 0], [1.2, 0], [1, 1]]\n",
                3,
                "zone[0].polygon",
                "0..1",
            ),
            (
                "[[line]]\nname = \"l\"\na = [0.5, 0.5]\nb = [0.5, 0.5]\n",
                4,
                "line[0].b",
                "zero length",
            ),
            (
                "[[line]]\nname = \"l\"\na = [-0.1, 0.5]\nb = [0.5, 0.5]\n",
                3,
                "line[0].a",
                "0..1",
            ),
            (
                "[[zone]]\nname = \"a\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n\
                 [[zone]]\nname = \"a\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n",
                5,
                "zone[1].name",
                "already defined",
            ),
            (
                "[[zone]]\nname = \"a\"\npolygon = [[0, 0], [1, 0], [1, 1]]\nanchor = \"top\"\n",
                4,
                "zone[0].anchor",
                "bottom",
            ),
            (
                "[tracker]\nmin_hits = 0\n",
                2,
                "tracker.min_hits",
                "out of range",
            ),
            (
                "[tracker]\nhigh_score = 2\n",
                2,
                "tracker.high_score",
                "0..1",
            ),
        ] {
            let e = error(text);
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.reason.contains(needle), "{text}: {e}");
        }
        let e = error("[[zone]]\nname = \"a\"\npolygn = [[0, 0], [1, 0], [1, 1]]\n");
        assert!(e.reason.contains("polygn"), "{e}");
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e = error("fps = 10\n\nsourc = \"synthetic\"\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("sourc"), "{e}");
        assert!(e.reason.contains("unknown field"), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("config /etc/kestrel/kestrel.toml, line 3, key `sourc`:"),
            "{shown}"
        );
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        let e = error("source = \"synthetic\"\nfps = \"fast\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("fps")), "{e}");
        let e = error("loop = 1\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(1), Some("loop")), "{e}");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = error("fps = 10\nsize = \"640x480\n");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        for (text, key, line) in [
            ("threads = 0\n", "threads", 1),
            ("\nsize = \"640\"\n", "size", 2),
            ("size = \"0x480\"\n", "size", 1),
            ("pixel_format = \"bgr\"\n", "pixel_format", 1),
            ("fps = -1\n", "fps", 1),
            ("fps = nan\n", "fps", 1),
            ("frames = 0\n", "frames", 1),
            ("top_k = -3\n", "top_k", 1),
            ("mean = [1, 2]\n", "mean", 1),
            ("std = [1, 0, 1]\n", "std", 1),
            ("source = \"  \"\n", "source", 1),
            ("mqtt = \"http://x/y\"\n", "mqtt", 1),
            ("every = -2\n", "every", 1),
            ("http = \"localhost\"\n", "http", 1),
            ("healthz_silence = -1\n", "healthz_silence", 1),
        ] {
            let e = error(text);
            assert_eq!(
                (e.key.as_deref(), e.line),
                (Some(key), Some(line)),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        let e = Config::load(&missing).unwrap_err();
        assert_eq!(e.path, missing);
        assert!(Config::locate(&Location::Explicit(missing)).is_err());
        assert_eq!(Config::locate(&Location::None), Ok(None));
        let e = Config::load(dir.path()).unwrap_err();
        assert!(e.reason.contains("folder"), "{e}");
        let binary = dir.path().join("bin.toml");
        std::fs::write(&binary, b"fps = 1\n\xff\xfe").unwrap();
        let e = Config::load(&binary).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let good = dir.path().join("k.toml");
        std::fs::write(&good, "model = \"m.nnef.tgz\"\n").unwrap();
        let c = Config::load(&good).unwrap();
        assert_eq!(c.model, Some(dir.path().join("m.nnef.tgz")));
    }

    #[test]
    fn mqtt_and_http_credentials_parse() {
        let c = parse(
            "mqtt = \"mqtts://broker/k\"\nmqtt_user = \"cam\"\nmqtt_password_file = \"mqtt.pass\"\n\
             mqtt_ca = \"ca.pem\"\nmqtt_cert = \"/etc/ssl/cam.pem\"\nmqtt_key = \"cam.key\"\n\
             mqtt_insecure = true\nhttp = \"9464\"\nhttp_token = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(c.mqtt_user.as_deref(), Some("cam"));
        let here = Path::new("/etc/kestrel");
        assert_eq!(c.mqtt_password_file, Some(here.join("mqtt.pass")));
        assert_eq!(c.mqtt_ca, Some(here.join("ca.pem")));
        assert_eq!(c.mqtt_cert.as_deref(), Some(Path::new("/etc/ssl/cam.pem")));
        assert_eq!(c.mqtt_key, Some(here.join("cam.key")));
        assert_eq!(c.mqtt_insecure, Some(true));
        assert_eq!(c.http.as_deref(), Some("9464"));
        assert_eq!(
            c.http_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
        assert_eq!(c.secret_held(), Some("http_token"));
        // Secrets never show in the settings' Debug form.
        let c = parse("mqtt_password = \"hunter2\"\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        for (text, key) in [
            (
                "mqtt_password = \"a\"\nmqtt_password_file = \"f\"\n",
                "mqtt_password_file",
            ),
            (
                "http_token = \"0123456789abcdef\"\nhttp_token_file = \"f\"\n",
                "http_token_file",
            ),
            ("http_token = \"short\"\n", "http_token"),
            ("mqtt_user = \"\"\n", "mqtt_user"),
            ("mqtt = \"mqtts://u:hunter2@h:x/t\"\n", "mqtt"),
        ] {
            let e = error(text);
            assert_eq!(e.key.as_deref(), Some(key), "{text:?}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn a_file_holding_a_secret_is_not_open_to_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let chmod = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let plain = dir.path().join("plain.toml");
        std::fs::write(&plain, "fps = 5\nmqtt = \"mqtt://broker/k\"\n").unwrap();
        chmod(&plain, 0o644);
        assert!(Config::load(&plain).is_ok(), "no secret: any mode");
        for (text, what) in [
            ("mqtt_password = \"hunter2\"\n", "mqtt_password"),
            ("http_token = \"hunter2hunter2hunter2\"\n", "http_token"),
            (
                "mqtt = \"mqtts://u:hunter2@broker/k\"\n",
                "a password in mqtt",
            ),
            (
                "source = \"cmd:x rtsp://u:hunter2@cam/s\"\n",
                "a password in source",
            ),
        ] {
            let path = dir.path().join("secret.toml");
            std::fs::write(&path, text).unwrap();
            chmod(&path, 0o644);
            let e = Config::load(&path).unwrap_err();
            let shown = e.to_string();
            assert!(shown.contains(what), "{shown}");
            assert!(
                shown.ends_with(&format!("chmod 640 {}", path.display())),
                "{shown}"
            );
            assert!(!shown.contains("hunter2"), "{shown}");
            // What the packages install: group-readable, closed to others.
            chmod(&path, 0o640);
            assert!(Config::load(&path).is_ok(), "{text}");
        }
    }
}
