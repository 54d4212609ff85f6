//! Faulty and vanishing sources, on one network of a seeder and seven peers:
//!
//! - a peer started with `--fault-corrupt-chunks` serves bytes that fail verification: the
//!   requester's fetch completes from others with the original bytes, its store never holds the
//!   bad bytes, it counts rejected chunks and bans the peer, and does not use it again;
//! - a large object held by several peers, whose nearest holders are killed mid-transfer: the
//!   download completes from the others.

use std::time::{Duration, Instant};

use anyhow::Result;
use nearcast_tests::*;

const SETTLE: Duration = Duration::from_millis(400);

#[test]
fn faulty_and_vanishing_sources() {
    run_test("faulty_and_vanishing_sources", body);
}

fn body(h: &Harness) -> Result<()> {
    let mut c = Checks::new();
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let boot = vec![seeder.addr()];
    let peer = |name: &str, ip: &str| h.peer(Spec::new(name, ip).bootstrap(&boot));
    let bad = h.peer(
        Spec::new("bad", "127.1.0.2")
            .bootstrap(&boot)
            .arg("--fault-corrupt-chunks"),
    )?;
    let r1 = peer("r1", "127.1.0.1")?;
    let good = peer("good", "127.2.0.1")?;
    let mut h1 = peer("h1", "127.1.0.3")?;
    let mut h2 = peer("h2", "127.1.0.4")?;
    let h3 = peer("h3", "127.2.0.2")?;
    let r2 = peer("r2", "127.1.0.5")?;
    for p in [&bad, &r1, &good, &h1, &h2, &h3, &r2] {
        c.step(
            &format!("{} attached", p.name),
            p.wait_attached(Duration::from_secs(25)),
        );
    }

    let m = image("m.jpg", 11, 6 * CHUNK + 1234);
    let m2 = image("m2.jpg", 12, 3 * CHUNK + 99);
    let k = image("k.jpg", 13, 8 * 1024 * 1024 - 4321);
    let ids = h.publish_objects(&seeder, "content", &[m.clone(), m2.clone(), k.clone()])?;
    let (m_id, m2_id, k_id) = (&ids[0], &ids[1], &ids[2]);

    // --- Corrupting peer.
    eprintln!("== a peer serving corrupted chunks");
    for p in [&bad, &good] {
        c.step(&format!("{} fetches m", p.name), p.fetch_ok(m_id, &m.bytes));
        std::thread::sleep(SETTLE);
    }
    c.step("bad fetches m2", bad.fetch_ok(m2_id, &m2.bytes));
    std::thread::sleep(SETTLE);
    let before = r1.metrics()?;
    c.step(
        "r1 fetches m (nearest holder corrupts) and gets the original bytes",
        r1.fetch_ok(m_id, &m.bytes),
    );
    let after = r1.metrics()?;
    let d = after.by_source().minus(&before.by_source());
    eprintln!("     r1: {d}");
    c.check(
        after.rejected() > before.rejected(),
        format!(
            "r1 rejected chunks from the corrupting peer (nearcast_chunks_rejected_total {} → {})",
            before.rejected(),
            after.rejected()
        ),
    );
    c.check(
        after.banned() > before.banned(),
        format!(
            "r1 banned it (nearcast_peers_banned_total {} → {})",
            before.banned(),
            after.banned()
        ),
    );
    match find_object_dir(&r1.data, m_id) {
        Some(dir) => match read_stored_data(&dir) {
            Ok(stored) => c.check(
                sha256_hex(&stored) == m.sha256(),
                format!(
                    "r1's stored chunks are the original bytes ({} bytes, sha256 {})",
                    stored.len(),
                    sha256_hex(&stored)
                ),
            ),
            Err(e) => c.check(false, format!("reading r1's stored chunks: {e:#}")),
        },
        None => c.check(
            false,
            format!(
                "no directory named {m_id} in r1's store {}",
                r1.data.display()
            ),
        ),
    }
    // The banned peer is not used again: m2 is held by it and by the seeder only.
    let before = r1.metrics()?;
    c.step(
        "r1 fetches m2 (held by the banned peer and the seeder)",
        r1.fetch_ok(m2_id, &m2.bytes),
    );
    let after = r1.metrics()?;
    c.check(
        after.rejected() == before.rejected(),
        format!(
            "r1 did not take chunks from the banned peer again (rejected {} → {})",
            before.rejected(),
            after.rejected()
        ),
    );
    let served_by_bad = bad.metrics()?.served();
    eprintln!("     bad peer served {served_by_bad} bytes (all corrupted)");

    // --- Sources killed mid-transfer.
    eprintln!("== sources killed mid-transfer ({} bytes)", k.bytes.len());
    for p in [&h1, &h2, &h3] {
        let t = p.fetch_ok(k_id, &k.bytes);
        if let Ok(t) = &t {
            eprintln!("     {} took {t:?}", p.name);
        }
        c.step(&format!("{} fetches k", p.name), t);
        std::thread::sleep(SETTLE);
    }
    let size = k.bytes.len() as f64;
    let before = r2.metrics()?.by_source();
    let stored_before = r2.status()?.store_bytes as f64;
    let (result, killed_at_partial, kill_time, done_time) = std::thread::scope(|s| {
        let started = Instant::now();
        let fetch = s.spawn(|| {
            let r = r2.fetch_ok(k_id, &k.bytes);
            (r, Instant::now())
        });
        // Kill the two same-AS holders as soon as r2 has stored part of the object.
        let mut partial = None;
        while started.elapsed() < Duration::from_secs(2) && !fetch.is_finished() {
            if let Ok(st) = r2.status() {
                let got = st.store_bytes as f64 - stored_before;
                if got >= CHUNK as f64 && got < size * 0.8 {
                    partial = Some(got);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        h1.kill();
        h2.kill();
        let kill_time = Instant::now();
        let (r, done) = fetch.join().unwrap_or_else(|_| {
            (
                Err(anyhow::anyhow!("fetch thread panicked")),
                Instant::now(),
            )
        });
        (r, partial, kill_time, done)
    });
    eprintln!(
        "     h1 and h2 killed {} (r2 had stored {:?} bytes of it); fetch finished {:?} after the kill",
        if done_time > kill_time {
            "before the fetch finished"
        } else {
            "after the fetch finished"
        },
        killed_at_partial,
        done_time.saturating_duration_since(kill_time)
    );
    c.step("r2 completes the download with the original bytes", result);
    let d = r2.metrics()?.by_source().minus(&before);
    eprintln!("     r2: {d}");
    c.check(
        d.remote() >= size * 0.98,
        format!("r2's counters cover the object ({d})"),
    );
    let after_kill = done_time.saturating_duration_since(kill_time);
    c.check(
        after_kill < Duration::from_secs(5),
        format!(
            "r2 finished {after_kill:?} after the kill (< 5 s: a closed connection fails its \
             chunk requests at once, no chunk timeout needed)"
        ),
    );
    c.check(
        d.seeder < size / 2.0,
        format!("the rest came from the surviving peer holder, not the seeder ({d})"),
    );
    c.check(
        killed_at_partial.is_some() && done_time > kill_time,
        "the holders were killed while r2's download was under way (else this run proved less)",
    );
    c.finish()
}
