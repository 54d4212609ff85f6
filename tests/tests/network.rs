//! A three-AS network on loopback: one seeder and nine peers (three per AS, one of them promoted
//! to supernode in each AS). Shown on this one network, in order:
//!
//! 1. a popular object fetched by every peer: the seeder sends it about once per AS at most, every
//!    other copy comes from peers, and a peer whose AS already held it gets it from its own AS;
//! 2. gateway headers, Range requests and `/status`;
//! 3. long-tail objects fetched once come from the seeder;
//! 4. the seeder killed after a popular object spread: peers still get it, a long-tail object
//!    fails with a clear error within a bound, and succeeds once the seeder is back (same peer id);
//! 5. peers restarted (SIGTERM and SIGKILL): same peer id, content served from the local store.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nearcast_tests::*;

/// Pause after each fetch so the new holder's report reaches its parents.
const SETTLE: Duration = Duration::from_millis(400);
/// A failing fetch must fail within this.
const FAIL_BOUND: Duration = Duration::from_secs(45);

struct P {
    d: Daemon,
    asn: u32,
}

#[test]
fn three_as_network() {
    run_test("three_as_network", body);
}

fn body(h: &Harness) -> Result<()> {
    let mut c = Checks::new();
    let mut seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let boot = vec![seeder.addr()];
    let layout = [
        ("a1", "127.1.0.1", AS_A, true),
        ("b1", "127.2.0.1", AS_B, true),
        ("c1", "127.3.0.1", AS_C, true),
        ("a2", "127.1.0.2", AS_A, false),
        ("b2", "127.2.0.2", AS_B, false),
        ("c2", "127.3.0.2", AS_C, false),
        ("a3", "127.1.1.3", AS_A, false),
        ("b3", "127.2.1.3", AS_B, false),
        ("c3", "127.3.1.3", AS_C, false),
    ];
    let mut peers = Vec::new();
    for (name, ip, asn, sn) in layout {
        let mut spec = Spec::new(name, ip).bootstrap(&boot);
        if sn {
            spec = spec.promote_after("2s");
            spec.reachable = Some("yes".into());
        }
        peers.push(P {
            d: h.peer(spec)?,
            asn,
        });
    }
    let idx = |n: &str| layout.iter().position(|l| l.0 == n).expect("known peer");

    // Content.
    let pop = image("popular.jpg", 1, 1536 * 1024 + 777);
    let pop2 = image("popular2.jpg", 2, 700 * 1024 + 5);
    let tail1 = image("tail1.jpg", 3, 300 * 1024 + 11);
    let tail_post = post("tail-post.txt", 4, 1500);
    let tail2 = image("tail2.jpg", 5, 200 * 1024 + 3);
    let objs = [&pop, &pop2, &tail1, &tail_post, &tail2].map(|o| (*o).clone());
    let ids = h.publish_objects(&seeder, "content", &objs)?;
    let (pop_id, pop2_id, tail1_id, tail_post_id, tail2_id) =
        (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);

    // The overlay forms: one supernode per AS, every leaf attached.
    eprintln!("== overlay");
    // The candidates (one per AS, reachable, promote-after 2 s) may be promoted; how many are is
    // the election's call, but at least one supernode must exist for the seeder-outage part.
    // A candidate asks a seeder at a random moment within 4 maintenance periods (5 s each)
    // after its promote-after, and promotes one period later: up to ~27 s after its start.
    let deadline = Instant::now() + Duration::from_secs(35);
    let mut supernodes: Vec<String> = Vec::new();
    for p in &peers[..3] {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(500));
        match p
            .d
            .wait_status("a supernode", left, |s| s.role == "supernode")
        {
            Ok(_) => {
                eprintln!("     {} is a supernode", p.d.name);
                supernodes.push(p.d.peer_id.clone());
            }
            Err(_) => eprintln!("     note: {} was not promoted", p.d.name),
        }
    }
    c.check(
        !supernodes.is_empty(),
        format!(
            "{} of the 3 candidates promoted to supernode",
            supernodes.len()
        ),
    );
    // Leaves attach to supernodes, the one of their own AS when there is one.
    let deadline = Instant::now() + Duration::from_secs(20);
    for p in &peers[3..] {
        let own_sn = &peers[layout.iter().position(|l| l.3 && l.2 == p.asn).expect("sn")]
            .d
            .peer_id;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let want_own = supernodes.contains(own_sn);
        let what = if want_own {
            format!("{} attached to the supernode of its AS", p.d.name)
        } else {
            format!("{} attached to a supernode besides the seeder", p.d.name)
        };
        // Reported, not asserted: how fast leaves move to a new supernode depends on the
        // election's timing (a known gap on loopback, see the issue 2 note).
        match p.d.wait_status("attached", left, |s| {
            if want_own {
                s.parents.contains(own_sn)
            } else {
                s.parents.iter().any(|x| supernodes.contains(x))
            }
        }) {
            Ok(_) => eprintln!("  ok   {what}"),
            Err(e) => eprintln!(
                "  note {what}: not yet ({})",
                e.to_string().lines().next().unwrap_or("")
            ),
        }
    }

    // 1. Popular object, fetched by every peer in turn.
    eprintln!("== popular object ({} bytes)", pop.bytes.len());
    let size = pop.bytes.len() as f64;
    let seeder_before = seeder.metrics()?.served();
    let mut holders: BTreeSet<u32> = BTreeSet::new();
    let mut from_seeder = 0.0;
    let mut from_peers = 0.0;
    for p in &peers {
        let before = p.d.metrics()?.by_source();
        let fetched = p.d.fetch_ok(pop_id, &pop.bytes);
        let Some(t) = c.step(&format!("{} fetches the popular object", p.d.name), fetched) else {
            continue;
        };
        std::thread::sleep(SETTLE);
        let d = p.d.metrics()?.by_source().minus(&before);
        eprintln!("     {} took {:?}: {d}", p.d.name, t);
        from_seeder += d.seeder;
        from_peers += d.own_as() + d.other_as;
        c.check(
            d.remote() >= size * 0.98 && d.local == 0.0,
            format!(
                "{}: counters account for the whole object from the network ({d})",
                p.d.name
            ),
        );
        if holders.contains(&p.asn) {
            c.check(
                d.own_as() >= size * 0.98 && d.seeder + d.other_as <= size * 0.02 + 8192.0,
                format!(
                    "{}: a holder existed in AS {} so it came from there ({d})",
                    p.d.name, p.asn
                ),
            );
        }
        holders.insert(p.asn);
    }
    let seeder_sent = seeder.metrics()?.served() - seeder_before;
    c.check(
        seeder_sent <= 3.0 * size + 64.0 * 1024.0,
        format!(
            "seeder sent {:.2} copies of the popular object to 9 peers in 3 ASes (at most ~3)",
            seeder_sent / size
        ),
    );
    c.check(
        from_seeder <= 3.0 * size + 64.0 * 1024.0 && from_peers >= 6.0 * size * 0.98,
        format!(
            "peers got {:.2} copies from peers and {:.2} from the seeder (>= 6 and <= 3)",
            from_peers / size,
            from_seeder / size
        ),
    );

    // 2. Gateway headers, Range, status.
    eprintln!("== gateway");
    let a1 = &peers[idx("a1")].d;
    gateway_checks(&mut c, a1, pop_id, &pop)?;
    if let Some(s) = c.step("a1 /status", a1.status()) {
        c.check(
            s.peer_id == a1.peer_id,
            format!("status peer_id {} is the printed one", s.peer_id),
        );
        c.check(
            s.store_objects >= 1 && s.store_bytes >= pop.bytes.len() as u64,
            format!("status store use counts the object: {:?}", s.raw["store"]),
        );
    }
    let a2 = &peers[idx("a2")].d;
    if let Some(s) = c.step("a2 /status", a2.status()) {
        c.check(s.role == "leaf", format!("a2 is a leaf: {}", s.role));
    }
    if let Some(s) = c.step("seeder /status", seeder.status()) {
        c.check(s.role == "seeder", format!("seeder role is {}", s.role));
        c.check(
            s.peer_id == seeder.peer_id,
            "seeder status peer_id is the printed one",
        );
    }

    // 3. Long tail: fetched once, from the seeder.
    eprintln!("== long tail");
    for (peer, id, obj) in [("b2", tail1_id, &tail1), ("c3", tail_post_id, &tail_post)] {
        let p = &peers[idx(peer)].d;
        let before = p.metrics()?.by_source();
        if c.step(
            &format!("{peer} fetches long-tail {}", obj.name),
            p.fetch_ok(id, &obj.bytes),
        )
        .is_some()
        {
            let d = p.metrics()?.by_source().minus(&before);
            c.check(
                d.seeder >= obj.bytes.len() as f64 && d.own_as() + d.other_as == 0.0,
                format!("{peer}: long-tail {} came from the seeder ({d})", obj.name),
            );
        }
    }

    // 4. Seeder outage.
    eprintln!("== seeder outage");
    for n in ["a1", "b1", "c1"] {
        c.step(
            &format!("{n} fetches popular2"),
            peers[idx(n)].d.fetch_ok(pop2_id, &pop2.bytes),
        );
        std::thread::sleep(SETTLE);
    }
    let seeder_id = seeder.peer_id.clone();
    seeder.kill();
    eprintln!("     seeder killed");
    for n in ["a2", "b2", "c2", "a3"] {
        let p = &peers[idx(n)].d;
        let before = p.metrics()?.by_source();
        if c.step(
            &format!("{n} gets popular2 with the seeder down"),
            p.fetch_ok(pop2_id, &pop2.bytes),
        )
        .is_some()
        {
            let d = p.metrics()?.by_source().minus(&before);
            c.check(
                d.seeder == 0.0,
                format!("{n}: nothing counted from the dead seeder ({d})"),
            );
        }
    }
    let b3 = &peers[idx("b3")].d;
    let c2 = &peers[idx("c2")].d;
    let (cli, gw) = std::thread::scope(|s| {
        let cli = s.spawn(|| {
            let out = h.path().join("tail2.out");
            h.nearcast(
                &[
                    "get",
                    tail2_id,
                    "-o",
                    out.to_str().unwrap_or_default(),
                    "--gateway",
                    b3.gateway.as_deref().unwrap_or_default(),
                ],
                FAIL_BOUND + Duration::from_secs(15),
            )
        });
        let gw = s.spawn(|| {
            let t = Instant::now();
            (
                c2.http_get(
                    &format!("/o/{tail2_id}"),
                    &[],
                    FAIL_BOUND + Duration::from_secs(15),
                ),
                t.elapsed(),
            )
        });
        (cli.join(), gw.join())
    });
    match cli {
        Ok(Ok(out)) => {
            c.check(
                !out.status.success(),
                format!(
                    "`nearcast get` of a long-tail object with the seeder down fails ({})",
                    out.status
                ),
            );
            c.check(
                out.elapsed <= FAIL_BOUND,
                format!("... within {FAIL_BOUND:?} (took {:?})", out.elapsed),
            );
            c.check(
                clear_error(&out.stderr),
                format!("... with a clear message: {:?}", out.stderr.trim()),
            );
        }
        Ok(Err(e)) => c.check(false, format!("`nearcast get` with the seeder down: {e:#}")),
        Err(_) => c.check(false, "`nearcast get` thread panicked"),
    }
    match gw {
        Ok((Ok(r), t)) => {
            c.check(
                r.status == 503 && r.body_text(200).contains("could not be reached"),
                format!(
                    "gateway answers {} for a long-tail object with the seeder down, in {t:?}: {:?}",
                    r.status,
                    r.body_text(200)
                ),
            );
            c.check(
                t <= FAIL_BOUND,
                format!("... within {FAIL_BOUND:?} (took {t:?})"),
            );
        }
        Ok((Err(e), _)) => c.check(false, format!("gateway with the seeder down: {e:#}")),
        Err(_) => c.check(false, "gateway thread panicked"),
    }

    eprintln!("== seeder restart");
    seeder.restart()?;
    c.check(
        seeder.peer_id == seeder_id,
        format!(
            "seeder peer id survives a restart ({} vs {seeder_id})",
            seeder.peer_id
        ),
    );
    let t = Instant::now();
    let back = wait_for(
        "tail2 fetchable after the seeder's return",
        Duration::from_secs(60),
        || b3.fetch_ok(tail2_id, &tail2.bytes).ok(),
    );
    c.step(
        &format!(
            "long-tail object fetched once the seeder is back (after {:?})",
            t.elapsed()
        ),
        back,
    );
    match h.publish(&seeder, &[h.path().join("content").join("popular.jpg")]) {
        Ok(v) => c.check(
            v.first().map(|x| x.0.as_str()) == Some(pop_id.as_str()),
            format!("republishing gives the same id ({v:?})"),
        ),
        Err(e) => c.check(false, format!("republish: {e:#}")),
    }

    // 5. Peer restarts.
    eprintln!("== peer restarts");
    for (n, graceful) in [("a2", true), ("c3", false)] {
        let seeder_before = seeder.metrics().map(|m| m.served()).unwrap_or(0.0);
        let p = &mut peers[idx(n)].d;
        let id_before = p.peer_id.clone();
        if graceful {
            p.terminate(Duration::from_secs(10));
        } else {
            p.kill();
        }
        if c.step(
            &format!(
                "{n} restarts ({})",
                if graceful { "SIGTERM" } else { "SIGKILL" }
            ),
            p.restart(),
        )
        .is_none()
        {
            continue;
        }
        c.check(
            p.peer_id == id_before,
            format!("{n}: peer id survives ({} vs {id_before})", p.peer_id),
        );
        if c.step(
            &format!("{n}: popular object after restart"),
            p.fetch_ok(pop_id, &pop.bytes),
        )
        .is_some()
        {
            let m = p.metrics()?.by_source();
            c.check(
                m.local >= size && m.remote() == 0.0,
                format!("{n}: served from the local store after restart ({m})"),
            );
        }
        let sent = seeder.metrics().map(|m| m.served()).unwrap_or(0.0) - seeder_before;
        c.check(
            sent < 4096.0,
            format!("{n}: seeder sent {sent} bytes for it"),
        );
    }
    c.finish()
}

/// An error message a person can act on: present, not a panic.
fn clear_error(stderr: &str) -> bool {
    let s = stderr.trim();
    !s.is_empty() && !s.contains("panicked") && !s.contains("RUST_BACKTRACE")
}

fn gateway_checks(c: &mut Checks, p: &Daemon, id: &str, obj: &Object) -> Result<()> {
    let before = p.metrics()?.by_source();
    let r = p.get(id).context("GET popular")?;
    let n = obj.bytes.len();
    c.check(
        r.status == 200 && r.body == obj.bytes,
        format!("GET /o/id → {} with the bytes", r.status),
    );
    c.check(
        r.header("content-length") == Some(&n.to_string()),
        format!("Content-Length {:?}", r.header("content-length")),
    );
    c.check(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("image/")),
        format!(
            "Content-Type of a .jpg is image/*: {:?}",
            r.header("content-type")
        ),
    );
    c.check(
        r.header("etag") == Some(&format!("\"{id}\"")),
        format!("ETag {:?}", r.header("etag")),
    );
    c.check(
        r.header("cache-control").is_some_and(|v| {
            v.contains("max-age=31536000") && v.contains("immutable") && v.contains("public")
        }),
        format!("Cache-Control {:?}", r.header("cache-control")),
    );
    let d = p.metrics()?.by_source().minus(&before);
    c.check(
        d.local >= n as f64 && d.remote() == 0.0,
        format!("a held object counts as local ({d})"),
    );

    let r = p.http_get(
        &format!("/o/{id}"),
        &[("Range", "bytes=1000-1999")],
        HTTP_TIMEOUT,
    )?;
    c.check(
        r.status == 206 && r.body == obj.bytes[1000..2000],
        format!(
            "Range bytes=1000-1999 → {} with {} bytes",
            r.status,
            r.body.len()
        ),
    );
    c.check(
        r.header("content-range") == Some(&format!("bytes 1000-1999/{n}")),
        format!("Content-Range {:?}", r.header("content-range")),
    );
    let r = p.http_get(
        &format!("/o/{id}"),
        &[("Range", "bytes=-100")],
        HTTP_TIMEOUT,
    )?;
    c.check(
        r.status == 206 && r.body == obj.bytes[n - 100..],
        format!(
            "Range bytes=-100 → {} with {} bytes",
            r.status,
            r.body.len()
        ),
    );
    let r = p.http_get(
        &format!("/o/{id}"),
        &[("Range", &format!("bytes={}-", n - 10))],
        HTTP_TIMEOUT,
    )?;
    c.check(
        r.status == 206 && r.body == obj.bytes[n - 10..],
        format!(
            "Range bytes={}- → {} with {} bytes",
            n - 10,
            r.status,
            r.body.len()
        ),
    );
    let r = p.http_get(
        &format!("/o/{id}"),
        &[("Range", &format!("bytes={}-", n + 10))],
        HTTP_TIMEOUT,
    )?;
    c.check(
        r.status == 416,
        format!("unsatisfiable Range → {}", r.status),
    );
    // Ranges to ignore (RFC 9110 §14.2): the whole object, not a 416.
    for ignored in [
        "items=0-4",
        "bytes=0-1,3-4",
        "bytes=abc",
        "bytes=+2-4",
        "bytes=9-3",
    ] {
        let r = p.http_get(&format!("/o/{id}"), &[("Range", ignored)], HTTP_TIMEOUT)?;
        c.check(
            r.status == 200 && r.body == obj.bytes,
            format!("Range {ignored} → {} with {} bytes", r.status, r.body.len()),
        );
    }
    // A cached copy under this ETag is current: 304, no body.
    let tag = format!("\"{id}\"");
    let r = p.http_get(
        &format!("/o/{id}"),
        &[("If-None-Match", &tag)],
        HTTP_TIMEOUT,
    )?;
    c.check(
        r.status == 304 && r.body.is_empty() && r.header("etag") == Some(&tag),
        format!(
            "If-None-Match {tag} → {} with {} bytes",
            r.status,
            r.body.len()
        ),
    );
    let r = p.http_get(
        &format!("/o/{id}"),
        &[("If-None-Match", "\"something-else\"")],
        HTTP_TIMEOUT,
    )?;
    c.check(
        r.status == 200 && r.body == obj.bytes,
        format!("If-None-Match of another tag → {}", r.status),
    );
    Ok(())
}
