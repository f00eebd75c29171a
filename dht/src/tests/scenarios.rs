//! Each test states the claim it checks. Seeds are fixed; virtual time only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::net::{Latency, Net};
use crate::{Config, Event, Found, Key, Level, Placement, QueryError, QueryId, Value};

const REGIONS: usize = 3;
/// Base RTT between regions in ms: within a region 2 ms, across 90 to 160 ms.
const BASE_RTT_MS: [[u64; REGIONS]; REGIONS] = [[2, 110, 160], [110, 2, 90], [160, 90, 2]];

fn region(i: usize) -> usize {
    i % REGIONS
}

/// RTT = base(region a, region b) + access delay of each end (0.5 to 4 ms): every pair in a
/// region is under 20 ms, every pair across regions over 60 ms.
fn regional_latency(n: usize, seed: u64) -> Latency {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xacce55);
    let access: Vec<Duration> = (0..n)
        .map(|_| Duration::from_micros(rng.random_range(500..4000)))
        .collect();
    Box::new(move |a, b| {
        Duration::from_millis(BASE_RTT_MS[region(a)][region(b)]) + access[a] + access[b]
    })
}

/// `n` nodes joining one after another (each through a random earlier node), then left to
/// settle for `settle` of virtual time.
fn joined(n: usize, seed: u64, settle: Duration) -> Net {
    let mut net = Net::new(n, seed, &Config::default(), regional_latency(n, seed));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 1..n {
        let via = rng.random_range(0..i);
        net.bootstrap(i, via);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(settle);
    net
}

fn value(net: &Net, i: usize) -> Value {
    Value {
        holder: net.contact(i),
        pending: false,
    }
}

fn put(net: &mut Net, i: usize, key: Key) -> QueryId {
    let v = value(net, i);
    net.with(i, |n, now| n.put(now, key, v, Duration::from_secs(3600)))
}

fn get(net: &mut Net, i: usize, key: Key) -> QueryId {
    net.with(i, |n, now| n.get(now, key))
}

fn get_result(net: &Net, i: usize, q: QueryId) -> Option<Result<Found, QueryError>> {
    net.events[i].iter().find_map(|e| match e {
        Event::GetDone { query, result, .. } if *query == q => Some(result.clone()),
        _ => None,
    })
}

fn put_result(net: &Net, i: usize, q: QueryId) -> Option<Result<Placement, QueryError>> {
    net.events[i].iter().find_map(|e| match e {
        Event::PutDone { query, result, .. } if *query == q => Some(result.clone()),
        _ => None,
    })
}

/// Runs until every listed get has finished; returns their results.
fn await_gets(net: &mut Net, gets: &[(usize, QueryId)]) -> Vec<Result<Found, QueryError>> {
    let done = net.run_until(Duration::from_secs(60), |net| {
        gets.iter().all(|(i, q)| get_result(net, *i, *q).is_some())
    });
    assert!(done, "gets did not finish within a minute of virtual time");
    gets.iter()
        .filter_map(|(i, q)| get_result(net, *i, *q))
        .collect()
}

fn await_puts(net: &mut Net, puts: &[(usize, QueryId)]) -> Vec<Placement> {
    let done = net.run_until(Duration::from_secs(60), |net| {
        puts.iter().all(|(i, q)| put_result(net, *i, *q).is_some())
    });
    assert!(done, "puts did not finish within a minute of virtual time");
    puts.iter()
        .map(|(i, q)| match put_result(net, *i, *q) {
            Some(Ok(p)) => p,
            other => panic!("put from {i} failed: {other:?}"),
        })
        .collect()
}

#[test]
fn two_nodes_learn_each_other() {
    let mut net = Net::new(
        2,
        1,
        &Config::default(),
        Box::new(|_, _| Duration::from_millis(10)),
    );
    net.bootstrap(1, 0);
    net.run_for(Duration::from_secs(1));
    assert!(
        net.events[1]
            .iter()
            .any(|e| matches!(e, Event::BootstrapDone { known: 1, .. }))
    );
    let now = net.now;
    for (a, b) in [(0, 1), (1, 0)] {
        let snap = net.nodes[a].snapshot(now);
        let level0: Vec<_> = snap.levels[0]
            .buckets
            .iter()
            .flat_map(|(_, ps)| ps)
            .collect();
        assert_eq!(level0.len(), 1);
        assert_eq!(level0[0].contact, net.contact(b));
    }
    // The node that asked measured the round trip of its own request.
    let snap = net.nodes[1].snapshot(now);
    assert_eq!(
        snap.levels[0].buckets[0].1[0].min_rtt,
        Some(Duration::from_millis(10))
    );
}

#[test]
fn regions_become_level2_clusters_and_stay_apart() {
    // Twenty minutes: late merges wait out the nodes' holds after their moves (at most ten).
    let mut net = joined(150, 11, Duration::from_secs(1200));
    // Settled clusters stay put: no node moves in ten more minutes (hysteresis, total order).
    let changes = |net: &Net| -> u64 {
        net.nodes
            .iter()
            .map(|n| n.stats(net.now).cluster_changes)
            .sum()
    };
    let settled = changes(&net);
    net.run_for(Duration::from_secs(600));
    assert_eq!(changes(&net), settled, "nodes kept moving between clusters");
    let now = net.now;
    let mut by_region: BTreeMap<usize, BTreeMap<u64, usize>> = BTreeMap::new();
    let mut level1: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for (i, node) in net.nodes.iter().enumerate() {
        let snap = node.snapshot(now);
        *by_region
            .entry(region(i))
            .or_default()
            .entry(snap.levels[2].cluster.0)
            .or_default() += 1;
        level1
            .entry(region(i))
            .or_default()
            .insert(snap.levels[1].cluster.0);
    }
    let mut seen = BTreeSet::new();
    for (r, clusters) in &by_region {
        assert_eq!(
            clusters.len(),
            1,
            "region {r} split into level-2 clusters {clusters:?}"
        );
        let id = *clusters.keys().next().unwrap();
        assert!(seen.insert(id), "two regions share level-2 cluster {id}");
        assert_eq!(level1[r].len(), 1, "region {r} split at level 1");
    }
    // Each node's level-2 table holds only nodes of its own region.
    for (i, node) in net.nodes.iter().enumerate() {
        let snap = node.snapshot(now);
        for (_, peers) in &snap.levels[2].buckets {
            for p in peers {
                let j = u32::from_be_bytes(p.contact.addr.as_bytes().try_into().unwrap()) as usize;
                assert_eq!(region(j), region(i), "node {i} routes to {j} at level 2");
            }
        }
        assert!(
            snap.levels[2].size_estimate >= 25,
            "node {i} sees a tiny cluster"
        );
    }
}

#[test]
fn every_key_put_is_found_from_any_node() {
    let mut net = joined(150, 12, Duration::from_secs(120));
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let keys: Vec<(Key, usize)> = (0..10)
        .map(|k| {
            (
                Key::from_url(&format!("http://site{k}.example/")),
                rng.random_range(0..150),
            )
        })
        .collect();
    let puts: Vec<_> = keys
        .iter()
        .map(|(key, i)| (*i, put(&mut net, *i, *key)))
        .collect();
    await_puts(&mut net, &puts);
    let mut gets = Vec::new();
    for (key, putter) in &keys {
        for i in (0..150).filter(|i| i != putter) {
            gets.push((i, get(&mut net, i, *key)));
        }
    }
    let results = await_gets(&mut net, &gets);
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} gets failed: {:?}",
        failed.len(),
        results.len(),
        failed.first()
    );
}

#[test]
fn get_for_a_key_put_in_the_same_cluster_stays_at_level2() {
    let mut net = joined(150, 13, Duration::from_secs(300));
    let key = Key::from_url("http://near.example/");
    let q = put(&mut net, 0, key);
    let placement = await_puts(&mut net, &[(0, q)]).remove(0);
    assert_eq!(
        placement.stored.len(),
        3,
        "stored at every level: {placement:?}"
    );
    // Nodes of region 0 are 0, 3, 6, ...
    let gets: Vec<_> = (3..150)
        .step_by(3)
        .map(|i| (i, get(&mut net, i, key)))
        .collect();
    for r in await_gets(&mut net, &gets) {
        let found = r.expect("found");
        assert_eq!(found.level, Level(2), "answered without leaving level 2");
        assert_eq!(found.values[0].holder, net.contact(0));
    }
    // A node of another region finds it too, but not at level 2 (its cluster never saw it).
    let q = get(&mut net, 1, key);
    let found = await_gets(&mut net, &[(1, q)]).remove(0).expect("found");
    assert!(found.level < Level(2));
}

#[test]
fn hot_key_spreads_over_more_than_k_nodes() {
    let n = 300;
    let mut net = joined(n, 14, Duration::from_secs(120));
    let key = Key::from_url("http://slashdotted.example/front-page.html");
    let before: Vec<u64> = net
        .nodes
        .iter()
        .map(|node| {
            let s = node.stats(net.now).requests_in;
            s.get + s.put_probe + s.store
        })
        .collect();
    // 100 different proxies announce the object within a minute, as a flash crowd's proxies do.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut putters: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        putters.swap(i, rng.random_range(0..=i));
    }
    let mut puts = Vec::new();
    for &i in putters.iter().take(100) {
        puts.push((i, put(&mut net, i, key)));
        net.run_for(Duration::from_millis(600));
    }
    let placements = await_puts(&mut net, &puts);
    let storers: BTreeSet<_> = placements
        .iter()
        .flat_map(|p| p.stored.iter().map(|(_, id)| *id))
        .collect();
    // Then every node looks it up.
    let gets: Vec<_> = (0..n).map(|i| (i, get(&mut net, i, key))).collect();
    assert!(await_gets(&mut net, &gets).iter().all(Result::is_ok));

    let load: Vec<u64> = net
        .nodes
        .iter()
        .zip(&before)
        .map(|(node, b)| {
            let s = node.stats(net.now).requests_in;
            s.get + s.put_probe + s.store - b
        })
        .collect();
    let total: u64 = load.iter().sum();
    let max = *load.iter().max().unwrap();
    let served = load.iter().filter(|l| **l > 0).count() as f64;
    let mean = total as f64 / served;
    eprintln!(
        "hot key: {} distinct storing nodes; {} requests in all; max {} per node; mean {:.1} over {} serving nodes; max/mean {:.1}",
        storers.len(),
        total,
        max,
        mean,
        served,
        max as f64 / mean
    );
    let k = Config::default().k;
    assert!(
        storers.len() > k,
        "only {} nodes store the hot key",
        storers.len()
    );
    assert!(
        max * 10 < total,
        "the hottest node served {max} of {total} requests"
    );
}

#[test]
fn lookups_route_around_nodes_that_stop_answering() {
    let n = 120;
    let mut net = joined(n, 15, Duration::from_secs(60));
    let key = Key::from_url("http://resilient.example/");
    let q = put(&mut net, 7, key);
    let placement = await_puts(&mut net, &[(7, q)]).remove(0);
    let keep: BTreeSet<_> = placement.stored.iter().map(|(_, id)| *id).collect();
    // A quarter of the other nodes die without a word; routing tables still list them.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut dead = BTreeSet::new();
    while dead.len() < n / 4 {
        let i = rng.random_range(0..n);
        if i != 7 && !keep.contains(&net.contact(i).id) {
            dead.insert(i);
        }
    }
    for &i in &dead {
        net.crash(i);
    }
    let alive: Vec<usize> = (0..n).filter(|i| !dead.contains(i)).collect();
    let timeouts_before: u64 = alive
        .iter()
        .map(|&i| net.nodes[i].stats(net.now).timeouts)
        .sum();
    let gets: Vec<_> = alive
        .iter()
        .filter(|&&i| i != 7)
        .map(|&i| (i, get(&mut net, i, key)))
        .collect();
    let results = await_gets(&mut net, &gets);
    let timeouts_after: u64 = alive
        .iter()
        .map(|&i| net.nodes[i].stats(net.now).timeouts)
        .sum();
    assert!(
        timeouts_after > timeouts_before,
        "the lookups met dead nodes"
    );
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 0, "{failed} gets failed");
}

#[test]
fn lookups_survive_message_loss() {
    let n = 90;
    let mut net = joined(n, 16, Duration::from_secs(60));
    net.set_loss(0.1);
    let key = Key::from_url("http://lossy.example/");
    let q = put(&mut net, 2, key);
    await_puts(&mut net, &[(2, q)]);
    let gets: Vec<_> = (0..n)
        .step_by(2)
        .filter(|i| *i != 2)
        .map(|i| (i, get(&mut net, i, key)))
        .collect();
    let results = await_gets(&mut net, &gets);
    // One copy per level: a get fails only if all three attempts to the node holding it are
    // lost (each attempt has two messages at 10 % loss: 0.19^3, under 1 %).
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert!(
        failed * 20 <= results.len(),
        "{failed} of {} gets failed under 10 % loss",
        results.len()
    );
    let retries: u64 = net
        .nodes
        .iter()
        .map(|node| node.stats(net.now).retries)
        .sum();
    assert!(retries > 0, "loss forced retries");
}

fn traced_run(seed: u64) -> Vec<u8> {
    let mut net = joined(40, seed, Duration::from_secs(30));
    let key = Key::from_url("http://determinism.example/");
    let q = put(&mut net, 3, key);
    await_puts(&mut net, &[(3, q)]);
    let gets: Vec<_> = (0..40)
        .step_by(4)
        .map(|i| (i, get(&mut net, i, key)))
        .collect();
    await_gets(&mut net, &gets);
    net.run_for(Duration::from_secs(30));
    net.trace_hash()
}

#[test]
fn same_seed_gives_identical_event_traces() {
    let a = traced_run(21);
    assert_eq!(a, traced_run(21));
    assert_ne!(a, traced_run(22), "the trace depends on the seed");
}

#[test]
fn single_node_puts_and_gets_locally() {
    let mut net = Net::new(1, 2, &Config::default(), Box::new(|_, _| Duration::ZERO));
    let key = Key::from_url("http://alone.example/");
    // A value naming another proxy is found locally; the node's own never is.
    let other = Value {
        holder: crate::Contact::new(crate::NodeId([9; 32]), vec![9]),
        pending: false,
    };
    let q = net.with(0, |n, now| {
        n.put(now, key, other.clone(), Duration::from_secs(60))
    });
    let p = await_puts(&mut net, &[(0, q)]).remove(0);
    assert_eq!(p.stored.len(), 3);
    let q = get(&mut net, 0, key);
    let found = await_gets(&mut net, &[(0, q)]).remove(0).unwrap();
    assert_eq!((found.level, found.hops), (Level(2), 0));
    assert_eq!(found.values, vec![other]);
    let own = Key::from_url("http://mine.example/");
    let q = put(&mut net, 0, own);
    await_puts(&mut net, &[(0, q)]);
    let q = get(&mut net, 0, own);
    assert!(await_gets(&mut net, &[(0, q)]).remove(0).is_err());
    let q = get(&mut net, 0, Key::from_url("http://other.example/"));
    assert!(matches!(
        await_gets(&mut net, &[(0, q)]).remove(0),
        Err(QueryError::NotFound { .. })
    ));
}

#[test]
fn a_silent_network_times_out_gets_within_the_query_timeout() {
    let mut net = Net::new(
        2,
        3,
        &Config::default(),
        Box::new(|_, _| Duration::from_millis(5)),
    );
    net.bootstrap(1, 0);
    net.run_for(Duration::from_secs(1));
    net.crash(0);
    let start = net.elapsed();
    let q = get(&mut net, 1, Key::from_url("http://gone.example/"));
    let r = await_gets(&mut net, &[(1, q)]).remove(0);
    assert!(matches!(r, Err(QueryError::NotFound { .. })), "{r:?}");
    // Three attempts of one second each, not the 10 s query timeout.
    assert!(net.elapsed() - start <= Duration::from_secs(3));
}

#[test]
fn classic_mode_stores_at_the_k_closest_nodes() {
    let config = Config {
        sloppy: false,
        level_rtt_thresholds: Vec::new(),
        ..Config::default()
    };
    let n = 80;
    let mut net = Net::new(n, 17, &config, regional_latency(n, 17));
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for i in 1..n {
        let via = rng.random_range(0..i);
        net.bootstrap(i, via);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(Duration::from_secs(60));
    let key = Key::from_url("http://classic.example/");
    let q = put(&mut net, 5, key);
    let placement = await_puts(&mut net, &[(5, q)]).remove(0);
    let k = config.k;
    let mut by_distance: Vec<_> = (0..n).map(|i| net.contact(i).id).collect();
    by_distance.sort_by_key(|id| id.distance(&key));
    let stored: BTreeSet<_> = placement.stored.iter().map(|(_, id)| *id).collect();
    let closest: BTreeSet<_> = by_distance.iter().take(k).copied().collect();
    assert_eq!(stored, closest, "stored at exactly the k closest");
    assert!(placement.stored.iter().all(|(l, _)| *l == Level(0)));
}
