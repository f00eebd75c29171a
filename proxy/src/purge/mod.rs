//! Purges: a publisher removes objects from every node before their TTL runs out, without
//! trusting any volunteer node.
//!
//! A purge arrives as `POST /.reef/purge` on the proxy port, or from the overlay. Either way
//! this node checks it itself, in this order (cheapest first, and nothing is fetched for a
//! message that is not even signed):
//!
//! 1. it parses ([`message`]), and its timestamp is within `max_skew` of this node's clock;
//! 2. its signature verifies under the key it names;
//! 3. its nonce was not seen before (nonces are kept until their timestamp is stale anyway);
//! 4. its origin has not sent more than its rate of purges;
//! 5. the key is one of the origin's published `purge_keys` (`/.well-known/reef.json`,
//!    fetched again if the cached copy lacks the key and is more than a few seconds old).
//!
//! Then the covered objects leave the memory and disk tiers and the fetches in flight, the
//! directory stops announcing them, and copies obtained before this moment (a peer that has
//! not heard yet, a fetch already under way) are never stored or used
//! ([`cutoffs::Cutoffs`]). A purge accepted from a client is flooded to the network through
//! the [`Directory`](crate::directory::Directory).

pub mod cutoffs;
pub mod message;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Serialize;

use self::message::{MAX_PURGE_BYTES, MalformedPurge, Purge, PurgeTarget};
use crate::limits::Bucket;
use crate::render::full;
use crate::route::Upstream;
use crate::service::{Proxy, ProxyBody};
use crate::site::WELL_KNOWN_PATH;

/// Where purges are posted on the proxy port.
pub const PURGE_PATH: &str = "/.reef/purge";

/// Limits on purges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PurgeConfig {
    /// A purge signed further than this from this node's clock is refused.
    pub max_skew: Duration,
    /// Purges accepted per origin per minute (a burst of as many, then this rate).
    pub per_origin_per_minute: u32,
    /// Purges accepted per minute in all: bounds the nonces and purge moments a node keeps,
    /// so publishers of many origins cannot crowd out the others' purges.
    pub per_node_per_minute: u32,
    /// A purge whose key the cached document lacks fetches the document again if the cached
    /// copy is at least this old.
    pub key_refresh_after: Duration,
    /// Time a client has to send its purge request.
    pub read_timeout: Duration,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            max_skew: Duration::from_secs(300),
            per_origin_per_minute: 60,
            per_node_per_minute: 600,
            key_refresh_after: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a purge came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A publisher's request to this node (flooded on once accepted).
    Client,
    /// Another node flooded it.
    Overlay,
}

/// Why a purge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    /// Not a purge at all.
    #[error("malformed purge: {0}")]
    Malformed(#[from] MalformedPurge),
    /// Signed too long ago, or in the future.
    #[error(
        "stale timestamp: signed at {signed}, this node's clock says {now}; purges must be within {max_skew} s"
    )]
    Stale {
        /// The purge's timestamp (Unix seconds).
        signed: u64,
        /// This node's clock (Unix seconds).
        now: u64,
        /// The allowed difference (seconds).
        max_skew: u64,
    },
    /// The signature does not verify under the key the purge names.
    #[error("bad signature")]
    BadSignature,
    /// The key is not one the origin publishes.
    #[error("key {key} is not among the purge_keys published at {well_known}")]
    UnknownKey {
        /// The purge's key (base64).
        key: String,
        /// The document that was checked.
        well_known: String,
    },
    /// This purge was accepted before.
    #[error("replayed purge: this nonce was already used")]
    Replayed,
    /// The origin (or all origins together) sent more purges than its rate.
    #[error("too many purges for {0}; try again in a minute")]
    RateLimited(String),
    /// The node cannot check replays of more purges now.
    #[error("this node holds as many purges as it can check for replays; try again later")]
    Busy,
}

impl PurgeError {
    /// The HTTP status the publisher gets.
    pub fn status(&self) -> StatusCode {
        match self {
            PurgeError::Malformed(_) => StatusCode::BAD_REQUEST,
            PurgeError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            PurgeError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            PurgeError::Stale { .. }
            | PurgeError::BadSignature
            | PurgeError::UnknownKey { .. }
            | PurgeError::Replayed => StatusCode::FORBIDDEN,
        }
    }

    /// Whether the message is forged or garbage (the overlay drops it as invalid), rather
    /// than merely late, repeated or unverifiable here right now (dropped as not for us).
    /// Either way it is not passed on.
    pub fn is_forged(&self) -> bool {
        matches!(self, PurgeError::Malformed(_) | PurgeError::BadSignature)
    }
}

/// An accepted purge, as the status page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PurgeRecord {
    /// The URL or prefix.
    pub url: String,
    /// Every URL under it.
    pub prefix: bool,
    /// When this node accepted it (Unix milliseconds).
    pub accepted_unix_ms: u64,
    /// Where it came from.
    pub source: Source,
    /// Objects it removed here.
    pub removed: usize,
    /// Its nonce (hex), the same on every node: it names one purge across the network.
    pub nonce: String,
}

/// Purges kept for the status page.
const RECENT: usize = 64;
/// Nonces remembered at once, at most (beyond it purges are refused, never unchecked).
const MAX_NONCES: usize = 262_144;
/// Origins with purge rate state, at most (idle ones are dropped first).
const MAX_RATED: usize = 65_536;

/// What this node knows of purges.
#[derive(Debug, Default)]
pub struct Purges {
    /// Seen nonces, until when (Unix seconds) they matter.
    nonces: Mutex<HashMap<[u8; 16], u64>>,
    rates: Mutex<HashMap<Upstream, Bucket>>,
    node_rate: Mutex<Option<Bucket>>,
    recent: Mutex<VecDeque<PurgeRecord>>,
    /// Purges accepted.
    pub accepted: AtomicU64,
    /// Purges refused.
    pub rejected: AtomicU64,
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Purges {
    /// The latest accepted purges, newest first.
    pub fn recent(&self) -> Vec<PurgeRecord> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    fn seen(&self, nonce: &[u8; 16]) -> bool {
        self.nonces.lock().is_ok_and(|n| n.contains_key(nonce))
    }

    /// Records `nonce` until `until`; false if it was already there, or there is no room.
    fn use_nonce(&self, nonce: [u8; 16], until: u64, now: u64) -> Result<(), PurgeError> {
        let Ok(mut n) = self.nonces.lock() else {
            return Err(PurgeError::Busy);
        };
        if n.len() >= MAX_NONCES {
            n.retain(|_, until| *until >= now);
            if n.len() >= MAX_NONCES {
                return Err(PurgeError::Busy);
            }
        }
        match n.insert(nonce, until) {
            Some(_) => Err(PurgeError::Replayed),
            None => Ok(()),
        }
    }

    /// Takes a token of `origin`'s rate and of the node's.
    fn admit(
        &self,
        origin: &Upstream,
        config: &PurgeConfig,
        now: Instant,
    ) -> Result<(), PurgeError> {
        let (Ok(mut rates), Ok(mut node)) = (self.rates.lock(), self.node_rate.lock()) else {
            return Err(PurgeError::Busy);
        };
        // Buckets of a minute's purges, refilled over the minute.
        let per_origin = f64::from(config.per_origin_per_minute.max(1));
        let per_node = f64::from(config.per_node_per_minute.max(1));
        if rates.len() >= MAX_RATED && !rates.contains_key(origin) {
            // Forget origins whose bucket has filled up again.
            rates.retain(|_, b| b.level(now, per_origin / 60.0, per_origin) < per_origin);
        }
        let b = rates
            .entry(origin.clone())
            .or_insert(Bucket::full(per_origin, now));
        if b.level(now, per_origin / 60.0, per_origin) < 1.0 {
            return Err(PurgeError::RateLimited(origin.to_string()));
        }
        let n = node.get_or_insert(Bucket::full(per_node, now));
        if !n.take(now, per_node / 60.0, per_node) {
            return Err(PurgeError::RateLimited("all origins".into()));
        }
        b.take(now, per_origin / 60.0, per_origin);
        Ok(())
    }

    fn remember(&self, record: PurgeRecord) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= RECENT {
                r.pop_front();
            }
            r.push_back(record);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Proxy {
    /// What this node knows of purges.
    pub fn purges(&self) -> &Purges {
        &self.purges
    }

    /// Checks a purge message and applies it (see the module documentation). A purge from a
    /// client is flooded to the network once accepted.
    pub async fn accept_purge(
        self: &Arc<Self>,
        bytes: &[u8],
        source: Source,
    ) -> Result<PurgeRecord, PurgeError> {
        let result = self.check_and_apply(bytes, source).await;
        let counter = match &result {
            Ok(_) => &self.purges.accepted,
            Err(_) => &self.purges.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(r) => {
                tracing::info!(url = %r.url, prefix = r.prefix, removed = r.removed, source = ?source, "purge accepted");
                if source == Source::Client
                    && let Some(dir) = self.directory.get()
                {
                    dir.flood(bytes);
                }
            }
            Err(e) => tracing::debug!(error = %e, source = ?source, "purge refused"),
        }
        result
    }

    async fn check_and_apply(
        self: &Arc<Self>,
        bytes: &[u8],
        source: Source,
    ) -> Result<PurgeRecord, PurgeError> {
        let config = self.config.purge;
        let purge = Purge::decode(bytes)?;
        let target = purge.target()?;
        let now = SystemTime::now();
        let now_secs = unix(now).as_secs();
        let skew = config.max_skew.as_secs();
        if purge.timestamp.abs_diff(now_secs) > skew {
            return Err(PurgeError::Stale {
                signed: purge.timestamp,
                now: now_secs,
                max_skew: skew,
            });
        }
        if !purge.signature_valid() {
            return Err(PurgeError::BadSignature);
        }
        if self.purges.seen(&purge.nonce) {
            return Err(PurgeError::Replayed);
        }
        // The key is checked before the rate is charged: purges signed by keys the site does
        // not publish must not use up its publisher's rate.
        let mut site = self.site(&target.origin).await;
        if !site.purge_keys.contains(&purge.key) {
            site = self
                .site_fresher(&target.origin, config.key_refresh_after)
                .await;
        }
        if !site.purge_keys.contains(&purge.key) {
            return Err(PurgeError::UnknownKey {
                key: purge.key_base64(),
                well_known: format!("{}{WELL_KNOWN_PATH}", target.origin),
            });
        }
        self.purges.admit(&target.origin, &config, Instant::now())?;
        // Kept until the timestamp is stale: a later replay fails that check instead.
        self.purges
            .use_nonce(purge.nonce, purge.timestamp + skew, now_secs)?;
        let removed = self.apply_purge(&target, now);
        let record = PurgeRecord {
            url: purge.url,
            prefix: purge.prefix,
            accepted_unix_ms: u64::try_from(unix(SystemTime::now()).as_millis())
                .unwrap_or(u64::MAX),
            source,
            removed,
            nonce: hex(&purge.nonce),
        };
        self.purges.remember(record.clone());
        Ok(record)
    }

    /// Removes everything of `origin` (a site that opted out) as a purge would.
    pub(crate) fn purge_origin(&self, origin: &Upstream) -> usize {
        let target = PurgeTarget {
            key: format!("{origin}/"),
            origin: origin.clone(),
            prefix: true,
        };
        self.apply_purge(&target, SystemTime::now())
    }

    /// Removes what `target` covers and refuses older copies from now on; returns the
    /// number of cached URLs removed.
    fn apply_purge(&self, target: &PurgeTarget, at: SystemTime) -> usize {
        self.store.cutoffs().record(target, at);
        // New requests must not join a fetch of the old object.
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.retain(|flight, _| {
                let key = flight.split('#').next().unwrap_or(flight);
                !target.matches(key)
            });
        }
        let removed = self.store.purge(target);
        if let Some(dir) = self.directory.get() {
            dir.withdraw(target);
        }
        removed
    }

    /// `POST /.reef/purge`: a publisher's purge.
    pub(crate) async fn purge_endpoint(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let reply = |status: StatusCode, body: String| {
            let mut r = Response::new(full(body));
            *r.status_mut() = status;
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.headers_mut().insert(
                "cache-status",
                self.cache_status("fwd=request; detail=purge"),
            );
            r
        };
        if req.method() != Method::POST {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("405 Method Not Allowed: POST a signed purge to {PURGE_PATH}\n"),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let limited = http_body_util::Limited::new(req.into_body(), MAX_PURGE_BYTES);
        let body =
            match tokio::time::timeout(self.config.purge.read_timeout, limited.collect()).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("400 Bad Request: reading the purge: {e}\n"),
                    );
                }
                Err(_) => {
                    return reply(
                        StatusCode::REQUEST_TIMEOUT,
                        "408 Request Timeout: the purge did not arrive in time\n".into(),
                    );
                }
            };
        match self.accept_purge(&body, Source::Client).await {
            Ok(r) => {
                let mut resp = reply(
                    StatusCode::OK,
                    serde_json::json!({"accepted": true, "url": r.url, "prefix": r.prefix,
                        "removed": r.removed, "nonce": r.nonce})
                    .to_string()
                        + "\n",
                );
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp
            }
            Err(e) => {
                let status = e.status();
                let mut r = reply(status, format!("{status}: {e}\n"));
                if matches!(e, PurgeError::RateLimited(_) | PurgeError::Busy) {
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("60"));
                }
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_used_once() {
        let p = Purges::default();
        assert!(p.use_nonce([1; 16], 100, 0).is_ok());
        assert_eq!(p.use_nonce([1; 16], 100, 0), Err(PurgeError::Replayed));
        assert!(p.seen(&[1; 16]));
        assert!(!p.seen(&[2; 16]));
    }

    #[test]
    fn each_origin_has_its_own_purge_rate() {
        let p = Purges::default();
        let a = Upstream {
            tls: false,
            host: "a".into(),
            port: 80,
        };
        let b = Upstream {
            host: "b".into(),
            ..a.clone()
        };
        let config = PurgeConfig {
            per_origin_per_minute: 3,
            per_node_per_minute: 4,
            ..PurgeConfig::default()
        };
        let t = Instant::now();
        for _ in 0..3 {
            assert!(p.admit(&a, &config, t).is_ok());
        }
        assert!(p.admit(&a, &config, t).is_err());
        assert!(
            p.admit(&b, &config, t).is_ok(),
            "another origin is not limited by a's purges"
        );
        // One more after a third of a minute at 3 per minute.
        let later = t + Duration::from_secs(21);
        assert!(p.admit(&a, &config, later).is_ok());
        assert!(p.admit(&a, &config, later).is_err());
        // The node's own rate (4 a minute) is spent now, whatever the origin.
        let c = Upstream {
            host: "c".into(),
            ..a.clone()
        };
        assert_eq!(
            p.admit(&c, &config, later),
            Err(PurgeError::RateLimited("all origins".into()))
        );
    }

    #[test]
    fn statuses_say_what_went_wrong() {
        assert_eq!(
            PurgeError::Malformed(MalformedPurge::TooLarge).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(PurgeError::BadSignature.status(), StatusCode::FORBIDDEN);
        assert!(PurgeError::BadSignature.is_forged());
        assert!(!PurgeError::Replayed.is_forged());
    }
}
