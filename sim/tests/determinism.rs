//! Claim: the same scenario, variant and seed replay the same run, event for event.

use sim::scenario::Scenario;
use sim::{Sim, Variant};

/// Preset `name` with `nodes` nodes joining over 20 s, `warmup` and `duration` seconds, and
/// a lossy, jittery network.
fn shortened(name: &str, nodes: usize, warmup: f64, duration: f64) -> Scenario {
    let mut s = Scenario::named(name).expect("preset");
    s.nodes = nodes;
    s.join_secs = 20.0;
    s.warmup_secs = warmup;
    s.duration_secs = duration;
    s.loss = 0.02;
    s.jitter_ms = 3.0;
    s
}

fn small() -> Scenario {
    shortened("coral-flash-crowd", 40, 60.0, 120.0)
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

/// A shortened preset with every kind of event: faults that end windows, proxy logic that
/// stops hosts inside them, jitter and loss drawn when their messages are merged.
fn faulty(name: &str) -> Scenario {
    let mut s = shortened(name, 300, 40.0, 240.0);
    s.churn = sim::scenario::Churn {
        mean_session_secs: 600.0,
        mean_downtime_secs: 60.0,
    };
    s.partition = Some(sim::scenario::Partition {
        at_secs: 60.0,
        heal_secs: 120.0,
    });
    s.rollout = Some(sim::scenario::Rollout {
        start_secs: 150.0,
        end_secs: 230.0,
    });
    s
}

#[test]
fn hosts_shared_among_threads_run_the_same_run_as_on_one() {
    for name in ["flash-crowd", "coral-flash-crowd"] {
        let run = |workers| {
            let mut sim = Sim::new(faulty(name), Variant::Coral, 5).with_workers(workers);
            sim.run(&mut |_, _, _| {});
            let report = sim.report();
            let (windows, shared) = sim.windows();
            let outcome = (
                sim.trace_hash(),
                sim.events(),
                serde_json::to_string(&report).expect("json"),
            );
            (outcome, windows, shared)
        };
        let (one, windows, shared) = run(1);
        assert!(windows > 1_000, "{name}: {windows} windows");
        assert_eq!(shared, 0, "one worker shares nothing");
        let (two, _, shared_by_two) = run(2);
        // Small networks have small windows; enough of them are still shared.
        assert!(
            shared_by_two > 100,
            "{name}: {shared_by_two} of {windows} windows shared"
        );
        assert_eq!(two, one, "{name}: two workers");
        let (three, _, _) = run(3);
        assert_eq!(three, one, "{name}: three workers");
    }
}
