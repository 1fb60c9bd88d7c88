//! The image's ext4 root filesystem, changed without mounting it: its superblock read
//! directly (is it ext4, how much room is free), `resize2fs` to grow it, `debugfs -w` to add
//! files, directories and symlinks with their modes and owners, `e2fsck` to check the result.
//!
//! The filesystem is a partition copied out of the image into a file of its own; the caller
//! copies it back. Paths are absolute paths inside the filesystem.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a filesystem cannot be used or changed.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// Not ext4 (no ext2/3/4 magic, or ext2/3 without extents).
    #[error("the root partition is not ext4 ({0})")]
    NotExt4(String),
    /// Reading the filesystem file failed.
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// An e2fsprogs tool could not be run or failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The command.
        tool: String,
        /// Its status and stderr.
        detail: String,
    },
}

/// What the superblock says about size and room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Bytes per block.
    pub block_size: u64,
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free inodes.
    pub free_inodes: u64,
}

const MAGIC: u16 = 0xef53;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

impl Superblock {
    /// Decodes the 1024-byte superblock (found 1024 bytes into the filesystem).
    pub fn parse(sb: &[u8; 1024]) -> Result<Superblock, Ext4Error> {
        let magic = u16::from_le_bytes([sb[56], sb[57]]);
        if magic != MAGIC {
            return Err(Ext4Error::NotExt4(format!(
                "no ext2/3/4 superblock: magic 0x{magic:04x}, not 0xef53"
            )));
        }
        let incompat = le32(sb, 96) as u32;
        if incompat & INCOMPAT_EXTENTS == 0 {
            return Err(Ext4Error::NotExt4(
                "an ext2 or ext3 filesystem: no extents feature".into(),
            ));
        }
        let wide = incompat & INCOMPAT_64BIT != 0;
        let hi = |at: usize| if wide { le32(sb, at) << 32 } else { 0 };
        let log = le32(sb, 24);
        if log > 6 {
            return Err(Ext4Error::NotExt4(format!(
                "block size 1024 << {log} is not plausible"
            )));
        }
        Ok(Superblock {
            block_size: 1024 << log,
            blocks: le32(sb, 4) | hi(0x150),
            free_blocks: le32(sb, 12) | hi(0x158),
            free_inodes: le32(sb, 16),
        })
    }

    /// Reads the superblock of the filesystem in `file`.
    pub fn read(file: &Path) -> Result<Superblock, Ext4Error> {
        let io = |e| Ext4Error::Io(file.to_path_buf(), e);
        let mut f = fs::File::open(file).map_err(io)?;
        let mut sb = [0u8; 1024];
        f.seek(SeekFrom::Start(1024)).map_err(io)?;
        f.read_exact(&mut sb).map_err(io)?;
        Superblock::parse(&sb)
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_blocks * self.block_size
    }
}

/// An e2fsprogs tool: from `PATH`, else from `/usr/sbin` or `/sbin`, where Debian puts them
/// and where a user's `PATH` often does not look.
pub fn tool(name: &str) -> Command {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    let found = ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    match found {
        Some(p) if !on_path => Command::new(p),
        _ => Command::new(name),
    }
}

/// Runs an e2fsprogs tool; `ok` lists the exit codes that mean success.
fn run(cmd: &mut Command, ok: &[i32]) -> Result<std::process::Output, Ext4Error> {
    let tool = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Ext4Error::Tool {
        tool: tool.clone(),
        detail: format!("{e} (apt install e2fsprogs)"),
    })?;
    match out.status.code() {
        Some(c) if ok.contains(&c) => Ok(out),
        _ => Err(Ext4Error::Tool {
            tool,
            detail: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
    }
}

/// Checks and repairs the filesystem (`e2fsck -fy`; 1 = errors corrected is success).
pub fn fsck_fix(file: &Path) -> Result<(), Ext4Error> {
    run(tool("e2fsck").arg("-fy").arg(file), &[0, 1]).map(drop)
}

/// Checks the filesystem without changing it (`e2fsck -fn`): clean or an error.
pub fn fsck_check(file: &Path) -> Result<(), Ext4Error> {
    run(tool("e2fsck").arg("-fn").arg(file), &[0]).map(drop)
}

/// Grows the filesystem in `file` to `bytes` (the file is extended first, then
/// `resize2fs` fills it; `resize2fs` wants a freshly checked filesystem).
pub fn grow(file: &Path, bytes: u64) -> Result<(), Ext4Error> {
    fsck_fix(file)?;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| Ext4Error::Io(file.to_path_buf(), e))?;
    f.set_len(bytes)
        .map_err(|e| Ext4Error::Io(file.to_path_buf(), e))?;
    drop(f);
    run(tool("resize2fs").arg(file), &[0]).map(drop)
}

/// Whether `path` exists in the filesystem (`debugfs -R stat`).
pub fn exists(file: &Path, path: &str) -> Result<bool, Ext4Error> {
    let out = run(
        tool("debugfs")
            .arg("-R")
            .arg(format!("stat \"{path}\""))
            .arg(file),
        &[0],
    )?;
    Ok(!String::from_utf8_lossy(&out.stderr).contains("not found"))
}

/// One change to the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory (made if missing; an existing one is left as it is).
    Dir {
        /// Absolute path inside the filesystem.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file copied from the build machine (replacing one already there).
    File {
        /// Absolute path inside the filesystem.
        path: String,
        /// The file to copy in.
        source: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A symbolic link (replacing one already there).
    Symlink {
        /// Absolute path inside the filesystem.
        path: String,
        /// What it points to.
        target: String,
    },
}

/// Splits `/a/b/c` into (`/a/b`, `c`).
fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => ("/", path),
    }
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// The `debugfs -f` script that makes `entries`; `present` tells which paths exist already.
pub fn script(entries: &[Entry], present: &dyn Fn(&str) -> bool) -> String {
    let mut s = String::new();
    let attrs = |s: &mut String, path: &str, mode: u32, uid: u32, gid: u32| {
        s.push_str(&format!("sif {} mode 0{mode:o}\n", quoted(path)));
        s.push_str(&format!("sif {} uid {uid}\n", quoted(path)));
        s.push_str(&format!("sif {} gid {gid}\n", quoted(path)));
    };
    for entry in entries {
        match entry {
            Entry::Dir { path, mode } => {
                if present(path) {
                    continue;
                }
                let (dir, name) = split(path);
                s.push_str(&format!("cd {}\nmkdir {}\n", quoted(dir), quoted(name)));
                attrs(&mut s, path, 0o040000 | mode, 0, 0);
            }
            Entry::File {
                path,
                source,
                mode,
                uid,
                gid,
            } => {
                let (dir, name) = split(path);
                s.push_str(&format!("cd {}\n", quoted(dir)));
                if present(path) {
                    s.push_str(&format!("rm {}\n", quoted(name)));
                }
                s.push_str(&format!(
                    "write {} {}\n",
                    quoted(&source.to_string_lossy()),
                    quoted(name)
                ));
                attrs(&mut s, path, 0o100000 | mode, *uid, *gid);
            }
            Entry::Symlink { path, target } => {
                let (dir, name) = split(path);
                s.push_str(&format!("cd {}\n", quoted(dir)));
                if present(path) {
                    s.push_str(&format!("rm {}\n", quoted(name)));
                }
                s.push_str(&format!("symlink {} {}\n", quoted(name), quoted(target)));
            }
        }
    }
    s
}

/// Makes `entries` in the filesystem in `file` with one `debugfs -w` run. debugfs reports a
/// failed command on stderr but still exits 0, so any stderr line past its banner is an error.
pub fn apply(file: &Path, entries: &[Entry]) -> Result<(), Ext4Error> {
    let mut paths: Vec<&str> = Vec::new();
    for e in entries {
        match e {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                paths.push(path)
            }
        }
    }
    let mut present = std::collections::HashSet::new();
    for p in paths {
        if exists(file, p)? {
            present.insert(p.to_string());
        }
    }
    // debugfs reads the build machine's files through links of plain names: a source path
    // with spaces or quotes cannot break its command line.
    let dir = tempfile::tempdir().map_err(|e| Ext4Error::Io(std::env::temp_dir(), e))?;
    let mut linked = entries.to_vec();
    for (i, e) in linked.iter_mut().enumerate() {
        if let Entry::File { source, .. } = e {
            let abs =
                fs::canonicalize(&*source).map_err(|err| Ext4Error::Io(source.clone(), err))?;
            let link = dir.path().join(format!("f{i}"));
            std::os::unix::fs::symlink(&abs, &link)
                .map_err(|err| Ext4Error::Io(link.clone(), err))?;
            *source = link;
        }
    }
    let script = script(&linked, &|p| present.contains(p));
    let cmds = dir.path().join("debugfs.cmd");
    fs::write(&cmds, &script).map_err(|e| Ext4Error::Io(cmds.clone(), e))?;
    let out = run(
        tool("debugfs").arg("-w").arg("-f").arg(&cmds).arg(file),
        &[0],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !errors.is_empty() {
        return Err(Ext4Error::Tool {
            tool: format!("debugfs -w -f {}", cmds.display()),
            detail: errors.join("; "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblocks_decode_and_refuse_other_filesystems() {
        let mut sb = [0u8; 1024];
        assert!(matches!(Superblock::parse(&sb), Err(Ext4Error::NotExt4(_))));
        sb[56..58].copy_from_slice(&MAGIC.to_le_bytes());
        let e = Superblock::parse(&sb).unwrap_err();
        assert!(e.to_string().contains("ext2 or ext3"), "{e}");
        sb[96..100].copy_from_slice(&(INCOMPAT_EXTENTS).to_le_bytes());
        sb[4..8].copy_from_slice(&4096u32.to_le_bytes());
        sb[12..16].copy_from_slice(&1000u32.to_le_bytes());
        sb[24..28].copy_from_slice(&2u32.to_le_bytes());
        let s = Superblock::parse(&sb).unwrap();
        assert_eq!((s.block_size, s.blocks, s.free_blocks), (4096, 4096, 1000));
        assert_eq!(s.free_bytes(), 4096 * 1000);
    }

    #[test]
    fn scripts_make_what_is_missing_and_replace_what_is_there() {
        let entries = [
            Entry::Dir {
                path: "/etc/kestrel".into(),
                mode: 0o755,
            },
            Entry::File {
                path: "/etc/kestrel/kestrel.toml".into(),
                source: "/tmp/k.toml".into(),
                mode: 0o640,
                uid: 0,
                gid: 0,
            },
            Entry::Symlink {
                path: "/etc/x/k.service".into(),
                target: "/usr/lib/k.service".into(),
            },
        ];
        let s = script(&entries, &|p| p == "/etc/x/k.service");
        assert!(s.starts_with("cd \"/etc\"\nmkdir \"kestrel\"\nsif \"/etc/kestrel\" mode 040755\n"));
        assert!(s.contains("write \"/tmp/k.toml\" \"kestrel.toml\"\nsif \"/etc/kestrel/kestrel.toml\" mode 0100640\n"));
        assert!(s.contains(
            "cd \"/etc/x\"\nrm \"k.service\"\nsymlink \"k.service\" \"/usr/lib/k.service\"\n"
        ));
        assert_eq!(split("/usr"), ("/", "usr"));
    }
}
