//! One simulated run of one baseline: the peers, their protocol cores, the event loop, and the
//! bookkeeping every metric is computed from.
//!
//! The driver side of the core's API lives in `transport` (messages and chunks), `population`
//! (churn, joins, leaves, caches) and `faults`; this module owns the state and the loop.

use std::sync::Arc;

use nearcast_proto::node::NodeStats;
use nearcast_proto::{Contact, FetchId, Node, Strategy};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::catalogue::Catalogue;
use crate::fxhash::{FxHashMap, mix};
use crate::metrics::{Counters, Row};
use crate::net::{Place, Topology};
use crate::queue::{Class, Queue};
use crate::scenario::Scenario;

/// Simulated clock origin: one day in, so initial peers can have been up for a while.
pub const T0: u64 = 86_400_000;
pub const NO_TIMER: u64 = u64::MAX;

/// Everything that happens.
pub enum Ev {
    Timer { peer: u32, epoch: u32 },
    Resp(Box<crate::transport::RespEv>),
    Chunk(Box<crate::transport::ChunkEv>),
    Churn { peer: u32 },
    Unblock { peer: u32 },
    Request,
    NewObject,
    Sample,
    FaultStart(usize),
    FaultEnd(usize),
}

/// One simulated peer (or seeder) as the driver sees it.
pub struct Peer {
    pub node: Option<Box<Node<u32>>>,
    pub place: Place,
    /// Access bandwidth, bytes per ms.
    pub up: f32,
    pub down: f32,
    pub active_up: u16,
    pub active_down: u16,
    pub seeder: bool,
    pub nat: bool,
    pub always_on: bool,
    pub corrupt: bool,
    pub refusing: bool,
    pub blocked: bool,
    pub want_online: bool,
    pub supernode: bool,
    /// Index in `World::online` while online.
    pub online_pos: u32,
    /// Bumped at every departure: events of an earlier session are stale.
    pub sess: u32,
    pub churn_count: u32,
    pub epoch: u32,
    pub timer_at: u64,
    pub fired_at: u64,
    /// Cached objects, least recently used first.
    pub cache: Vec<u32>,
    pub cache_bytes: u64,
    /// Active fetches: (core's fetch id, slot in `World::recs`).
    pub fetches: Vec<(u64, u32)>,
}

impl Peer {
    pub fn online(&self) -> bool {
        self.node.is_some()
    }
}

/// The driver's record of one fetch.
#[derive(Clone, Default)]
pub struct FetchRec {
    pub peer: u32,
    pub object: u32,
    pub started: u64,
    pub bytes: [u64; 5],
    pub in_window: bool,
    pub has_manifest: bool,
    pub counted_fetching: bool,
    /// A live reachable peer held the object at request time.
    pub held_elsewhere: bool,
    /// Live reachable holders in the requester's AS at request time (more than 0: a copy existed there).
    pub in_as_holders: u32,
}

/// DHT and overlay counters summed over nodes (including departed ones).
#[derive(Clone, Copy, Default, Debug)]
pub struct DhtTotals {
    pub lookups: u64,
    pub hops: u64,
    pub found: u64,
    pub announces: u64,
    pub bans: u64,
    pub children_dropped_overload: u64,
    pub requests_busy: u64,
}

impl DhtTotals {
    pub fn add(&mut self, s: &NodeStats) {
        self.lookups += s.lookups_done;
        self.hops += s.lookup_hops;
        self.found += s.lookups_found;
        self.announces += s.announces;
        self.bans += s.bans;
        self.children_dropped_overload += s.children_dropped_overload;
        self.requests_busy += s.requests_busy;
    }

    pub fn minus(&self, o: &DhtTotals) -> DhtTotals {
        DhtTotals {
            lookups: self.lookups - o.lookups,
            hops: self.hops - o.hops,
            found: self.found - o.found,
            announces: self.announces - o.announces,
            bans: self.bans - o.bans,
            children_dropped_overload: self.children_dropped_overload - o.children_dropped_overload,
            requests_busy: self.requests_busy - o.requests_busy,
        }
    }
}

/// Fault bookkeeping.
#[derive(Default)]
pub struct FaultState {
    pub partition: Option<Vec<bool>>,
    /// Peers each fault took down, refused or corrupted (to undo at its end).
    pub affected: Vec<Vec<u32>>,
    pub start_ms: Vec<u64>,
    pub end_ms: Vec<u64>,
}

/// A run of one baseline.
pub struct World {
    pub sc: Scenario,
    pub strategy: Strategy,
    pub baseline: String,
    pub seed: u64,
    pub topo: Arc<Topology>,
    pub peers: Vec<Peer>,
    pub n_seeders: u32,
    pub seeder_contacts: Arc<[Contact<u32>]>,
    pub online: Vec<u32>,
    pub catalogue: Catalogue,
    pub q: Queue<Ev>,
    pub recs: Vec<FetchRec>,
    pub free_recs: Vec<u32>,
    pub dirty: Vec<u32>,
    pub work_rng: ChaCha8Rng,
    pub net_rng: ChaCha8Rng,
    pub fault_rng: ChaCha8Rng,
    pub measure_start: u64,
    pub end: u64,
    pub total: Counters,
    pub win: Counters,
    pub rows: Vec<Row>,
    pub dht_departed: DhtTotals,
    pub dht_at_start: Option<DhtTotals>,
    pub node_seconds: f64,
    pub faults: FaultState,
    pub supernodes: u32,
    pub max_supernodes: u32,
    pub cache_budget: u64,
    /// Ages of peers whose initial join is pending.
    pub pending_age: FxHashMap<u32, u64>,
    /// Exact time of the next workload arrival (fractional ms).
    pub next_request_f: f64,
    /// Events by kind (timer, request, response, chunk, other), for profiling.
    pub event_counts: [u64; 6],
    /// Requests by kind, for profiling.
    pub request_counts: [u64; 10],
    /// Objects listed in `Have` (added, removed) and `Holding` requests.
    pub listed_objects: [u64; 3],
    /// Leaf `Attach` requests by (to a seeder, already a parent, parents held 0..=3).
    pub attach_kinds: [u64; 16],
    /// Time spent per request kind and event kind (`NEARCAST_SIM_PROFILE` only).
    pub profile: bool,
    pub request_nanos: [u64; 10],
    pub event_nanos: [u64; 6],
    /// Seeder bytes of completed fetches whose object a live peer held at request time:
    /// [inline, chunked with no peer bytes, chunked with some peer bytes], for profiling.
    pub avoidable_seeder_bytes: [u64; 3],
    /// Profile: [other-AS, all peer] bytes of fetches with an in-AS copy, by in-AS holder count (1, 2–4, 5–16, more) and requester NAT.
    pub far_by_holders: [[u64; 2]; 8],
    /// Profile: Attach answers Attached/Busy/other, to supernode then seeder, from leaves then servers.
    pub attach_outcomes: [u64; 12],
}

impl World {
    /// Builds the world for one baseline. The topology is shared between baselines.
    pub fn new(
        sc: &Scenario,
        seed: u64,
        baseline: &str,
        topo: Arc<Topology>,
        places: &[Place],
    ) -> World {
        let strategy = match baseline {
            "seeder_only" => Strategy::SeederOnly,
            "random_swarm" => Strategy::RandomSwarm,
            "prefix_only" => Strategy::PrefixOnly,
            _ => Strategy::Nearcast,
        };
        let n_seeders = sc.protocol.seeders;
        let mut work_rng = ChaCha8Rng::seed_from_u64(mix(&[seed, 3]));
        let live = ((sc.peers as f64) * sc.workload.objects_per_peer) as usize;
        let catalogue = Catalogue::new(&sc.workload, live, &mut work_rng);
        let measure_start = T0 + (sc.warmup_min * 60_000.0) as u64;
        let end = measure_start + (sc.duration_min * 60_000.0) as u64;
        let mut w = World {
            sc: sc.clone(),
            strategy,
            baseline: baseline.to_string(),
            seed,
            topo,
            peers: Vec::with_capacity(places.len()),
            n_seeders,
            seeder_contacts: Arc::default(),
            online: Vec::new(),
            catalogue,
            q: Queue::new(),
            recs: Vec::new(),
            free_recs: Vec::new(),
            dirty: Vec::new(),
            work_rng,
            net_rng: ChaCha8Rng::seed_from_u64(mix(&[seed, 4, strategy as u64])),
            fault_rng: ChaCha8Rng::seed_from_u64(mix(&[seed, 5])),
            measure_start,
            end,
            total: Counters::default(),
            win: Counters::default(),
            rows: Vec::new(),
            dht_departed: DhtTotals::default(),
            dht_at_start: None,
            node_seconds: 0.0,
            faults: FaultState::default(),
            supernodes: 0,
            max_supernodes: 0,
            cache_budget: (sc.workload.cache_mib * 1024.0 * 1024.0) as u64,
            pending_age: FxHashMap::default(),
            next_request_f: T0 as f64,
            event_counts: [0; 6],
            request_counts: [0; 10],
            listed_objects: [0; 3],
            attach_kinds: [0; 16],
            profile: std::env::var_os("NEARCAST_SIM_PROFILE").is_some(),
            request_nanos: [0; 10],
            event_nanos: [0; 6],
            avoidable_seeder_bytes: [0; 3],
            far_by_holders: [[0; 2]; 8],
            attach_outcomes: [0; 12],
        };
        w.q.now = T0;
        w.populate(places);
        w
    }

    /// Runs to the end; `progress` is called now and then with (simulated ms done, events).
    pub fn run(&mut self, mut progress: impl FnMut(u64, u64)) {
        let sample_ms = (self.sc.sample_s * 1000.0) as u64;
        self.q.push(T0 + sample_ms, Class::Workload, Ev::Sample);
        self.q.push(T0, Class::Workload, Ev::Request);
        self.q.push(T0, Class::Workload, Ev::NewObject);
        for i in 0..self.sc.faults.len() {
            let f = &self.sc.faults[i];
            let at = self.measure_start + (f.at_min * 60_000.0) as u64;
            let until = at + (f.duration_min * 60_000.0) as u64;
            self.faults.start_ms.push(at);
            self.faults.end_ms.push(until);
            self.faults.affected.push(Vec::new());
            self.q.push(at, Class::Fault, Ev::FaultStart(i));
            if f.duration_min > 0.0 {
                self.q.push(until, Class::Fault, Ev::FaultEnd(i));
            }
        }
        let mut next_report = 0u64;
        while let Some(ev) = self.q.pop_until(self.end) {
            let now = self.q.now;
            if self.dht_at_start.is_none() && now >= self.measure_start {
                self.dht_at_start = Some(self.dht_totals());
            }
            self.handle(ev);
            self.flush();
            if self.q.popped >= next_report {
                next_report = self.q.popped + 50_000;
                progress(now - T0, self.q.popped);
            }
        }
        if self.dht_at_start.is_none() {
            self.dht_at_start = Some(self.dht_totals());
        }
        progress(self.end - T0, self.q.popped);
    }

    fn handle(&mut self, ev: Ev) {
        let kind = match &ev {
            Ev::Timer { .. } => 0,
            Ev::Resp(_) => 2,
            Ev::Chunk(_) => 3,
            _ => 4,
        };
        self.event_counts[kind] += 1;
        let t0 = self.profile.then(std::time::Instant::now);
        match ev {
            Ev::Timer { peer, epoch } => self.on_timer(peer, epoch),
            Ev::Resp(r) => self.on_resp(*r),
            Ev::Chunk(c) => self.on_chunk(*c),
            Ev::Churn { peer } => self.on_churn(peer),
            Ev::Unblock { peer } => self.unblock(peer),
            Ev::Request => self.on_workload(),
            Ev::NewObject => self.on_new_object(),
            Ev::Sample => self.on_sample(),
            Ev::FaultStart(i) => self.fault_start(i),
            Ev::FaultEnd(i) => self.fault_end(i),
        }
        if let Some(t0) = t0 {
            self.flush();
            self.event_nanos[kind] += t0.elapsed().as_nanos() as u64;
        }
    }

    fn on_timer(&mut self, peer: u32, epoch: u32) {
        let now = self.q.now;
        let p = &mut self.peers[peer as usize];
        if p.epoch != epoch {
            self.event_counts[5] += 1;
            return;
        }
        p.timer_at = NO_TIMER;
        p.fired_at = now;
        if let Some(node) = p.node.as_mut() {
            node.handle_timeout(now);
            self.dirty.push(peer);
        }
    }

    /// Drains the outputs of every node touched by the last event.
    pub fn flush(&mut self) {
        while let Some(p) = self.dirty.pop() {
            self.pump(p);
        }
    }

    fn pump(&mut self, peer: u32) {
        loop {
            let Some(node) = self.peers[peer as usize].node.as_mut() else {
                return;
            };
            let Some(out) = node.poll_output() else { break };
            self.on_output(peer, out);
        }
        self.reschedule(peer);
    }

    fn reschedule(&mut self, peer: u32) {
        let now = self.q.now;
        let p = &mut self.peers[peer as usize];
        let Some(node) = p.node.as_ref() else { return };
        let Some(mut t) = node.poll_timeout() else {
            return;
        };
        if t <= now {
            t = if p.fired_at == now { now + 1 } else { now };
        }
        // A timer already due earlier will do: handling a timeout early is harmless, and the
        // next one is scheduled after it.
        if p.timer_at > t {
            p.epoch = p.epoch.wrapping_add(1);
            p.timer_at = t;
            let epoch = p.epoch;
            self.q.push(t, Class::Protocol, Ev::Timer { peer, epoch });
        }
    }

    /// The driver's record of `peer`'s fetch `fid`.
    pub fn rec_of(&self, peer: u32, fid: FetchId) -> Option<u32> {
        self.peers[peer as usize]
            .fetches
            .iter()
            .find(|(f, _)| *f == fid.0)
            .map(|(_, r)| *r)
    }

    pub fn new_rec(&mut self, rec: FetchRec) -> u32 {
        if let Some(i) = self.free_recs.pop() {
            self.recs[i as usize] = rec;
            i
        } else {
            self.recs.push(rec);
            (self.recs.len() - 1) as u32
        }
    }

    /// Whether two peers cannot talk because of a partition.
    pub fn cut(&self, a: u32, b: u32) -> bool {
        match &self.faults.partition {
            None => false,
            Some(region) => {
                let ra = region[self.peers[a as usize].place.as_idx as usize];
                let rb = region[self.peers[b as usize].place.as_idx as usize];
                ra != rb
            }
        }
    }

    pub fn in_window(&self) -> bool {
        let now = self.q.now;
        now >= self.measure_start && now < self.end
    }

    /// DHT counters of all nodes so far.
    pub fn dht_totals(&self) -> DhtTotals {
        let mut t = self.dht_departed;
        for &p in &self.online {
            if let Some(n) = self.peers[p as usize].node.as_ref() {
                t.add(n.stats());
            }
        }
        for s in 0..self.n_seeders {
            if let Some(n) = self.peers[s as usize].node.as_ref() {
                t.add(n.stats());
            }
        }
        t
    }

    fn on_sample(&mut self) {
        let now = self.q.now;
        let sample_ms = (self.sc.sample_s * 1000.0) as u64;
        let mut supernodes = 0u64;
        let mut children = 0u64;
        let mut max_children = 0u64;
        let mut leaves = 0u64;
        let mut attached = 0u64;
        let mut attached_any = 0u64;
        for &p in &self.online {
            let Some(n) = self.peers[p as usize].node.as_ref() else {
                continue;
            };
            match n.role() {
                nearcast_proto::Role::Supernode => {
                    supernodes += 1;
                    let c = n.children() as u64;
                    children += c;
                    max_children = max_children.max(c);
                }
                _ => {
                    leaves += 1;
                    let parents = n.parents();
                    if !parents.is_empty() {
                        attached_any += 1;
                    }
                    if parents.iter().any(|c| c.peer >= self.n_seeders) {
                        attached += 1;
                    }
                }
            }
        }
        let online = self.online.len() as u64;
        if now > self.measure_start && now <= self.end {
            self.node_seconds += online as f64 * self.sc.sample_s;
        }
        let w = &self.win;
        let ttfb = w.ttfb.percentiles();
        let secs = self.sc.sample_s.max(1.0);
        self.rows.push(Row {
            baseline: self.baseline.clone(),
            t_min: (now as f64 - self.measure_start as f64) / 60_000.0,
            online,
            supernodes,
            mean_children: if supernodes > 0 {
                children as f64 / supernodes as f64
            } else {
                0.0
            },
            max_children,
            attached: if leaves > 0 {
                attached as f64 / leaves as f64
            } else {
                0.0
            },
            attached_any: if leaves > 0 {
                attached_any as f64 / leaves as f64
            } else {
                0.0
            },
            requests: w.requests,
            success: w.success(),
            local: w.bytes[0],
            same_prefix: w.bytes[1],
            same_as: w.bytes[2],
            other_as: w.bytes[3],
            seeder: w.bytes[4],
            seeder_egress: w.seeder_egress,
            miss_bytes: w.miss_bytes,
            ttfb_p50: ttfb.p50,
            ttfb_p95: ttfb.p95,
            ttfb_p99: ttfb.p99,
            control_bytes_per_node_s: if online > 0 {
                w.control_bytes as f64 / online as f64 / secs
            } else {
                0.0
            },
        });
        self.win = Counters::default();
        if now + sample_ms <= self.end {
            self.q.push(now + sample_ms, Class::Workload, Ev::Sample);
        }
    }
}
