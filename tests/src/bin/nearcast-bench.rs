//! The figures, on loopback:
//!
//! - `swarm`: one seeder, 16 peers, one 64 MiB object requested by all at once: wall time until
//!   every peer has it verified, and the seeder's upload in copies of the object;
//! - `pair`: two processes (seeder and one peer), a 256 MiB object: verified-and-stored throughput;
//! - `ttfb`: time to first byte through the gateway, for a small object already in the store and
//!   for fresh objects held by a peer in the same AS (p50, p99);
//! - `idle`: an idle peer daemon's RSS and CPU over 10 s.
//!
//! `cargo run --release -p nearcast-tests --bin nearcast-bench [-- --only swarm,pair,ttfb,idle
//! --swarm-peers 16 --swarm-mib 64 --pair-mib 256 --ttfb-requests 200]`

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nearcast_tests::*;

struct Opts {
    only: Vec<String>,
    swarm_peers: usize,
    swarm_mib: usize,
    pair_mib: usize,
    ttfb_requests: usize,
}

const USAGE: &str = "usage: nearcast-bench [--only swarm,pair,ttfb,idle] [--swarm-peers N] \
[--swarm-mib N] [--pair-mib N] [--ttfb-requests N]";

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        only: vec!["swarm".into(), "pair".into(), "ttfb".into(), "idle".into()],
        swarm_peers: 16,
        swarm_mib: 64,
        pair_mib: 256,
        ttfb_requests: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |n: &str| {
            args.next()
                .with_context(|| format!("{n} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--only" => o.only = val("--only")?.split(',').map(str::to_string).collect(),
            "--swarm-peers" => o.swarm_peers = val("--swarm-peers")?.parse()?,
            "--swarm-mib" => o.swarm_mib = val("--swarm-mib")?.parse()?,
            "--pair-mib" => o.pair_mib = val("--pair-mib")?.parse()?,
            "--ttfb-requests" => o.ttfb_requests = val("--ttfb-requests")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(o)
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nearcast-bench: {e:#}");
            std::process::exit(2);
        }
    };
    if let Err(e) = ensure_daemons() {
        eprintln!("nearcast-bench: {e:#}");
        std::process::exit(1);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "note: this is a debug build of the bench; run it with --release for real figures"
        );
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut failed = false;
    for what in o.only.clone() {
        let h = match Harness::new(&format!("bench-{what}")) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("nearcast-bench: {e:#}");
                std::process::exit(1);
            }
        };
        eprintln!("== {what}");
        let r = match what.as_str() {
            "swarm" => swarm(&h, &o),
            "pair" => pair(&h, &o),
            "ttfb" => ttfb(&h, &o),
            "idle" => idle(&h),
            other => Err(anyhow::anyhow!("unknown benchmark {other:?}")),
        };
        match r {
            Ok(mut r) => {
                for (k, v) in &r {
                    eprintln!("   {k}: {v}");
                }
                rows.append(&mut r);
            }
            Err(e) => {
                failed = true;
                eprintln!("{what} failed: {e:#}\n{}", h.log_tails(15));
                rows.push((what.clone(), format!("FAILED: {e:#}")));
            }
        }
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    println!("\n{:<w$}  result", "figure");
    println!("{}", "-".repeat(w + 40));
    for (k, v) in &rows {
        println!("{k:<w$}  {v}");
    }
    if failed {
        std::process::exit(1);
    }
}

type Rows = Vec<(String, String)>;

/// Profiles only the timed part of a benchmark: with `NEARCAST_BENCH_PERF_CTL` naming the
/// control FIFO of `perf record --control fifo:PATH -D -1 ...`, writes `enable` when the timed
/// part starts and `disable` when it ends.
fn perf_control(command: &str) {
    let Some(path) = std::env::var_os("NEARCAST_BENCH_PERF_CTL") else {
        return;
    };
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{command}\n").as_bytes()))
    {
        eprintln!("   note: cannot write to the perf control FIFO: {e}");
    }
}

fn mib_s(bytes: usize, d: Duration) -> String {
    let s = d.as_secs_f64().max(1e-9);
    format!(
        "{:.0} MiB/s ({:.0} MB/s)",
        bytes as f64 / s / (1024.0 * 1024.0),
        bytes as f64 / s / 1e6
    )
}

fn swarm(h: &Harness, o: &Opts) -> Result<Rows> {
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let boot = vec![seeder.addr()];
    let mut peers = Vec::new();
    for i in 0..o.swarm_peers {
        let ip = format!("127.1.{}.{}", i / 8, i % 8 + 1);
        peers.push(h.peer(Spec::new(&format!("p{i:02}"), &ip).bootstrap(&boot))?);
    }
    for p in &peers {
        p.wait_attached(Duration::from_secs(30))?;
    }
    let obj = image("swarm.bin", 64, o.swarm_mib * 1024 * 1024);
    let id = h
        .publish_objects(&seeder, "content", std::slice::from_ref(&obj))?
        .remove(0);
    let want = obj.sha256();
    let size = obj.bytes.len();
    drop(obj);
    let before = seeder.metrics()?.served();
    let pids: Vec<u32> = std::iter::once(&seeder)
        .chain(&peers)
        .filter_map(|d| d.pid())
        .collect();
    let cpu_of = || -> Result<u64> { pids.iter().map(|&pid| proc_cpu_ticks(pid)).sum() };
    let cpu0 = cpu_of()?;
    perf_control("enable");
    // Timed: every peer asked at once; a gateway answers an object's HEAD once every chunk is
    // verified and stored, so the last answer is the time until all hold it.
    let start = Instant::now();
    let held = all_peers(&peers, |p| {
        let (status, _) = http_head(
            p.http_addr()?,
            &format!("/o/{id}"),
            Duration::from_secs(300),
        )?;
        ensure!(status == 200, "{}: status {status}", p.name);
        Ok(start.elapsed())
    })?;
    perf_control("disable");
    let cpu = (cpu_of()? - cpu0) as f64 / clock_ticks_per_s() as f64;
    let sent = seeder.metrics()?.served() - before;
    // Untimed check of what each holds: streamed back through its gateway and hashed.
    let streamed_from = Instant::now();
    all_peers(&peers, |p| {
        let d = http_get_digest(
            p.http_addr()?,
            &format!("/o/{id}"),
            Duration::from_secs(300),
        )?;
        ensure!(d.status == 200, "{}: status {}", p.name, d.status);
        ensure!(
            d.sha256 == want && d.len == size as u64,
            "{}: wrong bytes",
            p.name
        );
        Ok(Duration::ZERO)
    })?;
    let streamed = streamed_from.elapsed();
    let mut from_seeder = Vec::new();
    for p in &peers {
        from_seeder.push(p.metrics()?.fetched("seeder") / size as f64);
    }
    from_seeder.sort_by(f64::total_cmp);
    let wall = *held.last().context("no peers")?;
    Ok(vec![
        (
            format!(
                "swarm: {} peers, {} MiB, all at once: wall time until all hold it verified",
                peers.len(),
                o.swarm_mib
            ),
            format!(
                "{:.2} s (first {:.2} s, median {:.2} s)",
                wall.as_secs_f64(),
                held[0].as_secs_f64(),
                held[held.len() / 2].as_secs_f64()
            ),
        ),
        (
            "swarm: CPU of all daemons until then".into(),
            format!(
                "{cpu:.2} s = {:.0} MB received per CPU-second",
                (size * peers.len()) as f64 / 1e6 / cpu.max(1e-3)
            ),
        ),
        (
            "swarm: seeder upload".into(),
            format!(
                "{:.2} copies ({:.1} MiB)",
                sent / size as f64,
                sent / 1048576.0
            ),
        ),
        (
            "swarm: share of each peer's copy from the seeder".into(),
            format!(
                "min {:.2}, median {:.2}, max {:.2}",
                from_seeder[0],
                from_seeder[from_seeder.len() / 2],
                from_seeder[from_seeder.len() - 1]
            ),
        ),
        (
            "swarm: then all streamed back through their gateways (checked)".into(),
            format!("{:.2} s", streamed.as_secs_f64()),
        ),
    ])
}

/// Runs `f` for every peer at once (a thread each) and returns its results sorted.
fn all_peers(
    peers: &[Daemon],
    f: impl Fn(&Daemon) -> Result<Duration> + Sync,
) -> Result<Vec<Duration>> {
    let results: Vec<Result<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = peers.iter().map(|p| s.spawn(|| f(p))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("thread panicked")))
            })
            .collect()
    });
    let mut times = results.into_iter().collect::<Result<Vec<_>>>()?;
    times.sort();
    Ok(times)
}

fn pair(h: &Harness, o: &Opts) -> Result<Rows> {
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let p = h.peer(Spec::new("p", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
    p.wait_attached(Duration::from_secs(30))?;
    let obj = image("pair.bin", 256, o.pair_mib * 1024 * 1024);
    let id = h
        .publish_objects(&seeder, "content", std::slice::from_ref(&obj))?
        .remove(0);
    let want = obj.sha256();
    let size = obj.bytes.len();
    drop(obj);
    let pids = [seeder.pid(), p.pid()];
    let cpu_of = || -> Result<u64> {
        let mut t = 0;
        for pid in pids.iter().flatten() {
            t += proc_cpu_ticks(*pid)?;
        }
        Ok(t)
    };
    let cpu0 = cpu_of()?;
    // A just-published large object may take the seeder a moment to announce: retry 404s.
    // The gateway answers HEAD only once the fetch is done (every chunk verified and stored).
    let published = Instant::now();
    perf_control("enable");
    let until_stored = loop {
        let (status, t) = http_head(
            p.http_addr()?,
            &format!("/o/{id}"),
            Duration::from_secs(600),
        )?;
        if status == 200 {
            break t;
        }
        ensure!(
            status == 404 && published.elapsed() < Duration::from_secs(60),
            "HEAD answered {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let waited = published.elapsed().saturating_sub(until_stored);
    if waited > Duration::from_millis(100) {
        eprintln!("   note: the peer answered 404 for {waited:?} after `add` returned");
    }
    perf_control("disable");
    let fetch_cpu = (cpu_of()? - cpu0) as f64 / clock_ticks_per_s() as f64;
    let m = p.metrics()?.by_source();
    // Then the object streamed back out of the store (re-verified on read).
    let d = http_get_digest(
        p.http_addr()?,
        &format!("/o/{id}"),
        Duration::from_secs(600),
    )?;
    ensure!(
        d.status == 200 && d.sha256 == want,
        "wrong answer: {} {}",
        d.status,
        d.len
    );
    Ok(vec![
        (
            format!(
                "pair: {} MiB from one source, verified and stored",
                o.pair_mib
            ),
            format!(
                "{:.2} s = {}",
                until_stored.as_secs_f64(),
                mib_s(size, until_stored)
            ),
        ),
        (
            "pair: CPU of both daemons for the fetch".into(),
            format!(
                "{fetch_cpu:.2} s = {:.0} MB per CPU-second",
                size as f64 / 1e6 / fetch_cpu.max(1e-3)
            ),
        ),
        (
            "pair: then streamed back out of the store through the gateway".into(),
            format!("{:.2} s = {}", d.total.as_secs_f64(), mib_s(size, d.total)),
        ),
        ("pair: the fetch's bytes by source".into(), format!("{m}")),
    ])
}

fn pctl(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ttfb(h: &Harness, o: &Opts) -> Result<Rows> {
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let boot = vec![seeder.addr()];
    let holder = h.peer(Spec::new("holder", "127.1.0.1").bootstrap(&boot))?;
    let req = h.peer(Spec::new("requester", "127.1.0.2").bootstrap(&boot))?;
    for p in [&holder, &req] {
        p.wait_attached(Duration::from_secs(30))?;
    }
    let n = o.ttfb_requests.max(1);
    let mut rng = Rng::new(99);
    let objs: Vec<Object> = (0..=n)
        .map(|i| image(&format!("t{i:04}.jpg"), rng.next_u64(), 20 * 1024 + i))
        .collect();
    let ids = h.publish_objects(&seeder, "content", &objs)?;
    // Local: object 0, already in the requester's store.
    req.fetch_ok(&ids[0], &objs[0].bytes)?;
    let mut local = Vec::new();
    for _ in 0..n {
        let r = req.get(&ids[0])?;
        ensure!(r.status == 200, "local GET: {}", r.status);
        local.push(r.ttfb);
    }
    // Same AS: fresh objects, each first fetched by the holder.
    for (id, obj) in ids[1..].iter().zip(&objs[1..]) {
        holder.fetch_ok(id, &obj.bytes)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = req.metrics()?.by_source();
    let mut same_as = Vec::new();
    for (id, obj) in ids[1..].iter().zip(&objs[1..]) {
        let r = req.get(id)?;
        ensure!(
            r.status == 200 && r.body == obj.bytes,
            "same-AS GET: {}",
            r.status
        );
        same_as.push(r.ttfb);
    }
    let d = req.metrics()?.by_source().minus(&before);
    Ok(vec![
        (
            "ttfb: small object in the local store".into(),
            format!(
                "p50 {:?}, p99 {:?} ({n} requests)",
                pctl(&mut local, 0.5),
                pctl(&mut local, 0.99)
            ),
        ),
        (
            "ttfb: fresh object held by a same-AS peer".into(),
            format!(
                "p50 {:?}, p99 {:?} ({n} objects; bytes from own AS {:.0}%, seeder {:.0}%)",
                pctl(&mut same_as, 0.5),
                pctl(&mut same_as, 0.99),
                100.0 * d.own_as() / d.remote().max(1.0),
                100.0 * d.seeder / d.remote().max(1.0)
            ),
        ),
    ])
}

fn idle(h: &Harness) -> Result<Rows> {
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let p = h.peer(Spec::new("idle", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
    p.wait_attached(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = p.pid().context("peer not running")?;
    let t0 = proc_cpu_ticks(pid)?;
    let w = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let ticks = proc_cpu_ticks(pid)? - t0;
    let secs = w.elapsed().as_secs_f64();
    let cpu = ticks as f64 / clock_ticks_per_s() as f64;
    let rss = proc_rss_kib(pid)?;
    Ok(vec![
        (
            "idle peer: RSS".into(),
            format!("{:.1} MiB", rss as f64 / 1024.0),
        ),
        (
            "idle peer: CPU over 10 s".into(),
            format!("{:.3} s ({:.2}% of one core)", cpu, 100.0 * cpu / secs),
        ),
    ])
}
