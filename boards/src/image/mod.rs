//! `cargo boards image`: a Raspberry Pi OS Lite (64-bit) SD-card image with Kestrel installed
//! as the board's `.deb` installs it, ready to flash, built without root, loop devices or
//! mounts.
//!
//! 1. The base image (raw or `.xz`, [`base`]) is copied sparsely into a temporary file beside
//!    the output; its MBR ([`mbr`]) gives the FAT boot and ext4 root partitions.
//! 2. The root partition is copied out to a file of its own, grown with `resize2fs` when
//!    Kestrel's files need more room than it has free (the partition entry and the image grow
//!    with it), written with `debugfs` ([`ext4`]): the binary, the model and its sidecar,
//!    `/etc/kestrel/kestrel.toml` ([`config`]: the profile's config and the user's overrides,
//!    checked with the runtime's parser), the unit, and the first-boot unit with the package's
//!    postinst ([`firstboot`]); both units enabled for `multi-user.target` (the symlinks
//!    `systemctl enable` makes). `e2fsck -fn` checks it before it is copied back.
//! 3. Optional first-boot settings (hostname, SSH key, Wi-Fi) go to `custom.toml` on the boot
//!    partition ([`fat`]), which Raspberry Pi OS applies at first boot.
//! 4. The image is renamed into place and a `.bmap` ([`bmap`]) written beside it.
//!
//! Input that cannot make an image is a [`BadInput`], naming the file and the problem (the
//! CLI exits 2); every temporary file is removed on any failure.

pub mod base;
pub mod bmap;
pub mod config;
pub mod ext4;
pub mod fat;
pub mod firstboot;
pub mod mbr;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kestrel_runtime::config::DEFAULT_PATH;

use crate::profile::{Board, MODELS_DIR};
use ext4::Entry;
use firstboot::Settings;

/// First-boot settings (`--hostname`, `--user`, `--ssh-key`, `--wifi-*`) that cannot be
/// used: bad input too, though not a file's.
pub use firstboot::SettingsError;

/// Input that cannot make an image: the file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct BadInput {
    /// The file at fault (the base image, the config, the model, the binary).
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> anyhow::Error {
    BadInput {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
    .into()
}

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The repository (unit files, postinst, README).
    pub repo: &'a Path,
    /// The board (a Raspberry Pi profile).
    pub board: &'a Board,
    /// The Raspberry Pi OS image, raw or `.xz`.
    pub base: &'a Path,
    /// The image to write.
    pub out: &'a Path,
    /// The aarch64 `kestrel` to install.
    pub binary: &'a Path,
    /// The user's config overrides.
    pub config: Option<&'a Path>,
    /// A model to install instead of the board's default.
    pub model: Option<&'a Path>,
    /// The USB camera set-up instead of the board's camera.
    pub usb: bool,
    /// First-boot system settings.
    pub settings: &'a Settings,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// The image.
    pub image: PathBuf,
    /// Its block map.
    pub bmap: PathBuf,
}

/// Room kept free in the root filesystem beyond Kestrel's files (logs, apt, the first boot).
const SLACK: u64 = 64 << 20;

/// Whether `binary` is a 64-bit little-endian aarch64 ELF file.
fn check_binary(binary: &Path) -> Result<()> {
    let mut head = [0u8; 20];
    fs::File::open(binary)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| bad(binary, format!("cannot read the kestrel binary: {e}")))?;
    let aarch64 =
        &head[..4] == b"\x7fELF" && head[4] == 2 && head[5] == 1 && head[18..20] == [0xb7, 0];
    if !aarch64 {
        return Err(bad(binary, "not an aarch64 (arm64) ELF executable"));
    }
    Ok(())
}

/// The file's size, for the room estimate.
fn size_of(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// The files Kestrel adds to the root filesystem, with the modes and owners of the `.deb`
/// (`runtime/Cargo.toml`'s assets; the config is root-owned 0640 until the first boot gives
/// it to group kestrel, as postinst does), then the unit symlinks.
fn payload(job: &Job, work: &Path, config_text: &str) -> Result<Vec<Entry>> {
    let file = |path: String, source: PathBuf, mode: u32| Entry::File {
        path,
        source,
        mode,
        uid: 0,
        gid: 0,
    };
    let config = work.join("kestrel.toml");
    fs::write(&config, config_text)?;
    let unit = work.join(firstboot::UNIT);
    fs::write(&unit, firstboot::UNIT_TEXT)?;
    let debian = job.repo.join("boards/debian");
    let model = job
        .model
        .map(Path::to_path_buf)
        .unwrap_or_else(|| job.repo.join(&job.board.model));
    let models = crate::package::model_files(&model).map_err(|e| bad(&model, format!("{e:#}")))?;
    let mut files = vec![
        file("/usr/bin/kestrel".into(), job.binary.into(), 0o755),
        file(DEFAULT_PATH.into(), config, 0o640),
    ];
    for m in models {
        let name = m
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        files.push(file(format!("{MODELS_DIR}/{name}"), m, 0o644));
    }
    files.extend([
        file(
            "/usr/lib/systemd/system/kestrel.service".into(),
            debian.join("kestrel.service"),
            0o644,
        ),
        file(
            "/usr/share/doc/kestrel/README.boards.md".into(),
            job.repo.join("boards/README.md"),
            0o644,
        ),
        file(firstboot::POSTINST.into(), debian.join("postinst"), 0o755),
        file(
            format!("/usr/lib/systemd/system/{}", firstboot::UNIT),
            unit,
            0o644,
        ),
    ]);
    let wants = "/etc/systemd/system/multi-user.target.wants";
    for name in ["kestrel.service", firstboot::UNIT] {
        files.push(Entry::Symlink {
            path: format!("{wants}/{name}"),
            target: format!("/usr/lib/systemd/system/{name}"),
        });
    }
    // Every folder on the way, parents first (those already there are left as they are).
    let mut dirs: Vec<String> = Vec::new();
    for e in &files {
        let (Entry::File { path, .. } | Entry::Symlink { path, .. } | Entry::Dir { path, .. }) = e;
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            at += i + 1;
            let dir = path[..at].to_string();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs.sort_by_key(|d| d.matches('/').count());
    let mut entries: Vec<Entry> = dirs
        .into_iter()
        .map(|path| Entry::Dir { path, mode: 0o755 })
        .collect();
    entries.extend(files);
    Ok(entries)
}

/// Bytes the payload takes, rounded up to 4 KiB blocks, plus a block per entry.
fn payload_bytes(entries: &[Entry]) -> Result<u64> {
    let mut total = 0;
    for e in entries {
        total += 4096;
        if let Entry::File { source, .. } = e {
            total += size_of(source)?.div_ceil(4096) * 4096;
        }
    }
    Ok(total)
}

/// Builds the image; see the module documentation.
pub fn image(job: &Job) -> Result<Written> {
    if !job.board.name.starts_with("rpi") {
        return Err(bad(
            &crate::boards_dir().join(format!("{}.toml", job.board.name)),
            "images are made for Raspberry Pi boards; a Jetson is flashed with NVIDIA's JetPack, then gets the .deb",
        ));
    }
    check_binary(job.binary)?;
    job.settings.check()?;
    let model_name = job.model.map(|m| {
        m.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    });
    let user = match job.config {
        Some(p) => Some((
            p,
            fs::read_to_string(p).map_err(|e| bad(p, format!("cannot read it: {e}")))?,
        )),
        None => None,
    };
    let config_text = config::render(
        job.board,
        job.usb,
        model_name.as_deref(),
        user.as_ref().map(|(p, t)| (*p, t.as_str())),
    )
    .map_err(|e| match job.config {
        Some(p) => bad(p, e),
        None => bad(
            &crate::boards_dir().join(format!("{}.toml", job.board.name)),
            e,
        ),
    })?;

    let out_dir = match job.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".kestrel-image")
        .tempdir_in(&out_dir)
        .with_context(|| format!("creating a temporary folder in {}", out_dir.display()))?;
    let entries = payload(job, work.path(), &config_text)?;
    let need = payload_bytes(&entries)? + SLACK;

    // 1. The base image, and its partitions.
    let img_path = work.path().join("image.partial");
    let mut img = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&img_path)
        .with_context(|| format!("creating {}", img_path.display()))?;
    eprintln!("reading {}", job.base.display());
    base::unpack(job.base, &mut img).map_err(|e| match e {
        base::BaseError::BadXz(s) => bad(job.base, format!("not a complete .xz file ({s})")),
        base::BaseError::Io(e) => bad(job.base, format!("cannot read it: {e}")),
    })?;
    let mut sector0 = [0u8; 512];
    img.seek(SeekFrom::Start(0))?;
    img.read_exact(&mut sector0)
        .map_err(|_| bad(job.base, "shorter than one sector: not a disk image"))?;
    let parts = mbr::parse(&sector0).map_err(|e| bad(job.base, e))?;
    let (boot, root) = mbr::boot_and_root(&parts).map_err(|e| bad(job.base, e))?;
    let img_len = img.metadata()?.len();
    if root.end() > img_len || boot.end() > img_len {
        return Err(bad(
            job.base,
            "a partition ends past the end of the image (truncated?)",
        ));
    }
    fat::check(&img_path, boot.offset())
        .map_err(|e| bad(job.base, format!("partition {}: {e}", boot.slot + 1)))?;

    // 2. The root filesystem.
    let root_path = work.path().join("root.ext4");
    let mut root_file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&root_path)?;
    img.seek(SeekFrom::Start(root.offset()))?;
    base::copy_sparse((&img).take(root.len()), &mut root_file, 0)?;
    drop(root_file);
    let sb = ext4::Superblock::read(&root_path)
        .map_err(|e| bad(job.base, format!("partition {}: {e}", root.slot + 1)))?;
    // A Raspberry Pi OS root, and the 64-bit one: the binary is arm64.
    for (path, what) in [
        ("/etc/passwd", "no /etc/passwd: not a Raspberry Pi OS root filesystem"),
        (
            "/usr/lib/aarch64-linux-gnu",
            "no /usr/lib/aarch64-linux-gnu: not a 64-bit (arm64) Raspberry Pi OS; Kestrel's binary needs the 64-bit Lite image",
        ),
    ] {
        if !ext4::exists(&root_path, path)? {
            return Err(bad(job.base, format!("partition {}: {what}", root.slot + 1)));
        }
    }
    if sb.free_inodes < entries.len() as u64 {
        return Err(bad(
            job.base,
            format!(
                "too little room: the root filesystem (partition {}) has {} free inodes, Kestrel's files need {}",
                root.slot + 1,
                sb.free_inodes,
                entries.len()
            ),
        ));
    }
    let mut root_len = root.len();
    if sb.free_bytes() < need {
        // resize2fs needs room for the new groups' metadata too: a quarter more, in MiB.
        let grow = ((need - sb.free_bytes()) * 5 / 4).div_ceil(1 << 20) << 20;
        root_len = (root.len() + grow).div_ceil(4 << 20) * (4 << 20);
        let limit = mbr::growth_limit(&parts, root.slot);
        if root.offset() + root_len > limit {
            return Err(bad(
                job.base,
                format!(
                    "too little room: the root filesystem (partition {}) has {} MiB free, Kestrel's files need {} MiB, and it cannot grow: another partition starts right behind it",
                    root.slot + 1,
                    sb.free_bytes() >> 20,
                    need >> 20
                ),
            ));
        }
        eprintln!(
            "growing the root filesystem from {} to {} MiB",
            root.len() >> 20,
            root_len >> 20
        );
        ext4::grow(&root_path, root_len)?;
    }
    eprintln!("writing Kestrel's files into the root filesystem");
    ext4::apply(&root_path, &entries)?;
    ext4::fsck_check(&root_path).context("the root filesystem after writing")?;
    img.seek(SeekFrom::Start(root.offset()))?;
    base::copy_sparse(fs::File::open(&root_path)?, &mut img, root.offset())?;
    fs::remove_file(&root_path)?;
    if root_len != root.len() {
        let sectors = u32::try_from(root_len / mbr::SECTOR).map_err(|_| {
            bad(
                job.base,
                "the grown root partition is past what an MBR can address",
            )
        })?;
        mbr::set_sectors(&mut sector0, root.slot, sectors);
        img.seek(SeekFrom::Start(0))?;
        img.write_all(&sector0)?;
    }
    img.sync_all()?;
    drop(img);

    // 3. First-boot settings on the boot partition.
    if !job.settings.is_empty() {
        let cmdline = fat::read(&img_path, boot.offset(), "cmdline.txt")?.unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("firstboot") {
            eprintln!(
                "warning: {}'s cmdline.txt does not start raspberrypi-sys-mods' firstboot: custom.toml may not be applied (is it Raspberry Pi OS Bookworm?)",
                job.base.display()
            );
        }
        fat::write(
            &img_path,
            boot.offset(),
            firstboot::CUSTOM_TOML,
            job.settings.custom_toml().as_bytes(),
        )?;
    }

    // 4. Into place, with the block map.
    let bmap_path = job.out.with_extension("bmap");
    let bmap_tmp = work.path().join("image.bmap");
    fs::write(&bmap_tmp, bmap::of_file(&img_path)?)?;
    for p in [&img_path, &bmap_tmp] {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    }
    fs::rename(&img_path, job.out)
        .with_context(|| format!("renaming the image into {}", job.out.display()))?;
    fs::rename(&bmap_tmp, &bmap_path)
        .with_context(|| format!("renaming the block map into {}", bmap_path.display()))?;
    Ok(Written {
        image: job.out.to_path_buf(),
        bmap: bmap_path,
    })
}
