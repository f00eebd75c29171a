//! The proxy's use of the `Directory` seam, with an in-memory fake directory whose peers
//! serve from byte buffers, against a real origin (a hyper server on loopback) and a real
//! proxy, through real sockets.
//!
//! The tests run on tokio's current-thread runtime (the `#[tokio::test]` default): a fetch
//! task's last steps (`announce`, then leaving the flights) happen in one poll, so once the
//! fake has seen `announce`, the fetch is over and the next request starts a new one.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::directory::{
    Directory, Holder, Holding, PeerChunk, PeerError, PeerRequest, PeerResponse,
};
use proxy::{Config, Proxy};
use tokio::net::TcpListener;

/// Size of the data chunks a fake peer sends.
const PEER_CHUNK: usize = 16 * 1024;

/// Length of the large object, spanning many chunks.
const BIG_LEN: usize = 200_000;

/// The large object's strong validator (the origin's and every peer's).
const BIG_ETAG: &str = "\"big-v1\"";

/// What happened, in order, across the fake directory and the origin.
type Events = Arc<Mutex<Vec<String>>>;

fn big_body() -> Bytes {
    (0..BIG_LEN)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

// ---------------------------------------------------------------------------------------
// The origin.

/// One request the origin saw.
#[derive(Debug, Clone)]
struct OriginRequest {
    path: String,
    range: Option<String>,
    if_range: Option<String>,
}

#[derive(Default)]
struct Origin {
    seen: Mutex<Vec<OriginRequest>>,
    events: Events,
}

impl Origin {
    fn requests(&self, path: &str) -> Vec<OriginRequest> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn origin(state: Arc<Origin>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(serve(&state, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn serve(state: &Origin, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let path = req.uri().path().to_string();
    if path == proxy::site::WELL_KNOWN_PATH {
        // No publisher policy (and not one of the object requests these tests count).
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let seen = OriginRequest {
        path: path.clone(),
        range: header("range"),
        if_range: header("if-range"),
    };
    state
        .events
        .lock()
        .unwrap()
        .push(format!("origin {path} range={:?}", seen.range));
    state.seen.lock().unwrap().push(seen.clone());
    let reply = |status: u16, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("cache-control", "max-age=60".parse().unwrap());
        r
    };
    match path.as_str() {
        "/big" => {
            let body = big_body();
            // `Range: bytes=N-` honoured only while `If-Range` names the current ETag.
            let from = seen
                .range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|_| seen.if_range.as_deref().is_none_or(|v| v == BIG_ETAG))
                .filter(|&n| n < body.len());
            let mut r = match from {
                Some(n) => {
                    let mut r = reply(206, body.slice(n..));
                    let range = format!("bytes {n}-{}/{}", body.len() - 1, body.len());
                    r.headers_mut()
                        .insert("content-range", range.parse().unwrap());
                    r
                }
                None => reply(200, body),
            };
            r.headers_mut().insert("etag", BIG_ETAG.parse().unwrap());
            r.headers_mut()
                .insert("accept-ranges", "bytes".parse().unwrap());
            r
        }
        p => reply(200, Bytes::from(format!("origin body of {p}"))),
    }
}

// ---------------------------------------------------------------------------------------
// The fake directory.

/// How a fake peer's transfer breaks off.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The stream yields `Err(PeerError::Transfer)`.
    Error,
    /// The stream ends without `PeerChunk::End`.
    Silence,
}

/// What a fake peer holds, and how it serves it.
#[derive(Debug, Clone)]
struct PeerCopy {
    headers: HeaderMap,
    body: Bytes,
    /// The digest sent in `PeerChunk::End`.
    sha256: [u8; 32],
    /// Breaks off once this absolute byte position is reached.
    cut: Option<(usize, Cut)>,
}

impl PeerCopy {
    /// An honest, complete copy of `body`.
    fn good(body: Bytes, headers: &[(&str, &str)]) -> PeerCopy {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        PeerCopy {
            sha256: proxy::body::sha256(&body),
            headers: h,
            body,
            cut: None,
        }
    }

    /// The large object as the origin serves it (strong ETag, Content-Length).
    fn big() -> PeerCopy {
        let len = BIG_LEN.to_string();
        PeerCopy::good(
            big_body(),
            &[
                ("cache-control", "max-age=60"),
                ("etag", BIG_ETAG),
                ("content-length", &len),
            ],
        )
    }

    fn cut_at(self, at: usize, how: Cut) -> PeerCopy {
        PeerCopy {
            cut: Some((at, how)),
            ..self
        }
    }
}

fn holder(name: &str) -> Holder {
    Holder {
        name: name.into(),
        pending: false,
    }
}

#[derive(Debug, Default)]
struct FakeDirectory {
    /// What `locate` answers.
    near: Mutex<Vec<Holder>>,
    /// What `claim` answers.
    claimant: Mutex<Option<Holder>>,
    /// What each peer (by name) holds.
    copies: Mutex<HashMap<String, PeerCopy>>,
    /// Shared with the origin, for ordering.
    events: Events,
    locates: Mutex<Vec<String>>,
    claims: Mutex<Vec<String>>,
    announces: Mutex<Vec<(String, Holding)>>,
    fetches: Mutex<Vec<(String, PeerRequest)>>,
    reports: Mutex<Vec<(String, PeerError)>>,
}

impl FakeDirectory {
    fn new(events: Events) -> FakeDirectory {
        FakeDirectory {
            events,
            ..FakeDirectory::default()
        }
    }

    /// `name` holds `copy`, and `locate` names it (after those already named).
    fn holds(&self, name: &str, copy: PeerCopy) {
        self.copies.lock().unwrap().insert(name.into(), copy);
        self.near.lock().unwrap().push(holder(name));
    }

    fn event(&self, e: String) {
        self.events.lock().unwrap().push(e);
    }

    fn announced(&self) -> Vec<(String, Holding)> {
        self.announces.lock().unwrap().clone()
    }

    /// (holder, offset) of every fetch asked of a peer.
    fn fetched(&self) -> Vec<(String, u64)> {
        self.fetches
            .lock()
            .unwrap()
            .iter()
            .map(|(name, req)| (name.clone(), req.offset))
            .collect()
    }
}

#[async_trait::async_trait]
impl Directory for FakeDirectory {
    async fn locate(&self, key: &str, _trace: Option<&str>) -> Vec<Holder> {
        self.event(format!("locate {key}"));
        self.locates.lock().unwrap().push(key.into());
        self.near.lock().unwrap().clone()
    }

    async fn claim(&self, key: &str, _trace: Option<&str>) -> Option<Holder> {
        self.event(format!("claim {key}"));
        self.claims.lock().unwrap().push(key.into());
        self.claimant.lock().unwrap().clone()
    }

    fn announce(&self, key: &str, holding: Holding) {
        self.event(format!("announce {key} {holding:?}"));
        self.announces.lock().unwrap().push((key.into(), holding));
    }

    async fn fetch(&self, from: &Holder, req: PeerRequest) -> Result<PeerResponse, PeerError> {
        self.event(format!("fetch {} @{}", from.name, req.offset));
        self.fetches
            .lock()
            .unwrap()
            .push((from.name.clone(), req.clone()));
        let copy = self
            .copies
            .lock()
            .unwrap()
            .get(&from.name)
            .cloned()
            .ok_or(PeerError::NotFound)?;
        let len = copy.body.len();
        let start = usize::try_from(req.offset).unwrap().min(len);
        let stop = copy.cut.map_or(len, |(at, _)| at.clamp(start, len));
        let mut items: Vec<Result<PeerChunk, PeerError>> = (start..stop)
            .step_by(PEER_CHUNK)
            .map(|i| {
                Ok(PeerChunk::Data(
                    copy.body.slice(i..(i + PEER_CHUNK).min(stop)),
                ))
            })
            .collect();
        match copy.cut {
            None => items.push(Ok(PeerChunk::End {
                sha256: copy.sha256,
            })),
            Some((_, Cut::Error)) => {
                items.push(Err(PeerError::Transfer("connection reset".into())));
            }
            Some((_, Cut::Silence)) => {}
        }
        Ok(PeerResponse {
            status: StatusCode::OK,
            headers: copy.headers,
            cache_status: Some(HeaderValue::from_str(&format!("{}; hit", from.name)).unwrap()),
            body: Box::pin(futures_util::stream::iter(items)),
        })
    }

    fn report(&self, from: &Holder, problem: &PeerError) {
        self.event(format!("report {} {problem:?}", from.name));
        self.reports
            .lock()
            .unwrap()
            .push((from.name.clone(), problem.clone()));
        // As a real directory would: a holder that served something wrong is not named again.
        self.near.lock().unwrap().retain(|h| h != from);
    }
}

// ---------------------------------------------------------------------------------------
// The proxy and a client.

struct Setup {
    proxy: SocketAddr,
    host: String,
    port: u16,
    origin: Arc<Origin>,
    dir: Arc<FakeDirectory>,
    /// The proxy itself (for its store).
    handle: Arc<Proxy>,
    events: Events,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

/// A real origin, and a real proxy using `dir` (built over the shared event log).
async fn setup(dir: impl FnOnce(Events) -> FakeDirectory) -> Setup {
    let events = Events::default();
    let origin_state = Arc::new(Origin {
        events: events.clone(),
        ..Origin::default()
    });
    let origin = origin(origin_state.clone()).await;
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = true;
    config.resolve.insert("origin.test".into(), origin.ip());
    let dir = Arc::new(dir(events.clone()));
    let proxy = Proxy::new(config).unwrap();
    proxy.set_directory(dir.clone());
    let handle = proxy.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _tx;
        proxy::server::run(listener, proxy, rx).await
    });
    Setup {
        proxy: addr,
        host: format!("origin.test.{}.cdn", origin.port()),
        port: origin.port(),
        origin: origin_state,
        dir,
        handle,
        events,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl Setup {
    /// GET `path` through the proxy: the response head, and the body or why it broke off.
    async fn get(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> (Response<()>, Result<Bytes, String>) {
        let mut req = Request::builder()
            .uri(format!("http://{}{path}", self.proxy))
            .header("host", &self.host);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| e.to_string());
        (Response::from_parts(parts, ()), bytes)
    }

    /// The cache key of `path`.
    fn key(&self, path: &str) -> String {
        format!("http://origin.test:{}{path}", self.port)
    }

    /// Waits until the fetch of `path` has announced how it ended.
    async fn announced(&self, path: &str) -> Holding {
        let key = self.key(path);
        let find = || {
            self.dir
                .announced()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, h)| h)
        };
        eventually(&format!("an announce of {key}"), || find().is_some()).await;
        find().unwrap()
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

/// Waits (briefly, polling) until `cond` holds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn header(r: &Response<()>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A body compared by length and digest (a 200 KB diff helps nobody).
fn same_body(got: &Bytes, want: &Bytes) -> bool {
    got.len() == want.len() && proxy::body::sha256(got) == proxy::body::sha256(want)
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn a_located_peer_serves_a_miss_and_the_copy_is_cached_and_announced() {
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.holds(
            "peer-a",
            PeerCopy::good(
                Bytes::from_static(b"the peer's copy"),
                &[("cache-control", "max-age=60")],
            ),
        );
        dir
    })
    .await;
    let (r, body) = s.get("/obj", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body.unwrap(), "the peer's copy");
    assert_eq!(s.origin.count(), 0, "the origin is never asked");

    // RFC 9211: the peer's entry (nearer the origin) first, then ours naming the peer.
    let cache_status = header(&r, "cache-status");
    let entries: Vec<&str> = cache_status.split(", ").collect();
    assert_eq!(entries.len(), 2, "{cache_status}");
    assert_eq!(entries[0], "peer-a; hit", "{cache_status}");
    assert!(entries[1].starts_with("reef; fwd=miss"), "{cache_status}");
    assert!(
        entries[1].contains("detail=\"peer peer-a\""),
        "{cache_status}"
    );

    let key = s.key("/obj");
    assert_eq!(s.announced("/obj").await, Holding::Cached);
    assert_eq!(*s.dir.locates.lock().unwrap(), vec![key.clone()]);
    assert_eq!(s.dir.fetched(), vec![("peer-a".to_string(), 0)]);
    let asked = s.dir.fetches.lock().unwrap()[0].1.clone();
    assert_eq!(asked.key, key);
    assert!(asked.trace.is_some(), "the trace ID goes to the peer");
    assert!(s.dir.claims.lock().unwrap().is_empty(), "a holder answered");

    let (r, body) = s.get("/obj", &[]).await;
    assert_eq!(body.unwrap(), "the peer's copy");
    assert_eq!(header(&r, "cache-status"), "reef; hit");
    assert_eq!(s.dir.locates.lock().unwrap().len(), 1, "a hit asks no one");
    assert_eq!(s.dir.fetched().len(), 1);
    assert_eq!(s.origin.count(), 0);
    assert_eq!(s.dir.announced(), vec![(key, Holding::Cached)]);
}

/// A peer sends bytes that do not hash to the digest it sends: `headers` are its stored
/// headers (with or without Content-Length).
async fn wrong_bytes_from_a_peer(headers: &[(&str, &str)]) {
    let good = Bytes::from(vec![b'x'; 100_000]);
    let mut bad = good.to_vec();
    bad[50_000] = b'y';
    let copy = PeerCopy {
        body: bad.into(),
        ..PeerCopy::good(good.clone(), headers)
    };
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.holds("liar", copy);
        dir
    })
    .await;
    let (r, body) = s.get("/obj", &[]).await;
    let key = s.key("/obj");
    assert_eq!(s.announced("/obj").await, Holding::Dropped);
    assert_eq!(
        *s.dir.reports.lock().unwrap(),
        vec![("liar".to_string(), PeerError::WrongBytes)]
    );

    // Nothing was stored: the next request is a miss that asks the directory again (the
    // liar is no longer named) and then the origin.
    let (r2, body2) = s.get("/obj", &[]).await;
    assert_eq!(r2.status(), 200);
    assert_eq!(body2.unwrap(), "origin body of /obj");
    assert!(
        !header(&r2, "cache-status").contains("hit"),
        "{:?}",
        r2.headers()
    );
    assert_eq!(
        *s.dir.locates.lock().unwrap(),
        vec![key.clone(), key.clone()]
    );
    assert_eq!(s.origin.count(), 1);
    assert_eq!(s.dir.fetched(), vec![("liar".to_string(), 0)]);

    // The client of the first request never got a complete, successful body.
    assert_eq!(r.status(), 200, "the head was sent before the body arrived");
    match body {
        Err(_) => {}
        Ok(b) => panic!(
            "the client received a complete body of {} bytes from a peer whose bytes do not \
             match its SHA-256 (Cache-Status: {})",
            b.len(),
            header(&r, "cache-status")
        ),
    }
}

#[tokio::test]
async fn wrong_bytes_from_a_peer_are_reported_never_stored_and_cut_off() {
    wrong_bytes_from_a_peer(&[("cache-control", "max-age=60")]).await;
}

#[tokio::test]
async fn wrong_bytes_from_a_peer_are_cut_off_even_with_a_content_length() {
    wrong_bytes_from_a_peer(&[
        ("cache-control", "max-age=60"),
        ("content-length", "100000"),
    ])
    .await;
}

#[tokio::test]
async fn a_peer_failing_mid_body_is_resumed_from_the_origin_with_if_range() {
    const STOP: usize = 50_000; // not on a chunk boundary
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.holds("flaky", PeerCopy::big().cut_at(STOP, Cut::Error));
        dir
    })
    .await;
    let (r, body) = s.get("/big", &[]).await;
    assert_eq!(r.status(), 200);
    let body = body.unwrap();
    assert!(
        same_body(&body, &big_body()),
        "got {} bytes, not the object",
        body.len()
    );
    let seen = s.origin.requests("/big");
    assert_eq!(s.origin.count(), 1, "{seen:?}");
    // From the last byte passed on to the client (the held, unchecked chunk is asked again).
    let range = seen[0].range.clone().unwrap_or_default();
    let from: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= STOP, "{range}");
    assert_eq!(seen[0].if_range.as_deref(), Some(BIG_ETAG));
    assert_eq!(s.dir.fetched(), vec![("flaky".to_string(), 0)]);

    // The peer's part was never checked, so the object is served but not stored.
    assert_eq!(s.announced("/big").await, Holding::Dropped);
    let (r, again) = s.get("/big", &[]).await;
    assert!(
        !header(&r, "cache-status").starts_with("reef; hit"),
        "not from this node's cache: {}",
        header(&r, "cache-status")
    );
    assert!(same_body(&again.unwrap(), &big_body()));
}

#[tokio::test]
async fn a_peer_failing_mid_body_is_resumed_from_the_next_holder_at_its_offset() {
    const STOP: usize = 70_000;
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.holds("first", PeerCopy::big().cut_at(STOP, Cut::Silence));
        dir.holds("second", PeerCopy::big());
        dir
    })
    .await;
    let (r, body) = s.get("/big", &[]).await;
    assert_eq!(r.status(), 200);
    let body = body.unwrap();
    assert!(
        same_body(&body, &big_body()),
        "got {} bytes, not the object",
        body.len()
    );
    assert_eq!(
        s.dir.fetched(),
        vec![
            ("first".to_string(), 0),
            ("second".to_string(), STOP as u64)
        ]
    );
    assert_eq!(s.origin.count(), 0, "the second holder had the rest");
    assert_eq!(s.announced("/big").await, Holding::Cached);
    assert!(s.dir.reports.lock().unwrap().is_empty());
}

#[tokio::test]
async fn with_no_holder_the_node_claims_before_fetching_from_the_origin() {
    let s = setup(FakeDirectory::new).await;
    let (r, body) = s.get("/obj", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body.unwrap(), "origin body of /obj");
    let key = s.key("/obj");
    assert_eq!(s.announced("/obj").await, Holding::Cached);
    assert_eq!(
        s.events(),
        vec![
            format!("locate {key}"),
            format!("claim {key}"),
            "origin /obj range=None".to_string(),
            format!("announce {key} Cached"),
        ]
    );
}

#[tokio::test]
async fn an_earlier_claimant_serves_the_object_instead_of_the_origin() {
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.copies.lock().unwrap().insert(
            "claimant".into(),
            PeerCopy::good(
                Bytes::from_static(b"fetched by the claimant"),
                &[("cache-control", "max-age=60")],
            ),
        );
        *dir.claimant.lock().unwrap() = Some(Holder {
            name: "claimant".into(),
            pending: true,
        });
        dir
    })
    .await;
    let (r, body) = s.get("/obj", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body.unwrap(), "fetched by the claimant");
    assert_eq!(s.origin.count(), 0);
    let key = s.key("/obj");
    assert_eq!(s.announced("/obj").await, Holding::Cached);
    assert_eq!(
        s.events(),
        vec![
            format!("locate {key}"),
            format!("claim {key}"),
            "fetch claimant @0".to_string(),
            format!("announce {key} Cached"),
        ]
    );
}

#[tokio::test]
async fn requests_with_credentials_never_ask_the_directory() {
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.holds(
            "peer-a",
            PeerCopy::good(
                Bytes::from_static(b"the peer's copy"),
                &[("cache-control", "max-age=60")],
            ),
        );
        *dir.claimant.lock().unwrap() = Some(holder("peer-a"));
        dir
    })
    .await;
    // The directory is in use for anonymous requests...
    let (_, body) = s.get("/public", &[]).await;
    assert_eq!(body.unwrap(), "the peer's copy");
    assert_eq!(s.announced("/public").await, Holding::Cached);
    let before = s.events();

    // ...but an answer for a request with credentials comes from the origin only.
    let (r, body) = s
        .get("/private", &[("authorization", "Bearer secret")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(body.unwrap(), "origin body of /private");
    assert_eq!(s.origin.requests("/private").len(), 1);
    assert_eq!(
        s.events(),
        [before, vec!["origin /private range=None".to_string()]].concat(),
        "no locate, claim, fetch or announce for a private request"
    );
    let private = s.key("/private");
    assert!(!s.dir.locates.lock().unwrap().contains(&private));
    assert!(!s.dir.claims.lock().unwrap().contains(&private));
    assert!(
        s.dir
            .fetches
            .lock()
            .unwrap()
            .iter()
            .all(|(_, r)| r.key != private)
    );
}

#[tokio::test]
async fn a_peer_that_sends_a_whole_wrong_body_and_vanishes_is_never_stored() {
    // Every byte of the declared length arrives, wrong in the middle, and then no End.
    let mut bad = big_body().to_vec();
    bad[1_000] ^= 1;
    let copy = PeerCopy {
        body: bad.into(),
        ..PeerCopy::big()
    }
    .cut_at(BIG_LEN, Cut::Silence);
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        dir.holds("vanisher", copy);
        dir
    })
    .await;
    let (r, body) = s.get("/big", &[]).await;
    assert_eq!(r.status(), 200);
    // The rest came from the origin, from the last byte passed on; the unchecked last chunk
    // was never given to the client, and the wrong byte early in the body means the client
    // gets either the origin's bytes checked against what it already has, or an error.
    // The client may get the wrong byte (nobody can check what a vanished peer sent before
    // the origin's range), but it is never stored or announced for others.
    assert!(body.is_ok_and(|b| b.len() == BIG_LEN));
    assert_eq!(s.announced("/big").await, Holding::Dropped);
    let seen = s.origin.requests("/big");
    assert_eq!(s.origin.count(), 1, "{seen:?}");
    let range = seen[0].range.clone().unwrap_or_default();
    assert!(range.starts_with("bytes="), "{range}");
    let from: usize = range["bytes=".len()..]
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        from < BIG_LEN,
        "the origin resends the held chunk: asked from {from}"
    );
}

#[tokio::test]
async fn a_peer_copy_obtained_before_a_purge_is_never_used() {
    let s = setup(|events| {
        let dir = FakeDirectory::new(events);
        // Its age says it left the origin an hour ago.
        let old = [("cache-control", "max-age=7200"), ("age", "3600")];
        dir.holds(
            "peer-old",
            PeerCopy::good(Bytes::from_static(b"the purged copy"), &old),
        );
        // A holder that fetched the object again after the purge.
        let new = [("cache-control", "max-age=60")];
        dir.holds(
            "peer-new",
            PeerCopy::good(Bytes::from_static(b"the new copy"), &new),
        );
        dir
    })
    .await;
    let target = proxy::purge::message::PurgeTarget::parse(&s.key("/obj"), false).unwrap();
    // Purged 5 s ago (ages are whole seconds: copies within a second of a purge are not used).
    s.handle
        .store()
        .cutoffs()
        .record(&target, SystemTime::now() - Duration::from_secs(5));
    let (r, body) = s.get("/obj", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body.unwrap(), "the new copy");
    assert_eq!(
        s.dir.fetched(),
        vec![("peer-old".to_string(), 0), ("peer-new".to_string(), 0)],
        "the old holder was asked, and its copy left unused"
    );
    assert_eq!(s.origin.count(), 0);

    // With only the old holder left, the origin serves it.
    let (_, body) = s.get("/other", &[]).await;
    assert_eq!(
        body.unwrap(),
        "the purged copy",
        "the first holder serves a URL the purge does not cover"
    );
    s.dir.copies.lock().unwrap().remove("peer-new");
    s.handle.store().remove(&s.key("/obj"));
    let (_, body) = s.get("/obj", &[]).await;
    assert_eq!(body.unwrap(), "origin body of /obj");
    assert_eq!(s.origin.count(), 1);
}
