//! An interrupted fetch resumes, with real daemons: a peer whose store kept part of an object
//! (here the tail of its data file lost while it was down, as after a crash mid-download)
//! fetches only the chunks it lacks. The seeder sends just those, the peer counts the rest as
//! its own store's, and the object it serves is whole and verified.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};
use nearcast_tests::*;

#[test]
fn an_interrupted_fetch_takes_only_the_missing_chunks() {
    run_test("an_interrupted_fetch_takes_only_the_missing_chunks", body);
}

fn body(h: &Harness) -> Result<()> {
    let mut c = Checks::new();
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let mut p = h.peer(Spec::new("p1", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
    let attached = |p: &Daemon| p.wait_attached(Duration::from_secs(25));
    c.step("p1 attached", attached(&p));

    const CHUNKS: usize = 40;
    const KEPT: usize = 25;
    let big = image("big.jpg", 31, CHUNKS * CHUNK - 1234);
    let ids = h.publish_objects(&seeder, "content", std::slice::from_ref(&big))?;
    let id = &ids[0];
    c.step("p1 fetches the object", p.fetch_ok(id, &big.bytes));

    // Down hard; its data file loses everything past chunk KEPT - 1.
    p.kill();
    let dir = find_object_dir(&p.data, id).context("the object's directory in p1's store")?;
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("data"))
        .and_then(|f| f.set_len((KEPT * CHUNK) as u64))
        .context("cutting p1's data file")?;
    if c.step("p1 restarts", p.restart()).is_none() {
        return c.finish();
    }
    c.step("p1 attached again", attached(&p));

    let seeder_before = seeder.metrics()?.served();
    let before = p.metrics()?.by_source();
    c.step("p1 fetches the object again", p.fetch_ok(id, &big.bytes));
    let got = p.metrics()?.by_source().minus(&before);
    let seeder_sent = seeder.metrics()?.served() - seeder_before;
    let missing = (big.bytes.len() - KEPT * CHUNK) as f64;
    c.check(
        got.local == (KEPT * CHUNK) as f64 && got.remote() == missing,
        format!(
            "{KEPT} stored chunks counted as local, only the {} missing fetched: {got:?}",
            CHUNKS - KEPT
        ),
    );
    c.check(
        seeder_sent <= missing,
        format!("the seeder sent {seeder_sent} bytes for {missing} missing"),
    );

    // `nearcast get -o FILE` writes the whole object there, and nothing beside it.
    let out = h.path().join("big-copy.jpg");
    let gateway = p.gateway.clone().context("p1 has a gateway")?;
    let got = h.nearcast(
        &[
            "get",
            id,
            "-o",
            &out.to_string_lossy(),
            "--gateway",
            &gateway,
        ],
        Duration::from_secs(30),
    )?;
    c.check(
        got.status.success() && fs::read(&out).ok().as_deref() == Some(&big.bytes[..]),
        format!("`nearcast get -o` wrote the object: {}", got.stderr.trim()),
    );
    c.check(
        !h.path().join("big-copy.jpg.part").exists(),
        "no .part file left beside it",
    );
    c.finish()
}
