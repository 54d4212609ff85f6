//! The simulated Internet: ASes with heavy-tailed sizes, /24 prefixes inside them, peers placed
//! at addresses in those prefixes, a tiered AS graph, the `AsMap` the core ranks with, and the
//! latency and bandwidth of every pair of peers.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Result;
use ipnet::{IpNet, Ipv4Net};
use nearcast_asmap::{AsMap, AsMapBuilder};
use nearcast_proto::proximity::Locality;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::fxhash::mix;
use crate::realdata;
use crate::scenario::Network;

/// Where a peer sits in the network.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub ip: u32,
    pub prefix: u32,
    pub as_idx: u32,
}

impl Place {
    pub fn ip_addr(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self.ip))
    }
}

/// Distance classes used for latency and byte accounting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Distance {
    SamePrefix,
    SameAs,
    Adjacent,
    Far,
}

/// ASes, prefixes and the AS graph (AS indices; AS numbers are `asns[i]`).
pub struct Topology {
    pub asns: Vec<u32>,
    /// Peers placed in each AS (seeders included).
    pub as_peers: Vec<u32>,
    /// Sorted neighbour lists by AS index.
    pub neighbours: Vec<Vec<u32>>,
    /// Prefix network (as u32) and length, and its AS.
    pub prefixes: Vec<(u32, u8, u32)>,
    pub map: Arc<AsMap>,
    /// A view of `map` every peer's `Locality` is derived from (they share its AS-distance cache).
    pub locality: Locality,
    /// ASes that host seeders (a data-centre AS each).
    pub seeder_ases: Vec<u32>,
}

impl Topology {
    /// Builds the topology and places `peers` peers and `seeders` seeders (seeders first in the
    /// returned list).
    pub fn build(
        cfg: &Network,
        peers: u32,
        seeders: u32,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Topology, Vec<Place>)> {
        let n_as =
            ((peers as f64 / cfg.peers_per_as).ceil() as usize).max(cfg.min_ases.max(1) as usize);
        // AS sizes and their address blocks: real (from data) or generated.
        let blocks: Vec<Vec<(u32, u8)>>;
        let asns: Vec<u32>;
        let weights: Vec<f64>;
        if cfg.data.is_empty() {
            asns = (0..n_as as u32).map(|i| 1000 + i).collect();
            weights = (0..n_as)
                .map(|i| ((i + 1) as f64).powf(-cfg.as_zipf))
                .collect();
            blocks = Vec::new();
        } else {
            let real = realdata::load(&cfg.data, n_as)?;
            asns = real.iter().map(|r| r.asn).collect();
            weights = real.iter().map(|r| r.weight).collect();
            blocks = real.into_iter().map(|r| r.blocks).collect();
        }
        let n_as = asns.len();
        // Peers to ASes by weight.
        let total: f64 = weights.iter().sum();
        let mut cdf = Vec::with_capacity(n_as);
        let mut acc = 0.0;
        for w in &weights {
            acc += w / total;
            cdf.push(acc);
        }
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_as];
        for p in 0..peers {
            let u: f64 = rng.random();
            let i = cdf.partition_point(|c| *c < u).min(n_as - 1);
            members[i].push(p);
        }
        // Prefixes (/24) inside each AS; peers spread over them.
        let per_prefix = cfg.peers_per_prefix.clamp(1, 250) as usize;
        let mut prefixes: Vec<(u32, u8, u32)> = Vec::new();
        let mut places = vec![
            Place {
                ip: 0,
                prefix: 0,
                as_idx: 0
            };
            (peers + seeders) as usize
        ];
        let mut next_block: u32 = u32::from(Ipv4Addr::new(11, 0, 0, 0));
        for (a, list) in members.iter_mut().enumerate() {
            list.shuffle(rng);
            let n_prefixes = list.len().div_ceil(per_prefix).max(1);
            let first = prefixes.len() as u32;
            for k in 0..n_prefixes {
                let base = match blocks.get(a).and_then(|b| b.get(k)) {
                    Some(&(net, _)) => net,
                    None => {
                        let b = next_block;
                        next_block = next_block.wrapping_add(256);
                        b
                    }
                };
                prefixes.push((base, 24, a as u32));
            }
            for (j, &p) in list.iter().enumerate() {
                let k = (j % n_prefixes) as u32;
                let host = (j / n_prefixes) as u32 + 1;
                let (base, _, _) = prefixes[(first + k) as usize];
                places[(seeders + p) as usize] = Place {
                    ip: base + host,
                    prefix: first + k,
                    as_idx: a as u32,
                };
            }
        }
        // AS graph: the largest few form a clique; every other AS links to `as_links` earlier
        // ASes chosen by size (preferential attachment), so big ASes are the hubs.
        let mut neighbours: Vec<Vec<u32>> = vec![Vec::new(); n_as];
        let core = n_as.min(8);
        for (a, list) in neighbours.iter_mut().enumerate().take(core) {
            list.extend((0..core as u32).filter(|&b| b as usize != a));
        }
        for a in core..n_as {
            let local_total: f64 = cdf[a - 1];
            for _ in 0..cfg.as_links.max(1) {
                let u: f64 = rng.random::<f64>() * local_total;
                let b = cdf.partition_point(|c| *c < u).min(a - 1);
                neighbours[a].push(b as u32);
                neighbours[b].push(a as u32);
            }
        }
        // Seeders: one data-centre AS each, linked to the core.
        let mut asns = asns;
        let mut seeder_ases = Vec::new();
        for s in 0..seeders {
            let a = asns.len() as u32;
            asns.push(64_000 + s);
            neighbours.push(Vec::new());
            for c in 0..core as u32 {
                neighbours[a as usize].push(c);
                neighbours[c as usize].push(a);
            }
            let base = next_block;
            next_block = next_block.wrapping_add(256);
            let pi = prefixes.len() as u32;
            prefixes.push((base, 24, a));
            places[s as usize] = Place {
                ip: base + 1,
                prefix: pi,
                as_idx: a,
            };
            seeder_ases.push(a);
        }
        for n in &mut neighbours {
            n.sort_unstable();
            n.dedup();
        }
        let mut as_peers = vec![0u32; asns.len()];
        for p in &places {
            as_peers[p.as_idx as usize] += 1;
        }
        let mut b = AsMapBuilder::new();
        for &(net, len, a) in &prefixes {
            if let Ok(n) = Ipv4Net::new(Ipv4Addr::from(net), len) {
                b.add_prefix(IpNet::V4(n), asns[a as usize]);
            }
        }
        for (a, list) in neighbours.iter().enumerate() {
            for &x in list {
                if (a as u32) < x {
                    b.add_edge(asns[a], asns[x as usize]);
                }
            }
        }
        let (map, _) = b.finish();
        let map = Arc::new(map);
        let locality = Locality::new(map.clone(), std::net::IpAddr::from([0, 0, 0, 0]));
        let topo = Topology {
            asns,
            as_peers,
            neighbours,
            prefixes,
            map,
            locality,
            seeder_ases,
        };
        Ok((topo, places))
    }

    pub fn adjacent(&self, a: u32, b: u32) -> bool {
        self.neighbours[a as usize].binary_search(&b).is_ok()
    }

    /// Distance class between two places.
    pub fn distance(&self, a: &Place, b: &Place) -> Distance {
        if a.prefix == b.prefix {
            Distance::SamePrefix
        } else if a.as_idx == b.as_idx {
            Distance::SameAs
        } else if self.adjacent(a.as_idx, b.as_idx) {
            Distance::Adjacent
        } else {
            Distance::Far
        }
    }

    /// Round-trip time between two places, ms.
    pub fn rtt_ms(&self, cfg: &Network, a: &Place, b: &Place) -> u64 {
        if self.seeder_ases.contains(&a.as_idx) || self.seeder_ases.contains(&b.as_idx) {
            return u64::from(cfg.rtt_seeder_ms);
        }
        u64::from(match self.distance(a, b) {
            Distance::SamePrefix => cfg.rtt_same_prefix_ms,
            Distance::SameAs => cfg.rtt_same_as_ms,
            Distance::Adjacent => cfg.rtt_adjacent_ms,
            Distance::Far => {
                let [lo, hi] = cfg.rtt_far_ms;
                let (x, y) = (a.as_idx.min(b.as_idx), a.as_idx.max(b.as_idx));
                lo + (mix(&[u64::from(x), u64::from(y)]) % u64::from(hi - lo + 1)) as u32
            }
        })
    }

    /// The AS with the most peers (seeder ASes excluded).
    pub fn largest_as(&self) -> u32 {
        let mut best = 0u32;
        for (i, n) in self.as_peers.iter().enumerate() {
            if !self.seeder_ases.contains(&(i as u32)) && *n > self.as_peers[best as usize] {
                best = i as u32;
            }
        }
        best
    }
}
