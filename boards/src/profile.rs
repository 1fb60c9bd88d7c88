//! Board profiles, `boards/<board>.toml`: how to build for a board and what its service runs.
//!
//! A profile names the Rust target, the CPU to tune for and features to switch off, the
//! oldest glibc of the board's OS (the bundle must not need a newer one), the qemu CPU that
//! emulates it, the inference threads, the default model, and two camera set-ups: the board's
//! own camera (`[camera]`) and a USB camera (`[usb]`, picked with `--usb`). From it
//! [`Board::render_config`] writes the `/etc/kestrel/kestrel.toml` the package installs.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("board profile {path}: {reason}")]
pub struct ProfileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// A glibc version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Glibc {
    /// e.g. 2
    pub major: u32,
    /// e.g. 27
    pub minor: u32,
}

impl Glibc {
    /// Parses `2.27` (a trailing `.patch` or Debian suffix like `-8cross1` is ignored).
    pub fn parse(s: &str) -> Option<Glibc> {
        let s = s.trim();
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let mut parts = s[..end].split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Glibc { major, minor })
    }
}

impl fmt::Display for Glibc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A camera set-up: the `kestrel run` source settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// `--source` URI.
    pub source: String,
    /// `--pixel-format` (pipes need it; cameras negotiate).
    pub pixel_format: Option<String>,
    /// `--size` WxH.
    pub size: String,
    /// `--fps`.
    pub fps: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: String,
    target: String,
    target_cpu: String,
    #[serde(default)]
    target_features: Vec<String>,
    qemu_cpu: String,
    glibc: String,
    threads: u16,
    #[serde(default)]
    features: Option<Vec<String>>,
    model: PathBuf,
    camera: Camera,
    usb: Camera,
}

/// A board profile.
#[derive(Debug, Clone)]
pub struct Board {
    /// The profile's name: its file name without `.toml` (`rpi4`).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Rust target triple.
    pub target: String,
    /// `-C target-cpu`.
    pub target_cpu: String,
    /// `-C target-feature` entries, e.g. `-aes`.
    pub target_features: Vec<String>,
    /// `qemu-aarch64 -cpu` that emulates the board.
    pub qemu_cpu: String,
    /// The oldest glibc of the board's OS.
    pub glibc: Glibc,
    /// Inference threads.
    pub threads: u16,
    /// The runtime's cargo features for this board; `None`: the crate's defaults.
    pub features: Option<Vec<String>>,
    /// Default model, relative to the repository.
    pub model: PathBuf,
    /// The board's own camera.
    pub camera: Camera,
    /// A USB camera.
    pub usb: Camera,
}

/// Where the installed models live on the board.
pub const MODELS_DIR: &str = "/usr/share/kestrel/models";

impl Board {
    /// Whether the board's camera goes through NVIDIA's Argus daemon (the Jetson boards), whose
    /// socket lives in /tmp: its packages add the unit drop-in that keeps /tmp shared
    /// (boards/debian/kestrel-argus.conf), where every other board's service has a private one.
    pub fn argus(&self) -> bool {
        self.name.starts_with("jetson")
    }

    /// Reads `boards_dir/<name>.toml`.
    pub fn load(boards_dir: &Path, name: &str) -> Result<Board, ProfileError> {
        let path = boards_dir.join(format!("{name}.toml"));
        let err = |reason: String| ProfileError {
            path: path.clone(),
            reason,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(err(format!("'{name}' is not a board name")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let known = Board::names(boards_dir).unwrap_or_default().join(", ");
            err(format!("{e} (boards: {known})"))
        })?;
        let file: File = toml::from_str(&text).map_err(|e| err(e.to_string().trim().into()))?;
        let glibc = Glibc::parse(&file.glibc)
            .ok_or_else(|| err(format!("glibc '{}' is not like 2.27", file.glibc)))?;
        if file.threads == 0 {
            return Err(err("threads must be at least 1".into()));
        }
        Ok(Board {
            name: name.into(),
            description: file.description,
            target: file.target,
            target_cpu: file.target_cpu,
            target_features: file.target_features,
            qemu_cpu: file.qemu_cpu,
            glibc,
            threads: file.threads,
            features: file.features,
            model: file.model,
            camera: file.camera,
            usb: file.usb,
        })
    }

    /// The names of the profiles in `boards_dir`, sorted.
    pub fn names(boards_dir: &Path) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(boards_dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".toml").map(str::to_string)
            })
            // The tool's own manifest lives beside the profiles.
            .filter(|name| name != "Cargo")
            .collect();
        names.sort();
        Ok(names)
    }

    /// `RUSTFLAGS` for the board's build.
    pub fn rustflags(&self) -> String {
        let mut flags = format!("-C target-cpu={}", self.target_cpu);
        if !self.target_features.is_empty() {
            flags.push_str(&format!(
                " -C target-feature={}",
                self.target_features.join(",")
            ));
        }
        flags
    }

    /// The file name of the default model.
    pub fn model_file_name(&self) -> String {
        self.model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The `/etc/kestrel/kestrel.toml` for this board, with the board's camera or a USB one.
    pub fn render_config(&self, usb: bool) -> String {
        let camera = if usb { &self.usb } else { &self.camera };
        let which = if usb {
            "a USB camera"
        } else {
            "the board's camera"
        };
        let mut s = format!(
            "# Kestrel service settings for {} ({which}).\n\
             # Written by `cargo boards bundle {}`; every key is a `kestrel run` flag, see\n\
             # /usr/share/doc/kestrel/README.boards.md. After editing: sudo systemctl restart kestrel\n\n\
             threads = {}\n\
             model = \"{MODELS_DIR}/{}\"\n\n",
            self.description,
            self.name,
            self.threads,
            self.model_file_name(),
        );
        s.push_str(&format!("source = {}\n", toml_string(&camera.source)));
        if let Some(f) = &camera.pixel_format {
            s.push_str(&format!("pixel_format = {}\n", toml_string(f)));
        }
        s.push_str(&format!("size = {}\n", toml_string(&camera.size)));
        s.push_str(&format!("fps = {}\n", camera.fps));
        let other = if usb {
            format!(
                "# The board's camera instead:\n# source = {}\n",
                toml_string(&self.camera.source)
            )
        } else {
            format!(
                "# A USB camera instead:\n# source = {}\n",
                toml_string(&self.usb.source)
            )
        };
        let ip = if self
            .features
            .as_ref()
            .is_some_and(|f| !f.iter().any(|f| f == "rtsp"))
        {
            // No native rtsp:// in this build: GStreamer and the board's decoder.
            "# An IP camera: a cmd: GStreamer pipeline with the hardware decoder\n\
             # (docs/cameras.md, \"IP cameras\").\n"
                .to_string()
        } else {
            "# An IP camera (H.264 or MJPEG over RTSP), its user's password in a file of its\n\
             # own (owner kestrel, chmod 600):\n\
             # source = \"rtsp://viewer@192.168.1.20:554/stream1\"\n\
             # source_password_file = \"/etc/kestrel/camera.pass\"\n"
                .to_string()
        };
        s.push_str(&format!(
            "\n{other}{ip}\
             \n# Publish every frame's result to the fleet's MQTT broker (QoS 1):\n\
             # mqtt = \"mqtt://broker.local:1883/kestrel/{0}\"\n\
             # or over TLS with a password (a file of its own: owner kestrel, chmod 600;\n\
             # docs/analytics.md has client certificates):\n\
             # mqtt = \"mqtts://broker.example:8883/kestrel/{0}\"\n\
             # mqtt_user = \"{0}\"\n\
             # mqtt_password_file = \"/etc/kestrel/mqtt.pass\"\n\
             # mqtt_ca = \"/etc/kestrel/broker-ca.pem\"   # a private CA (default: the system's)\n\
             # Annotated JPEG snapshots every 10 s:\n\
             # snapshot = \"/var/lib/kestrel/snapshots\"\n\
             # every = 10\n\
             # Prometheus /metrics, /healthz and /snapshot.jpg, on this board only (a scraper\n\
             # elsewhere needs the board's address here, and a bearer token: http_token_file,\n\
             # a file holding only the token, owner kestrel, chmod 600):\n\
             # http = \"127.0.0.1:9464\"\n\
             \n# Counting, with a detection model: objects in a zone, crossings of a line\n\
             # (relative coordinates, 0..1; events on MQTT under TOPIC/events/, counts retained\n\
             # on TOPIC/counts). Tables go after every plain key.\n\
             # classes = [\"person\"]\n\
             # [[zone]]\n\
             # name = \"door\"\n\
             # polygon = [[0.1, 0.5], [0.5, 0.5], [0.5, 1.0], [0.1, 1.0]]\n\
             # [[line]]\n\
             # name = \"entrance\"\n\
             # a = [0.5, 0.0]\n\
             # b = [0.5, 1.0]\n\
             \n# Several cameras: a [[camera]] table each, in place of `source` (each may have\n\
             # its own size, fps, mqtt_topic and [[camera.zone]] / [[camera.line]] tables).\n\
             # [[camera]]\n\
             # name = \"door\"\n\
             # source = \"v4l2:/dev/video0\"\n\
             # [[camera]]\n\
             # name = \"yard\"\n\
             # source = \"rtsp://viewer@192.168.1.21:554/stream1\"\n\
             # password_file = \"/etc/kestrel/yard.pass\"\n",
            self.name
        ));
        s
    }
}

/// A TOML basic string (JSON's string escapes are a subset of TOML's).
pub(crate) fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.into()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_runtime::config::Config;

    fn boards_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
    }

    #[test]
    fn glibc_versions_parse_and_order() {
        assert_eq!(
            Glibc::parse("2.27"),
            Some(Glibc {
                major: 2,
                minor: 27
            })
        );
        assert_eq!(
            Glibc::parse("2.36-8cross1"),
            Some(Glibc {
                major: 2,
                minor: 36
            })
        );
        assert!(Glibc::parse("2.9") < Glibc::parse("2.27"));
        assert!(Glibc::parse("2.27") < Glibc::parse("2.31"));
        assert_eq!(Glibc::parse("two"), None);
    }

    /// The Argus drop-in goes to the Jetson packages, and only to them.
    #[test]
    fn only_jetson_boards_keep_tmp_shared() {
        for name in Board::names(&boards_dir()).unwrap() {
            let board = Board::load(&boards_dir(), &name).unwrap();
            let jetson = board.camera.source.contains("nvarguscamerasrc");
            assert_eq!(board.argus(), jetson, "{name}");
        }
    }

    /// Every profile loads, and the config it renders (both cameras) is one the board's
    /// `kestrel` accepts, naming the installed default model.
    #[test]
    fn every_profile_loads_and_renders_a_valid_config() {
        let names = Board::names(&boards_dir()).unwrap();
        for expected in ["jetson-nano", "jetson-orin-nano", "rpi4", "rpi5"] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        for name in names {
            let board = Board::load(&boards_dir(), &name).unwrap();
            assert!(board.target.starts_with("aarch64-"), "{name}");
            let repo_model = boards_dir().join("..").join(&board.model);
            assert!(repo_model.exists(), "{name}: {}", repo_model.display());
            for usb in [false, true] {
                let text = board.render_config(usb);
                let config = Config::parse(&text, Path::new("/etc/kestrel/kestrel.toml"))
                    .unwrap_or_else(|e| panic!("{name} usb={usb}: {e}\n{text}"));
                assert_eq!(config.threads, Some(board.threads));
                assert_eq!(
                    config.model,
                    Some(PathBuf::from(MODELS_DIR).join(board.model_file_name()))
                );
                let camera = if usb { &board.usb } else { &board.camera };
                assert_eq!(config.source.as_deref(), Some(camera.source.as_str()));
            }
        }
    }

    #[test]
    fn the_pi_4_build_avoids_crypto_extensions() {
        let board = Board::load(&boards_dir(), "rpi4").unwrap();
        assert_eq!(
            board.rustflags(),
            "-C target-cpu=cortex-a72 -C target-feature=-aes,-sha2"
        );
    }

    /// The .deb's libc6 dependency (runtime/Cargo.toml, one cargo-deb variant per board) is
    /// the board's glibc floor; a build with the `rtsp` feature (OpenH264, C++) depends on
    /// libstdc++ too.
    #[test]
    fn deb_variants_match_the_profiles() {
        let manifest = std::fs::read_to_string(boards_dir().join("../runtime/Cargo.toml")).unwrap();
        let manifest: toml::Table = toml::from_str(&manifest).unwrap();
        let variants = &manifest["package"]["metadata"]["deb"]["variants"];
        for name in Board::names(&boards_dir()).unwrap() {
            let board = Board::load(&boards_dir(), &name).unwrap();
            let depends = variants[name.as_str()]["depends"].as_str().unwrap();
            let rtsp = board
                .features
                .as_ref()
                .is_none_or(|f| f.iter().any(|f| f == "rtsp"));
            let cxx = if rtsp { ", libstdc++6 (>= 5)" } else { "" };
            assert_eq!(
                depends,
                format!("libc6 (>= {}){cxx}", board.glibc),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_profiles_are_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Board::load(dir.path(), "nope").unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
        let e = Board::load(dir.path(), "../rpi4").unwrap_err();
        assert!(e.reason.contains("not a board name"), "{e}");
        std::fs::write(dir.path().join("x.toml"), "target = 3\n").unwrap();
        let e = Board::load(dir.path(), "x").unwrap_err();
        assert!(e.to_string().contains("x.toml"), "{e}");
    }
}
