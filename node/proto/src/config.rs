//! Configuration of a node's state machine: identity, seeders, timings and capacities.

use std::sync::Arc;

use crate::message::Role;
use crate::peer::Contact;

/// Timings, in milliseconds.
#[derive(Clone, Debug)]
pub struct Timing {
    /// After this, a fetch without a manifest from a peer also asks the seeders.
    pub hedge_ms: u64,
    /// A fetch with no progress for this long fails.
    pub stall_ms: u64,
    /// A chunk in flight longer than this is given up.
    pub chunk_timeout_ms: u64,
    /// How often partial sources' chunk maps are refreshed.
    pub chunk_map_refresh_ms: u64,
    /// Housekeeping period (attachment, heartbeats, expiry, election).
    pub maintenance_ms: u64,
    /// Children send `Have` at least this often; parents drop children silent for 3 periods.
    pub heartbeat_ms: u64,
    /// Uptime before a reachable peer may become a supernode.
    pub promote_after_ms: u64,
    /// A supernode with too few children for this long steps down.
    pub demote_after_ms: u64,
    /// First and largest delay between attach attempts after failures.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Provider records live this long; hot objects are re-announced at half of it.
    pub provider_ttl_ms: u64,
    /// Half-life of request counts.
    pub hot_half_life_ms: u64,
    /// A node that follows published proximity maps asks its seeders this often.
    pub asmap_check_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            hedge_ms: 400,
            stall_ms: 20_000,
            chunk_timeout_ms: 10_000,
            chunk_map_refresh_ms: 250,
            maintenance_ms: 5_000,
            heartbeat_ms: 60_000,
            promote_after_ms: 10 * 60_000,
            demote_after_ms: 30 * 60_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 120_000,
            provider_ttl_ms: 60 * 60_000,
            hot_half_life_ms: 10 * 60_000,
            asmap_check_ms: 10 * 60_000,
        }
    }
}

/// How a node chooses sources: full nearcast, or one of the baselines the simulator compares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Strategy {
    /// Supernodes, proximity by prefix, AS and AS distance, hot-object DHT announcements.
    Nearcast,
    /// As nearcast, but proximity by IP prefix alone.
    PrefixOnly,
    /// No supernodes and no proximity: holders found through the seeders, chosen at random.
    RandomSwarm,
    /// A plain origin: every byte from the seeders.
    SeederOnly,
}

/// Everything a node's state machine is configured with.
#[derive(Clone, Debug)]
pub struct Config<P> {
    /// How others reach this node.
    pub own: Contact<P>,
    /// `Seeder` for origin daemons, `Leaf` for peers (which may be promoted).
    pub role: Role,
    /// The seeder set, from configuration: being a seeder is never a peer's own claim.
    pub seeders: Arc<[Contact<P>]>,
    /// Seeders asked per object (rendezvous hashing).
    pub replication: usize,
    /// Seed of the node's own random generator.
    pub seed: u64,
    pub timing: Timing,
    /// Upload capacity offered to the overlay, bytes per second.
    pub upload_bytes_per_s: f64,
    /// Control requests served per second before brownout.
    pub control_per_s: f64,
    /// Children a supernode accepts.
    pub max_children: usize,
    /// Parents a leaf keeps (2–4).
    pub parents: usize,
    /// Chunk requests in flight per source.
    pub chunk_window: u32,
    /// Requests within the half-life before an object is announced to the DHT.
    pub hot_threshold: f64,
    /// Admission control, jittered back-off and brownout. Off only to study collapse.
    pub defences: bool,
    /// Whether this peer may become a supernode at all.
    pub may_promote: bool,
    pub strategy: Strategy,
    /// Ask the seeders for the proximity map they publish and install newer ones (see
    /// `mapsync`). Off by default: the real node turns it on unless a local map is given.
    pub follow_published_asmap: bool,
}

impl<P> Config<P> {
    /// `seeders` may be an `Arc` shared by many configurations (the simulator's peers).
    pub fn new(
        own: Contact<P>,
        role: Role,
        seeders: impl Into<Arc<[Contact<P>]>>,
        seed: u64,
    ) -> Self {
        Config {
            own,
            role,
            seeders: seeders.into(),
            replication: 2,
            seed,
            timing: Timing::default(),
            upload_bytes_per_s: 4.0 * 1024.0 * 1024.0,
            control_per_s: 500.0,
            max_children: 300,
            parents: 2,
            chunk_window: 8,
            hot_threshold: 2.5,
            defences: true,
            may_promote: true,
            strategy: Strategy::Nearcast,
            follow_published_asmap: false,
        }
    }
}
