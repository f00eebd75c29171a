//! Running several variants of one scenario on the same seed, side by side.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Variants, each on the same seed.
    pub variants: Vec<Variant>,
    /// Round-trip every DHT message through the wire format.
    pub wire: bool,
    /// Threads to use (at least 1): variants run at once, each on its own thread, and the
    /// threads left over share each run's parallel windows. The results are the same for
    /// any count; the peak memory is that of the variants running together.
    pub threads: usize,
}

impl RunOptions {
    /// The variants to run, each once (reports are keyed by variant), in the order given.
    pub fn distinct_variants(&self) -> Vec<Variant> {
        let mut seen = std::collections::BTreeSet::new();
        self.variants
            .iter()
            .copied()
            .filter(|v| seen.insert(*v))
            .collect()
    }

    /// One thread per core (`run_variants` uses no more than there are variants).
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Runs each variant of `scenario` and gathers the report. `progress` is called now and then
/// with (variant, virtual now, virtual end, events so far), from the thread running it.
pub fn run_variants(
    scenario: &Scenario,
    options: &RunOptions,
    progress: &(dyn Fn(Variant, Micros, Micros, u64) + Sync),
) -> Report {
    let started = WallClock::now();
    let variants = options.distinct_variants();
    let next = AtomicUsize::new(0);
    let done = Mutex::new(BTreeMap::new());
    let threads = options.threads.clamp(1, variants.len().max(1));
    let workers = (options.threads / threads).max(1);
    let run_next = || {
        while let Some(&variant) = variants.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut sim = Sim::new(scenario.clone(), variant, options.seed)
                .with_wire(options.wire)
                .with_workers(workers);
            sim.run(&mut |now, end, ev| progress(variant, now, end, ev));
            let report = sim.report();
            let events = sim.events();
            drop(sim);
            done.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(variant, (events, report));
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(run_next);
        }
        run_next();
    });
    let done = done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let events = done.values().map(|(e, _)| e).sum();
    let variants = done
        .into_iter()
        .map(|(v, (_, report))| (v.name().to_string(), report))
        .collect();
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
