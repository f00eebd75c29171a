//! Conditional requests and byte ranges answered from a stored or arriving response
//! (RFC 9110 sections 13 and 14).

use http::HeaderMap;
use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE};

/// Ranges considered in one request at most; more is answered with the whole object.
pub const MAX_RANGES: usize = 16;

fn opaque(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// Whether a client's `If-None-Match` / `If-Modified-Since` is satisfied by the response with
/// `headers`, so a 304 answers it (RFC 9110 section 13.2.2: If-None-Match wins).
pub fn not_modified(request: &HeaderMap, headers: &HeaderMap) -> bool {
    if let Some(inm) = request.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // Weak comparison (section 8.8.3.2).
        return inm.trim() == "*" || inm.split(',').any(|t| opaque(t) == opaque(etag));
    }
    let parse = |h: &HeaderMap, name| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    match (
        parse(request, IF_MODIFIED_SINCE),
        parse(headers, LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Whether `If-Range` (if any) lets the `Range` apply: a strong ETag match, or the exact
/// `Last-Modified` date (section 13.1.5).
fn if_range_holds(request: &HeaderMap, headers: &HeaderMap) -> bool {
    let Some(cond) = request.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let cond = cond.trim();
    if cond.starts_with('"') {
        return headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|e| !e.starts_with("W/") && e.trim() == cond);
    }
    let date = |s: &str| httpdate::parse_http_date(s).ok();
    match (
        date(cond),
        headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(date),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// What to send for a `Range` request on an object of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No (usable) Range: the whole object, 200.
    Whole,
    /// These inclusive byte ranges, in request order: 206.
    Parts(Vec<(u64, u64)>),
    /// None of the ranges overlaps the object: 416.
    Unsatisfiable,
}

/// Reads `Range: bytes=...` against an object of `len` bytes (RFC 9110 section 14.1.2).
/// Anything malformed, or over [`MAX_RANGES`], is served whole, as the RFC allows.
pub fn ranges(request: &HeaderMap, headers: &HeaderMap, len: u64) -> Ranges {
    let Some(spec) = request.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranges::Whole;
    };
    if !if_range_holds(request, headers) {
        return Ranges::Whole;
    }
    let Some(sets) = spec.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    for set in sets.split(',') {
        let set = set.trim();
        let Some((a, b)) = set.split_once('-') else {
            return Ranges::Whole;
        };
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        let range = match (a.trim(), b.trim()) {
            ("", suffix) => {
                let Some(n) = num(suffix) else {
                    return Ranges::Whole;
                };
                if n == 0 || len == 0 {
                    None
                } else {
                    Some((len.saturating_sub(n), len - 1))
                }
            }
            (first, "") => {
                let Some(f) = num(first) else {
                    return Ranges::Whole;
                };
                (f < len).then(|| (f, len - 1))
            }
            (first, last) => {
                let (Some(f), Some(l)) = (num(first), num(last)) else {
                    return Ranges::Whole;
                };
                if l < f {
                    return Ranges::Whole;
                }
                (f < len).then(|| (f, l.min(len - 1)))
            }
        };
        parts.extend(range);
        if parts.len() > MAX_RANGES {
            return Ranges::Whole;
        }
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    // Overlapping or adjacent ranges are coalesced (RFC 9110 section 14.1.1 allows it), so a
    // request cannot make the answer many times the object's size.
    if parts.len() > 1 {
        parts.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
        for (a, b) in parts {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        parts = merged;
    }
    Ranges::Parts(parts)
}

/// The validators of a stored response, for a conditional request upstream.
pub fn validators(headers: &HeaderMap) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out = Vec::new();
    if let Some(etag) = headers.get(ETAG) {
        out.push((IF_NONE_MATCH, etag.clone()));
    }
    if let Some(lm) = headers.get(LAST_MODIFIED) {
        out.push((IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn etags_and_dates_answer_conditionals() {
        let stored = h(&[
            (ETAG, "\"v1\""),
            (LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(not_modified(
            &h(&[(IF_NONE_MATCH, "\"v0\", W/\"v1\"")]),
            &stored
        ));
        assert!(!not_modified(&h(&[(IF_NONE_MATCH, "\"v2\"")]), &stored));
        assert!(not_modified(&h(&[(IF_NONE_MATCH, "*")]), &stored));
        assert!(not_modified(
            &h(&[(IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &h(&[(IF_MODIFIED_SINCE, "Sat, 05 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        // If-None-Match takes precedence over If-Modified-Since.
        assert!(!not_modified(
            &h(&[
                (IF_NONE_MATCH, "\"v2\""),
                (IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT")
            ]),
            &stored
        ));
        assert!(!not_modified(
            &h(&[(IF_MODIFIED_SINCE, "garbage")]),
            &stored
        ));
    }

    #[test]
    fn byte_ranges() {
        let none = HeaderMap::new();
        let r = |spec: &str, len| ranges(&h(&[(RANGE, spec)]), &none, len);
        assert_eq!(r("bytes=0-9", 100), Ranges::Parts(vec![(0, 9)]));
        assert_eq!(r("bytes=90-", 100), Ranges::Parts(vec![(90, 99)]));
        assert_eq!(r("bytes=-10", 100), Ranges::Parts(vec![(90, 99)]));
        assert_eq!(r("bytes=-1000", 100), Ranges::Parts(vec![(0, 99)]));
        assert_eq!(r("bytes=95-200", 100), Ranges::Parts(vec![(95, 99)]));
        assert_eq!(
            r("bytes=0-1, 5-6", 100),
            Ranges::Parts(vec![(0, 1), (5, 6)])
        );
        assert_eq!(
            r("bytes=0-50, 10-20, 51-60", 100),
            Ranges::Parts(vec![(0, 60)])
        );
        assert_eq!(
            r("bytes=5-6, 0-1", 100),
            Ranges::Parts(vec![(0, 1), (5, 6)])
        );
        assert_eq!(r("bytes=100-", 100), Ranges::Unsatisfiable);
        assert_eq!(r("bytes=5-1", 100), Ranges::Whole);
        assert_eq!(r("items=0-1", 100), Ranges::Whole);
        assert_eq!(r("bytes=a-b", 100), Ranges::Whole);
        let many = format!(
            "bytes={}",
            (0..20)
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(r(&many, 100), Ranges::Whole);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let stored = h(&[(ETAG, "\"v1\"")]);
        let req = |ir: &str| h(&[(RANGE, "bytes=0-0"), (IF_RANGE, ir)]);
        assert_eq!(
            ranges(&req("\"v1\""), &stored, 10),
            Ranges::Parts(vec![(0, 0)])
        );
        assert_eq!(ranges(&req("\"v2\""), &stored, 10), Ranges::Whole);
        let weak = h(&[(ETAG, "W/\"v1\"")]);
        assert_eq!(ranges(&req("W/\"v1\""), &weak, 10), Ranges::Whole);
    }
}
