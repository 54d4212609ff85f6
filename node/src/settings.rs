//! Daemon settings shared by `nearcast run` and `nearcast-seeder run`, and parsers for the
//! values users type (sizes, durations, AS tables).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use libp2p::Multiaddr;
use nearcast_asmap::AsMap;
use nearcast_proto::Role;

/// Whether this node is reachable from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reachability {
    /// Decided by AutoNAT v2 probes.
    Auto,
    Yes,
    No,
}

/// Everything a daemon runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub role: Role,
    pub data: PathBuf,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub http: Option<SocketAddr>,
    pub cache_size: Option<u64>,
    /// A local range CSV (`--as-table`): wins over maps the seeders publish.
    pub as_table: Option<PathBuf>,
    /// A local binary map (`--asmap`, built by `nearcast-seeder asmap build`): likewise.
    pub asmap: Option<PathBuf>,
    /// How often to ask the seeders which map they publish (without a local map).
    pub asmap_check: Duration,
    pub promote_after: Duration,
    pub reachable: Reachability,
    pub upload_limit: u64,
    /// Test-only fault injection: serve chunks with flipped bytes.
    pub fault_corrupt_chunks: bool,
}

/// Parses `512MiB`, `2G`, `1000000`.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .with_context(|| format!("invalid size {s:?}: expected e.g. 512MiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => bail!("invalid size unit {other:?} in {s:?}: use B, KiB, MiB, GiB, KB, MB, GB"),
    };
    if !num.is_finite() || num < 0.0 {
        bail!("invalid size {s:?}");
    }
    Ok((num * mult) as u64)
}

/// Parses `500ms`, `2s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}: expected e.g. 30s"))?;
    let secs = |per: u64| {
        n.checked_mul(per)
            .filter(|&s| s <= MAX_DURATION_SECS)
            .map(Duration::from_secs)
            .with_context(|| format!("duration {s:?} is too long (at most 100 years)"))
    };
    Ok(match unit {
        "ms" => Some(Duration::from_millis(n))
            .filter(|d| d.as_secs() <= MAX_DURATION_SECS)
            .with_context(|| format!("duration {s:?} is too long (at most 100 years)"))?,
        "" | "s" => secs(1)?,
        "m" | "min" => secs(60)?,
        "h" => secs(3600)?,
        other => bail!("invalid duration unit {other:?} in {s:?}: use ms, s, m or h"),
    })
}

/// The longest duration a setting takes: its milliseconds fit every timer.
const MAX_DURATION_SECS: u64 = 100 * 365 * 24 * 3600;

/// Loads an explicit local proximity map: a binary map file (`--asmap`) or a
/// `first_ip,last_ip,asn[,org]` CSV (`--as-table`), or none. A CSV map is stamped with the
/// file's modification time as its build time, so that the same file gives the same map (and,
/// published by a seeder, the same object id) at every start.
pub fn load_local_map(
    as_table: Option<&Path>,
    asmap: Option<&Path>,
) -> anyhow::Result<Option<Arc<AsMap>>> {
    if let Some(path) = asmap {
        // The error names the file and the fault; the file error's source is not repeated.
        let map = nearcast_asmap::load_map_file(path)
            .map_err(|e| anyhow::anyhow!("cannot load proximity map {e}"))?;
        refuse_empty(&map, path)?;
        tracing::info!(file = %path.display(), built = map.built(), prefixes = map.prefix_count(), "proximity map loaded");
        return Ok(Some(Arc::new(map)));
    }
    let Some(path) = as_table else {
        return Ok(None);
    };
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open AS table {}", path.display()))?;
    let built = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let map = AsMap::from_ranges_csv(std::io::BufReader::new(file))
        .with_context(|| format!("AS table {} is malformed", path.display()))?
        .with_built(built);
    refuse_empty(&map, path)?;
    tracing::info!(file = %path.display(), prefixes = map.prefix_count(), "AS table loaded");
    Ok(Some(Arc::new(map)))
}

/// A map without a single IP range would place every address in no AS. A seeder would publish
/// it, and peers would prefer it over any older map, so proximity by AS would be lost across the
/// whole network (an empty or truncated download is the usual cause).
fn refuse_empty(map: &AsMap, path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        map.prefix_count() > 0,
        "{} holds no IP ranges: refusing an empty proximity map",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512MiB").ok(), Some(512 * 1024 * 1024));
        assert_eq!(parse_size("2G").ok(), Some(2_000_000_000));
        assert_eq!(parse_size("100").ok(), Some(100));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_duration("6000000000000000h").is_err());
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("18446744073709551615ms").is_err());
        assert_eq!(parse_duration("2h").ok(), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("2s").ok(), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn an_empty_proximity_map_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.csv");
        std::fs::write(&empty, "").expect("write");
        let header = dir.path().join("header.csv");
        std::fs::write(&header, "first_ip,last_ip,asn\n").expect("write");
        let binary = dir.path().join("empty.map");
        std::fs::write(&binary, AsMap::empty().to_bytes()).expect("write");
        for path in [&empty, &header] {
            let e = load_local_map(Some(path), None).expect_err("empty table accepted");
            assert!(e.to_string().contains("holds no IP ranges"), "{e}");
        }
        let e = load_local_map(None, Some(&binary)).expect_err("empty map accepted");
        assert!(e.to_string().contains("holds no IP ranges"), "{e}");
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "127.1.0.0,127.1.0.255,64501\n").expect("write");
        let map = load_local_map(Some(&good), None).expect("good table");
        assert_eq!(map.map(|m| m.prefix_count()), Some(1));
    }
}
