//! Results of a run: the per-baseline summary (`summary.json`, simulated quantities only), the
//! terminal table, the time series CSV, and recovery times after faults.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::metrics::{Percentiles, Row};
use crate::world::{DhtTotals, World};

#[derive(Clone, Debug, Serialize)]
pub struct PeerBytes {
    pub same_prefix: u64,
    pub same_as: u64,
    pub other_as: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BySource {
    pub local: u64,
    pub same_prefix: u64,
    pub same_as: u64,
    pub other_as: u64,
    pub seeder: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dht {
    pub lookups: u64,
    pub mean_hops: f64,
    pub found_share: f64,
    pub announces: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Supernodes {
    pub mean: f64,
    pub max: u64,
    pub last: u64,
    pub mean_children: f64,
    pub max_children: u64,
    /// Online leaves attached to at least one non-seeder parent (mean over samples).
    pub attached_leaves: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    pub fault: String,
    pub start_min: f64,
    pub end_min: f64,
    /// Lowest fetch success of any sample from the fault's start to 5 minutes after its end.
    pub min_success: f64,
    /// Seconds after the fault ended (or began, if instantaneous) until success and attachment
    /// were back to their pre-fault level; `null` if they never were.
    pub recovery_s: Option<f64>,
    /// Seconds after the end until 99% of live leaves had a parent again.
    pub reattach_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BaselineSummary {
    pub fetch_success: f64,
    pub requests: u64,
    pub done: u64,
    pub failed: u64,
    pub aborted: u64,
    /// Content bytes the seeders sent.
    pub seeder_bytes: u64,
    pub compulsory_miss_bytes: u64,
    /// The bound counting each distinct object once per run (looser).
    pub compulsory_miss_distinct_bytes: u64,
    pub seeder_over_bound: f64,
    pub peer_bytes: PeerBytes,
    pub bytes_by_source: BySource,
    /// Bytes that crossed an AS boundary (other-AS peers and seeders).
    pub cross_as_bytes: u64,
    /// Share of non-local bytes served by peers.
    pub peer_offload: f64,
    pub same_as_when_available: f64,
    pub ttfb_ms: Percentiles,
    pub completion_ms: Percentiles,
    pub dht: Dht,
    pub supernodes: Supernodes,
    pub control_bytes_per_node_s: f64,
    pub corrupt_chunks: u64,
    pub bans: u64,
    pub children_dropped_overload: u64,
    pub requests_busy: u64,
    pub faults: Vec<FaultReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub peers: u32,
    pub seed: u64,
    pub seeders: u32,
    pub duration_min: f64,
    pub warmup_min: f64,
    pub baselines: BTreeMap<String, BaselineSummary>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Summarises a finished world.
pub fn summarise(w: &World) -> BaselineSummary {
    let t = &w.total;
    let dht = w.dht_totals().minus(&w.dht_at_start.unwrap_or_default());
    let measured: Vec<&Row> = w.rows.iter().filter(|r| r.t_min > 0.0).collect();
    let n = measured.len().max(1) as f64;
    let peer = t.bytes[1] + t.bytes[2] + t.bytes[3];
    BaselineSummary {
        fetch_success: t.success(),
        requests: t.requests,
        done: t.done,
        failed: t.failed,
        aborted: t.aborted,
        seeder_bytes: t.seeder_egress,
        compulsory_miss_bytes: t.miss_bytes,
        compulsory_miss_distinct_bytes: t.miss_distinct_bytes,
        seeder_over_bound: ratio(t.seeder_egress, t.miss_bytes),
        peer_bytes: PeerBytes {
            same_prefix: t.bytes[1],
            same_as: t.bytes[2],
            other_as: t.bytes[3],
        },
        bytes_by_source: BySource {
            local: t.bytes[0],
            same_prefix: t.bytes[1],
            same_as: t.bytes[2],
            other_as: t.bytes[3],
            seeder: t.bytes[4],
        },
        cross_as_bytes: t.bytes[3] + t.bytes[4],
        peer_offload: ratio(peer, peer + t.bytes[4]),
        same_as_when_available: if t.peer_when_available == 0 {
            1.0
        } else {
            ratio(t.in_as_when_available, t.peer_when_available)
        },
        ttfb_ms: t.ttfb.percentiles(),
        completion_ms: t.completion.percentiles(),
        dht: dht_summary(&dht),
        supernodes: Supernodes {
            mean: measured.iter().map(|r| r.supernodes as f64).sum::<f64>() / n,
            max: measured.iter().map(|r| r.supernodes).max().unwrap_or(0),
            last: measured.last().map(|r| r.supernodes).unwrap_or(0),
            mean_children: measured.iter().map(|r| r.mean_children).sum::<f64>() / n,
            max_children: measured.iter().map(|r| r.max_children).max().unwrap_or(0),
            attached_leaves: measured.iter().map(|r| r.attached).sum::<f64>() / n,
        },
        control_bytes_per_node_s: if w.node_seconds > 0.0 {
            t.control_bytes as f64 / w.node_seconds
        } else {
            0.0
        },
        corrupt_chunks: t.corrupt_chunks,
        bans: dht.bans,
        children_dropped_overload: dht.children_dropped_overload,
        requests_busy: dht.requests_busy,
        faults: fault_reports(w),
    }
}

fn dht_summary(d: &DhtTotals) -> Dht {
    Dht {
        lookups: d.lookups,
        mean_hops: ratio(d.hops, d.lookups),
        found_share: ratio(d.found, d.lookups),
        announces: d.announces,
    }
}

fn fault_reports(w: &World) -> Vec<FaultReport> {
    let ms_to_min = |ms: u64| (ms as f64 - w.measure_start as f64) / 60_000.0;
    let mut out = Vec::new();
    for (i, f) in w.sc.faults.iter().enumerate() {
        let (Some(&s), Some(&e)) = (w.faults.start_ms.get(i), w.faults.end_ms.get(i)) else {
            continue;
        };
        let (start, end) = (ms_to_min(s), ms_to_min(e));
        let before: Vec<&Row> = w
            .rows
            .iter()
            .filter(|r| r.t_min < start && r.t_min >= start - 5.0)
            .collect();
        let ref_success = if before.is_empty() {
            0.99
        } else {
            before.iter().map(|r| r.success).sum::<f64>() / before.len() as f64
        };
        let ref_attached = before.last().map(|r| r.attached).unwrap_or(0.0);
        let min_success = w
            .rows
            .iter()
            .filter(|r| r.t_min > start && r.t_min <= end + 5.0)
            .map(|r| r.success)
            .fold(1.0, f64::min);
        let after = |ok: &dyn Fn(&Row) -> bool| {
            w.rows
                .iter()
                .filter(|r| r.t_min > end)
                .find(|r| ok(r))
                .map(|r| ((r.t_min - end) * 60.0).max(0.0))
        };
        let recovery_s = after(&|r: &Row| {
            r.success >= ref_success.min(0.99) - 0.005 && r.attached >= ref_attached * 0.95
        });
        let reattach_s = after(&|r: &Row| r.attached_any >= 0.99);
        out.push(FaultReport {
            fault: f.kind.label(),
            start_min: start,
            end_min: end,
            min_success,
            recovery_s,
            reattach_s,
        });
    }
    out
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

/// The terminal table, one column per baseline.
pub fn table(s: &Summary) -> String {
    let names: Vec<&String> = s.baselines.keys().collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}  peers {}  seed {}  measured {} min after {} min warm-up",
        s.scenario, s.peers, s.seed, s.duration_min, s.warmup_min
    );
    let _ = write!(out, "{:<28}", "");
    for n in &names {
        let _ = write!(out, "{:>15}", n);
    }
    out.push('\n');
    type Getter = fn(&BaselineSummary) -> String;
    let lines: Vec<(&str, Getter)> = vec![
        ("fetch success", |b| format!("{:.5}", b.fetch_success)),
        ("requests", |b| b.requests.to_string()),
        ("seeder egress MiB", |b| mib(b.seeder_bytes)),
        (
            "compulsory-miss bound MiB",
            |b| mib(b.compulsory_miss_bytes),
        ),
        ("seeder / bound", |b| format!("{:.2}", b.seeder_over_bound)),
        ("local MiB", |b| mib(b.bytes_by_source.local)),
        ("same prefix MiB", |b| mib(b.peer_bytes.same_prefix)),
        ("same AS MiB", |b| mib(b.peer_bytes.same_as)),
        ("other AS MiB", |b| mib(b.peer_bytes.other_as)),
        ("peer offload", |b| format!("{:.3}", b.peer_offload)),
        ("same AS when available", |b| {
            let peers = b.peer_bytes.same_prefix + b.peer_bytes.same_as + b.peer_bytes.other_as;
            // Vacuous (1.0 in summary.json) when peers served nothing, as for seeder_only.
            if peers == 0 {
                "–".to_string()
            } else {
                format!("{:.3}", b.same_as_when_available)
            }
        }),
        ("TTFB p50/p95/p99 ms", |b| {
            format!("{}/{}/{}", b.ttfb_ms.p50, b.ttfb_ms.p95, b.ttfb_ms.p99)
        }),
        ("done p50/p95/p99 ms", |b| {
            format!(
                "{}/{}/{}",
                b.completion_ms.p50, b.completion_ms.p95, b.completion_ms.p99
            )
        }),
        ("DHT lookups", |b| b.dht.lookups.to_string()),
        ("DHT mean hops", |b| format!("{:.2}", b.dht.mean_hops)),
        ("supernodes mean/max", |b| {
            format!("{:.0}/{}", b.supernodes.mean, b.supernodes.max)
        }),
        ("children mean/max", |b| {
            format!(
                "{:.0}/{}",
                b.supernodes.mean_children, b.supernodes.max_children
            )
        }),
        ("leaves attached", |b| {
            format!("{:.3}", b.supernodes.attached_leaves)
        }),
        ("control B/node/s", |b| {
            format!("{:.1}", b.control_bytes_per_node_s)
        }),
    ];
    for (label, get) in lines {
        let _ = write!(out, "{:<28}", label);
        for n in &names {
            let _ = write!(out, "{:>15}", get(&s.baselines[*n]));
        }
        out.push('\n');
    }
    for n in &names {
        for f in &s.baselines[*n].faults {
            let _ = writeln!(
                out,
                "{n}: {} at {:.0}-{:.0} min: min success {:.4}, recovery {}, re-attach {}",
                f.fault,
                f.start_min,
                f.end_min,
                f.min_success,
                f.recovery_s
                    .map(|s| format!("{s:.0} s"))
                    .unwrap_or_else(|| "never".into()),
                f.reattach_s
                    .map(|s| format!("{s:.0} s"))
                    .unwrap_or_else(|| "never".into()),
            );
        }
    }
    out
}

/// The time series of all baselines as CSV.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "baseline,t_min,online,supernodes,mean_children,max_children,attached,attached_any,requests,success,local,same_prefix,same_as,other_as,seeder,seeder_egress,miss_bytes,ttfb_p50,ttfb_p95,ttfb_p99,control_bytes_per_node_s\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{:.3},{},{},{:.2},{},{:.4},{:.4},{},{:.5},{},{},{},{},{},{},{},{},{},{},{:.2}",
            r.baseline,
            r.t_min,
            r.online,
            r.supernodes,
            r.mean_children,
            r.max_children,
            r.attached,
            r.attached_any,
            r.requests,
            r.success,
            r.local,
            r.same_prefix,
            r.same_as,
            r.other_as,
            r.seeder,
            r.seeder_egress,
            r.miss_bytes,
            r.ttfb_p50,
            r.ttfb_p95,
            r.ttfb_p99,
            r.control_bytes_per_node_s
        );
    }
    out
}
