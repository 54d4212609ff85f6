//! The daemon: drives the protocol core over libp2p and tokio, with the store and the HTTP
//! gateway around it. It stays thin on purpose: decisions belong to the core, which the
//! simulator runs too; this module only moves bytes and messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, multiaddr::Protocol};
use nearcast_proto::content::Manifest;
use nearcast_proto::node::RequestError;
use nearcast_proto::{
    Config, Contact, FetchId, Locality, Node, ObjectId, Output, Request, RequestId, Response, Role,
    SourceClass,
};
use nearcast_store::{Store, StoreOptions};
use tokio::sync::{mpsc, oneshot};

use crate::asmap::{AsMapStatus, MapKeeper};
use crate::chunks::{AdmitQuery, fetch_chunk, serve_chunks};
use crate::gateway::{self, Command, FetchReport, StatusReport};
use crate::metrics::Metrics;
use crate::network::{
    Behaviour, BehaviourEvent, build_swarm, ensure_unused, load_identity, lock_data_dir,
};
use crate::peer::{NetPeer, contact_addr, parse_contact};
use crate::settings::{Reachability, Settings, load_local_map};

/// A failing store read is logged as a warning at most this often.
const STORE_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Lowest `--upload-limit`, bytes per second: below it a chunk would take longer to earn
/// than a requester waits.
const MIN_UPLOAD_LIMIT: u64 = 64 * 1024;

/// A chunk transfer finished.
struct ChunkDone {
    fetch: FetchId,
    peer: NetPeer,
    index: u32,
    /// `Err`: the store could not keep a verified chunk (the fetch fails with that error).
    outcome: Result<nearcast_proto::ChunkOutcome, nearcast_store::StoreError>,
}

/// Children a seeder accepts (it acts as a mega-supernode).
const SEEDER_MAX_CHILDREN: usize = 5_000;
/// Connections a peer keeps at most; a seeder has room for its children on top.
const PEER_MAX_CONNECTIONS: u32 = 1024;

/// Runs a daemon until Ctrl-C or SIGTERM.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    settings.bootstrap = crate::peer::resolve_names(&settings.bootstrap).await?;
    anyhow::ensure!(
        settings.upload_limit >= MIN_UPLOAD_LIMIT,
        "--upload-limit {} B/s is below the minimum of 64KiB (one chunk every 4 s)",
        settings.upload_limit
    );
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create data directory {}", settings.data.display()))?;
    let _data_lock = lock_data_dir(&settings.data)?;
    // A peer's cache need not fsync every chunk: a chunk lost to a power cut is detected on
    // read and fetched again. A seeder's published content is always synced.
    let options = StoreOptions {
        budget: settings.cache_size,
        sync_fetched: settings.role == Role::Seeder,
        ..StoreOptions::default()
    };
    let store = Arc::new(
        Store::open_with(&settings.data.join("store"), options)
            .with_context(|| format!("cannot open the store in {}", settings.data.display()))?,
    );
    let local_map = load_local_map(settings.as_table.as_deref(), settings.asmap.as_deref())?;
    let key = load_identity(&settings.data)?;
    let local_peer = key.public().to_peer_id();
    // A seeder keeps a connection to each of its children (up to `SEEDER_MAX_CHILDREN`) and
    // still needs room for everyone else who fetches from it.
    let max_connections = match settings.role {
        Role::Seeder => SEEDER_MAX_CHILDREN as u32 + PEER_MAX_CONNECTIONS,
        _ => PEER_MAX_CONNECTIONS,
    };
    let mut swarm = build_swarm(key, max_connections)?;
    println!("peer id: {local_peer}");

    for addr in &settings.listen {
        ensure_unused(addr)?;
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
    }
    // Learn our own address (ports may be chosen by the OS).
    let own_addr = wait_for_listen(&mut swarm, settings.listen.len(), local_peer).await?;
    let (own_ip, own_port, _) = parse_contact(&own_addr)
        .with_context(|| format!("cannot use listen address {own_addr}"))?;

    let seeders = seeder_contacts(&settings, local_peer, own_ip, own_port)?;
    for s in &seeders {
        if s.peer.0 != local_peer
            && let Some(a) = contact_addr(s)
        {
            swarm.add_peer_address(s.peer.0, a);
        }
    }
    for addr in &settings.bootstrap {
        let opts = DialOpts::unknown_peer_id()
            .address(addr.clone())
            .allocate_new_port()
            .build();
        if let Err(e) = swarm.dial(opts) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap address");
        }
    }

    let own = Contact::new(NetPeer(local_peer), own_ip, own_port);
    let mut cfg = Config::new(own, settings.role, seeders, rand_seed());
    cfg.timing.promote_after_ms = settings.promote_after.as_millis() as u64;
    cfg.upload_bytes_per_s = settings.upload_limit as f64;
    cfg.follow_published_asmap = local_map.is_none();
    cfg.timing.asmap_check_ms = settings.asmap_check.as_millis().max(1) as u64;
    if settings.role == Role::Seeder {
        if settings.upload_limit == u64::MAX {
            cfg.upload_bytes_per_s = f64::MAX / 8.0;
        }
        cfg.control_per_s = 20_000.0;
        cfg.max_children = SEEDER_MAX_CHILDREN;
    }
    let started = Instant::now();
    let locality = Locality::new(Arc::new(nearcast_asmap::AsMap::empty()), own_ip);
    let mut node = Node::new(cfg, locality, 0);
    // The proximity map comes before anything else: an explicit local file (a seeder also
    // publishes it), else the last good map the seeders published.
    let maps = MapKeeper::new(&settings.data);
    match local_map {
        Some(map) => {
            let publish = if settings.role == Role::Seeder {
                Some(
                    maps.publish(&store, &map)
                        .context("cannot publish the proximity map")?,
                )
            } else {
                tracing::info!("local proximity map given: maps the seeders publish are ignored");
                None
            };
            node.use_local_asmap(map, publish);
        }
        None => maps.restore(&store, &mut node),
    }
    match settings.reachable {
        Reachability::Yes => node.set_reachable(true),
        Reachability::No => node.set_reachable(false),
        Reachability::Auto => {}
    }
    let held = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.list()).await?
    };
    for info in held.iter().filter(|i| i.complete) {
        node.object_stored(info.id);
    }
    tracing::info!(objects = held.len(), "store opened");

    let metrics = Arc::new(Metrics::new());
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(256);
    let (admit_tx, admit_rx) = mpsc::channel::<AdmitQuery>(256);
    let control = swarm.behaviour().chunks.new_control();
    tokio::spawn(serve_chunks(
        control.clone(),
        store.clone(),
        admit_tx,
        metrics.clone(),
        settings.fault_corrupt_chunks,
    ));
    if let Some(addr) = settings.http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind HTTP address {addr}"))?;
        let bound = listener.local_addr()?;
        let label = if settings.role == Role::Seeder {
            "http"
        } else {
            "gateway"
        };
        println!("{label}: http://{bound}");
        let state = gateway::GatewayState {
            commands: cmd_tx.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(gateway::serve(listener, state));
    }

    let mut daemon = Daemon {
        node,
        swarm,
        store,
        metrics,
        control,
        started,
        outbound: HashMap::new(),
        waiters: HashMap::new(),
        fetch_objects: HashMap::new(),
        manifests: HashMap::new(),
        protecting: HashMap::new(),
        fetch_started: HashMap::new(),
        bootstrap_warned: false,
        store_warned_at: None,
        maps,
        reachable: settings.reachable,
        node_reachable: settings.reachable == Reachability::Yes,
    };
    daemon.event_loop(cmd_rx, admit_rx).await
}

fn rand_seed() -> u64 {
    let mut b = [0u8; 8];
    let id = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_bytes();
    for (i, x) in id.iter().rev().take(8).enumerate() {
        b[i] = *x;
    }
    u64::from_le_bytes(b) ^ std::process::id() as u64
}

async fn wait_for_listen(
    swarm: &mut Swarm<Behaviour>,
    expected: usize,
    local_peer: PeerId,
) -> anyhow::Result<Multiaddr> {
    let mut tcp: Vec<Multiaddr> = Vec::new();
    let mut seen = 0;
    // A wildcard listen address reports one address per interface: gather them briefly.
    let mut deadline = Box::pin(tokio::time::sleep(Duration::from_secs(10)));
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::NewListenAddr { address, .. } => {
                    println!("listening: {}", address.clone().with(Protocol::P2p(local_peer)));
                    seen += 1;
                    if address.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
                        tcp.push(address);
                    }
                    if seen >= expected {
                        deadline = Box::pin(tokio::time::sleep(Duration::from_millis(200)));
                    }
                }
                SwarmEvent::ListenerError { error, .. } => anyhow::bail!("listener failed: {error}"),
                SwarmEvent::ListenerClosed { reason: Err(e), .. } => anyhow::bail!("listener closed: {e}"),
                _ => {}
            },
            _ = &mut deadline => break,
        }
    }
    // Others dial the contact we advertise: prefer an address that is not loopback.
    let not_loopback = |a: &&Multiaddr| {
        parse_contact(a).is_some_and(|(ip, _, _)| !ip.is_loopback() && !ip.is_unspecified())
    };
    tcp.iter()
        .find(not_loopback)
        .or(tcp.first())
        .cloned()
        .context("no TCP listen address came up (give --listen /ip4/IP/tcp/PORT)")
}

fn seeder_contacts(
    settings: &Settings,
    local_peer: PeerId,
    own_ip: std::net::IpAddr,
    own_port: u16,
) -> anyhow::Result<Vec<Contact<NetPeer>>> {
    let mut seeders = Vec::new();
    if settings.role == Role::Seeder {
        seeders.push(Contact::new(NetPeer(local_peer), own_ip, own_port));
    }
    for addr in &settings.bootstrap {
        let (ip, port, peer) = parse_contact(addr)
            .with_context(|| format!("bootstrap address {addr} has no IP address"))?;
        let peer = peer.with_context(|| {
            format!("bootstrap address {addr} must end in /p2p/PEER_ID (the seeder's peer id)")
        })?;
        if port == 0 {
            anyhow::bail!("bootstrap address {addr} must name a TCP port");
        }
        seeders.push(Contact::new(NetPeer(peer), ip, port));
    }
    Ok(seeders)
}

struct Daemon {
    node: Node<NetPeer>,
    swarm: Swarm<Behaviour>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    control: libp2p_stream::Control,
    started: Instant,
    outbound: HashMap<OutboundRequestId, RequestId>,
    waiters: HashMap<ObjectId, Vec<oneshot::Sender<FetchReport>>>,
    fetch_objects: HashMap<FetchId, ObjectId>,
    manifests: HashMap<ObjectId, Arc<Manifest>>,
    /// Fetches whose object the store protects from eviction until they end.
    protecting: HashMap<FetchId, ObjectId>,
    fetch_started: HashMap<FetchId, Instant>,
    bootstrap_warned: bool,
    /// When a failing store read was last logged as a warning (peers can ask for one per
    /// message; the others go to debug).
    store_warned_at: Option<Instant>,
    maps: MapKeeper,
    reachable: Reachability,
    node_reachable: bool,
}

impl Daemon {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn event_loop(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut admits: mpsc::Receiver<AdmitQuery>,
    ) -> anyhow::Result<()> {
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<ChunkDone>(1024);
        let mut gauges = tokio::time::interval(Duration::from_secs(5));
        // The store's complete objects, listed off the event loop (a seeder's store may hold
        // millions); at most one listing at a time.
        let (listed_tx, mut listed_rx) = mpsc::channel::<Option<BTreeSet<ObjectId>>>(1);
        let mut listing = false;
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let now = self.now();
            let wake = self.node.poll_timeout().unwrap_or(now + 1000).max(now);
            let sleep = tokio::time::sleep(Duration::from_millis(wake - now));
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(q) = admits.recv() => {
                    let now = self.now();
                    let len = self.chunk_len(&q.object, q.index);
                    if !self.node.holds(&q.object) && self.store.is_complete(&q.object) {
                        // Published by another process (`nearcast-seeder add`) since start.
                        self.node.object_stored(q.object);
                    }
                    let d = self.node.admit_chunk(now, &NetPeer(q.from), &q.object, q.index, len);
                    let _ = q.reply.send(d);
                }
                Some(done) = chunk_rx.recv() => {
                    let now = self.now();
                    tracing::debug!(peer = %done.peer.0, index = done.index, outcome = ?done.outcome, "chunk");
                    match done.outcome {
                        Ok(outcome) => {
                            if outcome == nearcast_proto::ChunkOutcome::Corrupt {
                                self.metrics.chunks_rejected.inc();
                            }
                            self.node.handle_chunk(now, done.fetch, &done.peer, done.index, outcome);
                        }
                        Err(e) => {
                            match self.fetch_objects.get(&done.fetch).copied() {
                                Some(object) => {
                                    tracing::warn!(index = done.index, error = %e, "could not store a verified chunk");
                                    self.node.abort_fetch(done.fetch, format!("the store failed: {e}"));
                                    if e.is_disk_full() {
                                        self.drop_incomplete(object);
                                    }
                                }
                                // The fetch already ended (an earlier chunk failed the same way).
                                None => tracing::debug!(index = done.index, error = %e, "could not store a verified chunk"),
                            }
                        }
                    }
                }
                _ = sleep => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                }
                _ = gauges.tick() => {
                    self.update_gauges();
                    if !listing {
                        listing = true;
                        self.list_store(listed_tx.clone());
                    }
                }
                Some(listed) = listed_rx.recv() => {
                    listing = false;
                    if let Some(complete) = listed {
                        self.reconcile(&complete);
                    }
                }
                _ = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
            }
            self.drain_outputs(&chunk_tx);
        }
    }

    /// The disk filled up while `object` was arriving: its partial copy, which could not be
    /// completed, is dropped so that the space goes back to the rest of the cache (kept, a
    /// full disk would refuse every later fetch until a restart).
    fn drop_incomplete(&self, object: ObjectId) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if store.is_complete(&object) || store.is_pinned(&object) {
                return;
            }
            match store.remove(&object) {
                Ok(_) => {
                    tracing::warn!(%object, "disk full: dropped the object's incomplete copy to free space")
                }
                Err(e) => {
                    tracing::warn!(%object, error = %e, "disk full: could not drop the incomplete copy")
                }
            }
        });
    }

    fn chunk_len(&mut self, object: &ObjectId, index: u32) -> u64 {
        if let Some(m) = self.manifests.get(object) {
            return m.chunk_len(index) as u64;
        }
        match self.store.manifest_arc(object) {
            Ok(Some(m)) => m.chunk_len(index) as u64,
            _ => 0,
        }
    }

    /// Lists the store's complete objects on a blocking thread (a seeder first rescans the
    /// disk for objects `nearcast-seeder add` published from another process).
    /// Always answers, `None` if the listing failed, so the next tick tries again.
    fn list_store(&self, reply: mpsc::Sender<Option<BTreeSet<ObjectId>>>) {
        let store = self.store.clone();
        let rescan = self.node.role() == Role::Seeder;
        let listing = tokio::task::spawn_blocking(move || {
            if rescan && let Err(e) = store.rescan() {
                tracing::warn!(error = %e, "store rescan failed");
            }
            store
                .list()
                .into_iter()
                .filter(|i| i.complete)
                .map(|i| i.id)
                .collect()
        });
        tokio::spawn(async move {
            let listed = listing.await;
            if let Err(e) = &listed {
                tracing::error!(error = %e, "store listing failed");
            }
            let _ = reply.send(listed.ok()).await;
        });
    }

    /// Brings the core's view in line with the store (publications, evictions, corruption).
    /// The listing was taken a moment ago: each difference is checked against the store's
    /// index as it is now (a fetch may have completed, an eviction run, since).
    fn reconcile(&mut self, complete: &BTreeSet<ObjectId>) {
        for id in complete {
            if !self.node.holds(id) && self.store.is_complete(id) {
                self.node.object_stored(*id);
            }
        }
        let gone: Vec<ObjectId> = self
            .node
            .holdings()
            .filter(|id| !complete.contains(id) && !self.store.is_complete(id))
            .copied()
            .collect();
        for id in gone {
            self.node.object_removed(id);
        }
    }

    fn update_gauges(&mut self) {
        let s = self.node.status();
        self.metrics.children.set(s.children as i64);
        self.metrics.parents.set(s.parents.len() as i64);
        self.metrics.is_supernode.set(i64::from(s.role.is_server()));
        self.metrics
            .connected_peers
            .set(self.swarm.connected_peers().count() as i64);
        self.metrics
            .store_bytes
            .set(self.store.usage().bytes as i64);
    }

    fn on_command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Fetch { object, reply } => {
                self.waiters.entry(object).or_default().push(reply);
                self.fetch(now, object);
            }
            Command::Forget { object } => {
                self.node.object_removed(object);
            }
            Command::ReaderWaits { object, index } => {
                self.node.reader_waits(now, object, index);
            }
            Command::Status { reply } => {
                let s = self.node.status();
                let usage = self.store.usage();
                let _ = reply.send(StatusReport {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    role: s.role.label().to_string(),
                    parents: s.parents.iter().map(|c| c.peer.0.to_string()).collect(),
                    children: s.children,
                    peers: self.swarm.connected_peers().count(),
                    known_supernodes: s.known_supernodes,
                    routing_table: s.routing_table,
                    store_bytes: usage.bytes,
                    store_objects: usage.objects,
                    store_budget: usage.budget,
                    asmap: AsMapStatus::of(&self.node),
                });
            }
        }
    }

    fn drain_outputs(&mut self, chunk_tx: &mpsc::Sender<ChunkDone>) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Request { id, to, request } => {
                    if let Some(addr) = contact_addr(&to) {
                        self.swarm.add_peer_address(to.peer.0, addr.clone());
                        dial_if_disconnected(&mut self.swarm, to.peer.0, addr);
                    }
                    let rid = self
                        .swarm
                        .behaviour_mut()
                        .control
                        .send_request(&to.peer.0, request);
                    self.outbound.insert(rid, id);
                }
                Output::FetchChunk {
                    fetch,
                    from,
                    object,
                    index,
                } => {
                    let Some(manifest) = self.manifests.get(&object).cloned() else {
                        continue;
                    };
                    if let Some(addr) = contact_addr(&from) {
                        self.swarm.add_peer_address(from.peer.0, addr.clone());
                        // libp2p-stream dials without addresses: connect first ourselves.
                        dial_if_disconnected(&mut self.swarm, from.peer.0, addr);
                    }
                    let control = self.control.clone();
                    let store = self.store.clone();
                    let tx = chunk_tx.clone();
                    tokio::spawn(async move {
                        let outcome =
                            fetch_chunk(control, store, from.peer.0, object, manifest, index).await;
                        let _ = tx
                            .send(ChunkDone {
                                fetch,
                                peer: from.peer,
                                index,
                                outcome,
                            })
                            .await;
                    });
                }
                Output::Manifest {
                    fetch,
                    object,
                    manifest,
                } => {
                    self.protect(fetch, object);
                    self.manifests.insert(object, Arc::new(manifest));
                    if let Err(reason) = self.keep_manifest(object) {
                        tracing::warn!(%object, %reason, "cannot fetch the object");
                        self.node.abort_fetch(fetch, reason);
                    }
                }
                Output::FetchDone {
                    fetch,
                    object,
                    bytes,
                    first_byte_ms: _,
                } => {
                    self.finish_fetch(fetch, object, Ok(bytes));
                }
                Output::FetchFailed {
                    fetch,
                    object,
                    error,
                } => {
                    tracing::info!(%object, %error, "fetch failed");
                    self.finish_fetch(fetch, object, Err(error));
                }
                Output::Ban { peer } => {
                    tracing::warn!(peer = %peer.0, "dropping peer that sent bad data");
                    self.metrics.peers_banned.inc();
                    let _ = self.swarm.disconnect_peer_id(peer.0);
                }
                Output::RoleChanged { role } => {
                    tracing::info!(role = role.label(), "role changed");
                }
                Output::AsMapOffered { map } => {
                    // An ordinary fetch: from peers or seeders, every chunk verified.
                    let fid = self.fetch(self.now(), map.object);
                    self.maps.fetching(fid, map);
                }
            }
        }
    }

    /// The running fetch of `object`, or a new one: one fetch per object, whoever asks (the
    /// gateway, the proximity map), so the state kept per object (manifest, waiters) is one
    /// fetch's. An object the store holds in part is resumed: only its missing chunks are
    /// fetched.
    fn fetch(&mut self, now: u64, object: ObjectId) -> FetchId {
        if let Some((&fid, _)) = self.fetch_objects.iter().find(|(_, o)| **o == object) {
            return fid;
        }
        let fid = match self.partial_copy(&object) {
            Some((manifest, held)) => {
                self.manifests.insert(object, manifest.clone());
                let fid = self
                    .node
                    .resume_fetch(now, object, (*manifest).clone(), &held);
                self.protect(fid, object);
                fid
            }
            None => self.node.start_fetch(now, object),
        };
        self.fetch_objects.insert(fid, object);
        self.fetch_started.insert(fid, Instant::now());
        fid
    }

    /// Protects a fetch's object from eviction until the fetch ends (`finish_fetch`).
    fn protect(&mut self, fetch: FetchId, object: ObjectId) {
        if self.protecting.insert(fetch, object).is_none() {
            self.store.protect(&object);
        }
    }

    /// The manifest and stored chunks of an object an earlier fetch left incomplete, if any:
    /// a new fetch takes only the missing chunks.
    /// An object larger than the cache is not resumed: the fresh fetch refuses it (507).
    fn partial_copy(&self, object: &ObjectId) -> Option<(Arc<Manifest>, Vec<bool>)> {
        if self.node.holds(object) || self.store.is_complete(object) {
            return None;
        }
        let manifest = self.store.manifest_arc(object).ok().flatten()?;
        if self.store.budget().is_some_and(|b| manifest.size > b) {
            return None;
        }
        let held = self.store.chunks_held(object).ok()?;
        held.contains(&true).then_some((manifest, held))
    }

    /// Stores the manifest of a fetch that just learned it, if the object fits the cache.
    fn keep_manifest(&mut self, object: ObjectId) -> Result<(), String> {
        let Some(manifest) = self.manifests.get(&object) else {
            return Ok(());
        };
        if let Some(budget) = self.store.budget()
            && manifest.size > budget
        {
            return Err(format!(
                "the object is {} bytes, more than this peer's cache ({budget} bytes): raise --cache-size",
                manifest.size
            ));
        }
        self.store
            .put_manifest(manifest)
            .map(|_| ())
            .map_err(|e| format!("the store failed: {e}"))
    }

    fn finish_fetch(
        &mut self,
        fetch: FetchId,
        object: ObjectId,
        result: Result<[u64; 5], nearcast_proto::FetchError>,
    ) {
        self.fetch_objects.remove(&fetch);
        self.manifests.remove(&object);
        if let Some(t) = self.fetch_started.remove(&fetch) {
            self.metrics
                .fetch_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        let report = match result {
            Ok(mut bytes) => {
                self.metrics.fetches_ok.inc();
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.store.touch(&object, secs);
                if bytes.iter().all(|b| *b == 0) {
                    // Served from our own store.
                    let size = self
                        .store
                        .manifest(&object)
                        .ok()
                        .flatten()
                        .map(|m| m.size)
                        .unwrap_or(0);
                    bytes[SourceClass::Local.index()] = size;
                }
                for class in SourceClass::ALL {
                    self.metrics.add_fetched(class, bytes[class.index()]);
                }
                FetchReport::Done { bytes }
            }
            Err(e) => {
                self.metrics.fetches_failed.inc();
                FetchReport::Failed(e)
            }
        };
        let ok = matches!(report, FetchReport::Done { .. });
        let now = self.now();
        self.maps
            .fetch_ended(now, fetch, ok, &self.store, &mut self.node);
        if let Some(object) = self.protecting.remove(&fetch) {
            // Evictable again only now that the proximity map (if it was one) has been read;
            // a gateway request keeps its own protection until its response is sent.
            crate::gateway::unprotect_in_background(self.store.clone(), object);
        }
        for w in self.waiters.remove(&object).unwrap_or_default() {
            let _ = w.send(report.clone());
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        let now = self.now();
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Control(ev)) => self.on_control(now, ev),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatClient(autonat::v2::client::Event {
                tested_addr,
                result,
                ..
            })) => {
                let ok = result.is_ok();
                tracing::debug!(%tested_addr, ok, "AutoNAT probe");
                if ok && self.reachable == Reachability::Auto {
                    self.node_reachable = true;
                    self.node.set_reachable(true);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                for a in info.listen_addrs {
                    if a.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
                        self.swarm.add_peer_address(peer_id, a);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if self.node.is_seeder(&NetPeer(peer)) && !self.bootstrap_warned {
                    self.bootstrap_warned = true;
                    tracing::warn!(%peer, %error, "seeder unreachable; will keep retrying");
                } else {
                    tracing::debug!(%peer, %error, "dial failed");
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                // Besides AutoNAT v2, an inbound connection from another AS shows that others
                // reach our advertised address.
                if self.reachable == Reachability::Auto
                    && !self.node_reachable
                    && let libp2p::core::ConnectedPoint::Listener { send_back_addr, .. } = &endpoint
                    && let Some((ip, _, _)) = parse_contact(send_back_addr)
                    && self.node.locality().class_of(ip) == SourceClass::OtherAs
                {
                    tracing::info!(%ip, "reachable: inbound connection from another AS");
                    self.node_reachable = true;
                    self.node.set_reachable(true);
                }
                if self.node.is_banned(&NetPeer(peer_id)) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                } else if self.node.is_seeder(&NetPeer(peer_id)) && self.bootstrap_warned {
                    self.bootstrap_warned = false;
                    tracing::info!(%peer_id, "seeder reachable again");
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.node.peer_disconnected(now, &NetPeer(peer_id));
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "reachable from outside");
                if self.reachable == Reachability::Auto {
                    self.node_reachable = true;
                    self.node.set_reachable(true);
                }
            }
            _ => {}
        }
    }

    fn on_control(
        &mut self,
        now: u64,
        ev: request_response::Event<Request<NetPeer>, Response<NetPeer>>,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.on_request(now, peer, request, channel);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(id) = self.outbound.remove(&request_id) {
                        if let Response::Located { holders } = &response
                            && tracing::enabled!(tracing::Level::DEBUG)
                        {
                            let named: Vec<String> = holders
                                .iter()
                                .map(|h| h.contact.peer.0.to_string())
                                .collect();
                            tracing::debug!(%peer, holders = ?named, "located");
                        }
                        self.node.handle_response(now, id, Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some(id) = self.outbound.remove(&request_id) {
                    let e = match error {
                        request_response::OutboundFailure::Io(ref io)
                            if io.kind() == std::io::ErrorKind::InvalidData =>
                        {
                            tracing::warn!(%peer, %error, "malformed response");
                            RequestError::Malformed
                        }
                        _ => {
                            tracing::debug!(%peer, %error, "request failed");
                            RequestError::Unreachable
                        }
                    };
                    self.node.handle_response(now, id, Err(e));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        now: u64,
        peer: PeerId,
        request: Request<NetPeer>,
        channel: ResponseChannel<Response<NetPeer>>,
    ) {
        if let Request::Locate { object, .. } | Request::AddProvider { object, .. } = &request {
            self.notice_stored(object);
        }
        let response = match request {
            Request::GetManifest { object } => self
                .node
                .admit_manifest(now, &NetPeer(peer), object)
                .unwrap_or_else(|| self.manifest_response(&object)),
            other => self.node.handle_request(now, &NetPeer(peer), other),
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .control
            .send_response(channel, response);
    }

    /// Tells the core of an object that is complete in the store but not yet known to it (a
    /// seeder learns of `nearcast-seeder add` only at its next rescan): a seeder indexes
    /// holders only of objects it serves.
    fn notice_stored(&mut self, object: &ObjectId) {
        if !self.node.holds(object) && self.store.is_complete(object) {
            self.node.object_stored(*object);
        }
    }

    fn manifest_response(&mut self, object: &ObjectId) -> Response<NetPeer> {
        if let Some(m) = self.manifests.get(object) {
            return Response::Manifest { bytes: m.encode() };
        }
        match self.store.manifest_arc(object) {
            Ok(Some(m)) => {
                if m.chunk_count() == 0 {
                    // Small objects travel inside their manifest.
                    self.metrics.served_bytes.inc_by(m.size);
                }
                Response::Manifest { bytes: m.encode() }
            }
            Ok(None) => Response::NotFound,
            Err(e) => {
                let quiet = self
                    .store_warned_at
                    .is_some_and(|at| at.elapsed() < STORE_WARNING_EVERY);
                if quiet {
                    tracing::debug!(%object, error = %e, "stored manifest unreadable");
                } else {
                    self.store_warned_at = Some(Instant::now());
                    tracing::warn!(%object, error = %e,
                        "stored manifest unreadable (further ones within a minute at debug level)");
                }
                Response::NotFound
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Dials `peer` at `addr` unless connected or dialing already, from a fresh local port. (A
/// dial from the listening port, libp2p's default, fails with "address in use" while the
/// remote is dialing us or a closed connection between the two ports lingers in TIME_WAIT.)
fn dial_if_disconnected(swarm: &mut Swarm<Behaviour>, peer: PeerId, addr: Multiaddr) {
    if swarm.is_connected(&peer) {
        return;
    }
    let opts = DialOpts::peer_id(peer)
        .addresses(vec![addr])
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .allocate_new_port()
        .build();
    if let Err(e) = swarm.dial(opts) {
        tracing::debug!(%peer, error = %e, "dial");
    }
}
