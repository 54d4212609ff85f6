//! A tiny in-process driver for the core: messages delivered in order with a fixed latency,
//! chunks moved as counts. Checks the overlay's behaviour without any I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use nearcast_asmap::AsMap;
use nearcast_proto::content::{Body, CHUNK_SIZE, Manifest};
use nearcast_proto::{
    ChunkOutcome, Config, Contact, FetchId, Locality, Node, ObjectId, Output, Request, Response,
    Role, ServeDecision, SourceClass,
};

const LATENCY: u64 = 5;

enum Ev {
    Deliver {
        from: u32,
        to: u32,
        id: nearcast_proto::RequestId,
        req: Request<u32>,
    },
    Chunk {
        at: u32,
        fetch: FetchId,
        from: u32,
        object: ObjectId,
        index: u32,
    },
}

struct Net {
    nodes: Vec<Node<u32>>,
    alive: Vec<bool>,
    corrupt: BTreeSet<u32>,
    /// Nodes whose driver cannot keep what they fetch (it aborts at the manifest).
    refuse: BTreeSet<u32>,
    /// Chunk requests each node answers `Busy` before it serves again (an overloaded source).
    busy: BTreeMap<u32, u32>,
    /// Chunk requests each node received.
    chunk_requests: BTreeMap<u32, u32>,
    /// Nodes that answer every `GetManifest` with `Busy` (control overload).
    manifest_busy: BTreeSet<u32>,
    manifests: Vec<BTreeMap<ObjectId, Manifest>>,
    queue: VecDeque<(u64, Ev)>,
    now: u64,
    done: BTreeMap<(u32, FetchId), Result<[u64; 5], String>>,
    catalogue: BTreeMap<ObjectId, Manifest>,
}

fn ip(asn: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, asn, 0, host))
}

fn asmap() -> Arc<AsMap> {
    let csv = "127.1.0.0,127.1.255.255,64501\n127.2.0.0,127.2.255.255,64502\n127.3.0.0,127.3.255.255,64503\n127.0.0.0,127.0.255.255,64500\n";
    Arc::new(AsMap::from_ranges_csv(csv.as_bytes()).expect("as table"))
}

fn object(size: u64, n: u8) -> Manifest {
    let chunks = size.div_ceil(CHUNK_SIZE as u64) as usize;
    Manifest {
        version: 1,
        size,
        media_type: "image/jpeg".into(),
        chunk_size: CHUNK_SIZE,
        body: Body::Chunks((0..chunks).map(|i| [n ^ i as u8; 32]).collect()),
    }
}

impl Net {
    /// Node 0 is the seeder at 127.0.0.1; peers are spread round-robin over three ASes.
    fn new(peers: usize, promote: bool) -> Net {
        let map = asmap();
        let seeder = Contact::new(0u32, ip(0, 1), 4000);
        let mut nodes = Vec::new();
        for i in 0..=peers as u32 {
            let (role, c) = if i == 0 {
                (Role::Seeder, seeder.clone())
            } else {
                (
                    Role::Leaf,
                    Contact::new(i, ip(1 + (i % 3) as u8, i as u8), 4000),
                )
            };
            let mut cfg = Config::new(c.clone(), role, vec![seeder.clone()], i as u64);
            cfg.timing.promote_after_ms = if promote { 1_000 } else { u64::MAX / 4 };
            cfg.timing.maintenance_ms = 500;
            cfg.timing.heartbeat_ms = 2_000;
            let mut n = Node::new(cfg, Locality::new(map.clone(), c.ip), 0);
            n.set_reachable(true);
            nodes.push(n);
        }
        let count = nodes.len();
        Net {
            nodes,
            alive: vec![true; count],
            corrupt: BTreeSet::new(),
            refuse: BTreeSet::new(),
            busy: BTreeMap::new(),
            chunk_requests: BTreeMap::new(),
            manifest_busy: BTreeSet::new(),
            manifests: vec![BTreeMap::new(); count],
            queue: VecDeque::new(),
            now: 0,
            done: BTreeMap::new(),
            catalogue: BTreeMap::new(),
        }
    }

    fn publish(&mut self, m: Manifest) -> ObjectId {
        let id = m.id();
        self.nodes[0].object_stored(id);
        self.manifests[0].insert(id, m.clone());
        self.catalogue.insert(id, m);
        id
    }

    fn drain(&mut self, i: u32) {
        while let Some(out) = self.nodes[i as usize].poll_output() {
            match out {
                Output::Request { id, to, request } => self.queue.push_back((
                    self.now + LATENCY,
                    Ev::Deliver {
                        from: i,
                        to: to.peer,
                        id,
                        req: request,
                    },
                )),
                Output::FetchChunk {
                    fetch,
                    from,
                    object,
                    index,
                } => self.queue.push_back((
                    self.now + LATENCY,
                    Ev::Chunk {
                        at: i,
                        fetch,
                        from: from.peer,
                        object,
                        index,
                    },
                )),
                Output::Manifest {
                    fetch,
                    object,
                    manifest,
                } => {
                    if self.refuse.contains(&i) {
                        self.nodes[i as usize].abort_fetch(fetch, "disk full".into());
                    } else {
                        self.manifests[i as usize].insert(object, manifest);
                    }
                }
                Output::FetchDone { fetch, bytes, .. } => {
                    self.done.insert((i, fetch), Ok(bytes));
                }
                Output::FetchFailed { fetch, error, .. } => {
                    self.done.insert((i, fetch), Err(error.to_string()));
                }
                Output::Ban { .. } | Output::RoleChanged { .. } | Output::AsMapOffered { .. } => {}
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Deliver { from, to, id, req } => {
                let result = if !self.alive[to as usize] {
                    Err(nearcast_proto::RequestError::Unreachable)
                } else if matches!(req, Request::GetManifest { .. })
                    && self.manifest_busy.contains(&to)
                {
                    Ok(Response::Busy {
                        alternatives: Vec::new(),
                    })
                } else if let Request::GetManifest { object } = &req {
                    Ok(match self.manifests[to as usize].get(object) {
                        Some(m) => Response::Manifest { bytes: m.encode() },
                        None => Response::NotFound,
                    })
                } else {
                    let r = self.nodes[to as usize].handle_request(now, &from, req);
                    self.drain(to);
                    Ok(r)
                };
                if self.alive[from as usize] {
                    self.nodes[from as usize].handle_response(now, id, result);
                    self.drain(from);
                }
            }
            Ev::Chunk {
                at,
                fetch,
                from,
                object,
                index,
            } => {
                let len = self.catalogue[&object].chunk_len(index) as u64;
                *self.chunk_requests.entry(from).or_default() += 1;
                let busy = self.busy.get_mut(&from).filter(|left| **left > 0);
                let outcome = if !self.alive[from as usize] {
                    ChunkOutcome::Failed
                } else if let Some(left) = busy {
                    *left -= 1;
                    ChunkOutcome::Busy
                } else {
                    match self.nodes[from as usize].admit_chunk(now, &at, &object, index, len) {
                        ServeDecision::Serve if self.corrupt.contains(&from) => {
                            ChunkOutcome::Corrupt
                        }
                        ServeDecision::Serve => ChunkOutcome::Stored { bytes: len },
                        ServeDecision::NotHeld => ChunkOutcome::NotHeld,
                        ServeDecision::Busy => ChunkOutcome::Busy,
                    }
                };
                if self.alive[at as usize] {
                    self.nodes[at as usize].handle_chunk(now, fetch, &from, index, outcome);
                    self.drain(at);
                }
            }
        }
    }

    /// Runs until `until` (ms), delivering events and firing timers in time order.
    fn run_until(&mut self, until: u64) {
        let mut guard = 0;
        while self.now < until && guard < 5_000_000 {
            guard += 1;
            let next_ev = self.queue.front().map(|(t, _)| *t);
            let next_timer = (0..self.nodes.len())
                .filter(|i| self.alive[*i])
                .filter_map(|i| self.nodes[i].poll_timeout().map(|t| (t, i)))
                .min();
            match (next_ev, next_timer) {
                (Some(te), Some((tt, _))) if te <= tt => {
                    self.now = te.max(self.now);
                    let (_, ev) = self.queue.pop_front().expect("event");
                    self.step(ev);
                }
                (Some(te), None) => {
                    self.now = te.max(self.now);
                    let (_, ev) = self.queue.pop_front().expect("event");
                    self.step(ev);
                }
                (_, Some((tt, i))) => {
                    self.now = tt.max(self.now).min(until);
                    if tt > until {
                        break;
                    }
                    self.nodes[i].handle_timeout(self.now);
                    self.drain(i as u32);
                    // A node asks for its next timeout later than the one it just handled;
                    // one at or before `now` would have the driver call it in a busy loop.
                    if let Some(next) = self.nodes[i].poll_timeout() {
                        assert!(
                            next > self.now,
                            "node {i} asked for a timer at {next} right after handling one at {}",
                            self.now
                        );
                    }
                }
                (None, None) => break,
            }
        }
        self.now = until;
    }

    fn fetch(&mut self, peer: u32, object: ObjectId) -> Result<[u64; 5], String> {
        let fid = self.nodes[peer as usize].start_fetch(self.now, object);
        self.wait_for(peer, fid)
    }

    /// Resumes a fetch of which `peer`'s store kept the manifest and the `held` chunks.
    fn resume(&mut self, peer: u32, m: &Manifest, held: &[bool]) -> Result<[u64; 5], String> {
        let fid = self.nodes[peer as usize].resume_fetch(self.now, m.id(), m.clone(), held);
        self.wait_for(peer, fid)
    }

    fn wait_for(&mut self, peer: u32, fid: FetchId) -> Result<[u64; 5], String> {
        self.drain(peer);
        let deadline = self.now + 60_000;
        while !self.done.contains_key(&(peer, fid)) && self.now < deadline {
            let t = self.now + 50;
            self.run_until(t);
        }
        self.done
            .remove(&(peer, fid))
            .unwrap_or(Err("timeout".into()))
    }
}

fn seeder_bytes(b: &[u64; 5]) -> u64 {
    b[SourceClass::Seeder.index()]
}

fn in_as(b: &[u64; 5]) -> u64 {
    b[SourceClass::SamePrefix.index()] + b[SourceClass::SameAs.index()]
}

#[test]
fn popular_object_comes_from_peers_and_from_the_own_as() {
    let mut net = Net::new(12, false);
    net.run_until(3_000);
    let size = 3 * CHUNK_SIZE as u64 + 100;
    let id = net.publish(object(size, 1));
    let mut seeder_total = 0;
    let mut holders_per_as = [0u32; 4];
    for peer in 1..=12u32 {
        let asn = (1 + peer % 3) as usize;
        let bytes = net.fetch(peer, id).expect("fetch succeeds");
        assert_eq!(bytes.iter().sum::<u64>(), size, "peer {peer}: {bytes:?}");
        seeder_total += seeder_bytes(&bytes);
        if holders_per_as[asn] > 0 {
            assert_eq!(
                in_as(&bytes),
                size,
                "peer {peer} had a holder in its AS: {bytes:?}"
            );
        }
        holders_per_as[asn] += 1;
    }
    assert!(
        seeder_total <= size,
        "seeder sent {seeder_total} bytes for one {size}-byte object"
    );
}

#[test]
fn long_tail_object_comes_from_the_seeder_and_unknown_ids_fail() {
    let mut net = Net::new(6, false);
    net.run_until(3_000);
    let id = net.publish(object(CHUNK_SIZE as u64 * 2, 2));
    let bytes = net.fetch(4, id).expect("fetch");
    assert_eq!(seeder_bytes(&bytes), CHUNK_SIZE as u64 * 2);
    let unknown = object(1000 + CHUNK_SIZE as u64 * 2, 9).id();
    let t0 = net.now;
    assert!(net.fetch(5, unknown).is_err());
    assert!(
        net.now - t0 < 30_000,
        "unknown id took {} ms to fail",
        net.now - t0
    );
}

#[test]
fn a_busy_sole_source_is_waited_for_not_dropped() {
    let mut net = Net::new(3, false);
    net.run_until(3_000);
    let id = net.publish(object(CHUNK_SIZE as u64 * 4, 7));
    // The seeder, the only holder, refuses far more requests than a source may fail in a row.
    net.busy.insert(0, 32);
    net.chunk_requests.clear();
    let t0 = net.now;
    let bytes = net
        .fetch(2, id)
        .expect("the fetch waits for the busy seeder");
    assert_eq!(seeder_bytes(&bytes), CHUNK_SIZE as u64 * 4);
    // It paused between tries rather than hammering: 32 refusals, a window at a time, took
    // seconds, and cost few more requests than the refusals themselves.
    let took = net.now - t0;
    let asked = net.chunk_requests.get(&0).copied().unwrap_or(0);
    assert!(
        took > 2_000,
        "retried without pausing: done after {took} ms"
    );
    assert!(asked <= 32 + 4 + 8, "{asked} chunk requests to the seeder");
}

#[test]
fn with_the_seeder_down_a_long_tail_object_is_unavailable_not_unknown() {
    let mut net = Net::new(3, false);
    net.run_until(3_000);
    let id = net.publish(object(CHUNK_SIZE as u64 * 2, 8));
    let unknown = object(CHUNK_SIZE as u64 * 2, 10).id();
    let error = net.fetch(1, unknown).expect_err("unknown id");
    assert!(error.contains("no seeder knows"), "{error}");
    net.alive[0] = false;
    let error = net.fetch(2, id).expect_err("no holder reachable");
    assert!(error.contains("seeders could not be reached"), "{error}");
    net.alive[0] = true;
    net.fetch(2, id).expect("the seeder is back");
}

#[test]
fn an_interrupted_fetch_resumes_with_the_chunks_it_stored() {
    let mut net = Net::new(3, false);
    net.run_until(3_000);
    let size = 5 * CHUNK_SIZE as u64 - 300;
    let m = object(size, 4);
    let id = net.publish(m.clone());
    // Chunks 0, 1 and 3 were stored (verified) before the fetch broke off.
    let held = [true, true, false, true, false];
    let bytes = net.resume(2, &m, &held).expect("resumed fetch completes");
    let stored = 3 * CHUNK_SIZE as u64;
    assert_eq!(bytes[SourceClass::Local.index()], stored, "{bytes:?}");
    assert_eq!(
        bytes.iter().sum::<u64>(),
        size,
        "only the missing chunks were fetched: {bytes:?}"
    );
    assert_eq!(seeder_bytes(&bytes), size - stored);
    assert!(net.nodes[2].holds(&id));
}

#[test]
fn a_fetch_the_driver_cannot_keep_fails_even_when_the_object_came_whole() {
    let mut net = Net::new(3, false);
    net.run_until(3_000);
    let post = Manifest {
        version: 1,
        size: 1000,
        media_type: "text/plain".into(),
        chunk_size: CHUNK_SIZE,
        body: Body::Inline(vec![7; 1000]),
    };
    let post = net.publish(post);
    let image = net.publish(object(3 * CHUNK_SIZE as u64, 5));
    net.refuse.insert(2);
    for id in [post, image] {
        let r = net.fetch(2, id);
        assert!(
            matches!(&r, Err(e) if e.contains("cannot keep")),
            "{id}: {r:?}"
        );
        assert!(!net.nodes[2].holds(&id), "{id} counted as held");
    }
    net.refuse.clear();
    let bytes = net
        .fetch(2, post)
        .expect("fetched once the driver can keep it");
    assert_eq!(bytes.iter().sum::<u64>(), 1000);
}

#[test]
fn corrupt_source_is_dropped_and_fetch_completes_elsewhere() {
    let mut net = Net::new(6, false);
    net.run_until(3_000);
    let size = 4 * CHUNK_SIZE as u64;
    let id = net.publish(object(size, 3));
    net.fetch(1, id).expect("first copy");
    net.corrupt.insert(1);
    // Peer 4 shares peer 1's AS, so peer 1 is its first choice.
    let bytes = net.fetch(4, id).expect("completes from others");
    assert_eq!(bytes.iter().sum::<u64>(), size);
    assert!(net.nodes[4].is_banned(&1));
}

#[test]
fn supernodes_keep_popular_content_reachable_without_the_seeder() {
    let mut net = Net::new(9, true);
    net.run_until(20_000);
    let supernodes = net
        .nodes
        .iter()
        .filter(|n| n.role() == Role::Supernode)
        .count();
    assert!(supernodes >= 1, "no peer was promoted");
    let id = net.publish(object(2 * CHUNK_SIZE as u64, 4));
    for p in [1u32, 2, 3] {
        net.fetch(p, id).expect("spread");
    }
    net.alive[0] = false;
    net.run_until(net.now + 10_000);
    for (i, n) in net.nodes.iter().enumerate() {
        let st = n.status();
        eprintln!(
            "node {i}: {:?} parents {:?} children {} known {} holds {}",
            st.role,
            st.parents.iter().map(|c| c.peer).collect::<Vec<_>>(),
            st.children,
            st.known_supernodes,
            n.holds(&id)
        );
    }
    for p in 4..=9u32 {
        let bytes = net
            .fetch(p, id)
            .unwrap_or_else(|e| panic!("peer {p} after seeder loss: {e}"));
        assert_eq!(seeder_bytes(&bytes), 0);
    }
    let cold = object(CHUNK_SIZE as u64 + 1, 5);
    let cold_id = cold.id();
    net.catalogue.insert(cold_id, cold);
    assert!(net.fetch(5, cold_id).is_err());
}

#[test]
fn copies_from_an_earlier_session_are_told_to_the_seeder_and_found_through_it() {
    let mut net = Net::new(4, false);
    let id = net.publish(object(2 * CHUNK_SIZE as u64, 6));
    let junk = object(CHUNK_SIZE as u64, 7).id();
    // Peer 1 restarts with the object (and an id the seeder does not serve) in its store.
    net.nodes[1].object_stored(id);
    net.nodes[1].object_stored(junk);
    // It tells the seeder within the first minutes of its session (10 simulated minutes here).
    let mut told = None;
    let mut t = 0;
    while told.is_none() && t < 600_000 {
        t = net.nodes[1].poll_timeout().expect("timer");
        net.nodes[1].handle_timeout(t);
        while let Some(out) = net.nodes[1].poll_output() {
            if let Output::Request {
                to,
                request: Request::Holding { me, objects },
                ..
            } = out
            {
                told = Some((to.peer, me, objects));
            }
        }
    }
    let (to, me, objects) = told.expect("peer 1 tells the seeder its holdings");
    assert_eq!(to, 0);
    assert_eq!(objects.len(), 2);
    // Only the holder itself may say what it holds, and only a seeder indexes it.
    let forged = Request::Holding {
        me: me.clone(),
        objects: objects.clone(),
    };
    assert!(matches!(
        net.nodes[0].handle_request(t, &2, forged),
        Response::Refused { .. }
    ));
    assert!(matches!(
        net.nodes[2].handle_request(
            t,
            &1,
            Request::Holding {
                me: me.clone(),
                objects: objects.clone()
            }
        ),
        Response::Refused { .. }
    ));
    assert_eq!(
        net.nodes[0].handle_request(t, &1, Request::Holding { me, objects }),
        Response::Ack
    );
    // A fetcher that is not peer 1's neighbour learns of the copy from the seeder.
    let asker = net.nodes[3].own().clone();
    let located = |net: &mut Net, object| match net.nodes[0].handle_request(
        t,
        &3,
        Request::Locate {
            me: asker.clone(),
            object,
        },
    ) {
        Response::Located { holders } => holders.iter().map(|h| h.contact.peer).collect(),
        other => panic!("unexpected {other:?}"),
    };
    let holders: Vec<u32> = located(&mut net, id);
    assert_eq!(holders, vec![1]);
    let junk_holders: Vec<u32> = located(&mut net, junk);
    assert!(
        junk_holders.is_empty(),
        "an id the seeder does not serve is not indexed"
    );
}

#[test]
fn a_peer_that_always_answers_busy_does_not_starve_the_fetch() {
    let mut net = Net::new(4, false);
    net.run_until(3_000);
    let id = net.publish(object(CHUNK_SIZE as u64 * 4, 11));
    net.fetch(1, id).expect("first holder");
    // Node 1 (a complete holder, AS 64502) now refuses every chunk request: overloaded.
    net.busy.insert(1, u32::MAX);
    // Node 4 is in node 1's AS: it learns node 1 as the nearest holder.
    let t0 = net.now;
    let bytes = net
        .fetch(4, id)
        .expect("the seeder, which has the object and is idle, serves it");
    assert_eq!(seeder_bytes(&bytes), CHUNK_SIZE as u64 * 4);
    assert!(net.now - t0 < 6_000, "took {} ms", net.now - t0);
}

#[test]
fn an_overloaded_seeder_is_not_reported_as_not_knowing_the_object() {
    let mut net = Net::new(3, false);
    net.run_until(3_000);
    let id = net.publish(object(CHUNK_SIZE as u64 * 2, 12));
    net.manifest_busy.insert(0);
    let t0 = net.now;
    let error = net.fetch(2, id).expect_err("the seeder is overloaded");
    assert!(error.contains("seeders could not be reached"), "{error}");
    assert!(net.now - t0 < 30_000, "failed after {} ms", net.now - t0);
}
