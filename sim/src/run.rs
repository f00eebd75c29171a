//! Running several variants of one scenario on the same seed, side by side.

use std::collections::BTreeMap;
use std::time::Instant as WallClock;

use crate::engine::{Sim, Variant};
use crate::metrics::{Report, peak_rss_mb};
use crate::queue::Micros;
use crate::scenario::Scenario;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Seed of every variant's run.
    pub seed: u64,
    /// Variants, run one after the other on the same seed.
    pub variants: Vec<Variant>,
    /// Round-trip every DHT message through the wire format.
    pub wire: bool,
}

/// Runs each variant of `scenario` and gathers the report. `progress` is called now and then
/// with (variant, virtual now, virtual end, events so far).
pub fn run_variants(
    scenario: &Scenario,
    options: &RunOptions,
    progress: &mut dyn FnMut(Variant, Micros, Micros, u64),
) -> Report {
    let started = WallClock::now();
    let mut events = 0;
    let mut variants = BTreeMap::new();
    for &variant in &options.variants {
        let mut sim = Sim::new(scenario.clone(), variant, options.seed).with_wire(options.wire);
        sim.run(&mut |now, end, ev| progress(variant, now, end, ev));
        events += sim.events();
        let distances = sim.hot_key_distances();
        let mut report = sim.metrics.report(&distances);
        report.clusters_per_level = sim.clusters_per_level();
        (report.dht_requests, report.cluster_changes) = sim.dht_totals();
        variants.insert(variant.name().to_string(), report);
    }
    let wall_s = started.elapsed().as_secs_f64();
    Report {
        scenario: scenario.name.to_string(),
        seed: options.seed,
        nodes: scenario.nodes,
        events,
        wall_s,
        events_per_s: if wall_s > 0.0 {
            events as f64 / wall_s
        } else {
            0.0
        },
        peak_rss_mb: peak_rss_mb(),
        variants,
        parameters: scenario.clone(),
    }
}
