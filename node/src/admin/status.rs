//! `/status`: what the node is and does, as JSON (read by `reef status`, the status page,
//! scripts and tests).

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::NodeState;
use crate::overlay::PeerInfo;

/// One level's cluster.
#[derive(Debug, Default, Serialize)]
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
    /// The median of the smallest RTTs measured to the members known (ms).
    pub median_rtt_ms: Option<f64>,
}

/// `/status`.
#[derive(Debug, Default, Serialize)]
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
    /// Client connections.
    pub connections: ConnectionStatus,
    /// Fetches.
    pub fetches: FetchStatus,
    /// Refusals and failures of the overlay.
    pub overlay: OverlayCounters,
    /// The nameserver.
    pub dns: DnsCounters,
    /// Publishers' purges.
    pub purges: PurgeStatus,
    /// The sites that took the most bytes since start.
    pub sites: Vec<SiteStatus>,
    /// The DHT node's figures.
    pub dht: DhtStatus,
    /// Requests per interval (see `history.rs`), oldest first.
    pub history: Vec<super::history::Interval>,
}

/// One site's share of what the node served.
#[derive(Debug, Default, Serialize)]
pub struct SiteStatus {
    /// The origin's host.
    pub site: String,
    /// Body bytes served to clients.
    pub bytes: u64,
    /// Requests answered.
    pub requests: u64,
    /// Over its fair share of the bandwidth quota (refused with 403 until the hour ends);
    /// `None` without a quota.
    pub over_share: Option<bool>,
}

/// What the DHT node holds and did.
#[derive(Debug, Default, Serialize)]
pub struct DhtStatus {
    /// Peers whose RTT and clusters it remembers.
    pub peers_known: usize,
    /// Keys with values, all levels.
    pub keys_stored: usize,
    /// Values held, all levels.
    pub values_stored: usize,
    /// Keys it is loaded for (more than beta requests a minute).
    pub keys_loaded: usize,
    /// Gets, puts and lookups started.
    pub queries_started: u64,
    /// Queries running now.
    pub queries_running: usize,
    /// Requests that ran out of time.
    pub timeouts: u64,
    /// Stores accepted.
    pub stores_accepted: u64,
    /// Stores refused (full).
    pub stores_refused: u64,
    /// Times it moved to another cluster.
    pub cluster_changes: u64,
}

/// Publishers' purges seen here.
#[derive(Debug, Default, Serialize)]
pub struct PurgeStatus {
    /// Purges accepted (from clients and from the overlay).
    pub accepted: u64,
    /// Purges refused (forged, stale, replayed, unknown key, over the rate).
    pub rejected: u64,
    /// The latest accepted, newest first.
    pub recent: Vec<proxy::purge::PurgeRecord>,
}

/// What the nameserver answered.
#[derive(Debug, Default, Serialize)]
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

/// Client connections to the proxy (HTTP and HTTPS).
#[derive(Debug, Default, Serialize)]
pub struct ConnectionStatus {
    /// Open now, idle ones included.
    pub open: usize,
    /// Plain-HTTP connections waiting for a next request (keep-alive) or a first one,
    /// parked holding no buffers (HTTPS connections are not parked, so not counted here).
    pub idle: u64,
}

/// Cache figures.
#[derive(Debug, Default, Serialize)]
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
    /// Body bytes served to clients from stored copies.
    pub hit_bytes: u64,
    /// Body bytes sent to clients straight from disk-cache files (sendfile).
    pub sent_from_files: u64,
    /// Reads of bodies' files served from the page cache without a thread switch.
    pub file_reads_in_place: u64,
    /// Reads of bodies' files that went to a blocking thread (not all in the page cache, or a
    /// file system that cannot tell).
    pub file_reads_waited: u64,
}

/// Where objects came from and went to.
#[derive(Debug, Default, Serialize)]
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
#[derive(Debug, Default, Serialize)]
pub struct OverlayCounters {
    /// Inbound handshakes that failed (another secret or version, or garbage).
    pub handshake_failures: u64,
    /// Outbound connections that failed.
    pub dial_failures: u64,
    /// Connections closed because their pings went unanswered (stalled by a partition).
    pub stalled_connections: u64,
    /// DHT messages refused.
    pub rejected_messages: u64,
    /// Peers reported for wrong bytes.
    pub bad_peers: u64,
    /// DHT requests received and sent.
    pub dht_requests_in: u64,
    /// DHT requests sent.
    pub dht_requests_out: u64,
}

/// Sites listed in `/status`.
const TOP_SITES: usize = 10;

/// The median smallest RTT to the members of a level's routing table.
fn median_rtt(level: &dht::LevelSnapshot) -> Option<f64> {
    let mut rtts: Vec<f64> = level
        .buckets
        .iter()
        .flat_map(|(_, b)| b.iter())
        .filter_map(|p| p.min_rtt)
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    if rtts.is_empty() {
        return None;
    }
    rtts.sort_by(f64::total_cmp);
    Some(rtts[rtts.len() / 2])
}

impl NodeState {
    /// The status now, or `None` once the overlay has stopped.
    pub async fn status(&self) -> Option<Status> {
        let o = self.overlay.status().await?;
        let p = self.proxy.stats().snapshot();
        let file_reads = proxy::pagecache::file_reads();
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
                median_rtt_ms: median_rtt(l),
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
                hit_bytes: p.hit_bytes,
                sent_from_files: p.sent_from_files,
                file_reads_in_place: file_reads.in_place,
                file_reads_waited: file_reads.waited,
            },
            connections: ConnectionStatus {
                open: self.proxy.limits().open_connections(),
                idle: p.idle_connections,
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
                stalled_connections: get(&c.stalled_connections),
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
            sites: self
                .proxy
                .top_sites(TOP_SITES)
                .into_iter()
                .map(|(f, over_share)| SiteStatus {
                    site: f.site,
                    bytes: f.bytes,
                    requests: f.requests,
                    over_share,
                })
                .collect(),
            dht: DhtStatus {
                peers_known: o.stats.peers_known,
                keys_stored: o.stats.keys_stored,
                values_stored: o.stats.values_stored,
                keys_loaded: o.stats.keys_loaded,
                queries_started: o.stats.queries_started,
                queries_running: o.stats.queries_running,
                timeouts: o.stats.timeouts,
                stores_accepted: o.stats.stores_accepted,
                stores_refused: o.stats.stores_refused,
                cluster_changes: o.stats.cluster_changes,
            },
            history: self.history.intervals(),
        })
    }
}
