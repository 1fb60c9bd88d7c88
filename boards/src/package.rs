//! Packaging a built `kestrel` for a board: a `.deb` (cargo-deb) and a `.tar.gz` with the
//! same files.
//!
//! Installed tree (both formats):
//!
//! | path | what |
//! | --- | --- |
//! | `/usr/bin/kestrel` | the stripped binary |
//! | `/etc/kestrel/kestrel.toml` | the board's settings (a conffile: upgrades keep edits), 0640 root:kestrel |
//! | `/usr/share/kestrel/models/` | the default model and its sidecar |
//! | `/usr/lib/systemd/system/kestrel.service` | the service (boards/debian/kestrel.service) |
//! | `/usr/lib/systemd/system/kestrel.service.d/argus.conf` | Jetson boards: /tmp shared for nvargus-daemon |
//! | `/usr/share/doc/kestrel/README.boards.md` | boards/README.md |
//!
//! The files that depend on the board are staged under `<profile dir>/bundle/` of the board's
//! target folder, where `runtime/Cargo.toml`'s `[package.metadata.deb]` assets point
//! (`target/release/bundle/…`). The `.deb`'s maintainer scripts (boards/debian/postinst,
//! postrm) create the `kestrel` system user in the `video` group, then cargo-deb's systemd
//! snippets enable and start the unit. Outputs are written to a temporary name in the output
//! folder and renamed into place, so a failed run never leaves half a package.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kestrel_runtime::config::Config;
use kestrel_runtime::pipeline::sidecar::{sidecar_path, Sidecar};

use crate::cross::{cargo_command, profile_dir, Built};
use crate::profile::{Board, MODELS_DIR};

/// The packages made for one board.
#[derive(Debug)]
pub struct Packages {
    /// The `.deb`.
    pub deb: PathBuf,
    /// The `.tar.gz`.
    pub tarball: PathBuf,
}

/// One board's packaging: what was built, for which board, where the packages go.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The repository.
    pub repo: &'a Path,
    /// The board.
    pub board: &'a Board,
    /// Its build.
    pub built: &'a Built,
    /// The cargo profile it was built with.
    pub profile: &'a str,
    /// A USB camera instead of the board's.
    pub usb: bool,
    /// Output folder.
    pub out: &'a Path,
}

/// Where the Jetson packages install the unit drop-in that keeps /tmp shared
/// ([`Board::argus`]).
pub const ARGUS_DROP_IN: &str = "usr/lib/systemd/system/kestrel.service.d/argus.conf";

/// The version packaged (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the board's files are staged: `bundle/` next to the binary, which is where
/// `runtime/Cargo.toml`'s deb assets (`target/release/bundle/…`) point.
fn stage_dir(built: &Built) -> Result<PathBuf> {
    Ok(built
        .binary
        .parent()
        .context("binary has no folder")?
        .join("bundle"))
}

/// Stages the board's files next to the binary; returns the stage folder.
pub fn stage(job: &Job) -> Result<PathBuf> {
    let Job {
        repo,
        board,
        built,
        usb,
        ..
    } = *job;
    let stage = stage_dir(built)?;
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    let models = stage.join("models");
    fs::create_dir_all(&models).with_context(|| format!("creating {}", models.display()))?;
    let config = board.render_config(usb);
    let config_path = stage.join("kestrel.toml");
    // The board's kestrel must accept it: check with the same parser before packaging.
    Config::parse(&config, Path::new("/etc/kestrel/kestrel.toml"))
        .with_context(|| format!("the config rendered for {}", board.name))?;
    fs::write(&config_path, config)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let files = model_files(&repo.join(&board.model))
        .with_context(|| format!("the default model of board {}", board.name))?;
    for file in &files {
        let name = file.file_name().context("model path has no file name")?;
        fs::copy(file, models.join(name))
            .with_context(|| format!("copying {} (board {})", file.display(), board.name))?;
    }
    Ok(stage)
}

/// The files a model is installed with: the model, its sidecar (`MODEL.kestrel.toml`) and
/// the labels file the sidecar names, if any. The sidecar must load: a model without one
/// cannot run.
pub fn model_files(model: &Path) -> Result<Vec<PathBuf>> {
    let sidecar = sidecar_path(model);
    let labels = Sidecar::load(&sidecar)?.labels_file();
    Ok([Some(model.to_path_buf()), Some(sidecar), labels]
        .into_iter()
        .flatten()
        .collect())
}

/// The package file stem: `kestrel_0.1.0_rpi4-usb_arm64`.
pub fn stem(board: &Board, usb: bool) -> String {
    let variant = if usb {
        format!("{}-usb", board.name)
    } else {
        board.name.clone()
    };
    format!("kestrel_{VERSION}_{variant}_arm64")
}

/// Runs cargo-deb on the staged files; returns the `.deb`.
pub fn deb(job: &Job) -> Result<PathBuf> {
    let Job {
        repo,
        board,
        built,
        profile,
        usb,
        out,
    } = *job;
    let final_path = out.join(format!("{}.deb", stem(board, usb)));
    let partial = out.join(format!(".{}.deb.partial", stem(board, usb)));
    let status = cargo_command()
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", &built.target_dir)
        .args([
            "deb",
            "-p",
            "kestrel-runtime",
            "--no-build",
            "--no-strip",
            "--no-dbgsym",
        ])
        .args(["--target", &board.target, "--profile", profile])
        .args(["--variant", &board.name])
        .arg("--output")
        .arg(&partial)
        // cargo-deb prints the path it wrote (the temporary one): keep stdout for ours.
        .stdout(std::io::stderr())
        .status()
        .context("running cargo deb (cargo install cargo-deb)")?;
    if !status.success() {
        let _ = fs::remove_file(&partial);
        bail!("cargo deb failed ({status}); is cargo-deb installed? (cargo install cargo-deb)");
    }
    fs::rename(&partial, &final_path)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    Ok(final_path)
}

/// Writes the `.tar.gz`: the installed tree under `kestrel-VERSION-BOARD/`, plus `install.sh`.
pub fn tarball(job: &Job) -> Result<PathBuf> {
    let Job {
        repo,
        board,
        built,
        usb,
        out,
        ..
    } = *job;
    let stem = stem(board, usb);
    let final_path = out.join(format!("{stem}.tar.gz"));
    let stage = stage_dir(built)?;
    let top = PathBuf::from(&stem);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{stem}"))
        .suffix(".tar.gz.partial")
        .tempfile_in(out)
        .with_context(|| format!("creating a temporary file in {}", out.display()))?;
    {
        let gz = flate2::write::GzEncoder::new(tmp.as_file_mut(), flate2::Compression::best());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut add = |src: &Path, dest: &str, mode: u32| -> Result<()> {
            let data = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, top.join(dest), data.as_slice())
                .with_context(|| format!("adding {dest}"))?;
            Ok(())
        };
        add(&built.binary, "usr/bin/kestrel", 0o755)?;
        // It may come to hold a password: not for other users (install.sh sets root:kestrel).
        add(
            &stage.join("kestrel.toml"),
            "etc/kestrel/kestrel.toml",
            0o640,
        )?;
        let models_dir = MODELS_DIR.trim_start_matches('/');
        let mut models: Vec<_> = fs::read_dir(stage.join("models"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        models.sort();
        for m in models {
            let name = m
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            add(&m, &format!("{models_dir}/{name}"), 0o644)?;
        }
        let debian = repo.join("boards/debian");
        add(
            &debian.join("kestrel.service"),
            "usr/lib/systemd/system/kestrel.service",
            0o644,
        )?;
        if board.argus() {
            add(&debian.join("kestrel-argus.conf"), ARGUS_DROP_IN, 0o644)?;
        }
        add(
            &repo.join("boards/README.md"),
            "usr/share/doc/kestrel/README.boards.md",
            0o644,
        )?;
        add(&debian.join("install.sh"), "install.sh", 0o755)?;
        let gz = tar.into_inner().context("finishing the tar")?;
        gz.finish().context("finishing the gzip stream")?;
    }
    // tempfile creates 0600; a package is for others to read.
    let mut p = perms(tmp.path())?;
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o644);
    fs::set_permissions(tmp.path(), p)?;
    tmp.persist(&final_path)
        .with_context(|| format!("renaming into {}", final_path.display()))?;
    Ok(final_path)
}

fn perms(path: &Path) -> Result<fs::Permissions> {
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions())
}

/// Builds both packages for a staged board.
pub fn package(job: &Job) -> Result<Packages> {
    fs::create_dir_all(job.out).with_context(|| format!("creating {}", job.out.display()))?;
    debug_assert!(job
        .built
        .binary
        .ends_with(Path::new(profile_dir(job.profile)).join("kestrel")));
    stage(job)?;
    let deb = deb(job)?;
    let tarball = tarball(job)?;
    Ok(Packages { deb, tarball })
}
