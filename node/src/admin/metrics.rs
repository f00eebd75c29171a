//! `/metrics`: the status as Prometheus text (exposition format 0.0.4).

use std::fmt::Write as _;

use super::status::Status;

/// Prometheus text for `status`.
pub fn metrics(s: &Status) -> String {
    const COUNTER: &str = "counter";
    const GAUGE: &str = "gauge";
    let n = |v: u64| v as f64;
    #[rustfmt::skip] // one metric a line
    let table: [(&str, &str, &str, f64); 39] = [
        ("reef_cache_hits_total", COUNTER, "Requests served from a fresh stored copy.", n(s.cache.hits)),
        ("reef_cache_misses_total", COUNTER, "Requests that needed a fetch.", n(s.cache.misses)),
        ("reef_cache_objects", GAUGE, "URLs in the memory cache.", s.cache.objects as f64),
        ("reef_cache_bytes", GAUGE, "Bytes in the memory cache.", n(s.cache.bytes)),
        ("reef_cache_disk_objects", GAUGE, "URLs in the disk cache.", s.cache.disk_objects as f64),
        ("reef_cache_disk_bytes", GAUGE, "Bytes in the disk cache.", n(s.cache.disk_bytes)),
        ("reef_cache_sent_from_files_bytes_total", COUNTER, "Body bytes sent to clients straight from disk-cache files (sendfile).", n(s.cache.sent_from_files)),
        ("reef_cache_file_reads_in_place_total", COUNTER, "Reads of cached bodies' files served from the page cache in place.", n(s.cache.file_reads_in_place)),
        ("reef_cache_file_reads_waited_total", COUNTER, "Reads of cached bodies' files that went to a blocking thread (not all in the page cache, or a file system that cannot tell).", n(s.cache.file_reads_waited)),
        ("reef_http_connections_open", GAUGE, "Client connections open, idle ones included.", s.connections.open as f64),
        ("reef_http_connections_idle", GAUGE, "Plain-HTTP client connections waiting for a request, holding no buffers (HTTPS ones are not parked).", n(s.connections.idle)),
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
        ("reef_overlay_stalled_connections_total", COUNTER, "Connections closed because their pings went unanswered.", n(s.overlay.stalled_connections)),
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
