//! The targets on a small default run: full nearcast's seeder egress within 1.5x the
//! compulsory-miss bound and far below seeder-only, at least 90% of peer-served bytes from the
//! requester's AS when a copy existed there, and fetch success of at least 99.9%.

use nearcast_sim::run::run;
use nearcast_sim::scenario::Scenario;

#[test]
fn default_scenario_meets_targets() {
    let mut sc = Scenario::load("default").expect("built-in default");
    sc.peers = 3_000;
    sc.warmup_min = 12.0;
    sc.duration_min = 8.0;
    sc.baselines = vec!["seeder_only".into(), "nearcast".into()];
    let out = run(&sc, 1, false).expect("run");
    let n = &out.summary.baselines["nearcast"];
    let s = &out.summary.baselines["seeder_only"];
    assert!(
        n.fetch_success >= 0.999,
        "fetch success {}",
        n.fetch_success
    );
    assert!(
        (n.seeder_bytes as f64) <= 1.5 * n.compulsory_miss_bytes as f64,
        "seeder egress {} vs bound {}",
        n.seeder_bytes,
        n.compulsory_miss_bytes
    );
    assert!(
        n.seeder_bytes * 4 < s.seeder_bytes,
        "not far below seeder-only"
    );
    assert!(
        n.same_as_when_available >= 0.9,
        "same AS when available {}",
        n.same_as_when_available
    );
}

#[test]
fn nearcast_offloads_most_bytes_and_succeeds() {
    let mut sc = Scenario::load("default").expect("built-in default");
    sc.peers = 1_500;
    sc.warmup_min = 6.0;
    sc.duration_min = 4.0;
    sc.baselines = vec!["seeder_only".into(), "nearcast".into()];
    let out = run(&sc, 3, false).expect("run");
    let n = &out.summary.baselines["nearcast"];
    let s = &out.summary.baselines["seeder_only"];
    assert!(n.fetch_success >= 0.99, "fetch success {}", n.fetch_success);
    assert!(
        s.fetch_success >= 0.99,
        "seeder-only success {}",
        s.fetch_success
    );
    assert!(
        n.seeder_bytes * 2 < s.seeder_bytes,
        "nearcast {} vs seeder-only {}",
        n.seeder_bytes,
        s.seeder_bytes
    );
    assert_eq!(
        s.peer_bytes.same_as + s.peer_bytes.other_as + s.peer_bytes.same_prefix,
        0
    );
}
