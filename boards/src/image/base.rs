//! Reading the base image: a raw `.img` or an `.xz` of one (decompressed by `xz -dc`, whose
//! exit status tells a truncated or corrupt file from a complete one), copied sparsely (blocks
//! of zeros are skipped, not written) into the file the new image is built in.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Why the base image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// An `.xz` that does not decompress to its end.
    #[error("not a complete .xz file ({0})")]
    BadXz(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
const BLOCK: usize = 4096;

/// Whether `path` starts with the xz magic.
pub fn is_xz(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 6];
    let mut f = fs::File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n == head.len() && head == XZ_MAGIC)
}

/// Copies `reader` into `dest` from `at`, leaving holes where a block is zero in both.
/// A block that is zero in `reader` but not in `dest` is written, so a copy over existing
/// data is exact. Returns the bytes copied.
pub fn copy_sparse(mut reader: impl Read, dest: &mut fs::File, at: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; BLOCK];
    let mut old = vec![0u8; BLOCK];
    let mut done = 0u64;
    let dest_len = dest.metadata()?.len();
    loop {
        let mut n = 0;
        while n < BLOCK {
            match reader.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        let pos = at + done;
        let zero = buf[..n].iter().all(|&b| b == 0);
        let mut write = !zero;
        if zero && pos < dest_len {
            dest.seek(SeekFrom::Start(pos))?;
            let m = dest.read(&mut old[..n])?;
            write = old[..m].iter().any(|&b| b != 0);
        }
        if write {
            dest.seek(SeekFrom::Start(pos))?;
            dest.write_all(&buf[..n])?;
        }
        done += n as u64;
        if n < BLOCK {
            break;
        }
    }
    if dest.metadata()?.len() < at + done {
        dest.set_len(at + done)?;
    }
    Ok(done)
}

/// Writes the base image (raw or `.xz`) into `dest`; returns its size.
pub fn unpack(base: &Path, dest: &mut fs::File) -> Result<u64, BaseError> {
    if !is_xz(base)? {
        return Ok(copy_sparse(fs::File::open(base)?, dest, 0)?);
    }
    let mut child = Command::new("xz")
        .arg("-dc")
        .arg(base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BaseError::BadXz(format!("running xz: {e} (apt install xz-utils)")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no xz stdout"))?;
    let copied = copy_sparse(stdout, dest, 0);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(BaseError::BadXz(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(copied?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copies_are_exact_over_old_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("x"))
            .unwrap();
        f.write_all(&[7u8; 3 * BLOCK]).unwrap();
        let mut src = vec![0u8; 2 * BLOCK + 10];
        src[BLOCK] = 1;
        assert_eq!(
            copy_sparse(src.as_slice(), &mut f, 512).unwrap(),
            src.len() as u64
        );
        let mut all = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(&all[..512], &[7u8; 512][..]);
        assert_eq!(&all[512..512 + src.len()], src.as_slice());
        assert_eq!(all.len(), 3 * BLOCK);
    }
}
