//! The admin port: `/status` (JSON, for `reef status` and scripts) and `/metrics`
//! (Prometheus text exposition format, version 0.0.4).
//!
//! It binds loopback by default: it tells anyone who can reach it about the node's peers.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::directory::OverlayDirectory;
use crate::overlay::transfer::TransferCounters;
use crate::overlay::{Overlay, PeerInfo};

/// Everything the admin pages read.
#[derive(Debug)]
pub struct NodeState {
    /// The overlay.
    pub overlay: Overlay,
    /// The proxy.
    pub proxy: Arc<proxy::Proxy>,
    /// The directory.
    pub directory: Arc<OverlayDirectory>,
    /// Transfers served to peers.
    pub transfers: Arc<TransferCounters>,
    /// The nameserver's counters.
    pub dns: Arc<dns::handler::DnsStats>,
    /// When the node started.
    pub started: Instant,
}

/// One level's cluster.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// 0 is global; higher is nearer.
    pub level: u8,
    /// The cluster's ID (hex).
    pub cluster: String,
    /// RTT threshold of the level, if it has one.
    pub threshold_ms: Option<u64>,
    /// Estimated members.
    pub size_estimate: u32,
    /// Members in this node's routing table for the level.
    pub members_known: usize,
    /// Keys stored at this level.
    pub keys: usize,
}

/// `/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The DHT node ID (hex).
    pub node_id: String,
    /// The libp2p peer ID.
    pub peer_id: String,
    /// The release.
    pub version: String,
    /// The overlay address.
    pub p2p: String,
    /// The proxy address given out.
    pub http: Option<std::net::SocketAddr>,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Over the bandwidth quota: redirecting clients and out of the network's answers.
    pub over_quota: bool,
    /// Peers with an open connection.
    pub peers_connected: usize,
    /// Peers of the level-0 table.
    pub peers: Vec<PeerInfo>,
    /// Clusters per level.
    pub clusters: Vec<ClusterStatus>,
    /// The cache.
    pub cache: CacheStatus,
    /// Fetches.
    pub fetches: FetchStatus,
    /// Refusals and failures of the overlay.
    pub overlay: OverlayCounters,
    /// The nameserver.
    pub dns: DnsCounters,
    /// Publishers' purges.
    pub purges: PurgeStatus,
}

/// Publishers' purges seen here.
#[derive(Debug, Serialize)]
pub struct PurgeStatus {
    /// Purges accepted (from clients and from the overlay).
    pub accepted: u64,
    /// Purges refused (forged, stale, replayed, unknown key, over the rate).
    pub rejected: u64,
    /// The latest accepted, newest first.
    pub recent: Vec<proxy::purge::PurgeRecord>,
}

/// What the nameserver answered.
#[derive(Debug, Serialize)]
pub struct DnsCounters {
    /// Queries answered (any response code).
    pub answered: u64,
    /// NXDOMAIN answers.
    pub nxdomain: u64,
    /// REFUSED answers.
    pub refused: u64,
    /// FORMERR, NOTIMP and BADVERS answers.
    pub malformed: u64,
    /// UDP responses dropped by rate limiting.
    pub rrl_dropped: u64,
    /// UDP responses truncated by rate limiting.
    pub rrl_slipped: u64,
}

/// Cache figures.
#[derive(Debug, Serialize)]
pub struct CacheStatus {
    /// URLs held.
    pub objects: usize,
    /// Bytes held.
    pub bytes: u64,
    /// URLs on disk.
    pub disk_objects: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
    /// Requests served from a fresh copy.
    pub hits: u64,
    /// Requests that needed a fetch.
    pub misses: u64,
}

/// Where objects came from and went to.
#[derive(Debug, Serialize)]
pub struct FetchStatus {
    /// Fetches sent to origins.
    pub origin: u64,
    /// Objects fetched from peers.
    pub peer: u64,
    /// Body bytes from origins.
    pub origin_bytes: u64,
    /// Body bytes from peers.
    pub peer_bytes: u64,
    /// Objects served to peers.
    pub served_to_peers: u64,
    /// Body bytes served to peers.
    pub bytes_served_to_peers: u64,
    /// Directory lookups, and those that named a holder.
    pub lookups: u64,
    /// Lookups that named a holder.
    pub lookup_hits: u64,
    /// Objects announced now.
    pub announced: usize,
    /// Requests for sites' `/.well-known/reef.json`.
    pub site_documents: u64,
}

/// Overlay refusals.
#[derive(Debug, Serialize)]
pub struct OverlayCounters {
    /// Inbound handshakes that failed (another secret or version, or garbage).
    pub handshake_failures: u64,
    /// Outbound connections that failed.
    pub dial_failures: u64,
    /// DHT messages refused.
    pub rejected_messages: u64,
    /// Peers reported for wrong bytes.
    pub bad_peers: u64,
    /// DHT requests received and sent.
    pub dht_requests_in: u64,
    /// DHT requests sent.
    pub dht_requests_out: u64,
}

impl NodeState {
    /// The status now, or `None` once the overlay has stopped.
    pub async fn status(&self) -> Option<Status> {
        let o = self.overlay.status().await?;
        let p = self.proxy.stats().snapshot();
        let store = self.proxy.store();
        let d = &self.directory.counters;
        let c = self.overlay.counters();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let clusters = o
            .snapshot
            .levels
            .iter()
            .map(|l| ClusterStatus {
                level: l.level.0,
                cluster: format!("{:x}", l.cluster.0),
                threshold_ms: l.threshold.map(|t| t.as_millis() as u64),
                size_estimate: l.size_estimate,
                members_known: l.buckets.iter().map(|(_, b)| b.len()).sum(),
                keys: l.keys,
            })
            .collect();
        Some(Status {
            node_id: crate::overlay::advert::hex(&o.snapshot.id),
            peer_id: self.overlay.peer_id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            p2p: self.overlay.me().p2p.to_string(),
            http: self.overlay.me().http,
            uptime_secs: self.started.elapsed().as_secs(),
            over_quota: self.proxy.over_quota(),
            peers_connected: o.connected,
            peers: o.peers,
            clusters,
            cache: CacheStatus {
                objects: store.len(),
                bytes: store.weight(),
                disk_objects: store.disk().map_or(0, |d| d.len()),
                disk_bytes: store.disk().map_or(0, |d| d.bytes()),
                hits: p.hits,
                misses: p.misses,
            },
            fetches: FetchStatus {
                origin: p.origin_fetches,
                peer: p.peer_fetches,
                origin_bytes: p.origin_bytes,
                peer_bytes: p.peer_bytes,
                served_to_peers: get(&self.transfers.objects_served),
                bytes_served_to_peers: get(&self.transfers.bytes_served),
                lookups: get(&d.lookups),
                lookup_hits: get(&d.lookup_hits),
                announced: self.directory.announced(),
                site_documents: p.site_documents,
            },
            overlay: OverlayCounters {
                handshake_failures: get(&c.handshake_failures),
                dial_failures: get(&c.dial_failures),
                rejected_messages: get(&c.rejected_messages),
                bad_peers: get(&d.bad_peers),
                dht_requests_in: o.stats.requests_in.total(),
                dht_requests_out: o.stats.requests_out.total(),
            },
            dns: DnsCounters {
                answered: get(&self.dns.answered),
                nxdomain: get(&self.dns.nxdomain),
                refused: get(&self.dns.refused),
                malformed: get(&self.dns.malformed),
                rrl_dropped: get(&self.dns.rrl_dropped),
                rrl_slipped: get(&self.dns.rrl_slipped),
            },
            purges: PurgeStatus {
                accepted: get(&self.proxy.purges().accepted),
                rejected: get(&self.proxy.purges().rejected),
                recent: self.proxy.purges().recent(),
            },
        })
    }
}

/// Prometheus text for `status`.
pub fn metrics(s: &Status) -> String {
    const COUNTER: &str = "counter";
    const GAUGE: &str = "gauge";
    let n = |v: u64| v as f64;
    #[rustfmt::skip] // one metric a line
    let table: [(&str, &str, &str, f64); 33] = [
        ("reef_cache_hits_total", COUNTER, "Requests served from a fresh stored copy.", n(s.cache.hits)),
        ("reef_cache_misses_total", COUNTER, "Requests that needed a fetch.", n(s.cache.misses)),
        ("reef_cache_objects", GAUGE, "URLs in the memory cache.", s.cache.objects as f64),
        ("reef_cache_bytes", GAUGE, "Bytes in the memory cache.", n(s.cache.bytes)),
        ("reef_cache_disk_objects", GAUGE, "URLs in the disk cache.", s.cache.disk_objects as f64),
        ("reef_cache_disk_bytes", GAUGE, "Bytes in the disk cache.", n(s.cache.disk_bytes)),
        ("reef_origin_fetches_total", COUNTER, "Fetches sent to origins.", n(s.fetches.origin)),
        ("reef_peer_fetches_total", COUNTER, "Objects fetched from peers.", n(s.fetches.peer)),
        ("reef_origin_bytes_total", COUNTER, "Body bytes received from origins.", n(s.fetches.origin_bytes)),
        ("reef_peer_bytes_total", COUNTER, "Body bytes received from peers.", n(s.fetches.peer_bytes)),
        ("reef_served_to_peers_total", COUNTER, "Objects served to peers.", n(s.fetches.served_to_peers)),
        ("reef_served_to_peers_bytes_total", COUNTER, "Body bytes served to peers.", n(s.fetches.bytes_served_to_peers)),
        ("reef_directory_lookups_total", COUNTER, "Directory lookups.", n(s.fetches.lookups)),
        ("reef_directory_lookup_hits_total", COUNTER, "Lookups that named a holder.", n(s.fetches.lookup_hits)),
        ("reef_directory_announced", GAUGE, "Objects this node announces.", s.fetches.announced as f64),
        ("reef_peers_connected", GAUGE, "Peers with an open overlay connection.", s.peers_connected as f64),
        ("reef_dht_peers_known", GAUGE, "Peers in the level-0 routing table.", s.peers.len() as f64),
        ("reef_dht_requests_in_total", COUNTER, "DHT requests received.", n(s.overlay.dht_requests_in)),
        ("reef_dht_requests_out_total", COUNTER, "DHT requests sent.", n(s.overlay.dht_requests_out)),
        ("reef_overlay_handshake_failures_total", COUNTER, "Inbound connections that failed the keyed handshake.", n(s.overlay.handshake_failures)),
        ("reef_overlay_dial_failures_total", COUNTER, "Outbound connections that failed.", n(s.overlay.dial_failures)),
        ("reef_overlay_rejected_messages_total", COUNTER, "DHT messages refused.", n(s.overlay.rejected_messages)),
        ("reef_bad_peers_total", COUNTER, "Peers reported for serving wrong bytes.", n(s.overlay.bad_peers)),
        ("reef_over_quota", GAUGE, "1 while over the bandwidth quota.", f64::from(u8::from(s.over_quota))),
        ("reef_dns_answers_total", COUNTER, "DNS queries answered.", n(s.dns.answered)),
        ("reef_dns_nxdomain_total", COUNTER, "NXDOMAIN answers.", n(s.dns.nxdomain)),
        ("reef_dns_refused_total", COUNTER, "REFUSED answers.", n(s.dns.refused)),
        ("reef_dns_malformed_total", COUNTER, "FORMERR, NOTIMP and BADVERS answers.", n(s.dns.malformed)),
        ("reef_dns_rrl_dropped_total", COUNTER, "UDP responses dropped by rate limiting.", n(s.dns.rrl_dropped)),
        ("reef_site_documents_total", COUNTER, "Requests for sites' /.well-known/reef.json.", n(s.fetches.site_documents)),
        ("reef_purges_accepted_total", COUNTER, "Publishers' purges accepted.", n(s.purges.accepted)),
        ("reef_purges_rejected_total", COUNTER, "Publishers' purges refused.", n(s.purges.rejected)),
        ("reef_uptime_seconds", GAUGE, "Seconds since the node started.", n(s.uptime_secs)),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in table {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

fn reply(status: StatusCode, kind: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    r
}

/// Most bytes of a `/locate` request body (one URL).
const MAX_LOCATE_BODY: usize = 8 << 10;

/// `POST /locate` with a cache key (`http://host:port/path`) as the body: who holds it, and
/// how long the lookup took (for operators, and the locate-latency benchmark).
async fn locate(state: &NodeState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_LOCATE_BODY);
    let Ok(body) = limited.collect().await else {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "one URL, please\n".into(),
        );
    };
    let Ok(key) = std::str::from_utf8(&body.to_bytes()).map(|s| s.trim().to_string()) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "the body must be a URL\n".into(),
        );
    };
    let started = Instant::now();
    let holders = proxy::directory::Directory::locate(state.directory.as_ref(), &key, None).await;
    let micros = started.elapsed().as_micros() as u64;
    let holders: Vec<_> = holders
        .iter()
        .map(|h| serde_json::json!({"peer": h.name, "pending": h.pending}))
        .collect();
    reply(
        StatusCode::OK,
        "application/json",
        serde_json::json!({"key": key, "holders": holders, "micros": micros}).to_string(),
    )
}

async fn route(state: &NodeState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/locate" && req.method() == http::Method::POST {
        return locate(state, req).await;
    }
    let Some(status) = state.status().await else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "stopping\n".into(),
        );
    };
    match req.uri().path() {
        "/status" => reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&status).unwrap_or_default(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(&status),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /status, /metrics or POST /locate\n".into(),
        ),
    }
}

/// Serves the admin port until `stop` turns true.
pub async fn run(listener: TcpListener, state: Arc<NodeState>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
