//! Peer-to-peer object transfer on libp2p streams (`/reef/object/1`).
//!
//! One stream per object. The asker writes one request frame; the holder answers with a
//! head frame, then body frames as the body grows (it may still be fetching it), then an end
//! frame with the SHA-256 of the whole body. A stream that stops before the end frame is a
//! failed transfer, which the proxy resumes elsewhere.
//!
//! ```text
//! request  = frame(postcard(WireRequest))
//! answer   = frame(postcard(WireHead)) { data }* (end | error)
//! data     = 0x00 frame(bytes)     end = 0x01 [u8; 32]     error = 0x02 frame(utf-8)
//! frame    = u32-be length, bytes (length capped per kind)
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libp2p::{PeerId, StreamProtocol};
use proxy::directory::{PeerChunk, PeerError, PeerRequest, PeerResponse};
use serde::{Deserialize, Serialize};

use super::codec::{push_frame, read_frame, write_frame};

/// The object-transfer protocol.
pub const OBJECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/reef/object/1");

/// Largest request or head frame (a URL and its headers).
const MAX_HEAD: usize = 64 << 10;
/// Largest data frame; bigger chunks are split.
const MAX_DATA: usize = 64 << 10;
/// Largest error message.
const MAX_ERROR: usize = 1024;
/// Longest a peer may leave a data frame unread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the asker to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const TAG_DATA: u8 = 0;
const TAG_END: u8 = 1;
const TAG_ERROR: u8 = 2;

type Headers = Vec<(String, Vec<u8>)>;

#[derive(Serialize, Deserialize)]
struct WireRequest {
    key: String,
    headers: Headers,
    offset: u64,
    trace: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum WireHead {
    Found {
        status: u16,
        headers: Headers,
        cache_status: Option<Vec<u8>>,
    },
    NotFound,
}

fn to_wire(headers: &HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn from_wire(headers: Headers) -> Result<HeaderMap, PeerError> {
    let mut out = HeaderMap::new();
    for (n, v) in headers {
        let name = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| PeerError::Protocol(format!("bad header name {n:?}")))?;
        let value = HeaderValue::from_bytes(&v)
            .map_err(|_| PeerError::Protocol(format!("bad value for header {n}")))?;
        out.append(name, value);
    }
    Ok(out)
}

fn transfer(e: impl std::fmt::Display) -> PeerError {
    PeerError::Transfer(e.to_string())
}

fn protocol(e: impl std::fmt::Display) -> PeerError {
    PeerError::Protocol(e.to_string())
}

/// Asks `peer` for an object. The body arrives as a stream ending with `End`.
pub async fn fetch(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    req: PeerRequest,
) -> Result<PeerResponse, PeerError> {
    let mut stream = control
        .open_stream(peer, OBJECT_PROTOCOL)
        .await
        .map_err(transfer)?;
    let wire = WireRequest {
        key: req.key,
        headers: to_wire(&req.headers),
        offset: req.offset,
        trace: req.trace,
    };
    let bytes = postcard::to_stdvec(&wire).map_err(protocol)?;
    write_frame(&mut stream, &bytes).await.map_err(transfer)?;
    stream.flush().await.map_err(transfer)?;
    let head = read_frame(&mut stream, MAX_HEAD).await.map_err(transfer)?;
    let (status, headers, cache_status) = match postcard::from_bytes(&head).map_err(protocol)? {
        WireHead::Found {
            status,
            headers,
            cache_status,
        } => (status, headers, cache_status),
        WireHead::NotFound => return Err(PeerError::NotFound),
    };
    let status = StatusCode::from_u16(status).map_err(protocol)?;
    let headers = from_wire(headers)?;
    let cache_status = cache_status.and_then(|v| HeaderValue::from_bytes(&v).ok());
    let body = futures::stream::unfold(Some(stream), |stream| async move {
        let mut stream = stream?;
        let mut tag = [0u8; 1];
        if let Err(e) = stream.read_exact(&mut tag).await {
            return Some((Err(transfer(e)), None));
        }
        match tag[0] {
            TAG_DATA => match read_frame(&mut stream, MAX_DATA).await {
                Ok(data) => Some((Ok(PeerChunk::Data(Bytes::from(data))), Some(stream))),
                Err(e) => Some((Err(transfer(e)), None)),
            },
            TAG_END => {
                let mut sha256 = [0u8; 32];
                match stream.read_exact(&mut sha256).await {
                    Ok(()) => Some((Ok(PeerChunk::End { sha256 }), None)),
                    Err(e) => Some((Err(transfer(e)), None)),
                }
            }
            TAG_ERROR => {
                let msg = read_frame(&mut stream, MAX_ERROR).await.unwrap_or_default();
                let msg = String::from_utf8_lossy(&msg).into_owned();
                Some((Err(PeerError::Transfer(msg)), None))
            }
            t => Some((Err(protocol(format!("unknown frame tag {t}"))), None)),
        }
    });
    Ok(PeerResponse {
        status,
        headers,
        cache_status,
        body: Box::pin(body),
    })
}

/// Answers object requests from peers with what `proxy` has, at most `max_streams` at once.
pub async fn serve(
    mut control: libp2p_stream::Control,
    proxy: Arc<proxy::Proxy>,
    max_streams: usize,
    counters: Arc<TransferCounters>,
) {
    let Ok(mut incoming) = control.accept(OBJECT_PROTOCOL) else {
        tracing::error!("the object protocol is already being served");
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(max_streams.max(1)));
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many object transfers at once; refusing one");
            drop(stream);
            continue;
        };
        let proxy = proxy.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_one(peer, stream, &proxy, &counters).await {
                tracing::debug!(%peer, error = %e, "object transfer to a peer ended early");
            }
        });
    }
}

/// Byte and object counters of the transfers this node served.
#[derive(Debug, Default)]
pub struct TransferCounters {
    /// Objects served to peers.
    pub objects_served: std::sync::atomic::AtomicU64,
    /// Body bytes served to peers.
    pub bytes_served: std::sync::atomic::AtomicU64,
}

async fn serve_one(
    peer: PeerId,
    mut stream: libp2p::Stream,
    proxy: &proxy::Proxy,
    counters: &TransferCounters,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    let frame = tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream, MAX_HEAD))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in time"))??;
    let bad = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    let wire: WireRequest = postcard::from_bytes(&frame).map_err(|e| bad(&e))?;
    let req = PeerRequest {
        key: wire.key,
        headers: from_wire(wire.headers).map_err(|e| bad(&e))?,
        offset: wire.offset,
        trace: wire.trace,
    };
    tracing::debug!(%peer, trace = ?req.trace, key = %req.key, offset = req.offset, "peer asks for an object");
    let Ok(resp) = proxy.serve_peer(&req).await else {
        let head = postcard::to_stdvec(&WireHead::NotFound).map_err(|e| bad(&e))?;
        within_write_timeout(write_frame(&mut stream, &head)).await?;
        return within_write_timeout(stream.close()).await;
    };
    let head = WireHead::Found {
        status: resp.status.as_u16(),
        headers: to_wire(&resp.headers),
        cache_status: resp.cache_status.map(|v| v.as_bytes().to_vec()),
    };
    let head = postcard::to_stdvec(&head).map_err(|e| bad(&e))?;
    within_write_timeout(write_frame(&mut stream, &head)).await?;
    counters.objects_served.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.body;
    // Each frame goes out in one write with its tag (see `write_frame`).
    let mut frame = Vec::with_capacity(5 + MAX_DATA);
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(PeerChunk::Data(data)) => {
                for piece in data.chunks(MAX_DATA) {
                    frame.clear();
                    frame.push(TAG_DATA);
                    push_frame(&mut frame, piece)?;
                    within_write_timeout(stream.write_all(&frame)).await?;
                }
                counters
                    .bytes_served
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Ok(PeerChunk::End { sha256 }) => {
                frame.clear();
                frame.push(TAG_END);
                frame.extend_from_slice(&sha256);
                within_write_timeout(stream.write_all(&frame)).await?;
                return within_write_timeout(stream.close()).await;
            }
            Err(e) => {
                let msg = e.to_string();
                frame.clear();
                frame.push(TAG_ERROR);
                push_frame(&mut frame, &msg.as_bytes()[..msg.len().min(MAX_ERROR)])?;
                within_write_timeout(stream.write_all(&frame)).await?;
                return within_write_timeout(stream.close()).await;
            }
        }
    }
    within_write_timeout(stream.close()).await
}

/// A peer that stops reading must not hold a transfer slot for ever.
async fn within_write_timeout(
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer stopped reading"))?
}
