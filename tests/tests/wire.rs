//! Malformed and oversized messages on the wire: a raw libp2p client (TCP+noise+yamux) opens the
//! nearcast control and chunk protocols on a peer and a seeder and sends frames that claim 4 GiB,
//! frames just over the limit, undecodable frames, junk chunk requests, and a burst of streams.
//! The daemons must stay up, keep their memory bounded, and keep serving honest peers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use nearcast_tests::*;

const CONTROL: &str = "/nearcast/control/1";
const CHUNK_P: &str = "/nearcast/chunk/1";
/// MAX_REQUEST_BYTES of the control protocol.
const MAX_REQUEST: usize = 256 * 1024;

#[test]
fn malformed_and_oversized_messages() {
    run_test("malformed_and_oversized_messages", |h| {
        let mut c = Checks::new();
        let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
        let victim = h.peer(Spec::new("victim", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
        let honest = h.peer(Spec::new("honest", "127.1.0.2").bootstrap(&[seeder.addr()]))?;
        for p in [&victim, &honest] {
            c.step(
                &format!("{} attached", p.name),
                p.wait_attached(Duration::from_secs(25)),
            );
        }
        let obj = image("w.jpg", 5, 3 * CHUNK + 10);
        let id = h
            .publish_objects(&seeder, "content", std::slice::from_ref(&obj))?
            .remove(0);
        c.step("victim fetches an object", victim.fetch_ok(&id, &obj.bytes));
        let rss_before = victim.rss_kib().unwrap_or(0);

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        for target in [&victim, &seeder] {
            let addr: Multiaddr = target.addr().parse().context("listen address")?;
            let peer: PeerId = target.peer_id.parse().context("peer id")?;
            let outcome = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), attack(addr, peer)).await
            });
            match outcome {
                Ok(Ok(notes)) => c.check(true, format!("{}: attack ran: {notes}", target.name)),
                Ok(Err(e)) => c.check(
                    false,
                    format!("{}: attack client failed: {e:#}", target.name),
                ),
                Err(_) => c.check(
                    false,
                    format!("{}: attack did not finish within 60 s", target.name),
                ),
            }
        }
        drop(rt);

        for d in [&victim, &seeder] {
            c.step(
                &format!("{} still answers /status", d.name),
                d.status().map(|_| ()),
            );
        }
        let mut victim = victim;
        c.check(victim.is_running(), "victim process still running");
        let rss_after = victim.rss_kib().unwrap_or(0);
        c.check(
            rss_after < 256 * 1024,
            format!("victim's memory stays bounded: RSS {rss_before} KiB → {rss_after} KiB"),
        );
        let t = Instant::now();
        c.step(
            "an honest peer still fetches (possibly from the victim)",
            honest.fetch_ok(&id, &obj.bytes),
        );
        eprintln!("     honest fetch took {:?}", t.elapsed());
        let log = victim.log_text();
        c.check(!log.contains("panicked"), "no panic in the victim's log");
        c.check(
            !seeder.log_text().contains("panicked"),
            "no panic in the seeder's log",
        );
        c.finish()
    });
}

/// Sends every kind of bad message to `peer`; returns what was observed.
async fn attack(addr: Multiaddr, peer: PeerId) -> Result<String> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    let mut control = swarm.behaviour().new_control();
    swarm.dial(addr)?;
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let mut notes = Vec::new();
    let control_p = StreamProtocol::new(CONTROL);
    let chunk_p = StreamProtocol::new(CHUNK_P);
    let mut rng = Rng::new(77);

    // 1. A frame claiming u32::MAX bytes.
    let mut frames: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut f = u32::MAX.to_be_bytes().to_vec();
    f.extend(vec![0xAB; 64 * 1024]);
    frames.push(("4 GiB length prefix", f));
    // 2. A frame one byte over the limit, fully sent.
    let mut f = ((MAX_REQUEST + 1) as u32).to_be_bytes().to_vec();
    let mut body = vec![0u8; MAX_REQUEST + 1];
    rng.fill(&mut body);
    f.extend(body);
    frames.push(("frame one byte over the limit", f));
    // 3. An undecodable frame within the limit.
    let mut body = vec![0u8; 200 * 1024];
    rng.fill(&mut body);
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend(body);
    frames.push(("undecodable 200 KiB frame", f));
    // 4. A frame whose bincode claims a huge vector.
    let body = vec![0x05, 0xFC, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0];
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend(body);
    frames.push(("bincode with a huge length field", f));
    // 5. A truncated frame (promises 1000 bytes, sends 10, closes).
    let mut f = 1000u32.to_be_bytes().to_vec();
    f.extend([1u8; 10]);
    frames.push(("truncated frame", f));

    for (what, frame) in &frames {
        let r = send_and_read(&mut control, peer, control_p.clone(), frame).await;
        notes.push(format!("control {what}: {r}"));
    }
    // Junk on the chunk protocol.
    let mut junk = vec![0u8; 64 * 1024];
    rng.fill(&mut junk);
    let r = send_and_read(&mut control, peer, chunk_p.clone(), &junk).await;
    notes.push(format!("chunk junk: {r}"));
    let r = send_and_read(&mut control, peer, chunk_p.clone(), &[0xFF; 16]).await;
    notes.push(format!("chunk short junk: {r}"));

    // A burst of streams, each sending a large undecodable frame.
    let mut opened = 0;
    let mut refused = 0;
    let mut streams = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(
            Duration::from_secs(5),
            control.open_stream(peer, control_p.clone()),
        )
        .await
        {
            Ok(Ok(s)) => {
                opened += 1;
                streams.push(s);
            }
            _ => refused += 1,
        }
    }
    let mut body = vec![0u8; 250 * 1024];
    rng.fill(&mut body);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    let writes = streams.into_iter().map(|mut s| {
        let frame = frame.clone();
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let _ = s.write_all(&frame).await;
                let _ = s.flush().await;
                let mut b = [0u8; 16];
                let _ = s.read(&mut b).await;
            })
            .await;
        }
    });
    futures::future::join_all(writes).await;
    notes.push(format!("burst: {opened} streams opened, {refused} refused"));
    driver.abort();
    if notes.is_empty() {
        return Err(anyhow!("nothing sent"));
    }
    Ok(notes.join("; "))
}

/// Opens a stream, writes `data`, and reports how the other side reacted.
async fn send_and_read(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    proto: StreamProtocol,
    data: &[u8],
) -> String {
    let mut s =
        match tokio::time::timeout(Duration::from_secs(10), control.open_stream(peer, proto)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return format!("stream refused ({e})"),
            Err(_) => return "stream open timed out".into(),
        };
    let w = tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(data).await?;
        s.flush().await?;
        s.close().await
    })
    .await;
    let wrote = match w {
        Ok(Ok(())) => "sent".to_string(),
        Ok(Err(e)) => format!("write failed ({e})"),
        Err(_) => "write timed out".into(),
    };
    let mut buf = vec![0u8; 4096];
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    let read = match r {
        Ok(Ok(0)) => "closed".to_string(),
        Ok(Ok(n)) => format!("{n} bytes back"),
        Ok(Err(e)) => format!("reset ({})", e.kind()),
        Err(_) => "no answer in 10 s".into(),
    };
    format!("{wrote}, {read}")
}
