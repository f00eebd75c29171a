//! Claim: with 10 % of nodes leaving per hour (and coming back), gets for objects some live
//! proxy caches still succeed more than 99 % of the time.

use sim::scenario::Scenario;
use sim::{RunOptions, Variant, run_variants};

#[test]
fn gets_succeed_under_churn() {
    let mut scenario = Scenario::named("churn").expect("preset");
    // Half an hour of the preset: about 25 of its 500 nodes fail and come back meanwhile.
    scenario.duration_secs = 1800.0;
    let report = run_variants(
        &scenario,
        &RunOptions {
            seed: 5,
            variants: vec![Variant::Coral],
            wire: false,
            threads: RunOptions::default_threads(),
        },
        &|_, _, _, _| {},
    );
    let coral = &report.variants["coral"];
    assert!(coral.failed_requests > 0, "nodes did fail during the run");
    assert!(
        coral.lookup_success > 0.99,
        "lookup success {:.4} under churn",
        coral.lookup_success
    );
}
