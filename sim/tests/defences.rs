//! What the defences buy in a Skype-2007 mass restart (90% of online peers restart within five
//! minutes) on supernodes with little headroom: with admission control, jittered back-off and
//! brownout, fetches keep succeeding and every live leaf is attached again within two minutes
//! of the fault's end; without them, overloaded supernodes drop their children, the children
//! retry at once, and the overlay stays short of its attachments.

use nearcast_sim::report::{BaselineSummary, FaultReport};
use nearcast_sim::run::run;
use nearcast_sim::scenario::Scenario;

fn mass_restart(name: &str) -> BaselineSummary {
    let mut sc = Scenario::load(name).expect("built-in scenario");
    sc.peers = 2_000;
    sc.warmup_min = 12.0;
    sc.duration_min = 35.0;
    sc.baselines = vec!["nearcast".into()];
    let out = run(&sc, 1, false).expect("run");
    out.summary.baselines["nearcast"].clone()
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
