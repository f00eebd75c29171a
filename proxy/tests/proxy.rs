//! The proxy against a real origin (a hyper server on loopback), through real sockets.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::{Config, Proxy};
use tokio::net::TcpListener;

/// Requests the origin saw, per path.
#[derive(Default)]
struct Seen {
    counts: std::sync::Mutex<BTreeMap<String, usize>>,
    posts: AtomicUsize,
    flaky: AtomicUsize,
    busy_now: AtomicUsize,
    busy_max: AtomicUsize,
}

impl Seen {
    fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn origin(seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(serve(&seen, req, addr).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn serve(
    seen: &Seen,
    req: Request<hyper::body::Incoming>,
    me: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    *seen.counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = |status: u16, cc: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        if !cc.is_empty() {
            r.headers_mut().insert("cache-control", cc.parse().unwrap());
        }
        r
    };
    match path.as_str() {
        "/post" if req.method() == http::Method::POST => {
            let n = seen.posts.fetch_add(1, Ordering::SeqCst) + 1;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            reply(
                200,
                "",
                format!("post {n}: {}", String::from_utf8_lossy(&body)),
            )
        }
        "/post" => {
            let n = seen.posts.load(Ordering::SeqCst);
            reply(200, "max-age=60", format!("version {n}"))
        }
        "/cache" => reply(200, "max-age=60", "cacheable body".into()),
        "/nostore" => reply(200, "no-store", "fresh every time".into()),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            reply(200, "max-age=60", "x".repeat(100_000))
        }
        "/echo" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            reply(200, "no-store", lines.join("\n"))
        }
        "/redirect" => {
            let mut r = reply(302, "", String::new());
            let to = format!("http://origin.test:{}/target?x=1", me.port());
            r.headers_mut().insert("location", to.parse().unwrap());
            r
        }
        "/flaky" => {
            if seen.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                reply(200, "max-age=0", "good copy".into())
            } else {
                reply(503, "", "down".into())
            }
        }
        "/etag" => {
            let inm = req
                .headers()
                .get("if-none-match")
                .map(|v| v.to_str().unwrap().to_string());
            if inm.as_deref() == Some("\"v1\"") {
                *seen
                    .counts
                    .lock()
                    .unwrap()
                    .entry("/etag 304".into())
                    .or_default() += 1;
                let mut r = reply(304, "max-age=0", String::new());
                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                r.headers_mut()
                    .insert("x-refreshed", "yes".parse().unwrap());
                return r;
            }
            let mut r = reply(200, "max-age=0", "etag body".into());
            r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            r
        }
        "/range" => reply(200, "max-age=60", "0123456789".repeat(10)),
        "/vary" => {
            let enc = req
                .headers()
                .get("accept-encoding")
                .map_or("none", |v| v.to_str().unwrap())
                .to_string();
            let mut r = reply(200, "max-age=60", format!("encoded as {enc}"));
            r.headers_mut()
                .insert("vary", "Accept-Encoding".parse().unwrap());
            r
        }
        "/plain" => reply(200, "", "no freshness, no validator".into()),
        "/flaky-cached" => {
            let n = *seen
                .counts
                .lock()
                .unwrap()
                .get("/flaky-cached")
                .unwrap_or(&0);
            if n == 1 {
                reply(200, "max-age=0", "good copy".into())
            } else {
                reply(503, "max-age=60", "down, and says to cache it".into())
            }
        }
        p if p.starts_with("/busy/") => {
            let now = seen.busy_now.fetch_add(1, Ordering::SeqCst) + 1;
            seen.busy_max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen.busy_now.fetch_sub(1, Ordering::SeqCst);
            reply(200, "max-age=60", "one of many".into())
        }
        "/cookie" => {
            let mut r = reply(200, "max-age=60", "with cookie".into());
            r.headers_mut()
                .insert("set-cookie", "session=secret".parse().unwrap());
            r
        }
        _ => reply(404, "", "not here".into()),
    }
}

struct Setup {
    proxy: SocketAddr,
    host: String,
    seen: Arc<Seen>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

async fn setup(allow_private: bool) -> Setup {
    setup_with(allow_private, |_| {}).await
}

/// Zone `cdn`, `origin.test` resolving to `origin`, private origins allowed.
fn config_for(origin: SocketAddr) -> Config {
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = true;
    config.resolve.insert("origin.test".into(), origin.ip());
    config
}

async fn setup_with(allow_private: bool, tweak: impl FnOnce(&mut Config)) -> Setup {
    let seen = Arc::new(Seen::default());
    let origin = origin(seen.clone()).await;
    let mut config = config_for(origin);
    config.allow_private_origins = allow_private;
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _tx;
        proxy::server::run(listener, Proxy::new(config).unwrap(), rx).await
    });
    Setup {
        proxy: addr,
        host: format!("origin.test.{}.cdn", origin.port()),
        seen,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Setup {
    async fn get(
        &self,
        method: &str,
        path: &str,
        host: &str,
        extra: &[(&str, &str)],
    ) -> (Response<()>, Bytes) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy))
            .header("host", host);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (Response::from_parts(parts, ()), bytes)
    }

    async fn cdn(&self, path: &str) -> (Response<()>, Bytes) {
        self.get("GET", path, &self.host.clone(), &[]).await
    }
}

fn header(r: &Response<()>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn serves_the_second_request_from_cache() {
    let s = setup(true).await;
    let (r1, b1) = s.cdn("/cache").await;
    assert_eq!(r1.status(), 200);
    assert_eq!(b1, "cacheable body");
    assert!(
        header(&r1, "cache-status").contains("fwd=miss"),
        "{:?}",
        r1.headers()
    );
    let (r2, b2) = s.cdn("/cache").await;
    assert_eq!(b2, "cacheable body");
    assert!(
        header(&r2, "cache-status").contains("hit"),
        "{:?}",
        r2.headers()
    );
    assert!(r2.headers().contains_key("age"));
    assert_eq!(header(&r2, "via"), "1.1 reef");
    assert_eq!(s.seen.count("/cache"), 1);
}

#[tokio::test]
async fn concurrent_misses_share_one_origin_fetch() {
    let s = Arc::new(setup(true).await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.cdn("/slow").await }));
    }
    for t in tasks {
        let (r, body) = t.await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(body.len(), 100_000);
    }
    assert_eq!(s.seen.count("/slow"), 1, "one fetch for twenty clients");
}

#[tokio::test]
async fn no_store_is_fetched_every_time() {
    let s = setup(true).await;
    s.cdn("/nostore").await;
    s.cdn("/nostore").await;
    assert_eq!(s.seen.count("/nostore"), 2);
}

#[tokio::test]
async fn head_fills_the_cache_and_carries_no_body() {
    let s = setup(true).await;
    let host = s.host.clone();
    let (r, body) = s.get("HEAD", "/cache", &host, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(body.is_empty());
    let (r, body) = s.cdn("/cache").await;
    assert!(header(&r, "cache-status").contains("hit"));
    assert_eq!(body, "cacheable body");
    assert_eq!(s.seen.count("/cache"), 1);
}

#[tokio::test]
async fn bad_names_get_a_help_page_and_other_methods_405() {
    let s = setup(true).await;
    let (r, body) = s.get("GET", "/", "www.example.com", &[]).await;
    assert_eq!(r.status(), 400);
    assert!(
        header(&r, "cache-status").starts_with("reef; fwd=request"),
        "{:?}",
        r.headers()
    );
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("www.example.com.cdn"), "{page}");
    let (r, _) = s.get("GET", "/", "localhost.cdn", &[]).await;
    assert_eq!(r.status(), 400);
    let host = s.host.clone();
    let (r, _) = s.get("POST", "/cache", &host, &[]).await;
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), "GET, HEAD");
    assert!(header(&r, "cache-status").starts_with("reef;"));
    assert_eq!(s.seen.count("/cache"), 0);
}

#[tokio::test]
async fn origin_sees_via_forwarded_for_and_no_cookies() {
    let s = setup(true).await;
    let host = s.host.clone();
    let (_, body) = s
        .get(
            "GET",
            "/echo",
            &host,
            &[
                ("cookie", "id=1"),
                ("user-agent", "curl/8"),
                ("connection", "x-private"),
                ("x-private", "1"),
            ],
        )
        .await;
    let seen = String::from_utf8_lossy(&body);
    assert!(seen.contains("via: 1.1 reef"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(seen.contains("user-agent: curl/8 reef/"), "{seen}");
    assert!(
        seen.contains(&format!(
            "host: origin.test:{}",
            s.host.split('.').nth(2).unwrap()
        )),
        "{seen}"
    );
    assert!(!seen.contains("cookie"), "cookies stripped: {seen}");
    assert!(
        !seen.contains("x-private"),
        "hop-by-hop named in Connection removed: {seen}"
    );
}

#[tokio::test]
async fn set_cookie_is_stripped_by_default() {
    let s = setup(true).await;
    let (r, _) = s.cdn("/cookie").await;
    assert!(!r.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn redirects_to_the_origin_stay_on_the_cdn() {
    let s = setup(true).await;
    let (r, _) = s.cdn("/redirect").await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        header(&r, "location"),
        format!("http://{}/target?x=1", s.host)
    );
}

#[tokio::test]
async fn a_stale_copy_beats_an_origin_error() {
    let s = setup(true).await;
    let (r, body) = s.cdn("/flaky").await;
    assert_eq!(
        (r.status().as_u16(), body.as_ref()),
        (200, &b"good copy"[..])
    );
    // Stale at once (max-age=0); the origin now answers 503: the good copy is served.
    let (r, body) = s.cdn("/flaky").await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, "good copy");
    assert!(
        header(&r, "cache-status").contains("stale"),
        "{:?}",
        r.headers()
    );
    assert_eq!(s.seen.count("/flaky"), 2);
}

#[tokio::test]
async fn private_origins_are_refused_by_default() {
    let s = setup(false).await;
    let (r, _) = s.cdn("/cache").await;
    assert_eq!(r.status(), 403);
    assert_eq!(s.seen.count("/cache"), 0);
}

#[tokio::test]
async fn stale_copies_are_revalidated_with_their_validators() {
    let s = setup(true).await;
    let (r, body) = s.cdn("/etag").await;
    assert_eq!(
        (r.status().as_u16(), body.as_ref()),
        (200, &b"etag body"[..])
    );
    // Stale at once (max-age=0): the origin is asked If-None-Match and answers 304.
    let (r, body) = s.cdn("/etag").await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, "etag body");
    assert!(
        header(&r, "cache-status").contains("fwd-status=304"),
        "{:?}",
        r.headers()
    );
    assert_eq!(
        header(&r, "x-refreshed"),
        "yes",
        "headers merged from the 304"
    );
    assert_eq!(s.seen.count("/etag 304"), 1);
}

#[tokio::test]
async fn client_conditionals_are_answered_from_cache() {
    let s = setup(true).await;
    s.cdn("/etag").await;
    let host = s.host.clone();
    // The stored copy is revalidated with the origin (304), and the client's own condition
    // is answered from it: 304, no body.
    let (r, _) = s
        .get("GET", "/etag", &host, &[("if-none-match", "\"v1\"")])
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), "\"v1\"");
}

#[tokio::test]
async fn ranges_come_from_the_cache_and_a_range_miss_fetches_the_whole_object_once() {
    let s = setup(true).await;
    let host = s.host.clone();
    let (r, body) = s
        .get("GET", "/range", &host, &[("range", "bytes=10-19")])
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), "bytes 10-19/100");
    assert_eq!(body, "0123456789");
    let (r, body) = s
        .get("GET", "/range", &host, &[("range", "bytes=-5")])
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(body, "56789");
    assert!(header(&r, "cache-status").contains("hit"));
    let (r, body) = s
        .get("GET", "/range", &host, &[("range", "bytes=0-1,98-99")])
        .await;
    assert_eq!(r.status(), 206);
    assert!(header(&r, "content-type").starts_with("multipart/byteranges"));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("bytes 0-1/100\r\n\r\n01") && text.contains("bytes 98-99/100\r\n\r\n89"),
        "{text}"
    );
    let (r, _) = s
        .get("GET", "/range", &host, &[("range", "bytes=500-")])
        .await;
    assert_eq!(r.status(), 416);
    let (r, body) = s.cdn("/range").await;
    assert_eq!((r.status().as_u16(), body.len()), (200, 100));
    assert_eq!(
        s.seen.count("/range"),
        1,
        "one whole fetch served every range"
    );
}

#[tokio::test]
async fn not_found_is_cached_briefly() {
    let s = setup(true).await;
    let (r, _) = s.cdn("/missing").await;
    assert_eq!(r.status(), 404);
    let (r, _) = s.cdn("/missing").await;
    assert_eq!(r.status(), 404);
    assert!(
        header(&r, "cache-status").contains("hit"),
        "{:?}",
        r.headers()
    );
    assert_eq!(s.seen.count("/missing"), 1);
}

#[tokio::test]
async fn variants_are_kept_apart_by_vary() {
    let s = setup(true).await;
    let host = s.host.clone();
    let (_, gzip) = s
        .get("GET", "/vary", &host, &[("accept-encoding", "gzip")])
        .await;
    let (_, br) = s
        .get("GET", "/vary", &host, &[("accept-encoding", "br")])
        .await;
    assert_eq!(gzip, "encoded as gzip");
    assert_eq!(br, "encoded as br");
    let (r, again) = s
        .get("GET", "/vary", &host, &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(again, "encoded as gzip");
    assert!(header(&r, "cache-status").contains("hit"));
    assert_eq!(s.seen.count("/vary"), 2, "one fetch per variant");
}

#[tokio::test]
async fn responses_without_freshness_or_validator_are_not_stored() {
    let s = setup(true).await;
    s.cdn("/plain").await;
    s.cdn("/plain").await;
    assert_eq!(s.seen.count("/plain"), 2);
}

/// An HTTPS origin on loopback with a self-signed certificate for `origin.test`.
async fn tls_origin() -> (SocketAddr, rustls::pki_types::CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["origin.test".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"over tls")));
                    r.headers_mut()
                        .insert("cache-control", "max-age=60".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, der)
}

#[tokio::test]
async fn https_origins_are_fetched_with_verified_certificates() {
    let (tls, cert) = tls_origin().await;
    // Reverse-proxy mode names an https origin on any port (CDN names use the 443 label).
    let origin = format!("https://origin.test:{}", tls.port());
    let trusted = setup_with(true, |c| {
        c.reverse_origin = Some(proxy::route::parse_origin(&origin).unwrap());
        c.extra_roots.push(cert.clone());
    })
    .await;
    let (r, body) = trusted.get("GET", "/", "my.site.example", &[]).await;
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    assert_eq!(body, "over tls");
    // Without trusting the certificate, the fetch fails: never serve an unverified origin.
    let untrusted = setup_with(true, |c| {
        c.reverse_origin = Some(proxy::route::parse_origin(&origin).unwrap());
    })
    .await;
    let (r, _) = untrusted.get("GET", "/", "my.site.example", &[]).await;
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn an_error_never_replaces_a_good_copy() {
    let s = setup(true).await;
    assert_eq!(s.cdn("/flaky-cached").await.1, "good copy");
    for _ in 0..2 {
        let (r, body) = s.cdn("/flaky-cached").await;
        assert_eq!(
            (r.status().as_u16(), body.as_ref()),
            (200, &b"good copy"[..])
        );
    }
}

#[tokio::test]
async fn unkeyed_and_spoofed_headers_never_reach_the_origin() {
    let s = setup(true).await;
    let host = s.host.clone();
    let (_, body) = s
        .get(
            "GET",
            "/echo",
            &host,
            &[
                ("x-forwarded-host", "evil.example"),
                ("x-original-url", "/admin"),
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=6.6.6.6"),
            ],
        )
        .await;
    let seen = String::from_utf8_lossy(&body);
    assert!(
        !seen.contains("evil.example") && !seen.contains("/admin"),
        "{seen}"
    );
    assert!(!seen.contains("6.6.6.6"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");

    // Nor do they reach rewritten URLs or the cache key: a poisoner's redirect and object
    // are what every later client gets.
    let spoof = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-scheme", "https"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "6666"),
        ("x-host", "evil.example"),
        ("forwarded", "host=evil.example;proto=https"),
    ];
    let (r, _) = s.get("GET", "/redirect", &host, &spoof).await;
    assert_eq!(
        header(&r, "location"),
        format!("http://{}/target?x=1", s.host)
    );
    let (_, poisoned) = s.get("GET", "/cache", &host, &spoof).await;
    let (r, plain) = s.cdn("/cache").await;
    assert_eq!(poisoned, plain);
    assert!(
        header(&r, "cache-status").contains("hit"),
        "one cache entry, whatever the spoofed headers: {}",
        header(&r, "cache-status")
    );
}

#[tokio::test]
async fn an_origin_gets_at_most_its_concurrency_of_fetches() {
    let s = Arc::new(setup_with(true, |c| c.origin_concurrency = 2).await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.cdn(&format!("/busy/{i}")).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0.status(), 200);
    }
    assert_eq!(
        s.seen.busy_max.load(Ordering::SeqCst),
        2,
        "eight URLs, two at a time"
    );
}

#[tokio::test]
async fn a_client_over_its_request_rate_gets_429() {
    let s = setup_with(true, |c| {
        c.limits.requests_per_second = 1.0;
        c.limits.burst = 2.0;
    })
    .await;
    assert_eq!(s.cdn("/cache").await.0.status(), 200);
    assert_eq!(s.cdn("/cache").await.0.status(), 200);
    let (r, _) = s.cdn("/cache").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    assert!(header(&r, "cache-status").contains("rate-limited"));
}

#[tokio::test]
async fn connections_beyond_a_clients_limit_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup_with(true, |c| c.limits.connections_per_client = 2).await;
    let _first = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
    let _second = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut third = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
    let req = format!(
        "GET /cache HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.host
    );
    let _ = third.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let n = third.read_to_end(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed unanswered");
    drop(_first);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        s.cdn("/cache").await.0.status(),
        200,
        "a freed slot serves again"
    );
}

/// A raw HTTP/1.1 POST of `body` through the proxy: (status line, body).
async fn post(proxy: SocketAddr, host: &str, path: &str, body: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.lines().next().unwrap_or("").to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn pass_methods_reach_ones_own_origin_uncached_and_invalidate() {
    let plain = setup(true).await;
    let origin = format!(
        "http://origin.test:{}",
        plain.host.split('.').nth(2).unwrap()
    );
    let s = setup_with(true, |c| {
        c.reverse_origin = Some(proxy::route::parse_origin(&origin).unwrap());
        c.pass_methods = true;
    })
    .await;
    assert_eq!(s.get("GET", "/post", "my.site", &[]).await.1, "version 0");
    assert!(
        header(
            &s.get("GET", "/post", "my.site", &[]).await.0,
            "cache-status"
        )
        .contains("hit")
    );
    let (status, body) = post(s.proxy, "my.site", "/post", "hello").await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("post 1: hello"), "{body}");
    // The POST invalidated the stored copy: the next GET goes to the origin.
    let (r, body) = s.get("GET", "/post", "my.site", &[]).await;
    assert_eq!(body, "version 1");
    assert!(!header(&r, "cache-status").contains("hit"));
    // CDN names never pass anything.
    let (status, _) = post(s.proxy, &s.host, "/post", "x").await;
    assert!(status.contains("405"), "{status}");
    // Nor does one's own site without --pass-methods.
    let (status, _) = post(plain.proxy, "my.site", "/post", "x").await;
    assert!(status.contains("405"), "{status}");
}

#[tokio::test]
async fn a_site_over_its_fair_share_gets_403_while_others_are_served() {
    // Two sites (two origin names for the same loopback origin).
    let s = setup_with(true, |c| {
        let ip = c.resolve["origin.test"];
        c.resolve.insert("other.test".into(), ip);
        c.bandwidth_quota = Some(300_000);
    })
    .await;
    let other = s.host.replacen("origin.test", "other.test", 1);
    // One site takes most of the hour's quota (the 100 KB /slow object, twice).
    for _ in 0..2 {
        assert_eq!(s.cdn("/slow").await.0.status(), 200);
    }
    assert_eq!(s.get("GET", "/cache", &other, &[]).await.0.status(), 200);
    let (r, body) = s.cdn("/slow").await;
    assert_eq!(r.status(), 403, "over its share of 150 KB");
    assert!(String::from_utf8_lossy(&body).contains("fair share"));
    assert!(header(&r, "cache-status").contains("fair-share"));
    assert_eq!(
        s.get("GET", "/cache", &other, &[]).await.0.status(),
        200,
        "others are served"
    );
}

/// Reads one HTTP/1.1 response with a `Content-Length` from `s`.
async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the proxy closed the connection: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_keep_alive_connection_idle_for_a_while_still_serves_the_next_requests() {
    use tokio::io::AsyncWriteExt;
    let s = setup(true).await;
    let mut conn = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", s.host);
    conn.write_all(get("/cache").as_bytes()).await.unwrap();
    let first = read_response(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    // Idle past the point where the connection is parked (its buffers given back).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Two pipelined requests, the second split across writes: both answered, in order.
    let two = format!("{}{}", get("/nostore"), get("/cache"));
    let (head, tail) = two.split_at(two.len() - 10);
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.write_all(tail.as_bytes()).await.unwrap();
    let second = read_response(&mut conn).await;
    assert!(second.contains("fresh every time"), "{second}");
    let third = read_response(&mut conn).await;
    assert!(
        third.contains("; hit") && third.contains("cacheable body"),
        "{third}"
    );
    for r in [&second, &third] {
        assert!(!r.to_ascii_lowercase().contains("connection: close"), "{r}");
    }
    assert_eq!(s.seen.count("/cache"), 1);
}

#[tokio::test]
async fn a_crowd_of_idle_connections_is_parked_and_each_still_serves_its_next_request() {
    use tokio::io::AsyncWriteExt;
    // One client making 300 requests: not rate-limited here.
    let s = setup_with(true, |c| c.limits.requests_per_second = 0.0).await;
    let get = format!("GET /cache HTTP/1.1\r\nHost: {}\r\n\r\n", s.host);
    // More than stay warm: most are parked as soon as they idle.
    let mut conns = Vec::new();
    for _ in 0..150 {
        let mut c = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
        c.write_all(get.as_bytes()).await.unwrap();
        let r = read_response(&mut c).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every one of them, in reverse order, is answered again on the same connection.
    for c in conns.iter_mut().rev() {
        c.write_all(get.as_bytes()).await.unwrap();
        let r = read_response(c).await;
        assert!(r.contains("; hit") && r.contains("cacheable body"), "{r}");
    }
    assert_eq!(s.seen.count("/cache"), 1);
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed_when_the_server_stops() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = Arc::new(Seen::default());
    let origin = origin(seen.clone()).await;
    let config = config_for(origin);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(proxy::server::run(
        listener,
        Proxy::new(config).unwrap(),
        rx,
    ));
    let host = format!("origin.test.{}.cdn", origin.port());
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let get = format!("GET /cache HTTP/1.1\r\nHost: {host}\r\n\r\n");
    idle.write_all(get.as_bytes()).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Past the warm period: the idle connection is parked too.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    stop.send(true).unwrap();
    server.await.unwrap();
    for c in [&mut idle, &mut silent] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed in time, not left open")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without a response");
    }
}

#[tokio::test]
async fn plain_http_also_speaks_h2c_with_prior_knowledge() {
    let s = setup(true).await;
    let stream = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for expected in ["fwd=miss", "hit"] {
        let req = Request::get(format!("http://{}/cache", s.host))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let cs = resp.headers()["cache-status"].to_str().unwrap().to_string();
        assert!(cs.contains(expected), "{cs}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "cacheable body");
    }
}

#[tokio::test]
async fn a_connection_the_client_ends_is_closed_right_after_the_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(true).await;
    let host = &s.host;
    // Misses of 100 kB from a slow origin: the body is written over several polls.
    for req in [
        format!("GET /slow?1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("GET /slow?2 HTTP/1.0\r\nHost: {host}\r\n\r\n"),
    ] {
        let mut conn = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // Well within the 10 s a kept-alive idle connection would stay open.
        tokio::time::timeout(Duration::from_secs(3), conn.read_to_end(&mut out))
            .await
            .expect("the connection closed after the response")
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("HTTP/1.")
                && out[8..].starts_with(" 200")
                && out.ends_with(&"x".repeat(100)),
            "{req}"
        );
    }
}
