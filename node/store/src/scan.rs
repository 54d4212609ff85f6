//! Reading the store's state back from disk: verified manifests, the chunks held and pin of one
//! object, a full scan on open, and the removal of what a crash left half-made.
//!
//! Nothing is trusted: a manifest is checked against its id every time it is read from disk, the
//! `held` log is read within bounds set by the manifest, and a chunk the data file is too short
//! to contain does not count as held. Chunk contents are checked when they are read (see
//! `store.rs`), not here, to keep opening a large store cheap.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use nearcast_proto::content::{MAX_MANIFEST_BYTES, Manifest, ObjectId};

use crate::atomic;
use crate::error::{Result, StoreError};
use crate::held;
use crate::index::{Entry, Index};
use crate::layout::{self, Layout};

/// Seconds since the Unix epoch of a time (0 before the epoch).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds since the Unix epoch now.
pub(crate) fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

/// What reading a manifest file found.
pub(crate) enum ManifestFile {
    Missing,
    /// The file does not decode to a manifest with this id.
    Bad(String),
    Good {
        manifest: Manifest,
        len: u64,
        mtime: u64,
    },
}

/// Reads and verifies the manifest of `id`.
pub(crate) fn read_manifest(layout: &Layout, id: &ObjectId) -> Result<ManifestFile> {
    let path = layout.manifest_path(id);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ManifestFile::Missing),
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    let meta = file.metadata().map_err(|e| StoreError::io(&path, e))?;
    if meta.len() > MAX_MANIFEST_BYTES as u64 {
        return Ok(ManifestFile::Bad(format!(
            "{} bytes is too large",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io(&path, e))?;
    match Manifest::decode_for(id, &bytes) {
        Ok(manifest) => Ok(ManifestFile::Good {
            manifest,
            len: bytes.len() as u64,
            mtime: meta.modified().map_or(0, unix_secs),
        }),
        Err(e) => Ok(ManifestFile::Bad(e.to_string())),
    }
}

/// Builds the index entry of an object whose manifest is `m`: the chunks its `held` log names
/// that the data file is long enough to contain, and whether it is pinned.
pub(crate) fn load_entry(
    layout: &Layout,
    id: &ObjectId,
    m: &Manifest,
    manifest_len: u64,
    last_use: u64,
) -> Result<Entry> {
    let pinned = layout.pinned_path(id).exists();
    let mut entry = Entry::new(m, manifest_len, pinned, last_use);
    if m.chunk_count() == 0 {
        return Ok(entry);
    }
    // The log first, then the data file's length: a record is appended only after its bytes
    // were written, so every record read here has its bytes within the length read next
    // unless the file was cut short since.
    let log = layout.held_path(id);
    let replay = held::read(&log, m.chunk_count())?;
    if replay.skipped > 0 {
        tracing::warn!(%id, bytes = replay.skipped, "skipped bytes of the held log that are not records");
    }
    let data = layout.data_path(id);
    let data_len = match fs::metadata(&data) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(StoreError::io(&data, e)),
    };
    let mut cut = 0u32;
    for (index, _) in replay.held.iter().enumerate().filter(|(_, h)| **h) {
        let index = index as u32;
        let len = m.chunk_len(index) as u64;
        if m.chunk_offset(index) + len <= data_len {
            entry.set_held(index, len, true);
        } else {
            cut += 1;
        }
    }
    if cut > 0 {
        tracing::warn!(%id, chunks = cut, data_len,
            "data file too short for chunks its log names; they count as not held");
    }
    if replay.too_long {
        tracing::warn!(%id, "held log over its bound; rewriting it");
        held::rewrite(&layout.tmp, &log, &entry.held)?;
    }
    Ok(entry)
}

/// Moves the per-chunk files of the old layout (`<id>/chunks/<i>`), if any, into the object's
/// data file and `held` log, then removes them. Only chunks that verify against the manifest are
/// kept. Safe to repeat: the files are removed only after the data file is synced and the log
/// rewritten, so a crash in between redoes the move at the next open.
fn migrate_old_chunks(layout: &Layout, id: &ObjectId, m: &Manifest) -> Result<()> {
    let old = layout.old_chunks_dir(id);
    if !old.is_dir() {
        return Ok(());
    }
    let chunks = m.chunk_count();
    let log = layout.held_path(id);
    let mut held = held::read(&log, chunks)?.held;
    let data_path = layout.data_path(id);
    let mut moved = 0u32;
    let mut dropped = 0u32;
    if chunks > 0 {
        let data = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&data_path)
            .map_err(|e| StoreError::io(&data_path, e))?;
        let len = data
            .metadata()
            .map_err(|e| StoreError::io(&data_path, e))?
            .len();
        if len < m.size {
            data.set_len(m.size)
                .map_err(|e| StoreError::io(&data_path, e))?;
        }
        for index in 0..chunks {
            let path = old.join(index.to_string());
            let expected = m.chunk_len(index) as u64;
            let bytes = match fs::File::open(&path) {
                Ok(f) => {
                    let mut buf = Vec::with_capacity(expected as usize);
                    f.take(expected + 1)
                        .read_to_end(&mut buf)
                        .map_err(|e| StoreError::io(&path, e))?;
                    buf
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, e)),
            };
            if m.verify_chunk(index, &bytes).is_err() {
                dropped += 1;
                continue;
            }
            crate::store::pio::write_all_at(&data, &bytes, m.chunk_offset(index))
                .map_err(|e| StoreError::io(&data_path, e))?;
            if let Some(h) = held.get_mut(index as usize) {
                *h = true;
            }
            moved += 1;
        }
        data.sync_all().map_err(|e| StoreError::io(&data_path, e))?;
        held::rewrite(&layout.tmp, &log, &held)?;
    }
    tracing::info!(%id, moved, dropped, path = %old.display(),
        "moved chunk files of the old store layout into the data file");
    match fs::remove_dir_all(&old) {
        Ok(()) => atomic::fsync_parent(&old),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&old, e)),
    }
}

/// Removes a whole object directory (manifest, chunks and marker).
pub(crate) fn remove_object_dir(layout: &Layout, id: &ObjectId) -> Result<bool> {
    match atomic::move_to_trash(&layout.tmp, &layout.object_dir(id))? {
        Some(trash) => {
            atomic::fsync_dir(&layout.tmp)?;
            atomic::delete_trash(&trash);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Whether an object directory without a manifest is a leftover to remove: its pin marker names
/// a writer that is gone, or (without a marker) it has not changed for a while.
fn orphan_is_stale(layout: &Layout, id: &ObjectId) -> bool {
    let dir = layout.object_dir(id);
    let newest = [
        dir.clone(),
        layout.data_path(id),
        layout.held_path(id),
        layout.pinned_path(id),
    ]
    .iter()
    .filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
    .max();
    let writer = fs::read_to_string(layout.pinned_path(id))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    match writer {
        Some(pid) => atomic::is_stale(Some(pid), newest),
        None => {
            let age = newest.and_then(|t| SystemTime::now().duration_since(t).ok());
            age.is_none_or(|a| a > ORPHAN_GRACE)
        }
    }
}

/// How long a manifest-less object directory without a writer pid is left alone (a process
/// between creating the directory and renaming the manifest into it).
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Scans every object directory into `index`: verified manifests, held chunks, pins. Corrupt
/// manifests and stale half-written objects are removed; chunk files of the old layout are moved
/// into the data file. An object that cannot be read (permissions, I/O errors) is logged and
/// left out, untouched on disk: one bad object does not keep the store from opening.
pub(crate) fn scan_all(layout: &Layout, index: &mut Index) -> Result<()> {
    for id in list_object_dirs(layout)? {
        if let Err(e) = scan_one(layout, index, &id) {
            tracing::error!(%id, error = %e, "cannot read a stored object; leaving it out");
        }
    }
    Ok(())
}

fn scan_one(layout: &Layout, index: &mut Index, id: &ObjectId) -> Result<()> {
    match read_manifest(layout, id)? {
        ManifestFile::Good {
            manifest,
            len,
            mtime,
        } => {
            migrate_old_chunks(layout, id, &manifest)?;
            let entry = load_entry(layout, id, &manifest, len, mtime)?;
            index.insert(*id, entry);
        }
        ManifestFile::Bad(reason) => {
            tracing::warn!(%id, %reason, "removing object with a corrupt manifest");
            remove_object_dir(layout, id)?;
        }
        ManifestFile::Missing => {
            if orphan_is_stale(layout, id) {
                tracing::info!(%id, "removing half-written object left by a crash");
                remove_object_dir(layout, id)?;
            }
        }
    }
    Ok(())
}

/// Ids of all object directories (with or without a manifest).
pub(crate) fn list_object_dirs(layout: &Layout) -> Result<Vec<ObjectId>> {
    let mut ids = Vec::new();
    let shards = fs::read_dir(&layout.objects).map_err(|e| StoreError::io(&layout.objects, e))?;
    for shard in shards {
        let shard = shard.map_err(|e| StoreError::io(&layout.objects, e))?;
        let shard_name = shard.file_name();
        let Some(shard_name) = shard_name.to_str() else {
            continue;
        };
        let shard_path = shard.path();
        let objects = match fs::read_dir(&shard_path) {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // A stray file among the shards: not ours, leave it.
            Err(e) if shard_path.is_file() => {
                tracing::debug!(path = %shard_path.display(), error = %e, "ignoring stray file");
                continue;
            }
            Err(e) => return Err(StoreError::io(&shard_path, e)),
        };
        for obj in objects {
            let obj = obj.map_err(|e| StoreError::io(&shard_path, e))?;
            if let Some(id) = obj
                .file_name()
                .to_str()
                .and_then(|n| layout::parse_object_dir(shard_name, n))
            {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// True if `path` exists (errors count as absent).
pub(crate) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}
