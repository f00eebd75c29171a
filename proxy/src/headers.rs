//! Header rules for both directions: hop-by-hop fields removed (RFC 9110 section 7.6.1),
//! cookies stripped by default, and the fields a proxy adds (`Via`, `X-Forwarded-For`).

use http::header::{
    CONNECTION, COOKIE, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue};

/// The `Via` value this proxy adds (RFC 9110 section 7.6.3).
pub const VIA_VALUE: &str = "1.1 reef";

/// Request fields forwarded to origins (plus `Cookie` when cookies are not stripped).
pub const FORWARDED_REQUEST_HEADERS: [&str; 7] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "referer",
    "user-agent",
];

/// Fields that describe one connection, never forwarded or stored.
const HOP_BY_HOP: [&str; 3] = ["keep-alive", "proxy-connection", "x-forwarded-host"];

/// The options listed in `Connection` (field names and `close`/`keep-alive`), trimmed.
pub fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
}

/// Removes hop-by-hop fields, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_options(headers)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
    ] {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Removes cookies in one direction (`Cookie` from requests, `Set-Cookie` from responses).
pub fn strip_cookies(headers: &mut HeaderMap) {
    headers.remove(COOKIE);
    headers.remove(SET_COOKIE);
}

/// Appends this proxy to `Via`.
pub fn add_via(headers: &mut HeaderMap) {
    headers.append(http::header::VIA, HeaderValue::from_static(VIA_VALUE));
}

/// A response's `Content-Length`, if valid.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("content-type", HeaderValue::from_static("text/html"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}
