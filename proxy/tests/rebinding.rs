//! DNS rebinding: an origin name that resolves to a public address when the proxy checks it
//! and to loopback when it connects must not reach loopback. The address checked is the
//! address connected to. A real nameserver on loopback (ours, answering with hickory's
//! wire types) serves the changing answers; the proxy is pointed at it with
//! `origin_nameservers`, as `reef node --origin-dns` does.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use hickory_resolver::proto::op::{Message, OpCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy::{Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// An origin on loopback that counts the requests it gets: the secret a rebinding attacker
/// wants to reach.
async fn loopback_origin(hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                hits.fetch_add(1, Ordering::SeqCst);
                let r = Response::new(Full::new(Bytes::from_static(b"internal secret")));
                async move { Ok::<_, Infallible>(r) }
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
async fn proxy(nameserver: SocketAddr, allow_private: bool) -> SocketAddr {
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = allow_private;
    config.origin_nameservers = vec![nameserver];
    let node = Proxy::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = tx;
        proxy::server::run(listener, node, rx).await;
    });
    addr
}

/// The response to `GET /` for `host`, read until the proxy closes the connection.
async fn get(proxy: SocketAddr, host: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("GET /secret HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_name_rebound_to_loopback_after_the_check_never_reaches_loopback() {
    let hits = Arc::new(AtomicUsize::new(0));
    let origin = loopback_origin(hits.clone()).await;
    let a_queries = Arc::new(AtomicUsize::new(0));
    // A public address (example.com's old one) for the first answer: the check passes.
    let ns = rebinding_nameserver(Ipv4Addr::new(93, 184, 216, 34), a_queries.clone()).await;
    let proxy = proxy(ns, false).await;
    let response = get(proxy, &format!("rebind.test.{}.cdn", origin.port())).await;
    assert!(
        a_queries.load(Ordering::SeqCst) >= 2,
        "the connection resolved the name again (so it saw the loopback answer)"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "loopback reached: {response}"
    );
    assert!(!response.contains("internal secret"), "{response}");
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(status >= 400, "{response}");
}

#[tokio::test]
async fn the_same_nameserver_reaches_a_loopback_origin_when_private_origins_are_allowed() {
    // The control: the set-up above does reach the origin when nothing forbids it, so the
    // test above fails if the connection-time check goes.
    let hits = Arc::new(AtomicUsize::new(0));
    let origin = loopback_origin(hits.clone()).await;
    let ns = rebinding_nameserver(Ipv4Addr::LOCALHOST, Arc::new(AtomicUsize::new(0))).await;
    let proxy = proxy(ns, true).await;
    let response = get(proxy, &format!("rebind.test.{}.cdn", origin.port())).await;
    assert!(response.contains("internal secret"), "{response}");
    // The object and the site's /.well-known/reef.json.
    assert!(hits.load(Ordering::SeqCst) >= 1);
}
