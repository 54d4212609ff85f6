//! The README's demo: a local nearcast network on loopback — one seeder and a dozen peers over
//! three "ASes" (127.1/16, 127.2/16, 127.3/16, with an AS table for them) — publishes generated
//! images and posts, lets peers fetch them with Zipf-skewed popularity, and prints how many bytes
//! came from where.
//!
//! The workload is the simulator's (`sim/src/catalogue.rs`): 40% posts of 0.3–5 KiB, images
//! log-normal around 64 KiB (clipped to 2 KiB–2 MiB), requests by Zipf over a shuffled ranking.
//! `--json FILE` writes the bytes by source for `tests/compare-sim-real.sh`.
//!
//! `cargo run --release -p nearcast-tests --bin nearcast-demo [-- --peers N --requests N
//! --alpha A --seed S --json FILE --keep-running]`

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nearcast_tests::*;

const USAGE: &str = "usage: nearcast-demo [--peers N] [--requests N] [--alpha A] [--seed S] \
[--objects N] [--rate PER_SECOND] [--time SECONDS] [--json FILE] [--keep-running]";

struct Opts {
    peers: usize,
    requests: usize,
    objects: usize,
    alpha: f64,
    seed: u64,
    time: Duration,
    rate: f64,
    json: Option<std::path::PathBuf>,
    keep_running: bool,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        peers: 12,
        requests: 300,
        objects: 40,
        alpha: 0.9,
        seed: 1,
        time: Duration::from_secs(60),
        rate: 10.0,
        json: None,
        keep_running: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--peers" => o.peers = val("--peers")?.parse().context("--peers: not a number")?,
            "--requests" => {
                o.requests = val("--requests")?
                    .parse()
                    .context("--requests: not a number")?
            }
            "--objects" => {
                o.objects = val("--objects")?
                    .parse()
                    .context("--objects: not a number")?
            }
            "--alpha" => o.alpha = val("--alpha")?.parse().context("--alpha: not a number")?,
            "--seed" => o.seed = val("--seed")?.parse().context("--seed: not a number")?,
            "--time" => {
                o.time =
                    Duration::from_secs(val("--time")?.parse().context("--time: not a number")?)
            }
            "--rate" => o.rate = val("--rate")?.parse().context("--rate: not a number")?,
            "--json" => o.json = Some(val("--json")?.into()),
            "--keep-running" => o.keep_running = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if !(1..=60).contains(&o.peers) {
        bail!("--peers must be between 1 and 60");
    }
    if o.rate.is_nan() || o.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    if o.objects == 0 {
        bail!("--objects must be at least 1");
    }
    Ok(o)
}

/// Zipf sampler over ranks 0..n.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, alpha: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(alpha);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Share of posts in the catalogue, as in the simulator's default workload.
const POST_SHARE: f64 = 0.4;

/// An image size as the simulator draws it: log-normal around 64 KiB (σ 0.9), clipped to
/// 2 KiB–2 MiB.
fn image_size(rng: &mut Rng) -> usize {
    // Box–Muller: one standard normal from two uniforms.
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let size = ((64.0f64 * 1024.0).ln() + 0.9 * z).exp();
    size.clamp(2.0 * 1024.0, 2.0 * 1024.0 * 1024.0) as usize
}

fn mib(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "-".into()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nearcast-demo: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = ensure_daemons() {
        eprintln!("nearcast-demo: {e:#}");
        std::process::exit(1);
    }
    let h = match Harness::new("demo") {
        Ok(h) => h,
        Err(e) => {
            eprintln!("nearcast-demo: {e:#}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(&h, &opts) {
        eprintln!("nearcast-demo failed: {e:#}\n");
        eprintln!("{}", h.log_tails(20));
        std::process::exit(1);
    }
}

fn run(h: &Harness, o: &Opts) -> Result<()> {
    let started = Instant::now();
    let as_names = [(AS_A, "AS64501"), (AS_B, "AS64502"), (AS_C, "AS64503")];
    println!(
        "nearcast demo: 1 seeder + {} peers over 3 ASes on loopback (AS table {})",
        o.peers,
        h.as_table.display()
    );
    println!(
        "  127.1.0.0/16 → AS64501, 127.2.0.0/16 → AS64502, 127.3.0.0/16 → AS64503; seeder on 127.9.0.1"
    );

    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let boot = vec![seeder.addr()];
    println!("seeder {} at {}", short(&seeder.peer_id), seeder.addr());

    // Peers round-robin over the ASes; the first of each AS may become a supernode quickly.
    let mut peers: Vec<(Daemon, u32)> = Vec::new();
    for i in 0..o.peers {
        let a = i % 3;
        let j = i / 3;
        let ip = format!("127.{}.{}.{}", a + 1, j / 2, j % 2 + 1);
        let mut spec = Spec::new(&format!("peer{:02}", i + 1), &ip).bootstrap(&boot);
        spec.cache_size = Some("256MiB".into());
        if j == 0 {
            spec = spec.promote_after("2s");
            spec.reachable = Some("yes".into());
        }
        let d = h.peer(spec)?;
        peers.push((d, as_names[a].0));
    }
    println!(
        "{} peers up after {:.1} s",
        peers.len(),
        started.elapsed().as_secs_f64()
    );

    // Content: the simulator's mix of posts and images.
    let mut rng = Rng::new(o.seed);
    let mut objects = Vec::new();
    for i in 0..o.objects {
        if rng.f64() < POST_SHARE {
            objects.push(random_post(&format!("post-{i:03}.txt"), &mut rng));
        } else {
            let size = image_size(&mut rng);
            objects.push(image(&format!("image-{i:03}.jpg"), rng.next_u64(), size));
        }
    }
    let total: usize = objects.iter().map(|x| x.bytes.len()).sum();
    let ids = h.publish_objects(&seeder, "sample-content", &objects)?;
    println!(
        "published {} objects ({} images, {} posts, {} in all)",
        ids.len(),
        objects.iter().filter(|x| x.name.ends_with(".jpg")).count(),
        objects.iter().filter(|x| x.name.ends_with(".txt")).count(),
        mib(total as f64)
    );

    // Let the overlay form (bounded): leaves attached, supernodes promoted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attached = peers
            .iter()
            .filter(|(p, _)| p.status().map(|s| !s.parents.is_empty()).unwrap_or(false))
            .count();
        if attached == peers.len() || Instant::now() > deadline {
            println!("{attached}/{} peers attached to a parent", peers.len());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Give the election a moment: candidates may be promoted after 2 s of uptime.
    let deadline = Instant::now() + Duration::from_secs(15);
    let supernodes = loop {
        let n = peers
            .iter()
            .filter(|(p, _)| p.status().map(|s| s.role == "supernode").unwrap_or(false))
            .count();
        if n > 0 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("{supernodes} supernode(s) among the peers");

    // The workload: Zipf popularity over a shuffled ranking, random requesting peer.
    let zipf = Zipf::new(objects.len(), o.alpha);
    let mut order: Vec<usize> = (0..objects.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        order.swap(i, j);
    }
    let plan: Vec<(usize, usize)> = (0..o.requests)
        .map(|_| {
            (
                rng.range(0, peers.len() as u64 - 1) as usize,
                order[zipf.sample(&mut rng)],
            )
        })
        .collect();
    let distinct: BTreeSet<usize> = plan.iter().map(|p| p.1).collect();
    let compulsory: usize = distinct.iter().map(|&i| objects[i].bytes.len()).sum();
    println!(
        "running {} requests (Zipf α={}, {} distinct objects), {} per second from 4 clients, \
         at most {} s ...",
        plan.len(),
        o.alpha,
        distinct.len(),
        o.rate,
        o.time.as_secs()
    );

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Duration, bool, String)>> = Mutex::new(Vec::new());
    let run_start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    if run_start.elapsed() > o.time {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(pi, oi)) = plan.get(n) else { break };
                    let due = run_start + Duration::from_secs_f64(n as f64 / o.rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let t = Instant::now();
                    let r = peers[pi].0.fetch_ok(&ids[oi], &objects[oi].bytes);
                    let msg = r
                        .as_ref()
                        .err()
                        .map(|e| format!("{e:#}"))
                        .unwrap_or_default();
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((
                        t.elapsed(),
                        r.is_ok(),
                        msg,
                    ));
                }
            });
        }
    });
    let wall = run_start.elapsed();
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let ok = results.iter().filter(|r| r.1).count();
    let mut lat: Vec<Duration> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    lat.sort();
    println!(
        "\n{} requests done in {:.1} s: {} ok, {} failed; latency p50 {:.1} ms, p95 {:.1} ms, \
         p99 {:.1} ms",
        results.len(),
        wall.as_secs_f64(),
        ok,
        results.len() - ok,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99))
    );
    for (_, _, msg) in results.iter().filter(|r| !r.1).take(3) {
        println!("  failure: {msg}");
    }

    // Summary.
    let mut sum = Sources::default();
    let mut per_as: BTreeMap<u32, Sources> = BTreeMap::new();
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    for (p, asn) in &peers {
        let m = p.metrics()?.by_source();
        sum = sum.plus(&m);
        let e = per_as.entry(*asn).or_default();
        *e = e.plus(&m);
        if let Ok(s) = p.status() {
            *roles.entry(s.role).or_default() += 1;
        }
    }
    let seeder_served = seeder.metrics()?.served();
    println!(
        "\nbytes fetched by the peers' gateways, by source (summed over {} peers):",
        peers.len()
    );
    println!("  {:<12} {:>12} {:>8}", "source", "bytes", "share");
    for (name, v) in [
        ("local", sum.local),
        ("same_prefix", sum.same_prefix),
        ("same_as", sum.same_as),
        ("other_as", sum.other_as),
        ("seeder", sum.seeder),
    ] {
        println!("  {:<12} {:>12} {:>8}", name, mib(v), pct(v, sum.total()));
    }
    println!("  {:<12} {:>12}", "total", mib(sum.total()));
    println!();
    println!(
        "  seeder served (its nearcast_served_bytes_total): {}",
        mib(seeder_served)
    );
    println!(
        "  compulsory-miss bound (each distinct object once):  {}",
        mib(compulsory as f64)
    );
    println!(
        "  offload: {} of the bytes from the network came from peers",
        pct(sum.remote() - sum.seeder, sum.remote())
    );
    println!(
        "  served from inside the requester's AS: {} of the bytes from the network",
        pct(sum.own_as(), sum.remote())
    );
    println!(
        "\n  {:<8} {:>12} {:>12} {:>10}",
        "AS", "from network", "from own AS", "own share"
    );
    for (asn, s) in &per_as {
        println!(
            "  AS{:<6} {:>12} {:>12} {:>10}",
            asn,
            mib(s.remote()),
            mib(s.own_as()),
            pct(s.own_as(), s.remote())
        );
    }
    println!(
        "\n  roles: {}",
        roles
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &o.json {
        let doc = serde_json::json!({
            "peers": peers.len(),
            "requests": results.len(),
            "ok": ok,
            "bytes": {
                "local": sum.local,
                "same_prefix": sum.same_prefix,
                "same_as": sum.same_as,
                "other_as": sum.other_as,
                "seeder": sum.seeder,
            },
            "seeder_served": seeder_served,
            "compulsory_miss_bytes": compulsory,
        });
        std::fs::write(path, format!("{doc:#}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("bytes by source written to {}", path.display());
    }

    if o.keep_running {
        println!("\nthe network keeps running (Ctrl-C to stop). Gateways:");
        for (p, asn) in &peers {
            println!(
                "  {}  AS{}  http://{}/status",
                p.name,
                asn,
                p.gateway.as_deref().unwrap_or("?")
            );
        }
        println!(
            "  seeder       http://{}/metrics",
            seeder.http.as_deref().unwrap_or("?")
        );
        if let (Some(id), Some((p, _))) = (ids.first(), peers.first()) {
            println!(
                "try: curl -o x.jpg http://{}/o/{id}   or   nearcast get {id} --gateway {}",
                p.gateway.as_deref().unwrap_or("?"),
                p.gateway.as_deref().unwrap_or("?")
            );
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if ok < results.len() {
        bail!(
            "{} of {} requests failed",
            results.len() - ok,
            results.len()
        );
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}
