//! The instance store on disk: temp files, the durable rename into place,
//! quarantine for conflicting content, and the free-space floor.
//!
//! Layout under the storage root:
//! - `<study>/<series>/<sop>.dcm` — stored instances; every path part is a
//!   [`Uid`] that passed the grammar check, so no peer string reaches a path.
//! - `.tmp/` — files being received; never catalogued, emptied at start.
//! - `quarantine/<sop>/<sha256>.dcm` — content that conflicted with a stored
//!   instance of the same SOP Instance UID.
//! - `rejected/` — data sets that failed verification, kept for diagnosis.
//!
//! This module knows nothing of DICOM beyond UIDs and nothing of the network
//! or the catalog. Every function here blocks: call it from a blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::uid::Uid;

const TMP_DIR: &str = ".tmp";
const QUARANTINE_DIR: &str = "quarantine";
const REJECTED_DIR: &str = "rejected";

/// The storage root and how durably to write to it.
#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    fsync: bool,
    min_free_bytes: u64,
    counter: AtomicU64,
}

/// A file being received, not yet visible as an instance.
#[derive(Debug)]
pub struct TempFile {
    pub path: PathBuf,
    pub file: File,
}

impl Storage {
    /// Opens (creating if needed) the storage root and clears leftover temp
    /// files from a previous run: they were never answered with success.
    pub fn open(root: &Path, fsync: bool, min_free_bytes: u64) -> io::Result<Storage> {
        for dir in [TMP_DIR, QUARANTINE_DIR, REJECTED_DIR] {
            fs::create_dir_all(root.join(dir))?;
        }
        let mut removed = 0usize;
        for entry in fs::read_dir(root.join(TMP_DIR))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::warn!(removed, "removed partial files left by an interrupted run");
        }
        Ok(Storage {
            root: root.to_path_buf(),
            fsync,
            min_free_bytes,
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// The path of a stored instance, relative to the root.
    pub fn relative_path(study: &Uid, series: &Uid, sop: &Uid) -> PathBuf {
        Path::new(study.as_str())
            .join(series.as_str())
            .join(format!("{}.dcm", sop.as_str()))
    }

    /// Creates a new temp file on the same file system as the instances, so
    /// that the final rename is atomic.
    pub fn create_temp(&self) -> io::Result<TempFile> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let path = self
            .root
            .join(TMP_DIR)
            .join(format!("{nanos}-{}-{n}.part", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile { path, file })
    }

    /// Starts writing a received range of the temp file to disk without
    /// waiting for it (fsync on only), so that most of the data is already
    /// on disk when the final fsync comes: the disk works while the network
    /// is still delivering the rest of the instance.
    pub fn start_writeback(&self, temp: &TempFile, offset: u64, len: u64) {
        if !self.fsync || len == 0 {
            return;
        }
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the fd is open for the lifetime of `temp`; the call only
        // schedules writeback of the given range. Its failure is harmless:
        // the final fsync still makes the file durable.
        unsafe {
            libc::sync_file_range(
                temp.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    /// Makes the temp file's content durable (when fsync is on).
    pub fn sync_temp(&self, temp: &TempFile) -> io::Result<()> {
        if self.fsync {
            temp.file.sync_data()?;
        }
        Ok(())
    }

    /// Moves a synced temp file to its instance path and makes the rename
    /// durable: every directory created on the way and the final directory
    /// are fsynced. Returns the path relative to the root.
    pub fn commit(
        &self,
        temp: TempFile,
        study: &Uid,
        series: &Uid,
        sop: &Uid,
    ) -> io::Result<PathBuf> {
        self.place(temp, Self::relative_path(study, series, sop))
    }

    /// Keeps content that conflicts with a stored instance aside, named by
    /// its hash so that repeated sends of the same content keep one copy.
    pub fn quarantine(&self, temp: TempFile, sop: &Uid, sha256_hex: &str) -> io::Result<PathBuf> {
        let rel = Path::new(QUARANTINE_DIR)
            .join(sop.as_str())
            .join(format!("{sha256_hex}.dcm"));
        self.place(temp, rel)
    }

    /// Renames a synced temp file to `rel` under the root and makes the
    /// rename durable; if that fails, the file is taken back out, since what
    /// is not durable is not stored.
    fn place(&self, temp: TempFile, rel: PathBuf) -> io::Result<PathBuf> {
        let dest = self.root.join(&rel);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        self.ensure_dir(&dir)?;
        drop(temp.file);
        fs::rename(&temp.path, &dest)?;
        if let Err(e) = self.sync_dir(&dir) {
            let _ = fs::remove_file(&dest);
            return Err(e);
        }
        Ok(rel)
    }

    /// Keeps a data set that failed verification for diagnosis. Best effort:
    /// the sender was told it failed, so it still holds the original.
    pub fn keep_rejected(&self, temp: TempFile, name: &str) -> io::Result<PathBuf> {
        let rel = Path::new(REJECTED_DIR).join(format!("{name}.dcm"));
        if self
            .free_bytes()
            .map(|f| f < self.min_free_bytes.saturating_mul(2))
            .unwrap_or(true)
        {
            drop(temp.file);
            fs::remove_file(&temp.path)?;
            return Ok(rel);
        }
        drop(temp.file);
        fs::rename(&temp.path, self.root.join(&rel))?;
        Ok(rel)
    }

    /// Deletes a temp file that will not be kept.
    pub fn discard(&self, temp: TempFile) {
        drop(temp.file);
        if let Err(e) = fs::remove_file(&temp.path) {
            tracing::warn!(path = %temp.path.display(), error = %e, "could not remove a temp file");
        }
    }

    /// Bytes available to this process on the storage file system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        free_bytes(&self.root)
    }

    /// True when the free space is at or above the configured floor.
    pub fn has_room(&self) -> bool {
        match self.free_bytes() {
            Ok(free) => free >= self.min_free_bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot read free space on the storage file system");
                false
            }
        }
    }

    /// Creates `dir` and any missing parents below the root, fsyncing the
    /// parent of each directory it creates so the new entries survive a
    /// power loss.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = dir;
        while !cur.is_dir() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        for d in missing.iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => {}
                // Another association created it first; its creator syncs it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            if let Some(parent) = d.parent() {
                self.sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.fsync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Bytes available to an unprivileged user on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    capacity(path).map(|(free, _)| free)
}

/// Writes and removes a small file in the temp directory under `root`, with
/// fsync: proof that the storage accepts writes right now (for `/readyz`).
pub fn probe_writable(root: &Path) -> io::Result<()> {
    let path = root
        .join(TMP_DIR)
        .join(format!(".probe-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&path)?;
        io::Write::write_all(&mut f, b"studywatch")?;
        f.sync_all()
    })();
    let removed = fs::remove_file(&path);
    result.and(removed)
}

/// `(available to an unprivileged user, total size)` in bytes of the file
/// system holding `path`.
pub fn capacity(path: &Path) -> io::Result<(u64, u64)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` points to
    // writable memory of the right size; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_moves_the_temp_file_under_uid_paths() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), true, 0).unwrap();
        let mut temp = storage.create_temp().unwrap();
        io::Write::write_all(&mut temp.file, b"hello").unwrap();
        storage.sync_temp(&temp).unwrap();
        let (a, b, c) = (
            Uid::parse("1.2").unwrap(),
            Uid::parse("1.2.3").unwrap(),
            Uid::parse("1.2.3.4").unwrap(),
        );
        let rel = storage.commit(temp, &a, &b, &c).unwrap();
        assert_eq!(rel, Path::new("1.2/1.2.3/1.2.3.4.dcm"));
        assert_eq!(fs::read(dir.path().join(rel)).unwrap(), b"hello");
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn open_clears_leftover_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), false, 0).unwrap();
        let temp = storage.create_temp().unwrap();
        drop(temp);
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 1);
        Storage::open(dir.path(), false, 0).unwrap();
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn free_space_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let storage = Storage::open(dir.path(), false, u64::MAX).unwrap();
        assert!(!storage.has_room());
    }
}
