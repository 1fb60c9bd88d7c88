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
    let out = Command::new(cargo())
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

/// Cross-builds `kestrel` for `board` with cargo `profile`.
pub fn build(repo: &Path, board: &Board, profile: &str, linker: Linker) -> Result<Built> {
    let zig = use_zig(board, linker)?;
    let target_dir = workspace_target_dir(repo)?.join("boards").join(&board.name);
    let target = if zig {
        format!("{}.{}", board.target, board.glibc)
    } else {
        board.target.clone()
    };
    let mut cmd = Command::new(cargo());
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
