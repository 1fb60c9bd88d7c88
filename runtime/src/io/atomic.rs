//! Atomic file output: write to a temporary file next to the destination, then rename it
//! into place. A failure at any point (including a panic or a failed verification between
//! write and commit) leaves the destination untouched and no temporary file behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::RuntimeError;

/// A file being written; it appears at its destination only on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Starts writing `dest`: creates a hidden temporary file in the same directory (so the
    /// final rename stays on one file system).
    pub fn create(dest: &Path) -> Result<AtomicFile, RuntimeError> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|source| RuntimeError::Io {
                path: dest.to_path_buf(),
                source,
            })?;
        Ok(AtomicFile {
            temp,
            dest: dest.to_path_buf(),
        })
    }

    /// The temporary file, to write to.
    pub fn file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Where the temporary file is (to read back what was written before committing).
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes to disk and renames the temporary file to its destination, readable by all
    /// (temporary files are created owner-only).
    pub fn commit(self) -> Result<(), RuntimeError> {
        let io = |source| RuntimeError::Io {
            path: self.dest.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let perms = std::fs::Permissions::from_mode(0o644);
            self.temp.as_file().set_permissions(perms).map_err(io)?;
        }
        self.temp.as_file().sync_all().map_err(io)?;
        self.temp
            .persist(&self.dest)
            .map_err(|e| RuntimeError::Io {
                path: self.dest.clone(),
                source: e.error,
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commit_moves_file_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.file_mut().write_all(b"hello").unwrap();
        assert!(!dest.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn drop_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.file_mut().write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_directory_names_the_file() {
        let err = AtomicFile::create(Path::new("/nonexistent-kestrel-dir/out.bin")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-kestrel-dir/out.bin"),
            "{err}"
        );
    }
}
