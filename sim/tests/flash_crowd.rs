//! Claims on a flash crowd over 1,000 nodes, coral against flat Kademlia on the same seed:
//! - sloppy storage spreads the hot key: coral's most loaded node serves at most a fifth of
//!   flat's (which stores at, and so is asked at, the same k nodes by everyone);
//! - clustering keeps lookups near: coral's median lookup takes at most half of flat's;
//! - the origin serves each object no more often than there are level-1 clusters;
//! - nodes find their neighbours (Coral's locality hints): at most 4 % of nodes are alone in
//!   their level-1 or level-2 cluster (without the hints, 5.5 % and 8.1 % were).

use sim::scenario::Scenario;
use sim::{RunOptions, Variant, run_variants};

#[test]
fn coral_spreads_the_hot_key_and_answers_nearby() {
    let mut scenario = Scenario::named("flash-crowd").expect("preset");
    scenario.nodes = 1000;
    // The first ten minutes: the ramp to 50 req/s per 1,000 nodes, when every proxy fetches
    // and announces the hot object.
    scenario.duration_secs = 600.0;
    let report = run_variants(
        &scenario,
        &RunOptions {
            seed: 3,
            variants: vec![Variant::Coral, Variant::Flat],
            wire: false,
            threads: RunOptions::default_threads(),
        },
        &|_, _, _, _| {},
    );
    let coral = &report.variants["coral"];
    let flat = &report.variants["flat"];
    assert!(
        coral.hot_key_load.max * 5.0 <= flat.hot_key_load.max,
        "hot-key max load: coral {} flat {}",
        coral.hot_key_load.max,
        flat.hot_key_load.max
    );
    assert!(
        coral.lookup_ms.p50 * 2.0 <= flat.lookup_ms.p50,
        "median lookup: coral {} ms flat {} ms",
        coral.lookup_ms.p50,
        flat.lookup_ms.p50
    );
    let level1_clusters = coral.clusters_per_level[1] as u64;
    assert!(
        coral.origin_fetches_max_per_object <= level1_clusters,
        "an object fetched {} times from the origin, {} level-1 clusters",
        coral.origin_fetches_max_per_object,
        level1_clusters
    );
    for level in [1, 2] {
        let alone = coral.alone_per_level[level];
        assert!(
            alone * 25 <= scenario.nodes,
            "{alone} of {} nodes alone at level {level}",
            scenario.nodes
        );
    }
    assert!(
        coral.lookup_success > 0.99,
        "lookup success {}",
        coral.lookup_success
    );
}
