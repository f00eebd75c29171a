//! Hostile clients against a real proxy over raw TCP: slowloris, header and URL bombs,
//! smuggling-shaped and pipelined requests, path traversal in cache keys, and DNS
//! rebinding (against a real nameserver of ours on loopback). After each, the proxy still
//! serves an honest client.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_resolver::proto::op::{Message, OpCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use http::{Request, Response};
use http_body_util::Full;
use proxy::{Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// An origin that answers every path with its path, and counts requests per path.
async fn origin(seen: Arc<Mutex<BTreeMap<String, usize>>>) -> SocketAddr {
    common::origin(move |req: Request<hyper::body::Incoming>| {
        let path = req.uri().path().to_string();
        *seen.lock().unwrap().entry(path.clone()).or_default() += 1;
        let mut r = Response::new(Full::new(Bytes::from(format!("origin {path}"))));
        r.headers_mut()
            .insert("cache-control", "max-age=60".parse().unwrap());
        async move { r }
    })
    .await
}

struct Setup {
    proxy: SocketAddr,
    host: String,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    disk: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.disk);
    }
}

/// A proxy with a disk tier and a 1 s header-read timeout, in front of one origin.
async fn setup(name: &str) -> Setup {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let port = origin(seen.clone()).await.port();
    let disk = std::env::temp_dir().join(format!("reef-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&disk);
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = true;
    config
        .resolve
        .insert("origin.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    config.limits.header_read_timeout = Duration::from_secs(1);
    config.limits.max_header_bytes = 16 * 1024;
    config.disk = Some(Arc::new(
        proxy::disk::DiskTier::open(&disk, 1 << 20).unwrap(),
    ));
    Setup {
        proxy: serve(config).await,
        host: format!("origin.test.{port}.cdn"),
        seen,
        disk,
    }
}

impl Setup {
    /// Writes `raw` on a new connection and reads until the proxy closes it (or 5 s pass).
    async fn exchange(&self, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(self.proxy).await.unwrap();
        let _ = s.write_all(raw).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// An honest request, answered in full.
    async fn honest(&self, path: &str) -> String {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        self.exchange(req.as_bytes()).await
    }

    fn seen(&self, path: &str) -> usize {
        self.seen.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn status(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_and_others_are_served_meanwhile() {
    let s = setup("slowloris").await;
    let mut slow = TcpStream::connect(s.proxy).await.unwrap();
    slow.write_all(b"GET /a HTTP/1.1\r\nHost: ").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One byte every 200 ms: never a whole head.
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            // The proxy answers 408 or just closes; either way the connection ends.
            closed = n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408");
            if closed {
                break;
            }
        }
    }
    assert!(closed, "the slow client still holds its connection");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status(&s.honest("/b").await), Some(200));
}

#[tokio::test]
async fn header_and_url_bombs_are_refused_without_reaching_the_origin() {
    let s = setup("bombs").await;
    let many_headers: String = (0..2000).map(|i| format!("X-Bomb-{i}: {i}\r\n")).collect();
    let bomb = format!("GET /h HTTP/1.1\r\nHost: {}\r\n{many_headers}\r\n", s.host);
    let r = s.exchange(bomb.as_bytes()).await;
    assert!(
        r.is_empty() || status(&r).is_some_and(|c| (400..500).contains(&c)),
        "{r:.200}"
    );
    let long_url = format!(
        "GET /{} HTTP/1.1\r\nHost: {}\r\n\r\n",
        "u".repeat(100_000),
        s.host
    );
    let r = s.exchange(long_url.as_bytes()).await;
    assert!(
        r.is_empty() || status(&r).is_some_and(|c| (400..500).contains(&c)),
        "{r:.200}"
    );
    let huge_value = format!(
        "GET /v HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        s.host,
        "v".repeat(60_000)
    );
    let r = s.exchange(huge_value.as_bytes()).await;
    assert!(
        r.is_empty() || status(&r).is_some_and(|c| (400..500).contains(&c)),
        "{r:.200}"
    );
    assert_eq!(s.seen("/h") + s.seen("/v"), 0);
    assert_eq!(status(&s.honest("/after").await), Some(200));
}

#[tokio::test]
async fn smuggling_shaped_requests_never_reach_the_origin_as_a_second_request() {
    let s = setup("smuggling").await;
    let host = &s.host;
    // Both framings at once, and a hidden request in the "body".
    let cl_te = format!(
        "GET /front HTTP/1.1\r\nHost: {host}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    let r = s.exchange(cl_te.as_bytes()).await;
    // Two Content-Lengths that disagree, and an obfuscated Transfer-Encoding.
    let double_cl = format!(
        "GET /front HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /hidden2 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    let r2 = s.exchange(double_cl.as_bytes()).await;
    let te_obfuscated = format!(
        "GET /front HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\n\r\nGET /hidden3 HTTP/1.1\r\nHost: {host}\r\n\r\n"
    );
    let r3 = s.exchange(te_obfuscated.as_bytes()).await;
    for (name, r) in [("CL+TE", &r), ("CL+CL", &r2), ("TE", &r3)] {
        assert!(
            !r.contains("origin /hidden"),
            "{name}: a hidden request was served: {r:.300}"
        );
    }
    assert_eq!(
        s.seen("/hidden") + s.seen("/hidden2") + s.seen("/hidden3"),
        0,
        "no hidden request reached the origin"
    );
    assert_eq!(status(&r2), Some(400), "conflicting lengths: {r2:.200}");
    assert_eq!(status(&s.honest("/after").await), Some(200));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_each_for_its_own_host() {
    let s = setup("pipelined").await;
    let host = &s.host;
    let pipelined = format!(
        "GET /one HTTP/1.1\r\nHost: {host}\r\n\r\nGET /two HTTP/1.1\r\nHost: nowhere.example\r\n\r\nGET /three HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let r = s.exchange(pipelined.as_bytes()).await;
    let one = r.find("origin /one").expect("the first answer");
    let two = r
        .find("400 Bad Request")
        .expect("the second, for a name outside the zone");
    let three = r.find("origin /three").expect("the third answer");
    assert!(one < two && two < three, "{r}");
    assert_eq!(s.seen("/two"), 0);
}

#[tokio::test]
async fn traversal_in_paths_stays_a_cache_key_and_files_are_named_by_hash() {
    let s = setup("traversal").await;
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/a/./b/../c",
    ] {
        let r = s.honest(path).await;
        assert_eq!(status(&r), Some(200), "{path}: {r:.200}");
    }
    // Wait for the background disk writes, then look: only hex-named files in objects/.
    let objects = s.disk.join("objects");
    let deadline = Instant::now() + Duration::from_secs(5);
    let names = loop {
        let names: Vec<String> = std::fs::read_dir(&objects)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if names.len() >= 3 || Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!names.is_empty());
    for n in &names {
        assert!(
            n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()),
            "a cache file named {n:?}"
        );
    }
    let outside: Vec<_> = std::fs::read_dir(&s.disk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        outside.iter().all(|n| n == "objects" || n == "tmp"),
        "{outside:?}"
    );
}

/// A nameserver that answers A queries with `first` once, then with loopback, always with
/// TTL 0 so nothing is cached; AAAA queries get an empty answer. Counts the A queries.
async fn rebinding_nameserver(first: Ipv4Addr, a_queries: Arc<AtomicUsize>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.authoritative = true;
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                if q.query_type() == RecordType::A {
                    let ip = if a_queries.fetch_add(1, Ordering::SeqCst) == 0 {
                        first
                    } else {
                        Ipv4Addr::LOCALHOST
                    };
                    reply.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(ip))));
                }
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

/// A proxy for zone `cdn` that resolves origin names at `nameserver`.
async fn proxy_resolving_at(nameserver: SocketAddr, allow_private: bool) -> SocketAddr {
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = allow_private;
    config.origin_nameservers = vec![nameserver];
    serve(config).await
}

/// A proxy with `config` serving on a loopback port, until the test ends.
async fn serve(config: Config) -> SocketAddr {
    common::serve(Proxy::new(config).unwrap()).await
}

/// The response to `GET /secret` for `host`, read until the proxy closes the connection.
async fn get_secret(proxy: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("GET /secret HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// DNS rebinding: a name that resolves to a public address when the proxy checks it and to
/// loopback when it connects must not reach loopback (the address checked is the address
/// connected to). The proxy is pointed at the nameserver above with `origin_nameservers`,
/// as `reef node --origin-dns` does.
#[tokio::test]
async fn a_name_rebound_to_loopback_after_the_check_never_reaches_loopback() {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let origin = origin(seen.clone()).await;
    let a_queries = Arc::new(AtomicUsize::new(0));
    // A public address (example.com's old one) for the first answer: the check passes.
    let ns = rebinding_nameserver(Ipv4Addr::new(93, 184, 216, 34), a_queries.clone()).await;
    let proxy = proxy_resolving_at(ns, false).await;
    let response = get_secret(proxy, &format!("rebind.test.{}.cdn", origin.port())).await;
    assert!(
        a_queries.load(Ordering::SeqCst) >= 2,
        "the connection resolved the name again (so it saw the loopback answer)"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "loopback reached: {response}"
    );
    assert!(!response.contains("origin /secret"), "{response}");
    let status = status(&response).unwrap();
    assert!(status >= 400, "{response}");
}

#[tokio::test]
async fn the_same_nameserver_reaches_a_loopback_origin_when_private_origins_are_allowed() {
    // The control: the set-up above does reach the origin when nothing forbids it, so the
    // test above fails if the connection-time check goes.
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let origin = origin(seen.clone()).await;
    let ns = rebinding_nameserver(Ipv4Addr::LOCALHOST, Arc::new(AtomicUsize::new(0))).await;
    let proxy = proxy_resolving_at(ns, true).await;
    let response = get_secret(proxy, &format!("rebind.test.{}.cdn", origin.port())).await;
    assert!(response.contains("origin /secret"), "{response}");
    assert_eq!(seen.lock().unwrap().get("/secret"), Some(&1));
}
