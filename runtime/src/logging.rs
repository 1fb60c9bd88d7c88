//! Diagnostics on stderr for Kestrel's binaries: `-v` info, `-vv` debug; `RUST_LOG`
//! overrides. Results go to stdout, so logs never mix with JSON lines.

/// Starts the logger at the level `-v` flags ask for (0: warnings only).
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .try_init();
}
