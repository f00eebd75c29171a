//! Cache-Control, Range and conditional headers from clients and origins: every decision
//! function takes any header values without panicking.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use proxy::cache::{conditional, control::CacheControl, freshness};

const NAMES: [&str; 10] = [
    "cache-control",
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "etag",
    "last-modified",
    "expires",
    "date",
    "age",
];

/// Splits `data` into header values, assigning names in turn.
fn headers(data: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (i, chunk) in data.split(|b| *b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(chunk) {
            h.append(HeaderName::from_static(NAMES[i % NAMES.len()]), v);
        }
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let half = data.len() / 2;
    let request = headers(&data[..half]);
    let response = headers(&data[half..]);
    let _ = CacheControl::from_headers(&request);
    let _ = CacheControl::from_headers(&response);
    let policy = freshness::Policy::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let lifetime = freshness::freshness_lifetime(StatusCode::OK, &response, now, &policy);
    let received = freshness::Received::new(now, now, &response);
    let age = received.current_age(now + Duration::from_secs(7));
    let _ = freshness::usable(&request, &response, lifetime, age, &policy);
    let _ = freshness::storable(
        &http::Method::GET,
        &request,
        StatusCode::OK,
        &response,
        &policy,
    );
    let _ = conditional::not_modified(&request, &response);
    let _ = conditional::ranges(&request, &response, (data.len() as u64) * 1000);
    let _ = conditional::validators(&response);
});
