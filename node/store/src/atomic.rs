//! Crash-safe file operations: temporaries, atomic replacement, durable directories, trash.
//!
//! Every file enters the store the same way: it is written in full to a temporary in `DIR/tmp`,
//! fsynced, renamed into place, and the directory holding it is fsynced. A kill at any point
//! leaves either the old file or the new one, never a partial one in place. Removal goes the
//! other way: a directory is renamed into `DIR/tmp` (atomically disappearing from `objects/`)
//! and deleted from there.
//!
//! Temporaries are named `<pid>.<seq>.<kind>`, so that when a store is opened it removes only
//! leftovers of processes that are gone (or that are very old), never the in-flight files of
//! another live process sharing the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};

/// Temporaries older than this are removed on open whoever wrote them.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary name for this process.
pub(crate) fn temp_name(kind: &str) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{}.{seq}.{kind}", std::process::id())
}

/// A fully written, fsynced temporary file; removed on drop unless committed.
pub(crate) struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Writes `data` to a new temporary in `tmp_dir` and fsyncs it.
    pub fn write(tmp_dir: &Path, data: &[u8]) -> Result<TempFile> {
        TempFile::write_with(tmp_dir, data, true)
    }

    /// Creates a new empty temporary in `tmp_dir`, returned with the file open for writing.
    pub fn create(tmp_dir: &Path) -> Result<(TempFile, File)> {
        let path = tmp_dir.join(temp_name("tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        Ok((
            TempFile {
                path,
                committed: false,
            },
            file,
        ))
    }

    /// The temporary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` to a new temporary in `tmp_dir`, fsyncing it if `sync`.
    pub fn write_with(tmp_dir: &Path, data: &[u8], sync: bool) -> Result<TempFile> {
        let path = tmp_dir.join(temp_name("tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        // From here on, dropping `temp` removes the file if anything fails.
        let temp = TempFile {
            path,
            committed: false,
        };
        file.write_all(data)
            .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
            .map_err(|e| StoreError::io(&temp.path, e))?;
        Ok(temp)
    }

    /// Renames the temporary to `target` (replacing it) without syncing the directory; the
    /// caller must fsync `target`'s directory (once for a batch of renames into it).
    pub fn rename_to(mut self, target: &Path) -> Result<()> {
        fs::rename(&self.path, target).map_err(|e| StoreError::io(target, e))?;
        self.committed = true;
        Ok(())
    }

    /// Renames the temporary to `target` and fsyncs the directory holding it.
    pub fn commit(self, target: &Path) -> Result<()> {
        self.rename_to(target)?;
        fsync_parent(target)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Atomically replaces (or creates) `target` with `data`.
pub(crate) fn write_atomic(tmp_dir: &Path, target: &Path, data: &[u8]) -> Result<()> {
    TempFile::write(tmp_dir, data)?.commit(target)
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Fsyncs the directory holding `path`.
pub(crate) fn fsync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => fsync_parent(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// Removes a file and fsyncs its directory; a missing file is not an error.
pub(crate) fn remove_file_durable(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => fsync_parent(path).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Moves `dir` into `tmp_dir` so that it disappears atomically from where it was.
/// Returns the trash path to delete with [`delete_trash`], or `None` if `dir` did not exist.
pub(crate) fn move_to_trash(tmp_dir: &Path, dir: &Path) -> Result<Option<PathBuf>> {
    let trash = tmp_dir.join(temp_name("trash"));
    match fs::rename(dir, &trash) {
        Ok(()) => Ok(Some(trash)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// Deletes a trash directory (best effort: leftovers are cleaned on the next open).
pub(crate) fn delete_trash(trash: &Path) {
    if let Err(e) = fs::remove_dir_all(trash) {
        tracing::warn!(path = %trash.display(), error = %e, "could not delete removed object");
    }
}

/// Whether process `pid` is running, if this platform can tell.
pub(crate) fn pid_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        return Some(Path::new("/proc").join(pid.to_string()).exists());
    }
    None
}

/// Whether a leftover written by `pid` (if known) and last modified at `modified` is stale:
/// its writer is gone, or it is older than [`STALE_AFTER`].
pub(crate) fn is_stale(pid: Option<u32>, modified: Option<SystemTime>) -> bool {
    let old = modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > STALE_AFTER);
    match pid {
        None => true,
        Some(pid) => old || pid_alive(pid) == Some(false),
    }
}

/// The writer pid encoded at the start of a temporary's name.
fn pid_of_temp(name: &str) -> Option<u32> {
    let (pid, rest) = name.split_once('.')?;
    let (seq, _kind) = rest.split_once('.')?;
    seq.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes stale temporaries and trash from `tmp_dir`; returns how many entries were removed.
pub(crate) fn clean_tmp(tmp_dir: &Path) -> Result<usize> {
    let entries = fs::read_dir(tmp_dir).map_err(|e| StoreError::io(tmp_dir, e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(tmp_dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let pid = name.to_str().and_then(pid_of_temp);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => continue, // removed meanwhile
        };
        if !is_stale(pid, meta.modified().ok()) {
            continue;
        }
        let res = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match res {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
    }
    if removed > 0 {
        tracing::info!(removed, dir = %tmp_dir.display(), "removed leftover temporaries");
        fsync_dir(tmp_dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_pid() {
        let name = temp_name("tmp");
        assert_eq!(pid_of_temp(&name), Some(std::process::id()));
        assert_eq!(pid_of_temp("garbage"), None);
        assert_eq!(pid_of_temp("12.x.tmp"), None);
        assert!(!is_stale(Some(std::process::id()), Some(SystemTime::now())));
        assert!(is_stale(None, Some(SystemTime::now())));
    }
}
