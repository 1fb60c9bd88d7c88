//! What runs once at an image's first boot.
//!
//! - Kestrel's own part: `kestrel-firstboot.service` (boards/debian/), enabled in the image,
//!   runs the package's `postinst configure` (installed as [`POSTINST`]) so the flashed board
//!   ends up as `apt install` of the `.deb` leaves it, then disables itself.
//! - The system's part, optional: hostname, an SSH key, Wi-Fi, through the mechanism Raspberry
//!   Pi OS Bookworm itself reads: `custom.toml` on the boot partition, applied at first boot
//!   by raspberrypi-sys-mods' `init_config`. The Wi-Fi passphrase goes in as its WPA PSK
//!   (PBKDF2-HMAC-SHA1 of passphrase and SSID, what `wpa_passphrase` prints) with
//!   `password_encrypted = true`, and the user gets no password (locked; SSH key only): the
//!   image holds no password in clear.

use std::num::NonZeroU32;

use crate::profile::toml_string;

/// The first-boot unit's name.
pub const UNIT: &str = "kestrel-firstboot.service";

/// The first-boot unit (boards/debian/kestrel-firstboot.service).
pub const UNIT_TEXT: &str = include_str!("../../debian/kestrel-firstboot.service");

/// Where the image holds the package's postinst for the first-boot unit to run.
pub const POSTINST: &str = "/usr/lib/kestrel/postinst";

/// The boot partition file Raspberry Pi OS applies at first boot.
pub const CUSTOM_TOML: &str = "custom.toml";

/// A setting that cannot go into `custom.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("first-boot settings: {0}")]
pub struct SettingsError(pub String);

/// Wi-Fi for the first boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wifi {
    /// Network name.
    pub ssid: String,
    /// WPA PSK, 64 hex digits ([`wpa_psk`]).
    pub psk: String,
    /// Regulatory country, two letters (`GB`).
    pub country: String,
}

/// The optional first-boot settings of the system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Hostname.
    pub hostname: Option<String>,
    /// The login user (renames the image's first user); its password stays locked.
    pub user: Option<String>,
    /// SSH public keys for that user; SSH is enabled with password login off.
    pub ssh_keys: Vec<String>,
    /// Wi-Fi.
    pub wifi: Option<Wifi>,
}

/// The WPA PSK of a passphrase (8 to 63 printable ASCII characters) for `ssid`:
/// PBKDF2-HMAC-SHA1, 4096 rounds, 32 bytes, as hex.
pub fn wpa_psk(ssid: &str, passphrase: &str) -> Result<String, SettingsError> {
    let ok = (8..=63).contains(&passphrase.len())
        && passphrase.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !ok {
        return Err(SettingsError(
            "a WPA passphrase is 8 to 63 printable ASCII characters".into(),
        ));
    }
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(SettingsError("an SSID is 1 to 32 bytes".into()));
    }
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA1,
        NonZeroU32::new(4096).expect("4096 is not zero"),
        ssid.as_bytes(),
        passphrase.as_bytes(),
        &mut key,
    );
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-')
}

impl Settings {
    /// Whether there is nothing to set.
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none()
            && self.user.is_none()
            && self.ssh_keys.is_empty()
            && self.wifi.is_none()
    }

    /// Checks the values: a hostname of letters, digits and dashes, a user name for SSH
    /// keys, keys that look like OpenSSH public keys, a two-letter country.
    pub fn check(&self) -> Result<(), SettingsError> {
        if let Some(h) = &self.hostname {
            if !valid_hostname(h) {
                return Err(SettingsError(format!(
                    "hostname '{h}': 1 to 63 letters, digits and dashes"
                )));
            }
        }
        if let Some(u) = &self.user {
            let ok = !u.is_empty()
                && u.len() <= 32
                && u.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                })
                && u.as_bytes()[0].is_ascii_lowercase();
            if !ok {
                return Err(SettingsError(format!(
                    "user '{u}': a lower-case letter, then letters, digits, - or _"
                )));
            }
        }
        if !self.ssh_keys.is_empty() && self.user.is_none() {
            return Err(SettingsError(
                "an SSH key needs --user (whose key it is)".into(),
            ));
        }
        for key in &self.ssh_keys {
            let kind = key.split_whitespace().next().unwrap_or("");
            if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
            {
                return Err(SettingsError(format!(
                    "'{}…' is not an OpenSSH public key (ssh-ed25519 AAAA…)",
                    key.chars().take(20).collect::<String>()
                )));
            }
        }
        if let Some(w) = &self.wifi {
            if w.country.len() != 2 || !w.country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(SettingsError(format!(
                    "Wi-Fi country '{}': two upper-case letters (GB, DE, US)",
                    w.country
                )));
            }
        }
        Ok(())
    }

    /// `custom.toml` for Raspberry Pi OS's `init_config` (config_version 1).
    pub fn custom_toml(&self) -> String {
        let mut s = String::from(
            "# Written by `cargo boards image`: Raspberry Pi OS applies this once at first boot\n\
             # (raspberrypi-sys-mods' init_config). No password is held here.\n\
             config_version = 1\n",
        );
        if let Some(h) = &self.hostname {
            s.push_str(&format!("\n[system]\nhostname = {}\n", toml_string(h)));
        }
        if let Some(u) = &self.user {
            s.push_str(&format!(
                "\n[user]\n# No password: locked, log in with the SSH key.\nname = {}\n",
                toml_string(u)
            ));
        }
        if !self.ssh_keys.is_empty() {
            let keys: Vec<String> = self
                .ssh_keys
                .iter()
                .map(|k| toml_string(k.trim()))
                .collect();
            s.push_str(&format!(
                "\n[ssh]\nenabled = true\npassword_authentication = false\nauthorized_keys = [{}]\n",
                keys.join(", ")
            ));
        }
        if let Some(w) = &self.wifi {
            s.push_str(&format!(
                "\n[wlan]\nssid = {}\n# The WPA PSK derived from the passphrase, not the passphrase.\npassword = {}\npassword_encrypted = true\nhidden = false\ncountry = {}\n",
                toml_string(&w.ssid),
                toml_string(&w.psk),
                toml_string(&w.country)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IEEE 802.11i-2004, annex H.4.1, test vector 1.
    #[test]
    fn the_psk_matches_the_standard_vector() {
        assert_eq!(
            wpa_psk("IEEE", "password").unwrap(),
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        assert!(wpa_psk("IEEE", "short").is_err());
    }

    #[test]
    fn custom_toml_holds_the_settings_and_no_passphrase() {
        let s = Settings {
            hostname: Some("cam-1".into()),
            user: Some("ops".into()),
            ssh_keys: vec!["ssh-ed25519 AAAAC3Nz ops@laptop\n".into()],
            wifi: Some(Wifi {
                ssid: "site".into(),
                psk: wpa_psk("site", "correct horse").unwrap(),
                country: "GB".into(),
            }),
        };
        s.check().unwrap();
        let text = s.custom_toml();
        assert!(!text.contains("correct horse"));
        let t: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(t["config_version"].as_integer(), Some(1));
        assert_eq!(t["system"]["hostname"].as_str(), Some("cam-1"));
        assert_eq!(
            t["ssh"]["authorized_keys"][0].as_str(),
            Some("ssh-ed25519 AAAAC3Nz ops@laptop")
        );
        assert_eq!(t["wlan"]["password_encrypted"].as_bool(), Some(true));
        assert!(Settings {
            hostname: Some("bad name".into()),
            ..Settings::default()
        }
        .check()
        .is_err());
        assert!(Settings {
            ssh_keys: vec!["ssh-rsa AAAA".into()],
            ..Settings::default()
        }
        .check()
        .is_err());
    }
}
