//! Carrying the core's outputs over the simulated network: control requests (delivered after
//! half an RTT, answered synchronously by the receiver's core, or by the driver's store for
//! `GetManifest`), chunk transfers (flow-level bandwidth sharing) and the fetch outcomes.

use nearcast_proto::message::{Request, Response};
use nearcast_proto::{
    ChunkOutcome, FetchId, ObjectId, Output, RequestError, RequestId, Role, ServeDecision,
};
use rand::Rng;

use crate::catalogue::manifest_of;
use crate::metrics::{LOCAL, OTHER_AS, SAME_AS, SAME_PREFIX, SEEDER};
use crate::net::Distance;
use crate::queue::Class;
use crate::world::{Ev, FetchRec, World};

/// A response (or failure) on its way back.
pub struct RespEv {
    pub to: u32,
    pub sess: u32,
    pub from: u32,
    pub id: RequestId,
    pub result: Result<Response<u32>, RequestError>,
}

/// A chunk transfer ending.
pub struct ChunkEv {
    pub to: u32,
    pub sess: u32,
    pub from: u32,
    pub from_sess: u32,
    pub fetch: FetchId,
    pub index: u32,
    pub len: u32,
    pub outcome: ChunkOutcome,
    /// The transfer occupies bandwidth until it ends.
    pub active: bool,
}

/// Rough encoded size of a contact (peer varint, address, port).
const CONTACT: u64 = 12;
/// Per-message framing (stream and request-response headers).
const FRAME: u64 = 40;

fn request_size(r: &Request<u32>) -> u64 {
    FRAME
        + match r {
            Request::FindNode { .. }
            | Request::GetProviders { .. }
            | Request::GetManifest { .. } => 33,
            Request::AddProvider { .. } | Request::Locate { .. } | Request::GetChunkMap { .. } => {
                33 + CONTACT
            }
            Request::Attach { .. } => CONTACT + 2,
            Request::Detach => 1,
            Request::Have { added, removed } => 3 + 32 * (added.len() + removed.len()) as u64,
            Request::RegisterSupernode { .. } => CONTACT + 1,
            Request::GetAsMap => 1,
            Request::Holding { objects, .. } => CONTACT + 3 + 32 * objects.len() as u64,
        }
}

/// Index of a request kind (FindNode, GetProviders, AddProvider, Attach, Detach, Have, Locate,
/// GetManifest, GetChunkMap, RegisterSupernode).
pub fn request_kind(r: &Request<u32>) -> usize {
    match r {
        Request::FindNode { .. } => 0,
        Request::GetProviders { .. } => 1,
        Request::AddProvider { .. } => 2,
        Request::Attach { .. } => 3,
        Request::Detach => 4,
        Request::Have { .. } => 5,
        Request::Locate { .. } => 6,
        Request::GetManifest { .. } => 7,
        Request::GetChunkMap { .. } => 8,
        // Simulated nodes do not follow published maps, so `GetAsMap` is never sent.
        Request::RegisterSupernode { .. } | Request::GetAsMap | Request::Holding { .. } => 9,
    }
}

fn response_size(r: &Response<u32>) -> u64 {
    FRAME
        + match r {
            Response::Ack | Response::NotAttached | Response::NotFound => 1,
            Response::Nodes { closer } => 2 + CONTACT * closer.len() as u64,
            Response::Providers { providers, closer } => {
                3 + CONTACT * (providers.len() + closer.len()) as u64
            }
            Response::Attached { supernodes } => 2 + CONTACT * supernodes.len() as u64,
            Response::Busy { alternatives } => 2 + CONTACT * alternatives.len() as u64,
            Response::Located { holders } => 2 + (CONTACT + 1) * holders.len() as u64,
            Response::Manifest { bytes } => 3 + bytes.len() as u64,
            Response::ChunkMap { bits, peers, .. } => {
                4 + bits.len() as u64 + (CONTACT + 1) * peers.len() as u64
            }
            Response::Refused { reason } => 2 + reason.len() as u64,
            Response::AsMap { .. } => 42,
        }
}

impl World {
    fn byte_class(&self, to: u32, from: u32) -> usize {
        if self.peers[from as usize].seeder {
            return SEEDER;
        }
        match self.topo.distance(
            &self.peers[to as usize].place,
            &self.peers[from as usize].place,
        ) {
            Distance::SamePrefix => SAME_PREFIX,
            Distance::SameAs => SAME_AS,
            _ => OTHER_AS,
        }
    }

    fn rtt(&self, a: u32, b: u32) -> u64 {
        self.topo.rtt_ms(
            &self.sc.network,
            &self.peers[a as usize].place,
            &self.peers[b as usize].place,
        )
    }

    /// Whether `b` can be reached from `a` right now (online, dialable, same side of a partition,
    /// not lost).
    fn reachable(&mut self, a: u32, b: u32) -> bool {
        let pb = &self.peers[b as usize];
        if !pb.online() || pb.nat || self.cut(a, b) {
            return false;
        }
        let loss = self.sc.network.loss;
        !(loss > 0.0 && self.net_rng.random::<f64>() < loss)
    }

    fn count_control(&mut self, bytes: u64) {
        self.win.control_msgs += 1;
        self.win.control_bytes += bytes;
        if self.in_window() {
            self.total.control_msgs += 1;
            self.total.control_bytes += bytes;
        }
    }

    pub fn on_output(&mut self, peer: u32, out: Output<u32>) {
        match out {
            Output::Request { id, to, request } => self.send_request(peer, to.peer, id, request),
            Output::FetchChunk {
                fetch,
                from,
                object,
                index,
            } => self.start_chunk(peer, from.peer, fetch, object, index),
            Output::Manifest { fetch, .. } => {
                if let Some(r) = self.rec_of(peer, fetch) {
                    self.recs[r as usize].has_manifest = true;
                }
            }
            Output::FetchDone {
                fetch,
                bytes,
                first_byte_ms,
                ..
            } => {
                // The core reports no bytes for an object it already held.
                let local = bytes.iter().all(|b| *b == 0);
                self.fetch_done(peer, fetch, local, first_byte_ms)
            }
            Output::FetchFailed { fetch, .. } => self.fetch_failed(peer, fetch),
            Output::Ban { .. } | Output::AsMapOffered { .. } => {}
            Output::RoleChanged { role } => {
                let p = &mut self.peers[peer as usize];
                let was = p.supernode;
                p.supernode = role == Role::Supernode;
                if p.supernode && !was {
                    self.supernodes += 1;
                    self.max_supernodes = self.max_supernodes.max(self.supernodes);
                } else if was && !p.supernode {
                    self.supernodes -= 1;
                }
            }
        }
    }

    /// Sends a request. The receiver's core answers it at once (the request's one-way delay is
    /// folded into the response's: the answer reaches the sender one RTT later), which halves
    /// the events per message; a dead, NAT'd, cut-off or lost receiver yields `Unreachable`
    /// after the timeout.
    fn send_request(&mut self, from: u32, to: u32, id: RequestId, req: Request<u32>) {
        let now = self.q.now;
        self.count_control(request_size(&req));
        self.request_counts[request_kind(&req)] += 1;
        match &req {
            Request::Have { added, removed } => {
                self.listed_objects[0] += added.len() as u64;
                self.listed_objects[1] += removed.len() as u64;
            }
            Request::Holding { objects, .. } => self.listed_objects[2] += objects.len() as u64,
            Request::Attach {
                role: nearcast_proto::Role::Leaf,
                ..
            } if self.profile => {
                if let Some(node) = self.peers[from as usize].node.as_ref() {
                    let parents = node.parents();
                    let already = parents.iter().any(|c| c.peer == to);
                    let seeder = (to as usize) < self.peers.len() && self.peers[to as usize].seeder;
                    let k =
                        usize::from(seeder) * 8 + usize::from(already) * 4 + parents.len().min(3);
                    self.attach_kinds[k] += 1;
                }
            }
            _ => {}
        }
        let sess = self.peers[from as usize].sess;
        if (to as usize) >= self.peers.len() || !self.reachable(from, to) {
            let at = now + u64::from(self.sc.network.timeout_ms);
            let ev = RespEv {
                to: from,
                sess,
                from: to,
                id,
                result: Err(RequestError::Unreachable),
            };
            self.q.push(at, Class::Protocol, Ev::Resp(Box::new(ev)));
            return;
        }
        let rtt = self.rtt(from, to);
        let refusing = self.peers[to as usize].refusing;
        let attach_role = match &req {
            Request::Attach { role, .. } => Some(*role),
            _ => None,
        };
        let kind = request_kind(&req);
        let t0 = self.profile.then(std::time::Instant::now);
        let resp = match req {
            Request::GetManifest { object } => self.manifest_answer(to, from, object),
            Request::Have { .. } | Request::Detach => self.core_answer(to, from, req),
            _ if refusing => Response::Refused {
                reason: "refusing".into(),
            },
            req => self.core_answer(to, from, req),
        };
        if let Some(t0) = t0 {
            self.request_nanos[kind] += t0.elapsed().as_nanos() as u64;
        }
        if let Some(role) = attach_role {
            let k = usize::from(role != nearcast_proto::Role::Leaf) * 6
                + usize::from(self.peers[to as usize].seeder) * 3
                + match &resp {
                    Response::Attached { .. } => 0,
                    Response::Busy { .. } => 1,
                    _ => 2,
                };
            self.attach_outcomes[k] += 1;
        }
        self.count_control(response_size(&resp));
        let ev = RespEv {
            to: from,
            sess,
            from: to,
            id,
            result: Ok(resp),
        };
        self.q
            .push(now + rtt.max(1), Class::Protocol, Ev::Resp(Box::new(ev)));
    }

    fn core_answer(&mut self, at: u32, from: u32, req: Request<u32>) -> Response<u32> {
        let now = self.q.now;
        let Some(node) = self.peers[at as usize].node.as_mut() else {
            return Response::NotFound;
        };
        let resp = node.handle_request(now, &from, req);
        self.dirty.push(at);
        resp
    }

    /// `GetManifest` is answered from the driver's store: seeders hold everything, peers what
    /// they cached or are fetching with a manifest already.
    /// The core admits it first (bans, overload), as in the real node.
    fn manifest_answer(&mut self, at: u32, from: u32, object: ObjectId) -> Response<u32> {
        let Some(n) = self.catalogue.number(&object) else {
            return Response::NotFound;
        };
        if self.peers[at as usize].refusing {
            return Response::Refused {
                reason: "refusing".into(),
            };
        }
        let now = self.q.now;
        let Some(node) = self.peers[at as usize].node.as_mut() else {
            return Response::NotFound;
        };
        let refused = node.admit_manifest(now, &from, object);
        self.dirty.push(at);
        if let Some(answer) = refused {
            return answer;
        }
        let p = &self.peers[at as usize];
        let held = p.seeder
            || p.cache.contains(&n)
            || p.fetches.iter().any(|(_, r)| {
                let rec = &self.recs[*r as usize];
                rec.object == n && rec.has_manifest
            });
        if !held {
            return Response::NotFound;
        }
        Response::Manifest {
            bytes: manifest_of(n, self.catalogue.get(n).size).encode(),
        }
    }

    pub fn on_resp(&mut self, r: RespEv) {
        let now = self.q.now;
        let p = &self.peers[r.to as usize];
        if p.sess != r.sess || !p.online() {
            return;
        }
        // Inline objects arrive inside their manifest: count their bytes by source.
        if let Ok(Response::Manifest { bytes }) = &r.result
            && bytes.len() <= 4200
        {
            self.count_inline(r.to, r.from);
        }
        if let Some(node) = self.peers[r.to as usize].node.as_mut() {
            node.handle_response(now, r.id, r.result);
            self.dirty.push(r.to);
        }
    }

    fn count_inline(&mut self, to: u32, from: u32) {
        let class = self.byte_class(to, from);
        // The fetch waiting for a manifest from `from` is the one without one yet, for an inline
        // object (at most one manifest request is in flight per fetch).
        let found = self.peers[to as usize]
            .fetches
            .iter()
            .map(|(_, r)| *r)
            .find(|r| {
                let rec = &self.recs[*r as usize];
                !rec.has_manifest
                    && u64::from(self.catalogue.get(rec.object).size)
                        <= nearcast_proto::content::INLINE_MAX
            });
        if let Some(r) = found {
            let size = u64::from(self.catalogue.get(self.recs[r as usize].object).size);
            self.recs[r as usize].bytes[class] += size;
            self.recs[r as usize].has_manifest = true;
            if class == SEEDER {
                self.count_egress(size);
            }
        }
    }

    fn count_egress(&mut self, bytes: u64) {
        self.win.seeder_egress += bytes;
        if self.in_window() {
            self.total.seeder_egress += bytes;
        }
    }

    fn start_chunk(&mut self, to: u32, from: u32, fetch: FetchId, object: ObjectId, index: u32) {
        let now = self.q.now;
        let sess = self.peers[to as usize].sess;
        let len = self
            .catalogue
            .number(&object)
            .map(|n| self.catalogue.chunk_len(n, index))
            .unwrap_or(0);
        let mk = |outcome, from_sess, active| ChunkEv {
            to,
            sess,
            from,
            from_sess,
            fetch,
            index,
            len,
            outcome,
            active,
        };
        if (from as usize) >= self.peers.len() || !self.reachable(to, from) {
            let at = now + u64::from(self.sc.network.timeout_ms);
            self.q.push(
                at,
                Class::Protocol,
                Ev::Chunk(Box::new(mk(ChunkOutcome::Failed, 0, false))),
            );
            return;
        }
        let rtt = self.rtt(to, from);
        let from_sess = self.peers[from as usize].sess;
        if self.peers[from as usize].refusing {
            self.q.push(
                now + rtt,
                Class::Protocol,
                Ev::Chunk(Box::new(mk(ChunkOutcome::Busy, from_sess, false))),
            );
            return;
        }
        let decision = match self.peers[from as usize].node.as_mut() {
            Some(node) => node.admit_chunk(now, &to, &object, index, u64::from(len)),
            None => ServeDecision::NotHeld,
        };
        self.dirty.push(from);
        match decision {
            ServeDecision::Serve => {
                let outcome = if self.peers[from as usize].corrupt {
                    ChunkOutcome::Corrupt
                } else {
                    ChunkOutcome::Stored {
                        bytes: u64::from(len),
                    }
                };
                let (s, r) = (&self.peers[from as usize], &self.peers[to as usize]);
                let rate =
                    (s.up / f32::from(s.active_up + 1)).min(r.down / f32::from(r.active_down + 1));
                let dur = rtt + (len as f32 / rate.max(0.001)).ceil() as u64;
                self.peers[from as usize].active_up =
                    self.peers[from as usize].active_up.saturating_add(1);
                self.peers[to as usize].active_down =
                    self.peers[to as usize].active_down.saturating_add(1);
                self.q.push(
                    now + dur,
                    Class::Protocol,
                    Ev::Chunk(Box::new(mk(outcome, from_sess, true))),
                );
            }
            ServeDecision::NotHeld => self.q.push(
                now + rtt,
                Class::Protocol,
                Ev::Chunk(Box::new(mk(ChunkOutcome::NotHeld, from_sess, false))),
            ),
            ServeDecision::Busy => self.q.push(
                now + rtt,
                Class::Protocol,
                Ev::Chunk(Box::new(mk(ChunkOutcome::Busy, from_sess, false))),
            ),
        }
    }

    pub fn on_chunk(&mut self, c: ChunkEv) {
        let now = self.q.now;
        let mut outcome = c.outcome;
        if c.active {
            let s = &mut self.peers[c.from as usize];
            s.active_up = s.active_up.saturating_sub(1);
            let sender_left = s.sess != c.from_sess || !s.online();
            let r = &mut self.peers[c.to as usize];
            r.active_down = r.active_down.saturating_sub(1);
            if sender_left {
                outcome = ChunkOutcome::Failed;
            } else if matches!(outcome, ChunkOutcome::Stored { .. })
                && self.peers[c.from as usize].seeder
            {
                self.count_egress(u64::from(c.len));
            }
        }
        let p = &self.peers[c.to as usize];
        if p.sess != c.sess || !p.online() {
            return;
        }
        match outcome {
            ChunkOutcome::Stored { bytes } => {
                let class = self.byte_class(c.to, c.from);
                if let Some(r) = self.rec_of(c.to, c.fetch) {
                    self.recs[r as usize].bytes[class] += bytes;
                }
                self.win.chunks += 1;
            }
            ChunkOutcome::Corrupt => {
                self.win.corrupt_chunks += 1;
                if self.in_window() {
                    self.total.corrupt_chunks += 1;
                }
            }
            ChunkOutcome::Failed => self.win.chunk_failures += 1,
            _ => {}
        }
        if let Some(node) = self.peers[c.to as usize].node.as_mut() {
            node.handle_chunk(now, c.fetch, &c.from, c.index, outcome);
            self.dirty.push(c.to);
        }
    }

    /// Starts a fetch for a workload request.
    pub fn request(&mut self, peer: u32, object: u32) {
        let now = self.q.now;
        let in_window = self.in_window();
        let o = self.catalogue.get(object);
        let (id, size, held_elsewhere, missed_before) = (o.id, o.size, o.holders > 0, o.missed);
        let miss = o.holders == 0 && o.fetching == 0;
        let place = self.peers[peer as usize].place;
        let cached = self.peers[peer as usize].cache.contains(&object);
        let mut in_as_holders = 0;
        if !cached {
            // Compulsory miss: no live reachable peer holds or is fetching it.
            in_as_holders = self.catalogue.holders_in_as(object, place.as_idx);
            if miss {
                self.win.miss_bytes += u64::from(size);
                if in_window {
                    self.total.miss_bytes += u64::from(size);
                    if !missed_before {
                        self.total.miss_distinct_bytes += u64::from(size);
                    }
                }
                if in_window {
                    self.catalogue.get_mut(object).missed = true;
                }
            }
        }
        self.win.requests += 1;
        if in_window {
            self.total.requests += 1;
        }
        let counted_fetching = !cached && !self.peers[peer as usize].nat;
        if counted_fetching {
            self.catalogue.get_mut(object).fetching += 1;
        }
        let Some(node) = self.peers[peer as usize].node.as_mut() else {
            return;
        };
        let fid = node.start_fetch(now, id);
        let rec = FetchRec {
            peer,
            object,
            started: now,
            bytes: [0; 5],
            in_window,
            has_manifest: false,
            counted_fetching,
            held_elsewhere,
            in_as_holders,
        };
        let r = self.new_rec(rec);
        self.peers[peer as usize].fetches.push((fid.0, r));
        self.dirty.push(peer);
    }

    fn take_rec(&mut self, peer: u32, fid: FetchId) -> Option<FetchRec> {
        let list = &mut self.peers[peer as usize].fetches;
        let pos = list.iter().position(|(f, _)| *f == fid.0)?;
        let (_, r) = list.swap_remove(pos);
        self.free_recs.push(r);
        let rec = std::mem::take(&mut self.recs[r as usize]);
        if rec.counted_fetching {
            let o = self.catalogue.get_mut(rec.object);
            o.fetching = o.fetching.saturating_sub(1);
        }
        Some(rec)
    }

    fn fetch_done(&mut self, peer: u32, fid: FetchId, local: bool, first_byte_ms: u64) {
        let now = self.q.now;
        let Some(mut rec) = self.take_rec(peer, fid) else {
            return;
        };
        let size = u64::from(self.catalogue.get(rec.object).size);
        if local {
            rec.bytes = [0; 5];
            rec.bytes[LOCAL] = size;
        }
        let total_ms = now.saturating_sub(rec.started);
        let apply = |c: &mut crate::metrics::Counters| {
            c.done += 1;
            c.ttfb.record(first_byte_ms);
            c.completion.record(total_ms);
            for i in 0..5 {
                c.bytes[i] += rec.bytes[i];
            }
            if rec.in_as_holders > 0 {
                c.in_as_when_available += rec.bytes[SAME_PREFIX] + rec.bytes[SAME_AS];
                c.peer_when_available +=
                    rec.bytes[SAME_PREFIX] + rec.bytes[SAME_AS] + rec.bytes[OTHER_AS];
            }
        };
        if rec.held_elsewhere && rec.in_window {
            let inline = size <= nearcast_proto::content::INLINE_MAX;
            let peer = rec.bytes[SAME_PREFIX] + rec.bytes[SAME_AS] + rec.bytes[OTHER_AS];
            let k = if inline {
                0
            } else if peer == 0 {
                1
            } else {
                2
            };
            self.avoidable_seeder_bytes[k] += rec.bytes[SEEDER];
        }
        apply(&mut self.win);
        if rec.in_window {
            apply(&mut self.total);
            if rec.in_as_holders > 0 {
                let b = match rec.in_as_holders {
                    1 => 0,
                    2..=4 => 1,
                    5..=16 => 2,
                    _ => 3,
                } + if self.peers[peer as usize].nat { 4 } else { 0 };
                let f = &mut self.far_by_holders[b];
                f[0] += rec.bytes[OTHER_AS];
                f[1] += rec.bytes[SAME_PREFIX] + rec.bytes[SAME_AS] + rec.bytes[OTHER_AS];
            }
        }
        self.cache_insert(peer, rec.object);
    }

    fn fetch_failed(&mut self, peer: u32, fid: FetchId) {
        let Some(rec) = self.take_rec(peer, fid) else {
            return;
        };
        self.win.failed += 1;
        if rec.in_window {
            self.total.failed += 1;
        }
    }

    /// The peer leaves: its fetches end without an outcome.
    pub fn abort_fetches(&mut self, peer: u32) {
        let list: Vec<(u64, u32)> = std::mem::take(&mut self.peers[peer as usize].fetches);
        for (f, r) in list {
            self.peers[peer as usize].fetches.push((f, r));
            if let Some(rec) = self.take_rec(peer, FetchId(f)) {
                self.win.aborted += 1;
                if rec.in_window {
                    self.total.aborted += 1;
                }
            }
        }
    }
}
