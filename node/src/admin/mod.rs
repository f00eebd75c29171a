//! The admin port: the status page at `/` (one HTML file, no external assets, refreshing
//! itself from `/status`), `/status` (JSON, for `reef status`, the page and scripts) and
//! `/metrics` (Prometheus text exposition format, version 0.0.4).
//!
//! It binds loopback by default: it tells anyone who can reach it about the node's peers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod history;
pub mod metrics;
pub mod status;

pub use history::History;
pub use metrics::metrics;
pub use status::Status;

use crate::directory::OverlayDirectory;
use crate::overlay::Overlay;
use crate::overlay::transfer::TransferCounters;

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
    /// Requests over time.
    pub history: Arc<History>,
}

/// The status page.
const PAGE: &str = include_str!("page.html");

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
        "/" => {
            let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", PAGE.into());
            // The page runs its own script and nothing else.
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
                ),
            );
            r
        }
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
            "not found: try /, /status, /metrics or POST /locate\n".into(),
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
