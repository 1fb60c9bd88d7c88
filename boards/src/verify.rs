//! Checks a board's `.deb` the way the board would meet it:
//!
//! 1. its file list (`dpkg-deb --contents`) has the binary, the default model and its sidecar,
//!    the config (marked a conffile, mode 0640) and the systemd unit (with the Argus drop-in on
//!    Jetson boards) (the `.tar.gz` beside it, if any,
//!    holds the same files and `install.sh`);
//! 2. the binary needs no glibc symbol newer than the board's floor (`objdump -T`);
//! 3. the binary, extracted from the package, runs under `qemu-aarch64 -cpu <board's core>`
//!    with the packaged config and model on the synthetic source for N frames and exits 0.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::profile::{Board, Glibc, MODELS_DIR};

/// The files every package must hold, as `dpkg-deb --contents` shows them.
pub fn required_files(board: &Board) -> Vec<String> {
    let model = board.model_file_name();
    let stem = model
        .strip_suffix(".nnef.tgz")
        .unwrap_or(&model)
        .to_string();
    let mut files = vec![
        "./usr/bin/kestrel".into(),
        "./etc/kestrel/kestrel.toml".into(),
        format!(".{MODELS_DIR}/{model}"),
        format!(".{MODELS_DIR}/{stem}.kestrel.toml"),
        "./usr/lib/systemd/system/kestrel.service".into(),
    ];
    if board.argus() {
        files.push(format!("./{}", crate::package::ARGUS_DROP_IN));
    }
    files
}

/// The paths of a `dpkg-deb --contents` listing (`-rwxr-xr-x root/root 123 date ./usr/bin/x`).
pub fn listed_paths(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.to_string())
        .collect()
}

/// The permissions column (`-rw-r-----`) of `path` in a `dpkg-deb --contents` listing.
pub fn listed_mode<'a>(listing: &'a str, path: &str) -> Option<&'a str> {
    listing.lines().find_map(|l| {
        let mut fields = l.split_whitespace();
        let mode = fields.next()?;
        (fields.nth(4)? == path).then_some(mode)
    })
}

/// The newest `GLIBC_x.y` version in `objdump -T` output.
pub fn newest_glibc(objdump: &str) -> Option<Glibc> {
    objdump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(Glibc::parse)
        .max()
}

fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Check 1: the file list and the conffile.
pub fn check_contents(board: &Board, deb: &Path) -> Result<()> {
    let out = run(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let paths = listed_paths(&listing);
    // The config may come to hold a password: never readable by other users.
    let mode = listed_mode(&listing, "./etc/kestrel/kestrel.toml");
    ensure!(
        mode == Some("-rw-r-----"),
        "{}: /etc/kestrel/kestrel.toml has mode {mode:?}, not -rw-r----- (0640)",
        deb.display()
    );
    for want in required_files(board) {
        ensure!(
            paths.contains(&want),
            "{}: {want} is missing from the package (it holds: {})",
            deb.display(),
            paths.join(" ")
        );
    }
    let conffiles = run(Command::new("dpkg-deb").arg("--ctrl-tarfile").arg(deb))?;
    let mut archive = tar::Archive::new(conffiles.stdout.as_slice());
    let mut found = String::new();
    for entry in archive.entries().context("reading the control archive")? {
        let mut entry = entry?;
        if entry.path()?.ends_with("conffiles") {
            std::io::Read::read_to_string(&mut entry, &mut found)?;
        }
    }
    ensure!(
        found
            .lines()
            .any(|l| l.trim() == "/etc/kestrel/kestrel.toml"),
        "{}: /etc/kestrel/kestrel.toml is not a conffile (conffiles: {found:?})",
        deb.display()
    );
    eprintln!(
        "ok: {} holds {}",
        deb.display(),
        required_files(board).join(", ")
    );
    Ok(())
}

/// Extracts the package into a new temporary folder.
pub fn extract(deb: &Path) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()))?;
    Ok(dir)
}

/// Check 2: the glibc floor.
pub fn check_glibc(board: &Board, binary: &Path) -> Result<Glibc> {
    let out = run(Command::new("aarch64-linux-gnu-objdump")
        .arg("-T")
        .arg(binary))?;
    let newest = newest_glibc(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("{}: no GLIBC symbol versions found", binary.display()))?;
    ensure!(
        newest <= board.glibc,
        "{}: needs GLIBC_{newest}, newer than {}'s glibc {}",
        binary.display(),
        board.name,
        board.glibc
    );
    eprintln!(
        "ok: the newest glibc symbol {} needs is GLIBC_{newest} (board floor {})",
        binary.display(),
        board.glibc
    );
    Ok(newest)
}

/// The sysroot qemu-user loads the target's shared libraries from.
pub const SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// Check 3: run the packaged binary under qemu with the packaged config and model.
pub fn check_run(board: &Board, root: &Path, frames: u64) -> Result<()> {
    let binary = root.join("usr/bin/kestrel");
    let config = root.join("etc/kestrel/kestrel.toml");
    let model: PathBuf = root
        .join(MODELS_DIR.trim_start_matches('/'))
        .join(board.model_file_name());
    let mut cmd = Command::new("qemu-aarch64");
    cmd.args(["-cpu", &board.qemu_cpu, "-L", SYSROOT])
        .arg(&binary)
        .arg("run")
        .arg("--config")
        .arg(&config)
        // The board's camera is not here, and the config's model path is the installed one.
        .args(["--source", "synthetic", "--fps", "0"])
        .arg("--frames")
        .arg(frames.to_string())
        .arg("--model")
        .arg(&model);
    let out = run(&mut cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("kestrel printed a line that is not JSON")?;
    // Frame lines carry `seq` and a latency; a detector's run adds event and status lines.
    let frame_lines = lines
        .iter()
        .filter(|l| l.get("seq").is_some() && l.get("latency_ms").is_some())
        .count();
    ensure!(
        frame_lines as u64 == frames,
        "expected {frames} frame lines and a summary, got {frame_lines} frame lines"
    );
    let summary = lines.last().context("kestrel printed nothing")?;
    ensure!(
        summary["summary"]["frames"].as_u64() == Some(frames),
        "summary: {summary}"
    );
    eprintln!(
        "ok: qemu-aarch64 -cpu {} ran the packaged kestrel for {frames} frames (exit 0): {}",
        board.qemu_cpu, summary["summary"]["fps"]
    );
    Ok(())
}

/// The `.tar.gz` next to the `.deb` holds the same files under one folder, and `install.sh`.
pub fn check_tarball(board: &Board, tarball: &Path) -> Result<()> {
    let file =
        std::fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut paths = Vec::new();
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", tarball.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", tarball.display()))?;
        let path = entry.path()?.into_owned();
        // Drop the top folder: `kestrel_0.1.0_rpi4_arm64/usr/bin/kestrel` → `./usr/bin/kestrel`.
        let inner: PathBuf = path.components().skip(1).collect();
        paths.push(format!("./{}", inner.display()));
    }
    let mut required = required_files(board);
    required.push("./install.sh".into());
    for want in required {
        ensure!(
            paths.contains(&want),
            "{}: {want} is missing (it holds: {})",
            tarball.display(),
            paths.join(" ")
        );
    }
    eprintln!(
        "ok: {} holds the same files and install.sh",
        tarball.display()
    );
    Ok(())
}

/// All checks.
pub fn verify(board: &Board, deb: &Path, frames: u64) -> Result<()> {
    check_contents(board, deb)?;
    let tarball = deb.with_extension("tar.gz");
    if tarball.exists() {
        check_tarball(board, &tarball)?;
    }
    let root = extract(deb)?;
    check_glibc(board, &root.path().join("usr/bin/kestrel"))?;
    check_run(board, root.path(), frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_listings_parse() {
        let listing = "drwxr-xr-x 0/0               0 2026-11-28 14:00 ./\n\
                       -rwxr-xr-x 0/0        18234567 2026-11-28 14:00 ./usr/bin/kestrel\n\
                       -rw-r--r-- 0/0             812 2026-11-28 14:00 ./etc/kestrel/kestrel.toml\n";
        assert_eq!(
            listed_paths(listing),
            ["./", "./usr/bin/kestrel", "./etc/kestrel/kestrel.toml"]
        );
        assert_eq!(
            listed_mode(listing, "./etc/kestrel/kestrel.toml"),
            Some("-rw-r--r--")
        );
        assert_eq!(listed_mode(listing, "./nothing"), None);
    }

    #[test]
    fn the_newest_glibc_symbol_is_found() {
        let objdump = "0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.17) malloc\n\
                       0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.27) glob64\n\
                       0000000000000000  w   DF *UND*  0000000000000000  GLIBC_2.18  __cxa_thread_atexit_impl\n\
                       0000000000000000      DF *UND*  0000000000000000 (GLIBC_PRIVATE) __libc_x\n";
        assert_eq!(newest_glibc(objdump), Glibc::parse("2.27"));
        assert_eq!(newest_glibc("no versions"), None);
    }
}
