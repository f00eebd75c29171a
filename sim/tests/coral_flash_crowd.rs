//! Claims from the NSDI 2004 flash-crowd experiment (166 proxies, 12 files of 41 KB behind a
//! 384 kbit/s origin): Coral fetched each file about once from the origin (14-15 fetches in
//! the paper), and served most peer transfers within level 2, fewer at level 1, fewest at
//! level 0.

use sim::scenario::Scenario;
use sim::{RunOptions, Variant, run_variants};

#[test]
fn coral_shields_the_origin_and_serves_nearby_first() {
    let scenario = Scenario::named("coral-flash-crowd").expect("preset");
    let report = run_variants(
        &scenario,
        &RunOptions {
            seed: 1,
            variants: vec![Variant::Coral, Variant::None],
            wire: false,
            threads: RunOptions::default_threads(),
        },
        &|_, _, _, _| {},
    );
    let coral = &report.variants["coral"];
    let none = &report.variants["none"];
    assert!(coral.requests > 100_000, "{} requests", coral.requests);
    // At most 14 origin fetches for 12 files (the paper saw 14-15; one per file is the floor).
    assert!(
        (12..=14).contains(&coral.origin_fetches),
        "coral fetched {} times from the origin",
        coral.origin_fetches
    );
    // Without cooperation every proxy fetches every file: 166 x 12.
    assert_eq!(none.origin_fetches, 166 * 12);
    assert!(none.origin_fetches > 100 * coral.origin_fetches);
    let s = &coral.served;
    assert!(
        s.level2 > s.level1 && s.level1 > s.level0,
        "served by level 2/1/0: {:.4} / {:.4} / {:.4}",
        s.level2,
        s.level1,
        s.level0
    );
    // Every node starts alone in clusters of its own: for 166 nodes to end in fewer level-1
    // clusters, at least the difference moved (the report counts every move).
    let clusters = coral.clusters_per_level[1];
    assert!(clusters < 166, "{clusters} level-1 clusters");
    assert!(coral.cluster_changes >= (166 - clusters) as u64);
    assert_eq!(none.cluster_changes, 0);
    // The origin, at 384 kbit/s, makes clients of `none` wait minutes; coral's, milliseconds.
    assert!(coral.client_ms.p99 * 100.0 < none.client_ms.p99);
}
