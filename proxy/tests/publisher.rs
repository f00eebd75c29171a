//! What a publisher relies on, against a real origin through real sockets: signed purges
//! (`POST /.reef/purge`) checked against the keys in the site's `/.well-known/reef.json`,
//! the document's opt-out, and failover to the mirrors it lists.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::purge::message::Purge;
use proxy::purge::{PURGE_PATH, Source};
use proxy::site::WELL_KNOWN_PATH;
use proxy::{Config, Proxy};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;
use tokio::net::TcpListener;

/// An origin (or a mirror): what it serves, and the requests it saw per path.
struct Origin {
    name: &'static str,
    /// The body of `/.well-known/reef.json`; `None`: 404.
    document: Option<String>,
    /// `/m` answers this status instead of the object.
    failing: Option<u16>,
    counts: Mutex<BTreeMap<String, usize>>,
}

impl Origin {
    fn new(name: &'static str, document: Option<String>, failing: Option<u16>) -> Arc<Origin> {
        Arc::new(Origin {
            name,
            document,
            failing,
            counts: Mutex::default(),
        })
    }

    fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// Every object is `"<name> <path> v<n>"` (n: the requests for that path so far), cacheable
/// for an hour; `/slow` takes 300 ms to answer.
fn answer(o: &Origin, path: &str) -> Response<Full<Bytes>> {
    let n = {
        let mut counts = o.counts.lock().unwrap();
        let n = counts.entry(path.to_string()).or_default();
        *n += 1;
        *n
    };
    let (status, body) = match (path, &o.document, o.failing) {
        (WELL_KNOWN_PATH, Some(doc), _) => (200, doc.clone()),
        (WELL_KNOWN_PATH, None, _) => (404, "no reef.json here".to_string()),
        ("/m", _, Some(status)) => (status, format!("{} is failing", o.name)),
        _ => (200, format!("{} {path} v{n}", o.name)),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    if status == 200 {
        r.headers_mut()
            .insert("cache-control", "max-age=3600".parse().unwrap());
    }
    r
}

/// Serves `o` on a loopback port.
async fn serve(o: Arc<Origin>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let o = o.clone();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let slow = req.uri().path() == "/slow";
                let reply = answer(&o, req.uri().path());
                async move {
                    if slow {
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    }
                    Ok::<_, Infallible>(reply)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A proxy in front of one origin (`origin.test` resolves to loopback).
struct Setup {
    node: Arc<Proxy>,
    addr: SocketAddr,
    origin: Arc<Origin>,
    port: u16,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What the proxy answered.
struct Reply {
    status: StatusCode,
    cache_status: String,
    body: String,
}

/// A proxy in front of an origin publishing `document` (`None`: 404) whose `/m` answers
/// `failing` if set.
async fn setup(document: Option<String>, failing: Option<u16>) -> Setup {
    let origin = Origin::new("origin", document, failing);
    let port = serve(origin.clone()).await.port();
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = true;
    config
        .resolve
        .insert("origin.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let node = Proxy::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let running = node.clone();
    tokio::spawn(async move {
        let _keep = tx;
        proxy::server::run(listener, running, rx).await;
    });
    Setup {
        node,
        addr,
        origin,
        port,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Setup {
    /// The origin's CDN name.
    fn host(&self) -> String {
        format!("origin.test.{}.cdn", self.port)
    }

    /// The origin's own URL for `path` (the cache key, and what purges name).
    fn url(&self, path: &str) -> String {
        format!("http://origin.test:{}{path}", self.port)
    }

    async fn send(&self, method: &str, host: &str, path: &str, body: Vec<u8>) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("host", host)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status();
        let cache_status = resp
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            cache_status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", &self.host(), path, Vec::new()).await
    }

    /// Posts `message` to the purge endpoint (any Host will do).
    async fn purge(&self, message: Vec<u8>) -> Reply {
        self.send("POST", "localhost", PURGE_PATH, message).await
    }

    fn counters(&self) -> (u64, u64) {
        let p = self.node.purges();
        (
            p.accepted.load(Ordering::Relaxed),
            p.rejected.load(Ordering::Relaxed),
        )
    }
}

fn keypair() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// A reef.json listing `key` as the only purge key.
fn document(key: &Ed25519KeyPair, opt_out: bool, mirrors: &[String]) -> String {
    serde_json::json!({
        "purge_keys": [B64.encode(key.public_key().as_ref())],
        "opt_out": opt_out,
        "mirrors": mirrors,
    })
    .to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A nonce no other purge of this test binary uses.
fn nonce() -> [u8; 16] {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut n = [0u8; 16];
    n[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    n
}

/// A purge of `url` signed now by `key`.
fn signed(key: &Ed25519KeyPair, url: &str, prefix: bool) -> Purge {
    Purge::sign(key, url, prefix, now(), nonce())
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap()
}

#[tokio::test]
async fn purge_removes_a_cached_object_and_the_next_request_refetches() {
    let key = keypair();
    let s = setup(Some(document(&key, false, &[])), None).await;
    assert_eq!(s.get("/a").await.body, "origin /a v1");
    let hit = s.get("/a").await;
    assert_eq!(hit.body, "origin /a v1");
    assert!(hit.cache_status.contains("hit"), "{}", hit.cache_status);
    assert_eq!(s.origin.count("/a"), 1);
    assert!(s.node.store().contains(&s.url("/a")));

    let r = s.purge(signed(&key, &s.url("/a"), false).encode()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = json(&r);
    assert_eq!(j["accepted"].as_bool(), Some(true));
    assert_eq!(j["url"], s.url("/a"));
    assert_eq!(j["prefix"].as_bool(), Some(false));
    assert_eq!(j["removed"], 1);
    assert!(!s.node.store().contains(&s.url("/a")));
    assert_eq!(s.counters(), (1, 0));
    let recent = s.node.purges().recent();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].url, s.url("/a"));
    assert_eq!((recent[0].removed, recent[0].source), (1, Source::Client));

    let fresh = s.get("/a").await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.body, "origin /a v2");
    assert!(
        !fresh.cache_status.contains("hit"),
        "{}",
        fresh.cache_status
    );
    assert_eq!(s.origin.count("/a"), 2);
    // The new copy is stored again: the purge refuses only copies older than itself.
    let hit = s.get("/a").await;
    assert_eq!(hit.body, "origin /a v2");
    assert!(hit.cache_status.contains("hit"), "{}", hit.cache_status);
    assert_eq!(s.origin.count("/a"), 2);
    // The document was fetched once, on first use; the purge found its key in that copy.
    assert_eq!(s.origin.count(WELL_KNOWN_PATH), 1);
}

#[tokio::test]
async fn a_prefix_purge_removes_every_url_under_it_and_nothing_else() {
    let key = keypair();
    let s = setup(Some(document(&key, false, &[])), None).await;
    for path in ["/img/1", "/img/2", "/other"] {
        assert_eq!(s.get(path).await.status, 200);
    }
    let r = s.purge(signed(&key, &s.url("/img/"), true).encode()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = json(&r);
    assert_eq!(j["prefix"].as_bool(), Some(true));
    assert_eq!(j["removed"], 2);
    assert!(!s.node.store().contains(&s.url("/img/1")));
    assert!(!s.node.store().contains(&s.url("/img/2")));

    let other = s.get("/other").await;
    assert_eq!(other.body, "origin /other v1");
    assert!(other.cache_status.contains("hit"), "{}", other.cache_status);
    assert_eq!(s.origin.count("/other"), 1);
    assert_eq!(s.get("/img/1").await.body, "origin /img/1 v2");
    assert_eq!(s.origin.count("/img/1"), 2);
}

#[tokio::test]
async fn refused_purges_leave_the_cached_object_in_place() {
    let key = keypair();
    let s = setup(Some(document(&key, false, &[])), None).await;
    let url = s.url("/a");
    assert_eq!(s.get("/a").await.status, 200);

    // A key the site does not publish: the answer names the document checked.
    let r = s.purge(signed(&keypair(), &url, false).encode()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains(&s.url(WELL_KNOWN_PATH)), "{}", r.body);

    let mut forged = signed(&key, &url, false);
    forged.signature[0] ^= 1;
    let r = s.purge(forged.encode()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("bad signature"), "{}", r.body);

    let old = Purge::sign(&key, &url, false, now() - 600, nonce());
    let r = s.purge(old.encode()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("stale"), "{}", r.body);

    let r = s.purge(b"not json".to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.body);

    let r = s.send("GET", "localhost", PURGE_PATH, Vec::new()).await;
    assert_eq!(r.status, 405, "{}", r.body);

    let hit = s.get("/a").await;
    assert!(hit.cache_status.contains("hit"), "{}", hit.cache_status);
    assert_eq!(s.origin.count("/a"), 1);
    assert_eq!(s.counters(), (0, 4));

    // A valid purge is obeyed once; the same message again is a replay.
    let valid = signed(&key, &url, false).encode();
    assert_eq!(s.purge(valid.clone()).await.status, 200);
    assert_eq!(s.get("/a").await.body, "origin /a v2");
    let r = s.purge(valid).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("replayed"), "{}", r.body);
    let hit = s.get("/a").await;
    assert_eq!(hit.body, "origin /a v2");
    assert!(hit.cache_status.contains("hit"), "{}", hit.cache_status);
    assert_eq!(s.origin.count("/a"), 2);
    assert_eq!(s.counters(), (1, 5));
}

#[tokio::test]
async fn without_a_valid_document_no_key_may_purge_and_the_site_is_still_served() {
    for document in [None, Some("{not json".to_string())] {
        let s = setup(document, None).await;
        let r = s
            .purge(signed(&keypair(), &s.url("/a"), false).encode())
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains(&s.url(WELL_KNOWN_PATH)), "{}", r.body);
        let r = s.get("/a").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "origin /a v1");
        assert!(s.get("/a").await.cache_status.contains("hit"));
        assert_eq!(s.origin.count("/a"), 1);
        assert_eq!(s.counters(), (0, 1));
    }
}

#[tokio::test]
async fn a_site_that_opts_out_is_not_served() {
    let s = setup(Some(document(&keypair(), true, &[])), None).await;
    for _ in 0..2 {
        let r = s.get("/a").await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("asked not to be served"), "{}", r.body);
        assert!(
            r.cache_status.contains("detail=opted-out"),
            "{}",
            r.cache_status
        );
    }
    // The first request fetched the document and the object side by side; nothing was
    // served or kept, and once the document is known nothing more is fetched.
    assert!(s.origin.count("/a") <= 1);
    assert!(!s.node.store().contains(&s.url("/a")));
}

#[tokio::test]
async fn a_failing_origin_is_served_from_its_mirror_and_cached_under_its_own_url() {
    for failing in [503, 404] {
        let mirror = Origin::new("mirror", None, None);
        let mirror_port = serve(mirror.clone()).await.port();
        let mirrors = [format!("http://origin.test:{mirror_port}")];
        let s = setup(Some(document(&keypair(), false, &mirrors)), Some(failing)).await;

        let r = s.get("/m").await;
        assert_eq!(r.status, 200, "origin answered {failing}: {}", r.body);
        assert_eq!(r.body, "mirror /m v1");
        let again = s.get("/m").await;
        assert_eq!(again.body, "mirror /m v1");
        assert!(
            again.cache_status.starts_with("reef") && again.cache_status.contains("hit"),
            "{}",
            again.cache_status
        );
        assert_eq!((s.origin.count("/m"), mirror.count("/m")), (1, 1));
        assert!(s.node.store().contains(&s.url("/m")));
        // What the origin serves still comes from the origin.
        assert_eq!(s.get("/a").await.body, "origin /a v1");
        assert_eq!(mirror.count("/a"), 0);
    }
}

#[tokio::test]
async fn an_unreachable_origin_without_a_document_is_a_502() {
    let s = setup(None, None).await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let host = format!("origin.test.{port}.cdn");
    let r = s.send("GET", &host, "/m", Vec::new()).await;
    assert_eq!(r.status, 502, "{}", r.body);
}

#[tokio::test]
async fn a_fetch_under_way_when_its_purge_lands_is_served_but_never_stored() {
    let key = keypair();
    let s = Arc::new(setup(Some(document(&key, false, &[])), None).await);
    assert_eq!(s.get("/a").await.status, 200); // the site's document is known
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { s.get("/slow").await })
    };
    while s.origin.count("/slow") == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = s.purge(signed(&key, &s.url("/slow"), false).encode()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The client that asked before the purge gets its answer; the cache does not keep it.
    let before = waiting.await.unwrap();
    assert_eq!(before.body, "origin /slow v1");
    assert!(!s.node.store().contains(&s.url("/slow")));
    let after = s.get("/slow").await;
    assert_eq!(after.body, "origin /slow v2");
    assert_eq!(s.origin.count("/slow"), 2);
}
