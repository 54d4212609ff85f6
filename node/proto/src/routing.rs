//! The Kademlia routing table of a DHT server: k-buckets of contacts by XOR distance.
//!
//! Deliberately locality-blind: a diverse table is what makes eclipse attacks hard.

use crate::key::{Distance, Key};
use crate::peer::{Contact, PeerRef};

/// Bucket size.
pub const K: usize = 20;

#[derive(Clone, Debug)]
struct Entry<P> {
    contact: Contact<P>,
    /// The contact's key, computed once (`closest` compares every entry's).
    key: Key,
    last_seen: u64,
    failures: u8,
}

/// k-buckets around our own key.
pub struct RoutingTable<P> {
    own: Key,
    /// By bucket index (shared leading bits), grown on demand: with random keys only the
    /// first log2(servers) or so are ever used, so a table does not carry 256 empty buckets.
    buckets: Vec<Vec<Entry<P>>>,
}

impl<P: PeerRef> RoutingTable<P> {
    pub fn new(own: Key) -> Self {
        RoutingTable {
            own,
            buckets: Vec::new(),
        }
    }

    /// Records a contact seen alive at `now`. Full buckets keep their live old entries.
    pub fn insert(&mut self, contact: Contact<P>, now: u64) {
        if contact.port == 0 {
            return;
        }
        let key = contact.peer.key();
        let Some(b) = self.own.bucket_index(&key) else {
            return;
        };
        if self.buckets.len() <= b {
            self.buckets.resize_with(b + 1, Vec::new);
        }
        let bucket = &mut self.buckets[b];
        if let Some(e) = bucket.iter_mut().find(|e| e.contact.peer == contact.peer) {
            e.contact = contact;
            e.last_seen = now;
            e.failures = 0;
            return;
        }
        let entry = Entry {
            contact,
            key,
            last_seen: now,
            failures: 0,
        };
        if bucket.len() < K {
            bucket.push(entry);
        } else if let Some(pos) = bucket.iter().position(|e| e.failures > 0) {
            bucket[pos] = entry;
        }
    }

    /// A request to `peer` failed; twice in a row removes it.
    pub fn failed(&mut self, peer: &P) {
        let Some(b) = self.own.bucket_index(&peer.key()) else {
            return;
        };
        let Some(bucket) = self.buckets.get_mut(b) else {
            return;
        };
        if let Some(pos) = bucket.iter().position(|e| &e.contact.peer == peer) {
            bucket[pos].failures += 1;
            if bucket[pos].failures >= 2 {
                bucket.remove(pos);
            }
        }
    }

    pub fn remove(&mut self, peer: &P) {
        if let Some(bucket) = self
            .own
            .bucket_index(&peer.key())
            .and_then(|b| self.buckets.get_mut(b))
        {
            bucket.retain(|e| &e.contact.peer != peer);
        }
    }

    /// The `n` known contacts closest to `target`.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact<P>> {
        let mut all: Vec<(&Entry<P>, Distance)> = self
            .buckets
            .iter()
            .flatten()
            .map(|e| (e, target.distance(&e.key)))
            .collect();
        // Distances of distinct keys differ: selecting the `n` nearest first gives the same
        // answer as sorting them all.
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by_key(n - 1, |a| a.1);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.1);
        all.into_iter()
            .take(n)
            .map(|(e, _)| e.contact.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries not heard from since `before`.
    pub fn stale(&self, before: u64) -> Vec<Contact<P>> {
        self.buckets
            .iter()
            .flatten()
            .filter(|e| e.last_seen < before)
            .map(|e| e.contact.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn c(i: u32) -> Contact<u32> {
        Contact::new(i, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1)
    }

    #[test]
    fn closest_is_sorted_and_failures_evict() {
        let mut t = RoutingTable::new(0u32.key());
        for i in 1..500 {
            t.insert(c(i), 0);
        }
        assert!(t.len() <= 256 * K && t.len() > 20);
        // A peer the table kept: the closest contact to its own key is itself.
        let kept = t.stale(u64::MAX)[7].peer;
        let target = kept.key();
        let got = t.closest(&target, 5);
        assert_eq!(got[0].peer, kept);
        for w in got.windows(2) {
            assert!(target.distance(&w[0].peer.key()) <= target.distance(&w[1].peer.key()));
        }
        t.failed(&kept);
        t.failed(&kept);
        assert_ne!(t.closest(&target, 1)[0].peer, kept);
    }
}
