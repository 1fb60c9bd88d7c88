//! The image's `/etc/kestrel/kestrel.toml`: the board profile's config
//! ([`Board::render_config`]) with the user's overrides, checked with the runtime's own parser.
//!
//! The user's file (`--config my.toml`) holds any `kestrel run` settings (camera, model, MQTT
//! broker, zones and lines). Each plain key it sets removes the profile's line for that key,
//! and the file follows the profile's text as it is (comments kept): the profile renders plain
//! keys only, so the user's tables (`[[zone]]`, `[[line]]`, `[tracker]`) stay after every
//! plain key, as TOML needs.

use std::path::Path;

use kestrel_runtime::config::{Config, ConfigError, DEFAULT_PATH};

use crate::profile::{toml_string, Board, MODELS_DIR};

/// Why the config cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn explain(e: &ConfigError) -> String {
    let mut s = String::from("does not parse as a Kestrel config");
    if let Some(line) = e.line {
        s.push_str(&format!(", line {line}"));
    }
    if let Some(key) = &e.key {
        s.push_str(&format!(", key `{key}`"));
    }
    format!("{s}: {}", e.reason)
}

/// Whether `line` sets top-level key `key` (`key = …`).
fn sets(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// The config for `board`: the profile's (with `--usb`'s camera when `usb`), the installed
/// name of a `--model` in place of the default, then `overrides` (the user's file and its
/// text). Errors name what is wrong; the caller names the file.
pub fn render(
    board: &Board,
    usb: bool,
    model: Option<&str>,
    overrides: Option<(&Path, &str)>,
) -> Result<String, RenderError> {
    let mut user_keys: Vec<String> = Vec::new();
    if let Some((path, text)) = overrides {
        Config::parse(text, path).map_err(|e| RenderError(explain(&e)))?;
        let table: toml::Table = toml::from_str(text).map_err(|e| RenderError(e.to_string()))?;
        user_keys = table
            .iter()
            .filter(|(_, v)| !v.is_table() && !is_table_array(v))
            .map(|(k, _)| k.clone())
            .collect();
        // `[[camera]]` tables take the place of the profile's one camera (`source` and the two
        // exclude each other) and of its pixel format.
        if table.get("camera").is_some_and(is_table_array) {
            for key in ["source", "pixel_format"] {
                if !user_keys.iter().any(|k| k == key) {
                    user_keys.push(key.into());
                }
            }
        }
        if model.is_some() && user_keys.iter().any(|k| k == "model") {
            return Err(RenderError(
                "sets `model`, and --model names another: keep one".into(),
            ));
        }
    }
    let mut text = String::new();
    for line in board.render_config(usb).lines() {
        if let Some(name) = model.filter(|_| sets(line, "model")) {
            text.push_str(&format!(
                "model = {}\n",
                toml_string(&format!("{MODELS_DIR}/{name}"))
            ));
        } else if let Some(key) = user_keys.iter().find(|k| sets(line, k)) {
            text.push_str(&format!("# {key}: set below\n"));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((path, user)) = overrides {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        text.push_str(&format!("\n# From {name} (cargo boards image --config):\n"));
        text.push_str(user);
        if !user.ends_with('\n') {
            text.push('\n');
        }
    }
    Config::parse(&text, Path::new(DEFAULT_PATH))
        .map_err(|e| RenderError(format!("the merged config {}", explain(&e))))?;
    Ok(text)
}

/// Whether a TOML value is an array of tables (`[[zone]]`).
fn is_table_array(v: &toml::Value) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(toml::Value::is_table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn rpi5() -> Board {
        Board::load(Path::new(env!("CARGO_MANIFEST_DIR")), "rpi5").unwrap()
    }

    #[test]
    fn overrides_replace_the_profile_keys_and_keep_tables_last() {
        let user = "source = \"rtsp://cam.local/stream\"\nmqtt = \"mqtt://broker.local:1883/k/cam-1\"\n\
                    classes = [\"person\"]\n[[line]]\nname = \"door\"\na = [0.5, 0.0]\nb = [0.5, 1.0]\n";
        let text = render(&rpi5(), false, None, Some((Path::new("my.toml"), user))).unwrap();
        let c = Config::parse(&text, Path::new(DEFAULT_PATH)).unwrap();
        assert_eq!(c.source.as_deref(), Some("rtsp://cam.local/stream"));
        assert_eq!(c.threads, Some(4));
        assert_eq!(text.matches("\nsource =").count(), 1, "{text}");
    }

    #[test]
    fn camera_tables_replace_the_profile_camera() {
        let user = "[[camera]]\nname = \"door\"\nsource = \"rtsp://viewer@cam/s\"\n\
                    [[camera]]\nname = \"yard\"\nsource = \"v4l2:/dev/video0\"\n";
        let text = render(&rpi5(), false, None, Some((Path::new("my.toml"), user))).unwrap();
        let c = Config::parse(&text, Path::new(DEFAULT_PATH)).unwrap();
        assert_eq!((c.source, c.pixel_format), (None, None));
        assert_eq!(c.cameras.len(), 2);
    }

    #[test]
    fn a_model_is_installed_under_its_name() {
        let text = render(&rpi5(), true, Some("m.nnef.tgz"), None).unwrap();
        let c = Config::parse(&text, Path::new(DEFAULT_PATH)).unwrap();
        assert_eq!(c.model, Some(PathBuf::from(MODELS_DIR).join("m.nnef.tgz")));
        let e = render(
            &rpi5(),
            false,
            Some("m.nnef.tgz"),
            Some((Path::new("my.toml"), "model = \"x\"\n")),
        )
        .unwrap_err();
        assert!(e.0.contains("--model"), "{e}");
    }

    #[test]
    fn a_bad_override_is_refused_with_its_line() {
        let e = render(
            &rpi5(),
            false,
            None,
            Some((Path::new("my.toml"), "threads = 2\nsorce = \"x\"\n")),
        )
        .unwrap_err();
        assert!(e.0.contains("line 2") && e.0.contains("sorce"), "{e}");
    }
}
