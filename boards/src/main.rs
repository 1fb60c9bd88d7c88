//! `cargo boards`: Kestrel's board bundles, one command per board.
//!
//! ```text
//! cargo boards list
//! cargo boards bundle rpi4 [--usb] [--profile release] [--out dist] [--linker auto|zig|gcc]
//! cargo boards verify rpi4 dist/kestrel_0.1.0_rpi4_arm64.deb [--frames 50]
//! cargo boards image rpi4 --base raspios-lite-arm64.img.xz -o kestrel-rpi4.img [--config my.toml]
//! ```
//!
//! `bundle` cross-builds `kestrel` with the board's flags ([`cross`]), stages its config and
//! default model and writes a `.deb` and a `.tar.gz` ([`package`]); `verify` checks a `.deb`
//! as the board would meet it ([`verify`]); `image` writes a Raspberry Pi OS SD-card image with
//! Kestrel installed ([`image`]). Profiles: `boards/<board>.toml` ([`profile`]).
//! Exit codes: 0 success, 1 a build or check failed, 2 usage or a bad profile.

mod cross;
mod image;
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
    /// Write a Raspberry Pi OS SD-card image with Kestrel installed and enabled.
    Image(Box<ImageArgs>),
}

/// `cargo boards image`'s arguments.
#[derive(clap::Args, Debug)]
struct ImageArgs {
    /// Board profile: rpi4 or rpi5.
    board: String,
    /// Raspberry Pi OS Lite (64-bit) image, .img or .img.xz, as downloaded.
    #[arg(long)]
    base: PathBuf,
    /// The image to write (the .bmap goes beside it).
    #[arg(short, long)]
    out: PathBuf,
    /// Kestrel settings over the profile's (camera, model, mqtt, zones, lines): a kestrel.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A model to install instead of the board's default (its .kestrel.toml sidecar beside it).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Configure a USB camera (v4l2:/dev/video0) instead of the board's own camera.
    #[arg(long)]
    usb: bool,
    /// An aarch64 kestrel to install instead of building one (as `bundle` does).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Cargo profile of the build when no --binary is given.
    #[arg(long, default_value = "release")]
    profile: String,
    /// Hostname set at first boot.
    #[arg(long)]
    hostname: Option<String>,
    /// Login user made at first boot (no password: SSH key only).
    #[arg(long)]
    user: Option<String>,
    /// SSH public key file for --user (SSH is enabled, password login off).
    #[arg(long, requires = "user")]
    ssh_key: Option<PathBuf>,
    /// Wi-Fi network joined at first boot.
    #[arg(long, requires_all = ["wifi_password_file", "wifi_country"])]
    wifi_ssid: Option<String>,
    /// File holding the Wi-Fi passphrase (only its WPA PSK goes into the image).
    #[arg(long, requires = "wifi_ssid")]
    wifi_password_file: Option<PathBuf>,
    /// Wi-Fi regulatory country, two letters (GB, DE, US).
    #[arg(long, requires = "wifi_ssid")]
    wifi_country: Option<String>,
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
            let bad_input = e.chain().any(|c| {
                c.is::<ProfileError>()
                    || c.is::<image::BadInput>()
                    || c.is::<image::SettingsError>()
            });
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
        Command::Image(args) => run_image(*args)?,
    }
    Ok(())
}

/// Reads a small input file for `image`; unreadable is bad input naming it.
fn read_input(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        image::BadInput {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        }
        .into()
    })
}

fn run_image(args: ImageArgs) -> Result<()> {
    let board = Board::load(&boards_dir(), &args.board)?;
    let wifi = match (
        &args.wifi_ssid,
        &args.wifi_password_file,
        &args.wifi_country,
    ) {
        (Some(ssid), Some(file), Some(country)) => {
            let passphrase = read_input(file)?;
            let psk = image::firstboot::wpa_psk(ssid, passphrase.trim_end_matches(['\n', '\r']))
                .map_err(|e| image::BadInput {
                    path: file.clone(),
                    reason: e.to_string(),
                })?;
            Some(image::firstboot::Wifi {
                ssid: ssid.clone(),
                psk,
                country: country.clone(),
            })
        }
        _ => None,
    };
    let ssh_keys = match &args.ssh_key {
        Some(file) => read_input(file)?
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    let settings = image::firstboot::Settings {
        hostname: args.hostname.clone(),
        user: args.user.clone(),
        ssh_keys,
        wifi,
    };
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => {
            let built = cross::build(&repo(), &board, &args.profile, cross::Linker::Auto)?;
            built.binary
        }
    };
    let written = image::image(&image::Job {
        repo: &repo(),
        board: &board,
        base: &args.base,
        out: &args.out,
        binary: &binary,
        config: args.config.as_deref(),
        model: args.model.as_deref(),
        usb: args.usb,
        settings: &settings,
    })?;
    println!("{}", written.image.display());
    println!("{}", written.bmap.display());
    Ok(())
}
