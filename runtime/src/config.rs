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
//! source = "v4l2:/dev/video0"                   # synthetic | pipe: | cmd:"…" | file:PATH | v4l2:/dev/videoN
//! pixel_format = "yuyv"                         # i420 | nv12 | yuyv | rgb24 | gray | mjpeg
//! size = "640x480"
//! fps = 30                                      # 0: as fast as possible
//! frames = 1000                                 # stop after N frames (default: run until stopped)
//! loop = false                                  # start a file source again at its end
//! exit_on_source_error = false                  # default: reconnect with backoff
//! top_k = 3
//! mean = [0.5, 0.5, 0.5]                        # one number or three
//! std = [0.5, 0.5, 0.5]
//! mqtt = "mqtt://localhost:1883/kestrel/frames"
//! snapshot = "/var/lib/kestrel/snapshots"
//! every = 10                                    # seconds between snapshots (0: every frame)
//! ```
//!
//! A configuration that cannot be used is refused before anything starts, with the file, the
//! line and the key ([`ConfigError`]): an unknown key (a typo must not silently fall back to a
//! default), a value of the wrong type, or a value out of range. Whether the source can be
//! opened or the model loaded is checked later, by the same code as for command-line flags.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::camera::PixelFormat;

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
    /// Snapshot folder, resolved against the file's folder.
    pub snapshot: Option<PathBuf>,
    /// Seconds between snapshots.
    pub every: Option<f64>,
}

/// One number for all three channels, or three.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Triple {
    One(f32),
    Three(Vec<f32>),
}

/// The file as written; spans give the line of each value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    threads: Option<Spanned<i64>>,
    model: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
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
    snapshot: Option<Spanned<String>>,
    every: Option<Spanned<f64>>,
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
        Config::parse(&text, path)
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
        if let Some(v) = file.pixel_format {
            let span = v.span();
            let f = parse_pixel_format(v.get_ref()).map_err(|e| bad("pixel_format", span, e))?;
            config.pixel_format = Some(f);
        }
        if let Some(v) = file.size {
            let span = v.span();
            let (w, h) = parse_size(v.get_ref()).map_err(|e| bad("size", span.clone(), e))?;
            if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
                return Err(bad(
                    "size",
                    span,
                    format!("{w}x{h} is out of range (1x1 to 16384x16384)"),
                ));
            }
            config.size = Some((w, h));
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
        if let Some(v) = file.snapshot {
            config.snapshot = Some(resolve(&nonempty("snapshot", v)?));
        }
        if let Some(v) = file.every {
            config.every = Some(non_negative("every", v)?);
        }
        Ok(config)
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
}
