//! The holder index of a supernode or seeder: which nearby peers hold (or are fetching) which
//! objects, fed by children's `Have` reports, by `Locate` requests and (at seeders) by
//! `Holding` reports, and answered nearest first for a requester.
//!
//! Each object's entries are kept grouped by AS, so a requester's own AS (and its neighbours)
//! are found by binary search however many ASes a popular object's holders span: a seeder, the
//! index of last resort, keeps up to [`MAX_HOLDERS_PER_OBJECT_AT_SEEDER`] entries per object.

use crate::content::ObjectId;
use crate::idmap::{IdHashKey, IdMap};
use crate::message::{Holder, MAX_CONTACTS};
use crate::peer::{Contact, PeerRef};
use crate::proximity::{Locality, Ranking};

/// Entries kept per object at a supernode.
pub const MAX_HOLDERS_PER_OBJECT: usize = 48;
/// Entries kept per object at a seeder: four per AS for objects held in up to 512 ASes.
pub const MAX_HOLDERS_PER_OBJECT_AT_SEEDER: usize = 2048;
/// Entries a seeder keeps over all objects (about 100 bytes each in the real node).
pub const MAX_ENTRIES_AT_SEEDER: usize = 8_000_000;
/// Recent fetchers kept per object and AS (children are kept regardless).
pub const MAX_RECENT_PER_AS: usize = 4;
/// Objects indexed at most.
pub const MAX_OBJECTS: usize = 200_000;
/// Expired entries are swept at most this often (reads skip them anyway).
const SWEEP_EVERY_MS: u64 = 60_000;
/// Lists up to this long are ranked in full for every answer; longer ones by AS groups.
const RANK_IN_FULL_UP_TO: usize = 64;
/// Neighbour ASes of the requester looked at when ranking a long list.
const MAX_NEIGHBOURS_LOOKED_AT: usize = 64;

#[derive(Clone, Debug)]
struct Entry<P> {
    contact: Contact<P>,
    /// The holder's AS; entries without one sort last.
    asn: u32,
    complete: bool,
    /// `u64::MAX` for attached children (removed on detach), else expiry of a recent fetcher.
    until: u64,
}

/// Sort key of an unknown AS.
const NO_ASN: u32 = u32::MAX;

/// object → holders, grouped by AS (ascending).
pub struct HolderIndex<P> {
    objects: IdMap<Vec<Entry<P>>>,
    per_object: usize,
    /// Entries over all objects, and the most kept: new entries beyond are dropped until
    /// expiry or removals make room.
    entries: usize,
    max_entries: usize,
    next_sweep: u64,
}

impl<P: PeerRef> Default for HolderIndex<P> {
    fn default() -> Self {
        Self::new(MAX_HOLDERS_PER_OBJECT, usize::MAX)
    }
}

/// The range of `list` (sorted by AS) holding entries of `asn`.
fn as_range<P>(list: &[Entry<P>], asn: u32) -> std::ops::Range<usize> {
    let start = list.partition_point(|e| e.asn < asn);
    let end = start + list[start..].partition_point(|e| e.asn == asn);
    start..end
}

impl<P: PeerRef> HolderIndex<P> {
    /// An index keeping up to `per_object` entries per object and `max_entries` in all.
    pub fn new(per_object: usize, max_entries: usize) -> Self {
        HolderIndex {
            objects: IdMap::default(),
            per_object: per_object.max(1),
            entries: 0,
            max_entries,
            next_sweep: 0,
        }
    }

    /// The same index, its object ids hashed under `key` (see [`crate::idmap`]).
    pub fn keyed(mut self, key: IdHashKey) -> Self {
        self.objects = IdMap::with_hasher(key);
        self
    }

    /// A seeder's index: many holders per object, bounded in all.
    pub fn for_seeder() -> Self {
        Self::new(MAX_HOLDERS_PER_OBJECT_AT_SEEDER, MAX_ENTRIES_AT_SEEDER)
    }

    /// Records a holder. `until` is `u64::MAX` for a child's report.
    pub fn add(
        &mut self,
        object: ObjectId,
        contact: Contact<P>,
        asn: Option<u32>,
        complete: bool,
        until: u64,
    ) {
        if contact.port == 0 {
            return;
        }
        let full = self.objects.len() >= MAX_OBJECTS || self.entries >= self.max_entries;
        let list = match self.objects.get_mut(&object) {
            Some(list) => list,
            None if full => return,
            // Most objects have one or two holders here: no room for four up front.
            None => self
                .objects
                .entry(object)
                .or_insert_with(|| Vec::with_capacity(1)),
        };
        let asn = asn.unwrap_or(NO_ASN);
        let range = as_range(list, asn);
        // One pass over the AS group: this peer's entry if any (a peer that moved to another
        // AS leaves a stale entry behind until it expires), and the recent fetchers of the
        // AS (how many, which expires first).
        let mut same_as = 0;
        let mut oldest: Option<(u64, usize)> = None;
        for i in range.clone() {
            let e = &mut list[i];
            if e.contact.peer == contact.peer {
                e.complete |= complete;
                e.until = e.until.max(until);
                e.contact = contact;
                return;
            }
            if e.until != u64::MAX {
                same_as += 1;
                if oldest.is_none_or(|(u, _)| e.until < u) {
                    oldest = Some((e.until, i));
                }
            }
        }
        let entry = Entry {
            contact,
            asn,
            complete,
            until,
        };
        if until != u64::MAX && same_as >= MAX_RECENT_PER_AS {
            if let Some((_, i)) = oldest {
                list[i] = entry;
            }
            return;
        }
        if list.len() >= self.per_object {
            // Replace the recent fetcher of this AS that expires first, else any recent
            // fetcher (never a child): the list stays sorted only if it is of the same AS.
            if let Some((_, i)) = oldest {
                list[i] = entry;
                return;
            }
            let Some((pos, _)) = list
                .iter()
                .enumerate()
                .filter(|(_, e)| e.until != u64::MAX)
                .min_by_key(|(_, e)| e.until)
            else {
                return;
            };
            list.remove(pos);
            let at = list.partition_point(|e| e.asn <= asn);
            list.insert(at, entry);
            return;
        }
        if self.entries >= self.max_entries {
            return;
        }
        if list.len() == list.capacity() && list.len() < 4 {
            list.reserve_exact(1);
        }
        list.insert(range.end, entry);
        self.entries += 1;
    }

    /// Forgets `peer` as a holder of `object`.
    pub fn remove(&mut self, object: &ObjectId, peer: &P) {
        if let Some(list) = self.objects.get_mut(object) {
            let before = list.len();
            list.retain(|e| &e.contact.peer != peer);
            self.entries -= before - list.len();
            if list.is_empty() {
                self.objects.remove(object);
            }
        }
    }

    /// A child's entry for `object` becomes a recent holder kept until `until` (the child
    /// detached but keeps its copy).
    pub fn keep_for(&mut self, object: &ObjectId, peer: &P, until: u64) {
        if let Some(e) = self
            .objects
            .get_mut(object)
            .and_then(|l| l.iter_mut().find(|e| &e.contact.peer == peer))
            && e.until == u64::MAX
        {
            e.until = until;
        }
    }

    /// Holders of `object` nearest to `requester`, excluding it.
    pub fn nearest(
        &self,
        object: &ObjectId,
        requester: &Contact<P>,
        locality: &Locality,
        now: u64,
    ) -> Vec<Holder<P>> {
        let Some(list) = self.objects.get(object) else {
            return Vec::new();
        };
        let from_requester = locality.seen_from(requester.ip);
        let live = |e: &&Entry<P>| e.until > now && e.contact.peer != requester.peer;
        let want = MAX_CONTACTS / 2;
        let candidates: Vec<&Entry<P>> = match from_requester.own_asn() {
            Some(asn) if list.len() > RANK_IN_FULL_UP_TO && locality.ranking() == Ranking::Full => {
                // Long list: the requester's AS, then its neighbours, then the rest from
                // where its AS would be (so that far answers spread over the holders).
                let mut picked: Vec<&Entry<P>> =
                    list[as_range(list, asn)].iter().filter(live).collect();
                if picked.len() < want {
                    for n in locality
                        .map()
                        .neighbours(asn)
                        .take(MAX_NEIGHBOURS_LOOKED_AT)
                    {
                        picked.extend(list[as_range(list, n)].iter().filter(live));
                    }
                }
                if picked.len() < want {
                    let from = list.partition_point(|e| e.asn < asn);
                    let (after, before) = (&list[from..], &list[..from]);
                    let mut rest = after.iter().chain(before).filter(live);
                    while picked.len() < want * 2 {
                        let Some(e) = rest.next() else { break };
                        if !picked.iter().any(|p| p.contact.peer == e.contact.peer) {
                            picked.push(e);
                        }
                    }
                }
                picked
            }
            _ => list.iter().filter(live).collect(),
        };
        // Within one tier, holders are ordered by XOR distance from the requester's key rather
        // than by address or id: every requester of an AS gets its own order, so they do not
        // all queue at the same few holders' uplinks.
        let me = requester.peer.key();
        let mut ranked: Vec<_> = candidates
            .into_iter()
            .map(|e| {
                let p = from_requester.proximity(e.contact.ip, None);
                ((p.tier, !e.complete, e.contact.peer.key().distance(&me)), e)
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.contact.peer.cmp(&b.1.contact.peer))
        });
        ranked
            .into_iter()
            .take(want)
            .map(|(_, e)| Holder {
                contact: e.contact.clone(),
                complete: e.complete,
            })
            .collect()
    }

    /// Drops expired recent fetchers (a full sweep, at most once per `SWEEP_EVERY_MS`).
    pub fn expire(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY_MS;
        let mut removed = 0;
        self.objects.retain(|_, l| {
            let before = l.len();
            l.retain(|e| e.until > now);
            removed += before - l.len();
            !l.is_empty()
        });
        self.entries -= removed;
    }

    pub fn objects(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use nearcast_asmap::AsMap;

    use super::*;

    /// 300 ASes, AS 64600+k owning 10.k/16 (k < 256) and 11.(k-256)/16; 64600 is adjacent to
    /// 64601.
    fn map() -> Arc<AsMap> {
        let mut csv = String::new();
        for k in 0..300u32 {
            let (a, b) = if k < 256 { (10, k) } else { (11, k - 256) };
            csv.push_str(&format!("{a}.{b}.0.0,{a}.{b}.255.255,{}\n", 64600 + k));
        }
        let map = AsMap::from_ranges_csv(csv.as_bytes()).expect("table");
        Arc::new(map.with_edges([(64600, 64601)]))
    }

    fn ip_in(k: u32, host: u8) -> IpAddr {
        if k < 256 {
            IpAddr::V4(Ipv4Addr::new(10, k as u8, 0, host))
        } else {
            IpAddr::V4(Ipv4Addr::new(11, (k - 256) as u8, 0, host))
        }
    }

    /// Adds `peer` at `ip` (in the AS the test map gives it) as a holder of `object`.
    fn add_at(
        index: &mut HolderIndex<u32>,
        locality: &Locality,
        object: ObjectId,
        (peer, ip): (u32, IpAddr),
        complete: bool,
        until: u64,
    ) {
        let contact = Contact::new(peer, ip, 4000);
        index.add(object, contact, locality.asn_of(ip), complete, until);
    }

    fn fill(index: &mut HolderIndex<u32>, locality: &Locality, object: ObjectId) {
        // Three holders in each of 300 ASes, added AS by AS in a scattered order.
        for round in 0..3u32 {
            for j in 0..300u32 {
                let k = (j * 7 + 3) % 300;
                let holder = (k * 10 + round, ip_in(k, 1 + round as u8));
                add_at(index, locality, object, holder, true, 1_000_000);
            }
        }
    }

    #[test]
    fn a_seeder_index_finds_the_requesters_as_among_hundreds() {
        let locality = Locality::new(map(), ip_in(0, 200));
        let object = ObjectId([7u8; 32]);
        let mut seeder = HolderIndex::for_seeder();
        let mut supernode = HolderIndex::default();
        fill(&mut seeder, &locality, object);
        fill(&mut supernode, &locality, object);
        for k in [0u32, 150, 299] {
            let requester = Contact::new(99_999, ip_in(k, 250), 4000);
            let near = seeder.nearest(&object, &requester, &locality, 0);
            let first: Vec<u32> = near.iter().take(3).map(|h| h.contact.peer / 10).collect();
            assert_eq!(first, vec![k; 3], "requester in AS index {k}: {first:?}");
        }
        // A supernode's short list cannot cover every AS; the seeder's does.
        let covered = |index: &HolderIndex<u32>| {
            (0..300u32)
                .filter(|&k| {
                    let requester = Contact::new(99_999, ip_in(k, 250), 4000);
                    let near = index.nearest(&object, &requester, &locality, 0);
                    near.first().is_some_and(|h| h.contact.peer / 10 == k)
                })
                .count()
        };
        assert!(covered(&supernode) <= MAX_HOLDERS_PER_OBJECT);
        assert_eq!(covered(&seeder), 300);
        // An adjacent AS comes before farther ones when the own AS has none.
        let mut sparse = HolderIndex::for_seeder();
        for k in 1..300u32 {
            add_at(
                &mut sparse,
                &locality,
                object,
                (k * 10, ip_in(k, 1)),
                true,
                10,
            );
        }
        let requester = Contact::new(99_999, ip_in(0, 250), 4000);
        let near = sparse.nearest(&object, &requester, &locality, 0);
        assert_eq!(near.first().map(|h| h.contact.peer), Some(10));
        assert_eq!(near.len(), MAX_CONTACTS / 2);
        // Expired entries are never answered.
        assert!(
            sparse
                .nearest(&object, &requester, &locality, 10)
                .is_empty()
        );
    }

    #[test]
    fn recent_fetchers_are_capped_per_as_and_the_list_stays_grouped() {
        let locality = Locality::new(map(), ip_in(0, 200));
        let object = ObjectId([8u8; 32]);
        let mut index = HolderIndex::new(8, usize::MAX);
        // Ten recent fetchers in AS 5: only the four latest stay.
        for i in 0..10u32 {
            let holder = (i, ip_in(5, 1 + i as u8));
            add_at(
                &mut index,
                &locality,
                object,
                holder,
                false,
                100 + u64::from(i),
            );
        }
        let requester = Contact::new(99_999, ip_in(5, 250), 4000);
        let mut peers: Vec<u32> = index
            .nearest(&object, &requester, &locality, 0)
            .iter()
            .map(|h| h.contact.peer)
            .collect();
        peers.sort();
        assert_eq!(peers, vec![6, 7, 8, 9]);
        // A full list takes a child by replacing the recent fetcher that expires first.
        for k in 10..20u32 {
            add_at(
                &mut index,
                &locality,
                object,
                (k * 100, ip_in(k, 1)),
                true,
                u64::MAX,
            );
        }
        let list = &index.objects[&object];
        assert_eq!(list.len(), 8);
        assert!(
            list.windows(2).all(|w| w[0].asn <= w[1].asn),
            "grouped by AS"
        );
        assert!(list.iter().filter(|e| e.until == u64::MAX).count() == 8);
    }

    #[test]
    fn the_index_keeps_no_more_entries_than_its_budget_and_frees_them_on_expiry() {
        let locality = Locality::new(map(), ip_in(0, 200));
        let mut index = HolderIndex::new(MAX_HOLDERS_PER_OBJECT_AT_SEEDER, 100);
        for o in 0..50u8 {
            for k in 0..5u32 {
                add_at(
                    &mut index,
                    &locality,
                    ObjectId([o; 32]),
                    (k, ip_in(k, 1)),
                    true,
                    1_000,
                );
            }
        }
        let kept: usize = index.objects.values().map(Vec::len).sum();
        assert_eq!(kept, 100);
        assert_eq!(index.entries, 100);
        assert_eq!(index.objects(), 20);
        index.remove(&ObjectId([0; 32]), &3);
        assert_eq!(index.entries, 99);
        index.expire(1_000);
        assert_eq!(index.entries, 0);
        assert_eq!(index.objects(), 0);
        add_at(
            &mut index,
            &locality,
            ObjectId([99; 32]),
            (1, ip_in(1, 1)),
            true,
            5_000,
        );
        assert_eq!(index.entries, 1);
    }
}
