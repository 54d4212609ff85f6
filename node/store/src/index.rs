//! In-memory index of the objects on disk: what each holds, its size, pin and last use, the
//! set of protected (in-flight) objects, a small cache of verified manifests, and the choice of
//! eviction victims (least recently used first).
//!
//! The index is a cache of the directory: it is rebuilt from disk on open and refreshed when an
//! object another process wrote is looked up, so it never holds anything the disk cannot confirm.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use nearcast_proto::content::{Manifest, ObjectId};

/// How many verified manifests are kept in memory.
const MANIFEST_CACHE: usize = 64;

/// What the store knows about one object.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub size: u64,
    pub media_type: String,
    pub manifest_len: u64,
    /// One flag per chunk (empty for inline objects).
    pub held: Vec<bool>,
    pub held_bytes: u64,
    pub pinned: bool,
    /// Last use, seconds since the Unix epoch.
    pub last_use: u64,
    /// The last use last written to disk (as the manifest's mtime).
    pub persisted_use: u64,
}

impl Entry {
    pub fn new(m: &Manifest, manifest_len: u64, pinned: bool, last_use: u64) -> Entry {
        Entry {
            size: m.size,
            media_type: m.media_type.clone(),
            manifest_len,
            held: vec![false; m.chunk_count() as usize],
            held_bytes: 0,
            pinned,
            last_use,
            persisted_use: last_use,
        }
    }

    /// Bytes this object takes in the store.
    pub fn bytes(&self) -> u64 {
        self.manifest_len + self.held_bytes
    }

    /// All chunks held (always true for inline objects).
    pub fn complete(&self) -> bool {
        self.held.iter().all(|h| *h)
    }

    /// Records whether chunk `index` (of `len` bytes) is held; returns the change in bytes.
    pub fn set_held(&mut self, index: u32, len: u64, held: bool) -> i64 {
        let Some(flag) = self.held.get_mut(index as usize) else {
            return 0;
        };
        if *flag == held {
            return 0;
        }
        *flag = held;
        if held {
            self.held_bytes += len;
            len as i64
        } else {
            self.held_bytes = self.held_bytes.saturating_sub(len);
            -(len as i64)
        }
    }
}

/// The index proper; lives behind the store's mutex.
#[derive(Default)]
pub(crate) struct Index {
    entries: HashMap<ObjectId, Entry>,
    /// (last use, id) of every entry: eviction order.
    lru: BTreeSet<(u64, ObjectId)>,
    protected: HashMap<ObjectId, u32>,
    cache: Vec<(ObjectId, Arc<Manifest>)>,
    bytes: u64,
}

impl Index {
    pub fn get(&self, id: &ObjectId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, &Entry)> {
        self.entries.iter()
    }

    pub fn ids(&self) -> Vec<ObjectId> {
        self.entries.keys().copied().collect()
    }

    /// Inserts or replaces an entry, keeping the later last use of the two.
    pub fn insert(&mut self, id: ObjectId, mut entry: Entry) {
        if let Some(old) = self.entries.remove(&id) {
            self.bytes = self.bytes.saturating_sub(old.bytes());
            self.lru.remove(&(old.last_use, id));
            entry.last_use = entry.last_use.max(old.last_use);
            entry.persisted_use = entry.persisted_use.max(old.persisted_use);
        }
        self.bytes += entry.bytes();
        self.lru.insert((entry.last_use, id));
        self.entries.insert(id, entry);
    }

    pub fn remove(&mut self, id: &ObjectId) -> Option<Entry> {
        self.cache.retain(|(c, _)| c != id);
        let old = self.entries.remove(id)?;
        self.lru.remove(&(old.last_use, *id));
        self.bytes = self.bytes.saturating_sub(old.bytes());
        Some(old)
    }

    /// Records whether a chunk is held.
    pub fn set_held(&mut self, id: &ObjectId, index: u32, len: u64, held: bool) {
        if let Some(e) = self.entries.get_mut(id) {
            let delta = e.set_held(index, len, held);
            self.bytes = self.bytes.saturating_add_signed(delta);
        }
    }

    pub fn set_pinned(&mut self, id: &ObjectId, pinned: bool) {
        if let Some(e) = self.entries.get_mut(id) {
            e.pinned = pinned;
        }
    }

    /// Records a use at `now`; returns true if the persisted last use is over `persist_every`
    /// seconds behind (and marks it persisted).
    pub fn touch(&mut self, id: &ObjectId, now: u64, persist_every: u64) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        if now > e.last_use {
            self.lru.remove(&(e.last_use, *id));
            e.last_use = now;
            self.lru.insert((now, *id));
        }
        if e.last_use >= e.persisted_use.saturating_add(persist_every) {
            e.persisted_use = e.last_use;
            return true;
        }
        false
    }

    pub fn protect(&mut self, id: ObjectId) {
        *self.protected.entry(id).or_insert(0) += 1;
    }

    pub fn unprotect(&mut self, id: &ObjectId) {
        if let Some(n) = self.protected.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.protected.remove(id);
            }
        }
    }

    pub fn is_protected(&self, id: &ObjectId) -> bool {
        self.protected.contains_key(id)
    }

    /// Whether `id` may be evicted now.
    pub fn evictable(&self, id: &ObjectId, keep: Option<&ObjectId>) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| !e.pinned && !self.is_protected(id) && Some(id) != keep)
    }

    /// The least recently used evictable objects (ties broken by id) whose bytes add up to at
    /// least `need`, or all evictable objects if they do not.
    pub fn victims(&self, keep: Option<&ObjectId>, need: u64) -> Vec<ObjectId> {
        let mut freed = 0;
        let mut out = Vec::new();
        for (_, id) in &self.lru {
            if freed >= need {
                break;
            }
            if let (true, Some(e)) = (self.evictable(id, keep), self.entries.get(id)) {
                freed += e.bytes();
                out.push(*id);
            }
        }
        out
    }

    /// A cached verified manifest (moved to the front of the cache).
    pub fn cached_manifest(&mut self, id: &ObjectId) -> Option<Arc<Manifest>> {
        let pos = self.cache.iter().position(|(c, _)| c == id)?;
        let item = self.cache.remove(pos);
        let m = item.1.clone();
        self.cache.insert(0, item);
        Some(m)
    }

    /// Caches a verified manifest of an object in the index.
    pub fn cache_manifest(&mut self, id: ObjectId, m: Arc<Manifest>) {
        if !self.entries.contains_key(&id) {
            return;
        }
        self.cache.retain(|(c, _)| *c != id);
        self.cache.insert(0, (id, m));
        self.cache.truncate(MANIFEST_CACHE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nearcast_proto::content::manifest_for;

    #[test]
    fn eviction_order_is_lru_and_skips_pinned_and_protected() {
        let mut idx = Index::default();
        let m = manifest_for(&[1u8; 10_000], "x/y");
        let ids: Vec<ObjectId> = (0..4u8).map(|i| ObjectId([i; 32])).collect();
        for (i, id) in ids.iter().enumerate() {
            idx.insert(*id, Entry::new(&m, 100, i == 1, 10 - i as u64));
        }
        idx.set_held(&ids[0], 0, 50, true);
        assert_eq!(idx.bytes(), 450);
        idx.protect(ids[2]);
        assert_eq!(idx.victims(None, u64::MAX), vec![ids[3], ids[0]]);
        assert_eq!(idx.victims(Some(&ids[3]), u64::MAX), vec![ids[0]]);
        assert_eq!(idx.victims(None, 100), vec![ids[3]]);
        assert_eq!(idx.victims(None, 101), vec![ids[3], ids[0]]);
        idx.unprotect(&ids[2]);
        idx.touch(&ids[3], 100, 60);
        idx.touch(&ids[0], 1, 60); // never moves backwards
        assert_eq!(idx.victims(None, u64::MAX), vec![ids[2], ids[0], ids[3]]);
        idx.remove(&ids[0]);
        assert_eq!(idx.bytes(), 300);
        assert_eq!(idx.victims(None, u64::MAX), vec![ids[2], ids[3]]);
    }
}
