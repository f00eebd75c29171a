//! What a site says about itself in `/.well-known/reef.json`: the keys that may purge its
//! objects, whether it asks not to be served, and mirrors to fall back on.
//!
//! ```text
//! {"purge_keys": ["<base64 Ed25519 public key>", ...], "opt_out": false,
//!  "mirrors": ["http://mirror.example.net", ...]}
//! ```
//!
//! The document comes from the origin itself, never from a peer: a volunteer node could hand
//! out its own key. It is fetched on first use of an origin, alongside the first object (so
//! a slow origin costs one round trip, not two; concurrent first requests share one fetch,
//! and none is answered before it ends: a site that opted out gets that one object request
//! per node and nothing served). It is kept for its freshness lifetime within bounds,
//! refreshed in the background once expired, and kept as it was while a refresh fails (a
//! dying origin must not lose its mirrors). A missing or malformed document means no keys,
//! no opt-out and no mirrors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::sync::watch;

use crate::cache::freshness;
use crate::fetch::no_body;
use crate::headers;
use crate::route::{Upstream, parse_origin};
use crate::service::Proxy;

/// Where a site publishes its policy.
pub const WELL_KNOWN_PATH: &str = "/.well-known/reef.json";
/// Largest document read.
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// Purge keys per site, at most.
pub const MAX_KEYS: usize = 32;
/// Mirrors per site, at most.
pub const MAX_MIRRORS: usize = 8;
/// Sites remembered at once; expired ones are dropped first as the map fills.
const MAX_SITES: usize = 65_536;

/// A site's policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SitePolicy {
    /// Ed25519 public keys whose purges of this origin are obeyed.
    pub purge_keys: Vec<[u8; 32]>,
    /// The site asks not to be served through the CDN.
    pub opt_out: bool,
    /// Origins with the same paths, tried in turn when the origin fails.
    pub mirrors: Vec<Upstream>,
}

/// Why a document was not understood (the site then has no policy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Over [`MAX_DOCUMENT`] bytes.
    #[error("the document is larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
    /// Not the JSON object described in the module documentation.
    #[error("not a reef.json document: {0}")]
    Json(String),
    /// A purge key is not base64 of 32 bytes.
    #[error("purge key {0} is not base64 of a 32-byte Ed25519 public key")]
    BadKey(usize),
    /// A mirror is not `http(s)://host[:port]`.
    #[error("mirror {0}")]
    BadMirror(String),
    /// More keys or mirrors than allowed.
    #[error("more than {MAX_KEYS} keys or {MAX_MIRRORS} mirrors")]
    TooMany,
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    purge_keys: Vec<String>,
    #[serde(default)]
    opt_out: bool,
    #[serde(default)]
    mirrors: Vec<String>,
}

impl SitePolicy {
    /// Reads a document. Unknown fields are ignored (later versions may add some); anything
    /// wrong in a known one rejects the whole document.
    pub fn parse(bytes: &[u8]) -> Result<SitePolicy, PolicyError> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(PolicyError::TooLarge);
        }
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::Json(e.to_string()))?;
        if doc.purge_keys.len() > MAX_KEYS || doc.mirrors.len() > MAX_MIRRORS {
            return Err(PolicyError::TooMany);
        }
        let purge_keys = doc
            .purge_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                B64.decode(k.trim())
                    .ok()
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .ok_or(PolicyError::BadKey(i))
            })
            .collect::<Result<_, _>>()?;
        let mirrors = doc
            .mirrors
            .iter()
            .map(|m| parse_origin(m).map_err(PolicyError::BadMirror))
            .collect::<Result<_, _>>()?;
        Ok(SitePolicy {
            purge_keys,
            opt_out: doc.opt_out,
            mirrors,
        })
    }
}

/// Bounds on how long a document is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteConfig {
    /// Kept at least this long (also for a missing document, and after a failed fetch).
    pub min_ttl: Duration,
    /// Kept at most this long, whatever its headers say.
    pub max_ttl: Duration,
    /// Time the origin has to send the whole document.
    pub fetch_timeout: Duration,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
struct Known {
    policy: Arc<SitePolicy>,
    /// When the origin last answered for it (a failed refresh keeps the older time).
    fetched: Instant,
    expires: Instant,
}

/// A fetch under way: its result once known.
pub(crate) type Pending = watch::Receiver<Option<Arc<SitePolicy>>>;

/// A site's policy now, or the fetch that will tell it.
#[derive(Debug)]
pub(crate) enum SiteNow {
    /// Known (perhaps being refreshed).
    Known(Arc<SitePolicy>),
    /// First use: being fetched.
    Fetching(Pending),
}

/// The policies of the sites this node has served.
#[derive(Debug, Default)]
pub struct Sites {
    known: RwLock<HashMap<Upstream, Known>>,
    /// Fetches under way, one per origin, each in its own task (a client that hangs up
    /// does not cancel it) that every asker waits on.
    fetching: Mutex<HashMap<Upstream, Pending>>,
}

impl Sites {
    /// The policy known for `origin`, if any (without fetching it).
    pub fn cached(&self, origin: &Upstream) -> Option<Arc<SitePolicy>> {
        self.known
            .read()
            .ok()?
            .get(origin)
            .map(|k| k.policy.clone())
    }

    fn lookup(&self, origin: &Upstream) -> Option<Known> {
        self.known.read().ok()?.get(origin).cloned()
    }

    fn store(&self, origin: &Upstream, known: Known) {
        let Ok(mut map) = self.known.write() else {
            return;
        };
        if map.len() >= MAX_SITES && !map.contains_key(origin) {
            // Make room: the expired first, else the one that expires soonest.
            let now = Instant::now();
            map.retain(|_, k| k.expires > now);
            if map.len() >= MAX_SITES
                && let Some(soonest) = map
                    .iter()
                    .min_by_key(|(_, k)| k.expires)
                    .map(|(o, _)| o.clone())
            {
                map.remove(&soonest);
            }
        }
        map.insert(origin.clone(), known);
    }
}

/// What fetching a document gave.
enum Fetched {
    /// A document (or a definite absence: 404, 410, malformed), kept for the TTL.
    Policy(SitePolicy, Duration),
    /// The origin could not say (unreachable, 5xx, another refusal): keep what was known.
    Failed(String),
}

impl Proxy {
    /// `origin`'s policy: fetched on first use, refreshed in the background once expired.
    pub async fn site(self: &Arc<Self>, origin: &Upstream) -> Arc<SitePolicy> {
        match self.site_now(origin) {
            SiteNow::Known(policy) => policy,
            SiteNow::Fetching(pending) => self.site_wait(pending).await,
        }
    }

    /// `origin`'s policy if known (refreshed in the background once expired), else the
    /// fetch that will tell it.
    pub(crate) fn site_now(self: &Arc<Self>, origin: &Upstream) -> SiteNow {
        match self.sites.lookup(origin) {
            Some(k) => {
                if k.expires <= Instant::now() {
                    self.start_refresh(origin);
                }
                SiteNow::Known(k.policy)
            }
            None => SiteNow::Fetching(self.start_refresh(origin)),
        }
    }

    /// The policy a fetch under way brings (none if it fails to finish).
    pub(crate) async fn site_wait(&self, mut pending: Pending) -> Arc<SitePolicy> {
        let wait = pending.wait_for(Option::is_some);
        // The fetch has its own timeout; this only guards against a fetch task that died.
        match tokio::time::timeout(self.config.sites.fetch_timeout * 2, wait).await {
            Ok(Ok(p)) => p.clone().unwrap_or_default(),
            _ => Arc::default(),
        }
    }

    /// `origin`'s policy, fetched again unless the origin answered for it less than
    /// `min_age` ago (a purge signed by a key the cached document lacks: the site may just
    /// have added it).
    pub async fn site_fresher(
        self: &Arc<Self>,
        origin: &Upstream,
        min_age: Duration,
    ) -> Arc<SitePolicy> {
        match self.sites.lookup(origin) {
            Some(k) if k.fetched.elapsed() < min_age => k.policy,
            _ => self.refreshed(origin).await,
        }
    }

    /// Waits for a fetch of `origin`'s document (joining one under way).
    async fn refreshed(self: &Arc<Self>, origin: &Upstream) -> Arc<SitePolicy> {
        let pending = self.start_refresh(origin);
        self.site_wait(pending).await
    }

    /// Starts fetching `origin`'s document unless a fetch is under way.
    fn start_refresh(self: &Arc<Self>, origin: &Upstream) -> Pending {
        let tx = {
            let Ok(mut fetching) = self.sites.fetching.lock() else {
                return watch::channel(Some(Arc::default())).1;
            };
            if let Some(pending) = fetching.get(origin) {
                return pending.clone();
            }
            let (tx, rx) = watch::channel(None);
            fetching.insert(origin.clone(), rx);
            tx
        };
        let rx = tx.subscribe();
        let (this, origin) = (self.clone(), origin.clone());
        tokio::spawn(async move {
            let policy = this.refresh(&origin).await;
            if let Ok(mut fetching) = this.sites.fetching.lock() {
                fetching.remove(&origin);
            }
            let _ = tx.send(Some(policy));
        });
        rx
    }

    /// Fetches `origin`'s document and remembers what it says.
    async fn refresh(&self, origin: &Upstream) -> Arc<SitePolicy> {
        let previous = self.sites.lookup(origin);
        let now = Instant::now();
        let (policy, known) = match self.fetch_document(origin).await {
            Fetched::Policy(p, ttl) => {
                let p = Arc::new(p);
                let known = Known {
                    policy: p.clone(),
                    fetched: now,
                    expires: now + ttl,
                };
                (p, known)
            }
            Fetched::Failed(why) => {
                tracing::info!(%origin, why, kept = previous.is_some(), "could not fetch the site's reef.json");
                let p = previous
                    .as_ref()
                    .map(|k| k.policy.clone())
                    .unwrap_or_default();
                let known = Known {
                    policy: p.clone(),
                    fetched: previous.as_ref().map_or(now, |k| k.fetched),
                    expires: now + self.config.sites.min_ttl,
                };
                (p, known)
            }
        };
        if policy.opt_out && !previous.is_some_and(|k| k.policy.opt_out) {
            // What this node holds of the site goes too: it must not reach clients through
            // peers either.
            let removed = self.purge_origin(origin);
            tracing::info!(%origin, removed, "the site opted out of the CDN");
        }
        self.sites.store(origin, known);
        policy
    }

    async fn fetch_document(&self, origin: &Upstream) -> Fetched {
        let scheme = if origin.tls { "https" } else { "http" };
        let Ok(uri) = format!(
            "{scheme}://{}:{}{WELL_KNOWN_PATH}",
            origin.host, origin.port
        )
        .parse::<http::Uri>() else {
            return Fetched::Failed("bad URI".into());
        };
        let mut req = Request::new(no_body());
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin.host_header()) {
            h.insert(HOST, v);
        }
        headers::add_via(h);
        h.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("reef/", env!("CARGO_PKG_VERSION"))),
        );
        let timeout = self.config.sites.fetch_timeout;
        let fetch = async {
            crate::stats::Stats::bump(&self.stats.site_documents);
            let (resp, _permit, answer) = self
                .send_upstream(origin, req)
                .await
                .map_err(|e| e.to_string())?;
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_DOCUMENT);
            let body: Bytes = limited
                .collect()
                .await
                .map_err(|e| format!("reading the document: {e}"))?
                .to_bytes();
            Ok::<_, String>((answer, body))
        };
        let (answer, body) = match tokio::time::timeout(timeout, fetch).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Fetched::Failed(e),
            Err(_) => return Fetched::Failed(format!("no document within {timeout:?}")),
        };
        let lifetime = freshness::freshness_lifetime(
            answer.status,
            &answer.headers,
            SystemTime::now(),
            &self.config.policy,
        );
        let (min, max) = (self.config.sites.min_ttl, self.config.sites.max_ttl);
        let ttl = lifetime.clamp(min, max.max(min));
        match answer.status {
            StatusCode::OK => match SitePolicy::parse(&body) {
                Ok(p) => Fetched::Policy(p, ttl),
                Err(e) => {
                    tracing::warn!(%origin, error = %e, "malformed reef.json: the site gets no keys, no opt-out and no mirrors");
                    Fetched::Policy(SitePolicy::default(), ttl)
                }
            },
            // Only a definite absence clears a policy: a refusal or a rate limit in front of
            // the document must not lift an opt-out or drop the keys.
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                tracing::debug!(%origin, "no reef.json: no keys, no opt-out, no mirrors");
                Fetched::Policy(SitePolicy::default(), ttl)
            }
            s => Fetched::Failed(format!("status {s}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_read_with_its_keys_and_mirrors() {
        let key = B64.encode([5u8; 32]);
        let doc = format!(
            r#"{{"purge_keys": ["{key}"], "opt_out": true,
                "mirrors": ["http://mirror.example.net", "https://m2.example.org:8443"],
                "later_field": 1}}"#
        );
        let p = SitePolicy::parse(doc.as_bytes()).unwrap();
        assert_eq!(p.purge_keys, vec![[5u8; 32]]);
        assert!(p.opt_out);
        assert_eq!(p.mirrors.len(), 2);
        assert_eq!(p.mirrors[1].to_string(), "https://m2.example.org:8443");
        assert_eq!(SitePolicy::parse(b"{}").unwrap(), SitePolicy::default());
    }

    #[test]
    fn a_bad_document_is_a_typed_error() {
        let nine = format!(r#"{{"mirrors": [{}]}}"#, [r#""http://a""#; 9].join(","));
        let cases: [(&[u8], PolicyError); 4] = [
            (br#"{"purge_keys": ["c2hvcnQ="]}"#, PolicyError::BadKey(0)),
            (
                br#"{"mirrors": ["ftp://x"]}"#,
                PolicyError::BadMirror("ftp://x: expected http:// or https://".into()),
            ),
            (&[b' '; MAX_DOCUMENT + 1], PolicyError::TooLarge),
            (nine.as_bytes(), PolicyError::TooMany),
        ];
        for (doc, want) in cases {
            assert_eq!(SitePolicy::parse(doc), Err(want));
        }
        assert!(matches!(
            SitePolicy::parse(b"[1,2]"),
            Err(PolicyError::Json(_))
        ));
        assert!(matches!(
            SitePolicy::parse(br#"{"opt_out": "yes"}"#),
            Err(PolicyError::Json(_))
        ));
    }
}
