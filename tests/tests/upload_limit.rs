//! A seeder with an upload limit, with real daemons: it answers `Busy` beyond its limit, and a
//! peer for which it is the only source waits and comes back rather than failing. The object
//! arrives whole, no faster than the limit allows, and the seeder sends it once.

use std::time::{Duration, Instant};

use anyhow::Context;
use nearcast_tests::*;

/// Seeder upload, bytes per second; its token bucket holds four seconds' worth.
const LIMIT: usize = 1024 * 1024;
/// Chunks of the object: four seconds' worth of burst, then six at the limit.
const CHUNKS: usize = 40;

/// A seeder limited to `limit` bytes per second, and one peer attached to it.
fn limited_seeder_and_peer(
    h: &Harness,
    c: &mut Checks,
    limit: usize,
) -> anyhow::Result<(Daemon, Daemon)> {
    let seeder = h.seeder(
        Spec::new("seeder", "127.9.0.1")
            .arg("--upload-limit")
            .arg(&limit.to_string()),
    )?;
    let p = h.peer(Spec::new("p1", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
    c.step("p1 attached", p.wait_attached(Duration::from_secs(25)));
    Ok((seeder, p))
}

#[test]
fn a_rate_limited_seeder_is_waited_for() {
    run_test("a_rate_limited_seeder_is_waited_for", |h| {
        let mut c = Checks::new();
        let (seeder, p) = limited_seeder_and_peer(h, &mut c, LIMIT)?;
        let big = image("limited.jpg", 77, CHUNKS * CHUNK);
        let ids = h.publish_objects(&seeder, "content", std::slice::from_ref(&big))?;
        let before = seeder.metrics()?.served();
        let t = Instant::now();
        c.step(
            "p1 fetches the object from the rate-limited seeder",
            p.fetch_ok(&ids[0], &big.bytes),
        );
        let took = t.elapsed();
        let sent = seeder.metrics()?.served() - before;
        // 40 chunks at 1 MiB/s after a 4 MiB burst: at least 6 s; allow for a slow start.
        let least = Duration::from_secs_f64((big.bytes.len() - 4 * LIMIT) as f64 / LIMIT as f64);
        c.check(
            took >= least.mul_f64(0.8),
            format!("the fetch took {took:?}: the seeder kept to its limit ({least:?} at least)"),
        );
        c.check(
            sent == big.bytes.len() as f64,
            format!(
                "the seeder sent {sent} bytes for a {}-byte object",
                big.bytes.len()
            ),
        );
        c.finish()
    });
}

/// A reader of an object still arriving (a player seeking, a `Range` request) is served ahead
/// of the rest: the chunk it waits for, and the few after it, are fetched first. Four ranges
/// spread over the object, asked one after the other while the whole object comes from the
/// rate-limited seeder, are all answered long before the object is complete. Fetched rarest
/// first from a random start, as before, the last of them waited for most of the object.
#[test]
fn a_reader_waiting_on_a_chunk_is_served_first() {
    // Larger than the gateway's whole-read size (16 MiB), so that it streams the object while
    // it arrives: 8 MiB of burst, then 6 s at the limit.
    const LIMIT: usize = 2 * 1024 * 1024;
    const CHUNKS: usize = 80;
    run_test("a_reader_waiting_on_a_chunk_is_served_first", |h| {
        let mut c = Checks::new();
        let (seeder, p) = limited_seeder_and_peer(h, &mut c, LIMIT)?;
        let big = image("seek.mp4", 78, CHUNKS * CHUNK);
        let id = h
            .publish_objects(&seeder, "content", std::slice::from_ref(&big))?
            .remove(0);
        let start = Instant::now();
        let (whole, ranges) = std::thread::scope(|s| {
            let whole = s.spawn(|| p.fetch_ok(&id, &big.bytes).map(|_| start.elapsed()));
            std::thread::sleep(Duration::from_millis(200));
            let mut ranges = Ok(Duration::ZERO);
            for chunk in [20, 40, 60, CHUNKS - 1] {
                let from = chunk * CHUNK + 1000;
                let to = from + 999;
                let r = p.http_get(
                    &format!("/o/{id}"),
                    &[("Range", &format!("bytes={from}-{to}"))],
                    Duration::from_secs(60),
                );
                match r {
                    Ok(r) if r.status == 206 && r.body == big.bytes[from..=to] => {
                        ranges = Ok(start.elapsed());
                    }
                    Ok(r) => {
                        ranges = Err(anyhow::anyhow!(
                            "bytes={from}-{to}: status {}, {} bytes (right bytes: {})",
                            r.status,
                            r.body.len(),
                            r.body == big.bytes[from..=to]
                        ));
                        break;
                    }
                    Err(e) => {
                        ranges = Err(e);
                        break;
                    }
                }
            }
            (whole.join(), ranges)
        });
        let whole = match whole {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the fetching thread panicked")),
        };
        match (whole, ranges) {
            (Ok(whole), Ok(ranges)) => c.check(
                ranges.as_secs_f64() < 0.5 * whole.as_secs_f64(),
                format!("four ranges answered after {ranges:?}, the whole object after {whole:?}"),
            ),
            (whole, ranges) => c.check(
                false,
                format!("whole object: {whole:?}; ranges: {ranges:?}"),
            ),
        }
        c.finish()
    });
}

/// A seeder with a 1 MiB burst, then 256 KiB/s, one peer attached to it, and a 12-chunk object
/// (3 MiB, about 8 s to come whole) published on it: (seeder, peer, object, its id).
fn slow_seeder_with_an_object(
    h: &Harness,
    c: &mut Checks,
    name: &str,
    seed: u64,
) -> anyhow::Result<(Daemon, Daemon, Object, String)> {
    let (seeder, p) = limited_seeder_and_peer(h, c, 256 * 1024)?;
    let object = image(name, seed, 12 * CHUNK);
    let id = h
        .publish_objects(&seeder, "content", std::slice::from_ref(&object))?
        .remove(0);
    Ok((seeder, p, object, id))
}

/// An object of a few chunks that the peer has to fetch is streamed through the gateway as it
/// arrives: the first bytes are answered once the first chunk is here, long before the whole
/// object (from a slow seeder). The gateway used to wait for the whole of any object up to
/// 16 MiB before it answered.
#[test]
fn an_object_of_a_few_chunks_is_streamed_as_it_arrives() {
    run_test("an_object_of_a_few_chunks_is_streamed_as_it_arrives", |h| {
        let mut c = Checks::new();
        let (_seeder, p, clip, id) = slow_seeder_with_an_object(h, &mut c, "clip.jpg", 79)?;
        let start = Instant::now();
        let first = p.check_first_bytes_streamed(&mut c, &id, &clip.bytes)?;
        c.step("the whole object", p.fetch_ok(&id, &clip.bytes));
        let whole = start.elapsed();
        c.check(
            first.as_secs_f64() < 0.5 * whole.as_secs_f64(),
            format!("first bytes after {first:?}, the whole object after {whole:?}"),
        );
        c.finish()
    });
}

/// A fetch that fails while its object is being streamed (the only source killed part way)
/// ends the transfer with a clear error from `nearcast get`, and leaves no file behind: the
/// response had started, so the gateway can only cut it short.
#[test]
fn a_stream_cut_short_by_a_failed_fetch_is_a_clear_error() {
    run_test(
        "a_stream_cut_short_by_a_failed_fetch_is_a_clear_error",
        |h| {
            let mut c = Checks::new();
            let (mut seeder, p, clip, id) = slow_seeder_with_an_object(h, &mut c, "cut.jpg", 80)?;
            let gateway = p.gateway.clone().context("p1 has a gateway")?;
            let out = h.path().join("cut-copy.jpg");
            let dest = out.to_string_lossy().to_string();
            let got = std::thread::scope(|s| {
                let get = s.spawn(|| {
                    h.nearcast(
                        &["get", &id, "-o", &dest, "--gateway", &gateway],
                        Duration::from_secs(60),
                    )
                });
                // A few chunks in (the seeder's burst), well before the whole object.
                std::thread::sleep(Duration::from_millis(1500));
                seeder.kill();
                get.join()
            });
            let got = match got {
                Ok(r) => r?,
                Err(_) => anyhow::bail!("the `nearcast get` thread panicked"),
            };
            let stderr = got.stderr.trim().to_string();
            c.check(
                !got.status.success()
                    && stderr.contains("the transfer ended after")
                    && stderr.contains(&format!("of {} bytes", clip.bytes.len())),
                format!("`nearcast get` failed with: {stderr}"),
            );
            c.check(
                !out.exists() && !h.path().join("cut-copy.jpg.part").exists(),
                "no file (nor .part) left behind",
            );
            c.finish()
        },
    );
}
