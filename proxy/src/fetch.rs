//! Fetching an object: from a peer the directory names, else from the origin, into the
//! shared growing body that every collapsed request reads.
//!
//! ```text
//! fetch ─▶ revalidation? ─────────────────────────────────────────┐
//!   │ shareable miss                                              ▼
//!   ├─▶ locate ─▶ holders ─▶ peer.rs (resumes elsewhere on failure) origin (slots) ─▶ 304 merge
//!   └─▶ claim  ─▶ earlier claimant? ─┘        none ─▶ origin ─▶ body ─▶ store ─▶ announce
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use ring::digest::{Context, SHA256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::{BodyError, SharedBody};
use crate::cache::conditional;
use crate::cache::freshness::{self, Received};
use crate::connect::OriginBody;
use crate::digest::BodyDigest;
use crate::directory::Holding;
use crate::headers;
use crate::route::Upstream;
use crate::service::{FetchError, Head, HeadSender, Proxy, Want};
use crate::stats::Stats;
use crate::store::Stored;

/// What an upstream (origin or peer) answered, before it is judged.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) request_time: SystemTime,
    pub(crate) response_time: SystemTime,
}

/// An empty request body.
pub(crate) fn no_body() -> OriginBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

impl Proxy {
    /// The fetch slots of an origin.
    fn origin_slots(&self, up: &Upstream) -> Arc<Semaphore> {
        let n = self.config.origin_concurrency.max(1);
        let Ok(mut slots) = self.slots.lock() else {
            return Arc::new(Semaphore::new(n));
        };
        if slots.len() >= 4096 {
            // Forget origins with no fetch under way.
            slots.retain(|_, s| s.available_permits() < n);
        }
        slots
            .entry(format!("{}:{}", up.host, up.port))
            .or_insert_with(|| Arc::new(Semaphore::new(n)))
            .clone()
    }

    /// Whether `up` resolves to an allowed address, as a typed error if not.
    async fn resolve(&self, up: &Upstream) -> Result<(), FetchError> {
        match self.resolver.lookup(&up.host).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(FetchError::Forbidden(format!(
                    "{} resolves only to private addresses (--allow-private-origins to permit)",
                    up.host
                )))
            }
            Err(e) => Err(FetchError::Unreachable(format!(
                "resolving {}: {e}",
                up.host
            ))),
        }
    }

    /// The origin answered 304 to a revalidation: the stored copy holds. Its headers are
    /// updated from the 304 (RFC 9111 section 4.3.4), its age restarts, and it is stored and
    /// served again without fetching the body.
    fn revalidated(
        &self,
        key: &str,
        stored: &Stored,
        mut fresh: HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        head_tx: &HeadSender,
    ) {
        headers::remove_hop_by_hop(&mut fresh);
        if self.config.policy.strip_cookies {
            headers::strip_cookies(&mut fresh);
        }
        let mut merged = stored.headers.clone();
        for name in fresh.keys() {
            if name == CONTENT_LENGTH {
                continue; // describes the 304, not the stored body
            }
            merged.remove(name);
        }
        for (name, value) in &fresh {
            if name != CONTENT_LENGTH {
                merged.append(name.clone(), value.clone());
            }
        }
        // The copy is as old as this answer: its stored Age no longer applies, and without a
        // Date in the 304 the time of the answer stands in.
        if !fresh.contains_key(http::header::AGE) {
            merged.remove(http::header::AGE);
        }
        if !fresh.contains_key(http::header::DATE)
            && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(response_time))
        {
            merged.insert(http::header::DATE, v);
        }
        let received = Received::new(request_time, response_time, &merged);
        let lifetime = freshness::freshness_lifetime(
            stored.status,
            &merged,
            response_time,
            &self.config.policy,
        );
        // The 304 may have made it unstorable (no-store, private now).
        let still_storable = freshness::storable(
            &Method::GET,
            &HeaderMap::new(),
            stored.status,
            &merged,
            &self.config.policy,
        )
        .is_ok();
        let updated = Arc::new(Stored {
            status: stored.status,
            headers: merged.clone(),
            received,
            lifetime,
            vary: stored.vary.clone(),
            body: stored.body.clone(),
        });
        if still_storable {
            self.store.put(key, updated);
        } else {
            self.store.remove(key);
        }
        let head = Head {
            status: stored.status,
            headers: merged,
            storable: still_storable,
            received,
            lifetime,
            vary: stored.vary.clone(),
            body: Some(stored.body.clone()),
            revalidated: true,
            peer: None,
        };
        let _ = head_tx.send(Some(Ok(Arc::new(head))));
    }

    /// Fetches `want` into `body`, announcing the head on `head_tx`.
    pub(crate) async fn fetch(&self, want: Want, head_tx: HeadSender, body: Arc<SharedBody>) {
        // Peers only for plain shareable misses: a revalidation asks the origin, and a
        // private request must not be answered from anyone's cache.
        let directory = self
            .directory
            .get()
            .filter(|_| want.shared && want.validate.is_none())
            .cloned();
        if let Some(dir) = &directory {
            let trace = want.trace.as_deref();
            let holders = dir.locate(&want.key, trace).await;
            if self
                .fetch_from_peers(dir.as_ref(), &holders, &want, &head_tx, &body)
                .await
            {
                return;
            }
            if let Some(first) = dir.claim(&want.key, trace).await
                && self
                    .fetch_from_peers(dir.as_ref(), &[first], &want, &head_tx, &body)
                    .await
            {
                return;
            }
        }
        let stored = self.fetch_origin(&want, &head_tx, &body).await;
        if let Some(dir) = &directory {
            dir.announce(&want.key, Holding::after_fetch(stored));
        }
    }

    /// The request that goes to the origin for `want`; `resume` asks for the body from a
    /// byte offset, if it still has the representation with the given validator.
    pub(crate) fn origin_request(
        &self,
        want: &Want,
        resume: Option<(u64, HeaderValue)>,
    ) -> Result<Request<OriginBody>, FetchError> {
        let up = &want.up;
        let scheme = if up.tls { "https" } else { "http" };
        let uri = format!("{scheme}://{}:{}{}", up.host, up.port, want.path)
            .parse::<http::Uri>()
            .map_err(|e| FetchError::Unreachable(format!("bad URI: {e}")))?;
        let mut req = Request::new(no_body());
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        // Only headers that select a representation (and are keyed through Vary) or identify
        // the client go upstream: anything else (X-Forwarded-Host, X-Original-URL, ...) could
        // change the origin's answer without being part of the cache key, and poison it for
        // everyone. Conditionals and Range are dropped: the whole object is what gets cached.
        for (name, value) in &want.headers {
            if headers::FORWARDED_REQUEST_HEADERS.contains(&name.as_str())
                || (name == http::header::COOKIE && !self.config.policy.strip_cookies)
            {
                h.append(name.clone(), value.clone());
            }
        }
        // Revalidating a stored copy: ask with its validators (RFC 9111 section 4.3.1).
        if let Some(stored) = &want.validate {
            for (name, value) in conditional::validators(&stored.headers) {
                h.insert(name, value);
            }
        }
        if let Some((from, validator)) = resume {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-")) {
                h.insert(http::header::RANGE, v);
            }
            h.insert(http::header::IF_RANGE, validator);
        }
        let host = up.host_header();
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(HOST, v);
        }
        headers::add_via(h);
        if let Some(trace) = &want.trace
            && let Ok(v) = HeaderValue::from_str(&crate::trace::traceparent(trace))
        {
            h.insert("traceparent", v);
        }
        // The address that connected, only: a client's own X-Forwarded-For is not trusted.
        if let Ok(v) = HeaderValue::from_str(&want.client.ip().to_string()) {
            h.insert("x-forwarded-for", v);
        }
        let ua = match h.get(USER_AGENT).and_then(|v| v.to_str().ok()) {
            Some(ua) => format!("{ua} reef/{}", env!("CARGO_PKG_VERSION")),
            None => format!("reef/{}", env!("CARGO_PKG_VERSION")),
        };
        if let Ok(v) = HeaderValue::from_str(&ua) {
            h.insert(USER_AGENT, v);
        }
        Ok(req)
    }

    /// Sends `req` for an object to `up` within its fetch slots. The permit comes back with
    /// the response: it is held until the body is read.
    pub(crate) async fn send_to_origin(
        &self,
        up: &Upstream,
        req: Request<OriginBody>,
    ) -> Result<(Response<Incoming>, OwnedSemaphorePermit, Answer), FetchError> {
        Stats::bump(&self.stats.origin_fetches);
        self.send_upstream(up, req).await
    }

    /// [`Proxy::send_to_origin`] without counting it as an object fetch (a site's
    /// reef.json).
    pub(crate) async fn send_upstream(
        &self,
        up: &Upstream,
        req: Request<OriginBody>,
    ) -> Result<(Response<Incoming>, OwnedSemaphorePermit, Answer), FetchError> {
        // Checked here for a clear error; the connector checks the address it connects to.
        self.resolve(up).await?;
        // At most `origin_concurrency` fetches per origin at once: a dying origin gets a
        // trickle, not a stampede of distinct URLs.
        let slots = self.origin_slots(up);
        let Ok(Ok(permit)) =
            tokio::time::timeout(self.config.first_byte_timeout, slots.acquire_owned()).await
        else {
            return Err(FetchError::Busy);
        };
        let request_time = SystemTime::now();
        let resp =
            match tokio::time::timeout(self.config.first_byte_timeout, self.client.request(req))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(FetchError::Unreachable(e.to_string())),
                Err(_) => return Err(FetchError::Unreachable("no response in time".into())),
            };
        let answer = Answer {
            status: resp.status(),
            headers: resp.headers().clone(),
            request_time,
            response_time: SystemTime::now(),
        };
        Ok((resp, permit, answer))
    }

    /// Cleans an upstream answer and judges whether it may be stored.
    pub(crate) fn judge(&self, want: &Want, answer: Answer) -> Result<Head, FetchError> {
        let Answer {
            status,
            mut headers,
            request_time,
            response_time,
        } = answer;
        headers::remove_hop_by_hop(&mut headers);
        headers.remove("cache-status"); // an upstream cache's entry describes its answer only
        if self.config.policy.strip_cookies {
            headers::strip_cookies(&mut headers);
        }
        if let Some(loc) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
            && let Some(rewritten) = self.router.rewrite_location(loc, &want.up)
            && let Ok(v) = HeaderValue::from_str(&rewritten)
        {
            headers.insert(LOCATION, v);
        }
        let too_large =
            headers::content_length(&headers).is_some_and(|n| n > self.config.max_object_bytes);
        if too_large {
            return Err(FetchError::TooLarge(self.config.max_object_bytes));
        }
        // Errors and partial answers are never stored: a stored good copy must not be
        // replaced by them (and the whole object was asked for).
        let storable = !status.is_server_error()
            && status != StatusCode::PARTIAL_CONTENT
            && freshness::storable(
                &Method::GET,
                &want.headers,
                status,
                &headers,
                &self.config.policy,
            )
            .is_ok();
        Ok(Head {
            status,
            received: Received::new(request_time, response_time, &headers),
            lifetime: freshness::freshness_lifetime(
                status,
                &headers,
                response_time,
                &self.config.policy,
            ),
            vary: Stored::vary_of(&want.headers, &headers),
            storable,
            headers,
            body: None,
            revalidated: false,
            peer: None,
        })
    }

    /// Fetches `want` from the origin; true if the object was stored.
    async fn fetch_origin(&self, want: &Want, head_tx: &HeadSender, body: &SharedBody) -> bool {
        let fail = |e: FetchError| {
            let _ = head_tx.send(Some(Err(e)));
            false
        };
        let req = match self.origin_request(want, None) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let sent = self.send_to_origin(&want.up, req).await;
        let (resp, _permit, answer) = match self.or_mirror(want, sent).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if answer.status == StatusCode::NOT_MODIFIED
            && let Some(stored) = &want.validate
        {
            self.revalidated(
                &want.key,
                stored,
                answer.headers,
                answer.request_time,
                answer.response_time,
                head_tx,
            );
            return true;
        }
        let head = match self.judge(want, answer) {
            Ok(h) => Arc::new(h),
            Err(e) => return fail(e),
        };
        let _ = head_tx.send(Some(Ok(head.clone())));
        let mut sha = BodyDigest::default();
        match self
            .pump_origin(resp.into_body(), body, &mut sha, 0, None)
            .await
        {
            Ok(()) => self.complete(want, &head, body, sha).await,
            Err(e) => {
                body.finish(Err(e));
                false
            }
        }
    }

    /// Reads an origin body into `body`, hashing what it appends. The first `skip` bytes are
    /// not appended: they are what `body` already holds, and must hash to `prefix` (a resumed
    /// transfer that got the whole object again). The body is left open: the caller
    /// completes or fails it.
    pub(crate) async fn pump_origin(
        &self,
        mut incoming: Incoming,
        body: &SharedBody,
        sha: &mut BodyDigest,
        mut skip: u64,
        prefix: Option<[u8; 32]>,
    ) -> Result<(), BodyError> {
        let cap = self.config.max_object_bytes;
        let mut skipped = Context::new(&SHA256);
        loop {
            let next = tokio::time::timeout(self.config.body_idle_timeout, incoming.frame());
            let Ok(frame) = next.await else {
                // A stalled origin must not hold the fetch (and everyone collapsed on it).
                return Err(BodyError::Upstream("origin stalled mid-body".into()));
            };
            match frame {
                Some(Ok(frame)) => {
                    let Ok(mut data) = frame.into_data() else {
                        continue;
                    };
                    if skip > 0 {
                        let n = skip.min(data.len() as u64);
                        skip -= n;
                        skipped.update(&data.split_to(n as usize));
                        if skip == 0
                            && let Some(p) = prefix
                            && skipped.clone().finish().as_ref() != p
                        {
                            return Err(BodyError::Upstream(
                                "the object changed at the origin during the transfer".into(),
                            ));
                        }
                    }
                    if body.len() + data.len() as u64 > cap {
                        return Err(BodyError::TooLarge(cap));
                    }
                    if data.is_empty() {
                        continue;
                    }
                    sha.update(data.clone()).await;
                    self.stats
                        .origin_bytes
                        .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    body.append(data).await;
                }
                Some(Err(e)) => return Err(BodyError::Upstream(e.to_string())),
                None if skip > 0 => {
                    return Err(BodyError::Upstream(
                        "origin body shorter than expected".into(),
                    ));
                }
                None => return Ok(()),
            }
        }
    }

    /// Completes `body` with its digest (for the clients reading it) without storing it;
    /// `None` (and a failed body) if its length differs from its `Content-Length`.
    pub(crate) async fn complete_unstored(
        &self,
        head: &Head,
        body: &SharedBody,
        sha: BodyDigest,
    ) -> Option<[u8; 32]> {
        let digest = match sha.finish().await {
            Ok(digest) => digest,
            Err(e) => {
                body.finish(Err(e));
                return None;
            }
        };
        // A body shorter or longer than it said is not the object: never complete or store it.
        if headers::content_length(&head.headers).is_some_and(|l| l != body.len()) {
            body.finish(Err(BodyError::Upstream(
                "body length differs from its Content-Length".into(),
            )));
            return None;
        }
        body.finish_with_digest(digest);
        Some(digest)
    }

    /// The body arrived whole: completes it with its digest and stores the object if it may
    /// be. True if stored.
    pub(crate) async fn complete(
        &self,
        want: &Want,
        head: &Head,
        body: &SharedBody,
        sha: BodyDigest,
    ) -> bool {
        let Some(digest) = self.complete_unstored(head, body, sha).await else {
            return false;
        };
        if !head.storable {
            return false;
        }
        // A copy: readers of the arriving body keep the original.
        let Some(stored_body) = body.stored_copy(digest) else {
            return false;
        };
        // Not stored (and so not announced) if a purge came after it was requested.
        self.store.put(
            &want.key,
            Arc::new(Stored {
                status: head.status,
                headers: head.headers.clone(),
                received: head.received,
                lifetime: head.lifetime,
                vary: head.vary.clone(),
                body: stored_body,
            }),
        )
    }
}
