//! State of one object fetch: its sources, chunk bitmap, what is in flight and the choice of
//! the next chunk for each source (nearest sources first, rarest chunks first, seeders only for
//! chunks no peer source has).

use std::collections::BTreeMap;

use crate::content::{Manifest, ObjectId};
use crate::peer::{Contact, PeerRef};
use crate::proximity::{Proximity, SourceClass};
use crate::rng::Rng;

/// Consecutive failed or refused chunk requests after which a source is dropped.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 24;
/// Chunks in flight from one seeder while peer sources of the object are known.
pub const SEEDER_WINDOW_BESIDE_PEERS: u32 = 2;

/// Identifies a fetch started by the driver.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct FetchId(pub u64);

/// Why a fetch failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("no peer or seeder could provide the object (seeders unreachable or unaware of it)")]
    NoSource,
    #[error("fetch made no progress for {0} ms")]
    Stalled(u64),
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
    pub map_pending: bool,
    /// Chunks this source delivered.
    pub delivered: u32,
}

impl<P> Source<P> {
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
    pub seeders_asked: bool,
    pub manifest: Option<Manifest>,
    pub manifest_in_flight: bool,
    pub sources: BTreeMap<P, Source<P>>,
    pub have: Vec<bool>,
    pub in_flight: BTreeMap<u32, (P, u64)>,
    pub bytes: [u64; 5],
    pub locates_pending: u32,
    pub wider_asked: bool,
    pub lookup_pending: bool,
    pub next_map_refresh: u64,
    pub first_byte_at: Option<u64>,
}

impl<P: PeerRef> Fetch<P> {
    pub fn new(object: ObjectId, now: u64, hedge_at: u64) -> Self {
        Fetch {
            object,
            started: now,
            last_progress: now,
            hedge_at,
            seeders_asked: false,
            manifest: None,
            manifest_in_flight: false,
            sources: BTreeMap::new(),
            have: Vec::new(),
            in_flight: BTreeMap::new(),
            bytes: [0; 5],
            locates_pending: 0,
            wider_asked: false,
            lookup_pending: false,
            next_map_refresh: now,
            first_byte_at: None,
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
                map_pending: false,
                delivered: 0,
            },
        );
    }

    /// Whether any non-seeder source is known.
    pub fn has_peer_sources(&self) -> bool {
        self.sources.values().any(|s| !s.is_seeder)
    }

    /// Best source not yet asked for the manifest (peers by proximity, seeders last).
    pub fn next_manifest_source(&mut self, allow_seeders: bool) -> Option<Contact<P>> {
        let best = self
            .sources
            .values()
            .filter(|s| !s.manifest_tried && (allow_seeders || !s.is_seeder))
            .min_by_key(|s| {
                (
                    s.is_seeder,
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
        Some(s.contact.clone())
    }

    pub fn set_manifest(&mut self, manifest: Manifest) {
        self.have = vec![false; manifest.chunk_count() as usize];
        self.manifest = Some(manifest);
    }

    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.have.iter().all(|h| *h)
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
        // Rarity among peer sources (seeders excluded).
        let mut rarity = vec![0u32; n];
        for s in self.sources.values().filter(|s| !s.is_seeder) {
            for (i, r) in rarity.iter_mut().enumerate() {
                if s.has(i) {
                    *r += 1;
                }
            }
        }
        let mut order: Vec<&P> = self.sources.keys().collect();
        order.sort_by_key(|p| {
            let s = &self.sources[*p];
            (s.is_seeder, s.proximity, s.failures)
        });
        let order: Vec<P> = order.into_iter().cloned().collect();
        let start = rng.below(n.max(1) as u64) as usize;
        let has_peer_sources = self.has_peer_sources();
        for peer in order {
            // A nearer source whose chunk map has not arrived yet may hold everything: wait
            // for its map (refreshed at once) rather than hand its chunks to farther sources.
            if self.sources.get(&peer).is_some_and(|s| {
                s.chunks.as_ref().is_some_and(|m| m.is_empty()) && n > 0 && s.failures == 0
            }) {
                break;
            }
            while let Some(s) = self.sources.get(&peer) {
                // While peers share the object, a seeder only seeds: a narrow window leaves
                // most chunks to the peers (who pass on what the seeder gave each of them).
                let limit = if s.is_seeder && has_peer_sources {
                    window.min(SEEDER_WINDOW_BESIDE_PEERS)
                } else {
                    window
                };
                if s.in_flight >= limit {
                    break;
                }
                let is_seeder = s.is_seeder;
                let mut best: Option<(u32, usize)> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if self.have[i] || self.in_flight.contains_key(&(i as u32)) || !s.has(i) {
                        continue;
                    }
                    // Seeders only supply what no peer source has.
                    if is_seeder && rarity[i] > 0 {
                        continue;
                    }
                    if best.is_none_or(|(r, _)| rarity[i] < r) {
                        best = Some((rarity[i], i));
                    }
                }
                let Some((_, i)) = best else { break };
                self.in_flight.insert(i as u32, (peer.clone(), now));
                if let Some(s) = self.sources.get_mut(&peer) {
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
            ChunkOutcome::Busy | ChunkOutcome::Failed => {
                // Transient failures come in bursts of the window in flight: give up on a
                // source only after more consecutive failures than that. A peer that never
                // delivered a chunk and whose every request in flight failed is unreachable
                // (gone, or its address is stale): drop it at once rather than retry it, one
                // timeout at a time.
                s.failures += 1;
                let unreachable = outcome == ChunkOutcome::Failed
                    && !s.is_seeder
                    && s.in_flight == 0
                    && s.delivered == 0;
                if unreachable || s.failures >= MAX_CONSECUTIVE_FAILURES {
                    self.sources.remove(peer);
                    self.release(peer);
                }
            }
        }
        true
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
