//! Real AS sizes and prefixes from ip-location-db (`asn-ipv4.csv.gz`, rows
//! `first_ip,last_ip,asn,organisation`), used when a scenario or `--data` names the folder.
//!
//! An AS's weight (its share of simulated peers) is its IPv4 address count; its /24 prefixes are
//! cut from its real ranges. AS adjacency stays generated (see `net`).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;

/// One real AS as the topology uses it.
pub struct RealAs {
    pub asn: u32,
    pub weight: f64,
    /// /24 blocks inside the AS's ranges (network as u32, length).
    pub blocks: Vec<(u32, u8)>,
}

/// /24 blocks kept per AS at most.
const MAX_BLOCKS: usize = 4096;

/// Reads the ranges and keeps the `n` largest ASes.
pub fn load(dir: &str, n: usize) -> Result<Vec<RealAs>> {
    let candidates = [
        Path::new(dir).join("ip-location-db/asn-ipv4.csv.gz"),
        Path::new(dir).join("asn-ipv4.csv.gz"),
    ];
    let Some(path) = candidates.iter().find(|p| p.exists()) else {
        bail!("no asn-ipv4.csv.gz under {dir} (expected ip-location-db/asn-ipv4.csv.gz)");
    };
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = BufReader::new(GzDecoder::new(file));
    // asn -> (addresses, ranges)
    let mut by_as: std::collections::BTreeMap<u32, (u64, Vec<(u32, u32)>)> = Default::default();
    for line in reader.lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let mut parts = line.splitn(4, ',');
        let (Some(a), Some(b), Some(asn)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(a), Ok(b), Ok(asn)) = (
            a.parse::<Ipv4Addr>(),
            b.parse::<Ipv4Addr>(),
            asn.trim().parse::<u32>(),
        ) else {
            continue;
        };
        let (a, b) = (u32::from(a), u32::from(b));
        if asn == 0 || b < a {
            continue;
        }
        let e = by_as.entry(asn).or_default();
        e.0 += u64::from(b - a) + 1;
        e.1.push((a, b));
    }
    #[allow(clippy::type_complexity)]
    let mut all: Vec<(u64, u32, Vec<(u32, u32)>)> =
        by_as.into_iter().map(|(asn, (n, r))| (n, asn, r)).collect();
    all.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    all.truncate(n);
    if all.is_empty() {
        bail!("{} holds no usable IPv4 ranges", path.display());
    }
    Ok(all
        .into_iter()
        .map(|(addrs, asn, ranges)| {
            let mut blocks = Vec::new();
            'outer: for (a, b) in ranges {
                let mut net = a.div_ceil(256) * 256;
                while net.checked_add(255).is_some_and(|end| end <= b) {
                    blocks.push((net, 24));
                    if blocks.len() >= MAX_BLOCKS {
                        break 'outer;
                    }
                    net += 256;
                }
            }
            RealAs {
                asn,
                weight: addrs as f64,
                blocks,
            }
        })
        .collect())
}
