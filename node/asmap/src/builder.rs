//! Assembling a map in memory, without I/O: [`AsMapBuilder`] collects prefixes, inclusive
//! address ranges (split into CIDR prefixes), AS paths and AS edges from any number of sources,
//! and resolves conflicts — for the same prefix the source added first wins. It also parses the
//! two text formats from any [`BufRead`]: range CSVs (`first_ip,last_ip,asn[,org]`) and pyasn
//! prefix tables (`prefix<TAB>asn`, `;` comments).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::graph::AsGraph;
use crate::table::{Key, PrefixTable, host_mask, max_addr};
use crate::{AsMap, AsMapError};

/// What reading one text table produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Lines read.
    pub lines: u64,
    /// Rows that added at least one prefix.
    pub rows: u64,
    /// Prefixes added (a range may split into several).
    pub prefixes: u64,
    /// Lines not used, by reason (comments and blank lines are not counted).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Set when reading stopped on an I/O error (e.g. a truncated compressed file); every
    /// complete line before it was used.
    pub truncated: Option<String>,
}

impl TableStats {
    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

/// How a builder resolved overlapping sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Prefixes given more than once with the same AS.
    pub duplicates: u64,
    /// Prefixes given more than once with different ASes (the first source kept).
    pub conflicts: u64,
}

/// Collects prefixes and AS adjacency, then freezes them into an [`AsMap`].
#[derive(Clone, Debug, Default)]
pub struct AsMapBuilder {
    /// (network, length, AS) in insertion order.
    v4: Vec<(u32, u8, u32)>,
    v6: Vec<(u128, u8, u32)>,
    /// Undirected edges as `(min << 32) | max`, deduplicated from time to time.
    edges: Vec<u64>,
    /// Length of `edges` after its last deduplication.
    edges_dedup_len: usize,
}

/// Reason for a range row whose AS is 0 (RFC 7607: not routed).
const AS0: &str = "AS 0 (not routed)";

impl AsMapBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prefixes added so far (before duplicates are removed).
    pub fn pending_prefixes(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Adds a prefix (host bits are cleared). An earlier entry for the same prefix wins.
    pub fn add_prefix(&mut self, net: IpNet, asn: u32) {
        match net.trunc() {
            IpNet::V4(n) => self.v4.push((u32::from(n.network()), n.prefix_len(), asn)),
            IpNet::V6(n) => self.v6.push((u128::from(n.network()), n.prefix_len(), asn)),
        }
    }

    /// Adds an inclusive address range, split into the fewest CIDR prefixes. Returns how many.
    pub fn add_range(
        &mut self,
        first: IpAddr,
        last: IpAddr,
        asn: u32,
    ) -> Result<usize, &'static str> {
        match (first, last) {
            (IpAddr::V4(f), IpAddr::V4(l)) => {
                let (f, l) = (u32::from(f), u32::from(l));
                if f > l {
                    return Err("first address after last address");
                }
                let v4 = &mut self.v4;
                Ok(split_range::<u32>(f.into(), l.into(), |net, len| {
                    v4.push((net as u32, len, asn))
                }))
            }
            (IpAddr::V6(f), IpAddr::V6(l)) => {
                let (f, l) = (u128::from(f), u128::from(l));
                if f > l {
                    return Err("first address after last address");
                }
                let v6 = &mut self.v6;
                Ok(split_range::<u128>(f, l, |net, len| {
                    v6.push((net, len, asn))
                }))
            }
            _ => Err("first and last address of different families"),
        }
    }

    /// Adds an undirected AS adjacency (self-loops are ignored).
    pub fn add_edge(&mut self, a: u32, b: u32) {
        if a == b {
            return;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        self.edges.push((u64::from(lo) << 32) | u64::from(hi));
        if self.edges.len() > 2 * self.edges_dedup_len + (1 << 20) {
            self.edges.sort_unstable();
            self.edges.dedup();
            self.edges_dedup_len = self.edges.len();
        }
    }

    /// Adds the adjacencies along an AS path (consecutive distinct ASes; prepending collapses).
    pub fn add_as_path(&mut self, path: &[u32]) {
        for w in path.windows(2) {
            self.add_edge(w[0], w[1]);
        }
    }

    /// Reads a range CSV: rows `first_ip,last_ip,asn[,organisation]`, ranges inclusive. Blank
    /// lines, `#` comments and a header line are ignored; rows with AS 0 are skipped and counted.
    /// `strict`: the first malformed line or read error is an error; otherwise such lines are
    /// counted in [`TableStats::skipped`] and a read error ends the input as
    /// [`TableStats::truncated`].
    pub fn add_ranges_csv(
        &mut self,
        reader: impl BufRead,
        strict: bool,
    ) -> Result<TableStats, AsMapError> {
        for_each_line(reader, strict, |line_no, line, stats| {
            let Some((first, last, asn)) = parse_range_line(line_no, line, stats)? else {
                return Ok(());
            };
            if asn == 0 {
                stats.skip(AS0);
                return Ok(());
            }
            let n = self.add_range(first, last, asn)?;
            stats.rows += 1;
            stats.prefixes += n as u64;
            Ok(())
        })
    }

    /// Reads a prefix table in pyasn's format: lines `prefix<TAB>asn`, comments start with `;`
    /// (or `#`). `strict` as for [`AsMapBuilder::add_ranges_csv`].
    pub fn add_prefix_table(
        &mut self,
        reader: impl BufRead,
        strict: bool,
    ) -> Result<TableStats, AsMapError> {
        for_each_line(reader, strict, |_, line, stats| {
            let Some((net, asn)) = parse_prefix_line(line)? else {
                return Ok(());
            };
            if asn == 0 {
                stats.skip(AS0);
                return Ok(());
            }
            self.add_prefix(net, asn);
            stats.rows += 1;
            stats.prefixes += 1;
            Ok(())
        })
    }

    /// Freezes the collected data: duplicates dropped (first wins), every AS of a prefix or an
    /// edge entered in the AS table.
    pub fn finish(self) -> (AsMap, MergeStats) {
        let mut stats = MergeStats::default();
        let v4 = canonical(self.v4, &mut stats);
        let v6 = canonical(self.v6, &mut stats);
        let mut edges = self.edges;
        edges.sort_unstable();
        edges.dedup();
        let mut asns: Vec<u32> = v4.asns.iter().chain(&v6.asns).copied().collect();
        for &e in &edges {
            asns.push((e >> 32) as u32);
            asns.push(e as u32);
        }
        asns.sort_unstable();
        asns.dedup();
        let index = |a: u32| asns.binary_search(&a).unwrap_or(0) as u32;
        let pairs: Vec<(u32, u32)> = edges
            .iter()
            .map(|&e| (index((e >> 32) as u32), index(e as u32)))
            .collect();
        let graph = AsGraph::from_canonical(asns, &pairs);
        (
            AsMap {
                v4,
                v6,
                graph,
                built: 0,
            },
            stats,
        )
    }
}

/// Sorts (stably, so insertion order decides among equals), drops duplicates keeping the first.
fn canonical<T: Key>(mut list: Vec<(T, u8, u32)>, stats: &mut MergeStats) -> PrefixTable<T> {
    list.sort_by_key(|&(net, len, _)| (net, len));
    let mut nets = Vec::with_capacity(list.len());
    let mut lens = Vec::with_capacity(list.len());
    let mut asns: Vec<u32> = Vec::with_capacity(list.len());
    let mut prev: Option<(T, u8)> = None;
    for (net, len, asn) in list {
        if prev == Some((net, len)) {
            if asns.last() == Some(&asn) {
                stats.duplicates += 1;
            } else {
                stats.conflicts += 1;
            }
            continue;
        }
        prev = Some((net, len));
        nets.push(net);
        lens.push(len);
        asns.push(asn);
    }
    PrefixTable::from_canonical(nets, lens, asns)
}

/// Splits the inclusive range `first..=last` into CIDR blocks, calling `f(network, length)` for
/// each in ascending order. Returns the number of blocks.
pub(crate) fn split_range<T: Key>(first: u128, last: u128, mut f: impl FnMut(u128, u8)) -> usize {
    let bits = u32::from(T::BITS);
    let mut cur = first;
    let mut n = 0;
    loop {
        let align = if cur == 0 {
            bits
        } else {
            cur.trailing_zeros().min(bits)
        };
        let span = last - cur; // block size - 1 must not exceed this
        let fit = if span == u128::MAX {
            128
        } else {
            127 - (span + 1).leading_zeros()
        };
        let k = align.min(fit).min(bits);
        let len = (bits - k) as u8;
        f(cur, len);
        n += 1;
        let block_last = cur | host_mask::<T>(len);
        if block_last >= last || block_last >= max_addr::<T>() {
            return n;
        }
        cur = block_last + 1;
    }
}

/// Runs `f` on each line, handling UTF-8, counting and strictness.
fn for_each_line<R: BufRead>(
    mut reader: R,
    strict: bool,
    mut f: impl FnMut(u64, &str, &mut TableStats) -> Result<(), &'static str>,
) -> Result<TableStats, AsMapError> {
    let mut stats = TableStats::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return Ok(stats),
            Ok(_) => {}
            Err(e) => {
                if strict {
                    return Err(AsMapError::Io(e));
                }
                stats.truncated = Some(format!(
                    "input ended with an error after {} complete lines: {e}",
                    stats.lines
                ));
                return Ok(stats);
            }
        }
        stats.lines += 1;
        let result = match std::str::from_utf8(&buf) {
            Ok(line) => f(stats.lines, line.trim(), &mut stats),
            Err(_) => Err("line is not UTF-8"),
        };
        if let Err(reason) = result {
            if strict {
                return Err(AsMapError::Parse {
                    line: stats.lines,
                    reason,
                });
            }
            stats.skip(reason);
        }
    }
}

/// Parses an AS number, with or without an `AS` prefix.
fn parse_asn(s: &str) -> Result<u32, &'static str> {
    let s = s.trim().trim_matches('"');
    let s = s
        .strip_prefix("AS")
        .or_else(|| s.strip_prefix("as"))
        .unwrap_or(s);
    if s.starts_with('{') {
        return Err("origin is an AS set");
    }
    u32::from_str(s).map_err(|_| "bad AS number")
}

/// Parses one range CSV line (already trimmed). `Ok(None)`: nothing to use on this line.
fn parse_range_line(
    line_no: u64,
    line: &str,
    stats: &mut TableStats,
) -> Result<Option<(IpAddr, IpAddr, u32)>, &'static str> {
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.splitn(4, ',');
    let (Some(first), Some(last), Some(asn)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("fewer than 3 fields");
    };
    let first = match IpAddr::from_str(first.trim().trim_matches('"')) {
        Ok(ip) => ip,
        Err(_) if line_no == 1 => {
            stats.skip("header line");
            return Ok(None);
        }
        Err(_) => return Err("bad first address"),
    };
    let last = IpAddr::from_str(last.trim().trim_matches('"')).map_err(|_| "bad last address")?;
    Ok(Some((first, last, parse_asn(asn)?)))
}

/// Parses one prefix table line (already trimmed). `Ok(None)`: nothing to use on this line.
fn parse_prefix_line(line: &str) -> Result<Option<(IpNet, u32)>, &'static str> {
    if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_whitespace();
    let (Some(prefix), Some(asn)) = (fields.next(), fields.next()) else {
        return Err("fewer than 2 fields");
    };
    let net = IpNet::from_str(prefix).map_err(|_| "bad prefix")?;
    Ok(Some((net, parse_asn(asn)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split4(first: &str, last: &str) -> Vec<String> {
        let f = u32::from(first.parse::<std::net::Ipv4Addr>().unwrap_or(0.into()));
        let l = u32::from(last.parse::<std::net::Ipv4Addr>().unwrap_or(0.into()));
        let mut out = Vec::new();
        split_range::<u32>(f.into(), l.into(), |net, len| {
            out.push(format!("{}/{len}", std::net::Ipv4Addr::from(net as u32)))
        });
        out
    }

    #[test]
    fn range_splitting() {
        assert_eq!(split4("1.0.0.0", "1.0.0.255"), ["1.0.0.0/24"]);
        assert_eq!(
            split4("1.0.128.0", "1.0.196.255"),
            ["1.0.128.0/18", "1.0.192.0/22", "1.0.196.0/24"]
        );
        assert_eq!(
            split4("10.0.0.1", "10.0.0.6"),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(split4("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(
            split4("255.255.255.255", "255.255.255.255"),
            ["255.255.255.255/32"]
        );
        let mut v6 = Vec::new();
        split_range::<u128>(0, u128::MAX, |n, l| v6.push((n, l)));
        assert_eq!(v6, [(0, 0)]);
        v6.clear();
        split_range::<u128>(1, u128::MAX, |n, l| v6.push((n, l)));
        assert_eq!(v6.len(), 128);
        assert_eq!(v6.last(), Some(&(1u128 << 127, 1)));
    }

    #[test]
    fn csv_rows() {
        let csv = "first,last,asn,org\n\
                   1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n\
                   # comment\n\
                   \n\
                   1.0.128.0,1.0.196.255,23969,TOT Public Company Limited\n\
                   2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project\n\
                   9.9.9.0,9.9.9.255,0,unrouted\n";
        let mut b = AsMapBuilder::new();
        let stats = b.add_ranges_csv(csv.as_bytes(), true).expect("valid csv");
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.prefixes, 1 + 3 + 6);
        assert_eq!(stats.skipped.get("header line"), Some(&1));
        assert_eq!(stats.skipped.get(AS0), Some(&1));

        let bad = "1.0.0.0,1.0.0.255,13335\n1.0.1.0,oops,5\n1.0.2.0,1.0.2.255,x\n";
        let err = AsMapBuilder::new().add_ranges_csv(bad.as_bytes(), true);
        assert!(
            matches!(err, Err(AsMapError::Parse { line: 2, .. })),
            "{err:?}"
        );
        let stats = AsMapBuilder::new()
            .add_ranges_csv(bad.as_bytes(), false)
            .expect("lenient");
        assert_eq!(stats.rows, 1);
        assert_eq!(stats.skipped.get("bad last address"), Some(&1));
        assert_eq!(stats.skipped.get("bad AS number"), Some(&1));
    }

    #[test]
    fn prefix_rows_and_precedence() {
        let table = "; IP-ASN32-DAT file\n1.0.0.0/24\t15169\n1.0.4.0/22\t56203\n1.0.0.0/24\t99\n";
        let mut b = AsMapBuilder::new();
        let stats = b.add_prefix_table(table.as_bytes(), true).expect("valid");
        assert_eq!(stats.rows, 3);
        b.add_prefix("1.0.4.0/22".parse().expect("net"), 1);
        let (map, merge) = b.finish();
        assert_eq!(merge.conflicts, 2);
        assert_eq!(map.prefix_count(), 2);
        let r = map.lookup("1.0.0.7".parse().expect("ip")).expect("route");
        assert_eq!(r.asn, 15169);
        assert_eq!(map.lookup_asn("1.0.5.1".parse().expect("ip")), Some(56203));
    }
}
