//! Secrets a run holds (an MQTT password, the `/metrics` bearer token) and the files they come
//! from. A [`Secret`] prints as `***` (`Debug` and `Display`), so no log line, error or summary
//! can carry one by accident, and compares in constant time ([`Secret::matches`]).
//!
//! A file that holds a secret must not be readable by others, as ssh requires of its keys
//! ([`check_private`]): a password, token or TLS key file of its own must be private to its
//! owner ([`OWNER_ONLY`]: `chmod 600`), and a configuration file holding a secret must not be
//! open to others ([`NOT_OTHERS`]: the board packages install `/etc/kestrel/kestrel.toml` as
//! `0640 root:kestrel`, which the service reads through its group and cannot change).

use std::fmt;
use std::path::{Path, PathBuf};

/// Mode bits a password, token or key file must not have: any access by group or others.
pub const OWNER_ONLY: u32 = 0o077;

/// Mode bits a configuration file holding a secret must not have: any access by others (its
/// group is the service's, see the module docs).
pub const NOT_OTHERS: u32 = 0o007;

/// The largest secret file read (a password or a token, not a data file).
pub const MAX_BYTES: u64 = 4096;

/// A credential: shown as `***`, compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the one place that sends it (the MQTT CONNECT packet).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that depends only on the lengths (a
    /// bearer token checked byte by byte would tell an attacker how much of a guess is right).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        if mine.len() != candidate.len() {
            return false;
        }
        let diff = mine
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A secret, key or certificate file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {}: {reason}", path.display())]
pub struct SecretFileError {
    /// What the file is for (`mqtt_password_file`, `--mqtt-ca`, …).
    pub what: String,
    /// The file.
    pub path: PathBuf,
    /// What is wrong, and the fix where there is one.
    pub reason: String,
}

/// Refuses `path` when its mode has any of the bits in `forbidden` ([`OWNER_ONLY`] or
/// [`NOT_OTHERS`]), naming the file and the `chmod` that fixes it. `what` names the setting.
pub fn check_private(path: &Path, forbidden: u32, what: &str) -> Result<(), SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |reason: String| SecretFileError {
        what: what.into(),
        path: path.into(),
        reason,
    };
    let mode = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & forbidden == 0 {
        return Ok(());
    }
    let (who, fix) = if forbidden == NOT_OTHERS {
        ("other users", mode & !NOT_OTHERS)
    } else {
        ("its group or other users", mode & !OWNER_ONLY)
    };
    Err(err(format!(
        "holds a secret and is open to {who} (mode {mode:04o}): chmod {fix:o} {}",
        path.display()
    )))
}

/// Reads a file holding one secret (a password or a token) and nothing else: private to its
/// owner ([`OWNER_ONLY`]), at most [`MAX_BYTES`], UTF-8, not empty; a trailing line break is
/// not part of the secret.
pub fn read_secret_file(path: &Path, what: &str) -> Result<Secret, SecretFileError> {
    let err = |reason: String| SecretFileError {
        what: what.into(),
        path: path.into(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a file".into()));
    }
    if meta.len() > MAX_BYTES {
        return Err(err(format!(
            "{} bytes; a secret file holds one line of at most {MAX_BYTES}",
            meta.len()
        )));
    }
    check_private(path, OWNER_ONLY, what)?;
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(err("is empty".into()));
    }
    if text.contains(['\n', '\r']) {
        return Err(err("holds more than one line".into()));
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secrets_print_as_stars_and_compare_whole() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert!(s.matches(b"hunter2"));
        for wrong in [&b"hunter3"[..], b"hunter", b"hunter22", b""] {
            assert!(!s.matches(wrong));
        }
    }

    #[test]
    fn files_open_to_others_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.pass");
        std::fs::write(&path, "s3cret\n").unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            chmod(&path, mode);
            match read_secret_file(&path, "mqtt_password_file") {
                Ok(s) => {
                    assert!(ok, "{mode:o} accepted");
                    assert_eq!(s.expose(), "s3cret");
                }
                Err(e) => {
                    assert!(!ok, "{mode:o}: {e}");
                    let shown = e.to_string();
                    assert!(shown.starts_with("mqtt_password_file "), "{shown}");
                    assert!(
                        shown.ends_with(&format!("chmod {:o} {}", mode & 0o700, path.display())),
                        "{shown}"
                    );
                    assert!(!shown.contains("s3cret"), "{shown}");
                }
            }
        }
        // A configuration file may be read by its group (the service's), not by others.
        chmod(&path, 0o640);
        assert!(check_private(&path, NOT_OTHERS, "config").is_ok());
        chmod(&path, 0o644);
        let e = check_private(&path, NOT_OTHERS, "config").unwrap_err();
        assert!(e.reason.contains("chmod 640"), "{e}");
    }

    #[test]
    fn bad_secret_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        let e = read_secret_file(&missing, "http_token_file").unwrap_err();
        assert_eq!(e.path, missing);
        for (text, needle) in [("\n", "empty"), ("a\nb\n", "more than one line")] {
            let path = dir.path().join("t");
            std::fs::write(&path, text).unwrap();
            chmod(&path, 0o600);
            let e = read_secret_file(&path, "http_token_file").unwrap_err();
            assert!(e.reason.contains(needle), "{e}");
        }
        let e = read_secret_file(dir.path(), "http_token_file").unwrap_err();
        assert!(e.reason.contains("not a file"), "{e}");
    }
}
