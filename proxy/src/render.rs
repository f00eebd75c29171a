//! Turning a response (stored, or arriving) into what one client asked for: a 304 for a
//! satisfied conditional, 206 for byte ranges (served from the bytes already there, waiting
//! for the rest of an object still arriving), 416, or the whole body; with `Age`, `Via` and
//! `Cache-Status`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;

use crate::body::SharedBody;
use crate::cache::conditional::{self, Ranges};
use crate::headers;
use crate::reader::{Read, Reader};
use crate::service::ProxyBody;
use crate::zerocopy;

/// Fields a 304 carries over from the stored response (RFC 9110 section 15.4.5).
const NOT_MODIFIED_FIELDS: [&str; 7] = [
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "last-modified",
    "vary",
];

/// Separates the parts of a multipart/byteranges body.
const BOUNDARY: &str = "reef-byteranges-7d1f3e";

/// What to render.
pub(crate) struct Rendition<'a> {
    pub(crate) request: &'a HeaderMap,
    pub(crate) status: StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Arc<SharedBody>,
    /// Total length if known (a complete body, or Content-Length of one arriving).
    pub(crate) len: Option<u64>,
    pub(crate) head_only: bool,
    pub(crate) age: Option<Duration>,
    pub(crate) cache_status: HeaderValue,
}

fn empty() -> ProxyBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The whole body, as it arrives.
pub(crate) fn whole(body: Arc<SharedBody>) -> ProxyBody {
    ranged(body, Vec::new(), None)
}

/// Streams `ranges` (inclusive byte positions) of `body`, each preceded by its multipart
/// header when `parts` is given; no ranges means the whole body.
fn ranged(body: Arc<SharedBody>, ranges: Vec<(u64, u64)>, parts: Option<Vec<Bytes>>) -> ProxyBody {
    struct St {
        body: Arc<SharedBody>,
        ranges: Vec<(u64, u64)>,
        parts: Option<Vec<Bytes>>,
        /// Current range, its reader (from the range's start) and the reader's position.
        range: usize,
        reader: Option<Reader>,
        pos: u64,
        header_sent: bool,
        done: bool,
    }
    let whole = ranges.is_empty();
    let st = St {
        body,
        ranges: if whole { vec![(0, u64::MAX)] } else { ranges },
        parts,
        range: 0,
        reader: None,
        pos: 0,
        header_sent: false,
        done: false,
    };
    let s = futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let Some(&(start, end)) = st.ranges.get(st.range) else {
                st.done = true;
                let closing = st
                    .parts
                    .as_ref()
                    .map(|_| Bytes::from(format!("\r\n--{BOUNDARY}--\r\n")));
                return closing.map(|c| (Ok(Frame::data(c)), st));
            };
            if !st.header_sent {
                st.header_sent = true;
                if let Some(h) = st.parts.as_ref().and_then(|p| p.get(st.range)).cloned() {
                    return Some((Ok(Frame::data(h)), st));
                }
            }
            let reader = match &mut st.reader {
                Some(r) => r,
                None => {
                    st.pos = start;
                    st.reader.insert(Reader::new(st.body.clone(), start))
                }
            };
            match reader.next().await {
                Read::Data(c) => {
                    let (lo, hi) = (st.pos, st.pos + c.len() as u64); // c covers [lo, hi)
                    st.pos = hi;
                    let to = (end.saturating_add(1).min(hi) - lo) as usize;
                    if hi > end {
                        // This range is done.
                        st.range += 1;
                        st.reader = None;
                        st.header_sent = false;
                    }
                    if to > 0 {
                        return Some((Ok(Frame::data(c.slice(..to))), st));
                    }
                }
                Read::End => {
                    if whole || st.range + 1 >= st.ranges.len() {
                        st.range = st.ranges.len();
                        // Whole or single ranges end here; multipart bodies still close.
                        st.parts.as_ref()?;
                    } else {
                        st.range += 1;
                        st.reader = None;
                        st.header_sent = false;
                    }
                }
                Read::Failed(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
    });
    StreamBody::new(s).boxed()
}

/// Renders one response for one client.
pub(crate) fn render(r: Rendition<'_>) -> Response<ProxyBody> {
    // A body with a file copy may go out from it (see `zerocopy`).
    let sendable = r.body.file_copy().is_some().then(|| r.body.clone());
    let mut out_headers = HeaderMap::new();
    let (status, body) = if r.status == StatusCode::OK
        && conditional::not_modified(r.request, r.headers)
    {
        for name in NOT_MODIFIED_FIELDS {
            for v in r.headers.get_all(name) {
                out_headers.append(name, v.clone());
            }
        }
        (StatusCode::NOT_MODIFIED, empty())
    } else {
        out_headers = r.headers.clone();
        let ranges = match (r.status, r.len) {
            (StatusCode::OK, Some(len)) => conditional::ranges(r.request, r.headers, len),
            _ => Ranges::Whole,
        };
        let len = r.len.unwrap_or(0);
        match ranges {
            Ranges::Whole => (r.status, if r.head_only { empty() } else { whole(r.body) }),
            Ranges::Unsatisfiable => {
                out_headers.remove(CONTENT_LENGTH);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    out_headers.insert(CONTENT_RANGE, v);
                }
                (StatusCode::RANGE_NOT_SATISFIABLE, empty())
            }
            Ranges::Parts(parts) if parts.len() == 1 => {
                let (a, b) = parts[0];
                out_headers.insert(CONTENT_LENGTH, HeaderValue::from(b - a + 1));
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                    out_headers.insert(CONTENT_RANGE, v);
                }
                let body = if r.head_only {
                    empty()
                } else {
                    ranged(r.body, parts, None)
                };
                (StatusCode::PARTIAL_CONTENT, body)
            }
            Ranges::Parts(parts) => {
                let ctype = r
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let heads: Vec<Bytes> = parts
                    .iter()
                    .enumerate()
                    .map(|(i, (a, b))| {
                        let lead = if i == 0 { "" } else { "\r\n" };
                        Bytes::from(format!(
                            "{lead}--{BOUNDARY}\r\ncontent-type: {ctype}\r\ncontent-range: bytes {a}-{b}/{len}\r\n\r\n"
                        ))
                    })
                    .collect();
                let total: u64 = heads.iter().map(|h| h.len() as u64).sum::<u64>()
                    + parts.iter().map(|(a, b)| b - a + 1).sum::<u64>()
                    + format!("\r\n--{BOUNDARY}--\r\n").len() as u64;
                out_headers.insert(CONTENT_LENGTH, HeaderValue::from(total));
                out_headers.remove(CONTENT_RANGE);
                if let Ok(v) =
                    HeaderValue::from_str(&format!("multipart/byteranges; boundary={BOUNDARY}"))
                {
                    out_headers.insert(CONTENT_TYPE, v);
                }
                let body = if r.head_only {
                    empty()
                } else {
                    ranged(r.body, parts, Some(heads))
                };
                (StatusCode::PARTIAL_CONTENT, body)
            }
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    if let Some(age) = r.age {
        resp.headers_mut()
            .insert(AGE, HeaderValue::from(age.as_secs()));
    }
    headers::add_via(resp.headers_mut());
    resp.headers_mut().insert("cache-status", r.cache_status);
    // Only if enough of it is sent: a head and a short body cost less in one write.
    let sent = headers::content_length(resp.headers());
    if let Some(body) = sendable.filter(|_| {
        !r.head_only && resp.status().is_success() && sent >= Some(zerocopy::MIN_SEND_FROM_FILE)
    }) {
        resp.extensions_mut().insert(zerocopy::Sendable(body));
    }
    resp
}

/// A complete small body (error pages).
pub(crate) fn full(body: String) -> ProxyBody {
    Full::new(Bytes::from(body))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::RANGE;

    async fn collect(b: ProxyBody) -> Vec<u8> {
        b.collect().await.unwrap().to_bytes().to_vec()
    }

    fn body() -> Arc<SharedBody> {
        let b = SharedBody::new();
        for part in [&b"0123"[..], b"4567", b"89"] {
            b.push(Bytes::from_static(part));
        }
        b.finish(Ok(()));
        b
    }

    fn request(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_str(range).unwrap());
        h
    }

    fn rendition<'a>(req: &'a HeaderMap, headers: &'a HeaderMap) -> Rendition<'a> {
        Rendition {
            request: req,
            status: StatusCode::OK,
            headers,
            body: body(),
            len: Some(10),
            head_only: false,
            age: None,
            cache_status: HeaderValue::from_static("reef; hit"),
        }
    }

    #[tokio::test]
    async fn single_and_multiple_ranges_across_chunks() {
        let none = HeaderMap::new();
        let req = request("bytes=2-6");
        let r = render(rendition(&req, &none));
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes 2-6/10");
        assert_eq!(collect(r.into_body()).await, b"23456");
        let req = request("bytes=8-, 0-1");
        let r = render(rendition(&req, &none));
        assert_eq!(r.status(), 206);
        let declared: usize = r.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let text = collect(r.into_body()).await;
        assert_eq!(text.len(), declared);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("content-range: bytes 8-9/10\r\n\r\n89\r\n"),
            "{text}"
        );
        assert!(
            text.contains("content-range: bytes 0-1/10\r\n\r\n01\r\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
        let req = request("bytes=50-");
        assert_eq!(render(rendition(&req, &none)).status(), 416);
        let whole = HeaderMap::new();
        let r = render(rendition(&whole, &none));
        assert_eq!(collect(r.into_body()).await, b"0123456789");
    }

    #[tokio::test]
    async fn ranges_of_an_object_still_arriving_wait_for_their_bytes() {
        let growing = SharedBody::new();
        growing.push(Bytes::from_static(b"0123"));
        let none = HeaderMap::new();
        let req = request("bytes=3-5");
        let r = render(Rendition {
            body: growing.clone(),
            ..rendition(&req, &none)
        });
        let reader = tokio::spawn(collect(r.into_body()));
        tokio::task::yield_now().await;
        growing.push(Bytes::from_static(b"4567"));
        growing.finish(Ok(()));
        assert_eq!(reader.await.unwrap(), b"345");
    }
}
