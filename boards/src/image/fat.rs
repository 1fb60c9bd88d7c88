//! The image's FAT boot partition, read and written in place with mtools
//! (`mcopy -i IMAGE@@OFFSET`): no mounting, no loop device.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

/// Why the boot partition cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// The partition does not hold a FAT filesystem.
    #[error("the boot partition holds no FAT filesystem ({0})")]
    NotFat(String),
    /// Reading the image failed.
    #[error("reading the boot partition: {0}")]
    Io(#[from] std::io::Error),
    /// An mtools command could not run or failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The command.
        tool: String,
        /// Its status and stderr.
        detail: String,
    },
}

/// Checks the boot sector at `offset` of `image`: the `55 AA` signature and a FAT
/// filesystem type (`FAT12`/`FAT16` at byte 54, `FAT32` at byte 82).
pub fn check(image: &Path, offset: u64) -> Result<(), FatError> {
    let mut f = fs::File::open(image)?;
    let mut sector = [0u8; 512];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut sector)?;
    if sector[510..512] != [0x55, 0xaa] {
        return Err(FatError::NotFat("no boot sector signature".into()));
    }
    if &sector[54..57] != b"FAT" && &sector[82..87] != b"FAT32" {
        return Err(FatError::NotFat("no FAT type in the boot sector".into()));
    }
    Ok(())
}

/// mtools' `-i` argument for the partition at `offset`.
fn target(image: &Path, offset: u64) -> String {
    format!("{}@@{offset}", image.display())
}

fn mtools(cmd: &mut Command) -> Result<std::process::Output, FatError> {
    // Images made by other tools often have a geometry mtools would refuse.
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    let tool = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| FatError::Tool {
        tool: tool.clone(),
        detail: format!("{e} (apt install mtools)"),
    })?;
    if !out.status.success() {
        return Err(FatError::Tool {
            tool,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out)
}

/// The file `name` of the root folder, or `None` when it is absent.
pub fn read(image: &Path, offset: u64, name: &str) -> Result<Option<Vec<u8>>, FatError> {
    let mut cmd = Command::new("mtype");
    cmd.arg("-i")
        .arg(target(image, offset))
        .arg(format!("::{name}"));
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    let out = cmd.output().map_err(|e| FatError::Tool {
        tool: format!("{cmd:?}"),
        detail: format!("{e} (apt install mtools)"),
    })?;
    Ok(out.status.success().then_some(out.stdout))
}

/// Writes `data` as `name` in the root folder, replacing a file of that name.
pub fn write(image: &Path, offset: u64, name: &str, data: &[u8]) -> Result<(), FatError> {
    let dir = tempfile::tempdir()?;
    let local = dir.path().join(name);
    fs::write(&local, data)?;
    mtools(
        Command::new("mcopy")
            .args(["-o", "-i"])
            .arg(target(image, offset))
            .arg(&local)
            .arg(format!("::{name}")),
    )
    .map(drop)
}
