//! State of one object fetch: its sources, chunk bitmap, what is in flight and the choice of
//! the next chunk for each source (nearest sources first, rarest chunks first, seeders only for
//! chunks no peer source has).

use std::collections::BTreeMap;

use crate::content::{Manifest, ObjectId};
use crate::message::Holder;
use crate::peer::{Contact, PeerRef};
use crate::proximity::{Proximity, SourceClass};
use crate::rng::Rng;

/// Consecutive failed or unanswered chunk requests after which a source is dropped.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 24;
/// A source that answers `Busy` gets no chunk requests for this long; the pause doubles with
/// each `Busy` in a row, up to [`BUSY_PAUSE_MAX_MS`]. `Busy` means "later", not "never": the
/// source stays (a seeder under a flash crowd may be the only one), and the fetch's stall
/// deadline bounds the wait.
pub const BUSY_PAUSE_MS: u64 = 250;
pub const BUSY_PAUSE_MAX_MS: u64 = 2_000;
/// Pauses in a row after which a peer source (never a seeder) is dropped: one that stays
/// overloaded this long (about 4 s) is no use to this fetch, and its chunks go elsewhere.
pub const MAX_BUSY_PAUSES_OF_A_PEER: u32 = 4;
/// Manifest requests in flight at once for one fetch (the first, then hedges).
pub const MAX_MANIFEST_REQUESTS: u32 = 3;
/// Listed peers found unreachable after which a fetch distrusts the rest of its list (stale,
/// e.g. after a mass restart): seeders then come before peers that have not delivered yet, for
/// any chunk. Three transport timeouts stay well within the stall deadline.
pub const DISTRUST_AFTER_UNREACHABLE: u32 = 3;
/// Chunks in flight from one seeder while peer sources of the object are known.
pub const SEEDER_WINDOW_BESIDE_PEERS: u32 = 2;
/// Sources one fetch keeps track of: holders named by peers (lookups, peer exchange) beyond
/// this are ignored, so a peer cannot grow a fetch without bound. Seeders always join.
pub const MAX_SOURCES: usize = 128;
/// While a reader waits at chunk `i` (a gateway streaming the object as it arrives), chunks
/// `i..i + STREAM_AHEAD_CHUNKS` are requested in order before any other (rarest first).
pub const STREAM_AHEAD_CHUNKS: usize = 8;
/// The chunk a reader waits for, in flight this long from one source, is asked of another
/// source as well (once per chunk): a slow uplink does not hold a player up for the whole
/// transfer timeout. Whichever copy comes first is used; the other is a chunk's worth of waste.
pub const READER_HEDGE_MS: u64 = 500;

/// Identifies a fetch started by the driver.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct FetchId(pub u64);

/// Why a fetch failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("no peer holds the object and no seeder knows it")]
    NoSource,
    /// No peer holds the object and the seeders that would have it could not be reached: it may
    /// well exist, so this is worth retrying later (unlike [`FetchError::NoSource`]).
    #[error("no peer holds the object and its seeders could not be reached")]
    SeedersUnreachable,
    #[error("fetch made no progress for {0} ms")]
    Stalled(u64),
    /// The driver could not keep the object (its cache is too small, its disk full or failing).
    #[error("cannot keep the object here: {0}")]
    Local(String),
}

/// Outcome of one chunk transfer, as reported by the driver after verification.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChunkOutcome {
    /// Verified and stored.
    Stored { bytes: u64 },
    /// Received but failed verification: the sender is dropped.
    Corrupt,
    /// The source said it does not hold the chunk.
    NotHeld,
    /// The source is overloaded.
    Busy,
    /// Transport failure or timeout.
    Failed,
}

/// One candidate source of the object.
#[derive(Clone, Debug)]
pub struct Source<P> {
    pub contact: Contact<P>,
    pub proximity: Proximity,
    pub is_seeder: bool,
    /// Known chunk map (None: complete holder or unknown yet and assumed complete).
    pub chunks: Option<Vec<bool>>,
    pub in_flight: u32,
    pub failures: u32,
    pub manifest_tried: bool,
    /// Asked for the manifest and not answered yet: maybe gone, so no chunk requests until
    /// it answers (another source's manifest may arrive first, after a hedge).
    pub awaiting_manifest: bool,
    pub map_pending: bool,
    /// Chunks this source delivered.
    pub delivered: u32,
    /// Chunks freed by transport failures before this source delivered anything: while it has
    /// any, it is suspect (see [`Source::suspect`]) and they are kept from other sources as
    /// long as it still has requests in flight (a transient failure in a burst of successes
    /// gives them back to it).
    pub held_back: Vec<u32>,
    /// No chunk requests before this instant (0: none pending): the source answered `Busy`.
    pub busy_until: u64,
    /// Pauses in a row, since the source last delivered.
    pub busy_pauses: u32,
}

impl<P> Source<P> {
    /// A transport failure before any delivery: no new requests until one in flight succeeds.
    pub fn suspect(&self) -> bool {
        !self.held_back.is_empty()
    }

    /// May be sent a chunk request now: not suspect, its manifest answer not awaited, not
    /// paused after `Busy`.
    fn usable(&self, now: u64) -> bool {
        !self.suspect() && !self.awaiting_manifest && self.busy_until <= now
    }

    pub fn class(&self) -> SourceClass {
        if self.is_seeder {
            SourceClass::Seeder
        } else {
            self.proximity.class()
        }
    }

    fn has(&self, index: usize) -> bool {
        match &self.chunks {
            None => true,
            Some(map) => map.get(index).copied().unwrap_or(false),
        }
    }
}

/// An object being fetched.
pub struct Fetch<P> {
    pub object: ObjectId,
    pub started: u64,
    pub last_progress: u64,
    pub hedge_at: u64,
    /// When the seeders joined as sources (`None`: not yet).
    pub seeders_asked_at: Option<u64>,
    pub manifest: Option<Manifest>,
    /// Manifest requests in flight, when the last was sent, and how many were sent in all.
    pub manifest_in_flight: u32,
    pub manifest_asked_at: u64,
    pub manifest_requests: u32,
    pub sources: BTreeMap<P, Source<P>>,
    pub have: Vec<bool>,
    pub in_flight: BTreeMap<u32, (P, u64)>,
    pub bytes: [u64; 5],
    pub locates_pending: u32,
    pub wider_asked: bool,
    /// The object's first seeder was asked for holders (`Locate`).
    pub seeder_located: bool,
    pub lookup_pending: bool,
    pub next_map_refresh: u64,
    pub first_byte_at: Option<u64>,
    /// Peer sources dropped as unreachable (a stale holder list, e.g. after a mass restart).
    pub unreachable_dropped: u32,
    /// Chunks wait until then for a pending `Locate` that may name a holder in our AS.
    pub near_wait_until: Option<u64>,
    /// A seeder source was dropped because it could not be reached (transport failures) or was
    /// overloaded (`Busy` or `Refused` for the manifest).
    pub seeder_unavailable: bool,
    /// A seeder answered that it does not know the object.
    pub seeder_denied: bool,
    /// The chunk a reader of the object waits for (see [`STREAM_AHEAD_CHUNKS`]).
    pub reader_at: Option<u32>,
    /// The last chunk asked of a second source for a reader (see [`READER_HEDGE_MS`]).
    pub reader_hedged: Option<u32>,
}

impl<P: PeerRef> Fetch<P> {
    pub fn new(object: ObjectId, now: u64, hedge_at: u64) -> Self {
        Fetch {
            object,
            started: now,
            last_progress: now,
            hedge_at,
            seeders_asked_at: None,
            manifest: None,
            manifest_in_flight: 0,
            manifest_asked_at: now,
            manifest_requests: 0,
            sources: BTreeMap::new(),
            have: Vec::new(),
            in_flight: BTreeMap::new(),
            bytes: [0; 5],
            locates_pending: 0,
            wider_asked: false,
            seeder_located: false,
            lookup_pending: false,
            next_map_refresh: now,
            first_byte_at: None,
            unreachable_dropped: 0,
            near_wait_until: None,
            seeder_unavailable: false,
            seeder_denied: false,
            reader_at: None,
            reader_hedged: None,
        }
    }

    /// Adds a candidate source (or upgrades what we know of it).
    pub fn add_source(
        &mut self,
        contact: Contact<P>,
        proximity: Proximity,
        is_seeder: bool,
        complete: bool,
    ) {
        if let Some(s) = self.sources.get_mut(&contact.peer) {
            if complete {
                s.chunks = None;
            }
            s.is_seeder |= is_seeder;
            return;
        }
        if self.sources.len() >= MAX_SOURCES && !is_seeder {
            return;
        }
        let chunks = if complete { None } else { Some(Vec::new()) };
        self.sources.insert(
            contact.peer.clone(),
            Source {
                contact,
                proximity,
                is_seeder,
                chunks,
                in_flight: 0,
                failures: 0,
                manifest_tried: false,
                awaiting_manifest: false,
                map_pending: false,
                delivered: 0,
                held_back: Vec::new(),
                busy_until: 0,
                busy_pauses: 0,
            },
        );
    }

    /// Whether the seeders joined as sources.
    pub fn seeders_asked(&self) -> bool {
        self.seeders_asked_at.is_some()
    }

    /// Whether a peer source in our own AS (or prefix) is known.
    pub fn has_near_source(&self) -> bool {
        self.sources
            .values()
            .any(|s| !s.is_seeder && s.proximity.tier <= 1)
    }

    /// Whether any non-seeder source is known.
    pub fn has_peer_sources(&self) -> bool {
        self.sources.values().any(|s| !s.is_seeder)
    }

    /// Whether some source may still be asked for the manifest.
    pub fn has_manifest_candidate(&self, allow_seeders: bool) -> bool {
        self.sources
            .values()
            .any(|s| !s.manifest_tried && (allow_seeders || !s.is_seeder))
    }

    /// Best source not yet asked for the manifest: peers by proximity, seeders last, or first
    /// with `seeders_first` (the hedge that must not wait for peers that may be gone).
    pub fn next_manifest_source(
        &mut self,
        allow_seeders: bool,
        seeders_first: bool,
    ) -> Option<Contact<P>> {
        let best = self
            .sources
            .values()
            .filter(|s| !s.manifest_tried && (allow_seeders || !s.is_seeder))
            .min_by_key(|s| {
                (
                    s.is_seeder != seeders_first,
                    s.proximity.tier,
                    s.chunks.is_some(),
                    s.proximity,
                )
            })?
            .contact
            .peer
            .clone();
        let s = self.sources.get_mut(&best)?;
        s.manifest_tried = true;
        s.awaiting_manifest = true;
        Some(s.contact.clone())
    }

    pub fn set_manifest(&mut self, manifest: Manifest) {
        self.have = vec![false; manifest.chunk_count() as usize];
        self.manifest = Some(manifest);
    }

    /// Starts from a manifest already stored and the chunks stored with it (`held[i]`, verified,
    /// left by an interrupted fetch): only the others are fetched; held ones count as local.
    pub fn resume(&mut self, manifest: Manifest, held: &[bool]) {
        self.have = (0..manifest.chunk_count())
            .map(|i| held.get(i as usize).copied().unwrap_or(false))
            .collect();
        let local: u64 = (0..manifest.chunk_count())
            .filter(|&i| self.have[i as usize])
            .map(|i| manifest.chunk_len(i) as u64)
            .sum();
        self.bytes[SourceClass::Local.index()] += local;
        self.manifest = Some(manifest);
    }

    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.have.iter().all(|h| *h)
    }

    /// Up to `max` peer sources to tell `asker` of (peer exchange): those that delivered
    /// first, then the nearest; never the asker, a seeder or a suspect source.
    pub fn swarm_peers(&self, asker: &P, max: usize) -> Vec<Holder<P>> {
        let mut peers: Vec<&Source<P>> = self
            .sources
            .values()
            .filter(|s| !s.is_seeder && !s.suspect() && &s.contact.peer != asker)
            .collect();
        peers.sort_by_key(|s| (s.delivered == 0, s.proximity));
        peers
            .into_iter()
            .take(max)
            .map(|s| Holder {
                contact: s.contact.clone(),
                complete: s.chunks.is_none(),
            })
            .collect()
    }

    /// Bitmap of chunks held, for `GetChunkMap` answers.
    pub fn chunk_bits(&self) -> Vec<u8> {
        pack_bits(&self.have)
    }

    /// Picks chunk requests for every source with free window. Returns (source, index).
    pub fn schedule(&mut self, now: u64, window: u32, rng: &mut Rng) -> Vec<(Contact<P>, u32)> {
        let mut out = Vec::new();
        if self.manifest.is_none() {
            return out;
        }
        let n = self.have.len();
        // Rarity among peer sources (seeders excluded). A peer paused after `Busy` still
        // counts: it is likely to serve a moment later, and the seeder should not take over
        // at its first `Busy` (a peer that stays busy is dropped, see `on_chunk`).
        let mut rarity = vec![0u32; n];
        for s in self
            .sources
            .values()
            .filter(|s| !s.is_seeder && !s.suspect())
        {
            for (i, r) in rarity.iter_mut().enumerate() {
                if s.has(i) {
                    *r += 1;
                }
            }
        }
        // Peers first, then seeders; once listed peers proved unreachable, peers that have not
        // delivered yet come after the seeders, which may then take any chunk.
        let distrust = self.unreachable_dropped >= DISTRUST_AFTER_UNREACHABLE;
        let rank = |s: &Source<P>| match (s.is_seeder, distrust && s.delivered == 0) {
            (false, false) => 0,
            (true, _) => 1,
            (false, true) => 2,
        };
        // Chunks not to assign: held, in flight, or held back for a suspect source.
        let mut taken = self.have.clone();
        for &i in self.in_flight.keys() {
            if let Some(t) = taken.get_mut(i as usize) {
                *t = true;
            }
        }
        for s in self
            .sources
            .values()
            .filter(|s| s.suspect() && s.in_flight > 0)
        {
            for &i in &s.held_back {
                if let Some(t) = taken.get_mut(i as usize) {
                    *t = true;
                }
            }
        }
        let mut order: Vec<(&P, &Source<P>)> = self.sources.iter().collect();
        order.sort_by_key(|(_, s)| (rank(s), s.proximity, s.failures));
        let order: Vec<P> = order.into_iter().map(|(p, _)| p.clone()).collect();
        let start = rng.below(n.max(1) as u64) as usize;
        let has_peer_sources = self.has_peer_sources();
        let window_of = |s: &Source<P>| {
            if s.is_seeder && has_peer_sources {
                window.min(SEEDER_WINDOW_BESIDE_PEERS)
            } else {
                window
            }
        };
        // First, the reader's next chunk if it is slow to come from its source: the nearest
        // other source that has it and room in its window is asked too.
        let waited = self
            .reader_at
            .and_then(|at| (at..n as u32).find(|&i| !self.have[i as usize]))
            .filter(|&i| self.reader_hedged != Some(i))
            .and_then(|i| self.in_flight.get(&i).map(|(p, at)| (i, p.clone(), *at)));
        if let Some((i, slow, since)) = waited
            && now.saturating_sub(since) >= READER_HEDGE_MS
            && let Some(peer) = order.iter().find(|p| {
                **p != slow
                    && self.sources.get(*p).is_some_and(|s| {
                        s.usable(now) && s.has(i as usize) && s.in_flight < window_of(s)
                    })
            })
            && let Some(s) = self.sources.get_mut(peer)
        {
            s.in_flight += 1;
            out.push((s.contact.clone(), i));
            self.in_flight.insert(i, (peer.clone(), now));
            self.reader_hedged = Some(i);
        }
        for peer in &order {
            // A nearer source whose chunk map has not arrived yet may hold everything: wait
            // for its map (refreshed at once) rather than hand its chunks to farther sources.
            if self.sources.get(peer).is_some_and(|s| {
                s.chunks.as_ref().is_some_and(|m| m.is_empty()) && n > 0 && s.failures == 0
            }) {
                break;
            }
            while let Some(s) = self.sources.get(peer).filter(|s| s.usable(now)) {
                // While peers share the object, a seeder only seeds: a narrow window leaves
                // most chunks to the peers (who pass on what the seeder gave each of them).
                if s.in_flight >= window_of(s) {
                    break;
                }
                let is_seeder = s.is_seeder;
                // Seeders only supply what no peer source has (while the list is trusted).
                let may_take =
                    |i: usize| !taken[i] && s.has(i) && !(is_seeder && rarity[i] > 0 && !distrust);
                // The chunks a reader waits for come first, in order; then the rarest.
                let mut best: Option<(u32, usize)> = self
                    .reader_at
                    .map(|at| at as usize)
                    .and_then(|at| (at..n.min(at + STREAM_AHEAD_CHUNKS)).find(|&i| may_take(i)))
                    .map(|i| (0, i));
                if best.is_none() {
                    for k in 0..n {
                        let i = (start + k) % n;
                        if may_take(i) && best.is_none_or(|(r, _)| rarity[i] < r) {
                            best = Some((rarity[i], i));
                        }
                    }
                }
                let Some((_, i)) = best else { break };
                taken[i] = true;
                self.in_flight.insert(i as u32, (peer.clone(), now));
                if let Some(s) = self.sources.get_mut(peer) {
                    s.in_flight += 1;
                    out.push((s.contact.clone(), i as u32));
                }
            }
        }
        out
    }

    /// Records a chunk result. Returns the class the bytes count under when stored.
    pub fn on_chunk(&mut self, now: u64, peer: &P, index: u32, outcome: ChunkOutcome) -> bool {
        if self.in_flight.get(&index).is_some_and(|(p, _)| p == peer) {
            self.in_flight.remove(&index);
        }
        let Some(s) = self.sources.get_mut(peer) else {
            return false;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        match outcome {
            ChunkOutcome::Stored { bytes } => {
                if let Some(h) = self.have.get_mut(index as usize)
                    && !*h
                {
                    *h = true;
                    let class = s.class();
                    self.bytes[class.index()] += bytes;
                    self.last_progress = now;
                    self.first_byte_at.get_or_insert(now);
                }
                s.failures = 0;
                s.delivered += 1;
                s.held_back.clear();
                s.busy_pauses = 0;
            }
            ChunkOutcome::Corrupt => {
                self.sources.remove(peer);
                self.release(peer);
            }
            ChunkOutcome::NotHeld => {
                if let Some(map) = s.chunks.as_mut() {
                    if let Some(b) = map.get_mut(index as usize) {
                        *b = false;
                    }
                } else {
                    s.chunks = Some(Vec::new());
                }
                s.failures += 1;
            }
            ChunkOutcome::Busy => {
                // The rest of a window sent before the pause began answers Busy too: one
                // pause per burst, not one per answer.
                if now >= s.busy_until {
                    let pause = BUSY_PAUSE_MS << s.busy_pauses.min(8);
                    s.busy_until = now + pause.min(BUSY_PAUSE_MAX_MS);
                    s.busy_pauses += 1;
                    if !s.is_seeder && s.busy_pauses > MAX_BUSY_PAUSES_OF_A_PEER {
                        self.sources.remove(peer);
                        self.release(peer);
                    }
                }
            }
            ChunkOutcome::Failed => {
                // Transient failures come in bursts of the window in flight: give up on a
                // source only after more consecutive failures than that. A peer that never
                // delivered a chunk and whose request failed at transport level is suspect (it
                // may be gone, or its address stale): it gets no more requests, and the chunks
                // its failures free wait until it delivers one (they are its again) or its
                // last request in flight fails too: then it is dropped and they go to others,
                // rather than back to it one timeout at a time.
                s.failures += 1;
                if !s.is_seeder && s.delivered == 0 {
                    s.held_back.push(index);
                }
                let unreachable = s.suspect() && s.in_flight == 0;
                if unreachable {
                    self.unreachable_dropped += 1;
                }
                if unreachable || s.failures >= MAX_CONSECUTIVE_FAILURES {
                    if s.is_seeder {
                        self.seeder_unavailable = true;
                    }
                    self.sources.remove(peer);
                    self.release(peer);
                }
            }
        }
        true
    }

    /// Ends the `Busy` pauses that are over (so that they no longer ask for a timer).
    pub fn end_pauses(&mut self, now: u64) {
        for s in self.sources.values_mut() {
            if s.busy_until <= now {
                s.busy_until = 0;
            }
        }
    }

    /// When the next `Busy` pause ends, if one is running.
    pub fn next_pause_end(&self) -> Option<u64> {
        self.sources
            .values()
            .map(|s| s.busy_until)
            .filter(|&t| t > 0)
            .min()
    }

    /// Frees chunks in flight from `peer` (dropped source).
    fn release(&mut self, peer: &P) {
        self.in_flight.retain(|_, (p, _)| p != peer);
    }

    /// The connection to `peer` closed: its chunks in flight will not come.
    pub fn peer_gone(&mut self, now: u64, peer: &P) {
        let lost: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, (p, _))| p == peer)
            .map(|(i, _)| *i)
            .collect();
        for i in lost {
            self.on_chunk(now, peer, i, ChunkOutcome::Failed);
        }
        if self.sources.get(peer).is_some_and(|s| !s.is_seeder) {
            self.drop_source(peer);
        }
    }

    /// Why the fetch has no source left: no seeder knows the object, or the seeders could not
    /// be reached (and none said it does not know it).
    pub fn no_source_error(&self) -> FetchError {
        if self.seeder_unavailable && !self.seeder_denied {
            FetchError::SeedersUnreachable
        } else {
            FetchError::NoSource
        }
    }

    /// Removes a source entirely.
    pub fn drop_source(&mut self, peer: &P) {
        self.sources.remove(peer);
        self.release(peer);
    }

    /// Chunks in flight longer than `timeout_ms` are given up (their source counted failed).
    pub fn expire_in_flight(&mut self, now: u64, timeout_ms: u64) {
        let late: Vec<(u32, P)> = self
            .in_flight
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) > timeout_ms)
            .map(|(i, (p, _))| (*i, p.clone()))
            .collect();
        for (i, p) in late {
            self.on_chunk(now, &p, i, ChunkOutcome::Failed);
        }
    }
}

/// Packs a bitmap, bit i of byte i/8 (LSB first).
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

/// Unpacks `n` bits.
pub fn unpack_bits(bytes: &[u8], n: usize) -> Vec<bool> {
    (0..n)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::content::{Body, CHUNK_SIZE};

    fn contact(peer: u32) -> Contact<u32> {
        Contact::new(peer, IpAddr::V4(Ipv4Addr::new(127, 1, 0, peer as u8)), 4000)
    }

    fn near(tier: u8) -> Proximity {
        Proximity {
            tier,
            prefix_gap: 0,
            rtt_ms: u32::MAX,
        }
    }

    /// A fetch of an object of `size` bytes, its manifest known.
    fn fetch_of(size: u64) -> Fetch<u32> {
        let chunks = size.div_ceil(CHUNK_SIZE as u64) as u8;
        let manifest = Manifest {
            version: 1,
            size,
            media_type: "image/jpeg".into(),
            chunk_size: CHUNK_SIZE,
            body: Body::Chunks((0..chunks).map(|i| [i + 1; 32]).collect()),
        };
        let mut f = Fetch::new(manifest.id(), 0, 400);
        f.set_manifest(manifest);
        f
    }

    fn two_chunk_fetch() -> Fetch<u32> {
        fetch_of(2 * CHUNK_SIZE as u64)
    }

    /// The chunk indices `schedule` picks.
    fn picked(f: &mut Fetch<u32>, now: u64, window: u32, rng: &mut Rng) -> Vec<u32> {
        f.schedule(now, window, rng)
            .into_iter()
            .map(|(_, i)| i)
            .collect()
    }

    fn stored(f: &mut Fetch<u32>, now: u64, peer: u32, index: u32) {
        let bytes = CHUNK_SIZE as u64;
        f.on_chunk(now, &peer, index, ChunkOutcome::Stored { bytes });
    }

    #[test]
    fn the_chunks_a_reader_waits_for_go_first_in_order() {
        // 40 chunks, one peer holding all; a reader waits at chunk 21.
        let mut f = fetch_of(40 * CHUNK_SIZE as u64);
        f.add_source(contact(1), near(1), false, true);
        f.reader_at = Some(21);
        let mut rng = Rng::new(7);
        assert_eq!(picked(&mut f, 0, 4, &mut rng), vec![21, 22, 23, 24]);
        // Past the look-ahead the fetch goes on as before (not strictly in order).
        stored(&mut f, 10, 1, 21);
        assert_eq!(picked(&mut f, 10, 4, &mut rng), vec![25]);
        // Near the end, the look-ahead stops at the last chunk.
        f.reader_at = Some(38);
        for i in [22, 23, 24, 25] {
            stored(&mut f, 20, 1, i);
        }
        let tail = picked(&mut f, 20, 3, &mut rng);
        assert_eq!(tail.len(), 3);
        assert_eq!(&tail[..2], &[38, 39]);
    }

    #[test]
    fn a_readers_chunk_slow_to_come_is_asked_of_another_source_too() {
        // 8 chunks, two peers holding all; a reader waits at chunk 0.
        let mut f = fetch_of(8 * CHUNK_SIZE as u64);
        f.add_source(contact(1), near(0), false, true);
        f.add_source(contact(2), near(1), false, true);
        f.reader_at = Some(0);
        let mut rng = Rng::new(7);
        let sent = |out: Vec<(Contact<u32>, u32)>| -> Vec<(u32, u32)> {
            out.into_iter().map(|(c, i)| (c.peer, i)).collect()
        };
        assert_eq!(
            sent(f.schedule(0, 2, &mut rng)),
            vec![(1, 0), (1, 1), (2, 2), (2, 3)]
        );
        // The far peer delivers quickly; the near one is slow. Too early for a second request.
        stored(&mut f, 100, 2, 2);
        assert_eq!(sent(f.schedule(100, 2, &mut rng)), vec![(2, 4)]);
        // Half a second on, chunk 0 is asked of the far peer as well, before anything else.
        stored(&mut f, 600, 2, 3);
        assert_eq!(sent(f.schedule(600, 2, &mut rng)), vec![(2, 0)]);
        // Whichever copy comes first counts; the late one is not counted twice, nor asked a
        // third time.
        stored(&mut f, 650, 2, 0);
        stored(&mut f, 900, 1, 0);
        let counted: u64 = f.bytes.iter().sum();
        assert_eq!(counted, 3 * CHUNK_SIZE as u64);
        assert!(f.have[0]);
        // Without a reader, nothing is asked twice however slow.
        f.reader_at = None;
        stored(&mut f, 5_000, 2, 4);
        let later = sent(f.schedule(5_000, 2, &mut rng));
        assert!(later.iter().all(|(_, i)| *i != 1), "{later:?}");
    }

    #[test]
    fn a_listed_peer_that_never_answers_gets_no_more_requests_and_is_dropped() {
        let mut f = two_chunk_fetch();
        f.add_source(contact(1), near(1), false, true);
        f.add_source(contact(9), near(5), true, true);
        let mut rng = Rng::new(1);
        let first = f.schedule(0, 8, &mut rng);
        assert!(first.iter().all(|(c, _)| c.peer == 1), "{first:?}");
        assert_eq!(first.len(), 2);
        // The first request fails: the freed chunk is not handed back to the peer (which used
        // to win it one more round per timeout, for ever), and waits for its other request.
        f.on_chunk(3_000, &1, first[0].1, ChunkOutcome::Failed);
        assert!(f.schedule(3_000, 8, &mut rng).is_empty());
        // Its other request fails too: it is dropped, and the seeder takes both chunks.
        f.on_chunk(3_001, &1, first[1].1, ChunkOutcome::Failed);
        assert!(!f.sources.contains_key(&1));
        let mut last: Vec<u32> = f
            .schedule(3_001, 8, &mut rng)
            .into_iter()
            .map(|(c, i)| {
                assert_eq!(c.peer, 9);
                i
            })
            .collect();
        last.sort();
        assert_eq!(last, vec![0, 1]);
    }

    #[test]
    fn a_fetch_walking_a_stale_list_turns_to_the_seeder_before_it_stalls() {
        let mut f = fetch_of(1000);
        for p in 1..=5 {
            f.add_source(contact(p), near(1), false, true);
        }
        f.add_source(contact(9), near(5), true, true);
        let mut rng = Rng::new(1);
        // Listed holders that are gone: each takes a 3 s transport timeout to fail.
        let mut now = 0;
        for round in 0..DISTRUST_AFTER_UNREACHABLE {
            let sent = f.schedule(now, 8, &mut rng);
            assert_eq!(sent.len(), 1);
            assert_ne!(
                sent[0].0.peer, 9,
                "round {round}: peers first while the list is trusted"
            );
            now += 3_000;
            f.on_chunk(now, &sent[0].0.peer, 0, ChunkOutcome::Failed);
        }
        let sent = f.schedule(now, 8, &mut rng);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.peer, 9, "the seeder, not a third timeout");
    }

    #[test]
    fn a_suspect_peer_that_delivers_after_all_gets_its_chunk_back() {
        let mut f = two_chunk_fetch();
        f.add_source(contact(1), near(1), false, true);
        // A farther peer must not take the chunk a transient failure freed.
        f.add_source(contact(2), near(3), false, true);
        let mut rng = Rng::new(1);
        let first = f.schedule(0, 8, &mut rng);
        f.on_chunk(10, &1, first[0].1, ChunkOutcome::Failed);
        assert!(
            f.schedule(10, 8, &mut rng).is_empty(),
            "a suspect gets no new request"
        );
        f.on_chunk(20, &1, first[1].1, ChunkOutcome::Stored { bytes: 1 });
        let again = f.schedule(20, 8, &mut rng);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].0.peer, again[0].1), (1, first[0].1));
    }

    #[test]
    fn a_peer_that_delivered_survives_a_burst_of_failures() {
        let mut f = two_chunk_fetch();
        f.add_source(contact(1), near(1), false, true);
        let mut rng = Rng::new(1);
        let first = f.schedule(0, 8, &mut rng);
        f.on_chunk(10, &1, first[0].1, ChunkOutcome::Stored { bytes: 1 });
        f.on_chunk(20, &1, first[1].1, ChunkOutcome::Failed);
        assert!(f.sources.contains_key(&1));
    }

    #[test]
    fn a_holder_that_has_not_answered_the_manifest_gets_no_chunks_until_it_does() {
        let mut f = Fetch::new(two_chunk_fetch().object, 0, 400);
        f.add_source(contact(1), near(1), false, true);
        f.add_source(contact(2), near(2), false, true);
        // The nearest is asked first; it does not answer, the hedge asks the other.
        assert_eq!(
            f.next_manifest_source(false, false).map(|c| c.peer),
            Some(1)
        );
        assert_eq!(
            f.next_manifest_source(false, false).map(|c| c.peer),
            Some(2)
        );
        // Peer 2's answer arrives first: chunks go to it, not into peer 1's silence.
        if let Some(s) = f.sources.get_mut(&2) {
            s.awaiting_manifest = false;
        }
        f.set_manifest(two_chunk_fetch().manifest.expect("manifest"));
        let mut rng = Rng::new(1);
        let sent = f.schedule(500, 8, &mut rng);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|(c, _)| c.peer == 2), "{sent:?}");
        // Peer 1 answers late after all: it may take chunks again.
        if let Some(s) = f.sources.get_mut(&1) {
            s.awaiting_manifest = false;
        }
        for (c, i) in sent {
            f.on_chunk(600, &c.peer, i, ChunkOutcome::Busy);
        }
        let again = f.schedule(600, 8, &mut rng);
        assert!(again.iter().any(|(c, _)| c.peer == 1), "{again:?}");
    }
    #[test]
    fn peer_exchange_names_delivering_peers_first_never_the_asker_or_a_seeder() {
        let mut f = two_chunk_fetch();
        f.add_source(contact(1), near(1), false, false);
        f.add_source(contact(2), near(3), false, true);
        f.add_source(contact(3), near(2), false, false);
        f.add_source(contact(9), near(5), true, true);
        let mut rng = Rng::new(1);
        // The partial holders' maps are in: they hold nothing yet.
        for p in [1, 3] {
            if let Some(s) = f.sources.get_mut(&p) {
                s.chunks = Some(vec![false, false]);
            }
        }
        let sent = f.schedule(0, 8, &mut rng);
        assert!(sent.iter().any(|(c, _)| c.peer == 2), "{sent:?}");
        for (c, i) in sent {
            let outcome = if c.peer == 2 {
                ChunkOutcome::Stored { bytes: 1 }
            } else {
                ChunkOutcome::Busy
            };
            f.on_chunk(10, &c.peer, i, outcome);
        }
        let named: Vec<(u32, bool)> = f
            .swarm_peers(&1, 8)
            .into_iter()
            .map(|h| (h.contact.peer, h.complete))
            .collect();
        assert_eq!(named, vec![(2, true), (3, false)]);
        assert_eq!(f.swarm_peers(&1, 1).len(), 1);
    }

    #[test]
    fn named_holders_beyond_the_cap_are_ignored_but_seeders_still_join() {
        let mut f = two_chunk_fetch();
        for p in 0..(MAX_SOURCES as u32 + 50) {
            f.add_source(contact(p), near(2), false, true);
        }
        assert_eq!(f.sources.len(), MAX_SOURCES);
        f.add_source(contact(100_000), near(5), true, true);
        assert!(f.sources.contains_key(&100_000));
    }
}
