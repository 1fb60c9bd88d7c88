//! The cross build of `kestrel` for a board.
//!
//! - Flags: the board's `-C target-cpu` and `-C target-feature` through `RUSTFLAGS` (with
//!   `--target`, cargo applies them to the board's code only, not to build scripts).
//! - Each board builds in its own target folder (`<target-dir>/boards/<board>`): the flags
//!   differ per board, and one shared folder would rebuild tract at every switch.
//! - Linking: when the board's glibc is at least the build machine's aarch64 glibc
//!   (`libc6-dev-arm64-cross`), Debian's `aarch64-linux-gnu-gcc` links it
//!   (`.cargo/config.toml`). When the board's glibc is older (JetPack 4 has 2.27, Debian 12
//!   ships 2.36), a binary linked against the newer glibc would ask for symbols the board
//!   lacks, so `cargo zigbuild --target aarch64-unknown-linux-gnu.2.27` links it against zig's
//!   glibc 2.27 stubs instead. `cargo boards verify` checks the result with `objdump -T`.
//! - The binary comes out stripped: the `release` profile (and `bundle-ci`) set `strip`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::profile::{Board, Glibc};

/// How to link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Linker {
    /// zig when the board's glibc is older than the build machine's cross glibc, else gcc.
    Auto,
    /// Always `cargo zigbuild` against the board's glibc.
    Zig,
    /// Always Debian's aarch64-linux-gnu-gcc.
    Gcc,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The stripped `kestrel` binary.
    pub binary: PathBuf,
    /// The board's target folder (for cargo-deb).
    pub target_dir: PathBuf,
    /// Whether zig linked it.
    pub zig: bool,
}

/// The glibc of the build machine's aarch64 cross libraries, from dpkg.
pub fn cross_glibc() -> Result<Glibc> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "libc6-dev-arm64-cross"])
        .output()
        .context("running dpkg-query (is this a Debian machine?)")?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || version.trim().is_empty() {
        bail!("libc6-dev-arm64-cross is not installed (apt install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)");
    }
    Glibc::parse(&version).with_context(|| format!("dpkg says libc6-dev-arm64-cross {version}"))
}

/// Whether to link with zig.
pub fn use_zig(board: &Board, linker: Linker) -> Result<bool> {
    Ok(match linker {
        Linker::Zig => true,
        Linker::Gcc => false,
        Linker::Auto => board.glibc < cross_glibc()?,
    })
}

/// The workspace's target folder (honours `CARGO_TARGET_DIR` and `.cargo/config.toml`).
pub fn workspace_target_dir(repo: &Path) -> Result<PathBuf> {
    let out = cargo_command()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(repo)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The cargo that runs this tool.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Whether `name` is one of the variables `cargo run` sets for the program it starts (this
/// tool runs as `cargo boards`, an alias of `cargo run -p kestrel-boards`).
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// A `cargo` command without the variables `cargo run` set for this tool. Build scripts
/// (ring's, through cc) ask to rerun when `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME` or `OUT_DIR`
/// change, and cargo compares the values in its own environment: with this tool's values
/// inherited, a bundle would rebuild ring and everything above it that a plain `cargo build`
/// or `cargo test` of the same target folder had built, and the next plain build would
/// rebuild them again.
pub fn cargo_command() -> Command {
    let mut cmd = Command::new(cargo());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Cross-builds `kestrel` for `board` with cargo `profile`.
pub fn build(repo: &Path, board: &Board, profile: &str, linker: Linker) -> Result<Built> {
    let zig = use_zig(board, linker)?;
    let target_dir = workspace_target_dir(repo)?.join("boards").join(&board.name);
    let target = if zig {
        format!("{}.{}", board.target, board.glibc)
    } else {
        board.target.clone()
    };
    let mut cmd = cargo_command();
    cmd.current_dir(repo)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", board.rustflags())
        .arg(if zig { "zigbuild" } else { "build" })
        .args(["--locked", "-p", "kestrel-runtime", "--bin", "kestrel"])
        .args(["--profile", profile, "--target", &target]);
    if let Some(features) = &board.features {
        cmd.arg("--no-default-features");
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
    }
    eprintln!(
        "building kestrel for {} ({}): RUSTFLAGS=\"{}\" cargo {}",
        board.name,
        board.description,
        board.rustflags(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        if zig {
            bail!(
                "cargo zigbuild failed ({status}); it needs `pip install cargo-zigbuild ziglang`"
            );
        }
        bail!("cargo build failed ({status})");
    }
    let binary = target_dir
        .join(&board.target)
        .join(profile_dir(profile))
        .join("kestrel");
    if !binary.exists() {
        bail!("the build left no binary at {}", binary.display());
    }
    Ok(Built {
        binary,
        target_dir,
        zig,
    })
}

/// The folder cargo puts a profile's products in.
pub fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_run_variables_are_not_passed_on() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_run(name), "{name}");
        }
        for name in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO",
            "RUSTFLAGS",
            "CC",
            "PATH",
        ] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
        // Run by `cargo test`, this process has CARGO_MANIFEST_DIR and CARGO_PKG_NAME set.
        let cmd = cargo_command();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(
            removed.iter().any(|n| n == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(removed.iter().any(|n| n == "CARGO_PKG_NAME"), "{removed:?}");
    }
}
