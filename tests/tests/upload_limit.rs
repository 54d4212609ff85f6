//! A seeder with an upload limit, with real daemons: it answers `Busy` beyond its limit, and a
//! peer for which it is the only source waits and comes back rather than failing. The object
//! arrives whole, no faster than the limit allows, and the seeder sends it once.

use std::time::{Duration, Instant};

use nearcast_tests::*;

/// Seeder upload, bytes per second; its token bucket holds four seconds' worth.
const LIMIT: usize = 1024 * 1024;
/// Chunks of the object: four seconds' worth of burst, then six at the limit.
const CHUNKS: usize = 40;

#[test]
fn a_rate_limited_seeder_is_waited_for() {
    run_test("a_rate_limited_seeder_is_waited_for", |h| {
        let mut c = Checks::new();
        let seeder = h.seeder(
            Spec::new("seeder", "127.9.0.1")
                .arg("--upload-limit")
                .arg(&LIMIT.to_string()),
        )?;
        let p = h.peer(Spec::new("p1", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
        c.step("p1 attached", p.wait_attached(Duration::from_secs(25)));
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
