//! The holder index of a supernode or seeder: which nearby peers hold (or are fetching) which
//! objects, fed by children's `Have` reports and by `Locate` requests, and answered nearest
//! first for a requester.

use std::collections::BTreeMap;

use crate::content::ObjectId;
use crate::message::{Holder, MAX_CONTACTS};
use crate::peer::{Contact, PeerRef};
use crate::proximity::Locality;

/// Entries kept per object.
pub const MAX_HOLDERS_PER_OBJECT: usize = 48;
/// Recent fetchers kept per object and AS (children are kept regardless).
pub const MAX_RECENT_PER_AS: usize = 4;
/// Objects indexed at most.
pub const MAX_OBJECTS: usize = 200_000;
/// Expired entries are swept at most this often (reads skip them anyway).
const SWEEP_EVERY_MS: u64 = 60_000;

#[derive(Clone, Debug)]
struct Entry<P> {
    contact: Contact<P>,
    asn: Option<u32>,
    complete: bool,
    /// `u64::MAX` for attached children (removed on detach), else expiry of a recent fetcher.
    until: u64,
}

/// object → holders near this server.
pub struct HolderIndex<P> {
    objects: BTreeMap<ObjectId, Vec<Entry<P>>>,
    next_sweep: u64,
}

impl<P: PeerRef> Default for HolderIndex<P> {
    fn default() -> Self {
        HolderIndex {
            objects: BTreeMap::new(),
            next_sweep: 0,
        }
    }
}

impl<P: PeerRef> HolderIndex<P> {
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
        let full = self.objects.len() >= MAX_OBJECTS;
        let list = match self.objects.get_mut(&object) {
            Some(list) => list,
            None if full => return,
            None => self.objects.entry(object).or_default(),
        };
        // One pass: the entry of this peer if any, and the recent fetchers of its AS (how
        // many, and which expires first).
        let mut same_as = 0;
        let mut oldest: Option<(u64, usize)> = None;
        for (i, e) in list.iter_mut().enumerate() {
            if e.contact.peer == contact.peer {
                e.complete |= complete;
                e.until = e.until.max(until);
                e.contact = contact;
                return;
            }
            if e.until != u64::MAX && e.asn == asn {
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
        if list.len() >= MAX_HOLDERS_PER_OBJECT {
            // Replace the recent fetcher that expires first, never a child.
            if let Some((pos, _)) = list
                .iter()
                .enumerate()
                .filter(|(_, e)| e.until != u64::MAX)
                .min_by_key(|(_, e)| e.until)
            {
                list[pos] = entry;
            }
            return;
        }
        list.push(entry);
    }

    /// Forgets `peer` as a holder of `object`.
    pub fn remove(&mut self, object: &ObjectId, peer: &P) {
        if let Some(list) = self.objects.get_mut(object) {
            list.retain(|e| &e.contact.peer != peer);
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
        let mut ranked: Vec<_> = list
            .iter()
            .filter(|e| e.until > now && e.contact.peer != requester.peer)
            .map(|e| {
                let p = from_requester.proximity(e.contact.ip, None);
                ((p.tier, !e.complete, p.prefix_gap), e)
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.contact.peer.cmp(&b.1.contact.peer))
        });
        ranked
            .into_iter()
            .take(MAX_CONTACTS / 2)
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
        self.objects.retain(|_, l| {
            l.retain(|e| e.until > now);
            !l.is_empty()
        });
    }

    pub fn objects(&self) -> usize {
        self.objects.len()
    }
}
