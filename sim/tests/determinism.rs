//! Claim: the same scenario, variant and seed replay the same run, event for event.

use sim::scenario::Scenario;
use sim::{Sim, Variant};

fn small() -> Scenario {
    let mut s = Scenario::named("coral-flash-crowd").expect("preset");
    s.nodes = 40;
    s.join_secs = 20.0;
    s.warmup_secs = 60.0;
    s.duration_secs = 120.0;
    s.loss = 0.02;
    s.jitter_ms = 3.0;
    s
}

fn trace(seed: u64) -> (u64, u64, u64) {
    let mut sim = Sim::new(small(), Variant::Coral, seed);
    sim.run(&mut |_, _, _| {});
    let report = sim::run_variants(
        &small(),
        &sim::RunOptions {
            seed,
            variants: vec![Variant::Coral],
            wire: true,
            threads: 1,
        },
        &|_, _, _, _| {},
    );
    (sim.trace_hash(), sim.events(), report.events)
}

#[test]
fn same_seed_replays_the_same_event_trace() {
    let (hash, events, wired_events) = trace(7);
    assert!(events > 10_000, "a real run ({events} events)");
    assert_eq!(trace(7), (hash, events, wired_events));
    // Round-tripping every message through the wire format changes nothing.
    assert_eq!(events, wired_events);
    assert_ne!(trace(8).0, hash, "another seed, another run");
}

#[test]
fn variants_run_side_by_side_give_what_they_give_one_at_a_time() {
    let report = |threads| {
        let r = sim::run_variants(
            &small(),
            &sim::RunOptions {
                seed: 3,
                variants: Variant::ALL.to_vec(),
                wire: false,
                threads,
            },
            &|_, _, _, _| {},
        );
        (r.events, serde_json::to_string(&r.variants).expect("json"))
    };
    let (events, variants) = report(1);
    assert!(variants.contains("\"coral\"") && variants.contains("\"none\""));
    assert_eq!(report(3), (events, variants));
}
