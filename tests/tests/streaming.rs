//! A large object is streamed through the gateway as it arrives, with real daemons: a Range
//! request for the first bytes of a 128 MiB object the peer does not hold is answered long
//! before the whole object is here (it used to wait for all of it), and a GET of the whole
//! object gets every byte, verified, as the chunks come in. A HEAD still answers once the
//! object is stored.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nearcast_tests::*;

#[test]
fn a_large_object_is_streamed_as_it_arrives() {
    run_test("a_large_object_is_streamed_as_it_arrives", body);
}

fn body(h: &Harness) -> Result<()> {
    let mut c = Checks::new();
    let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
    let p = h.peer(Spec::new("p1", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
    c.step("p1 attached", p.wait_attached(Duration::from_secs(25)));
    let big = image("big.bin", 77, 128 * 1024 * 1024);
    let id = h
        .publish_objects(&seeder, "content", std::slice::from_ref(&big))?
        .remove(0);

    let t = Instant::now();
    p.check_first_bytes_streamed(&mut c, &id, &big.bytes)?;
    let r = p
        .http_get(&format!("/o/{id}"), &[], Duration::from_secs(90))
        .context("GET of the whole object")?;
    c.check(
        r.status == 200 && r.body == big.bytes,
        format!(
            "whole object → {} with {} bytes after {:?}",
            r.status,
            r.body.len(),
            t.elapsed()
        ),
    );
    let (status, _) = http_head(p.http_addr()?, &format!("/o/{id}"), Duration::from_secs(30))?;
    c.check(status == 200, format!("HEAD once stored → {status}"));
    c.finish()
}
