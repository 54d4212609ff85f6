//! The proximity map distributed through the overlay, on loopback: a seeder runs with a binary
//! map (`--asmap`, built by `nearcast-seeder asmap build`) and publishes it; peers without any
//! local table fetch and install it, then classify a fetch from a peer of their own AS (in
//! another prefix) as `same_as`, which only the map can tell. A peer restarted while the seeder
//! is down still has the map. A seeder refuses a corrupt map file with a clear error.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nearcast_tests::*;

/// AS 64501 has two prefixes, 127.1.0.0/24 and 127.1.2.0/24: peers in them share an AS but no
/// prefix (and, at 22 common bits, not even the /24 that IP-prefix fallback would use).
const MAP_CSV: &str = "127.1.0.0,127.1.0.255,64501,A west\n\
127.1.2.0,127.1.2.255,64501,A east\n\
127.2.0.0,127.2.255.255,64502,B\n";

/// How long a peer may take to learn and install the published map.
const INSTALL_BOUND: Duration = Duration::from_secs(40);

fn asmap_field(s: &Status, key: &str) -> Option<serde_json::Value> {
    s.raw.get("asmap").and_then(|m| m.get(key)).cloned()
}

fn published_object(s: &Status) -> Option<String> {
    let source = asmap_field(s, "source")?;
    if source.as_str() != Some("published") {
        return None;
    }
    asmap_field(s, "object")?.as_str().map(str::to_string)
}

#[test]
fn published_map_reaches_peers() {
    run_test("published_map_reaches_peers", body);
}

fn body(h: &Harness) -> Result<()> {
    let mut c = Checks::new();
    let csv = h.path().join("map.csv");
    std::fs::write(&csv, MAP_CSV)?;
    let map = h.path().join("map.bin");
    let args: Vec<OsString> = vec![
        "asmap".into(),
        "build".into(),
        "--ranges".into(),
        csv.into(),
        "-o".into(),
        map.clone().into(),
    ];
    let out = run_cmd(&h.bins.seeder, &args, &[], Duration::from_secs(60))?;
    ensure!(out.status.success(), "asmap build failed: {}", out.stderr);

    let mut seeder_spec = Spec::new("seeder", "127.9.0.1");
    seeder_spec.as_table = false;
    let mut seeder = h.seeder(
        seeder_spec
            .arg("--asmap")
            .arg(map.to_str().context("temp path is UTF-8")?),
    )?;
    let st = seeder.status()?;
    let map_id = asmap_field(&st, "object")
        .and_then(|v| v.as_str().map(str::to_string))
        .context("the seeder's /status names no published map")?;
    c.check(
        asmap_field(&st, "source").and_then(|v| v.as_str().map(str::to_string))
            == Some("local".into())
            && asmap_field(&st, "ases").and_then(|v| v.as_u64()) == Some(2),
        format!("seeder uses its own map and publishes it as {map_id}"),
    );

    let boot = vec![seeder.addr()];
    let mut peers = Vec::new();
    for (name, ip) in [("a1", "127.1.0.1"), ("a2", "127.1.2.1")] {
        let mut spec = Spec::new(name, ip).bootstrap(&boot);
        spec.as_table = false;
        peers.push(h.peer(spec)?);
    }
    for p in &peers {
        let t = Instant::now();
        let got = c.step(
            &format!("{} installs the published map", p.name),
            p.wait_status("using the published map", INSTALL_BOUND, |s| {
                published_object(s).as_deref() == Some(map_id.as_str())
            }),
        );
        if let Some(s) = got {
            eprintln!("     {} installed it after {:?}", p.name, t.elapsed());
            c.check(
                asmap_field(&s, "ases").and_then(|v| v.as_u64()) == Some(2)
                    && asmap_field(&s, "prefixes").and_then(|v| v.as_u64()) == Some(3),
                format!("{}: the installed map has 2 ASes and 3 prefixes", p.name),
            );
        }
    }
    c.check(
        peers
            .iter()
            .all(|p| p.log_text().contains("proximity map installed")),
        "peers log the install",
    );

    // A fetch from a peer of the same AS, other prefix: `same_as`, never `other_as`.
    let obj = image("photo.jpg", 11, 3 * CHUNK + 1234);
    let ids = h.publish_objects(&seeder, "content", std::slice::from_ref(&obj))?;
    let id = &ids[0];
    peers[0]
        .fetch_ok(id, &obj.bytes)
        .context("a1 fetches the object")?;
    std::thread::sleep(Duration::from_millis(500));
    let before = peers[1].metrics()?.by_source();
    peers[1]
        .fetch_ok(id, &obj.bytes)
        .context("a2 fetches the object")?;
    let d = peers[1].metrics()?.by_source().minus(&before);
    eprintln!("     a2's bytes by source: {d:?}");
    c.check(
        d.same_as > 0.0 && d.other_as == 0.0 && d.same_prefix == 0.0,
        format!(
            "a2's bytes from a1 count as same_as (same_as {}, other_as {}, same_prefix {})",
            d.same_as, d.other_as, d.same_prefix
        ),
    );
    c.check(
        d.total() >= obj.bytes.len() as f64,
        format!("a2 counted the whole object ({} bytes)", d.total()),
    );

    // Restart with the seeder down: the map comes from the peer's own data directory.
    seeder.kill();
    let a2 = &mut peers[1];
    a2.restart()?;
    let s = c.step(
        "a2 restarted without the seeder still uses the map",
        a2.wait_status("using the restored map", Duration::from_secs(5), |s| {
            published_object(s).as_deref() == Some(map_id.as_str())
        }),
    );
    if s.is_some() {
        c.check(
            a2.log_text().contains("last proximity map restored"),
            "a2 logs the restore",
        );
    }

    // A corrupt map file: the seeder refuses to start, saying why.
    let mut bytes = std::fs::read(&map)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let bad = h.path().join("bad.bin");
    std::fs::write(&bad, &bytes)?;
    let mut bad_spec = Spec::new("bad-seeder", "127.9.0.2");
    bad_spec.as_table = false;
    let bad_spec = bad_spec
        .arg("--asmap")
        .arg(bad.to_str().context("temp path is UTF-8")?);
    match h.seeder(bad_spec) {
        Ok(_) => c.check(false, "a seeder with a corrupt map must not start"),
        Err(e) => {
            let text = format!("{e:#}");
            c.check(
                text.contains("checksum"),
                format!(
                    "a corrupt map is refused with a clear error: {}",
                    text.lines().last().unwrap_or("")
                ),
            );
        }
    }
    c.finish()
}
