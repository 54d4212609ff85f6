//! The node state machine: one per peer or seeder, driven by the real runtime or the simulator.
//!
//! Inputs are method calls carrying `now` (milliseconds on the driver's clock); effects are
//! queued as [`Output`]s and drained with [`Node::poll_output`]. [`Node::poll_timeout`] says
//! when [`Node::handle_timeout`] must be called next.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use nearcast_asmap::AsMap;
use rustc_hash::FxHashMap;

use crate::admission::{RateMeter, TokenBucket};
use crate::config::{Config, Strategy};
use crate::content::{CHUNK_SIZE, Manifest, ObjectId};
use crate::dht::{LOOKUP_K, Lookup, LookupKind, ProviderStore};
use crate::expiring::Expiring;
use crate::fetch::{ChunkOutcome, Fetch, FetchError, FetchId, MAX_MANIFEST_REQUESTS, unpack_bits};
use crate::holders::HolderIndex;
use crate::hot::HotSet;
use crate::idmap::IdHashKey;
use crate::key::Key;
use crate::mapsync::{MapRejected, MapSync};
use crate::message::{AsMapRef, Holder, MAX_CONTACTS, MAX_HAVE, Request, Response, Role};
use crate::peer::{Contact, PeerRef};
use crate::proximity::Ranking;
use crate::proximity::{Locality, Proximity, SourceClass};
use crate::rendezvous::seeders_for;
use crate::rng::Rng;
use crate::routing::RoutingTable;
use crate::seeding::Handouts;

/// Removes `key` from `map`, and frees the map's root node once it is empty: a `BTreeMap`
/// keeps its root after the last entry goes, and for maps of large values (fetches, lookups)
/// in a million simulated nodes that each used one once, that is gigabytes held for nothing.
fn remove_freeing<K: Ord, V>(map: &mut BTreeMap<K, V>, key: &K) -> Option<V> {
    let v = map.remove(key);
    if map.is_empty() {
        *map = BTreeMap::new();
    }
    v
}

/// ASes whose attach candidates a node keeps at once (all are dropped when full).
const MAX_ALTERNATIVES_CACHED: usize = 4096;

/// How long a peer caught sending bad data (a corrupt chunk, a malformed message) stays banned.
pub const BAN_MS: u64 = 24 * 3600 * 1000;
/// Bans kept at once; beyond, the oldest ends early.
pub const MAX_BANNED: usize = 65_536;
/// Objects a supernode records (and indexes) per child from its `Have` reports.
pub const MAX_OBJECTS_PER_CHILD: usize = 4 * MAX_HAVE;
/// The same at a seeder, which takes thousands of children and is the index of last resort.
pub const MAX_OBJECTS_PER_CHILD_AT_SEEDER: usize = 1024;
/// Heartbeats a leaf leaves a supernode alone after it answered `Busy` (twice as long if the
/// leaf has all the parents it wants).
const BUSY_SUPERNODE_AVOIDED_HEARTBEATS: u64 = 4;
/// Other swarm members a chunk-map answer names (peer exchange).
const SWARM_PEERS_SHARED: usize = 8;
/// Partial holders whose chunk maps one refresh asks for.
const MAPS_PER_REFRESH: usize = 16;
/// A server's DHT self-lookup runs every this many heartbeat periods.
const SELF_LOOKUP_EVERY: u64 = 10;
/// A seeder that two requests in a row could not reach is passed over as an object's first
/// seeder (the index of last resort, told of copies and asked for holders) for this long after
/// the last failure, or until it answers. One failure may be a lost packet.
const SEEDER_DOWN_MS: u64 = 3 * 60_000;
/// Failures in a row after which a seeder counts as down.
const SEEDER_DOWN_AFTER: u8 = 2;
/// After finding a seeder down, a node re-tells its holdings (to their next seeders) within
/// this long.
const SEEDER_DOWN_TELL_SPREAD_MS: u64 = 60_000;
/// A new session tells seeders its holdings at a random time within this long of its start, so
/// that a mass restart does not send every peer's list to the seeders at once.
const FIRST_HOLDING_SPREAD_MS: u64 = 5 * 60_000;

/// Identifies an outgoing request; the driver reports its outcome with the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RequestId(pub u64);

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Could not connect, timed out or the connection dropped.
    Unreachable,
    /// The response could not be decoded or broke a limit.
    Malformed,
}

/// What the node asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<P> {
    /// Send a control request; report the result with [`Node::handle_response`].
    Request {
        id: RequestId,
        to: Contact<P>,
        request: Request<P>,
    },
    /// Fetch one chunk over the chunk protocol, verify it against the manifest, store it and
    /// report with [`Node::handle_chunk`].
    FetchChunk {
        fetch: FetchId,
        from: Contact<P>,
        object: ObjectId,
        index: u32,
    },
    /// A verified manifest for a fetch: store it before its chunks.
    Manifest {
        fetch: FetchId,
        object: ObjectId,
        manifest: Manifest,
    },
    /// The object is complete in the store; `bytes` by [`SourceClass`] index.
    FetchDone {
        fetch: FetchId,
        object: ObjectId,
        bytes: [u64; 5],
        first_byte_ms: u64,
    },
    FetchFailed {
        fetch: FetchId,
        object: ObjectId,
        error: FetchError,
    },
    /// The peer sent corrupt data: close its connections.
    Ban {
        peer: P,
    },
    RoleChanged {
        role: Role,
    },
    /// A configured seeder announced a proximity map newer than ours: fetch `map.object`
    /// (an ordinary fetch), decode it and report with [`Node::install_asmap`] or
    /// [`Node::asmap_failed`].
    AsMapOffered {
        map: AsMapRef,
    },
}

/// Whether to serve an inbound chunk request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ServeDecision {
    Serve,
    NotHeld,
    Busy,
}

/// Counters the drivers export.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    pub requests_in: u64,
    pub requests_busy: u64,
    pub chunks_served: u64,
    pub bytes_served: u64,
    pub chunks_refused: u64,
    /// Chunk requests a seeder deferred because it just handed that chunk to another peer.
    pub chunks_deferred: u64,
    pub lookups_done: u64,
    pub lookup_hops: u64,
    pub lookups_found: u64,
    pub announces: u64,
    pub children_dropped_overload: u64,
    pub bans: u64,
}

/// A snapshot for `/status`.
#[derive(Clone, Debug)]
pub struct Status<P> {
    pub role: Role,
    pub parents: Vec<Contact<P>>,
    pub children: usize,
    pub known_supernodes: usize,
    pub routing_table: usize,
    pub active_fetches: usize,
    pub holdings: usize,
}

#[derive(Clone, Debug)]
enum Pending {
    Lookup(u64),
    Attach,
    Heartbeat,
    Locate(FetchId),
    Manifest(FetchId),
    ChunkMap(FetchId),
    AsMap,
    Other,
}

#[derive(Clone, Debug)]
struct Child<P> {
    contact: Contact<P>,
    last_heard: u64,
    /// What the child reported holding, sorted (a set that costs 32 bytes an object).
    objects: Vec<ObjectId>,
}

#[derive(Clone, Debug)]
struct Parent<P> {
    contact: Contact<P>,
    last_ok: u64,
}

/// One peer's protocol state.
pub struct Node<P: PeerRef> {
    cfg: Config<P>,
    role: Role,
    rng: Rng,
    started: u64,
    locality: Locality,
    reachable: bool,
    routing: RoutingTable<P>,
    providers: ProviderStore<P>,
    lookups: BTreeMap<u64, Lookup<P>>,
    lookup_fetch: BTreeMap<u64, FetchId>,
    next_lookup: u64,
    holders: HolderIndex<P>,
    children: BTreeMap<P, Child<P>>,
    parents: BTreeMap<P, Parent<P>>,
    attaching: BTreeSet<P>,
    supernodes: Expiring<P, Contact<P>>,
    refused: Expiring<P, ()>,
    /// Seeders requests recently could not reach, with the failures in a row (see
    /// [`SEEDER_DOWN_MS`]).
    seeders_down: Expiring<P, u8>,
    /// Attach candidates per requester AS, with their expiry (see `alternatives_for`).
    alternatives_cache: BTreeMap<u32, (u64, Vec<Contact<P>>)>,
    attach_failures: u32,
    next_attach: u64,
    holdings: BTreeSet<ObjectId>,
    have_added: Vec<ObjectId>,
    have_removed: Vec<ObjectId>,
    hot: HotSet,
    announced: Expiring<ObjectId, ()>,
    fetches: BTreeMap<FetchId, Fetch<P>>,
    next_fetch: u64,
    /// Only looked up (the ids are ours, never a peer's), so hashed.
    pending: FxHashMap<RequestId, (P, Pending)>,
    next_request: u64,
    outputs: VecDeque<Output<P>>,
    upload: TokenBucket,
    control: TokenBucket,
    served_rate: RateMeter,
    /// Chunks this seeder handed out lately (super-seeding).
    handouts: Handouts<P>,
    next_maintenance: u64,
    next_heartbeat: u64,
    /// When the last heartbeat went out: a parent that answered us since has heard from us.
    last_heartbeat: u64,
    /// Heartbeat periods so far (the DHT self-lookup runs every `SELF_LOOKUP_EVERY`).
    heartbeats: u64,
    few_children_since: Option<u64>,
    promote_at: Option<u64>,
    promote_asked: bool,
    banned: BTreeSet<P>,
    /// The bans in the order given, with when each ends (see [`BAN_MS`], [`MAX_BANNED`]).
    ban_ends: VecDeque<(u64, P)>,
    stats: NodeStats,
    maps: MapSync,
    /// When our holdings are next told to their seeders.
    next_holding_tell: u64,
    /// A leaf with no supernode parent asks a seeder for supernodes again no sooner than this.
    next_supernode_ask: u64,
}

impl<P: PeerRef> Node<P> {
    pub fn new(mut cfg: Config<P>, locality: Locality, now: u64) -> Self {
        if matches!(cfg.strategy, Strategy::RandomSwarm | Strategy::SeederOnly) {
            cfg.may_promote = false;
        }
        let locality = locality.with_ranking(ranking_for(cfg.strategy));
        let mut rng = Rng::new(cfg.seed);
        let first = now + rng.below(cfg.timing.maintenance_ms.max(1));
        // Four seconds' worth, and at least two chunks (a chunk is served whole or not at all).
        let burst = (cfg.upload_bytes_per_s * 4.0).max(2.0 * CHUNK_SIZE as f64);
        let upload = TokenBucket::new(cfg.upload_bytes_per_s, burst);
        let control = TokenBucket::new(cfg.control_per_s, cfg.control_per_s * 2.0);
        let id_key = IdHashKey::from_seed(cfg.seed);
        let mut node = Node {
            role: cfg.role,
            routing: RoutingTable::new(cfg.own.peer.key()),
            hot: HotSet::new(cfg.timing.hot_half_life_ms, cfg.hot_threshold),
            rng,
            started: now,
            locality,
            reachable: cfg.role == Role::Seeder,
            providers: ProviderStore::keyed(id_key),
            lookups: BTreeMap::new(),
            lookup_fetch: BTreeMap::new(),
            next_lookup: 0,
            holders: if cfg.role == Role::Seeder {
                HolderIndex::for_seeder()
            } else {
                HolderIndex::default()
            }
            .keyed(id_key),
            children: BTreeMap::new(),
            parents: BTreeMap::new(),
            attaching: BTreeSet::new(),
            supernodes: Expiring::default(),
            refused: Expiring::default(),
            seeders_down: Expiring::default(),
            alternatives_cache: BTreeMap::new(),
            attach_failures: 0,
            next_attach: now,
            holdings: BTreeSet::new(),
            have_added: Vec::new(),
            have_removed: Vec::new(),
            announced: Expiring::default(),
            fetches: BTreeMap::new(),
            next_fetch: 0,
            pending: FxHashMap::default(),
            next_request: 0,
            outputs: VecDeque::new(),
            upload,
            control,
            served_rate: RateMeter::default(),
            handouts: Handouts::default(),
            next_maintenance: first,
            next_heartbeat: first,
            last_heartbeat: now,
            heartbeats: 0,
            few_children_since: None,
            promote_at: None,
            promote_asked: false,
            banned: BTreeSet::new(),
            ban_ends: VecDeque::new(),
            stats: NodeStats::default(),
            maps: MapSync::new(cfg.follow_published_asmap),
            next_holding_tell: 0,
            next_supernode_ask: 0,
            cfg,
        };
        node.next_holding_tell = now + node.rng.below(FIRST_HOLDING_SPREAD_MS);
        let seeders = node.cfg.seeders.clone();
        for s in seeders.iter().cloned() {
            if s.peer != node.cfg.own.peer {
                node.routing.insert(s.clone(), now);
                node.supernodes.insert(s.peer.clone(), s, u64::MAX);
            }
        }
        if node.role == Role::Seeder {
            node.start_lookup(now, node.cfg.own.peer.key(), LookupKind::Nodes, None);
        }
        node
    }

    // ----- introspection -----

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn own(&self) -> &Contact<P> {
        &self.cfg.own
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    pub fn is_seeder(&self, peer: &P) -> bool {
        self.cfg.seeders.iter().any(|s| &s.peer == peer)
    }

    pub fn parents(&self) -> Vec<Contact<P>> {
        self.parents.values().map(|p| p.contact.clone()).collect()
    }

    pub fn children(&self) -> usize {
        self.children.len()
    }

    pub fn status(&self) -> Status<P> {
        Status {
            role: self.role,
            parents: self.parents(),
            children: self.children.len(),
            known_supernodes: self.supernodes.len(),
            routing_table: self.routing.len(),
            active_fetches: self.fetches.len(),
            holdings: self.holdings.len(),
        }
    }

    /// Class a peer's bytes count under for this node.
    pub fn classify(&self, peer: &P, ip: std::net::IpAddr) -> SourceClass {
        if self.is_seeder(peer) {
            SourceClass::Seeder
        } else {
            self.locality.class_of(ip)
        }
    }

    // ----- inputs from the driver -----

    /// A new proximity map (or our own address changed).
    pub fn set_locality(&mut self, locality: Locality) {
        self.locality = locality.with_ranking(ranking_for(self.cfg.strategy));
    }

    /// The proximity-map distribution state (source, map in use, fetch in progress).
    pub fn asmap(&self) -> &MapSync {
        &self.maps
    }

    /// Uses an explicit local map (a `--as-table` or `--asmap` file): it wins over published
    /// maps, which are ignored from now on. A seeder passes `publish`, the id under which it
    /// publishes this map, so that it announces it.
    pub fn use_local_asmap(&mut self, map: Arc<AsMap>, publish: Option<AsMapRef>) {
        self.maps.set_local(publish);
        self.swap_map(map);
    }

    /// A published map, fetched (or reloaded from the driver's store at start) and decoded:
    /// installs it atomically if it may replace the map in use (it must be newer). On
    /// refusal the map in use stays and the id is not offered again.
    pub fn install_asmap(
        &mut self,
        object: ObjectId,
        map: Arc<AsMap>,
    ) -> Result<AsMapRef, MapRejected> {
        let r = AsMapRef {
            object,
            built: map.built(),
        };
        if let Err(e) = self.maps.check_install(object, r.built) {
            if !matches!(e, MapRejected::LocalMap) {
                self.maps.failed(object, true);
            }
            return Err(e);
        }
        self.maps.installed(r);
        self.swap_map(map);
        Ok(r)
    }

    /// The offered map could not be used: `permanent` when it is not a valid map (it is never
    /// fetched again), else (the fetch failed) it is asked for again within a minute.
    pub fn asmap_failed(&mut self, now: u64, object: ObjectId, permanent: bool) {
        self.maps.failed(object, permanent);
        if !permanent {
            self.maps.next_check = self.maps.next_check.min(now + 60_000);
        }
    }

    fn swap_map(&mut self, map: Arc<AsMap>) {
        let own_ip = self.locality.own_ip();
        self.set_locality(Locality::new(map, own_ip));
    }

    /// Reachability from outside, as established by the driver (AutoNAT in the real node).
    pub fn set_reachable(&mut self, reachable: bool) {
        self.reachable = reachable || self.role == Role::Seeder;
    }

    /// The driver's store holds `object` completely (at start-up or after a fetch).
    pub fn object_stored(&mut self, object: ObjectId) {
        if self.holdings.insert(object) {
            self.have_added.push(object);
            self.have_removed.retain(|o| o != &object);
        }
    }

    /// The driver's store dropped `object` (evicted or found corrupt).
    pub fn object_removed(&mut self, object: ObjectId) {
        if self.holdings.remove(&object) {
            self.have_removed.push(object);
            self.have_added.retain(|o| o != &object);
            // A server indexes its own copies (for `Locate`): not any more.
            let own = self.cfg.own.peer.clone();
            self.holders.remove(&object, &own);
        }
    }

    /// Objects the node holds completely.
    pub fn holdings(&self) -> impl Iterator<Item = &ObjectId> {
        self.holdings.iter()
    }

    /// Ends a fetch that the driver cannot complete (the object does not fit its store, or the
    /// store failed): reported as [`Output::FetchFailed`] with [`FetchError::Local`].
    /// Chunk requests of that fetch still waiting in the outputs are withdrawn, and so is its
    /// `FetchDone` if it completed in the same step (a small object arrives whole with its
    /// manifest): the object is then not held after all.
    pub fn abort_fetch(&mut self, fid: FetchId, reason: String) {
        let done = self
            .outputs
            .iter()
            .position(|o| matches!(o, Output::FetchDone { fetch, .. } if *fetch == fid));
        let object = match (self.take_fetch(fid), done) {
            (Some(f), _) => f.object,
            (None, Some(i)) => match self.outputs.remove(i) {
                Some(Output::FetchDone { object, .. }) => {
                    self.object_removed(object);
                    object
                }
                _ => return,
            },
            (None, None) => return,
        };
        self.outputs
            .retain(|o| !matches!(o, Output::FetchChunk { fetch, .. } if *fetch == fid));
        self.outputs.push_back(Output::FetchFailed {
            fetch: fid,
            object,
            error: FetchError::Local(reason),
        });
    }

    /// Admits an inbound `GetManifest`, which the driver answers from its store: `None` to
    /// serve it, else the answer to send instead (a banned or, under overload, busy requester).
    pub fn admit_manifest(&mut self, now: u64, from: &P, object: ObjectId) -> Option<Response<P>> {
        match self.handle_request(now, from, Request::GetManifest { object }) {
            Response::NotFound => None,
            other => Some(other),
        }
    }

    pub fn holds(&self, object: &ObjectId) -> bool {
        self.holdings.contains(object)
    }

    /// Starts fetching `object`. Completion or failure is reported as an output.
    pub fn start_fetch(&mut self, now: u64, object: ObjectId) -> FetchId {
        self.start_fetch_from(now, object, None)
    }

    /// A reader of `object` (a gateway streaming it while it arrives) waits for chunk `index`:
    /// the fetch requests that chunk and the few after it before any other.
    pub fn reader_waits(&mut self, now: u64, object: ObjectId, index: u32) {
        let ids: Vec<FetchId> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.object == object)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(f) = self.fetches.get_mut(&id) {
                f.reader_at = Some(index);
            }
            self.drive_fetch(now, id);
        }
    }

    /// Starts fetching an object of which the driver's store holds the manifest and `held`
    /// chunks (verified, from an interrupted fetch): only the missing chunks are fetched, and
    /// no [`Output::Manifest`] is given (the driver has it).
    pub fn resume_fetch(
        &mut self,
        now: u64,
        object: ObjectId,
        manifest: Manifest,
        held: &[bool],
    ) -> FetchId {
        self.start_fetch_from(now, object, Some((manifest, held)))
    }

    fn start_fetch_from(
        &mut self,
        now: u64,
        object: ObjectId,
        stored: Option<(Manifest, &[bool])>,
    ) -> FetchId {
        let id = FetchId(self.next_fetch);
        self.next_fetch += 1;
        self.hot.record(object, now);
        if self.holdings.contains(&object) {
            // All zero: the driver counts the stored size as `local`.
            let bytes = [0; 5];
            self.outputs.push_back(Output::FetchDone {
                fetch: id,
                object,
                bytes,
                first_byte_ms: 0,
            });
            return id;
        }
        let resume = |fetch: &mut Fetch<P>| {
            if let Some((manifest, held)) = stored {
                fetch.resume(manifest, held);
            }
        };
        if self.cfg.strategy == Strategy::SeederOnly {
            let mut fetch = Fetch::new(object, now, now);
            fetch.locates_pending = 0;
            resume(&mut fetch);
            self.fetches.insert(id, fetch);
            self.drive_fetch(now, id);
            return id;
        }
        let mut fetch = Fetch::new(object, now, now + self.cfg.timing.hedge_ms);
        resume(&mut fetch);
        // Ask our own index first (supernodes and seeders), then parents.
        let me = self.cfg.own.clone();
        for h in self.holders.nearest(&object, &me, &self.locality, now) {
            let p = self.locality.proximity(h.contact.ip, None);
            let seeder = self.is_seeder(&h.contact.peer);
            fetch.add_source(h.contact, p, seeder, h.complete);
        }
        for c in self.providers.get(&object, now) {
            let p = self.locality.proximity(c.ip, None);
            let seeder = self.is_seeder(&c.peer);
            fetch.add_source(c, p, seeder, true);
        }
        let parents: Vec<Contact<P>> = self.parents.values().map(|p| p.contact.clone()).collect();
        self.fetches.insert(id, fetch);
        for parent in parents {
            self.send(
                parent,
                Request::Locate {
                    me: me.clone(),
                    object,
                },
                Pending::Locate(id),
            );
            if let Some(f) = self.fetches.get_mut(&id) {
                f.locates_pending += 1;
            }
        }
        if self.role != Role::Leaf || self.parents.is_empty() {
            self.start_provider_lookup(now, id, object);
            self.locate_wider(id, object);
        }
        // No parent in our AS: it cannot index the holders of our AS, the object's first seeder
        // may. Ask both at once rather than one after the other.
        let near_parent = self.parents.values().any(|p| {
            !self.is_seeder(&p.contact.peer)
                && self.locality.proximity(p.contact.ip, None).tier <= 1
        });
        if !near_parent
            && self.role == Role::Leaf
            && !self.parents.is_empty()
            && self.cfg.strategy == Strategy::Nearcast
        {
            self.locate_at_first_seeder(id, object);
        }
        self.drive_fetch(now, id);
        id
    }

    /// Asks the object's first seeder for holders near us (once per fetch; a parent seeder
    /// was asked already).
    fn locate_at_first_seeder(&mut self, fid: FetchId, object: ObjectId) {
        let Some(first) = self.first_seeder(&object) else {
            return;
        };
        if first.peer == self.cfg.own.peer
            || self.banned.contains(&first.peer)
            || self.parents.contains_key(&first.peer)
        {
            return;
        }
        let Some(f) = self.fetches.get_mut(&fid) else {
            return;
        };
        if f.seeder_located {
            return;
        }
        f.seeder_located = true;
        f.locates_pending += 1;
        let me = self.cfg.own.clone();
        self.send(first, Request::Locate { me, object }, Pending::Locate(fid));
    }

    /// The neighbourhood knows no holder: ask the nearest other supernodes we know (they index
    /// their own children), once per fetch.
    fn locate_wider(&mut self, fid: FetchId, object: ObjectId) {
        let Some(f) = self.fetches.get_mut(&fid) else {
            return;
        };
        if f.wider_asked {
            return;
        }
        f.wider_asked = true;
        let mut cands: Vec<(Proximity, Contact<P>)> = self
            .supernodes
            .values()
            .filter(|c| {
                !self.parents.contains_key(&c.peer)
                    && !self.is_seeder(&c.peer)
                    && !self.banned.contains(&c.peer)
            })
            .map(|c| (self.locality.proximity(c.ip, None), c.clone()))
            .collect();
        cands.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.peer.cmp(&b.1.peer)));
        let me = self.cfg.own.clone();
        for (_, c) in cands.into_iter().take(3) {
            if let Some(f) = self.fetches.get_mut(&fid) {
                f.locates_pending += 1;
            }
            self.send(
                c,
                Request::Locate {
                    me: me.clone(),
                    object,
                },
                Pending::Locate(fid),
            );
        }
    }

    fn start_provider_lookup(&mut self, now: u64, fetch: FetchId, object: ObjectId) {
        if let Some(f) = self.fetches.get_mut(&fetch) {
            if f.lookup_pending {
                return;
            }
            f.lookup_pending = true;
        }
        self.start_lookup(
            now,
            Key::for_object(&object),
            LookupKind::Providers(object),
            Some(fetch),
        );
    }

    /// The outcome of a chunk transfer the node asked for.
    pub fn handle_chunk(
        &mut self,
        now: u64,
        fetch: FetchId,
        peer: &P,
        index: u32,
        outcome: ChunkOutcome,
    ) {
        if outcome == ChunkOutcome::Corrupt {
            self.ban(now, peer);
        }
        let Some(f) = self.fetches.get_mut(&fetch) else {
            return;
        };
        f.on_chunk(now, peer, index, outcome);
        self.drive_fetch(now, fetch);
    }

    fn ban(&mut self, now: u64, peer: &P) {
        if self.banned.insert(peer.clone()) {
            self.stats.bans += 1;
            self.outputs.push_back(Output::Ban { peer: peer.clone() });
            self.ban_ends.push_back((now + BAN_MS, peer.clone()));
            if self.ban_ends.len() > MAX_BANNED
                && let Some((_, oldest)) = self.ban_ends.pop_front()
            {
                self.banned.remove(&oldest);
            }
        }
        for f in self.fetches.values_mut() {
            f.drop_source(peer);
        }
        self.routing.remove(peer);
        self.parents.remove(peer);
        self.children.remove(peer);
    }

    pub fn is_banned(&self, peer: &P) -> bool {
        self.banned.contains(peer)
    }

    /// The driver lost every connection to `peer`: chunks in flight from it are given up at
    /// once instead of at their timeout, and a peer source is dropped from running fetches.
    pub fn peer_disconnected(&mut self, now: u64, peer: &P) {
        let ids: Vec<FetchId> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.sources.contains_key(peer))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(f) = self.fetches.get_mut(&id) {
                f.peer_gone(now, peer);
            }
            self.drive_fetch(now, id);
        }
    }

    /// Should an inbound chunk request be served? Counts the upload when it is.
    pub fn admit_chunk(
        &mut self,
        now: u64,
        from: &P,
        object: &ObjectId,
        index: u32,
        len: u64,
    ) -> ServeDecision {
        if self.banned.contains(from) {
            return ServeDecision::NotHeld;
        }
        let held = self.holdings.contains(object)
            || self.fetches.values().any(|f| {
                &f.object == object && f.have.get(index as usize).copied().unwrap_or(false)
            });
        if !held {
            return ServeDecision::NotHeld;
        }
        let super_seeding = self.role == Role::Seeder
            && self.cfg.strategy != Strategy::SeederOnly
            && !self.is_seeder(from);
        if super_seeding && self.handouts.defer(now, from, object, index) {
            self.stats.chunks_deferred += 1;
            return ServeDecision::Busy;
        }
        if self.cfg.defences && !self.upload.try_take(now, len as f64) {
            self.stats.chunks_refused += 1;
            return ServeDecision::Busy;
        }
        if super_seeding {
            self.handouts.served(now, from, object, index);
        }
        self.stats.chunks_served += 1;
        self.stats.bytes_served += len;
        self.served_rate.add(now, len as f64);
        if self.hot.record(*object, now) && self.holdings.contains(object) {
            self.announce(now, *object);
        }
        ServeDecision::Serve
    }

    /// Answers an inbound control request from `from`.
    pub fn handle_request(&mut self, now: u64, from: &P, request: Request<P>) -> Response<P> {
        self.stats.requests_in += 1;
        if self.banned.contains(from) {
            return Response::Refused {
                reason: "banned".into(),
            };
        }
        let over = !self.control.try_take(now, 1.0);
        if over {
            self.stats.requests_busy += 1;
            if !self.cfg.defences {
                // Without brownout an overloaded server protects itself by dropping its
                // children, which then all reconnect elsewhere (the Skype 2010 cascade).
                if !self.children.is_empty() {
                    self.stats.children_dropped_overload += self.children.len() as u64;
                    self.children.clear();
                }
                return Response::Refused {
                    reason: "overloaded".into(),
                };
            }
            // Brownout: keep the overlay, shed the work.
            if !matches!(request, Request::Have { .. }) {
                let alternatives = self.alternatives_for(None, now);
                return Response::Busy { alternatives };
            }
        }
        match request {
            Request::FindNode { target } => {
                if !self.role.is_server() {
                    return Response::Refused {
                        reason: "not a DHT server".into(),
                    };
                }
                Response::Nodes {
                    closer: self.routing.closest(&target, LOOKUP_K),
                }
            }
            Request::GetProviders { object } => {
                if !self.role.is_server() {
                    return Response::Refused {
                        reason: "not a DHT server".into(),
                    };
                }
                let mut providers = self.providers.get(&object, now);
                providers.truncate(MAX_CONTACTS);
                Response::Providers {
                    providers,
                    closer: self.routing.closest(&Key::for_object(&object), LOOKUP_K),
                }
            }
            Request::AddProvider { object, provider } => {
                if !self.role.is_server() || &provider.peer != from {
                    return Response::Refused {
                        reason: "provider must be the sender".into(),
                    };
                }
                if self.role == Role::Seeder {
                    // A holder telling the object's seeder: the index of last resort.
                    self.index_last_resort(now, object, &provider);
                } else {
                    self.providers
                        .add(object, provider, now + self.cfg.timing.provider_ttl_ms);
                }
                Response::Ack
            }
            Request::Attach { me, role } => self.on_attach(now, from, me, role),
            Request::Detach => {
                if self.role == Role::Seeder {
                    // The child moves on with its copies: keep them in the index of last resort.
                    let until = now + self.seeder_index_ttl();
                    if let Some(child) = self.children.remove(from) {
                        for o in child.objects {
                            self.holders.keep_for(&o, from, until);
                        }
                    }
                } else {
                    self.drop_child(from);
                }
                Response::Ack
            }
            Request::Holding { me, objects } => {
                if self.role != Role::Seeder || me.peer != *from {
                    return Response::Refused {
                        reason: "holdings go to a seeder, from the holder".into(),
                    };
                }
                for object in objects {
                    self.index_last_resort(now, object, &me);
                }
                Response::Ack
            }
            Request::Have { added, removed } => {
                let Some(child) = self.children.get_mut(from) else {
                    return Response::NotAttached;
                };
                child.last_heard = now;
                let contact = child.contact.clone();
                let asn = self.locality.asn_of(contact.ip);
                for o in removed {
                    self.holders.remove(&o, from);
                    if let Some(c) = self.children.get_mut(from)
                        && let Ok(at) = c.objects.binary_search(&o)
                    {
                        c.objects.remove(at);
                    }
                }
                // Indexed only as far as the child's own list records it, so that everything
                // indexed for a child goes when it does; a seeder indexes only its own objects
                // (made-up ids cannot fill its index), and fewer per child (it takes thousands).
                let seeder = self.role == Role::Seeder;
                let most = if seeder {
                    MAX_OBJECTS_PER_CHILD_AT_SEEDER
                } else {
                    MAX_OBJECTS_PER_CHILD
                };
                for o in added {
                    if seeder && !self.holdings.contains(&o) {
                        continue;
                    }
                    let Some(c) = self.children.get_mut(from) else {
                        break;
                    };
                    let recorded = match c.objects.binary_search(&o) {
                        Ok(_) => true,
                        Err(at) if c.objects.len() < most => {
                            c.objects.insert(at, o);
                            true
                        }
                        Err(_) => false,
                    };
                    if recorded {
                        self.holders.add(o, contact.clone(), asn, true, u64::MAX);
                    }
                }
                Response::Ack
            }
            Request::Locate { me, object } => {
                if me.peer != *from {
                    return Response::Refused {
                        reason: "locate must name the sender".into(),
                    };
                }
                // A child's `Locate` is as good as its heartbeat.
                if let Some(child) = self.children.get_mut(from) {
                    child.last_heard = now;
                }
                let mut holders = self.holders.nearest(&object, &me, &self.locality, now);
                for p in self.providers.get(&object, now) {
                    if holders.len() >= MAX_CONTACTS {
                        break;
                    }
                    if p.peer != me.peer && !holders.iter().any(|h| h.contact.peer == p.peer) {
                        holders.push(Holder {
                            contact: p,
                            complete: true,
                        });
                    }
                }
                // A seeder indexes only its own objects, so made-up ids cannot fill its index.
                let indexed = match self.role {
                    Role::Seeder => self.holdings.contains(&object),
                    Role::Supernode => true,
                    Role::Leaf => false,
                };
                if indexed {
                    // The requester will hold it soon: point later requesters near it there.
                    let asn = self.locality.asn_of(me.ip);
                    // Seeders are the index of last resort for objects no neighbourhood
                    // holds: they remember fetchers for as long as caches keep objects.
                    let ttl = if self.role == Role::Seeder {
                        self.seeder_index_ttl()
                    } else {
                        self.cfg.timing.provider_ttl_ms / 4
                    };
                    self.holders.add(object, me, asn, false, now + ttl);
                }
                Response::Located { holders }
            }
            Request::GetManifest { .. } => {
                // Admitted: the driver serves it from its store (see `admit_manifest`).
                Response::NotFound
            }
            Request::GetChunkMap { me, object } => {
                if me.peer == *from {
                    self.note_swarm_peer(now, me, &object);
                }
                let fetch = self.fetches.values().find(|f| f.object == object);
                let peers = fetch
                    .map(|f| f.swarm_peers(from, SWARM_PEERS_SHARED))
                    .unwrap_or_default();
                if self.holdings.contains(&object) {
                    return Response::ChunkMap {
                        complete: true,
                        bits: Vec::new(),
                        peers,
                    };
                }
                match fetch {
                    Some(f) if f.manifest.is_some() => Response::ChunkMap {
                        complete: false,
                        bits: f.chunk_bits(),
                        peers,
                    },
                    _ => Response::NotFound,
                }
            }
            Request::RegisterSupernode { me } => {
                if self.role != Role::Seeder || me.peer != *from {
                    return Response::Refused {
                        reason: "not a seeder".into(),
                    };
                }
                let until = now + 3 * self.cfg.timing.heartbeat_ms;
                self.routing.insert(me.clone(), now);
                self.supernodes.insert(me.peer.clone(), me, until);
                Response::Ack
            }
            Request::GetAsMap => Response::AsMap {
                current: self.maps.current(),
            },
        }
    }

    /// The chunk map requester is fetching the same object: use it as a source too.
    pub fn note_swarm_peer(&mut self, now: u64, contact: Contact<P>, object: &ObjectId) {
        if self.banned.contains(&contact.peer) || contact.port == 0 {
            return;
        }
        let proximity = self.locality.proximity(contact.ip, None);
        let seeder = self.is_seeder(&contact.peer);
        let ids: Vec<FetchId> = self
            .fetches
            .iter()
            .filter(|(_, f)| &f.object == object && !f.sources.contains_key(&contact.peer))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(f) = self.fetches.get_mut(&id) {
                f.add_source(contact.clone(), proximity, seeder, false);
            }
            self.drive_fetch(now, id);
        }
    }

    fn on_attach(&mut self, now: u64, from: &P, me: Contact<P>, role: Role) -> Response<P> {
        if me.peer != *from {
            return Response::Refused {
                reason: "attach must name the sender".into(),
            };
        }
        if role == Role::Seeder && !self.is_seeder(from) {
            return Response::Refused {
                reason: "not a configured seeder".into(),
            };
        }
        if !self.role.is_server() {
            return Response::Busy {
                alternatives: self.alternatives_for(Some(&me), now),
            };
        }
        if role != Role::Leaf {
            // Another server: it belongs in the DHT, not among our children.
            self.routing.insert(me.clone(), now);
            self.supernodes.insert(
                me.peer.clone(),
                me.clone(),
                now + 3 * self.cfg.timing.heartbeat_ms,
            );
            return Response::Attached {
                supernodes: self.alternatives_for(Some(&me), now),
            };
        }
        let full =
            self.children.len() >= self.cfg.max_children && !self.children.contains_key(from);
        if full {
            self.stats.requests_busy += 1;
            return Response::Busy {
                alternatives: self.alternatives_for(Some(&me), now),
            };
        }
        self.children
            .entry(from.clone())
            .or_insert_with(|| Child {
                contact: me.clone(),
                last_heard: now,
                objects: Vec::new(),
            })
            .last_heard = now;
        Response::Attached {
            supernodes: self.alternatives_for(Some(&me), now),
        }
    }

    fn drop_child(&mut self, peer: &P) {
        if let Some(child) = self.children.remove(peer) {
            for o in child.objects {
                self.holders.remove(&o, peer);
            }
        }
    }

    /// Supernodes near `near` (or us), for redirects and attach answers: the 8 nearest.
    ///
    /// Ranking every known supernode for each `Attach` costs a seeder (which knows them all)
    /// the most of any request, so the candidates for one AS are kept for a maintenance
    /// period: every supernode in that AS plus the 8 nearest outside it (AS distance is the
    /// same from anywhere in the AS); each answer ranks only those for its requester.
    fn alternatives_for(&mut self, near: Option<&Contact<P>>, now: u64) -> Vec<Contact<P>> {
        let ip = near.map(|c| c.ip).unwrap_or(self.cfg.own.ip);
        let from = self.locality.seen_from(ip);
        // No AS known: rank every supernode by prefix for this requester.
        let Some(asn) = from.own_asn() else {
            let all = self.supernodes.values();
            return self.nearest_alternatives(&from, near, all);
        };
        let fresh = self
            .alternatives_cache
            .get(&asn)
            .is_some_and(|(until, _)| *until > now);
        if !fresh {
            let candidates = self.alternative_candidates(&from);
            if self.alternatives_cache.len() >= MAX_ALTERNATIVES_CACHED {
                self.alternatives_cache.clear();
            }
            let until = now + self.cfg.timing.maintenance_ms;
            self.alternatives_cache.insert(asn, (until, candidates));
        }
        let cached = self.alternatives_cache.get(&asn).into_iter();
        self.nearest_alternatives(&from, near, cached.flat_map(|(_, list)| list))
    }

    /// The 8 of `candidates` (and us, if a server) nearest to the requester seen as `from`,
    /// the requester `near` itself left out.
    fn nearest_alternatives<'a>(
        &self,
        from: &Locality,
        near: Option<&Contact<P>>,
        candidates: impl Iterator<Item = &'a Contact<P>>,
    ) -> Vec<Contact<P>>
    where
        P: 'a,
    {
        let mut list: Vec<(Proximity, Contact<P>)> = candidates
            .filter(|c| near.is_none_or(|n| n.peer != c.peer))
            .map(|c| (from.proximity(c.ip, None), c.clone()))
            .collect();
        if self.role.is_server() {
            list.push((from.proximity(self.cfg.own.ip, None), self.cfg.own.clone()));
        }
        // A total order, so the 8 nearest are the same whichever way they are selected.
        let order = |a: &(Proximity, Contact<P>), b: &(Proximity, Contact<P>)| {
            a.0.cmp(&b.0).then_with(|| a.1.peer.cmp(&b.1.peer))
        };
        if list.len() > 8 {
            list.select_nth_unstable_by(7, order);
            list.truncate(8);
        }
        list.sort_by(order);
        list.into_iter().map(|(_, c)| c).collect()
    }

    /// Every known supernode in the AS `from` is in, and the 8 nearest outside it (one more,
    /// in case the requester is among them).
    fn alternative_candidates(&self, from: &Locality) -> Vec<Contact<P>> {
        let mut inside = Vec::new();
        let mut outside: Vec<(Proximity, Contact<P>)> = Vec::new();
        for c in self.supernodes.values() {
            let p = from.proximity(c.ip, None);
            if p.tier <= 1 {
                inside.push(c.clone());
            } else {
                outside.push((p, c.clone()));
            }
        }
        let order = |a: &(Proximity, Contact<P>), b: &(Proximity, Contact<P>)| {
            a.0.cmp(&b.0).then_with(|| a.1.peer.cmp(&b.1.peer))
        };
        if outside.len() > 9 {
            outside.select_nth_unstable_by(8, order);
            outside.truncate(9);
        }
        inside.extend(outside.into_iter().map(|(_, c)| c));
        inside
    }

    /// The outcome of a request the node sent.
    pub fn handle_response(
        &mut self,
        now: u64,
        id: RequestId,
        result: Result<Response<P>, RequestError>,
    ) {
        let Some((peer, what)) = self.pending.remove(&id) else {
            return;
        };
        if let Err(RequestError::Malformed) = &result {
            self.ban(now, &peer);
        }
        if self.is_seeder(&peer) {
            match &result {
                Err(RequestError::Unreachable) => {
                    let failures = self
                        .seeders_down
                        .get(&peer)
                        .map_or(1, |n| n.saturating_add(1));
                    self.seeders_down
                        .insert(peer.clone(), failures, now + SEEDER_DOWN_MS);
                    let others_up = self.cfg.seeders.iter().any(|s| !self.seeder_down(&s.peer));
                    if failures == SEEDER_DOWN_AFTER && others_up {
                        // Its objects' next seeder knows none of our copies yet. (With every
                        // seeder down, telling would only fail: wait until one answers.)
                        self.retell_holdings_soon(now);
                    }
                }
                Ok(_) => {
                    // Back, perhaps with an empty index: it is first again for its objects.
                    if self.seeder_down(&peer) {
                        self.retell_holdings_soon(now);
                    }
                    self.seeders_down.remove(&peer);
                }
                Err(RequestError::Malformed) => {}
            }
        }
        match what {
            Pending::Lookup(lid) => self.on_lookup_response(now, lid, &peer, result),
            Pending::Attach => self.on_attach_response(now, &peer, result),
            Pending::Heartbeat => match result {
                Ok(Response::Ack) => {
                    if let Some(p) = self.parents.get_mut(&peer) {
                        p.last_ok = now;
                    }
                }
                Ok(Response::Busy { .. }) => {}
                _ => {
                    self.parents.remove(&peer);
                    self.schedule_reattach(now);
                }
            },
            Pending::Locate(fid) => {
                if let Ok(Response::Located { holders }) = &result {
                    self.routing_touch(&peer, now);
                    if let Some(p) = self.parents.get_mut(&peer) {
                        p.last_ok = now;
                    }
                    self.add_holders(fid, holders.clone());
                } else if result.is_err() && self.parents.remove(&peer).is_some() {
                    self.schedule_reattach(now);
                }
                let mut empty = false;
                if let Some(f) = self.fetches.get_mut(&fid) {
                    f.locates_pending = f.locates_pending.saturating_sub(1);
                    empty = f.locates_pending == 0 && !f.has_peer_sources() && f.manifest.is_none();
                }
                // Nobody near holds it. A leaf skips the DHT: the object's first seeder indexes
                // holders of every AS and is asked with the hedge, which `drive_fetch` sends at
                // once when nothing is pending; a server (or a leaf without parents) looks
                // wider itself.
                if empty
                    && (self.role != Role::Leaf || self.parents.is_empty())
                    && let Some(object) = self.fetches.get(&fid).map(|f| f.object)
                {
                    self.start_provider_lookup(now, fid, object);
                    self.locate_wider(fid, object);
                }
                self.drive_fetch(now, fid);
            }
            Pending::Manifest(fid) => {
                let Some(f) = self.fetches.get_mut(&fid) else {
                    return;
                };
                f.manifest_in_flight = f.manifest_in_flight.saturating_sub(1);
                if let Some(s) = f.sources.get_mut(&peer) {
                    s.awaiting_manifest = false;
                }
                match result {
                    // A hedged request answered after another: nothing more to learn.
                    Ok(Response::Manifest { .. }) if f.manifest.is_some() => {}
                    Ok(Response::Manifest { bytes }) => {
                        match Manifest::decode_for(&f.object, &bytes) {
                            Ok(m) => {
                                let class = f
                                    .sources
                                    .get(&peer)
                                    .map(|s| s.class())
                                    .unwrap_or(SourceClass::OtherAs);
                                f.bytes[class.index()] +=
                                    if m.chunk_count() == 0 { m.size } else { 0 };
                                f.first_byte_at.get_or_insert(now);
                                f.last_progress = now;
                                f.set_manifest(m.clone());
                                let object = f.object;
                                self.outputs.push_back(Output::Manifest {
                                    fetch: fid,
                                    object,
                                    manifest: m,
                                });
                            }
                            Err(_) => {
                                self.ban(now, &peer);
                            }
                        }
                    }
                    Ok(Response::Busy { .. }) => {
                        // Try it again later.
                        if let Some(s) = f.sources.get_mut(&peer) {
                            s.manifest_tried = s.failures >= 2;
                            s.failures += 1;
                            if s.manifest_tried && s.is_seeder {
                                f.seeder_unavailable = true;
                            }
                        }
                    }
                    // A partial holder may lack the manifest for a moment: keep it for chunks.
                    Ok(Response::NotFound)
                        if f.sources.get(&peer).is_some_and(|s| s.chunks.is_some()) => {}
                    other => {
                        if f.sources.get(&peer).is_some_and(|s| s.is_seeder) {
                            match other {
                                Err(RequestError::Unreachable) | Ok(Response::Refused { .. }) => {
                                    f.seeder_unavailable = true
                                }
                                Ok(Response::NotFound) => f.seeder_denied = true,
                                _ => {}
                            }
                        }
                        f.drop_source(&peer);
                    }
                }
                self.drive_fetch(now, fid);
            }
            Pending::ChunkMap(fid) => {
                let Some(f) = self.fetches.get_mut(&fid) else {
                    return;
                };
                let n = f.have.len();
                match result {
                    Ok(Response::ChunkMap {
                        complete,
                        bits,
                        peers,
                    }) => {
                        if let Some(s) = f.sources.get_mut(&peer) {
                            s.map_pending = false;
                            s.chunks = if complete {
                                None
                            } else {
                                Some(unpack_bits(&bits, n))
                            };
                        }
                        // Members of the swarm we did not know: ask for their maps at once.
                        let known = f.sources.len();
                        self.add_holders(fid, peers);
                        if let Some(f) = self.fetches.get_mut(&fid)
                            && f.sources.len() > known
                        {
                            f.next_map_refresh = now;
                        }
                    }
                    Ok(Response::NotFound) | Ok(Response::Busy { .. }) => {
                        if let Some(s) = f.sources.get_mut(&peer) {
                            s.map_pending = false;
                            s.failures += 1;
                        }
                    }
                    _ => f.drop_source(&peer),
                }
                self.drive_fetch(now, fid);
            }
            Pending::AsMap => {
                // Only the configured seeders say which map to use, never a peer's claim.
                if let Ok(Response::AsMap { current: Some(map) }) = result
                    && self.is_seeder(&peer)
                    && self.maps.on_announce(map)
                {
                    self.outputs.push_back(Output::AsMapOffered { map });
                }
            }
            Pending::Other => {
                if result.is_err() {
                    self.routing.failed(&peer);
                }
            }
        }
    }

    fn routing_touch(&mut self, peer: &P, now: u64) {
        if let Some(c) = self.supernodes.get(peer) {
            let c = c.clone();
            self.routing.insert(c, now);
        }
    }

    fn add_holders(&mut self, fid: FetchId, holders: Vec<Holder<P>>) {
        let own = self.cfg.own.peer.clone();
        let mut add = Vec::new();
        for h in holders {
            if h.contact.peer == own || self.banned.contains(&h.contact.peer) {
                continue;
            }
            let p = self.locality.proximity(h.contact.ip, None);
            let seeder = self.is_seeder(&h.contact.peer);
            add.push((h, p, seeder));
        }
        if let Some(f) = self.fetches.get_mut(&fid) {
            for (h, p, seeder) in add {
                f.add_source(h.contact, p, seeder, h.complete || seeder);
            }
        }
    }

    /// Advances a fetch: manifest, chunk maps, chunk requests, hedging, completion, failure.
    fn drive_fetch(&mut self, now: u64, fid: FetchId) {
        let window = self.cfg.chunk_window;
        let stall = self.cfg.timing.stall_ms;
        let refresh = self.cfg.timing.chunk_map_refresh_ms;
        let Some(f) = self.fetches.get_mut(&fid) else {
            return;
        };
        let object = f.object;
        // Hedge: seeders join once the deadline passes, or when nothing else is pending.
        let nothing_pending = f.locates_pending == 0 && !f.lookup_pending;
        let peers_failed = f.manifest.is_none()
            && f.manifest_in_flight == 0
            && f.sources.values().all(|s| s.is_seeder || s.manifest_tried);
        if !f.seeders_asked()
            && (now >= f.hedge_at || (nothing_pending && (!f.has_peer_sources() || peers_failed)))
        {
            f.seeders_asked_at = Some(now);
            let picked: Vec<Contact<P>> = {
                let all: Vec<&P> = self.cfg.seeders.iter().map(|c| &c.peer).collect();
                seeders_for(&object, all, self.cfg.replication)
                    .into_iter()
                    .filter_map(|p| self.cfg.seeders.iter().find(|c| &c.peer == p).cloned())
                    .filter(|c| c.peer != self.cfg.own.peer && !self.banned.contains(&c.peer))
                    .collect()
            };
            let Some(f) = self.fetches.get_mut(&fid) else {
                return;
            };
            for s in &picked {
                let p = self.locality.proximity(s.ip, None);
                f.add_source(s.clone(), p, true, true);
            }
            // Ask the first seeder for nearby holders as well (it knows recent fetchers).
            if self.cfg.strategy != Strategy::SeederOnly {
                self.locate_at_first_seeder(fid, object);
            }
        }
        let Some(f) = self.fetches.get_mut(&fid) else {
            return;
        };
        // The neighbourhood named only holders outside our AS: the object's first seeder
        // indexes holders of every AS (their `Holding` reports and recent fetches), so ask it
        // before the first chunk goes far (chunks wait for the answer, see below).
        let only_far = f.locates_pending == 0
            && !f.seeder_located
            && f.in_flight.is_empty()
            && f.has_peer_sources()
            && !f.has_near_source();
        if only_far && self.cfg.strategy == Strategy::Nearcast {
            self.locate_at_first_seeder(fid, object);
        }
        let Some(f) = self.fetches.get_mut(&fid) else {
            return;
        };
        if f.manifest.is_none() {
            // One request, hedged every `hedge_ms` by another while none answers (a listed
            // holder may be gone and take a transport timeout to fail); the third goes to a
            // seeder once seeders are asked.
            let hedge = f.manifest_in_flight > 0
                && f.manifest_in_flight < MAX_MANIFEST_REQUESTS
                && now >= f.manifest_asked_at + self.cfg.timing.hedge_ms;
            if f.manifest_in_flight == 0 || hedge {
                // A seeder's manifest of a small object is the object: while a `Locate` may
                // still name a peer holder, wait for it (up to `hedge_ms`).
                let allow_seeders = f.seeders_asked_at.is_some_and(|at| {
                    f.locates_pending == 0 || now >= at + self.cfg.timing.hedge_ms
                });
                let seeders_first = allow_seeders && f.manifest_requests >= 2;
                if let Some(src) = f.next_manifest_source(allow_seeders, seeders_first) {
                    f.manifest_in_flight += 1;
                    f.manifest_requests += 1;
                    f.manifest_asked_at = now;
                    self.send(src, Request::GetManifest { object }, Pending::Manifest(fid));
                }
            }
        } else {
            f.expire_in_flight(now, self.cfg.timing.chunk_timeout_ms);
            f.end_pauses(now);
            if now >= f.next_map_refresh {
                f.next_map_refresh = now + refresh;
                // Sources whose map we lack first (they hold up the farther ones), then nearest.
                let mut partial: Vec<(bool, Proximity, Contact<P>)> = f
                    .sources
                    .values()
                    .filter(|s| s.chunks.is_some() && !s.map_pending)
                    .map(|s| {
                        let mapped = s.chunks.as_ref().is_some_and(|m| !m.is_empty());
                        (mapped, s.proximity, s.contact.clone())
                    })
                    .collect();
                partial.sort_by_key(|a| (a.0, a.1));
                partial.truncate(MAPS_PER_REFRESH);
                for (_, _, c) in &partial {
                    if let Some(s) = f.sources.get_mut(&c.peer) {
                        s.map_pending = true;
                    }
                }
                for (_, _, c) in partial {
                    self.send(
                        c,
                        Request::GetChunkMap {
                            me: self.cfg.own.clone(),
                            object,
                        },
                        Pending::ChunkMap(fid),
                    );
                }
            }
            let Some(f) = self.fetches.get_mut(&fid) else {
                return;
            };
            // Only farther holders known yet and a `Locate` still out (a parent in our AS may
            // answer a moment later): wait for it, until `hedge_ms` after the start at most,
            // rather than hand every chunk to the first far holder named.
            let deadline = f.started + self.cfg.timing.hedge_ms;
            let wait_near = f.in_flight.is_empty()
                && f.locates_pending > 0
                && now < deadline
                && !f.has_near_source();
            f.near_wait_until = wait_near.then_some(deadline);
            let planned = if wait_near {
                Vec::new()
            } else {
                f.schedule(now, window, &mut self.rng)
            };
            for (from, index) in planned {
                self.outputs.push_back(Output::FetchChunk {
                    fetch: fid,
                    from,
                    object,
                    index,
                });
            }
        }
        let Some(f) = self.fetches.get_mut(&fid) else {
            return;
        };
        if f.is_complete() {
            let f = self.take_fetch(fid).expect("present");
            self.finish_fetch(now, fid, f);
            return;
        }
        let idle = f.in_flight.is_empty() && f.manifest_in_flight == 0;
        let no_sources = f.sources.is_empty()
            || (f.manifest.is_none() && f.sources.values().all(|s| s.manifest_tried));
        let waiting = f.locates_pending > 0 || f.lookup_pending || !f.seeders_asked();
        let stalled = now.saturating_sub(f.last_progress) > stall;
        if (idle && no_sources && !waiting) || stalled {
            let error = if stalled {
                FetchError::Stalled(stall)
            } else {
                f.no_source_error()
            };
            self.take_fetch(fid);
            self.outputs.push_back(Output::FetchFailed {
                fetch: fid,
                object,
                error,
            });
        }
    }

    fn take_fetch(&mut self, fid: FetchId) -> Option<Fetch<P>> {
        remove_freeing(&mut self.fetches, &fid)
    }

    fn finish_fetch(&mut self, now: u64, fid: FetchId, f: Fetch<P>) {
        self.object_stored(f.object);
        if self.role.is_server() {
            // A supernode answers `Locate` for its own copies too.
            let me = self.cfg.own.clone();
            self.holders
                .add(f.object, me, self.locality.own_asn(), true, u64::MAX);
        }
        let first = f.first_byte_at.unwrap_or(now).saturating_sub(f.started);
        self.outputs.push_back(Output::FetchDone {
            fetch: fid,
            object: f.object,
            bytes: f.bytes,
            first_byte_ms: first,
        });
        // The parents already index us as a fetcher of it (from our `Locate`); the next
        // heartbeat's `Have` marks the copy complete. The object's seeder hears of it now.
        self.tell_seeder(f.object);
        if self.hot.is_hot(&f.object, now) {
            self.announce(now, f.object);
        }
    }

    /// A seeder records `holder` as holding `object`, one of the seeder's own objects (ids it
    /// does not serve are ignored, which bounds the index by the seeder's catalogue).
    fn index_last_resort(&mut self, now: u64, object: ObjectId, holder: &Contact<P>) {
        if !self.holdings.contains(&object) {
            return;
        }
        let asn = self.locality.asn_of(holder.ip);
        let until = now + self.seeder_index_ttl();
        self.holders.add(object, holder.clone(), asn, true, until);
    }

    fn seeder_down(&self, peer: &P) -> bool {
        self.seeders_down
            .get(peer)
            .is_some_and(|f| *f >= SEEDER_DOWN_AFTER)
    }

    /// Brings the next report of our holdings to their seeders forward to within a minute
    /// (spread, so that holders do not all tell at once): the first seeder of some objects
    /// changed.
    fn retell_holdings_soon(&mut self, now: u64) {
        let soon = now + self.rng.below(SEEDER_DOWN_TELL_SPREAD_MS);
        self.next_holding_tell = self.next_holding_tell.min(soon);
    }

    /// Tells each object's first seeder which of its objects we hold, early in a session (copies
    /// kept from earlier sessions, which no seeder indexes any more) and then every half index
    /// lifetime, so that a seeder's entries outlive a holder by at most that lifetime.
    fn tell_seeders_holdings(&mut self, now: u64) {
        let every = self.seeder_index_ttl() / 2;
        self.next_holding_tell = now + self.rng.jitter(every, 0.2).max(1);
        if !self.tells_seeders() || self.holdings.is_empty() {
            return;
        }
        let mut by_seeder: BTreeMap<P, (Contact<P>, Vec<ObjectId>)> = BTreeMap::new();
        for object in &self.holdings {
            if let Some(to) = self.first_seeder(object) {
                by_seeder
                    .entry(to.peer.clone())
                    .or_insert_with(|| (to, Vec::new()))
                    .1
                    .push(*object);
            }
        }
        for (seeder, (to, objects)) in by_seeder {
            if self.banned.contains(&seeder) {
                continue;
            }
            for batch in objects.chunks(MAX_HAVE) {
                let me = self.cfg.own.clone();
                self.send(
                    to.clone(),
                    Request::Holding {
                        me,
                        objects: batch.to_vec(),
                    },
                    Pending::Other,
                );
            }
        }
    }

    /// The first of `object`'s seeders (rendezvous order) that was not found unreachable
    /// lately: every node passes over the same ones, so holders and fetchers still meet at
    /// one, and one seeder's outage does not leave its objects without an index.
    fn first_seeder(&self, object: &ObjectId) -> Option<Contact<P>> {
        let all = self.cfg.seeders.iter().map(|c| &c.peer);
        let order = seeders_for(object, all, self.cfg.replication.max(1));
        let first = order
            .iter()
            .find(|p| !self.seeder_down(p))
            .or(order.first())?;
        self.cfg.seeders.iter().find(|c| &c.peer == *first).cloned()
    }

    /// Whether this node reports its copies to seeders (dialable peers of the strategies that
    /// use holder indexes).
    fn tells_seeders(&self) -> bool {
        self.role != Role::Seeder
            && self.cfg.own.port != 0
            && !matches!(
                self.cfg.strategy,
                Strategy::SeederOnly | Strategy::RandomSwarm
            )
    }

    /// Whether a seeder parent learns our holdings from our `Have` reports: only in the
    /// random-swarm baseline, which has no supernodes and tells seeders nothing otherwise (no
    /// `Holding`, no `AddProvider`), so its seeder parent's index is all it has.
    fn seeder_parent_indexes_us(&self) -> bool {
        self.cfg.strategy == Strategy::RandomSwarm
    }

    /// How long a seeder keeps a holder it was told of: about as long as caches keep objects
    /// (a peer that comes back with its cache is a holder again).
    fn seeder_index_ttl(&self) -> u64 {
        self.cfg.timing.provider_ttl_ms
    }

    /// Tells the object's first seeder that we hold it, so that fetchers in other
    /// neighbourhoods, whose supernodes do not index us, find our copy before a seeder serves
    /// them. One request per completed fetch (a seeder parent is told so too: `Have` carries
    /// no holdings to a seeder).
    fn tell_seeder(&mut self, object: ObjectId) {
        if !self.tells_seeders() {
            return;
        }
        let Some(to) = self.first_seeder(&object) else {
            return;
        };
        if self.banned.contains(&to.peer) {
            return;
        }
        let provider = self.cfg.own.clone();
        self.send(
            to,
            Request::AddProvider { object, provider },
            Pending::Other,
        );
    }

    fn announce(&mut self, now: u64, object: ObjectId) {
        let due = self.announced.until(&object).is_none_or(|t| now >= t);
        if !due || self.cfg.own.port == 0 {
            return;
        }
        self.announced
            .insert(object, (), now + self.cfg.timing.provider_ttl_ms / 2);
        self.stats.announces += 1;
        self.start_lookup(
            now,
            Key::for_object(&object),
            LookupKind::Announce(object),
            None,
        );
    }

    fn start_lookup(&mut self, now: u64, target: Key, kind: LookupKind, fetch: Option<FetchId>) {
        let mut seeds = self.routing.closest(&target, LOOKUP_K);
        if seeds.len() < 3 {
            for p in self.parents.values() {
                seeds.push(p.contact.clone());
            }
            for s in self.cfg.seeders.iter() {
                if s.peer != self.cfg.own.peer {
                    seeds.push(s.clone());
                }
            }
        }
        seeds.retain(|c| !self.banned.contains(&c.peer));
        let lid = self.next_lookup;
        self.next_lookup += 1;
        self.lookups
            .insert(lid, Lookup::new(target, kind, seeds, now));
        if let Some(f) = fetch {
            self.lookup_fetch.insert(lid, f);
        }
        self.step_lookup(now, lid);
    }

    fn step_lookup(&mut self, now: u64, lid: u64) {
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        let asks = l.next_to_ask();
        let kind = l.kind;
        let target = l.target;
        for c in asks {
            let req = match kind {
                LookupKind::Providers(object) => Request::GetProviders { object },
                _ => Request::FindNode { target },
            };
            self.send(c, req, Pending::Lookup(lid));
        }
        let done = self.lookups.get(&lid).is_some_and(|l| l.done());
        let in_flight = self
            .pending
            .values()
            .any(|(_, p)| matches!(p, Pending::Lookup(x) if *x == lid));
        if done || !in_flight {
            self.finish_lookup(now, lid);
        }
    }

    fn finish_lookup(&mut self, now: u64, lid: u64) {
        let Some(l) = remove_freeing(&mut self.lookups, &lid) else {
            return;
        };
        self.stats.lookups_done += 1;
        self.stats.lookup_hops += l.hops as u64;
        if !l.providers.is_empty() {
            self.stats.lookups_found += 1;
        }
        match l.kind {
            LookupKind::Nodes => {}
            LookupKind::Announce(object) => {
                let me = self.cfg.own.clone();
                for c in l.closest_replied(LOOKUP_K) {
                    self.send(
                        c,
                        Request::AddProvider {
                            object,
                            provider: me.clone(),
                        },
                        Pending::Other,
                    );
                }
            }
            LookupKind::Providers(_) => {
                if let Some(fid) = self.lookup_fetch.remove(&lid) {
                    let holders = l
                        .providers
                        .iter()
                        .map(|c| Holder {
                            contact: c.clone(),
                            complete: true,
                        })
                        .collect();
                    self.add_holders(fid, holders);
                    if let Some(f) = self.fetches.get_mut(&fid) {
                        f.lookup_pending = false;
                    }
                    self.drive_fetch(now, fid);
                }
            }
        }
    }

    fn on_lookup_response(
        &mut self,
        now: u64,
        lid: u64,
        peer: &P,
        result: Result<Response<P>, RequestError>,
    ) {
        match result {
            Ok(Response::Nodes { closer }) => {
                self.learn_servers(now, peer, &closer);
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.on_reply(peer, closer, Vec::new());
                }
            }
            Ok(Response::Providers { providers, closer }) => {
                self.learn_servers(now, peer, &closer);
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.on_reply(peer, closer, providers);
                }
            }
            _ => {
                self.routing.failed(peer);
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.on_failure(peer);
                }
            }
        }
        self.step_lookup(now, lid);
    }

    fn learn_servers(&mut self, now: u64, from: &P, closer: &[Contact<P>]) {
        if self.role.is_server() {
            if let Some(c) = self.lookups_contact(from) {
                self.routing.insert(c, now);
            }
            for c in closer {
                if c.peer != self.cfg.own.peer && !self.banned.contains(&c.peer) {
                    self.routing.insert(c.clone(), now);
                }
            }
        }
    }

    fn lookups_contact(&self, peer: &P) -> Option<Contact<P>> {
        self.supernodes.get(peer).cloned()
    }

    // ----- attachment and election -----

    fn on_attach_response(
        &mut self,
        now: u64,
        peer: &P,
        result: Result<Response<P>, RequestError>,
    ) {
        self.attaching.remove(peer);
        match result {
            Ok(Response::Attached { supernodes }) => {
                self.attach_failures = 0;
                if let Some(c) = self.supernodes.get(peer) {
                    let c = c.clone();
                    if self.role == Role::Leaf {
                        let new_parent = self
                            .parents
                            .insert(
                                peer.clone(),
                                Parent {
                                    contact: c,
                                    last_ok: now,
                                },
                            )
                            .is_none();
                        // Tell a new supernode parent what we hold. A seeder parent is not
                        // told: it learns holders of its own objects from `Holding` and
                        // `AddProvider`, which reach each object's first seeder (a leaf passing
                        // through a seeder used to send it every id it held, twice the `Have`
                        // traffic of the overlay for nothing the other seeders learnt).
                        let listed = !self.is_seeder(peer) || self.seeder_parent_indexes_us();
                        let added: Vec<ObjectId> = if new_parent && listed {
                            self.holdings.iter().take(MAX_HAVE).copied().collect()
                        } else {
                            Vec::new()
                        };
                        if !added.is_empty() {
                            let to = self.parents[peer].contact.clone();
                            self.send(
                                to,
                                Request::Have {
                                    added,
                                    removed: Vec::new(),
                                },
                                Pending::Heartbeat,
                            );
                        }
                    }
                }
                self.learn_supernodes(now, supernodes);
                self.trim_parents();
            }
            Ok(Response::Busy { alternatives }) => {
                // A full supernode stays full for a while: one that would only have replaced
                // a parent we have is left alone for longer (else every leaf near it asks
                // again each heartbeat, and all but a few are turned away).
                let want = self.cfg.parents.clamp(2, 4);
                let heartbeats = if self.parents.len() >= want {
                    2 * BUSY_SUPERNODE_AVOIDED_HEARTBEATS
                } else {
                    BUSY_SUPERNODE_AVOIDED_HEARTBEATS
                };
                self.refused.insert(
                    peer.clone(),
                    (),
                    now + heartbeats * self.cfg.timing.heartbeat_ms,
                );
                self.learn_supernodes(now, alternatives);
                self.attach_failures += 1;
                self.next_attach = now + self.backoff();
            }
            _ => {
                self.refused
                    .insert(peer.clone(), (), now + self.cfg.timing.heartbeat_ms);
                if !self.is_seeder(peer) {
                    self.supernodes.remove(peer);
                }
                self.attach_failures += 1;
                self.next_attach = now + self.backoff();
            }
        }
    }

    fn learn_supernodes(&mut self, now: u64, list: Vec<Contact<P>>) {
        let until = now + 3 * self.cfg.timing.heartbeat_ms;
        for c in list.into_iter().take(MAX_CONTACTS) {
            if c.peer == self.cfg.own.peer || self.banned.contains(&c.peer) || c.port == 0 {
                continue;
            }
            let keep = self.supernodes.until(&c.peer).unwrap_or(0).max(until);
            if self.role.is_server() {
                self.routing.insert(c.clone(), now);
            }
            self.supernodes.insert(c.peer.clone(), c, keep);
        }
    }

    fn backoff(&mut self) -> u64 {
        let t = &self.cfg.timing;
        if !self.cfg.defences {
            return t.backoff_base_ms / 10;
        }
        let exp = t
            .backoff_base_ms
            .saturating_mul(1 << self.attach_failures.min(16))
            .min(t.backoff_max_ms);
        self.rng.jitter(exp, 0.5)
    }

    fn schedule_reattach(&mut self, now: u64) {
        self.next_attach = self.next_attach.min(now + self.backoff());
    }

    /// Keeps the nearest parents; seeders only while no nearer supernode is there.
    fn trim_parents(&mut self) {
        let want = self.cfg.parents.clamp(2, 4);
        let mut ranked: Vec<((bool, Proximity), P)> = self
            .parents
            .values()
            .map(|p| {
                (
                    (
                        self.is_seeder(&p.contact.peer),
                        self.locality.proximity(p.contact.ip, None),
                    ),
                    p.contact.peer.clone(),
                )
            })
            .collect();
        ranked.sort();
        let non_seeders = ranked.iter().filter(|r| !r.0.0).count();
        let mut drop = Vec::new();
        for (i, (key, peer)) in ranked.iter().enumerate() {
            if i >= want || (key.0 && non_seeders >= 2) {
                drop.push(peer.clone());
            }
        }
        for peer in drop {
            if let Some(p) = self.parents.remove(&peer) {
                self.send(p.contact, Request::Detach, Pending::Other);
            }
        }
    }

    /// The instant the node next needs [`Node::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.next_maintenance;
        for f in self.fetches.values() {
            if !f.seeders_asked() {
                t = t.min(f.hedge_at);
            }
            if let Some(until) = f.near_wait_until {
                t = t.min(until);
            }
            if let Some(at) = f.seeders_asked_at
                && f.manifest.is_none()
                && f.manifest_in_flight == 0
                && f.locates_pending > 0
                && f.has_manifest_candidate(true)
            {
                t = t.min(at + self.cfg.timing.hedge_ms);
            }
            if f.manifest.is_none()
                && f.manifest_in_flight > 0
                && f.manifest_in_flight < MAX_MANIFEST_REQUESTS
            {
                // The next hedge, when `drive_fetch` will have someone to send it to: a peer
                // at once, a seeder only once a pending `Locate` had `hedge_ms` to answer.
                let hedge = f.manifest_asked_at + self.cfg.timing.hedge_ms;
                if f.has_manifest_candidate(false) {
                    t = t.min(hedge);
                } else if let Some(at) = f.seeders_asked_at
                    && f.has_manifest_candidate(true)
                {
                    let seeders_allowed = if f.locates_pending == 0 {
                        at
                    } else {
                        at + self.cfg.timing.hedge_ms
                    };
                    t = t.min(hedge.max(seeders_allowed));
                }
            }
            if f.manifest.is_some() && f.sources.values().any(|s| s.chunks.is_some()) {
                t = t.min(f.next_map_refresh);
            }
            if let Some(end) = f.next_pause_end() {
                t = t.min(end);
            }
            t = t.min(f.last_progress + self.cfg.timing.stall_ms + 1);
            if let Some((_, at)) = f.in_flight.values().min_by_key(|(_, at)| *at) {
                t = t.min(at + self.cfg.timing.chunk_timeout_ms + 1);
            }
        }
        Some(t)
    }

    /// Timers: fetch deadlines and periodic maintenance.
    pub fn handle_timeout(&mut self, now: u64) {
        let ids: Vec<FetchId> = self.fetches.keys().copied().collect();
        for id in ids {
            self.drive_fetch(now, id);
        }
        if now >= self.next_maintenance {
            self.maintain(now);
            // A settled leaf's housekeeping waits for its next heartbeat: it has little to do
            // (look for a better parent, report copies to seeders when due), and the heartbeat
            // is when its parents hear from it anyway.
            let heartbeat = self.next_heartbeat.max(now + 1);
            self.next_maintenance = if self.settled_leaf() {
                heartbeat
            } else {
                (now + self.rng.jitter(self.cfg.timing.maintenance_ms, 0.1).max(1)).min(heartbeat)
            };
        }
    }

    /// A leaf with all the parents it wants, attaching to nobody and not about to promote
    /// itself: its housekeeping can wait until its next heartbeat or a few periods.
    fn settled_leaf(&self) -> bool {
        self.role == Role::Leaf
            && self.parents.len() >= self.cfg.parents.clamp(2, 4)
            && self.attaching.is_empty()
            && self.promote_at.is_none()
    }

    fn maintain(&mut self, now: u64) {
        let hb = self.cfg.timing.heartbeat_ms;
        while let Some((end, _)) = self.ban_ends.front()
            && *end <= now
        {
            if let Some((_, peer)) = self.ban_ends.pop_front() {
                self.banned.remove(&peer);
            }
        }
        // An announcement whose time has passed means the same as none.
        self.announced.sweep(now);
        self.hot.sweep(now);
        self.refused.sweep(now);
        let down = |n: &Self| {
            n.seeders_down
                .values()
                .filter(|f| **f >= SEEDER_DOWN_AFTER)
                .count()
        };
        let before = down(self);
        self.seeders_down.sweep(now);
        if down(self) < before {
            // A seeder passed over is first again for its objects: tell it our copies soon.
            self.retell_holdings_soon(now);
        }
        self.supernodes.sweep(now);
        // Children silent for three heartbeats are gone.
        let silent: Vec<P> = self
            .children
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_heard) > 3 * hb)
            .map(|(p, _)| p.clone())
            .collect();
        for p in silent {
            self.drop_child(&p);
        }
        self.holders.expire(now);
        self.providers.expire(now);
        if now >= self.next_holding_tell {
            self.tell_seeders_holdings(now);
        }
        if self.maps.follows() && now >= self.maps.next_check {
            self.maps.next_check =
                now + self.rng.jitter(self.cfg.timing.asmap_check_ms, 0.2).max(1);
            let seeders: Vec<Contact<P>> = self
                .cfg
                .seeders
                .iter()
                .filter(|s| s.peer != self.cfg.own.peer && !self.banned.contains(&s.peer))
                .cloned()
                .collect();
            for s in seeders {
                self.send(s, Request::GetAsMap, Pending::AsMap);
            }
        }
        match self.role {
            Role::Leaf => {
                if self.cfg.strategy != Strategy::SeederOnly {
                    self.maintain_parents(now);
                }
                self.consider_promotion(now);
            }
            Role::Supernode => self.maintain_supernode(now),
            Role::Seeder => {}
        }
        let heartbeat = now >= self.next_heartbeat;
        if heartbeat {
            self.next_heartbeat = now + self.rng.jitter(hb, 0.2).max(1);
            self.flush_have(now);

            // Kademlia-style bucket refresh: a server's routing table is fed by every request
            // it serves, so a self-lookup every few minutes is enough.
            self.heartbeats += 1;
            if self.role.is_server() && self.heartbeats.is_multiple_of(SELF_LOOKUP_EVERY) {
                self.start_lookup(now, self.cfg.own.peer.key(), LookupKind::Nodes, None);
            }
            for object in self.hot.hot(now) {
                if self.holdings.contains(&object) {
                    self.announce(now, object);
                }
            }
        }
        // A leaf still without two supernode parents asks a seeder again who serves near it:
        // supernodes promoted after we attached are learnt this way. At each heartbeat, and
        // every half heartbeat while it has no supernode parent at all.
        if self.role == Role::Leaf && self.cfg.strategy != Strategy::SeederOnly {
            let non_seeders = self.parents.keys().filter(|p| !self.is_seeder(p)).count();
            let due = match non_seeders {
                0 => now >= self.next_supernode_ask,
                1 => heartbeat,
                _ => false,
            };
            if due {
                self.next_supernode_ask = now + hb / 2;
                self.ask_seeder_for_supernodes();
            }
        }
    }

    /// Sends pending holding changes to every supernode parent, or an empty heartbeat to those
    /// (and to a seeder parent) that have not answered a request of ours since the last one.
    fn flush_have(&mut self, now: u64) {
        let added: Vec<ObjectId> = std::mem::take(&mut self.have_added);
        let removed: Vec<ObjectId> = std::mem::take(&mut self.have_removed);
        let since = std::mem::replace(&mut self.last_heartbeat, now);
        if self.role != Role::Leaf {
            return;
        }
        // Nothing to report: a parent that answered a `Locate` or heartbeat of ours since the
        // last heartbeat has heard from us (and we from it), so it needs no empty one.
        let nothing = added.is_empty() && removed.is_empty();
        let parents: Vec<(bool, Contact<P>)> = self
            .parents
            .values()
            .map(|p| {
                let listed = !self.is_seeder(&p.contact.peer) || self.seeder_parent_indexes_us();
                (listed, p)
            })
            .filter(|(listed, p)| !((nothing || !*listed) && p.last_ok > since))
            .map(|(listed, p)| (listed, p.contact.clone()))
            .collect();
        for (listed, p) in parents {
            // A seeder parent (unless it indexes us) gets the heartbeat without the changes.
            let (added, removed): (&[ObjectId], &[ObjectId]) = if listed {
                (&added, &removed)
            } else {
                (&[], &[])
            };
            for chunk_start in (0..added.len().max(1)).step_by(MAX_HAVE) {
                let a: Vec<ObjectId> = added
                    .iter()
                    .skip(chunk_start)
                    .take(MAX_HAVE)
                    .copied()
                    .collect();
                let r = if chunk_start == 0 {
                    removed.iter().take(MAX_HAVE).copied().collect()
                } else {
                    Vec::new()
                };
                self.send(
                    p.clone(),
                    Request::Have {
                        added: a,
                        removed: r,
                    },
                    Pending::Heartbeat,
                );
            }
        }
    }

    fn maintain_parents(&mut self, now: u64) {
        let want = self.cfg.parents.clamp(2, 4);
        if now < self.next_attach || !self.attaching.is_empty() {
            return;
        }
        // Candidates: known servers, nearest first, not already parents.
        let rank = |c: &Contact<P>| (self.is_seeder(&c.peer), self.locality.proximity(c.ip, None));
        let candidates = || {
            self.supernodes
                .values()
                .filter(|c| {
                    !self.parents.contains_key(&c.peer) && !self.refused.contains_key(&c.peer)
                })
                .map(|c| (rank(c), c))
        };
        let mut slots = want.saturating_sub(self.parents.len());
        // One better candidate may replace the worst parent. With every slot taken (most of
        // the time) only the best candidate matters, and no list is built.
        if slots == 0 {
            let best =
                candidates().min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.peer.cmp(&b.1.peer)));
            let worst = self.parents.values().map(|p| rank(&p.contact)).max();
            match (best, worst) {
                (Some((best, _)), Some(worst)) if best < worst && best.1.tier < worst.1.tier => {
                    slots = 1
                }
                _ => return,
            }
        }
        let mut cands: Vec<((bool, Proximity), Contact<P>)> =
            candidates().map(|(r, c)| (r, c.clone())).collect();
        cands.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.peer.cmp(&b.1.peer)));
        // A seeder is a parent of last resort, and one is enough: it answers with the
        // supernodes near us, which we attach to next. A leaf that took every seeder at once
        // would fill all of them (and send each its holdings) at every start.
        let mut seeder_taken = self.parents.keys().any(|p| self.is_seeder(p));
        let mut sent = 0;
        for ((is_seeder, _), c) in cands {
            if sent == slots {
                break;
            }
            if is_seeder {
                if seeder_taken {
                    continue;
                }
                seeder_taken = true;
            }
            sent += 1;
            self.attaching.insert(c.peer.clone());
            self.send_attach(c);
        }
        if slots > 0 {
            self.next_attach = now + self.backoff().max(self.cfg.timing.maintenance_ms);
        }
    }

    fn consider_promotion(&mut self, now: u64) {
        let t = &self.cfg.timing;
        let eligible = self.cfg.may_promote
            && self.reachable
            && self.cfg.own.port != 0
            && now.saturating_sub(self.started) >= t.promote_after_ms
            && self.served_rate.rate(now) < 0.5 * self.cfg.upload_bytes_per_s;
        if !eligible {
            self.promote_at = None;
            return;
        }
        // Promote when no supernode with room is near us (same AS or nearer). Our own parents
        // count too: learned supernodes expire after three heartbeats, parents do not.
        let near = |c: &Contact<P>| {
            !self.is_seeder(&c.peer)
                && !self.refused.contains_key(&c.peer)
                && self.locality.proximity(c.ip, None).tier <= 1
        };
        let near_supernode =
            self.supernodes.values().any(near) || self.parents.values().any(|p| near(&p.contact));
        if near_supernode {
            self.promote_at = None;
            return;
        }
        // Two phases, spread by jitter: at a random moment ask a seeder (which knows every
        // registered supernode) who serves near us; one maintenance period later, promote if
        // still nobody does. Peers of one AS racing to promote thus see the first one.
        let maintenance = t.maintenance_ms;
        match self.promote_at {
            None => {
                self.promote_asked = false;
                self.promote_at = Some(now + self.rng.below(4 * maintenance + 1));
            }
            Some(at) if now >= at && !self.promote_asked => {
                self.promote_asked = true;
                self.promote_at = Some(now + maintenance);
                self.ask_seeder_for_supernodes();
            }
            Some(at) if now >= at => self.become_supernode(now),
            Some(_) => {}
        }
    }

    /// Re-sends `Attach` to a seeder (a parent if one is) to learn the supernodes near us.
    fn ask_seeder_for_supernodes(&mut self) {
        // A seeder already being asked (attached to) will answer with them.
        if self.attaching.iter().any(|p| self.is_seeder(p)) {
            return;
        }
        let seeder = self
            .parents
            .values()
            .map(|p| p.contact.clone())
            .find(|c| self.is_seeder(&c.peer))
            .or_else(|| {
                let n = self.cfg.seeders.len() as u64;
                let i = self.rng.below(n) as usize;
                self.cfg.seeders.get(i).cloned()
            });
        let Some(s) = seeder else { return };
        if s.peer == self.cfg.own.peer || !self.attaching.insert(s.peer.clone()) {
            return;
        }
        self.send_attach(s);
    }

    /// Asks `to` to take us as a child leaf.
    fn send_attach(&mut self, to: Contact<P>) {
        let me = self.cfg.own.clone();
        let request = Request::Attach {
            me,
            role: Role::Leaf,
        };
        self.send(to, request, Pending::Attach);
    }

    fn become_supernode(&mut self, now: u64) {
        self.role = Role::Supernode;
        self.promote_at = None;
        self.few_children_since = None;
        self.outputs.push_back(Output::RoleChanged {
            role: Role::Supernode,
        });
        let parents: Vec<Contact<P>> = self.parents.values().map(|p| p.contact.clone()).collect();
        self.parents.clear();
        for p in parents {
            self.send(p, Request::Detach, Pending::Other);
        }
        // Holdings a parent indexed for us: we index them ourselves now.
        let me = self.cfg.own.clone();
        let objects: Vec<ObjectId> = self.holdings.iter().copied().collect();
        for o in objects {
            self.holders
                .add(o, me.clone(), self.locality.own_asn(), true, u64::MAX);
        }
        self.register(now);
        self.start_lookup(now, self.cfg.own.peer.key(), LookupKind::Nodes, None);
    }

    fn register(&mut self, _now: u64) {
        let me = self.cfg.own.clone();
        let seeders = self.cfg.seeders.clone();
        for s in seeders.iter().cloned() {
            self.send(
                s,
                Request::RegisterSupernode { me: me.clone() },
                Pending::Other,
            );
        }
    }

    fn maintain_supernode(&mut self, now: u64) {
        let t = &self.cfg.timing;
        let hb = t.heartbeat_ms;
        let demote_after = t.demote_after_ms;
        if now >= self.next_heartbeat {
            self.register(now);
        }
        let few = self.children.len() < 2;
        let other_near = self
            .supernodes
            .values()
            .any(|c| !self.is_seeder(&c.peer) && self.locality.proximity(c.ip, None).tier <= 1);
        let overloaded = self.served_rate.rate(now) > 0.9 * self.cfg.upload_bytes_per_s;
        if (few && other_near) || !self.reachable || overloaded {
            let since = *self.few_children_since.get_or_insert(now);
            if now.saturating_sub(since) >= demote_after || !self.reachable {
                self.step_down(now);
            }
        } else {
            self.few_children_since = None;
        }
        let _ = hb;
    }

    fn step_down(&mut self, now: u64) {
        self.role = Role::Leaf;
        self.outputs
            .push_back(Output::RoleChanged { role: Role::Leaf });
        let children: Vec<Contact<P>> = self.children.values().map(|c| c.contact.clone()).collect();
        self.children.clear();
        self.holders = HolderIndex::default().keyed(IdHashKey::from_seed(self.cfg.seed));
        self.routing = RoutingTable::new(self.cfg.own.peer.key());
        self.few_children_since = None;
        // Children find out at their next heartbeat (NotAttached) and re-attach.
        let _ = children;
        self.next_attach = now;
    }

    // ----- plumbing -----

    fn send(&mut self, to: Contact<P>, request: Request<P>, what: Pending) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.pending.insert(id, (to.peer.clone(), what));
        self.outputs.push_back(Output::Request { id, to, request });
    }

    /// Next effect for the driver.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// Requests the node is waiting on.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }
}

fn ranking_for(strategy: Strategy) -> Ranking {
    match strategy {
        Strategy::Nearcast | Strategy::SeederOnly => Ranking::Full,
        Strategy::PrefixOnly => Ranking::PrefixOnly,
        Strategy::RandomSwarm => Ranking::Blind,
    }
}
