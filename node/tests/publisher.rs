//! Publishers in control, with real `reef` processes on loopback: a signed purge sent to one
//! node of ten removes the object from all ten; forged and replayed purges are refused by
//! every node; a site that opts out is refused; a failing origin is served from its mirror.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Object, Origin, Reef};

const WELL_KNOWN: &str = "/.well-known/reef.json";
const RESOLVE: [&str; 2] = ["--resolve", "origin.test=127.0.0.1"];

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("reef-publisher-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the `reef` binary with `args`.
fn reef(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(args)
        .output()
        .unwrap()
}

/// `reef publisher keygen --out DIR/NAME`; returns the key file and the public key.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = reef(&["publisher", "keygen", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    // It prints the document to serve.
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = doc["purge_keys"][0].as_str().unwrap().to_string();
    (path, key)
}

fn document(body: serde_json::Value) -> Object {
    Object {
        cache_control: "max-age=300",
        ..Object::fresh(body.to_string().into_bytes())
    }
}

/// Ten nodes: one, and nine that join through it.
fn network(n: usize) -> Vec<Reef> {
    let first = Reef::start(&RESOLVE);
    let p2p = first.p2p();
    let mut nodes = vec![first];
    for _ in 1..n {
        nodes.push(Reef::start(&[RESOLVE[0], RESOLVE[1], "--bootstrap", &p2p]));
    }
    for node in &nodes {
        node.wait_peers(1, Duration::from_secs(20));
    }
    nodes
}

/// Waits until every node lists the purge with `nonce` as accepted.
fn wait_applied(nodes: &[Reef], nonce: &str, within: Duration) {
    let deadline = Instant::now() + within;
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let s = node.status();
            let recent = s["purges"]["recent"].as_array().unwrap();
            if recent.iter().any(|r| r["nonce"] == nonce) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} never applied {nonce}: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// This node's own `Cache-Status` entry (the last one).
/// Fetches `/obj` through every node until each serves it from its cache.
fn warm(nodes: &[Reef], origin: &Origin, body: &[u8]) {
    for (i, node) in nodes.iter().enumerate() {
        let first = node.fetch(&origin.host(), "/obj");
        assert_eq!(first.status, 200, "node {i}: {first:?}");
        assert_eq!(first.body, body, "node {i}");
        // The fetch task stores the object just after the client has the last byte: a
        // request in between joins that fetch. Soon every request is a hit.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let again = node.fetch(&origin.host(), "/obj");
            assert_eq!(again.body, body, "node {i}");
            if again.is_hit() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} never holds it: {again:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn origin_with_key(key: &str) -> Origin {
    let mut objects = HashMap::new();
    objects.insert(
        WELL_KNOWN.to_string(),
        document(serde_json::json!({"purge_keys": [key]})),
    );
    objects.insert("/obj".to_string(), Object::fresh(b"version 1".to_vec()));
    Origin::start(objects)
}

#[test]
fn a_purge_sent_to_one_node_of_ten_removes_the_object_from_all_ten() {
    let scratch = Scratch::new("ten");
    let (key_file, key) = keygen(&scratch.0, "site.key");
    let origin = origin_with_key(&key);
    let nodes = network(10);
    warm(&nodes, &origin, b"version 1");
    origin.set("/obj", Some(Object::fresh(b"version 2".to_vec())));

    let url = format!("http://origin.test:{}/obj", origin.addr.port());
    let node = nodes[0].http().to_string();
    let out = reef(&[
        "purge",
        &url,
        "--key",
        key_file.to_str().unwrap(),
        "--node",
        &node,
    ]);
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["removed"], 1, "{answer}");
    let nonce = answer["nonce"].as_str().unwrap();
    wait_applied(&nodes, nonce, Duration::from_secs(10));

    let before = origin.count("/obj");
    for (i, node) in nodes.iter().enumerate() {
        let s = node.status();
        let first = &s["purges"]["recent"][0];
        assert_eq!(first["source"], if i == 0 { "client" } else { "overlay" });
        assert_eq!(first["removed"], 1, "node {i} held the object: {first}");
        let r = node.fetch(&origin.host(), "/obj");
        assert_eq!(
            r.body, b"version 2",
            "node {i} served the purged object: {r:?}"
        );
        assert!(!r.is_hit(), "node {i}: {r:?}");
    }
    assert!(
        origin.count("/obj") > before,
        "the new version came from the origin"
    );
}

#[test]
fn forged_and_replayed_purges_are_refused_by_every_node() {
    let scratch = Scratch::new("forged");
    let (key_file, key) = keygen(&scratch.0, "site.key");
    let (stranger_file, _) = keygen(&scratch.0, "stranger.key");
    let origin = origin_with_key(&key);
    let nodes = network(10);
    warm(&nodes, &origin, b"version 1");
    let url = format!("http://origin.test:{}/obj", origin.addr.port());

    // A key the site does not publish.
    for (i, node) in nodes.iter().enumerate() {
        let addr = node.http().to_string();
        let out = reef(&[
            "purge",
            &url,
            "--key",
            stranger_file.to_str().unwrap(),
            "--node",
            &addr,
        ]);
        assert!(
            !out.status.success(),
            "node {i} accepted a stranger's purge"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not among the purge_keys") && err.contains(WELL_KNOWN),
            "node {i}: {err}"
        );
    }
    // The right key, but a signature that does not match the message.
    let site_key = node::publisher::load_key(&key_file).unwrap();
    let mut tampered = node::publisher::sign(&site_key, &url, false).unwrap();
    tampered.signature[0] ^= 1;
    for (i, node) in nodes.iter().enumerate() {
        let r = common::post(node.http(), "/.reef/purge", &tampered.encode());
        assert_eq!(r.status, 403, "node {i}: {r:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("bad signature"));
    }
    // Nothing was purged anywhere.
    for (i, node) in nodes.iter().enumerate() {
        let s = node.status();
        assert_eq!(s["purges"]["accepted"], 0, "node {i}: {s}");
        assert_eq!(s["purges"]["rejected"], 2, "node {i}: {s}");
        let r = node.fetch(&origin.host(), "/obj");
        assert!(r.is_hit(), "node {i}: {r:?}");
    }

    // A valid purge, sent to one node, then replayed to every node.
    let purge = node::publisher::sign(&site_key, &url, false).unwrap();
    let bytes = purge.encode();
    let r = common::post(nodes[3].http(), "/.reef/purge", &bytes);
    assert_eq!(r.status, 200, "{r:?}");
    let nonce: String = purge.nonce.iter().map(|b| format!("{b:02x}")).collect();
    wait_applied(&nodes, &nonce, Duration::from_secs(10));
    warm(&nodes, &origin, b"version 1");
    for (i, node) in nodes.iter().enumerate() {
        let r = common::post(node.http(), "/.reef/purge", &bytes);
        assert_eq!(r.status, 403, "node {i} accepted a replay: {r:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("replayed"));
        let again = node.fetch(&origin.host(), "/obj");
        assert!(again.is_hit(), "node {i}: {again:?}");
    }
}

#[test]
fn a_site_that_opts_out_is_refused_and_a_failing_origin_falls_back_to_its_mirror() {
    let mirror = Origin::start(HashMap::from([(
        "/m".to_string(),
        Object::fresh(b"from the mirror".to_vec()),
    )]));
    let mirror_url = format!("http://origin.test:{}", mirror.addr.port());
    // The site's own copy of /m is gone (404); its document names the mirror.
    let site = Origin::start(HashMap::from([(
        WELL_KNOWN.to_string(),
        document(serde_json::json!({"mirrors": [mirror_url]})),
    )]));
    let shy = Origin::start(HashMap::from([
        (
            WELL_KNOWN.to_string(),
            document(serde_json::json!({"opt_out": true})),
        ),
        ("/page".to_string(), Object::fresh(b"private".to_vec())),
    ]));
    let nodes = network(2);

    for node in &nodes {
        let r = node.fetch(&shy.host(), "/page");
        assert_eq!(r.status, 403, "{r:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("asked not to be served"));
    }
    // Each node's first request fetched the document and the object side by side.
    assert!(shy.count("/page") <= nodes.len(), "{}", shy.count("/page"));
    for node in &nodes {
        let r = node.fetch(&shy.host(), "/page");
        assert_eq!(r.status, 403, "{r:?}");
    }
    assert!(
        shy.count("/page") <= nodes.len(),
        "nothing more once the document is known"
    );

    let first = nodes[0].fetch(&site.host(), "/m");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body, b"from the mirror");
    let again = nodes[0].fetch(&site.host(), "/m");
    assert!(again.is_hit(), "cached under the site's URL: {again:?}");
    let other = nodes[1].fetch(&site.host(), "/m");
    assert_eq!(other.body, b"from the mirror", "{other:?}");
    assert!(site.count("/m") >= 1, "the site was asked first");
    assert!(mirror.count("/m") >= 1);
}
