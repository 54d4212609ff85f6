//! A Skype-2010 crash wave (a quarter of the supernodes down for 30 minutes) loses no supernode
//! beyond the injected ones, keeps fetches succeeding and leaves attached, and promotion
//! replaces the lost supernodes within minutes.
//!
//! What the defences buy in a Skype-2007 mass restart (90% of online peers restart within five
//! minutes) on supernodes with little headroom: with admission control, jittered back-off and
//! brownout, fetches keep succeeding and every live leaf is attached again within two minutes
//! of the fault's end; without them, overloaded supernodes drop their children, the children
//! retry at once, and the overlay stays short of its attachments.

use nearcast_sim::report::{BaselineSummary, FaultReport};
use nearcast_sim::run::run;
use nearcast_sim::scenario::Scenario;

/// 3,000 peers: at 2,000 the overlay without defences happens to re-attach too (its few
/// supernodes and seeders absorb the restart), so there is no collapse to show.
fn mass_restart(name: &str) -> BaselineSummary {
    let mut sc = Scenario::load(name).expect("built-in scenario");
    sc.peers = 3_000;
    sc.warmup_min = 12.0;
    sc.duration_min = 35.0;
    sc.baselines = vec!["nearcast".into()];
    let out = run(&sc, 1, false).expect("run");
    out.summary.baselines["nearcast"].clone()
}

#[test]
fn a_supernode_crash_wave_does_not_cascade() {
    let mut sc = Scenario::load("skype-2010").expect("built-in scenario");
    sc.peers = 2_000;
    sc.warmup_min = 12.0;
    sc.duration_min = 55.0;
    sc.baselines = vec!["nearcast".into()];
    let out = run(&sc, 1, false).expect("run");
    let s = &out.summary.baselines["nearcast"];
    let f = only_fault(s);
    assert!(f.min_success >= 0.99, "lowest success {}", f.min_success);
    let reattach = f.reattach_s.expect("leaves re-attach");
    assert!(reattach <= 120.0, "re-attach took {reattach} s");

    let (start, end) = (f.start_min, f.end_min);
    let supernodes = |from: f64, to: f64| {
        out.rows
            .iter()
            .filter(move |r| r.t_min >= from && r.t_min < to)
            .map(|r| r.supernodes)
    };
    let before = supernodes(start - 1.0, start)
        .next_back()
        .expect("a sample before");
    let lowest = supernodes(start, end)
        .min()
        .expect("samples during the fault");
    let survivors = (before as f64 * 0.75).floor() as u64;
    assert!(
        lowest >= survivors,
        "supernodes fell to {lowest} from {before}: more than the injected quarter"
    );
    let later = supernodes(start + 2.0, start + 5.0).max().unwrap_or(0);
    assert!(
        later as f64 >= 0.9 * before as f64,
        "supernodes {later} within 5 minutes of the crash, {before} before"
    );
}

fn only_fault(s: &BaselineSummary) -> &FaultReport {
    assert_eq!(s.faults.len(), 1, "one fault in the scenario");
    &s.faults[0]
}

#[test]
fn defences_keep_the_overlay_through_a_mass_restart() {
    let defended = mass_restart("skype-2007");
    let bare = mass_restart("skype-2007-no-defences");
    let (fd, fb) = (only_fault(&defended), only_fault(&bare));

    assert!(
        fd.min_success >= 0.99,
        "defended: lowest success {}",
        fd.min_success
    );
    assert!(
        defended.fetch_success >= 0.999,
        "defended: success {}",
        defended.fetch_success
    );
    let reattach = fd.reattach_s.expect("defended: leaves re-attach");
    assert!(reattach <= 120.0, "defended: re-attach took {reattach} s");

    // Without the defences the leaves do not all come back, and fewer are attached on average.
    assert!(
        fb.reattach_s.is_none_or(|s| s > 2.0 * reattach),
        "without defences: re-attach {:?} against {reattach} s",
        fb.reattach_s
    );
    assert!(
        bare.supernodes.attached_leaves + 0.03 < defended.supernodes.attached_leaves,
        "attached leaves without defences {} against {}",
        bare.supernodes.attached_leaves,
        defended.supernodes.attached_leaves
    );
    assert!(
        bare.children_dropped_overload > 0 && defended.children_dropped_overload == 0,
        "children dropped for overload: {} without, {} with defences",
        bare.children_dropped_overload,
        defended.children_dropped_overload
    );
}
