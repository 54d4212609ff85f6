//! Proximity: how near another peer is (same IP prefix, same AS, AS distance, then RTT), and the
//! class a source's bytes are counted under.
//!
//! Locality is used to choose whom to fetch from and which supernodes to attach to, never to
//! shape the DHT routing table (that must stay diverse).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bincode::{Decode, Encode};
use nearcast_asmap::AsMap;

/// Where fetched bytes came from; the exclusive classes of `nearcast_fetched_bytes_total`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Encode, Decode)]
pub enum SourceClass {
    Local,
    SamePrefix,
    SameAs,
    OtherAs,
    Seeder,
}

impl SourceClass {
    pub const ALL: [SourceClass; 5] = [
        SourceClass::Local,
        SourceClass::SamePrefix,
        SourceClass::SameAs,
        SourceClass::OtherAs,
        SourceClass::Seeder,
    ];

    /// Label used in metrics and reports.
    pub fn label(self) -> &'static str {
        match self {
            SourceClass::Local => "local",
            SourceClass::SamePrefix => "same_prefix",
            SourceClass::SameAs => "same_as",
            SourceClass::OtherAs => "other_as",
            SourceClass::Seeder => "seeder",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Sort key: smaller is nearer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Proximity {
    /// 0 same prefix, 1 same AS, 2 adjacent AS, 3.. farther, up to `FAR`.
    pub tier: u8,
    /// 128 minus the common prefix length: a longer common prefix is nearer.
    pub prefix_gap: u8,
    /// Measured round-trip time in ms, `u32::MAX` when unknown.
    pub rtt_ms: u32,
}

impl Proximity {
    pub const FAR: u8 = 1 + nearcast_asmap::MAX_AS_DISTANCE;

    pub fn class(&self) -> SourceClass {
        match self.tier {
            0 => SourceClass::SamePrefix,
            1 => SourceClass::SameAs,
            _ => SourceClass::OtherAs,
        }
    }
}

/// Length of the common leading bits of two addresses (0 across families).
pub fn common_prefix_len(a: IpAddr, b: IpAddr) -> u8 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros() as u8,
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) ^ u128::from(b)).leading_zeros() as u8,
        _ => 0,
    }
}

/// What ranking uses of the map (baselines switch parts off; classes always use all of it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ranking {
    /// Prefix, AS, AS distance, RTT.
    Full,
    /// Longest common IP prefix only.
    PrefixOnly,
    /// No locality: a fixed pseudo-random order.
    Blind,
}

/// Bytes of distance rows kept at most; the cache is simply cleared when full.
const MAX_CACHED_ROW_BYTES: usize = 64 << 20;

/// AS distances already computed, one row (a breadth-first search over the whole AS graph) per
/// origin AS, shared by every `Locality` derived from the same map. A supernode ranks many
/// holders and supernodes for requesters of few ASes, so rows are reused far more often than
/// built. Only looked up, never iterated, so its hashing order is moot.
#[derive(Default)]
struct DistanceCache(Mutex<HashMap<u32, Arc<[u8]>>>);

impl DistanceCache {
    /// Distance to AS `b` in `row` (the distances from one origin AS).
    fn in_row(map: &AsMap, row: &[u8], b: u32) -> u8 {
        let Some(ib) = map.as_index(b) else {
            return nearcast_asmap::MAX_AS_DISTANCE;
        };
        row.get(ib as usize)
            .copied()
            .unwrap_or(nearcast_asmap::MAX_AS_DISTANCE)
    }

    fn row(&self, map: &AsMap, a: u32) -> Arc<[u8]> {
        let Ok(mut rows) = self.0.lock() else {
            return map.distances_from(a).into();
        };
        if let Some(row) = rows.get(&a) {
            return row.clone();
        }
        let row: Arc<[u8]> = map.distances_from(a).into();
        if (rows.len() + 1) * row.len().max(1) > MAX_CACHED_ROW_BYTES {
            rows.clear();
        }
        rows.insert(a, row.clone());
        row
    }
}

/// This peer's view of the network map, cheap to clone and swapped whole when a new map arrives.
#[derive(Clone)]
pub struct Locality {
    ranking: Ranking,
    map: Arc<AsMap>,
    distances: Arc<DistanceCache>,
    /// The distance row of our own AS, fetched from the shared cache on first use (every
    /// proximity is measured from us).
    own_row: OnceLock<Arc<[u8]>>,
    own_ip: IpAddr,
    own_asn: Option<u32>,
    own_prefix: Option<ipnet::IpNet>,
}

impl Locality {
    pub fn new(map: Arc<AsMap>, own_ip: IpAddr) -> Self {
        Self::with_cache(map, Arc::default(), own_ip)
    }

    fn with_cache(map: Arc<AsMap>, distances: Arc<DistanceCache>, own_ip: IpAddr) -> Self {
        let route = map.lookup(own_ip);
        Locality {
            ranking: Ranking::Full,
            own_asn: route.as_ref().map(|r| r.asn),
            own_prefix: route.map(|r| r.prefix),
            map,
            distances,
            own_row: OnceLock::new(),
            own_ip,
        }
    }

    /// The view of another peer at `own_ip` on the same map, sharing this view's cache of AS
    /// distances (the simulator builds one per simulated peer).
    pub fn for_ip(&self, own_ip: IpAddr) -> Self {
        Self::with_cache(self.map.clone(), self.distances.clone(), own_ip)
    }

    /// The same view, ranking with `ranking`.
    pub fn with_ranking(mut self, ranking: Ranking) -> Self {
        self.ranking = ranking;
        self
    }

    /// What ranking uses of the map.
    pub fn ranking(&self) -> Ranking {
        self.ranking
    }

    /// The class bytes from `ip` count under (always with the full map).
    pub fn class_of(&self, ip: IpAddr) -> SourceClass {
        let full = Locality {
            ranking: Ranking::Full,
            ..self.clone()
        };
        full.proximity(ip, None).class()
    }

    pub fn map(&self) -> &Arc<AsMap> {
        &self.map
    }

    pub fn own_ip(&self) -> IpAddr {
        self.own_ip
    }

    /// The AS this peer is in, if the map knows.
    pub fn own_asn(&self) -> Option<u32> {
        self.own_asn
    }

    /// AS of any address, if the map knows.
    pub fn asn_of(&self, ip: IpAddr) -> Option<u32> {
        self.map.lookup(ip).map(|r| r.asn)
    }

    /// How near `ip` is to this peer.
    pub fn proximity(&self, ip: IpAddr, rtt_ms: Option<u32>) -> Proximity {
        let (a, b) = (self.own_ip, ip);
        let common = common_prefix_len(a, b);
        let rtt_ms = rtt_ms.unwrap_or(u32::MAX);
        let prefix_gap = 128u8.saturating_sub(common);
        let route_b = match self.ranking {
            Ranking::Full => self.map.lookup(b),
            Ranking::PrefixOnly => None,
            Ranking::Blind => {
                // A stable pseudo-random order, unrelated to where peers are.
                let h = crate::content::sha256(format!("{a}{b}").as_bytes());
                return Proximity {
                    tier: Proximity::FAR,
                    prefix_gap: h[0] & 0x7f,
                    rtt_ms: u32::MAX,
                };
            }
        };
        let tier = match (self.own_prefix, self.own_asn, route_b) {
            (Some(pa), Some(asn_a), Some(rb)) => {
                if pa == rb.prefix {
                    0
                } else if asn_a == rb.asn {
                    1
                } else {
                    let row = self
                        .own_row
                        .get_or_init(|| self.distances.row(&self.map, asn_a));
                    1 + DistanceCache::in_row(&self.map, row, rb.asn)
                }
            }
            // No map entry: fall back to the IP prefix alone.
            _ => {
                let same_prefix = match (a, b) {
                    (IpAddr::V4(_), IpAddr::V4(_)) => common >= 24,
                    (IpAddr::V6(_), IpAddr::V6(_)) => common >= 48,
                    _ => false,
                };
                if same_prefix { 0 } else { Proximity::FAR }
            }
        };
        Proximity {
            tier: tier.min(Proximity::FAR),
            prefix_gap,
            rtt_ms,
        }
    }

    /// This view as seen from `a` (same map, ranking and cache): a supernode ranking holders or
    /// supernodes for a requester at `a` looks `a` up once, then calls `proximity` per candidate.
    pub fn seen_from(&self, a: IpAddr) -> Self {
        Self::with_cache(self.map.clone(), self.distances.clone(), a).with_ranking(self.ranking)
    }
}
