//! Prometheus metrics of a node (`GET /metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use nearcast_proto::SourceClass;

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    fetched: Family<Vec<(String, String)>, Counter>,
    pub served_bytes: Counter,
    pub chunks_served: Counter,
    pub chunks_rejected: Counter,
    pub peers_banned: Counter,
    pub fetches_ok: Counter,
    pub fetches_failed: Counter,
    pub fetch_seconds: Histogram,
    pub connected_peers: Gauge,
    pub children: Gauge,
    pub parents: Gauge,
    pub is_supernode: Gauge,
    pub store_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let fetched = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "nearcast_fetched_bytes",
            "Bytes of objects fetched, by source: local, same_prefix, same_as, other_as, seeder",
            fetched.clone(),
        );
        let m = Metrics {
            fetched,
            served_bytes: Counter::default(),
            chunks_served: Counter::default(),
            chunks_rejected: Counter::default(),
            peers_banned: Counter::default(),
            fetches_ok: Counter::default(),
            fetches_failed: Counter::default(),
            fetch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            connected_peers: Gauge::default(),
            children: Gauge::default(),
            parents: Gauge::default(),
            is_supernode: Gauge::default(),
            store_bytes: Gauge::default(),
            registry,
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "nearcast_served_bytes",
            "Bytes uploaded to other peers",
            m.served_bytes.clone(),
        );
        r.register(
            "nearcast_chunks_served",
            "Chunks uploaded to other peers",
            m.chunks_served.clone(),
        );
        r.register(
            "nearcast_chunks_rejected",
            "Chunks received that failed SHA-256 verification and were discarded",
            m.chunks_rejected.clone(),
        );
        r.register(
            "nearcast_peers_banned",
            "Peers dropped for sending bad data",
            m.peers_banned.clone(),
        );
        r.register(
            "nearcast_fetches_ok",
            "Fetches completed",
            m.fetches_ok.clone(),
        );
        r.register(
            "nearcast_fetches_failed",
            "Fetches that failed",
            m.fetches_failed.clone(),
        );
        r.register(
            "nearcast_fetch_duration_seconds",
            "Time from request to a verified, stored object",
            m.fetch_seconds.clone(),
        );
        r.register(
            "nearcast_connected_peers",
            "Peers with an open connection",
            m.connected_peers.clone(),
        );
        r.register(
            "nearcast_children",
            "Leaves attached to this supernode",
            m.children.clone(),
        );
        r.register(
            "nearcast_parents",
            "Supernodes this leaf is attached to",
            m.parents.clone(),
        );
        r.register(
            "nearcast_is_supernode",
            "1 when this node serves as supernode or seeder",
            m.is_supernode.clone(),
        );
        r.register(
            "nearcast_store_bytes",
            "Bytes held in the local store",
            m.store_bytes.clone(),
        );
        for class in SourceClass::ALL {
            m.fetched_counter(class);
        }
        m
    }

    fn fetched_counter(&self, class: SourceClass) -> Counter {
        self.fetched
            .get_or_create(&vec![("source".to_string(), class.label().to_string())])
            .clone()
    }

    /// Adds fetched bytes under their source class.
    pub fn add_fetched(&self, class: SourceClass, bytes: u64) {
        self.fetched_counter(class).inc_by(bytes);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
