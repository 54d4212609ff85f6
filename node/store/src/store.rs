//! The store API: opening a store directory, putting and reading verified manifests and chunks,
//! pins, protection of in-flight objects, last use, eviction to a budget, listing and removal.
//!
//! All methods take `&self`; the in-memory [`Index`] sits behind a mutex that is never held
//! across data writes or fsyncs, so one `Store` can be shared in an `Arc` by many threads.
//! Several processes may open the same directory (the seeder daemon and `nearcast-seeder add`):
//! an id missing from the index is looked up on disk, and [`Store::rescan`] picks up everything
//! another process added or removed.
//!
//! A chunk is stored by writing its verified bytes at its offset in the object's data file, then
//! appending a record to its `held` log (see `held.rs`); it is read only if the index, loaded
//! from that log, says it is held, and verified again. Chunks that another process appends to
//! an object this one has already indexed are seen after [`Store::rescan`] (published objects
//! appear whole, manifest last, so this only matters for two processes downloading one object).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use nearcast_proto::content::{Body, Manifest, ObjectId};

use crate::atomic::{self, TempFile};
use crate::error::{CorruptPart, Result, StoreError};
use crate::held::{self, Kind};
use crate::index::Index;
use crate::layout::Layout;
use crate::recent::RecentChunks;
use crate::scan::{self, ManifestFile};

/// Last use is written to disk (as the manifest's mtime) at most this often per object.
const PERSIST_USE_EVERY: u64 = 60;

/// One object as listed by [`Store::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub id: ObjectId,
    /// Size of the object's content in bytes.
    pub size: u64,
    pub media_type: String,
    /// Manifest and every chunk are held (inline objects: always).
    pub complete: bool,
    pub pinned: bool,
    /// Bytes the object takes in the store (manifest plus chunks held).
    pub bytes: u64,
    /// Number of chunks (0 for inline objects) and how many are held.
    pub chunks: u32,
    pub chunks_held: u32,
    /// Last use, seconds since the Unix epoch.
    pub last_use: u64,
}

/// Space used by the store, as reported by [`Store::usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Bytes of manifests and chunks held.
    pub bytes: u64,
    pub objects: usize,
    pub budget: Option<u64>,
    /// Part of `bytes` that belongs to pinned objects (never evicted).
    pub pinned_bytes: u64,
}

/// Options of [`Store::open_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most bytes kept before least recently used unpinned objects are evicted (`None`: never).
    pub budget: Option<u64>,
    /// Fsync what fetches store (default `true`): the manifest written by
    /// [`Store::put_manifest`] and its directory, the data file after every chunk stored by
    /// [`Store::put_chunk`], and the `held` log after its record is appended. With `false` (for
    /// a peer's cache, which then never waits for the disk), a manifest or chunk written just
    /// before a power failure may be lost or damaged on disk; it is then found (manifest hash
    /// and data file length on open, chunk hash on read), dropped and fetched again. A process
    /// crash (kill -9) loses nothing either way. Pins and published objects are always synced.
    pub sync_fetched: bool,
    /// Bytes of recently stored or read chunks kept in memory (verified), so that a chunk
    /// uploaded many times is read from disk and hashed once (default 16 MiB; 0: none).
    pub recent_chunk_bytes: usize,
}

/// Default of [`StoreOptions::recent_chunk_bytes`]: 64 chunks of 256 KiB.
pub const RECENT_CHUNK_BYTES: usize = 16 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            budget: None,
            sync_fetched: true,
            recent_chunk_bytes: RECENT_CHUNK_BYTES,
        }
    }
}

/// A content-addressed on-disk store of verified objects. See the crate documentation.
pub struct Store {
    pub(crate) layout: Layout,
    budget: Option<u64>,
    sync_fetched: bool,
    pub(crate) index: Mutex<Index>,
    recent: Mutex<RecentChunks>,
    /// Serialises eviction runs.
    evicting: Mutex<()>,
    /// Objects a rescan could not read: warned about once, not at every rescan.
    unreadable: Mutex<std::collections::BTreeSet<ObjectId>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.layout.root)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

fn unusable(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unusable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Makes sure `dir` is a directory, creating it if missing.
fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(unusable(dir, "it exists and is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            atomic::create_dir_durable(dir).map_err(|e| unusable(dir, e))
        }
        Err(e) => Err(unusable(dir, e)),
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. `budget` is the most bytes the store keeps
    /// before evicting least recently used unpinned objects; `None` never evicts.
    ///
    /// Leftovers of crashed writers are removed, and every manifest is verified against its id.
    pub fn open(dir: &Path, budget: Option<u64>) -> Result<Store> {
        Store::open_with(
            dir,
            StoreOptions {
                budget,
                ..StoreOptions::default()
            },
        )
    }

    /// Like [`Store::open`] with all options.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store> {
        let StoreOptions {
            budget,
            sync_fetched,
            recent_chunk_bytes,
        } = options;
        ensure_dir(dir)?;
        let layout = Layout::new(dir);
        ensure_dir(&layout.objects)?;
        ensure_dir(&layout.tmp)?;
        // Probe that we can write, so a read-only directory fails here with a clear error.
        TempFile::write(&layout.tmp, b"probe")
            .map_err(|e| unusable(dir, format!("not writable: {e}")))?;
        atomic::clean_tmp(&layout.tmp)?;
        let mut index = Index::default();
        scan::scan_all(&layout, &mut index)?;
        tracing::debug!(dir = %dir.display(), objects = index.len(), bytes = index.bytes(),
            "store opened");
        let store = Store {
            layout,
            budget,
            sync_fetched,
            index: Mutex::new(index),
            recent: Mutex::new(RecentChunks::new(recent_chunk_bytes)),
            evicting: Mutex::new(()),
            unreadable: Mutex::default(),
        };
        store.evict_to_budget()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.layout.root
    }

    /// The size budget given to [`Store::open`].
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Index> {
        // The index stays consistent between statements, so a poisoned lock is still usable.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a manifest (validated; its id is computed here) and returns the object's id.
    pub fn put_manifest(&self, m: &Manifest) -> Result<ObjectId> {
        m.validate().map_err(StoreError::InvalidManifest)?;
        let id = m.id();
        let manifest_path = self.layout.manifest_path(&id);
        let known = self.lock().get(&id).is_some();
        if known && scan::exists(&manifest_path) {
            self.lock().touch(&id, scan::now_secs(), u64::MAX);
            return Ok(id);
        }
        let bytes = m.encode();
        let dir = self.layout.object_dir(&id);
        if self.sync_fetched {
            atomic::create_dir_durable(&dir)?;
        } else {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        if m.chunk_count() > 0 {
            // Made durable by the fsync of the object directory when the manifest goes in.
            self.create_chunk_files(&id, m.size)?;
        }
        let temp = TempFile::write_with(&self.layout.tmp, &bytes, self.sync_fetched)?;
        if self.sync_fetched {
            temp.commit(&manifest_path)?;
        } else {
            temp.rename_to(&manifest_path)?;
        }
        let entry = scan::load_entry(&self.layout, &id, m, bytes.len() as u64, scan::now_secs())?;
        {
            let mut idx = self.lock();
            idx.insert(id, entry);
            idx.cache_manifest(id, Arc::new(m.clone()));
        }
        self.auto_evict(Some(&id));
        Ok(id)
    }

    /// The verified manifest of `id`, if held. A manifest file that fails verification is
    /// removed with its object and reported as [`StoreError::Corrupt`].
    pub fn manifest(&self, id: &ObjectId) -> Result<Option<Manifest>> {
        Ok(self.manifest_arc(id)?.map(|m| (*m).clone()))
    }

    /// Like [`Store::manifest`] without copying the manifest.
    pub fn manifest_arc(&self, id: &ObjectId) -> Result<Option<Arc<Manifest>>> {
        if let Some(m) = self.lock().cached_manifest(id) {
            return Ok(Some(m));
        }
        match scan::read_manifest(&self.layout, id)? {
            ManifestFile::Missing => {
                self.lock().remove(id);
                Ok(None)
            }
            ManifestFile::Bad(reason) => {
                tracing::warn!(%id, %reason, "corrupt manifest on disk; removing the object");
                self.remove(id)?;
                Err(StoreError::Corrupt {
                    id: *id,
                    part: CorruptPart::Manifest,
                    path: self.layout.manifest_path(id),
                    reason,
                })
            }
            ManifestFile::Good {
                manifest,
                len,
                mtime,
            } => {
                let known = self.lock().get(id).is_some();
                if !known {
                    // Written by another process: learn what it holds.
                    let entry = scan::load_entry(&self.layout, id, &manifest, len, mtime)?;
                    self.lock().insert(*id, entry);
                }
                let m = Arc::new(manifest);
                self.lock().cache_manifest(*id, m.clone());
                Ok(Some(m))
            }
        }
    }

    /// Whether the manifest of `id` is held.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.indexed(id).unwrap_or(false)
    }

    /// True if `id` is in the index, loading it from disk if another process wrote it.
    fn indexed(&self, id: &ObjectId) -> Result<bool> {
        if self.lock().get(id).is_some() {
            return Ok(true);
        }
        Ok(self.manifest_arc(id)?.is_some())
    }

    /// Verifies chunk `index` of `id` against the stored manifest and stores it (keeping it in
    /// memory too, for uploads). Fails, storing nothing, if the manifest is not held or the
    /// data does not match.
    pub fn put_chunk(&self, id: &ObjectId, index: u32, data: impl Into<Bytes>) -> Result<()> {
        let data: Bytes = data.into();
        let m = self.manifest_arc(id)?.ok_or(StoreError::NotFound(*id))?;
        m.verify_chunk(index, &data)
            .map_err(|source| StoreError::Rejected {
                id: *id,
                index,
                source,
            })?;
        let mut attempt = 0;
        loop {
            match self.write_chunk(id, m.chunk_offset(index), index, &data) {
                Ok(()) => break,
                Err(e) if e.is_not_found() && attempt == 0 => {
                    attempt += 1;
                    // The data file or log is gone: recreate them if the object still exists.
                    if !scan::exists(&self.layout.manifest_path(id)) {
                        self.lock().remove(id);
                        return Err(StoreError::NotFound(*id));
                    }
                    if self.create_chunk_files(id, m.size)? {
                        atomic::fsync_dir(&self.layout.object_dir(id))?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        {
            let mut idx = self.lock();
            idx.set_held(id, index, data.len() as u64, true);
            idx.touch(id, scan::now_secs(), u64::MAX);
        }
        self.recent().insert(*id, index, data);
        self.auto_evict(Some(id));
        Ok(())
    }

    /// Chunk `index` of `id`, verified. `Ok(None)` if the object or chunk is not held (or the
    /// index is out of range). A chunk whose bytes in the data file fail verification (or that
    /// the file is too short to contain) is dropped from the held set, on disk too, and reported
    /// as [`StoreError::Corrupt`]; it can be stored again. Unverified bytes are never returned.
    /// A chunk among the recently verified ones kept in memory is answered from there.
    pub fn chunk(&self, id: &ObjectId, index: u32) -> Result<Option<Bytes>> {
        match self.manifest_arc(id)? {
            Some(m) => self.chunk_of(id, &m, index),
            None => Ok(None),
        }
    }

    /// Creates the data file (sparse, `size` bytes) and the empty `held` log of `id` where
    /// missing, without syncing the object directory; returns whether either was created.
    fn create_chunk_files(&self, id: &ObjectId, size: u64) -> Result<bool> {
        let mut created = false;
        let data = self.layout.data_path(id);
        match OpenOptions::new().write(true).create_new(true).open(&data) {
            Ok(f) => {
                f.set_len(size).map_err(|e| StoreError::io(&data, e))?;
                created = true;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(&data, e)),
        }
        let log = self.layout.held_path(id);
        match OpenOptions::new().write(true).create_new(true).open(&log) {
            Ok(_) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(&log, e)),
        }
        Ok(created)
    }

    /// Writes verified chunk `index` at `offset` of the data file of `id`, then appends its
    /// record to the `held` log (syncing both first if `sync_fetched`).
    fn write_chunk(&self, id: &ObjectId, offset: u64, index: u32, data: &[u8]) -> Result<()> {
        let path = self.layout.data_path(id);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        pio::write_all_at(&file, data, offset)
            .and_then(|()| {
                if self.sync_fetched {
                    file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| StoreError::io(&path, e))?;
        drop(file);
        held::append(
            &self.layout.held_path(id),
            index,
            Kind::Held,
            self.sync_fetched,
        )
    }

    /// Whether the index says chunk `index` of `id` is held.
    fn held_in_index(&self, id: &ObjectId, index: u32) -> bool {
        self.lock()
            .get(id)
            .and_then(|e| e.held.get(index as usize).copied())
            .unwrap_or(false)
    }

    /// Opens the data file of `id` for reading; `None` (and every chunk marked not held) if it
    /// is missing.
    fn open_data(&self, id: &ObjectId, m: &Manifest) -> Result<Option<File>> {
        let path = self.layout.data_path(id);
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(%id, path = %path.display(), "data file missing; no chunk is held");
                let mut idx = self.lock();
                for index in 0..m.chunk_count() {
                    idx.set_held(id, index, m.chunk_len(index) as u64, false);
                }
                Ok(None)
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Reads chunk `index` of `id` from `file` into `buf` (exactly the chunk's length) and
    /// verifies it. A chunk that is cut short or fails verification is dropped from the held
    /// set (a `DROPPED` record is appended to the log) and reported as [`StoreError::Corrupt`].
    fn read_verified(
        &self,
        file: &File,
        id: &ObjectId,
        m: &Manifest,
        index: u32,
        buf: &mut [u8],
    ) -> Result<()> {
        let path = self.layout.data_path(id);
        let reason = match pio::read_exact_at(file, buf, m.chunk_offset(index)) {
            Ok(()) => match m.verify_chunk(index, buf) {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                "the data file ends inside the chunk".to_string()
            }
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        tracing::warn!(%id, index, path = %path.display(), %reason,
            "corrupt chunk on disk; dropping it");
        self.drop_chunk(id, m, index);
        Err(StoreError::Corrupt {
            id: *id,
            part: CorruptPart::Chunk(index),
            path,
            reason,
        })
    }

    /// Removes chunk `index` of `id` from the held set, on disk and in the index.
    fn drop_chunk(&self, id: &ObjectId, m: &Manifest, index: u32) {
        self.lock()
            .set_held(id, index, m.chunk_len(index) as u64, false);
        let log = self.layout.held_path(id);
        if let Err(e) = held::append(&log, index, Kind::Dropped, self.sync_fetched) {
            tracing::warn!(error = %e, "could not record a dropped chunk");
        }
    }

    fn chunk_of(&self, id: &ObjectId, m: &Manifest, index: u32) -> Result<Option<Bytes>> {
        if index >= m.chunk_count() || !self.held_in_index(id, index) {
            return Ok(None);
        }
        if let Some(data) = self.recent().get(id, index) {
            return Ok(Some(data));
        }
        let Some(file) = self.open_data(id, m)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; m.chunk_len(index)];
        self.read_verified(&file, id, m, index, &mut buf)?;
        let data = Bytes::from(buf);
        self.recent().insert(*id, index, data.clone());
        Ok(Some(data))
    }

    fn recent(&self) -> MutexGuard<'_, RecentChunks> {
        // Entries are immutable verified chunks: a poisoned lock is still usable.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether chunk `index` of `id` is held (as far as the index knows; reads verify).
    pub fn has_chunk(&self, id: &ObjectId, index: u32) -> bool {
        self.indexed(id).unwrap_or(false)
            && self
                .lock()
                .get(id)
                .and_then(|e| e.held.get(index as usize).copied())
                .unwrap_or(false)
    }

    /// One flag per chunk of `id` (empty for inline objects).
    pub fn chunks_held(&self, id: &ObjectId) -> Result<Vec<bool>> {
        if !self.indexed(id)? {
            return Err(StoreError::NotFound(*id));
        }
        self.lock()
            .get(id)
            .map(|e| e.held.clone())
            .ok_or(StoreError::NotFound(*id))
    }

    /// Whether the manifest and every chunk of `id` are held (inline objects: the manifest).
    pub fn is_complete(&self, id: &ObjectId) -> bool {
        self.indexed(id).unwrap_or(false) && self.lock().get(id).is_some_and(|e| e.complete())
    }

    /// Whether `id` is pinned.
    pub fn is_pinned(&self, id: &ObjectId) -> bool {
        self.indexed(id).unwrap_or(false) && self.lock().get(id).is_some_and(|e| e.pinned)
    }

    /// Pins `id`: it is never evicted. The manifest must be held.
    pub fn pin(&self, id: &ObjectId) -> Result<()> {
        if !self.indexed(id)? {
            return Err(StoreError::NotFound(*id));
        }
        self.write_pin_marker(id)?;
        self.lock().set_pinned(id, true);
        Ok(())
    }

    pub(crate) fn write_pin_marker(&self, id: &ObjectId) -> Result<()> {
        let marker = format!("{}\n", std::process::id());
        atomic::write_atomic(
            &self.layout.tmp,
            &self.layout.pinned_path(id),
            marker.as_bytes(),
        )
    }

    /// Unpins `id`, making it evictable again.
    pub fn unpin(&self, id: &ObjectId) -> Result<()> {
        atomic::remove_file_durable(&self.layout.pinned_path(id))?;
        self.lock().set_pinned(id, false);
        self.auto_evict(None);
        Ok(())
    }

    /// Protects `id` from eviction while it is being written or served (counted: call
    /// [`Store::unprotect`] once per call to `protect`). Not persisted.
    pub fn protect(&self, id: &ObjectId) {
        self.lock().protect(*id);
    }

    /// Undoes one [`Store::protect`].
    pub fn unprotect(&self, id: &ObjectId) {
        self.lock().unprotect(id);
        self.auto_evict(None);
    }

    /// The whole content of `id`, verified. Meant for small objects; stream large ones with
    /// [`Store::read_range`].
    pub fn read_object(&self, id: &ObjectId) -> Result<Vec<u8>> {
        self.read_range(id, 0, u64::MAX)
    }

    /// Bytes `offset .. offset + len` of `id` (cut at the object's end), read from the data file
    /// with one open; every chunk the range touches is read whole and verified before any of its
    /// bytes are returned. Fails with [`StoreError::MissingChunk`] if a needed chunk is not held
    /// and with [`StoreError::Corrupt`] (dropping the chunk) if one fails verification.
    pub fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Vec<u8>> {
        let m = self.manifest_arc(id)?.ok_or(StoreError::NotFound(*id))?;
        if offset > m.size {
            return Err(StoreError::Range {
                offset,
                size: m.size,
            });
        }
        let end = offset.saturating_add(len).min(m.size);
        let chunks = match &m.body {
            // Inline sizes are at most INLINE_MAX, so these fit in usize.
            Body::Inline(data) => {
                return Ok(data
                    .get(offset as usize..end as usize)
                    .unwrap_or_default()
                    .to_vec());
            }
            Body::Chunks(_) => m.chunk_count(),
        };
        let mut out = Vec::with_capacity((end - offset) as usize);
        if end == offset {
            return Ok(out);
        }
        let cs = m.chunk_size as u64;
        let first = (offset / cs) as u32;
        let last = (((end - 1) / cs) as u32).min(chunks.saturating_sub(1));
        // Every chunk the range touches is read whole and verified before any byte of it is
        // returned; chunks the range covers entirely are read straight into `out`.
        let mut file = None;
        let mut part = Vec::new();
        for index in first..=last {
            if !self.held_in_index(id, index) {
                return Err(StoreError::MissingChunk { id: *id, index });
            }
            let start = m.chunk_offset(index);
            if let Some(data) = self.recent().get(id, index) {
                let from = offset.saturating_sub(start) as usize;
                let to = ((end - start) as usize).min(data.len());
                out.extend_from_slice(data.get(from..to).unwrap_or_default());
                continue;
            }
            if file.is_none() {
                file = self.open_data(id, &m)?;
            }
            let f = file
                .as_ref()
                .ok_or(StoreError::MissingChunk { id: *id, index })?;
            let clen = m.chunk_len(index);
            if start >= offset && start + clen as u64 <= end {
                let at = out.len();
                out.resize(at + clen, 0);
                let filled =
                    self.read_verified(f, id, &m, index, out.get_mut(at..).unwrap_or_default());
                if let Err(e) = filled {
                    out.truncate(at);
                    return Err(e);
                }
            } else {
                part.resize(clen, 0);
                self.read_verified(f, id, &m, index, &mut part)?;
                let from = offset.saturating_sub(start) as usize;
                let to = ((end - start) as usize).min(clen);
                out.extend_from_slice(part.get(from..to).unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// Records a use of `id` at `now_secs` (seconds since the Unix epoch) for eviction order.
    /// Persisted (as the manifest's mtime) at most once a minute per object.
    pub fn touch(&self, id: &ObjectId, now_secs: u64) {
        let persist = self.lock().touch(id, now_secs, PERSIST_USE_EVERY);
        if persist {
            let path = self.layout.manifest_path(id);
            let when = UNIX_EPOCH + Duration::from_secs(now_secs);
            if let Err(e) = File::open(&path).and_then(|f| f.set_modified(when)) {
                tracing::debug!(path = %path.display(), error = %e, "could not record last use");
            }
        }
    }

    /// Evicts least recently used objects that are neither pinned nor protected until the store
    /// fits its budget; returns the evicted ids. Called by the store itself after puts.
    pub fn evict_to_budget(&self) -> Result<Vec<ObjectId>> {
        self.evict_except(None)
    }

    fn auto_evict(&self, keep: Option<&ObjectId>) {
        if let Err(e) = self.evict_except(keep) {
            tracing::warn!(error = %e, "eviction failed");
        }
    }

    fn evict_except(&self, keep: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        let Some(budget) = self.budget else {
            return Ok(Vec::new());
        };
        let _running = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = Vec::new();
        loop {
            let victims = {
                let idx = self.lock();
                if idx.bytes() <= budget {
                    break;
                }
                idx.victims(keep, idx.bytes() - budget)
            };
            let mut progress = false;
            for id in victims {
                // Another process may have pinned it since we indexed it.
                if scan::exists(&self.layout.pinned_path(&id)) {
                    self.lock().set_pinned(&id, true);
                    progress = true;
                    continue;
                }
                let dir = self.layout.object_dir(&id);
                let trash = {
                    let mut idx = self.lock();
                    if idx.bytes() <= budget {
                        break;
                    }
                    if !idx.evictable(&id, keep) {
                        continue;
                    }
                    let trash = atomic::move_to_trash(&self.layout.tmp, &dir)?;
                    idx.remove(&id);
                    trash
                };
                if let Some(trash) = trash {
                    atomic::fsync_parent(&dir)?;
                    atomic::delete_trash(&trash);
                }
                tracing::debug!(%id, "evicted");
                evicted.push(id);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        let bytes = self.lock().bytes();
        if bytes > budget {
            tracing::debug!(
                bytes,
                budget,
                "store over budget with nothing left to evict"
            );
        }
        Ok(evicted)
    }

    /// Every object in the index, sorted by id.
    pub fn list(&self) -> Vec<ObjectInfo> {
        let idx = self.lock();
        let mut v: Vec<ObjectInfo> = idx
            .iter()
            .map(|(id, e)| ObjectInfo {
                id: *id,
                size: e.size,
                media_type: e.media_type.clone(),
                complete: e.complete(),
                pinned: e.pinned,
                bytes: e.bytes(),
                chunks: e.held.len() as u32,
                chunks_held: e.held.iter().filter(|h| **h).count() as u32,
                last_use: e.last_use,
            })
            .collect();
        v.sort_unstable_by_key(|o| o.id);
        v
    }

    /// Space used by the store.
    pub fn usage(&self) -> StoreUsage {
        let idx = self.lock();
        StoreUsage {
            bytes: idx.bytes(),
            objects: idx.len(),
            budget: self.budget,
            pinned_bytes: idx
                .iter()
                .filter(|(_, e)| e.pinned)
                .map(|(_, e)| e.bytes())
                .sum(),
        }
    }

    /// Removes `id` (manifest, chunks and pin). Returns whether it was there.
    pub fn remove(&self, id: &ObjectId) -> Result<bool> {
        let dir = self.layout.object_dir(id);
        let trash = {
            let mut idx = self.lock();
            let trash = atomic::move_to_trash(&self.layout.tmp, &dir)?;
            idx.remove(id);
            trash
        };
        match trash {
            Some(trash) => {
                atomic::fsync_parent(&dir)?;
                atomic::delete_trash(&trash);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Brings the index in line with the disk: objects another process added or removed, pins
    /// and chunks it wrote. Cost: one directory listing per shard, plus reading the manifests
    /// of new objects and the chunk listings of incomplete ones.
    pub fn rescan(&self) -> Result<()> {
        let on_disk = scan::list_object_dirs(&self.layout)?;
        let mut known = self.lock().ids();
        known.sort_unstable();
        for id in &on_disk {
            if known.binary_search(id).is_err() {
                // New to us: loads it if it has a manifest.
                if let Err(e) = self.manifest_arc(id) {
                    let first = self
                        .unreadable
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(*id);
                    if first {
                        tracing::warn!(%id, error = %e, "skipping an unreadable object during rescan");
                    }
                }
                continue;
            }
            if !scan::exists(&self.layout.manifest_path(id)) {
                self.lock().remove(id);
                continue;
            }
            let pinned = scan::exists(&self.layout.pinned_path(id));
            let complete = {
                let mut idx = self.lock();
                idx.set_pinned(id, pinned);
                idx.get(id).is_none_or(|e| e.complete())
            };
            if !complete {
                let Ok(Some(m)) = self.manifest_arc(id) else {
                    continue;
                };
                let len = m.encode().len() as u64;
                let entry = scan::load_entry(&self.layout, id, &m, len, 0)?;
                self.lock().insert(*id, entry);
            }
        }
        for id in known {
            if on_disk.binary_search(&id).is_err() {
                self.lock().remove(&id);
            }
        }
        Ok(())
    }

    /// Path of the data file of `id`, which holds chunk `i` at byte `i * chunk_size` (for
    /// tests and diagnostics; read through [`Store::chunk`]).
    pub fn data_path(&self, id: &ObjectId) -> PathBuf {
        self.layout.data_path(id)
    }

    /// Path of the `held` log of `id` (for tests and diagnostics).
    pub fn held_path(&self, id: &ObjectId) -> PathBuf {
        self.layout.held_path(id)
    }

    /// Path of the manifest of `id` (for tests and diagnostics).
    pub fn manifest_path(&self, id: &ObjectId) -> PathBuf {
        self.layout.manifest_path(id)
    }
}

/// Positioned reads and writes.
pub(crate) mod pio {
    use std::fs::File;
    use std::io;

    #[cfg(unix)]
    pub fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(file, data, offset)
    }

    #[cfg(unix)]
    pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }

    #[cfg(not(unix))]
    pub fn write_all_at(mut file: &File, data: &[u8], offset: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }

    #[cfg(not(unix))]
    pub fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}
