//! The `nearcast-sim` command: `run SCENARIO` and `list`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use nearcast_sim::run;
use nearcast_sim::scenario::{BUILTIN, Scenario};

/// mimalloc: the simulator allocates and frees small node state at a high rate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nearcast-sim",
    version,
    about = "Simulates a nearcast overlay at scale with the real protocol core"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a scenario (a built-in name or a TOML file) for every baseline.
    ///
    /// The built-ins simulate 100,000 peers for 10 + 60 minutes with all four baselines (on a
    /// 2-core machine about 15 minutes and 4 GiB); `--peers 2000 --baselines nearcast` gives a
    /// quick look.
    Run {
        scenario: String,
        /// Simulated peers (overrides the scenario).
        #[arg(long)]
        peers: Option<u32>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder for summary.json, run.json, timeseries.csv and charts.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
        /// Measured simulated minutes (overrides the scenario).
        #[arg(long)]
        duration_min: Option<f64>,
        /// Warm-up minutes (overrides the scenario).
        #[arg(long)]
        warmup_min: Option<f64>,
        /// Only these baselines (comma-separated).
        #[arg(long, value_delimiter = ',')]
        baselines: Option<Vec<String>>,
        /// Folder with real data (ip-location-db) for AS sizes and prefixes.
        #[arg(long)]
        data: Option<String>,
        /// Baselines simulated at once (each holds its own network in memory) [default: cores].
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Lists the built-in scenarios.
    List,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            for (name, text) in BUILTIN {
                let about = text
                    .lines()
                    .take_while(|l| l.starts_with('#'))
                    .map(|l| l.trim_start_matches('#').trim())
                    .collect::<Vec<_>>()
                    .join(" ");
                println!("{name:<28} {about}");
            }
            Ok(())
        }
        Cmd::Run {
            scenario,
            peers,
            seed,
            out,
            duration_min,
            warmup_min,
            baselines,
            data,
            jobs,
        } => {
            let mut sc = Scenario::load(&scenario)?;
            if let Some(p) = peers {
                sc.peers = p;
            }
            if let Some(d) = duration_min {
                sc.duration_min = d;
            }
            if let Some(w) = warmup_min {
                sc.warmup_min = w;
            }
            if let Some(b) = baselines {
                sc.baselines = b;
            }
            if let Some(d) = data {
                sc.network.data = d;
            }
            sc.validate()?;
            // A bad --out is found now, not after the whole simulation.
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create output folder {}", out.display()))?;
            let probe = out.join(".nearcast-sim-write-test");
            std::fs::write(&probe, b"")
                .with_context(|| format!("cannot write in output folder {}", out.display()))?;
            let _ = std::fs::remove_file(&probe);
            let outcome = run::run_jobs(&sc, seed, true, jobs.unwrap_or_else(run::default_jobs))?;
            print!("{}", nearcast_sim::report::table(&outcome.summary));
            println!(
                "wall {:.1} s (CPU {:.1} s), {} events, {:.0} events/s, peak RSS {:.0} MiB",
                outcome.info.wall_s,
                outcome.info.cpu_s,
                outcome.info.events,
                outcome.info.events_per_s,
                outcome.info.peak_rss_mib
            );
            run::write(&outcome, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}
