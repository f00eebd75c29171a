//! Methods other than GET and HEAD for one's own site (`--pass-methods`, reverse-proxy mode
//! only): passed to the origin uncached, with the request body streamed through, and the
//! answer streamed back. A successful unsafe request invalidates what the cache holds for its
//! URL and for the `Location`/`Content-Location` it names on the same origin (RFC 9111
//! section 4.4), so the next GET sees the change. CDN names never pass anything: a CDN
//! serves GET and HEAD, and a volunteer's node must not carry someone's POSTs.

use std::net::SocketAddr;

use http::header::{CONTENT_LOCATION, HOST, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::BodyError;
use crate::headers;
use crate::route::Upstream;
use crate::service::{Proxy, ProxyBody};
use crate::stats::Stats;

/// Whether `method` changes state at the origin (RFC 9110 section 9.2.1).
fn unsafe_method(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl Proxy {
    /// Sends the request to `up` as it came and streams the answer back, uncached.
    pub(crate) async fn pass(
        &self,
        parts: Parts,
        body: Incoming,
        up: &Upstream,
        client: SocketAddr,
    ) -> Result<Response<ProxyBody>, String> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let scheme = if up.tls { "https" } else { "http" };
        let uri: http::Uri = format!("{scheme}://{}:{}{path}", up.host, up.port)
            .parse()
            .map_err(|e| format!("bad URI: {e}"))?;
        let mut req = Request::new(body.boxed());
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        let mut h = parts.headers;
        headers::remove_hop_by_hop(&mut h);
        let host = up.host_header();
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(HOST, v);
        }
        headers::add_via(&mut h);
        if let Ok(v) = HeaderValue::from_str(&client.ip().to_string()) {
            h.insert("x-forwarded-for", v);
        }
        *req.headers_mut() = h;
        let (resp, permit, answer) = self
            .send_to_origin(up, req)
            .await
            .map_err(|e| e.to_string())?;
        if unsafe_method(&parts.method)
            && (answer.status.is_success() || answer.status.is_redirection())
        {
            self.invalidate(up, path, &answer.headers);
        }
        Stats::bump(&self.stats.misses);
        let (mut head, incoming) = resp.into_parts();
        headers::remove_hop_by_hop(&mut head.headers);
        head.headers.insert(
            "cache-status",
            self.cache_status("fwd=method; detail=passed"),
        );
        // The origin slot is freed once the answer's head is here: a client that never reads
        // a passed answer must not starve the cache's fetches from this origin.
        drop(permit);
        let body = incoming
            .map_err(|e| BodyError::Upstream(e.to_string()))
            .boxed();
        Ok(Response::from_parts(head, body))
    }

    /// Drops the stored copies of `path` and of the same-origin URLs the answer names.
    fn invalidate(&self, up: &Upstream, path: &str, answer: &http::HeaderMap) {
        self.store.remove(&format!("{up}{path}"));
        for name in [LOCATION, CONTENT_LOCATION] {
            let Some(target) = answer.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let same_origin = target
                .strip_prefix(&up.to_string())
                .filter(|rest| rest.starts_with('/'))
                .or_else(|| target.starts_with('/').then_some(target));
            if let Some(p) = same_origin {
                self.store.remove(&format!("{up}{p}"));
            }
        }
    }
}
