//! What the proxy did, as counters (read by the node's `/status` and `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered from a fresh stored copy.
    pub hits: AtomicU64,
    /// Requests that needed a fetch (or joined one).
    pub misses: AtomicU64,
    /// Fetches sent to origins (including revalidations and resumptions).
    pub origin_fetches: AtomicU64,
    /// Objects fetched from peers.
    pub peer_fetches: AtomicU64,
    /// Body bytes received from origins.
    pub origin_bytes: AtomicU64,
    /// Body bytes received from peers.
    pub peer_bytes: AtomicU64,
    /// Requests for sites' `/.well-known/reef.json`.
    pub site_documents: AtomicU64,
    /// Body bytes served to clients from stored copies (shared with the bodies that count
    /// them as they go out).
    pub hit_bytes: std::sync::Arc<AtomicU64>,
    /// Keep-alive connections waiting for their next request, and new ones for their first
    /// (a gauge, kept by the parking lot).
    pub idle_connections: std::sync::Arc<AtomicU64>,
    /// Body bytes sent to clients straight from disk-cache files (sendfile), a part of
    /// `hit_bytes` and of what collapsed clients received.
    pub sent_from_files: std::sync::Arc<AtomicU64>,
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::hits`].
    pub hits: u64,
    /// See [`Stats::misses`].
    pub misses: u64,
    /// See [`Stats::origin_fetches`].
    pub origin_fetches: u64,
    /// See [`Stats::peer_fetches`].
    pub peer_fetches: u64,
    /// See [`Stats::origin_bytes`].
    pub origin_bytes: u64,
    /// See [`Stats::peer_bytes`].
    pub peer_bytes: u64,
    /// See [`Stats::site_documents`].
    pub site_documents: u64,
    /// See [`Stats::hit_bytes`].
    pub hit_bytes: u64,
    /// See [`Stats::idle_connections`].
    pub idle_connections: u64,
    /// See [`Stats::sent_from_files`].
    pub sent_from_files: u64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            hits: get(&self.hits),
            misses: get(&self.misses),
            origin_fetches: get(&self.origin_fetches),
            peer_fetches: get(&self.peer_fetches),
            origin_bytes: get(&self.origin_bytes),
            peer_bytes: get(&self.peer_bytes),
            site_documents: get(&self.site_documents),
            hit_bytes: get(&self.hit_bytes),
            idle_connections: get(&self.idle_connections),
            sent_from_files: get(&self.sent_from_files),
        }
    }
}
