//! The `nearcast` binary refuses bad configuration with a clear message and a non-zero exit,
//! before touching the network.

use std::process::Command;

fn nearcast(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nearcast"))
        .args(args)
        .output()
        .expect("run nearcast");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn run_args<'a>(data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "--data",
        data,
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--gateway",
        "127.0.0.1:0",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let data = data.to_str().expect("utf8");
    let boot = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR4eLbjJUvmr84J4Kevmfw9PbyWoDTcRneSSiMb59kAmF";

    let (ok, err) = nearcast(&run_args(
        data,
        &["--bootstrap", boot, "--as-table", "/nonexistent/as.csv"],
    ));
    assert!(!ok);
    assert!(err.contains("cannot open AS table"), "{err}");

    let (ok, err) = nearcast(&run_args(data, &["--bootstrap", "/ip4/127.0.0.1/tcp/1"]));
    assert!(!ok);
    assert!(err.contains("/p2p/PEER_ID"), "{err}");

    let (ok, err) = nearcast(&run_args(data, &["--bootstrap", "not-a-multiaddr"]));
    assert!(!ok);
    assert!(err.contains("invalid value"), "{err}");

    let (ok, err) = nearcast(&run_args(
        data,
        &["--bootstrap", boot, "--cache-size", "lots"],
    ));
    assert!(!ok);
    assert!(err.contains("invalid size"), "{err}");

    let bad_table = dir.path().join("bad.csv");
    std::fs::write(&bad_table, "127.0.0.1,banana,12\n").expect("write");
    let (ok, err) = nearcast(&run_args(
        data,
        &[
            "--bootstrap",
            boot,
            "--as-table",
            bad_table.to_str().expect("utf8"),
        ],
    ));
    assert!(!ok);
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn get_without_daemon_fails_fast_with_a_hint() {
    let t = std::time::Instant::now();
    let (ok, err) = nearcast(&[
        "get",
        "TV3oqAtiT4QeexjkzdMMpwD532o2HehQPZUQvcJeEiT",
        "--gateway",
        "127.0.0.1:9",
    ]);
    assert!(!ok);
    assert!(err.contains("is `nearcast run` running?"), "{err}");
    assert!(t.elapsed().as_secs() < 10);
}
