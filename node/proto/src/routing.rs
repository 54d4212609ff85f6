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
    ///
    /// Only the buckets that can hold them are ranked. With `b` the leading bits the target
    /// shares with us, a contact of bucket `b` is nearer the target than any other (its distance
    /// has bit `b` clear); then come all contacts of the buckets above `b` (their distance starts
    /// at bit `b`), then bucket `b - 1`, `b - 2`, … (starting at that bit). So once the groups
    /// taken in that order hold `n` contacts, no later one can displace any.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact<P>> {
        if n == 0 {
            return Vec::new();
        }
        // Our own key as target: every bucket is "below" it, deepest nearest.
        let b = self
            .own
            .bucket_index(target)
            .unwrap_or(self.buckets.len())
            .min(self.buckets.len());
        let with_distance = |e: &Entry<P>| target.distance(&e.key);
        let mut all: Vec<(&Entry<P>, Distance)> = Vec::new();
        if let Some(bucket) = self.buckets.get(b) {
            all.extend(bucket.iter().map(|e| (e, with_distance(e))));
        }
        if all.len() < n {
            for bucket in &self.buckets[(b + 1).min(self.buckets.len())..] {
                all.extend(bucket.iter().map(|e| (e, with_distance(e))));
            }
        }
        for bucket in self.buckets[..b].iter().rev() {
            if all.len() >= n {
                break;
            }
            all.extend(bucket.iter().map(|e| (e, with_distance(e))));
        }
        // Distances of distinct keys differ: selecting the `n` nearest first gives the same
        // answer as sorting them all.
        if all.len() > n {
            all.select_nth_unstable_by_key(n - 1, |a| a.1);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.1);
        all.into_iter().map(|(e, _)| e.contact.clone()).collect()
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

    #[test]
    fn closest_ranks_only_the_buckets_needed_and_agrees_with_a_full_sort() {
        let own = 0u32.key();
        let mut t = RoutingTable::new(own);
        for i in 1..3000 {
            t.insert(c(i), 0);
        }
        let everyone = t.stale(u64::MAX);
        // Targets all over the key space, our own key among them.
        let targets: Vec<Key> = (0..200u32)
            .map(|i| (i * 7919).key())
            .chain([own])
            .chain(everyone.iter().take(20).map(|c| c.peer.key()))
            .collect();
        for target in targets {
            for n in [1, 5, 20, 60, everyone.len() + 5] {
                let mut want: Vec<Contact<u32>> = everyone.clone();
                want.sort_by_key(|c| target.distance(&c.peer.key()));
                want.truncate(n);
                assert_eq!(t.closest(&target, n), want, "target {target:?}, n {n}");
            }
        }
    }
}
