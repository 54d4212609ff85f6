//! nearcast's proximity map: IP address → (longest matching prefix, origin AS), and the AS
//! graph for AS distance.
//!
//! The crate root owns [`AsMap`], the immutable in-memory map that the sans-IO protocol core and
//! the simulator query; it does no I/O by default (maps come from bytes or from any
//! [`std::io::BufRead`]). Modules:
//! - `table`: longest-prefix-match tables (flattened interval arrays, binary search);
//! - `graph`: the AS adjacency in CSR form and the bounded AS distance;
//! - [`format`](mod@format): the versioned, checksummed binary file format and its hostile-input-safe
//!   decoder;
//! - [`builder`]: assembling a map from prefixes, ranges, AS paths and text tables;
//! - `fs` (feature `fs`): crash-safe map files and the `asmap lookup` text;
//! - `build` (feature `build`): `build::MapBuilder` reading MRT RIB dumps (bgpkit-parser),
//!   range CSVs and prefix tables from files, plain, gzip or bzip2.
//!
//! ```
//! use nearcast_asmap::{AsMap, AsMapBuilder};
//! let mut b = AsMapBuilder::new();
//! b.add_prefix("192.0.2.0/24".parse().unwrap(), 64500);
//! b.add_prefix("198.51.100.0/24".parse().unwrap(), 64501);
//! b.add_as_path(&[64500, 64502, 64501]);
//! let (map, _) = b.finish();
//! let map = AsMap::from_bytes(&map.to_bytes()).unwrap();
//! let r = map.lookup("192.0.2.7".parse().unwrap()).unwrap();
//! assert_eq!((r.prefix.to_string(), r.asn), ("192.0.2.0/24".to_string(), 64500));
//! assert_eq!(map.as_distance(64500, 64501), 2);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod builder;
mod error;
pub mod format;
mod graph;
mod table;

#[cfg(feature = "build")]
pub mod build;
#[cfg(feature = "fs")]
mod fs;

use std::fmt;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use builder::{AsMapBuilder, MergeStats, TableStats};
pub use error::AsMapError;
pub use format::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};
#[cfg(feature = "fs")]
pub use fs::{FileError, load_map_file, lookup_cli, write_map_file};

use graph::AsGraph;
use table::PrefixTable;

/// AS distance meaning "unknown or at least this far": the cap of [`AsMap::as_distance`].
pub const MAX_AS_DISTANCE: u8 = 4;

/// The answer to a lookup: the longest prefix containing the address and its origin AS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Longest matching prefix.
    pub prefix: IpNet,
    /// Origin AS number of that prefix.
    pub asn: u32,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} AS{}", self.prefix, self.asn)
    }
}

/// Immutable proximity map: prefixes of both families with their origin AS, and the AS graph.
///
/// Every AS that originates a prefix or appears in an edge is in the AS table.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AsMap {
    pub(crate) v4: PrefixTable<u32>,
    pub(crate) v6: PrefixTable<u128>,
    pub(crate) graph: AsGraph,
    /// Build time, seconds since the Unix epoch (0: unknown); orders published maps.
    pub(crate) built: u64,
}

impl fmt::Debug for AsMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsMap")
            .field("prefixes_v4", &self.v4.len())
            .field("prefixes_v6", &self.v6.len())
            .field("ases", &self.graph.asns.len())
            .field("edges", &self.graph.edge_count())
            .field("built", &self.built)
            .finish()
    }
}

impl AsMap {
    /// A map with no prefixes and no ASes: every lookup misses, every distance is the cap
    /// (except an AS to itself, 0).
    pub fn empty() -> Self {
        Self::default()
    }

    /// True when the map has no prefixes and no ASes.
    pub fn is_empty(&self) -> bool {
        self.v4.len() == 0 && self.v6.len() == 0 && self.graph.asns.is_empty()
    }

    /// Longest-prefix match. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up as
    /// IPv4.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<Route> {
        match ip {
            IpAddr::V4(v4) => self.lookup_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(v4),
                None => {
                    let (len, asn) = self.v6.lookup(u128::from(v6))?;
                    let net = Ipv6Net::new(v6, len).ok()?.trunc();
                    Some(Route {
                        prefix: IpNet::V6(net),
                        asn,
                    })
                }
            },
        }
    }

    #[inline]
    fn lookup_v4(&self, ip: Ipv4Addr) -> Option<Route> {
        let (len, asn) = self.v4.lookup(u32::from(ip))?;
        let net = Ipv4Net::new(ip, len).ok()?.trunc();
        Some(Route {
            prefix: IpNet::V4(net),
            asn,
        })
    }

    /// The origin AS of the longest matching prefix.
    #[inline]
    pub fn lookup_asn(&self, ip: IpAddr) -> Option<u32> {
        self.lookup(ip).map(|r| r.asn)
    }

    /// AS hops between two ASes: 0 for the same AS, 1 adjacent, 2, 3, … capped at
    /// [`MAX_AS_DISTANCE`], which also stands for "unknown" (an AS not in the map, or no path
    /// within the cap).
    pub fn as_distance(&self, a: u32, b: u32) -> u8 {
        self.graph.distance(a, b)
    }

    /// Position of `asn` among [`AsMap::ases`], if known: the index into
    /// [`AsMap::distances_from`]'s answer.
    pub fn as_index(&self, asn: u32) -> Option<u32> {
        self.graph.index(asn)
    }

    /// [`AsMap::as_distance`] from `asn` to every known AS, by [`AsMap::as_index`]; all
    /// [`MAX_AS_DISTANCE`] when `asn` is unknown. One breadth-first search.
    pub fn distances_from(&self, asn: u32) -> Vec<u8> {
        match self.graph.index(asn) {
            Some(i) => self.graph.distances_from(i),
            None => vec![MAX_AS_DISTANCE; self.graph.asns.len()],
        }
    }

    /// AS distance between the origin ASes of two addresses; `None` if either has no route.
    pub fn ip_as_distance(&self, a: IpAddr, b: IpAddr) -> Option<u8> {
        Some(self.as_distance(self.lookup_asn(a)?, self.lookup_asn(b)?))
    }

    /// Build time in seconds since the Unix epoch (0 when unknown, e.g. a version 1 file or a
    /// map read from a CSV). A newer map has a larger value: peers never replace a map with
    /// one whose build time is not larger.
    pub fn built(&self) -> u64 {
        self.built
    }

    /// The same map stamped with build time `secs` (seconds since the Unix epoch).
    pub fn with_built(mut self, secs: u64) -> AsMap {
        self.built = secs;
        self
    }

    /// Number of prefixes (IPv4 and IPv6).
    pub fn prefix_count(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Number of IPv4 prefixes.
    pub fn prefix_count_v4(&self) -> usize {
        self.v4.len()
    }

    /// Number of IPv6 prefixes.
    pub fn prefix_count_v6(&self) -> usize {
        self.v6.len()
    }

    /// Number of known ASes.
    pub fn as_count(&self) -> usize {
        self.graph.asns.len()
    }

    /// Number of undirected AS adjacencies.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// All known AS numbers, ascending.
    pub fn ases(&self) -> &[u32] {
        &self.graph.asns
    }

    /// True if the AS is in the map.
    pub fn contains_as(&self, asn: u32) -> bool {
        self.graph.index(asn).is_some()
    }

    /// The ASes adjacent to `asn`, ascending (empty if unknown).
    pub fn neighbours(&self, asn: u32) -> impl Iterator<Item = u32> + '_ {
        let list = self
            .graph
            .index(asn)
            .map_or(&[][..], |i| self.graph.neighbours(i));
        list.iter().map(|&j| self.graph.asns[j as usize])
    }

    /// All undirected adjacencies as AS number pairs `(a, b)` with `a < b`, ascending.
    pub fn edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.graph
            .edges()
            .map(|(a, b)| (self.graph.asns[a as usize], self.graph.asns[b as usize]))
    }

    /// All prefixes with their origin AS: IPv4 then IPv6, each in ascending order.
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        let v4 = (0..self.v4.len()).filter_map(|i| {
            let net = Ipv4Net::new(Ipv4Addr::from(self.v4.nets[i]), self.v4.lens[i]).ok()?;
            Some(Route {
                prefix: IpNet::V4(net),
                asn: self.v4.asns[i],
            })
        });
        let v6 = (0..self.v6.len()).filter_map(|i| {
            let net = Ipv6Net::new(Ipv6Addr::from(self.v6.nets[i]), self.v6.lens[i]).ok()?;
            Some(Route {
                prefix: IpNet::V6(net),
                asn: self.v6.asns[i],
            })
        });
        v4.chain(v6)
    }

    /// The same map with more AS adjacencies (self-loops ignored, duplicates merged); new ASes
    /// enter the AS table.
    pub fn with_edges(self, edges: impl IntoIterator<Item = (u32, u32)>) -> AsMap {
        let mut b = AsMapBuilder::new();
        for (a, z) in self.edges().chain(edges) {
            b.add_edge(a, z);
        }
        let (extra, _) = b.finish();
        let mut asns = self.graph.asns;
        asns.extend_from_slice(&extra.graph.asns);
        asns.sort_unstable();
        asns.dedup();
        let index = |a: u32| asns.binary_search(&a).unwrap_or(0) as u32;
        let pairs: Vec<(u32, u32)> = extra.edges().map(|(a, z)| (index(a), index(z))).collect();
        AsMap {
            v4: self.v4,
            v6: self.v6,
            graph: AsGraph::from_canonical(asns, &pairs),
            built: self.built,
        }
    }

    /// Heap bytes the map holds (its in-memory size, less the struct itself).
    pub fn heap_size(&self) -> usize {
        self.v4.heap_size() + self.v6.heap_size() + self.graph.heap_size()
    }

    /// Number of flattened lookup intervals (IPv4, IPv6); for size reports.
    pub fn interval_counts(&self) -> (usize, usize) {
        (self.v4.interval_count(), self.v6.interval_count())
    }

    /// Decodes a map file (see [`format`](mod@format)), checking magic, version, checksum and every count,
    /// order and reference. Hostile input yields an error, never a panic or a huge allocation.
    pub fn from_bytes(bytes: &[u8]) -> Result<AsMap, AsMapError> {
        format::decode(bytes)
    }

    /// Encodes the map in the binary format (see [`format`](mod@format)).
    pub fn to_bytes(&self) -> Vec<u8> {
        format::encode(self)
    }

    /// Reads a range CSV (`first_ip,last_ip,asn[,organisation]`, inclusive ranges split into
    /// prefixes; see [`AsMapBuilder::add_ranges_csv`]) strictly: a malformed line is an error.
    /// The map has no AS adjacency; add it with [`AsMap::with_edges`].
    pub fn from_ranges_csv(reader: impl BufRead) -> Result<AsMap, AsMapError> {
        let mut b = AsMapBuilder::new();
        b.add_ranges_csv(reader, true)?;
        Ok(b.finish().0)
    }

    /// The text `asmap lookup` prints: one line per address with its prefix and origin AS (or
    /// "no route"), and for exactly two addresses their AS distance.
    pub fn describe_lookup(&self, ips: &[IpAddr]) -> String {
        let mut out = String::new();
        let width = ips.iter().map(|ip| ip.to_string().len()).max().unwrap_or(0);
        for ip in ips {
            let ip_s = ip.to_string();
            match self.lookup(*ip) {
                Some(r) => out.push_str(&format!("{ip_s:width$}  {}  AS{}\n", r.prefix, r.asn)),
                None => out.push_str(&format!("{ip_s:width$}  no route\n")),
            }
        }
        if let [a, b] = ips {
            match (self.lookup_asn(*a), self.lookup_asn(*b)) {
                (Some(x), Some(y)) => {
                    let d = self.as_distance(x, y);
                    let text = if d >= MAX_AS_DISTANCE {
                        format!(">= {MAX_AS_DISTANCE} (unknown or far)")
                    } else {
                        d.to_string()
                    };
                    out.push_str(&format!("AS distance {a} (AS{x}) - {b} (AS{y}): {text}\n"));
                }
                _ => out.push_str(&format!(
                    "AS distance {a} - {b}: unknown (no route for one of them)\n"
                )),
            }
        }
        out
    }
}
