//! Several real `reef node` processes on loopback forming an overlay: objects shared between
//! nodes, flash crowds, outsiders kept out, peers dying mid-transfer, restarts.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{Object, Origin, Reef, bytes};

const RESOLVE: [&str; 2] = ["--resolve", "origin.test=127.0.0.1"];

/// `n` nodes: the first, and the others joined through it.
fn network(n: usize, extra: &[&str]) -> Vec<Reef> {
    let first = Reef::start(&[&RESOLVE[..], extra].concat());
    let p2p = first.p2p();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(Reef::start(
            &[&RESOLVE[..], extra, &["--bootstrap", &p2p]].concat(),
        ));
    }
    for node in &nodes {
        node.wait_peers(1, Duration::from_secs(20));
    }
    nodes[0].wait_peers(n - 1, Duration::from_secs(20));
    nodes
}

fn wait_announced(node: &Reef) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.status()["fetches"]["announced"].as_u64().unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing announced");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_url_fetched_through_one_node_comes_from_peers_at_the_others() {
    let body = bytes(300_000, 1);
    let origin = Origin::start(HashMap::from([(
        "/obj".to_string(),
        Object::fresh(body.clone()),
    )]));
    let nodes = network(5, &[]);
    let first = nodes[0].fetch(&origin.host(), "/obj");
    assert_eq!(first.status, 200);
    assert!(first.body == body, "the first copy is the origin's");
    assert_eq!(origin.count("/obj"), 1);
    wait_announced(&nodes[0]);
    // Let the background put land before asking.
    std::thread::sleep(Duration::from_millis(300));
    let key = format!("http://origin.test:{}/obj", origin.addr.port());
    let located = common::post(nodes[1].admin(), "/locate", key.as_bytes());
    let located: serde_json::Value = serde_json::from_slice(&located.body).unwrap();
    assert_eq!(
        located["holders"][0]["peer"], nodes[0].info["peer_id"],
        "{located}"
    );
    assert_eq!(located["holders"][0]["pending"], false, "{located}");
    for node in &nodes[1..] {
        let r = node.fetch(&origin.host(), "/obj");
        assert_eq!(r.status, 200);
        assert!(r.body == body, "byte-identical through every node");
        let cs = r.header("cache-status");
        assert!(cs.contains("detail=\"peer "), "served from a peer: {cs}");
    }
    assert_eq!(origin.count("/obj"), 1, "the origin saw one fetch in all");
    let served: u64 = nodes
        .iter()
        .map(|n| n.status()["fetches"]["served_to_peers"].as_u64().unwrap())
        .sum();
    assert_eq!(served, 4);
}

#[test]
fn a_flash_crowd_over_five_nodes_costs_the_origin_at_most_two_fetches() {
    let body = bytes(100_000, 2);
    let slow = Object {
        delay: Some(Duration::from_millis(500)),
        ..Object::fresh(body.clone())
    };
    let origin = Origin::start(HashMap::from([("/hot".to_string(), slow)]));
    let nodes = network(5, &[]);
    let addrs: Vec<_> = nodes.iter().map(|n| n.http()).collect();
    let start = Arc::new(Barrier::new(25));
    let clients: Vec<_> = (0..25)
        .map(|i| {
            let (addr, host, start) = (addrs[i % 5], origin.host(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                common::get(addr, &host, "/hot", &[])
            })
        })
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == body, "every client gets the whole, correct body");
    }
    let fetches = origin.count("/hot");
    eprintln!("flash crowd: {fetches} origin fetch(es) for 25 clients over 5 nodes");
    assert!((1..=2).contains(&fetches), "{fetches} origin fetches");
}

fn secret_file(dir: &std::path::Path) -> String {
    let path = dir.join("secret");
    let _ = std::fs::remove_file(&path);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["secret", "new", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.display().to_string()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reef-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `outsider` must never join `member`, and must still serve from the origin alone.
fn stays_out(member: &Reef, outsider: &Reef, origin: &Origin) {
    // The member sees the attempt and counts the refused handshake...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while member.status()["overlay"]["handshake_failures"]
        .as_u64()
        .unwrap()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no refused handshake: {}",
            member.status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and after a few more attempts, neither knows the other.
    std::thread::sleep(Duration::from_secs(2));
    for node in [member, outsider] {
        let s = node.status();
        assert_eq!(s["peers_connected"], 0, "{s}");
        assert_eq!(s["peers"].as_array().map_or(0, |p| p.len()), 0, "{s}");
    }
    let before = origin.count("/page");
    let r = outsider.fetch(&origin.host(), "/page");
    assert_eq!(r.status, 200);
    assert_eq!(
        origin.count("/page"),
        before + 1,
        "served from the origin alone"
    );
}

#[test]
fn a_node_with_another_secret_or_version_never_joins() {
    let origin = Origin::start(HashMap::from([(
        "/page".to_string(),
        Object::fresh(b"page".to_vec()),
    )]));
    let member = Reef::start(&RESOLVE);
    let dir = temp_dir("secret");
    let secret = secret_file(&dir);
    let other_secret = Reef::start(
        &[
            &RESOLVE[..],
            &["--secret-file", &secret, "--bootstrap", &member.p2p()],
        ]
        .concat(),
    );
    stays_out(&member, &other_secret, &origin);
    drop(other_secret);
    let member = Reef::start(&RESOLVE);
    let other_version = Reef::start(
        &[
            &RESOLVE[..],
            &[
                "--protocol-version",
                "reef/999",
                "--bootstrap",
                &member.p2p(),
            ],
        ]
        .concat(),
    );
    stays_out(&member, &other_version, &origin);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_gets_the_whole_body_when_the_serving_peer_dies_mid_transfer() {
    let big = bytes(8 << 20, 4);
    let slow = Object {
        pace: Some(Duration::from_millis(15)),
        ..Object::fresh(big.clone())
    };
    let origin = Origin::start(HashMap::from([("/big".to_string(), slow)]));
    let mut nodes = network(2, &[]);
    let (host, holder_http) = (origin.host(), nodes[0].http());
    // The holder starts fetching from the (slow) origin and announces it.
    let h = host.clone();
    let _first = std::thread::spawn(move || common::get(holder_http, &h, "/big", &[]));
    wait_announced(&nodes[0]);
    std::thread::sleep(Duration::from_millis(300));
    let asker_http = nodes[1].http();
    let asker = std::thread::spawn(move || common::get(asker_http, &host, "/big", &[]));
    std::thread::sleep(Duration::from_millis(700));
    nodes[0].child.kill().unwrap(); // SIGKILL, mid-transfer
    let r = asker.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "the whole, correct body");
    assert!(r.header("cache-status").contains("peer"), "{:?}", r.headers);
    assert!(origin.count("/big") >= 2, "the rest came from the origin");
    // The dead peer's part was never checked against a digest, so the patched-together copy
    // was not stored: a second request fetches the object again, whole.
    let again = nodes[1].fetch(&origin.host(), "/big");
    assert!(!again.is_hit(), "{:?}", again.headers);
    assert!(again.body == big);
}

#[test]
fn a_restarted_node_rejoins_from_its_data_directory_and_serves_its_cache() {
    let body = bytes(50_000, 5);
    let origin = Origin::start(HashMap::from([(
        "/kept".to_string(),
        Object::fresh(body.clone()),
    )]));
    let first = Reef::start(&RESOLVE);
    let dir = temp_dir("data");
    let data = dir.display().to_string();
    let mut second = Reef::start(
        &[
            &RESOLVE[..],
            &["--data-dir", &data, "--bootstrap", &first.p2p()],
        ]
        .concat(),
    );
    second.wait_peers(1, Duration::from_secs(20));
    assert_eq!(second.fetch(&origin.host(), "/kept").status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while second.status()["cache"]["disk_objects"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "never written to disk"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let identity = second.info["peer_id"].clone();
    second.terminate();
    let again = Reef::start(&[&RESOLVE[..], &["--data-dir", &data]].concat());
    assert_eq!(again.info["peer_id"], identity, "the same identity");
    again.wait_peers(1, Duration::from_secs(20));
    first.wait_peers(1, Duration::from_secs(20));
    let r = again.fetch(&origin.host(), "/kept");
    assert!(r.body == body);
    assert!(r.header("cache-status").contains("hit"), "{:?}", r.headers);
    assert_eq!(
        origin.count("/kept"),
        1,
        "served from the disk cache after the restart"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dns_answers_name_live_proxies_of_the_overlay() {
    let first = Reef::start(&[]);
    let p2p = first.p2p();
    let others: Vec<Reef> = ["127.0.0.2:0", "127.0.0.3:0"]
        .iter()
        .map(|http| Reef::start_on(http, &["--bootstrap", &p2p]))
        .collect();
    first.wait_peers(2, Duration::from_secs(20));
    for o in &others {
        o.wait_peers(1, Duration::from_secs(20));
    }
    let members: Vec<std::net::IpAddr> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    // The roster is rebuilt every second: wait until the other proxies appear in answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    let mut most = 0;
    while seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "answers named only {seen:?}"
        );
        let ips = common::resolve_a(&first, "www.example.com.cdn.");
        assert!(
            (1..=2).contains(&ips.len()),
            "one or two proxies per answer: {ips:?}"
        );
        most = most.max(ips.len());
        for ip in ips {
            assert!(members.contains(&ip), "{ip} is not a proxy of the network");
            seen.insert(ip);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(most, 2, "with three live proxies, answers name two");
}

#[test]
fn a_node_over_its_quota_leaves_the_other_nodes_dns_answers() {
    let origin = Origin::start(HashMap::from([(
        "/page".to_string(),
        Object::fresh(vec![b'x'; 2000]),
    )]));
    let first = Reef::start(&RESOLVE);
    let busy = Reef::start_on(
        "127.0.0.2:0",
        &[
            &RESOLVE[..],
            &["--bandwidth-quota", "1000", "--bootstrap", &first.p2p()],
        ]
        .concat(),
    );
    first.wait_peers(1, Duration::from_secs(20));
    let two: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !common::resolve_a(&first, "www.example.com.cdn.").contains(&two) {
        assert!(
            std::time::Instant::now() < deadline,
            "the busy node never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(busy.fetch(&origin.host(), "/page").status, 200);
    assert_eq!(busy.status()["over_quota"], true);
    // Any DHT message now says so; a lookup makes one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        common::post(busy.admin(), "/locate", b"http://origin.test:1/x");
        std::thread::sleep(Duration::from_millis(1200)); // the roster is rebuilt every second
        let answers: Vec<_> = (0..5)
            .flat_map(|_| common::resolve_a(&first, "www.example.com.cdn."))
            .collect();
        if !answers.contains(&two) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still answered with the busy node"
        );
    }
}

#[test]
fn a_nodes_spare_capacity_reaches_the_others() {
    let origin = Origin::start(HashMap::from([(
        "/page".to_string(),
        Object::fresh(vec![b'x'; 2500]),
    )]));
    let first = Reef::start(&RESOLVE);
    let busy = Reef::start(
        &[
            &RESOLVE[..],
            &["--bandwidth-quota", "10000", "--bootstrap", &first.p2p()],
        ]
        .concat(),
    );
    first.wait_peers(1, Duration::from_secs(20));
    assert_eq!(busy.fetch(&origin.host(), "/page").status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Any DHT message carries the sender's load; a lookup makes one.
        common::post(busy.admin(), "/locate", b"http://origin.test:1/x");
        let s = first.status();
        let spare = s["peers"][0]["spare"].as_f64().unwrap_or(1.0);
        if (spare - 0.75).abs() < 0.01 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spare never arrived: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
