//! Builds a map from all of `shared/data` and prints the figures issue 4 asks for: build time,
//! file size, load time, memory, and a rough lookup time.
//!
//! `cargo run --release -p nearcast-asmap --features build --example full_build [DATA_DIR] [OUT]`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nearcast_asmap::AsMap;
use nearcast_asmap::build::build_cli;

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Child mode: load a map file in a fresh process and print its resident memory.
fn load_only(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let before = rss_kib("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let map = AsMap::from_bytes(&std::fs::read(path)?)?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let after = rss_kib("VmRSS:").unwrap_or(0);
    println!(
        "fresh process: read+load {load_ms:.1} ms; RSS {:.1} MiB before, {:.1} MiB with the map \
         (+{:.1} MiB); peak RSS {:.1} MiB; heap_size {:.1} MiB",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        rss_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0,
        map.heap_size() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--load-only") {
        let path = args.nth(1).ok_or("--load-only FILE")?;
        return load_only(Path::new(&path));
    }
    let data = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nearcast-full.asmap"));
    if !data.is_dir() {
        println!("data folder {} absent: nothing to do", data.display());
        return Ok(());
    }
    let bgp = data.join("bgp");
    let ild = data.join("ip-location-db");
    let mrt = [
        bgp.join("rib.20140523.0600_firstMB.bz2"),
        bgp.join("rib6.20151101.0600_firstMB.bz2"),
    ];
    let prefixes = [bgp.join("ipasn_20140513.dat.gz")];
    let ranges = [ild.join("asn-ipv4.csv.gz"), ild.join("asn-ipv6.csv.gz")];

    let t = Instant::now();
    let report = build_cli(&mrt, &ranges, &prefixes, &out)?;
    let build_s = t.elapsed().as_secs_f64();
    print!("{report}");
    println!("build time: {build_s:.2} s");

    let bytes = std::fs::read(&out)?;
    println!(
        "file size: {} bytes ({:.2} MiB)",
        bytes.len(),
        bytes.len() as f64 / (1024.0 * 1024.0)
    );

    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("--load-only")
        .arg(&out)
        .output()?;
    print!("{}", String::from_utf8_lossy(&child.stdout));

    let rss_before = rss_kib("VmRSS:").unwrap_or(0);
    let mut loads = Vec::new();
    let mut map = AsMap::empty();
    for _ in 0..5 {
        let t = Instant::now();
        map = AsMap::from_bytes(&bytes)?;
        loads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    loads.sort_by(f64::total_cmp);
    println!(
        "load time (from_bytes incl. SHA-256 check): median {:.1} ms, min {:.1} ms; read+load {:.1} ms",
        loads[loads.len() / 2],
        loads[0],
        {
            let t = Instant::now();
            let b = std::fs::read(&out)?;
            let m = AsMap::from_bytes(&b)?;
            black_box(&m);
            t.elapsed().as_secs_f64() * 1000.0
        }
    );
    drop(bytes);
    let rss_after = rss_kib("VmRSS:").unwrap_or(0);
    let (i4, i6) = map.interval_counts();
    println!(
        "memory: heap_size {:.1} MiB ({} v4 + {} v6 prefixes, {} + {} intervals, {} ASes, {} edges); \
         this process (which also built it): RSS {:.1} MiB (before loading {:.1} MiB), peak {:.1} MiB",
        map.heap_size() as f64 / (1024.0 * 1024.0),
        map.prefix_count_v4(),
        map.prefix_count_v6(),
        i4,
        i6,
        map.as_count(),
        map.edge_count(),
        rss_after as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        rss_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0,
    );

    // Rough lookup timing over pseudo-random addresses (the divan bench gives the p50).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut ips = Vec::with_capacity(1 << 20);
    for i in 0..(1 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ips.push(if i % 4 == 3 {
            IpAddr::V6(Ipv6Addr::from(
                (0x2000u128 << 112) | (u128::from(x) << 48) | u128::from(x >> 16),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(x as u32))
        });
    }
    let t = Instant::now();
    let mut hits = 0usize;
    for ip in &ips {
        hits += usize::from(black_box(map.lookup(*ip)).is_some());
    }
    let per = t.elapsed().as_secs_f64() * 1e9 / ips.len() as f64;
    println!(
        "lookup: mean {per:.0} ns over {} random addresses (3/4 IPv4, 1/4 IPv6 in 2000::/16), {hits} hits",
        ips.len()
    );

    let ases = map.ases().to_vec();
    let t = Instant::now();
    let n = 20_000usize;
    let mut hist = [0u32; 5];
    for i in 0..n {
        let a = ases[(i * 7919) % ases.len()];
        let b = ases[(i * 104_729 + 13) % ases.len()];
        hist[usize::from(map.as_distance(a, b).min(4))] += 1;
    }
    println!(
        "as_distance: mean {:.1} us over {n} random AS pairs, histogram 0..=4: {hist:?}",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    Ok(())
}
