//! A peer's cache budget, with real daemons: an object larger than the whole cache is refused
//! at once with a clear error (507, naming `--cache-size`), is not fetched, and costs the cache
//! nothing: what the peer held before is still served from its own store. An object that fits
//! is fetched and served whole even when it crowds out everything else.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nearcast_tests::*;

#[test]
fn objects_larger_than_the_cache() {
    run_test("objects_larger_than_the_cache", body);
}

fn body(h: &Harness) -> Result<()> {
    let mut c = Checks::new();
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let p = h.peer(
        Spec::new("p1", "127.1.0.1")
            .bootstrap(&[seeder.addr()])
            .cache_size("3MiB"),
    )?;
    c.step("p1 attached", p.wait_attached(Duration::from_secs(25)));

    let small = image("small.jpg", 21, 300 * 1024);
    let post = image("post.txt", 22, 2 * 1024);
    let huge = image("huge.jpg", 23, 5 * 1024 * 1024);
    let fits = image("fits.jpg", 24, 2 * 1024 * 1024 + 77);
    let ids = h.publish_objects(
        &seeder,
        "content",
        &[small.clone(), post.clone(), huge.clone(), fits.clone()],
    )?;
    let (small_id, post_id, huge_id, fits_id) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    c.step("p1 fetches small", p.fetch_ok(small_id, &small.bytes));
    c.step("p1 fetches post", p.fetch_ok(post_id, &post.bytes));
    let served_before = seeder.metrics()?.served();

    // Larger than the whole cache: refused with a clear error, quickly.
    let t = Instant::now();
    let r = p
        .http_get(&format!("/o/{huge_id}"), &[], Duration::from_secs(30))
        .context("GET of the huge object")?;
    let text = r.body_text(300);
    c.check(
        r.status == 507 && text.contains("--cache-size"),
        format!("object over the cache → {} {text:?}", r.status),
    );
    c.check(
        t.elapsed() < Duration::from_secs(10),
        format!("... answered in {:?}", t.elapsed()),
    );
    let paid = seeder.metrics()?.served() - served_before;
    c.check(
        paid < CHUNK as f64,
        format!("the seeder sent {paid} bytes of the refused object (less than a chunk)"),
    );

    // What the peer held before is still in its own store.
    let before = p.metrics()?.by_source();
    c.step("p1 gets small again", p.fetch_ok(small_id, &small.bytes));
    c.step("p1 gets post again", p.fetch_ok(post_id, &post.bytes));
    let got = p.metrics()?.by_source().minus(&before);
    c.check(
        got.local as usize == small.bytes.len() + post.bytes.len() && got.remote() == 0.0,
        format!("held objects after the refusal came from: {got:?}"),
    );

    // An object that fits is fetched and served whole, even if others must make room.
    c.step(
        "p1 fetches an object of 2/3 of its cache",
        p.fetch_ok(fits_id, &fits.bytes),
    );
    let status = p.status()?;
    c.check(
        status.store_bytes <= 3 * 1024 * 1024,
        format!("store within its budget: {} bytes", status.store_bytes),
    );
    c.finish()
}
