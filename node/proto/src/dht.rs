//! Kademlia lookups (iterative FIND_NODE / GET_PROVIDERS) and the provider store.
//!
//! A [`Lookup`] only decides whom to ask next and when it is done; the node sends the requests
//! and feeds the replies back.

use crate::content::ObjectId;
use crate::idmap::{IdHashKey, IdMap};
use crate::key::{Distance, Key};
use crate::peer::{Contact, PeerRef};

/// Parallel requests per lookup.
pub const ALPHA: usize = 3;
/// How many closest servers a lookup converges on.
pub const LOOKUP_K: usize = 8;
/// Providers kept per object.
pub const MAX_PROVIDERS_PER_KEY: usize = 16;
/// Objects a provider store keeps.
pub const MAX_PROVIDER_KEYS: usize = 100_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ask {
    Pending,
    InFlight,
    Replied,
    Failed,
}

/// What a lookup is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LookupKind {
    /// Find the servers closest to a key (joining, refreshing, announcing).
    Nodes,
    /// Find providers of an object.
    Providers(ObjectId),
    /// Find the closest servers, then tell them we provide the object.
    Announce(ObjectId),
}

/// One iterative lookup.
pub struct Lookup<P> {
    pub target: Key,
    pub kind: LookupKind,
    candidates: Vec<(Distance, Contact<P>, Ask)>,
    pub providers: Vec<Contact<P>>,
    pub hops: u32,
    pub started: u64,
}

impl<P: PeerRef> Lookup<P> {
    pub fn new(target: Key, kind: LookupKind, seeds: Vec<Contact<P>>, now: u64) -> Self {
        let mut l = Lookup {
            target,
            kind,
            candidates: Vec::new(),
            providers: Vec::new(),
            hops: 0,
            started: now,
        };
        l.add_candidates(seeds);
        l
    }

    fn add_candidates(&mut self, contacts: Vec<Contact<P>>) {
        for c in contacts {
            if c.port == 0 || self.candidates.iter().any(|(_, x, _)| x.peer == c.peer) {
                continue;
            }
            let d = self.target.distance(&c.peer.key());
            self.candidates.push((d, c, Ask::Pending));
        }
        self.candidates.sort_by_key(|a| a.0);
        self.candidates.truncate(4 * LOOKUP_K);
    }

    /// Next peers to ask, marking them in flight.
    pub fn next_to_ask(&mut self) -> Vec<Contact<P>> {
        if self.done() {
            return Vec::new();
        }
        let in_flight = self
            .candidates
            .iter()
            .filter(|c| c.2 == Ask::InFlight)
            .count();
        let mut out = Vec::new();
        let mut live = 0;
        for (_, c, state) in self.candidates.iter_mut() {
            if *state == Ask::Failed {
                continue;
            }
            live += 1;
            if live > LOOKUP_K || in_flight + out.len() >= ALPHA {
                break;
            }
            if *state == Ask::Pending {
                *state = Ask::InFlight;
                out.push(c.clone());
            }
        }
        out
    }

    /// A reply from `from` with closer servers and maybe providers.
    pub fn on_reply(&mut self, from: &P, closer: Vec<Contact<P>>, providers: Vec<Contact<P>>) {
        if let Some(c) = self.candidates.iter_mut().find(|c| &c.1.peer == from) {
            c.2 = Ask::Replied;
        }
        self.hops += 1;
        for p in providers {
            if !self.providers.iter().any(|x| x.peer == p.peer) {
                self.providers.push(p);
            }
        }
        self.add_candidates(closer);
    }

    pub fn on_failure(&mut self, from: &P) {
        if let Some(c) = self.candidates.iter_mut().find(|c| &c.1.peer == from) {
            c.2 = Ask::Failed;
        }
    }

    /// Done when enough providers are known or the closest live candidates have all replied.
    pub fn done(&self) -> bool {
        if matches!(self.kind, LookupKind::Providers(_)) && self.providers.len() >= 4 {
            return true;
        }
        let mut live = 0;
        for (_, _, s) in &self.candidates {
            match s {
                Ask::Failed => continue,
                Ask::Replied => live += 1,
                Ask::Pending | Ask::InFlight => return false,
            }
            if live >= LOOKUP_K {
                break;
            }
        }
        true
    }

    /// The closest servers that answered.
    pub fn closest_replied(&self, n: usize) -> Vec<Contact<P>> {
        self.candidates
            .iter()
            .filter(|c| c.2 == Ask::Replied)
            .take(n)
            .map(|c| c.1.clone())
            .collect()
    }
}

/// Provider records held by a DHT server, bounded in keys and providers per key.
pub struct ProviderStore<P> {
    records: IdMap<Vec<(Contact<P>, u64)>>,
    next_sweep: u64,
}

/// Expired records are swept at most this often (reads skip them anyway).
const SWEEP_EVERY_MS: u64 = 60_000;

impl<P: PeerRef> Default for ProviderStore<P> {
    fn default() -> Self {
        ProviderStore {
            records: IdMap::default(),
            next_sweep: 0,
        }
    }
}

impl<P: PeerRef> ProviderStore<P> {
    /// A store whose object ids are hashed under `key` (see [`crate::idmap`]).
    pub fn keyed(key: IdHashKey) -> Self {
        ProviderStore {
            records: IdMap::with_hasher(key),
            next_sweep: 0,
        }
    }

    /// Adds or refreshes a record valid until `expires`.
    pub fn add(&mut self, object: ObjectId, provider: Contact<P>, expires: u64) {
        if !self.records.contains_key(&object) && self.records.len() >= MAX_PROVIDER_KEYS {
            return;
        }
        let list = self.records.entry(object).or_default();
        if let Some(e) = list.iter_mut().find(|e| e.0.peer == provider.peer) {
            *e = (provider, expires);
            return;
        }
        if list.len() >= MAX_PROVIDERS_PER_KEY
            && let Some((pos, _)) = list.iter().enumerate().min_by_key(|(_, e)| e.1)
        {
            list.remove(pos);
        }
        list.push((provider, expires));
    }

    pub fn get(&self, object: &ObjectId, now: u64) -> Vec<Contact<P>> {
        self.records
            .get(object)
            .map(|l| {
                l.iter()
                    .filter(|e| e.1 > now)
                    .map(|e| e.0.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops expired records (a full sweep, at most once per `SWEEP_EVERY_MS`).
    pub fn expire(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY_MS;
        self.records.retain(|_, l| {
            l.retain(|e| e.1 > now);
            !l.is_empty()
        });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RoutingTable;
    use std::net::{IpAddr, Ipv4Addr};

    fn c(i: u32) -> Contact<u32> {
        Contact::new(i, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1)
    }

    /// A lookup over a static network of 300 servers converges on the true closest ones.
    #[test]
    fn lookup_converges() {
        let tables: Vec<RoutingTable<u32>> = (0..300u32)
            .map(|i| {
                let mut t = RoutingTable::new(i.key());
                for j in 0..300u32 {
                    if (i * 7 + j * 13) % 11 < 3 {
                        t.insert(c(j), 0);
                    }
                }
                t
            })
            .collect();
        let target = Key([0x42; 32]);
        let mut l = Lookup::new(target, LookupKind::Nodes, tables[0].closest(&target, 3), 0);
        let mut rounds = 0;
        while !l.done() && rounds < 200 {
            rounds += 1;
            for p in l.next_to_ask() {
                let closer = tables[p.peer as usize].closest(&target, LOOKUP_K);
                l.on_reply(&p.peer, closer, vec![]);
            }
        }
        assert!(l.done());
        let mut truth: Vec<u32> = (0..300).collect();
        truth.sort_by_key(|i| target.distance(&i.key()));
        let found = l.closest_replied(3);
        assert_eq!(found[0].peer, truth[0]);
    }

    #[test]
    fn provider_store_is_bounded() {
        let mut s = ProviderStore::default();
        let id = ObjectId([1; 32]);
        for i in 0..100 {
            s.add(id, c(i), 1000 + i as u64);
        }
        assert_eq!(s.get(&id, 0).len(), MAX_PROVIDERS_PER_KEY);
        assert!(s.get(&id, 5000).is_empty());
        s.expire(5000);
        assert!(s.is_empty());
    }
}
