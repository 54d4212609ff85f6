//! A map whose entries lapse at a time of their own, swept only when the earliest of them may
//! have lapsed: a node's housekeeping runs every few seconds, and most runs find nothing due.

use std::collections::BTreeMap;

/// Entries with an end time; [`Expiring::sweep`] drops those whose end has passed. Until swept,
/// an entry past its end is still there (callers that care compare its end with `now`).
#[derive(Debug)]
pub struct Expiring<K, V> {
    entries: BTreeMap<K, (V, u64)>,
    /// No entry ends before this (a lower bound: an entry whose end was moved later may have
    /// set it).
    earliest: u64,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Expiring {
            entries: BTreeMap::new(),
            earliest: u64::MAX,
        }
    }
}

impl<K: Ord, V> Expiring<K, V> {
    /// Keeps `value` under `key` until `until` (replacing any entry of `key`).
    pub fn insert(&mut self, key: K, value: V, until: u64) {
        self.earliest = self.earliest.min(until);
        self.entries.insert(key, (value, until));
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// The end of `key`'s entry.
    pub fn until(&self, key: &K) -> Option<u64> {
        self.entries.get(key).map(|(_, u)| *u)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(v, _)| v)
    }

    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|(v, _)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry whose end is not after `now`.
    pub fn sweep(&mut self, now: u64) {
        if self.earliest > now {
            return;
        }
        self.entries.retain(|_, (_, until)| *until > now);
        self.earliest = self
            .entries
            .values()
            .map(|(_, u)| *u)
            .min()
            .unwrap_or(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_go_when_their_end_passes_and_not_before() {
        let mut m = Expiring::default();
        m.insert(1, "a", 10);
        m.insert(2, "b", 20);
        m.sweep(9);
        assert_eq!(m.len(), 2);
        m.sweep(10);
        assert_eq!(m.get(&1), None);
        assert_eq!(m.get(&2), Some(&"b"));
        // An end moved later keeps the entry past its first end.
        m.insert(2, "b", 40);
        m.sweep(30);
        assert_eq!(m.until(&2), Some(40));
        m.sweep(40);
        assert!(m.is_empty());
    }
}
