//! Same scenario and seed give a byte-identical summary, whether the baselines run one after
//! another or at once; another seed gives a different one.

use nearcast_sim::run::run_jobs;
use nearcast_sim::scenario::Scenario;

fn small() -> Scenario {
    let mut sc = Scenario::load("default").expect("built-in default");
    sc.peers = 1_000;
    sc.warmup_min = 2.0;
    sc.duration_min = 4.0;
    sc
}

/// The summary and time series of a run with `jobs` baselines at once.
fn summary(sc: &Scenario, seed: u64, jobs: usize) -> (String, String) {
    let out = run_jobs(sc, seed, false, jobs).expect("run");
    let json = serde_json::to_string_pretty(&out.summary).expect("json");
    (json, nearcast_sim::report::csv(&out.rows))
}

#[test]
fn same_seed_same_summary_other_seed_differs() {
    let sc = small();
    let (a, a_rows) = summary(&sc, 7, 1);
    let (b, b_rows) = summary(&sc, 7, 3);
    assert_eq!(a, b, "two runs with one seed differ");
    assert_eq!(
        a_rows, b_rows,
        "two runs with one seed have different time series"
    );
    let (c, _) = summary(&sc, 8, 2);
    assert_ne!(a, c, "another seed gave the same summary");
    let v: serde_json::Value = serde_json::from_str(&a).expect("valid json");
    for name in ["seeder_only", "random_swarm", "prefix_only", "nearcast"] {
        let b = &v["baselines"][name];
        for key in [
            "fetch_success",
            "seeder_bytes",
            "compulsory_miss_bytes",
            "same_as_when_available",
        ] {
            assert!(b[key].is_number(), "{name}.{key} missing");
        }
        assert!(b["peer_bytes"]["same_as"].is_number());
        assert!(b["ttfb_ms"]["p99"].is_number());
    }
    assert_eq!(v["peers"], 1000);
}

#[test]
fn every_builtin_scenario_parses() {
    for (name, _) in nearcast_sim::scenario::BUILTIN {
        let sc = Scenario::load(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(!sc.baselines.is_empty());
    }
    assert!(Scenario::parse("peers = 5").is_err());
    assert!(Scenario::parse("bogus = 1").is_err());
    assert!(Scenario::load("/nonexistent/scenario.toml").is_err());
}
