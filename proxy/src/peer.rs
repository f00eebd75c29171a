//! Objects from and for peers.
//!
//! Fetching: a holder the directory named answers with the object's stored head and a body
//! stream that ends with the SHA-256 of the whole body. The body is checked as it arrives;
//! a holder that sends bytes that do not match is reported and nothing is stored. If the
//! holder breaks off, the transfer resumes at the same byte from the next holder, else from
//! the origin with a `Range` request, so the client still receives the whole, correct body.
//!
//! Serving: [`Proxy::serve_peer`] answers from a fresh stored copy or from a fetch in
//! flight (the peer follows the body as it grows). It never starts a fetch of its own: a
//! peer asking for what this node does not have goes elsewhere.

use std::sync::Arc;
use std::time::SystemTime;

use crate::digest::BodyDigest;
use futures_util::StreamExt;
use http::header::{AGE, CONTENT_RANGE, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::body::{BodyError, SharedBody};
use crate::cache::freshness::{self, Received, Use};
use crate::directory::{
    Directory, Holder, Holding, PeerBody, PeerChunk, PeerError, PeerRequest, PeerResponse,
};
use crate::fetch::Answer;
use crate::headers::{self, content_length};
use crate::reader::{Read, Reader};
use crate::service::{Head, HeadSender, Proxy, Want};
use crate::stats::Stats;

/// The error an answer that took too long gets (not retried: the holder is slow, not gone).
const NO_ANSWER: &str = "no answer in time";

/// Holders tried for one object before going to the origin.
const MAX_PEER_TRIES: usize = 3;

/// The request headers a peer needs to pick the right variant.
fn selecting_headers(request: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in request {
        if headers::FORWARDED_REQUEST_HEADERS.contains(&name.as_str())
            && name != http::header::AUTHORIZATION
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// A body as a peer stream, from byte `offset`, ending with its digest.
fn peer_body(body: Arc<SharedBody>, offset: u64) -> PeerBody {
    let start = (Reader::new(body, offset), false);
    Box::pin(futures_util::stream::unfold(
        start,
        |(mut reader, done)| async move {
            if done {
                return None;
            }
            match reader.next().await {
                Read::Data(c) => Some((Ok(PeerChunk::Data(c)), (reader, false))),
                Read::End => {
                    let Some(sha256) = reader.body().digest_or_hash() else {
                        return Some((Err(PeerError::NotFound), (reader, true)));
                    };
                    Some((Ok(PeerChunk::End { sha256 }), (reader, true)))
                }
                Read::Failed(e) => Some((Err(PeerError::Transfer(e.to_string())), (reader, true))),
            }
        },
    ))
}

/// The validator that makes a range resumption safe: a strong ETag, else Last-Modified.
fn resume_validator(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(ETAG)
        .filter(|v| !v.as_bytes().starts_with(b"W/"))
        .or_else(|| headers.get(LAST_MODIFIED))
        .cloned()
}

/// The total length of a `Content-Range: bytes a-b/n` value, if known.
fn range_total(value: Option<&HeaderValue>) -> Option<u64> {
    value?
        .to_str()
        .ok()?
        .rsplit('/')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The first byte position of a `Content-Range: bytes a-b/n` value.
fn range_start(value: &HeaderValue) -> Option<u64> {
    let rest = value.to_str().ok()?.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// A peer's copy must have left the origin this long after a purge to be used: ages are
/// whole seconds, so a copy up to a second older can look newer than it is.
const PURGE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

impl Proxy {
    /// What this node can give a peer: a fresh stored copy, or the object it is fetching now.
    pub async fn serve_peer(&self, req: &PeerRequest) -> Result<PeerResponse, PeerError> {
        if self.over_quota() {
            return Err(PeerError::NotFound); // out of the network until the cool-down ends
        }
        let now = SystemTime::now();
        if let Some(stored) = self.store.lookup(&req.key, &req.headers).await {
            let age = stored.age(now);
            let fresh = freshness::usable(
                &req.headers,
                &stored.headers,
                stored.lifetime,
                age,
                &self.config.policy,
            );
            if fresh == Use::Fresh {
                let mut headers = stored.headers.clone();
                headers.insert(AGE, HeaderValue::from(age.as_secs()));
                return Ok(PeerResponse {
                    status: stored.status,
                    headers,
                    cache_status: Some(self.cache_status("hit")),
                    body: peer_body(stored.body.clone(), req.offset),
                });
            }
        }
        let fetch = self
            .inflight
            .lock()
            .ok()
            .and_then(|f| f.get(&req.key).cloned());
        let Some(fetch) = fetch else {
            return Err(PeerError::NotFound);
        };
        let head = tokio::time::timeout(self.config.first_byte_timeout, fetch.head())
            .await
            .map_err(|_| PeerError::NotFound)?
            .map_err(|_| PeerError::NotFound)?;
        let same_variant = head
            .vary
            .iter()
            .all(|(n, v)| req.headers.get(n) == v.as_ref());
        if !head.storable || !same_variant {
            return Err(PeerError::NotFound);
        }
        let mut headers = head.headers.clone();
        let age = head.received.current_age(now);
        headers.insert(AGE, HeaderValue::from(age.as_secs()));
        let body = head.body.clone().unwrap_or_else(|| fetch.body.clone());
        Ok(PeerResponse {
            status: head.status,
            headers,
            cache_status: Some(self.cache_status("fwd=miss; detail=in-flight")),
            body: peer_body(body, req.offset),
        })
    }

    fn peer_request(want: &Want, offset: u64) -> PeerRequest {
        PeerRequest {
            key: want.key.clone(),
            headers: selecting_headers(&want.headers),
            offset,
            trace: want.trace.clone(),
        }
    }

    /// Asks `from` for the object from `offset`, within the first-byte timeout.
    async fn ask_peer(
        &self,
        dir: &dyn Directory,
        from: &Holder,
        want: &Want,
        offset: u64,
    ) -> Result<PeerResponse, PeerError> {
        let ask = dir.fetch(from, Self::peer_request(want, offset));
        match tokio::time::timeout(self.config.first_byte_timeout, ask).await {
            Ok(r) => r,
            Err(_) => Err(PeerError::Transfer(NO_ANSWER.into())),
        }
    }

    /// Tries `holders` in turn; true once one of them delivered a head (its body then
    /// follows into `body`, resumed elsewhere if the holder fails).
    pub(crate) async fn fetch_from_peers(
        &self,
        dir: &dyn Directory,
        holders: &[Holder],
        want: &Want,
        head_tx: &HeadSender,
        body: &SharedBody,
    ) -> bool {
        for (i, holder) in holders.iter().enumerate().take(MAX_PEER_TRIES) {
            let request_time = SystemTime::now();
            // A transfer error before the head is often a connection that was closing as
            // the stream opened: one more try opens a fresh one.
            let first = self.ask_peer(dir, holder, want, 0).await;
            let resp = match first {
                Err(PeerError::Transfer(e)) if e != NO_ANSWER => {
                    self.ask_peer(dir, holder, want, 0).await
                }
                other => other,
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(trace = ?want.trace, peer = %holder.name, error = %e, "peer could not serve");
                    continue;
                }
            };
            // A copy from before a purge of this URL is the purged object (the holder has
            // not heard of the purge yet). When it left the origin is reckoned by this node's
            // clock from the copy's age, so no holder's clock vouches for it; ages are whole
            // seconds, hence the margin.
            let age = Received::new(request_time, request_time, &resp.headers).age;
            let generated = request_time.checked_sub(age);
            if self
                .store
                .cutoffs()
                .of(&want.key)
                .is_some_and(|cut| generated.is_none_or(|g| g < cut + PURGE_MARGIN))
            {
                tracing::debug!(trace = ?want.trace, peer = %holder.name, key = %want.key, "the peer's copy predates a purge");
                continue;
            }
            let answer = Answer {
                status: resp.status,
                headers: resp.headers,
                request_time,
                response_time: SystemTime::now(),
            };
            let mut head = match self.judge(want, answer) {
                Ok(h) if h.storable => h,
                _ => continue,
            };
            tracing::debug!(trace = ?want.trace, peer = %holder.name, key = %want.key, "fetching from a peer");
            Stats::bump(&self.stats.peer_fetches);
            head.peer = Some((holder.name.clone(), resp.cache_status));
            let head = Arc::new(head);
            let _ = head_tx.send(Some(Ok(head.clone())));
            let rest = holders.get(i + 1..).unwrap_or_default();
            let stored = self
                .pump_peers(dir, holder.clone(), resp.body, rest, want, &head, body)
                .await;
            dir.announce(&want.key, Holding::after_fetch(stored));
            return true;
        }
        false
    }

    /// Reads a peer body into `body`, checking its digest, resuming from the next holder or
    /// the origin if the peer breaks off. True if the object was stored.
    ///
    /// The latest chunk is held back until the next one arrives or the digest checks out,
    /// and nothing beyond the head's `Content-Length` is accepted: a client that knows the
    /// length takes the body as complete at its last byte, so unchecked bytes must never
    /// bring the body to its full length.
    #[allow(clippy::too_many_arguments)] // one transfer's whole state; a struct would only rename it
    async fn pump_peers(
        &self,
        dir: &dyn Directory,
        mut holder: Holder,
        mut source: PeerBody,
        mut others: &[Holder],
        want: &Want,
        head: &Head,
        body: &SharedBody,
    ) -> bool {
        // The digest of what has gone into `body` (all but the held chunk). One pass over the
        // bytes: the digest of everything received, checked against the holder's, is this
        // plus the held chunk (hashing twice cost a fifth of a receiving node's CPU).
        let mut sha_pushed = BodyDigest::default();
        let cap = self.config.max_object_bytes;
        let declared = content_length(&head.headers);
        let validator = resume_validator(&head.headers);
        let mut held: Option<bytes::Bytes> = None;
        // Whether one holder sent all of it (only then is a bad digest that holder's fault).
        let mut one_holder = true;
        loop {
            let next = tokio::time::timeout(self.config.body_idle_timeout, source.next()).await;
            let pending = held.as_ref().map_or(0, |h| h.len() as u64);
            let failure = match next {
                Ok(Some(Ok(PeerChunk::Data(data)))) if data.is_empty() => continue,
                Ok(Some(Ok(PeerChunk::Data(data)))) => {
                    let total = body.len() + pending + data.len() as u64;
                    if total > cap {
                        body.finish(Err(BodyError::TooLarge(cap)));
                        return false;
                    }
                    if declared.is_some_and(|l| total > l) {
                        PeerError::Protocol("more bytes than the Content-Length".into())
                    } else {
                        self.stats
                            .peer_bytes
                            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        if let Some(previous) = held.replace(data) {
                            sha_pushed.update(previous.clone()).await;
                            body.append(previous).await;
                        }
                        continue;
                    }
                }
                Ok(Some(Ok(PeerChunk::End { sha256 }))) => {
                    let complete = declared.is_none_or(|l| body.len() + pending == l);
                    // Checked only when complete: the digest then covers the held chunk too.
                    if complete {
                        if let Some(last) = &held {
                            sha_pushed.update(last.clone()).await;
                        }
                        let got = match sha_pushed.so_far().await {
                            Ok(got) => got,
                            Err(e) => {
                                // Our own hashing failed: nothing the peer did.
                                body.finish(Err(e));
                                return false;
                            }
                        };
                        if got == sha256 {
                            if let Some(last) = held.take() {
                                body.push(last);
                            }
                            return self.complete(want, head, body, sha_pushed).await;
                        }
                    }
                    tracing::warn!(trace = ?want.trace, peer = %holder.name, key = %want.key, "peer sent bytes that do not match its SHA-256 or length; discarded");
                    if one_holder {
                        dir.report(&holder, &PeerError::WrongBytes);
                    }
                    body.finish(Err(BodyError::Upstream(PeerError::WrongBytes.to_string())));
                    return false;
                }
                Ok(Some(Err(e))) => e,
                Ok(None) => PeerError::Transfer("stream ended before the body did".into()),
                Err(_) => PeerError::Transfer("peer stalled mid-body".into()),
            };
            // The held chunk stays held: the next holder's digest covers it too.
            let offset = body.len() + pending;
            tracing::info!(trace = ?want.trace, peer = %holder.name, error = %failure, offset, "peer transfer broke off; resuming");
            let mut resumed = None;
            while let Some((next_holder, rest)) = others.split_first() {
                others = rest;
                match self.ask_peer(dir, next_holder, want, offset).await {
                    // Only the same representation: an equal strong validator and length.
                    Ok(r)
                        if r.status == head.status
                            && validator.is_some()
                            && resume_validator(&r.headers) == validator
                            && content_length(&r.headers) == declared =>
                    {
                        resumed = Some((next_holder.clone(), r.body));
                        break;
                    }
                    _ => continue,
                }
            }
            match resumed {
                Some((h, b)) => {
                    holder = h;
                    source = b;
                    one_holder = false;
                }
                None => {
                    // The origin is the authority for the rest, from the last byte passed on:
                    // the held chunk was never checked, so the origin sends it again.
                    let from = body.len();
                    return self
                        .resume_from_origin(want, head, body, sha_pushed, from)
                        .await;
                }
            }
        }
    }

    /// Fetches the rest of a body from the origin, from `offset`: a `Range` request guarded
    /// by `If-Range`. A full answer instead is accepted only if its first `offset` bytes are
    /// the ones already received. True if the object was stored.
    async fn resume_from_origin(
        &self,
        want: &Want,
        head: &Head,
        body: &SharedBody,
        mut sha: BodyDigest,
        offset: u64,
    ) -> bool {
        let fail = |why: String| {
            body.finish(Err(BodyError::Upstream(why)));
            false
        };
        let resume = resume_validator(&head.headers).map(|v| (offset, v));
        let req = match self.origin_request(want, resume) {
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        let (resp, _permit, answer) = match self.send_to_origin(&want.up, req).await {
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        let prefix = match sha.so_far().await {
            Ok(prefix) => prefix,
            Err(e) => return fail(e.to_string()),
        };
        // A 206 must be the same representation: the range asked for, the same validator
        // and the same total length (an origin ignoring If-Range sends a newer one's tail).
        let same = resume_validator(&answer.headers) == resume_validator(&head.headers)
            && range_total(answer.headers.get(CONTENT_RANGE))
                .is_none_or(|t| content_length(&head.headers).is_none_or(|l| t == l));
        // With a range, the bytes the failed peer passed on were never checked by anyone:
        // the client gets the whole body, but it is not stored or announced, so a peer that
        // sent wrong bytes and vanished cannot spread them. A full answer checks them.
        let (outcome, checked) = match answer.status {
            StatusCode::PARTIAL_CONTENT
                if same
                    && answer.headers.get(CONTENT_RANGE).and_then(range_start) == Some(offset) =>
            {
                let r = self
                    .pump_origin(resp.into_body(), body, &mut sha, 0, None)
                    .await;
                (r, false)
            }
            s if s == head.status => {
                let r = self
                    .pump_origin(resp.into_body(), body, &mut sha, offset, Some(prefix))
                    .await;
                (r, true)
            }
            s => (
                Err(BodyError::Upstream(format!(
                    "origin answered {s} to the resumption"
                ))),
                false,
            ),
        };
        match outcome {
            Ok(()) if checked => self.complete(want, head, body, sha).await,
            Ok(()) => {
                let _ = self.complete_unstored(head, body, sha).await;
                false
            }
            Err(e) => {
                body.finish(Err(e));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn collect(mut s: PeerBody) -> (Vec<u8>, Option<[u8; 32]>) {
        futures_util::FutureExt::now_or_never(async move {
            let mut data = Vec::new();
            let mut end = None;
            while let Some(c) = s.next().await {
                match c {
                    Ok(PeerChunk::Data(d)) => data.extend_from_slice(&d),
                    Ok(PeerChunk::End { sha256 }) => end = Some(sha256),
                    Err(e) => panic!("{e}"),
                }
            }
            (data, end)
        })
        .expect("a complete body streams without waiting")
    }

    #[test]
    fn a_peer_body_starts_at_the_offset_and_ends_with_the_whole_digest() {
        let body = SharedBody::new();
        body.push(Bytes::from_static(b"hello "));
        body.push(Bytes::from_static(b"world"));
        body.finish(Ok(()));
        let whole = crate::body::sha256(b"hello world");
        assert_eq!(
            collect(peer_body(body.clone(), 0)),
            (b"hello world".to_vec(), Some(whole))
        );
        assert_eq!(
            collect(peer_body(body.clone(), 8)),
            (b"rld".to_vec(), Some(whole))
        );
        assert_eq!(
            collect(peer_body(body.clone(), 6)),
            (b"world".to_vec(), Some(whole))
        );
        assert_eq!(collect(peer_body(body, 11)), (Vec::new(), Some(whole)));
    }

    #[test]
    fn resumption_needs_a_strong_validator_and_a_matching_range() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("W/\"weak\""));
        assert_eq!(resume_validator(&h), None);
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert!(resume_validator(&h).is_some());
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(
            resume_validator(&h),
            Some(HeaderValue::from_static("\"strong\""))
        );
        assert_eq!(
            range_start(&HeaderValue::from_static("bytes 100-199/200")),
            Some(100)
        );
        assert_eq!(range_start(&HeaderValue::from_static("bytes */200")), None);
        assert_eq!(range_start(&HeaderValue::from_static("items 1-2/3")), None);
    }
}
