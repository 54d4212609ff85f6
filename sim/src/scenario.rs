//! Scenario files: the TOML format, its defaults, and the built-in library embedded from
//! `sim/scenarios/*.toml`.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The four ways of choosing sources compared in every run.
pub const ALL_BASELINES: [&str; 4] = ["seeder_only", "random_swarm", "prefix_only", "nearcast"];

/// Built-in scenarios: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../scenarios/default.toml")),
    ("flash-crowd", include_str!("../scenarios/flash-crowd.toml")),
    ("alpha-0.6", include_str!("../scenarios/alpha-0.6.toml")),
    ("alpha-1.2", include_str!("../scenarios/alpha-1.2.toml")),
    ("skype-2007", include_str!("../scenarios/skype-2007.toml")),
    (
        "skype-2007-no-defences",
        include_str!("../scenarios/skype-2007-no-defences.toml"),
    ),
    ("skype-2010", include_str!("../scenarios/skype-2010.toml")),
    (
        "skype-2010-no-defences",
        include_str!("../scenarios/skype-2010-no-defences.toml"),
    ),
    (
        "skype-2010-no-mega-seeders",
        include_str!("../scenarios/skype-2010-no-mega-seeders.toml"),
    ),
    (
        "largest-as-loss",
        include_str!("../scenarios/largest-as-loss.toml"),
    ),
    ("partition", include_str!("../scenarios/partition.toml")),
    (
        "seeder-outage-one",
        include_str!("../scenarios/seeder-outage-one.toml"),
    ),
    (
        "seeder-outage-all",
        include_str!("../scenarios/seeder-outage-all.toml"),
    ),
    (
        "refusing-supernodes",
        include_str!("../scenarios/refusing-supernodes.toml"),
    ),
    (
        "corrupt-peers",
        include_str!("../scenarios/corrupt-peers.toml"),
    ),
    ("compare-30", include_str!("../scenarios/compare-30.toml")),
];

/// A complete scenario. Every field has a default, so a file only says what differs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Simulated peers (seeders come on top).
    pub peers: u32,
    /// Measured simulated time, after the warm-up.
    pub duration_min: f64,
    /// Simulated time before measurement starts (caches and supernodes settle).
    pub warmup_min: f64,
    /// Interval of the time series.
    pub sample_s: f64,
    /// Baselines to run (all four by default).
    pub baselines: Vec<String>,
    pub network: Network,
    pub churn: Churn,
    pub workload: Workload,
    pub protocol: Protocol,
    pub faults: Vec<Fault>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            peers: 100_000,
            duration_min: 60.0,
            warmup_min: 10.0,
            sample_s: 30.0,
            baselines: ALL_BASELINES.iter().map(|s| s.to_string()).collect(),
            network: Network::default(),
            churn: Churn::default(),
            workload: Workload::default(),
            protocol: Protocol::default(),
            faults: Vec::new(),
        }
    }
}

/// The simulated Internet.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Number of ASes is `peers / peers_per_as`, at least `min_ases`.
    pub peers_per_as: f64,
    pub min_ases: u32,
    /// Zipf exponent of peers per AS (1.3: the top 10 ASes hold about 65% of peers).
    pub as_zipf: f64,
    /// Peers per /24 prefix inside an AS (prefixes per AS follow).
    pub peers_per_prefix: u32,
    /// Transit links each new AS makes to earlier (larger) ASes.
    pub as_links: u32,
    /// Share of peers behind NAT (no inbound connections, never supernodes).
    pub nat_share: f64,
    /// Probability that a message or chunk transfer is lost (reported as a failure).
    pub loss: f64,
    /// Access bandwidth ranges in Mbit/s, drawn log-uniformly per peer.
    pub down_mbit: [f64; 2],
    pub up_mbit: [f64; 2],
    /// Seeder uplink in Mbit/s.
    pub seeder_up_mbit: f64,
    /// Round-trip times in ms by distance class.
    pub rtt_same_prefix_ms: u32,
    pub rtt_same_as_ms: u32,
    pub rtt_adjacent_ms: u32,
    pub rtt_far_ms: [u32; 2],
    pub rtt_seeder_ms: u32,
    /// How long a request to an unreachable peer takes to fail.
    pub timeout_ms: u32,
    /// Folder with real data (`ip-location-db/asn-ipv4.csv.gz`); empty: generated topology.
    pub data: String,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            peers_per_as: 100.0,
            min_ases: 20,
            as_zipf: 1.3,
            peers_per_prefix: 128,
            as_links: 2,
            nat_share: 0.4,
            loss: 0.001,
            down_mbit: [20.0, 100.0],
            up_mbit: [2.0, 20.0],
            seeder_up_mbit: 10_000.0,
            rtt_same_prefix_ms: 2,
            rtt_same_as_ms: 5,
            rtt_adjacent_ms: 20,
            rtt_far_ms: [60, 120],
            rtt_seeder_ms: 30,
            timeout_ms: 3000,
            data: String::new(),
        }
    }
}

/// Sessions and absences.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    pub enabled: bool,
    pub session_shape: f64,
    pub session_scale_min: f64,
    pub offline_shape: f64,
    pub offline_scale_min: f64,
    /// Share of peers that never leave.
    pub always_on: f64,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            enabled: true,
            session_shape: 0.55,
            session_scale_min: 170.0,
            offline_shape: 0.48,
            offline_scale_min: 414.0,
            always_on: 0.015,
        }
    }
}

/// What peers ask for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// Requests per online peer per minute (mean).
    pub requests_per_min: f64,
    /// Diurnal amplitude (0.3: ±30%) and the simulated hour of day the run starts at.
    pub diurnal: f64,
    pub start_hour: f64,
    /// Zipf exponent of popularity over the live catalogue.
    pub zipf_alpha: f64,
    /// Live catalogue size is `peers * objects_per_peer`, at least `min_objects`.
    pub objects_per_peer: f64,
    pub min_objects: u32,
    /// New objects per minute per 1,000 peers; each enters at a rank skewed to the top
    /// (position = n·u^rank_skew) and pushes older ones down: popularity decays with age.
    pub new_per_min_per_1k: f64,
    pub rank_skew: f64,
    /// Share of posts (0.3–5 KiB); the rest are images (2 KiB–2 MiB, most 32–128 KiB).
    pub post_share: f64,
    /// Cache budget of a peer, MiB (LRU).
    pub cache_mib: f64,
    /// Objects each peer holds at the start (drawn from popularity), as if it had run before.
    pub initial_cache: u32,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            requests_per_min: 1.0,
            diurnal: 0.3,
            start_hour: 12.0,
            zipf_alpha: 0.8,
            objects_per_peer: 0.5,
            min_objects: 1000,
            new_per_min_per_1k: 1.0,
            rank_skew: 3.0,
            post_share: 0.4,
            cache_mib: 128.0,
            initial_cache: 16,
        }
    }
}

/// Settings passed to every node's `Config`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Protocol {
    pub seeders: u32,
    /// Admission control, jittered back-off and brownout.
    pub defences: bool,
    pub maintenance_ms: u64,
    pub heartbeat_ms: u64,
    pub hedge_ms: u64,
    pub promote_after_min: f64,
    pub max_children: usize,
    pub control_per_s: f64,
    /// Seeders accept this many children (they act as mega-supernodes); 0 = none.
    pub seeder_max_children: usize,
    pub seeder_control_per_s: f64,
    /// Share of a peer's uplink it offers to the overlay.
    pub upload_share: f64,
    pub replication: usize,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            seeders: 4,
            defences: true,
            maintenance_ms: 10_000,
            heartbeat_ms: 60_000,
            hedge_ms: 400,
            promote_after_min: 10.0,
            max_children: 300,
            control_per_s: 500.0,
            seeder_max_children: 5_000,
            seeder_control_per_s: 50_000.0,
            upload_share: 0.8,
            replication: 2,
        }
    }
}

/// An injected event (unknown keys are checked by `check_fault_keys`: serde cannot combine that
/// check with the flattened kind).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    /// Minutes after the warm-up.
    pub at_min: f64,
    #[serde(default)]
    pub duration_min: f64,
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// What happens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// `count` seeders (0 = all) go down for the duration.
    SeederOutage { count: u32 },
    /// A share of online peers restart at once and come back spread over `spread_min`.
    MassRestart { share: f64, spread_min: f64 },
    /// A share of the supernodes crash for the duration (Skype 2010).
    SupernodeCrash { share: f64 },
    /// Every peer of the largest AS goes offline for the duration.
    LargestAsLoss,
    /// ASes holding about `share` of the peers are cut off from the rest until the partition heals.
    Partition { share: f64 },
    /// A share of the supernodes stay listed (answer heartbeats) but refuse all other work.
    RefusingSupernodes { share: f64 },
    /// A share of peers serve corrupted chunks.
    CorruptPeers { share: f64 },
    /// One new object draws `share` of all requests for the duration.
    FlashCrowd { share: f64, size: u32 },
}

impl FaultKind {
    /// The share of peers, supernodes or requests the fault takes, where it has one.
    pub fn share(&self) -> Option<f64> {
        match self {
            FaultKind::MassRestart { share, .. }
            | FaultKind::SupernodeCrash { share }
            | FaultKind::Partition { share }
            | FaultKind::RefusingSupernodes { share }
            | FaultKind::CorruptPeers { share }
            | FaultKind::FlashCrowd { share, .. } => Some(*share),
            FaultKind::SeederOutage { .. } | FaultKind::LargestAsLoss => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            FaultKind::SeederOutage { count } => format!("seeder_outage({count})"),
            FaultKind::MassRestart { share, .. } => format!("mass_restart({share})"),
            FaultKind::SupernodeCrash { share } => format!("supernode_crash({share})"),
            FaultKind::LargestAsLoss => "largest_as_loss".into(),
            FaultKind::Partition { share } => format!("partition({share})"),
            FaultKind::RefusingSupernodes { share } => format!("refusing_supernodes({share})"),
            FaultKind::CorruptPeers { share } => format!("corrupt_peers({share})"),
            FaultKind::FlashCrowd { share, .. } => format!("flash_crowd({share})"),
        }
    }
}

impl Scenario {
    /// A built-in by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Scenario> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text).with_context(|| format!("built-in scenario {name}"));
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario file {name_or_path} and no built-in of that name (built-ins: {})",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let mut s = Self::parse(&text).with_context(|| format!("scenario {}", path.display()))?;
        if s.name == "custom" {
            s.name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or("custom")
                .to_string();
        }
        Ok(s)
    }

    /// Parses and checks a scenario text.
    pub fn parse(text: &str) -> Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        check_fault_keys(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Rejects values the simulator cannot run with.
    pub fn validate(&self) -> Result<()> {
        let w = &self.workload;
        let n = &self.network;
        let c = &self.churn;
        let p = &self.protocol;
        let checks = [
            (self.peers >= 10, "peers must be at least 10"),
            (
                self.peers <= MAX_PEERS,
                "peers must be at most 10,000,000 (about 6 GiB per million peers and baseline)",
            ),
            (
                self.duration_min > 0.0 && self.duration_min <= MAX_MINUTES,
                "duration_min must be in (0, 100000]",
            ),
            (
                (0.0..=MAX_MINUTES).contains(&self.warmup_min),
                "warmup_min must be in [0, 100000]",
            ),
            (!self.baselines.is_empty(), "name at least one baseline"),
            (
                (0.0..=1.0).contains(&c.always_on),
                "churn.always_on must be in [0, 1]",
            ),
            (w.cache_mib >= 0.0, "cache_mib must not be negative"),
            (
                w.min_objects <= 10_000_000,
                "min_objects must be at most 10,000,000",
            ),
            (
                n.min_ases <= 1_000_000,
                "min_ases must be at most 1,000,000",
            ),
            (p.seeders <= 1_000, "at most 1,000 seeders"),
            (self.sample_s >= 1.0, "sample_s must be at least 1"),
            (
                w.zipf_alpha > 0.0 && w.zipf_alpha < 5.0,
                "zipf_alpha must be in (0, 5)",
            ),
            (
                w.requests_per_min >= 0.0,
                "requests_per_min must not be negative",
            ),
            ((0.0..1.0).contains(&w.diurnal), "diurnal must be in [0, 1)"),
            (
                (0.0..=1.0).contains(&n.nat_share),
                "nat_share must be in [0, 1]",
            ),
            ((0.0..1.0).contains(&n.loss), "loss must be in [0, 1)"),
            (
                n.peers_per_as >= 1.0 && n.peers_per_prefix >= 1,
                "peers_per_as/prefix must be >= 1",
            ),
            (
                n.down_mbit[0] > 0.0 && n.down_mbit[1] >= n.down_mbit[0],
                "bad down_mbit range",
            ),
            (
                n.up_mbit[0] > 0.0 && n.up_mbit[1] >= n.up_mbit[0],
                "bad up_mbit range",
            ),
            (
                c.session_shape > 0.0 && c.offline_shape > 0.0,
                "Weibull shapes must be positive",
            ),
            (p.seeders >= 1, "at least one seeder"),
            (
                p.maintenance_ms >= 100 && p.heartbeat_ms >= 1000,
                "timings too short",
            ),
            (
                n.rtt_far_ms[1] >= n.rtt_far_ms[0] && n.rtt_far_ms[1] <= 60_000,
                "bad rtt_far_ms range (at most 60000 ms)",
            ),
        ];
        for (ok, msg) in checks {
            if !ok {
                bail!("{msg}");
            }
        }
        for b in &self.baselines {
            if !ALL_BASELINES.contains(&b.as_str()) {
                bail!("unknown baseline {b} (known: {})", ALL_BASELINES.join(", "));
            }
        }
        for f in &self.faults {
            let what = f.kind.label();
            if !(0.0..=MAX_MINUTES).contains(&f.at_min)
                || !(0.0..=MAX_MINUTES).contains(&f.duration_min)
            {
                bail!("fault {what}: at_min and duration_min must be in [0, 100000]");
            }
            if f.at_min >= self.duration_min {
                bail!(
                    "fault {what} starts at minute {} of the measured run, which ends at minute {}",
                    f.at_min,
                    self.duration_min
                );
            }
            if let Some(share) = f.kind.share()
                && !(0.0..=1.0).contains(&share)
            {
                bail!("fault {what}: share must be in [0, 1]");
            }
        }
        Ok(())
    }
}

/// Most simulated peers.
const MAX_PEERS: u32 = 10_000_000;
/// Longest warm-up, run or fault, in minutes (about 69 days).
const MAX_MINUTES: f64 = 100_000.0;

/// Keys a fault of each kind may have, besides `kind`, `at_min` and `duration_min`.
fn fault_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "seeder_outage" => &["count"],
        "mass_restart" => &["share", "spread_min"],
        "supernode_crash" | "partition" | "refusing_supernodes" | "corrupt_peers" => &["share"],
        "largest_as_loss" => &[],
        "flash_crowd" => &["share", "size"],
        _ => return None,
    })
}

/// Refuses unknown keys in `[[faults]]`: serde cannot check them through the flattened kind,
/// and a misspelt `duration_min` would silently make a fault permanent.
fn check_fault_keys(text: &str) -> Result<()> {
    let doc: toml::Table = toml::from_str(text)?;
    let Some(faults) = doc.get("faults").and_then(|f| f.as_array()) else {
        return Ok(());
    };
    for (i, f) in faults.iter().enumerate() {
        let Some(t) = f.as_table() else { continue };
        let kind = t.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let Some(own) = fault_fields(kind) else {
            continue; // serde already named the unknown kind
        };
        for key in t.keys() {
            if !["kind", "at_min", "duration_min"].contains(&key.as_str())
                && !own.contains(&key.as_str())
            {
                let mut known = vec!["kind", "at_min", "duration_min"];
                known.extend_from_slice(own);
                bail!(
                    "fault {} ({kind}): unknown field `{key}`, expected one of {}",
                    i + 1,
                    known.join(", ")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAULT: &str = "peers = 1000\nduration_min = 30\n[[faults]]\nkind = \"partition\"\n";

    fn error_of(text: &str) -> String {
        match Scenario::parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn faults_with_unknown_keys_or_impossible_values_are_refused() {
        assert!(
            Scenario::parse(&format!(
                "{FAULT}at_min = 1\nduration_min = 3\nshare = 0.3\n"
            ))
            .is_ok()
        );
        // A misspelt duration would make the partition permanent.
        let e = error_of(&format!("{FAULT}at_min = 1\nduration = 3\nshare = 0.3\n"));
        assert!(e.contains("unknown field `duration`"), "{e}");
        let e = error_of(&format!("{FAULT}at_min = 1\nshare = 3.0\n"));
        assert!(e.contains("share must be in [0, 1]"), "{e}");
        let e = error_of(&format!("{FAULT}at_min = 45\nshare = 0.3\n"));
        assert!(e.contains("which ends at minute 30"), "{e}");
        let e = error_of(&format!("{FAULT}at_min = nan\nshare = 0.3\n"));
        assert!(e.contains("at_min and duration_min"), "{e}");
    }

    #[test]
    fn every_built_in_scenario_passes_the_checks() {
        for (name, text) in BUILTIN {
            if let Err(e) = Scenario::parse(text) {
                panic!("{name}: {e:#}");
            }
        }
    }

    #[test]
    fn run_sizes_and_lengths_are_bounded() {
        let mut sc = Scenario::parse("peers = 1000").expect("plain");
        assert!(sc.validate().is_ok());
        for bad in [f64::INFINITY, f64::NAN, 1e300, 0.0] {
            sc.duration_min = bad;
            assert!(sc.validate().is_err(), "duration {bad}");
        }
        sc.duration_min = 60.0;
        sc.warmup_min = f64::INFINITY;
        assert!(sc.validate().is_err());
        sc.warmup_min = 10.0;
        sc.peers = u32::MAX;
        assert!(sc.validate().is_err());
        sc.peers = 1000;
        sc.baselines.clear();
        assert!(sc.validate().is_err());
        for text in [
            "peers = 1000\n[protocol]\nseeders = 4294967295\n",
            "peers = 1000\n[network]\nrtt_far_ms = [0, 4294967295]\n",
            "peers = 1000\n[network]\nmin_ases = 4000000000\n",
            "peers = 1000\n[workload]\nmin_objects = 100000000\n",
            "peers = 1000\n[churn]\nalways_on = 2.0\n",
            "peers = 1000\n[workload]\ncache_mib = -1.0\n",
        ] {
            error_of(text);
        }
    }
}
