//! `cargo boards`: Kestrel's board bundles, one command per board.
//!
//! ```text
//! cargo boards list
//! cargo boards bundle rpi4 [--usb] [--profile release] [--out dist] [--linker auto|zig|gcc]
//! cargo boards verify rpi4 dist/kestrel_0.1.0_rpi4_arm64.deb [--frames 50]
//! ```
//!
//! `bundle` cross-builds `kestrel` with the board's flags ([`cross`]), stages its config and
//! default model and writes a `.deb` and a `.tar.gz` ([`package`]); `verify` checks a `.deb`
//! as the board would meet it ([`verify`]). Profiles: `boards/<board>.toml` ([`profile`]).
//! Exit codes: 0 success, 1 a build or check failed, 2 usage or a bad profile.

mod cross;
mod package;
mod profile;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use profile::{Board, ProfileError};

/// Build and check Kestrel's board bundles (.deb + .tar.gz) for Raspberry Pi and Jetson.
#[derive(Parser, Debug)]
#[command(name = "cargo boards", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the board profiles.
    List,
    /// Cross-build kestrel for a board and package it (.deb and .tar.gz).
    Bundle {
        /// Board profile: boards/BOARD.toml (rpi4, rpi5, jetson-nano, jetson-orin-nano).
        board: String,
        /// Configure a USB camera (v4l2:/dev/video0) instead of the board's own camera.
        #[arg(long)]
        usb: bool,
        /// Cargo profile: `release` for boards; CI uses `bundle-ci` (no LTO, builds faster).
        #[arg(long, default_value = "release")]
        profile: String,
        /// Output folder.
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        /// Linker: zig when the board's glibc is older than the build machine's (auto).
        #[arg(long, value_enum, default_value = "auto")]
        linker: cross::Linker,
    },
    /// Check a board's .deb: file list, glibc floor, and a run under qemu-aarch64.
    Verify {
        /// Board profile the package was built for.
        board: String,
        /// The .deb.
        deb: PathBuf,
        /// Frames of the synthetic source to run.
        #[arg(long, default_value_t = 50)]
        frames: u64,
    },
}

/// The repository (this tool runs from it, with `cargo boards`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("boards/ is inside the repository")
        .to_path_buf()
}

fn boards_dir() -> PathBuf {
    repo().join("boards")
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo boards: error: {e:#}");
            let bad_input = e.chain().any(|c| c.is::<ProfileError>());
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::List => {
            for name in Board::names(&boards_dir())? {
                let board = Board::load(&boards_dir(), &name)?;
                println!(
                    "{name:18} {} [{} {}, glibc ≥ {}]",
                    board.description, board.target, board.target_cpu, board.glibc
                );
            }
        }
        Command::Bundle {
            board,
            usb,
            profile,
            out,
            linker,
        } => {
            let board = Board::load(&boards_dir(), &board)?;
            let out = if out.is_absolute() {
                out
            } else {
                std::env::current_dir()?.join(out)
            };
            let built = cross::build(&repo(), &board, &profile, linker)?;
            eprintln!(
                "built {} (linked by {})",
                built.binary.display(),
                if built.zig { "zig" } else { "gcc" }
            );
            let packages = package::package(&package::Job {
                repo: &repo(),
                board: &board,
                built: &built,
                profile: &profile,
                usb,
                out: &out,
            })?;
            println!("{}", packages.deb.display());
            println!("{}", packages.tarball.display());
        }
        Command::Verify { board, deb, frames } => {
            let board = Board::load(&boards_dir(), &board)?;
            verify::verify(&board, &deb, frames)?;
        }
    }
    Ok(())
}
