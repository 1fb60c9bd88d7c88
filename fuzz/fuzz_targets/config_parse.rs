//! The `kestrel run` configuration parser (`kestrel_runtime::config::Config::parse`, the
//! /etc/kestrel/kestrel.toml of a board) on arbitrary UTF-8 text: every refusal is a
//! `ConfigError` naming file, line and key, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = kestrel_runtime::config::Config::parse(text, Path::new("/etc/kestrel/kestrel.toml")) {
        // Formatting the error walks the line/key lookups too.
        let _ = e.to_string();
    }
});
