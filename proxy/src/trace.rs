//! Trace IDs: one per client request, so an operator can follow it across the network.
//!
//! A client's W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`) is
//! kept; otherwise a new ID is made. It is sent to the origin in `traceparent`, to peers with
//! object requests and DHT lookups, and appears in every log line about the request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

/// The trace ID of a request: the client's, or a new one.
pub fn of_request(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent)
        .unwrap_or_else(new_id)
}

/// The trace ID in a `traceparent` value, if it is well formed (version 00, non-zero ID).
pub fn parse_traceparent(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_string())
}

/// A `traceparent` value carrying `trace` from this node (parent ID from the same counter).
pub fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{:016x}-01", next().max(1))
}

/// A new trace ID: 64 random bits of this process, then a counter.
pub fn new_id() -> String {
    use std::fmt::Write;
    let mut id = String::with_capacity(32);
    let _ = write!(id, "{:016x}{:016x}", process_prefix(), next());
    id
}

fn next() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn process_prefix() -> u64 {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 8];
        // Without entropy the prefix is the process ID: IDs stay unique per node.
        match ring::rand::SystemRandom::new().fill(&mut b) {
            Ok(()) => u64::from_be_bytes(b) | 1,
            Err(_) => u64::from(std::process::id()) | 1,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_traceparent_is_kept_and_bad_ones_are_replaced() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(good).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("traceparent", good.parse().expect("value"));
        assert_eq!(of_request(&h), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn new_ids_are_distinct_and_valid() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(parse_traceparent(&traceparent(&a)).is_some());
    }
}
