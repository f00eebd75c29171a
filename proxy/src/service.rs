//! Serving one request: route, cache lookup, collapsed fetch, response. The phases of
//! pingora's `ProxyHttp` as plain functions (`request_filter` is `check`, `cache_lookup` is
//! the store, `fetch_origin` is `Fetcher`), with no trait until a second implementation exists.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use tokio::sync::{Semaphore, watch};

use crate::body::{BodyError, SharedBody};
use crate::cache::conditional;
use crate::cache::freshness::{self, Policy, Received, Use};
use crate::connect::{self, ClientError, OriginClient, OriginResolver};
use crate::directory::Directory;
use crate::limits::Limits;
use crate::quota::Quota;
use crate::render::{Rendition, full, render};
use crate::route::{Route, RouteError, Router, Upstream};
use crate::site::SiteNow;
use crate::stats::Stats;
use crate::store::{Store, Stored};

/// The response body type of the proxy.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// How the proxy behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names under the zone are CDN names.
    pub zone: dns::ZoneSuffix,
    /// Reverse-proxy origin for hosts outside the zone (`--origin`).
    pub reverse_origin: Option<Upstream>,
    /// Memory tier budget, bytes.
    pub cache_bytes: u64,
    /// Largest object fetched and cached; longer bodies are cut off and never cached.
    pub max_object_bytes: u64,
    /// Bytes of one body held in memory at most while it arrives; the rest goes to a
    /// temporary file (objects larger than memory never sit whole in it). The memory tier
    /// keeps such a body in its file, weighing its full size; one larger than the whole
    /// budget is cached on disk only, or passes through without a disk tier.
    pub spill_above: u64,
    /// Directory of those files (`None`: the disk tier's, else `/var/tmp`, which is on disk
    /// where `/tmp` is often memory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// RFC 9111 policy.
    pub policy: Policy,
    /// Name of this node in `Cache-Status`.
    pub node_name: String,
    /// Fetch from origins on private, loopback and link-local addresses (tests, demos).
    pub allow_private_origins: bool,
    /// Fixed addresses for origin names, consulted before DNS (like curl's `--resolve`).
    pub resolve: BTreeMap<String, IpAddr>,
    /// Nameservers for origin names (UDP, then TCP); empty: the system's configuration.
    pub origin_nameservers: Vec<SocketAddr>,
    /// Time the origin has to send response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence within a response body before the fetch is abandoned.
    pub body_idle_timeout: Duration,
    /// Fetches from one origin at once, at most.
    pub origin_concurrency: usize,
    /// Print one Common Log Format line per request to standard output.
    pub access_log: bool,
    /// Bytes served to clients per hour before the node redirects them to origins and
    /// leaves the network's answers (`--bandwidth-quota`); `None`: no quota.
    pub bandwidth_quota: Option<u64>,
    /// How long a node over its quota stays out.
    pub quota_cool_down: Duration,
    /// In reverse-proxy mode, pass methods other than GET and HEAD to the origin, uncached
    /// (`--pass-methods`); never for CDN names.
    pub pass_methods: bool,
    /// Per-client request rate and connection limits.
    pub limits: crate::limits::LimitsConfig,
    /// The disk tier (opened by the caller; `None`: memory only).
    pub disk: Option<Arc<crate::disk::DiskTier>>,
    /// Certificates trusted for HTTPS origins besides the webpki roots (a private CA; tests).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How long sites' `/.well-known/reef.json` documents are kept.
    pub sites: crate::site::SiteConfig,
    /// Limits on publishers' purges.
    pub purge: crate::purge::PurgeConfig,
}

impl Config {
    /// Defaults for `zone`.
    pub fn new(zone: dns::ZoneSuffix) -> Config {
        Config {
            zone,
            reverse_origin: None,
            cache_bytes: 256 << 20,
            max_object_bytes: 50 << 20,
            spill_above: 16 << 20,
            spill_dir: None,
            policy: Policy::default(),
            node_name: "reef".into(),
            allow_private_origins: false,
            resolve: BTreeMap::new(),
            origin_nameservers: Vec::new(),
            first_byte_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(30),
            origin_concurrency: 16,
            access_log: false,
            bandwidth_quota: None,
            pass_methods: false,
            limits: crate::limits::LimitsConfig::default(),
            disk: None,
            quota_cool_down: Duration::from_secs(30 * 60),
            extra_roots: Vec::new(),
            sites: crate::site::SiteConfig::default(),
            purge: crate::purge::PurgeConfig::default(),
        }
    }
}

/// What the origin (or a peer) answered, cleaned and judged; shared by every request
/// collapsed on it.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) storable: bool,
    pub(crate) received: Received,
    pub(crate) lifetime: Duration,
    pub(crate) vary: Vec<(http::HeaderName, Option<HeaderValue>)>,
    /// The body to serve instead of the fetch's own: the stored one, after a 304.
    pub(crate) body: Option<Arc<SharedBody>>,
    /// The origin confirmed a stored copy (304).
    pub(crate) revalidated: bool,
    /// It came from a peer: its name and its `Cache-Status` entry.
    pub(crate) peer: Option<(String, Option<HeaderValue>)>,
}

/// Where a fetch publishes its head (or why it has none).
pub(crate) type HeadSender = watch::Sender<Option<Result<Arc<Head>, FetchError>>>;

/// Why the origin could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The origin's name did not resolve, or to an address not allowed.
    #[error("origin address refused: {0}")]
    Forbidden(String),
    /// Connection failed, timed out or broke before the headers.
    #[error("origin unreachable: {0}")]
    Unreachable(String),
    /// Every fetch slot for this origin stayed taken for too long.
    #[error("too many fetches from this origin at once")]
    Busy,
    /// The object is larger than this node fetches.
    #[error("the object exceeds this node's size cap of {0} bytes")]
    TooLarge(u64),
}

/// A fetch in progress: the head once known, and the growing body.
#[derive(Debug)]
pub(crate) struct Fetch {
    pub(crate) head: watch::Receiver<Option<Result<Arc<Head>, FetchError>>>,
    pub(crate) body: Arc<SharedBody>,
}

/// What to fetch, for whom: everything a fetch needs from the request that started it.
#[derive(Debug, Clone)]
pub(crate) struct Want {
    /// Cache key the result is stored under.
    pub(crate) key: String,
    pub(crate) up: Upstream,
    /// Path and query.
    pub(crate) path: String,
    /// The client's request headers (filtered before going upstream).
    pub(crate) headers: HeaderMap,
    pub(crate) client: SocketAddr,
    /// A stored copy to revalidate, if any.
    pub(crate) validate: Option<Arc<Stored>>,
    /// A CDN name without credentials: peers may serve it.
    pub(crate) shared: bool,
    /// The client request's trace ID.
    pub(crate) trace: Option<String>,
}

/// Removes a fetch from the flights when its task ends (unless a purge removed it already
/// and a new fetch of the same key took its place).
struct FlightGuard {
    proxy: Arc<Proxy>,
    flight: String,
    fetch: std::sync::Weak<Fetch>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.proxy.inflight.lock()
            && inflight
                .get(&self.flight)
                .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), self.fetch.as_ptr()))
        {
            inflight.remove(&self.flight);
        }
    }
}

impl Fetch {
    /// Waits for the head; a fetch task that ended without one is an upstream failure.
    pub(crate) async fn head(&self) -> Result<Arc<Head>, FetchError> {
        let mut rx = self.head.clone();
        loop {
            if let Some(h) = rx.borrow().clone() {
                return h;
            }
            if rx.changed().await.is_err() {
                return Err(FetchError::Unreachable("fetch task ended".into()));
            }
        }
    }
}

/// The proxy: router, store, fetches in flight, origin client.
#[derive(Debug)]
pub struct Proxy {
    pub(crate) config: Config,
    pub(crate) router: Router,
    pub(crate) store: Store,
    pub(crate) inflight: Mutex<HashMap<String, Arc<Fetch>>>,
    pub(crate) client: OriginClient,
    /// The same resolver the connector uses, for the typed pre-check.
    pub(crate) resolver: OriginResolver,
    /// Fetch slots per origin (`host:port`); idle origins are dropped as the map grows.
    pub(crate) slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Nearby peers; set once the overlay is up (a proxy alone goes to origins).
    pub(crate) directory: OnceLock<Arc<dyn Directory>>,
    pub(crate) stats: Stats,
    pub(crate) quota: Option<Arc<Quota>>,
    pub(crate) limits: Arc<Limits>,
    /// Sites' published policies (purge keys, opt-out, mirrors).
    pub(crate) sites: crate::site::Sites,
    pub(crate) purges: crate::purge::Purges,
    /// Bytes and requests per site, for the status page.
    pub(crate) meter: crate::meter::SiteMeter,
    /// `Cache-Status` of a hit, made once: most responses carry it.
    hit_status: HeaderValue,
    /// Where fetched bodies go beyond their share of memory, settled once (finding the
    /// default directory looks at the file system).
    spill: crate::body::Spill,
}

/// Where bodies too large for memory go without a disk tier or a configured directory:
/// `/var/tmp` (on disk by convention, where `/tmp` is often a memory filesystem), else the
/// system's temporary directory.
fn default_spill_dir() -> std::path::PathBuf {
    let var_tmp = std::path::PathBuf::from("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp
    } else {
        std::env::temp_dir()
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Proxy {
    /// A proxy with an empty cache.
    pub fn new(config: Config) -> Result<Arc<Proxy>, ClientError> {
        let resolver = OriginResolver::new(config.resolve.clone(), config.allow_private_origins)
            .with_nameservers(&config.origin_nameservers)?;
        let client = connect::client(resolver.clone(), &config.extra_roots)?;
        Ok(Arc::new(Proxy {
            router: Router::new(config.zone.clone(), config.reverse_origin.clone()),
            store: Store::with_disk(
                config.cache_bytes,
                config.max_object_bytes,
                config.disk.clone(),
            ),
            inflight: Mutex::new(HashMap::new()),
            client,
            slots: Mutex::new(HashMap::new()),
            resolver,
            directory: OnceLock::new(),
            stats: Stats::default(),
            limits: Limits::new(config.limits),
            sites: crate::site::Sites::default(),
            purges: crate::purge::Purges::default(),
            meter: crate::meter::SiteMeter::default(),
            hit_status: HeaderValue::from_str(&format!("{}; hit", config.node_name))
                .unwrap_or_else(|_| HeaderValue::from_static("reef; hit")),
            spill: crate::body::Spill {
                dir: config
                    .spill_dir
                    .clone()
                    .or_else(|| config.disk.as_ref().map(|d| d.tmp_dir()))
                    .unwrap_or_else(default_spill_dir)
                    .into(),
                above: config.spill_above,
            },
            quota: config
                .bandwidth_quota
                .map(|q| Arc::new(Quota::new(q, config.quota_cool_down, Instant::now()))),
            config,
        }))
    }

    /// Connects the proxy to the network's directory (once; later calls are ignored).
    pub fn set_directory(&self, directory: Arc<dyn Directory>) {
        let _ = self.directory.set(directory);
    }

    /// Whether requests are logged (see [`Config::access_log`]).
    pub fn access_log(&self) -> bool {
        self.config.access_log
    }

    /// The client limits in force (the server takes connection slots from them).
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// What it did since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The store (for status pages and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn cache_status(&self, detail: &str) -> HeaderValue {
        if detail == "hit" {
            return self.hit_status.clone();
        }
        HeaderValue::from_str(&format!("{}; {detail}", self.config.node_name))
            .unwrap_or_else(|_| HeaderValue::from_static("reef"))
    }

    /// Answers one request from `client`. Every response carries `Cache-Status` (RFC 9211)
    /// naming this node; requests refused before the cache say `fwd=request`.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let now = Instant::now();
        if !self.limits.admit_request(client.ip(), now) {
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                "429 Too Many Requests: slow down\n".into(),
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            r.headers_mut().insert(
                "cache-status",
                self.cache_status("fwd=request; detail=rate-limited"),
            );
            return r;
        }
        // Purges reach every node whatever its quota.
        if req.uri().path() == crate::purge::PURGE_PATH {
            return self.purge_endpoint(req).await;
        }
        let route = self.route_of(req.headers(), req.uri());
        if self.quota.as_ref().is_some_and(|q| q.over(now))
            && let Some(r) = self.redirect_to_origin(&req, &route)
        {
            return r;
        }
        let site = match &route {
            Ok(Route::Cdn(up) | Route::Reverse(up)) => up.host.as_str(),
            Err(_) => "",
        };
        if let Some(q) = &self.quota
            && q.over_share(site, now)
        {
            let mut r = text(
                StatusCode::FORBIDDEN,
                format!(
                    "403 Forbidden: {site} has used more than its fair share of this volunteer's \
                     bandwidth this hour; other sites are still served. Try again later.\n"
                ),
            );
            r.headers_mut().insert(
                "cache-status",
                self.cache_status("fwd=request; detail=fair-share"),
            );
            return r;
        }
        let counts = match site {
            "" => None,
            s => self.meter.request(s),
        };
        // Only a node with a quota shares it among sites (and pays for the site's name).
        let quota = self.quota.clone().map(|q| (q, site.to_string()));
        let mut r = self.handle_inner(req, route, client).await;
        if !r.headers().contains_key("cache-status") {
            let status = self.cache_status("fwd=request; detail=refused");
            r.headers_mut().insert("cache-status", status);
        }
        // Hits are counted in bytes too ("where the bytes came from" on the status page).
        let hit = r
            .headers()
            .get("cache-status")
            .and_then(|v| v.as_bytes().strip_prefix(self.config.node_name.as_bytes()))
            .is_some_and(|rest| rest.starts_with(b"; hit"));
        let hit_bytes = hit.then(|| self.stats.hit_bytes.clone());
        if counts.is_none() && quota.is_none() && hit_bytes.is_none() {
            return r;
        }
        // Counted as the bytes actually go out (a client that hangs up costs only what it
        // received).
        r.map(|body| {
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if let Some(c) = &counts {
                        c.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Some(h) = &hit_bytes {
                        h.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Some((q, site)) = &quota {
                        q.serve_site(site, n, Instant::now());
                    }
                }
                frame
            })
            .boxed()
        })
    }

    /// The sites that took the most bytes since start, with whether each is over its fair
    /// share of the bandwidth quota (`None` without a quota).
    pub fn top_sites(&self, n: usize) -> Vec<(crate::meter::SiteFigures, Option<bool>)> {
        let now = Instant::now();
        self.meter
            .top(n)
            .into_iter()
            .map(|f| {
                let over = self.quota.as_ref().map(|q| q.over_share(&f.site, now));
                (f, over)
            })
            .collect()
    }

    /// The share of its bandwidth quota this node has left this hour (1 without a quota):
    /// the weight DNS gives it among proxies.
    pub fn spare(&self) -> f64 {
        self.quota.as_ref().map_or(1.0, |q| q.spare(Instant::now()))
    }

    /// Whether the node is over its bandwidth quota (out of the network's answers).
    pub fn over_quota(&self) -> bool {
        self.quota.as_ref().is_some_and(|q| q.over(Instant::now()))
    }

    /// Where a request goes: its `Host` header, else the authority of its URI.
    fn route_of(&self, headers: &HeaderMap, uri: &http::Uri) -> Result<Route, RouteError> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        self.router.route(host)
    }

    /// Over quota: a CDN request goes straight to its origin (302), as Coral's nodes did.
    fn redirect_to_origin(
        &self,
        req: &Request<Incoming>,
        route: &Result<Route, RouteError>,
    ) -> Option<Response<ProxyBody>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        let Ok(Route::Cdn(up)) = route else {
            return None;
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = HeaderValue::from_str(&format!("{up}{path}")).ok()?;
        let mut r = text(
            StatusCode::FOUND,
            "302 Found: this node is over its bandwidth quota; fetch from the origin\n".into(),
        );
        r.headers_mut().insert(http::header::LOCATION, location);
        r.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        r.headers_mut().insert(
            "cache-status",
            self.cache_status("fwd=bypass; detail=over-quota"),
        );
        Some(r)
    }

    async fn handle_inner(
        self: &Arc<Self>,
        req: Request<Incoming>,
        route: Result<Route, RouteError>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        if parts.method != Method::GET && parts.method != Method::HEAD {
            // One's own site may pass other methods through (never a CDN name).
            if self.config.pass_methods
                && let Ok(Route::Reverse(up)) = route
            {
                return match self.pass(parts, body, &up, client).await {
                    Ok(r) => r,
                    Err(e) => text(StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n")),
                };
            }
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: a CDN serves GET and HEAD\n".into(),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        // One's own site (reverse mode) is never shared through peers: its invalidations
        // (`--pass-methods`) would not reach their copies.
        let (upstream, cdn) = match route {
            Ok(Route::Cdn(up)) => (up, true),
            Ok(Route::Reverse(up)) => (up, false),
            Err(e) => return text(StatusCode::BAD_REQUEST, self.router.help_page(&e)),
        };
        // The site's policy: known, or being fetched alongside the object (a dying origin
        // must not wait for its reef.json and then for the object); nothing is answered
        // before the policy is known.
        let pending = match cdn.then(|| self.site_now(&upstream)) {
            Some(SiteNow::Known(p)) if p.opt_out => return self.opted_out(&upstream),
            Some(SiteNow::Fetching(pending)) => Some(pending),
            _ => None,
        };
        let r = self.serve_get(parts, upstream.clone(), cdn, client).await;
        if let Some(pending) = pending
            && self.site_wait(pending).await.opt_out
        {
            return self.opted_out(&upstream);
        }
        r
    }

    /// A GET or HEAD for `upstream`: from the cache, a peer or the origin.
    async fn serve_get(
        self: &Arc<Self>,
        parts: http::request::Parts,
        upstream: Upstream,
        cdn: bool,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let key = upstream.key_for(path);
        // Made only for requests that leave the cache: a hit is logged nowhere else.
        let trace = || crate::trace::of_request(&parts.headers);
        let head_only = parts.method == Method::HEAD;
        let now = SystemTime::now();
        let mut validate = None;
        let stale = match self.store.lookup(&key, &parts.headers).await {
            Some(stored) => {
                let age = stored.age(now);
                match freshness::usable(
                    &parts.headers,
                    &stored.headers,
                    stored.lifetime,
                    age,
                    &self.config.policy,
                ) {
                    Use::Fresh => {
                        Stats::bump(&self.stats.hits);
                        return self.serve_stored(&parts.headers, &stored, age, head_only, "hit");
                    }
                    Use::StaleWhileRevalidate => {
                        Stats::bump(&self.stats.hits);
                        // Revalidate in the background (joining any fetch already under way).
                        let want = Want {
                            key: key.clone(),
                            up: upstream.clone(),
                            path: path.to_string(),
                            headers: parts.headers.clone(),
                            client,
                            validate: Some(stored.clone()),
                            shared: cdn,
                            trace: Some(trace()),
                        };
                        let _ = self.start(want, key.clone());
                        return self.serve_stored(
                            &parts.headers,
                            &stored,
                            age,
                            head_only,
                            "hit; stale-while-revalidate",
                        );
                    }
                    Use::Revalidate { if_error } => {
                        // Ask the origin whether the stored copy still holds (304).
                        if !conditional::validators(&stored.headers).is_empty() {
                            validate = Some(stored.clone());
                        }
                        if_error.then_some(stored)
                    }
                }
            }
            None => None,
        };
        Stats::bump(&self.stats.misses);
        // A request with credentials gets its own fetch: the answer may be personal, and must
        // reach neither another client nor, through a collapsed flight, anyone else.
        let private = parts.headers.contains_key(http::header::AUTHORIZATION)
            || (!self.config.policy.strip_cookies
                && parts.headers.contains_key(http::header::COOKIE));
        let want = Want {
            key: key.clone(),
            up: upstream,
            path: path.to_string(),
            headers: parts.headers.clone(),
            client,
            validate,
            shared: cdn && !private,
            trace: Some(trace()),
        };
        let flight = if private {
            format!("{key}#private#{client}")
        } else {
            key.clone()
        };
        let (fetch, collapsed) = self.start(want.clone(), flight);
        let head = fetch.head().await;
        match (head, stale) {
            // The origin fails: a stale copy beats an error (stale-if-error, RFC 5861).
            (Ok(head), Some(stored)) if head.status.is_server_error() => self.serve_stored(
                &parts.headers,
                &stored,
                stored.age(now),
                head_only,
                "hit; stale; fwd=stale",
            ),
            (Ok(head), _) => {
                // A response that varies on request headers this request does not share, or that
                // may not be shared at all, was fetched for someone else: fetch for this
                // request instead.
                let same_variant = head
                    .vary
                    .iter()
                    .all(|(n, v)| parts.headers.get(n) == v.as_ref());
                if collapsed && (!head.storable || !same_variant) {
                    let own_flight = format!("{key}#{client}");
                    let (own, _) = self.start(
                        Want {
                            validate: None,
                            ..want
                        },
                        own_flight,
                    );
                    return Box::pin(self.respond_to(&parts.headers, own, head_only)).await;
                }
                self.respond(&parts.headers, &head, &fetch, head_only, collapsed)
            }
            (Err(e), stale) => match stale {
                Some(stored) => self.serve_stored(
                    &parts.headers,
                    &stored,
                    stored.age(now),
                    head_only,
                    "hit; stale; fwd=stale",
                ),
                None => {
                    let status = match e {
                        FetchError::Forbidden(_) | FetchError::TooLarge(_) => StatusCode::FORBIDDEN,
                        FetchError::Unreachable(_) => StatusCode::BAD_GATEWAY,
                        FetchError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    let mut r = text(status, format!("{status}: {e}\n"));
                    r.headers_mut().insert(
                        "cache-status",
                        self.cache_status("fwd=miss; detail=origin-error"),
                    );
                    r
                }
            },
        }
    }

    /// The site asked not to be served (`"opt_out": true` in its reef.json).
    fn opted_out(&self, up: &Upstream) -> Response<ProxyBody> {
        let mut r = text(
            StatusCode::FORBIDDEN,
            format!(
                "403 Forbidden: {host} has asked not to be served through this CDN \
                 ({up}{well_known}). Visit the site directly: {up}/\n",
                host = up.host,
                well_known = crate::site::WELL_KNOWN_PATH,
            ),
        );
        r.headers_mut().insert(
            "cache-status",
            self.cache_status("fwd=request; detail=opted-out"),
        );
        r
    }

    async fn respond_to(
        self: &Arc<Self>,
        request: &HeaderMap,
        fetch: Arc<Fetch>,
        head_only: bool,
    ) -> Response<ProxyBody> {
        match fetch.head().await {
            Ok(head) => self.respond(request, &head, &fetch, head_only, false),
            Err(e) => text(StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n")),
        }
    }

    /// A response from a fetch (its own body, or the stored one a 304 confirmed).
    fn respond(
        &self,
        request: &HeaderMap,
        head: &Head,
        fetch: &Fetch,
        head_only: bool,
        collapsed: bool,
    ) -> Response<ProxyBody> {
        let body = head.body.clone().unwrap_or_else(|| fetch.body.clone());
        let len = match body.end() {
            Some(Ok(())) => Some(body.len()),
            _ => crate::headers::content_length(&head.headers),
        };
        let mut detail = String::from(if head.revalidated {
            "hit; fwd=stale; fwd-status=304"
        } else {
            "fwd=miss"
        });
        if collapsed {
            detail.push_str("; collapsed");
        }
        if head.storable
            && !head.revalidated
            && self
                .store
                .can_keep(crate::headers::content_length(&head.headers))
        {
            detail.push_str("; stored");
        }
        let mut cache_status = self.cache_status(&detail);
        if let Some((peer, entry)) = &head.peer {
            // RFC 9211: the entry nearest the origin first, so the peer's, then ours.
            let ours = self.cache_status(&format!("{detail}; detail=\"peer {peer}\""));
            let joined = match (entry.as_ref().and_then(|e| e.to_str().ok()), ours.to_str()) {
                (Some(theirs), Ok(ours)) => {
                    HeaderValue::from_str(&format!("{theirs}, {ours}")).ok()
                }
                _ => None,
            };
            cache_status = joined.unwrap_or(ours);
        }
        render(Rendition {
            request,
            status: head.status,
            headers: &head.headers,
            body,
            len,
            head_only,
            age: head.revalidated.then_some(Duration::ZERO),
            cache_status,
        })
    }

    fn serve_stored(
        &self,
        request: &HeaderMap,
        stored: &Stored,
        age: Duration,
        head_only: bool,
        detail: &str,
    ) -> Response<ProxyBody> {
        render(Rendition {
            request,
            status: stored.status,
            headers: &stored.headers,
            body: stored.body.clone(),
            len: Some(stored.body.len()),
            head_only,
            age: Some(age),
            cache_status: self.cache_status(detail),
        })
    }

    /// Starts the fetch of `want`, or joins the one in flight under `flight` (the cache key,
    /// or a private key for requests that must not share). Returns it and whether it was
    /// joined.
    fn start(self: &Arc<Self>, want: Want, flight: String) -> (Arc<Fetch>, bool) {
        let (tx, rx) = watch::channel(None);
        let fetch = Arc::new(Fetch {
            head: rx,
            body: SharedBody::spilling(self.spill.clone()),
        });
        if let Ok(mut inflight) = self.inflight.lock() {
            if let Some(f) = inflight.get(&flight) {
                return (f.clone(), true);
            }
            inflight.insert(flight.clone(), fetch.clone());
        }
        let this = self.clone();
        let body = fetch.body.clone();
        let weak = Arc::downgrade(&fetch);
        tokio::spawn(async move {
            // Removed from the flights however the fetch ends (even by a panic).
            let _flight = FlightGuard {
                proxy: this.clone(),
                flight,
                fetch: weak,
            };
            this.fetch(want, tx, body).await;
        });
        (fetch, false)
    }
}

/// The IPv4 address carried in two 16-bit groups of an IPv6 address.
fn embedded(hi: u16, lo: u16) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

/// Whether an origin address is on the public internet (not loopback, private, link-local,
/// multicast, unspecified, documentation or shared address space).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (o[0] == 100 && (64..128).contains(&o[1])) // 100.64/10 shared (CGNAT)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // 198.18/15 benchmarking
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
                || o[0] >= 240 // 240/4 reserved
                || o[0] == 0)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || v6.to_ipv4_mapped().is_some_and(|v4| !is_public(IpAddr::V4(v4)))
                // IPv4 embedded by NAT64 (64:ff9b::/96) or 6to4 (2002::/16) must be public too.
                || (seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && !is_public(IpAddr::V4(embedded(seg[6], seg[7]))))
                || (seg[0] == 0x2002 && !is_public(IpAddr::V4(embedded(seg[1], seg[2])))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "198.18.0.1",
            "240.0.0.1",
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
