//! Bad input of every kind gets a clear answer, never a panic or a hang:
//! unknown and malformed ids, garbage on the HTTP and libp2p ports, oversized HTTP requests,
//! truncated and corrupted files in a peer's store, bad configuration, a dead bootstrap address.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nearcast_tests::*;

/// A failing fetch must fail within this.
const FAIL_BOUND: Duration = Duration::from_secs(45);

#[test]
fn bad_ids_and_garbage_input() {
    run_test("bad_ids_and_garbage_input", |h| {
        let mut c = Checks::new();
        let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
        let p = h.peer(Spec::new("p1", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
        c.step("p1 attached", p.wait_attached(Duration::from_secs(25)));
        let gw = p.gateway.clone().context("p1 has a gateway")?;

        // Unknown id: 404, quickly.
        let unknown = unknown_id(42);
        let t = Instant::now();
        match p.http_get(&format!("/o/{unknown}"), &[], FAIL_BOUND) {
            Ok(r) => {
                c.check(
                    r.status == 404 && !r.body.is_empty(),
                    format!("unknown id → {} {:?}", r.status, r.body_text(200)),
                );
                c.check(
                    t.elapsed() < Duration::from_secs(10),
                    format!("... answered in {:?} (< 10 s)", t.elapsed()),
                );
            }
            Err(e) => c.check(false, format!("unknown id: {e:#}")),
        }
        let out = h.nearcast(&["get", &unknown, "--gateway", &gw], FAIL_BOUND)?;
        c.check(
            !out.status.success() && clear_error(&out.stderr),
            format!(
                "`nearcast get <unknown id>` → {} {:?}",
                out.status,
                out.stderr.trim()
            ),
        );

        // Malformed ids: 400, at once.
        let long = "x".repeat(5000);
        for bad in ["not-an-id", "0OIl0OIl", "abc", "%00%ff", long.as_str()] {
            let t = Instant::now();
            match p.http_get(&format!("/o/{bad}"), &[], Duration::from_secs(10)) {
                Ok(r) => c.check(
                    (r.status == 400 || (bad.len() > 1000 && r.status == 414))
                        && t.elapsed() < Duration::from_secs(2),
                    format!(
                        "malformed id {:?} → {} in {:?}",
                        &bad[..bad.len().min(20)],
                        r.status,
                        t.elapsed()
                    ),
                ),
                Err(e) => c.check(
                    false,
                    format!("malformed id {:?}: {e:#}", &bad[..bad.len().min(20)]),
                ),
            }
        }
        let out = h.nearcast(
            &["get", "not-an-id", "--gateway", &gw],
            Duration::from_secs(15),
        )?;
        c.check(
            !out.status.success() && clear_error(&out.stderr),
            format!(
                "`nearcast get not-an-id` → {} {:?}",
                out.status,
                out.stderr.trim()
            ),
        );
        // The client checks the id itself (a space or a path in it would otherwise reach the
        // request line) and says what is wrong.
        for bad in ["", "a b", "../status"] {
            let out = h.nearcast(&["get", bad, "--gateway", &gw], Duration::from_secs(15))?;
            c.check(
                !out.status.success() && out.stderr.contains("is not an object id"),
                format!(
                    "`nearcast get {bad:?}` → {} {:?}",
                    out.status,
                    out.stderr.trim()
                ),
            );
        }
        // An unwritable destination fails before anything is fetched, naming the path asked for.
        let dest = "/nonexistent-dir/copy.bin";
        let t = Instant::now();
        let out = h.nearcast(
            &["get", &unknown, "-o", dest, "--gateway", &gw],
            Duration::from_secs(15),
        )?;
        c.check(
            !out.status.success()
                && out.stderr.contains(dest)
                && !out.stderr.contains(".part")
                && t.elapsed() < Duration::from_secs(5),
            format!(
                "`nearcast get -o {dest}` → {} in {:?} {:?}",
                out.status,
                t.elapsed(),
                out.stderr.trim()
            ),
        );
        let closed = format!("127.1.0.1:{}", free_port("127.1.0.1".parse()?)?);
        let out = h.nearcast(
            &["get", &unknown, "--gateway", &closed],
            Duration::from_secs(15),
        )?;
        c.check(
            !out.status.success() && clear_error(&out.stderr),
            format!(
                "`nearcast get` with no daemon → {} {:?}",
                out.status,
                out.stderr.trim()
            ),
        );
        let out = h.nearcast(&["status", "--gateway", &closed], Duration::from_secs(15))?;
        c.check(
            !out.status.success() && clear_error(&out.stderr),
            format!(
                "`nearcast status` with no daemon → {} {:?}",
                out.status,
                out.stderr.trim()
            ),
        );
        let out = h.nearcast(&["status", "--gateway", &gw], Duration::from_secs(15))?;
        c.check(
            out.status.success() && !out.stdout.trim().is_empty(),
            format!("`nearcast status` → {} {:?}", out.status, out.stdout.trim()),
        );

        // Garbage and oversized requests on the gateway.
        let rss_before = p.rss_kib().unwrap_or(0);
        let r = http_raw(&gw, b"GARBAGE\r\n\r\n", Duration::from_secs(5));
        c.check(
            r.as_ref().map(|r| r.status >= 400).unwrap_or(true),
            format!("garbage request line → {}", status_of(&r)),
        );
        let huge = format!(
            "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(4 * 1024 * 1024)
        );
        let r = http_raw(&gw, huge.as_bytes(), Duration::from_secs(10));
        c.check(
            r.as_ref().map(|r| r.status >= 400).unwrap_or(true),
            format!("4 MiB header → {} (refused)", status_of(&r)),
        );
        let body = format!(
            "POST /o/{unknown} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n"
        );
        let r = http_raw(&gw, body.as_bytes(), Duration::from_secs(10));
        c.check(
            r.as_ref().map(|r| r.status >= 400).unwrap_or(true),
            format!("POST announcing 1 GB → {}", status_of(&r)),
        );
        for _ in 0..200 {
            let _ = TcpStream::connect(&gw);
        }
        // Garbage on the libp2p ports of the peer and the seeder.
        for (who, addr) in [("p1", &p.listen), ("seeder", &seeder.listen)] {
            if let Some(sa) = addr.iter().find_map(|a| tcp_of(a)) {
                for seed in 0..20u64 {
                    if let Ok(mut s) =
                        TcpStream::connect_timeout(&sa.parse()?, Duration::from_secs(2))
                    {
                        let mut junk = vec![0u8; 64 * 1024];
                        Rng::new(seed).fill(&mut junk);
                        if seed % 2 == 0 {
                            // A plausible multistream header first, then junk.
                            junk[..20].copy_from_slice(b"\x13/multistream/1.0.0\n");
                        }
                        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = s.write_all(&junk);
                    }
                }
            } else {
                c.check(false, format!("{who}: no TCP listen address in {addr:?}"));
            }
        }
        c.step(
            "p1 still answers /status after the garbage",
            p.status().map(|_| ()),
        );
        c.step("seeder still answers /status", seeder.status().map(|_| ()));
        let rss_after = p.rss_kib().unwrap_or(0);
        c.check(
            rss_after < 256 * 1024,
            format!("p1's memory stays bounded: RSS {rss_before} KiB → {rss_after} KiB"),
        );
        c.step("p1 still fetches", {
            let o = post("after-garbage.txt", 7, 900);
            h.publish_objects(&seeder, "after", std::slice::from_ref(&o))
                .and_then(|ids| p.fetch_ok(&ids[0], &o.bytes))
        });
        c.finish()
    });
}

#[test]
fn damaged_store_files() {
    run_test("damaged_store_files", |h| {
        let mut c = Checks::new();
        let seeder = h.seeder(Spec::new("seeder", "127.9.0.1"))?;
        let mut p = h.peer(Spec::new("p1", "127.1.0.1").bootstrap(&[seeder.addr()]))?;
        c.step("p1 attached", p.wait_attached(Duration::from_secs(25)));
        let objs = vec![
            image("truncated-chunk.jpg", 21, 3 * CHUNK - 17),
            image("flipped-chunk.jpg", 22, 3 * CHUNK - 18),
            image("garbage-manifest.jpg", 23, 2 * CHUNK + 5),
            post("truncated-inline.txt", 24, 2000),
            image("missing-chunk.jpg", 25, 2 * CHUNK + 6),
        ];
        let ids = h.publish_objects(&seeder, "content", &objs)?;
        for (id, o) in ids.iter().zip(&objs) {
            c.step(&format!("p1 fetches {}", o.name), p.fetch_ok(id, &o.bytes));
        }
        p.kill();
        let dirs: Vec<_> = ids.iter().map(|id| find_object_dir(&p.data, id)).collect();
        let damage = || -> Result<()> {
            let d = |i: usize| {
                dirs[i]
                    .clone()
                    .with_context(|| format!("no directory for {} in p1's store", objs[i].name))
            };
            // The data file cut 1000 bytes into chunk 1 (chunks 1 and 2 lost).
            let f = fs::OpenOptions::new()
                .write(true)
                .open(d(0)?.join("data"))?;
            f.set_len(CHUNK as u64 + 1000)?;
            // One byte of chunk 0 flipped in place.
            let path = d(1)?.join("data");
            let mut b = fs::read(&path)?;
            b[CHUNK / 2] ^= 0x5a;
            fs::write(&path, b)?;
            fs::write(
                d(2)?.join("manifest"),
                b"this is not a manifest \x00\xff\xfe",
            )?;
            let path = d(3)?.join("manifest");
            let b = fs::read(&path)?;
            fs::write(&path, &b[..b.len() / 2])?;
            // Chunk 1 no longer recorded as held.
            forget_stored_chunk(&d(4)?, 1)?;
            // Stray files where the store keeps objects.
            let objects = d(0)?
                .parent()
                .and_then(|p| p.parent())
                .map(|p| p.to_path_buf());
            if let Some(objects) = objects {
                fs::write(objects.join("stray-file"), b"junk")?;
                fs::create_dir_all(objects.join("zz").join("not-an-id"))?;
                fs::write(
                    objects.join("zz").join("not-an-id").join("manifest"),
                    b"junk",
                )?;
            }
            Ok(())
        };
        if c.step("damaging p1's store while it is down", damage())
            .is_none()
        {
            return c.finish();
        }
        if c.step("p1 starts on the damaged store", p.restart())
            .is_none()
        {
            return c.finish();
        }
        for (id, o) in ids.iter().zip(&objs) {
            // Damage may be found only while streaming (after the headers went out): then the
            // response must break off rather than carry bad bytes, and the next request must
            // get the refetched object or a clear error.
            let mut attempts = Vec::new();
            for _ in 0..2 {
                let r = p.get(id);
                let done = matches!(&r, Ok(r) if r.status == 200 && r.body == o.bytes);
                attempts.push(r);
                if done {
                    break;
                }
            }
            let describe = |r: &Result<Response>| match r {
                Ok(r) if r.status == 200 && r.body == o.bytes => {
                    "200 with the original bytes".to_string()
                }
                Ok(r) if r.status == 200 => {
                    format!("200 with WRONG bytes ({} bytes)", r.body.len())
                }
                Ok(r) => format!("{} {:?}", r.status, r.body_text(150)),
                Err(e) => format!("broken response: {e:#}"),
            };
            let never_wrong = attempts
                .iter()
                .all(|r| !matches!(r, Ok(r) if r.status == 200 && r.body != o.bytes));
            let last_ok = match attempts.last() {
                Some(Ok(r)) => (r.status == 200 && r.body == o.bytes) || r.status >= 400,
                _ => false,
            };
            c.check(
                never_wrong && last_ok,
                format!(
                    "{}: never served damaged; {}",
                    o.name,
                    attempts
                        .iter()
                        .map(describe)
                        .collect::<Vec<_>>()
                        .join(", then ")
                ),
            );
        }
        // Range requests must not serve damaged bytes either: fetch again, then compare.
        for (id, o) in ids.iter().zip(&objs) {
            let r = p.http_get(
                &format!("/o/{id}"),
                &[("Range", "bytes=0-99")],
                HTTP_TIMEOUT,
            );
            if let Some(r) = r.ok().filter(|r| r.status == 206) {
                c.check(
                    r.body == o.bytes[..100],
                    format!("{}: Range serves original bytes", o.name),
                );
            }
        }
        c.step("p1 still answers /status", p.status().map(|_| ()));
        c.finish()
    });
}

#[test]
fn bad_config_and_dead_bootstrap() {
    run_test("bad_config_and_dead_bootstrap", |h| {
        let mut c = Checks::new();
        let ip: std::net::IpAddr = "127.2.0.1".parse()?;
        let data = h.path().join("cfg-peer");
        let seeder_data = h.path().join("cfg-seeder");
        let garbage_table = h.path().join("garbage-as.csv");
        fs::write(&garbage_table, "this,is,not\nan,as,table,at,all\n1.2.3.4\n")?;
        let missing = h.path().join("no-such-as-table.csv");
        let empty_table = h.path().join("empty-as.csv");
        fs::write(&empty_table, "")?;
        // A dead bootstrap address (a seeder that was there and is gone).
        let (gone, gone_id) = {
            let s = h.seeder(Spec::new("gone-seeder", "127.3.0.9"))?;
            (s.addr(), s.peer_id.clone())
        };
        // ... and an address where nothing ever listened.
        let never = format!(
            "/ip4/127.3.0.250/tcp/{}/p2p/{gone_id}",
            free_port("127.3.0.250".parse()?)?
        );
        let listen = || format!("/ip4/{ip}/tcp/{}", free_port(ip).unwrap_or(4001));
        let gw = || format!("{ip}:{}", free_port(ip).unwrap_or(7481));
        let peer_args = |over: &[(&str, String)]| -> Vec<OsString> {
            let mut m: Vec<(&str, String)> = vec![
                ("--data", data.display().to_string()),
                ("--listen", listen()),
                ("--gateway", gw()),
                ("--as-table", h.as_table.display().to_string()),
                ("--bootstrap", gone.clone()),
            ];
            for (k, v) in over {
                match m.iter_mut().find(|(mk, _)| mk == k) {
                    Some(e) => e.1 = v.clone(),
                    None => m.push((k, v.clone())),
                }
            }
            let mut a: Vec<OsString> = vec!["run".into()];
            for (k, v) in m {
                a.push(k.into());
                a.push(v.into());
            }
            a
        };
        let seeder_args = |over: &[(&str, String)]| -> Vec<OsString> {
            let mut a: Vec<OsString> = vec![
                "run".into(),
                "--data".into(),
                seeder_data.clone().into(),
                "--listen".into(),
                listen().into(),
            ];
            for (k, v) in over {
                a.push(k.into());
                a.push(v.into());
            }
            a
        };
        let cases: Vec<(&str, bool, Vec<OsString>, String)> = vec![
            (
                "peer: --as-table names no file",
                false,
                peer_args(&[("--as-table", missing.display().to_string())]),
                "no-such-as-table".into(),
            ),
            (
                "peer: --as-table is not CSV of ranges",
                false,
                peer_args(&[("--as-table", garbage_table.display().to_string())]),
                "garbage-as".into(),
            ),
            (
                "peer: --as-table is empty",
                false,
                peer_args(&[("--as-table", empty_table.display().to_string())]),
                "holds no IP ranges".into(),
            ),
            (
                "seeder: --as-table is empty (it would publish an empty map)",
                true,
                seeder_args(&[("--as-table", empty_table.display().to_string())]),
                "holds no IP ranges".into(),
            ),
            (
                "peer: malformed --listen",
                false,
                peer_args(&[("--listen", "/ip4/127.2.0.1/tcp/notaport".into())]),
                "notaport".into(),
            ),
            (
                "peer: malformed --bootstrap",
                false,
                peer_args(&[("--bootstrap", "not-a-multiaddr".into())]),
                "not-a-multiaddr".into(),
            ),
            (
                "peer: malformed --cache-size",
                false,
                peer_args(&[("--cache-size", "12parsecs".into())]),
                "12parsecs".into(),
            ),
            (
                "peer: malformed --gateway",
                false,
                peer_args(&[("--gateway", "localhost:notaport".into())]),
                "notaport".into(),
            ),
            (
                "peer: malformed --promote-after",
                false,
                peer_args(&[("--promote-after", "soon".into())]),
                "soon".into(),
            ),
            (
                "seeder: --as-table names no file",
                true,
                seeder_args(&[("--as-table", missing.display().to_string())]),
                "no-such-as-table".into(),
            ),
            (
                "seeder: --as-table is not CSV of ranges",
                true,
                seeder_args(&[("--as-table", garbage_table.display().to_string())]),
                "garbage-as".into(),
            ),
            (
                "seeder: malformed --listen",
                true,
                seeder_args(&[])
                    .into_iter()
                    .map(|a| {
                        if a.to_string_lossy().starts_with("/ip4/") {
                            "/ip9/what".into()
                        } else {
                            a
                        }
                    })
                    .collect(),
                "/ip9/what".into(),
            ),
            (
                "peer: --upload-limit too low to pass a chunk",
                false,
                peer_args(&[("--upload-limit", "1KiB".into())]),
                "upload-limit".into(),
            ),
            (
                "seeder: malformed --upload-limit",
                true,
                seeder_args(&[("--upload-limit", "fast".into())]),
                "fast".into(),
            ),
            (
                "seeder add: path does not exist",
                true,
                vec![
                    "add".into(),
                    "--data".into(),
                    seeder_data.clone().into(),
                    h.path().join("nothing-here.jpg").into(),
                ],
                "nothing-here".into(),
            ),
        ];
        for (what, is_seeder, args, mention) in cases {
            let bin = if is_seeder {
                &h.bins.seeder
            } else {
                &h.bins.nearcast
            };
            match run_cmd(bin, &args, &[], Duration::from_secs(20)) {
                Ok(out) => {
                    c.check(
                        !out.status.success()
                            && clear_error(&out.stderr)
                            && out.stderr.to_lowercase().contains(&mention.to_lowercase()),
                        format!(
                            "{what}: exit {} in {:?}, message {:?} (must name {mention:?})",
                            out.status,
                            out.elapsed,
                            out.stderr.trim().chars().take(300).collect::<String>()
                        ),
                    );
                }
                Err(e) => c.check(false, format!("{what}: {e:#}")),
            }
        }

        for (name, boot) in [("dead-boot", gone.as_str()), ("never-boot", never.as_str())] {
            let p = match h.peer(
                Spec::new(
                    name,
                    if name == "dead-boot" {
                        "127.3.0.1"
                    } else {
                        "127.3.0.2"
                    },
                )
                .bootstrap(&[boot.to_string()]),
            ) {
                Ok(p) => p,
                Err(e) => {
                    c.check(
                        false,
                        format!("{name}: peer with a dead bootstrap address starts: {e:#}"),
                    );
                    continue;
                }
            };
            c.check(
                true,
                format!("{name}: peer with a dead bootstrap address starts"),
            );
            let warned = wait_for("a warning in the log", Duration::from_secs(15), || {
                let log = p.log_text();
                log.lines()
                    .find(|l| l.contains("WARN") || l.to_lowercase().contains("warn"))
                    .map(str::to_string)
            });
            c.step(
                &format!("{name}: logs a warning"),
                warned.map(|l| eprintln!("     {l}")),
            );
            let id = unknown_id(7);
            let out = h.nearcast(
                &[
                    "get",
                    &id,
                    "--gateway",
                    p.gateway.as_deref().unwrap_or_default(),
                ],
                FAIL_BOUND + Duration::from_secs(15),
            );
            match out {
                Ok(out) => c.check(
                    !out.status.success() && clear_error(&out.stderr) && out.elapsed <= FAIL_BOUND,
                    format!(
                        "{name}: a fetch fails in {:?} with {:?}",
                        out.elapsed,
                        out.stderr.trim()
                    ),
                ),
                Err(e) => c.check(false, format!("{name}: fetch: {e:#}")),
            }
            c.step(
                &format!("{name}: still answers /status"),
                p.status().map(|_| ()),
            );
        }
        // A second daemon on a running one's data directory, or on its TCP port: refused with a
        // clear error (libp2p listens with SO_REUSEPORT, so the port would otherwise be shared).
        let running =
            h.peer(Spec::new("in-use", "127.3.0.3").bootstrap(std::slice::from_ref(&gone)))?;
        let other_ip: std::net::IpAddr = "127.3.0.4".parse()?;
        let fresh = h.path().join("in-use-second");
        let taken_port = tcp_of(&running.addr())
            .and_then(|a| {
                a.split_once(':')
                    .map(|(ip, port)| format!("/ip4/{ip}/tcp/{port}"))
            })
            .context("the running peer's TCP address")?;
        let second = |data: &std::path::Path, listen: String| -> Vec<OsString> {
            [
                "run".into(),
                "--data".into(),
                data.as_os_str().to_owned(),
                "--listen".into(),
                listen.into(),
                "--gateway".into(),
                format!("{other_ip}:{}", free_port(other_ip).unwrap_or(7482)).into(),
                "--bootstrap".into(),
                gone.clone().into(),
            ]
            .to_vec()
        };
        let own_listen = format!(
            "/ip4/{other_ip}/tcp/{}",
            free_port(other_ip).unwrap_or(4002)
        );
        for (what, args, mention) in [
            (
                "second daemon on a data directory in use",
                second(&running.data, own_listen),
                "in use",
            ),
            (
                "second daemon on a TCP port in use",
                second(&fresh, taken_port.clone()),
                "already in use",
            ),
        ] {
            match run_cmd(&h.bins.nearcast, &args, &[], Duration::from_secs(20)) {
                Ok(out) => c.check(
                    !out.status.success()
                        && clear_error(&out.stderr)
                        && out.stderr.contains(mention)
                        && out.elapsed < Duration::from_secs(10),
                    format!(
                        "{what}: exit {} in {:?}, message {:?}",
                        out.status,
                        out.elapsed,
                        out.stderr.trim().chars().take(300).collect::<String>()
                    ),
                ),
                Err(e) => c.check(false, format!("{what}: {e:#}")),
            }
        }
        c.step(
            "the running daemon still answers /status",
            running.status().map(|_| ()),
        );
        let _ = seeder_data;
        c.finish()
    });
}

fn clear_error(stderr: &str) -> bool {
    let s = stderr.trim();
    !s.is_empty() && !s.contains("panicked") && !s.contains("RUST_BACKTRACE")
}

/// `IP:PORT` of a `/ip4/IP/tcp/PORT/...` multiaddr.
fn tcp_of(ma: &str) -> Option<String> {
    let parts: Vec<&str> = ma.split('/').collect();
    let ip = parts
        .iter()
        .position(|p| *p == "ip4")
        .and_then(|i| parts.get(i + 1))?;
    let port = parts
        .iter()
        .position(|p| *p == "tcp")
        .and_then(|i| parts.get(i + 1))?;
    Some(format!("{ip}:{port}"))
}

fn status_of(r: &Result<Response>) -> String {
    match r {
        Ok(r) => r.status.to_string(),
        Err(e) => format!("connection closed ({e:#})"),
    }
}
