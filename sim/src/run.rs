//! Running a scenario: the shared topology, one world per baseline on the same workload and
//! seed, and the files a run leaves behind.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::fxhash::mix;
use crate::metrics::Row;
use crate::net::Topology;
use crate::report::{Summary, summarise};
use crate::scenario::{ALL_BASELINES, Scenario};
use crate::world::World;

/// Wall-clock facts about a run (kept out of `summary.json`).
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub wall_s: f64,
    /// CPU seconds (the machine may be shared: compare with wall time).
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub per_baseline: BTreeMap<String, BaselineRun>,
    /// Every setting the run used (the scenario with the command line's overrides), so that a
    /// run can be repeated from its output folder alone.
    pub settings: Scenario,
}

#[derive(Clone, Debug, Serialize)]
pub struct BaselineRun {
    pub wall_s: f64,
    pub events: u64,
    pub events_per_s: f64,
}

/// Everything a run produced.
pub struct Outcome {
    pub summary: Summary,
    pub rows: Vec<Row>,
    pub info: RunInfo,
}

/// Peak resident set size of this process (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (user + system) of this process so far, seconds (from /proc/self/stat).
pub fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Baselines in the order they are started when several run at once: the costliest first, so
/// that the cheap seeder-only run fills the gap at the end.
const START_ORDER: [&str; 4] = ["prefix_only", "nearcast", "random_swarm", "seeder_only"];

/// Worlds run at once by default: one per core (each holds a whole simulated network in memory).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every baseline of `sc` with `seed`, as many at once as there are cores.
pub fn run(sc: &Scenario, seed: u64, show_progress: bool) -> Result<Outcome> {
    run_jobs(sc, seed, show_progress, default_jobs())
}

/// What one baseline's world produced.
struct BaselineOutcome {
    run: BaselineRun,
    summary: crate::report::BaselineSummary,
    rows: Vec<Row>,
}

/// Runs every baseline of `sc` with `seed`, up to `jobs` of them at once. Each baseline is its
/// own single-threaded world on the same topology, so the results are the same whatever `jobs`.
pub fn run_jobs(sc: &Scenario, seed: u64, show_progress: bool, jobs: usize) -> Result<Outcome> {
    let started = Instant::now();
    let mut topo_rng = ChaCha8Rng::seed_from_u64(mix(&[seed, 1]));
    let (topo, places) = Topology::build(&sc.network, sc.peers, sc.protocol.seeders, &mut topo_rng)
        .context("building the network")?;
    let topo = Arc::new(topo);
    let wanted = |b: &&str| sc.baselines.iter().any(|x| x == b);
    let queue: Mutex<Vec<&str>> =
        Mutex::new(START_ORDER.iter().rev().copied().filter(wanted).collect());
    let bars = if show_progress && std::io::stderr().is_terminal() {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    };
    let workers = jobs.clamp(1, START_ORDER.len());
    // Each worker takes the next baseline until none is left. A worker that panicked is joined
    // here (its baselines are then missing and reported below), not re-raised by the scope.
    let mut done: BTreeMap<&str, BaselineOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(name) = queue.lock().ok().and_then(|mut q| q.pop()) {
                        mine.push((name, run_baseline(sc, seed, name, &topo, &places, &bars)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut baselines = BTreeMap::new();
    let mut rows = Vec::new();
    let mut per_baseline = BTreeMap::new();
    let mut events = 0;
    for name in ALL_BASELINES.iter().copied().filter(wanted) {
        let Some(mut out) = done.remove(name) else {
            anyhow::bail!("baseline {name} did not finish: its worker panicked (see above)");
        };
        events += out.run.events;
        per_baseline.insert(name.to_string(), out.run);
        baselines.insert(name.to_string(), out.summary);
        rows.append(&mut out.rows);
    }
    let wall = started.elapsed().as_secs_f64();
    let summary = Summary {
        scenario: sc.name.clone(),
        peers: sc.peers,
        seed,
        seeders: sc.protocol.seeders,
        duration_min: sc.duration_min,
        warmup_min: sc.warmup_min,
        baselines,
    };
    let info = RunInfo {
        wall_s: wall,
        cpu_s: cpu_s(),
        peak_rss_mib: peak_rss_mib(),
        events,
        events_per_s: events as f64 / wall.max(1e-9),
        per_baseline,
        settings: sc.clone(),
    };
    Ok(Outcome {
        summary,
        rows,
        info,
    })
}

/// Writes summary.json, run.json, timeseries.csv and the charts into `dir`.
pub fn write(out: &Outcome, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let summary = serde_json::to_string_pretty(&out.summary)? + "\n";
    std::fs::write(dir.join("summary.json"), summary).context("writing summary.json")?;
    let info = serde_json::to_string_pretty(&out.info)? + "\n";
    std::fs::write(dir.join("run.json"), info).context("writing run.json")?;
    std::fs::write(dir.join("timeseries.csv"), crate::report::csv(&out.rows))
        .context("writing timeseries.csv")?;
    crate::charts::write_all(&out.summary, &out.rows, dir).context("drawing charts")?;
    Ok(())
}

/// Runs one baseline's world to the end.
fn run_baseline(
    sc: &Scenario,
    seed: u64,
    name: &str,
    topo: &Arc<Topology>,
    places: &[crate::net::Place],
    bars: &MultiProgress,
) -> BaselineOutcome {
    let t = Instant::now();
    let total_ms = ((sc.warmup_min + sc.duration_min) * 60_000.0) as u64;
    let mut world = World::new(sc, seed, name, topo.clone(), places);
    let bar = bars.add(ProgressBar::new(total_ms / 1000));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos}/{len} sim s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let bar_ref = &bar;
    world.run(|sim_ms, ev| {
        let secs = t.elapsed().as_secs_f64().max(1e-3);
        bar_ref.set_position(sim_ms / 1000);
        bar_ref.set_message(format!("{:.0}k events/s", ev as f64 / secs / 1000.0));
    });
    bar.finish_and_clear();
    bars.remove(&bar);
    let wall = t.elapsed().as_secs_f64();
    let ev = world.q.popped;
    tracing::info!(baseline = name, wall_s = wall, events = ev, "baseline done");
    if world.profile {
        print_profile(name, &world);
    }
    BaselineOutcome {
        run: BaselineRun {
            wall_s: wall,
            events: ev,
            events_per_s: ev as f64 / wall.max(1e-9),
        },
        summary: summarise(&world),
        rows: std::mem::take(&mut world.rows),
    }
}

/// The counters `NEARCAST_SIM_PROFILE` asks for, on stderr.
fn print_profile(name: &str, world: &World) {
    eprintln!(
        "{name}: seeder bytes of fetches held elsewhere inline/chunked-no-peer/chunked-mixed {:?}",
        world.avoidable_seeder_bytes
    );
    eprintln!(
        "{name}: [other-AS, peer] bytes with an in-AS copy by in-AS holders 1/2-4/5-16/more, dialable then NAT {:?}",
        world.far_by_holders
    );
    eprintln!(
        "{name}: Attach answers Attached/Busy/other at supernode then seeder, from leaves then servers {:?}",
        world.attach_outcomes
    );
    eprintln!(
        "{name}: events timer/req/resp/chunk/other/stale-timer {:?}",
        world.event_counts
    );
    eprintln!(
        "{name}: requests FindNode/GetProviders/AddProvider/Attach/Detach/Have/Locate/GetManifest/GetChunkMap/Register {:?}",
        world.request_counts
    );
    eprintln!(
        "{name}: objects listed in Have added/removed and Holding {:?}",
        world.listed_objects
    );
    eprintln!(
        "{name}: Attach to supernode then seeder, new then already a parent, by parents held 0-3 {:?}",
        world.attach_kinds
    );
    eprintln!(
        "{name}: ms in requests of those kinds {:?}",
        world.request_nanos.map(|n| n / 1_000_000)
    );
    eprintln!(
        "{name}: ms in events of those kinds, with the requests they sent {:?}",
        world.event_nanos.map(|n| n / 1_000_000)
    );
}
