//! `proxy::Directory` over the overlay: DHT gets and puts keyed by URL, renewals, and peer
//! transfers.
//!
//! - `locate` is a hierarchical get within a time budget (default 300 ms): a slow lookup
//!   must cost a client less than the origin would.
//! - `claim` puts a *pending* value (20 s, renewed every 10 s while the fetch runs) and then
//!   looks again: if another node claimed the object too, the one with the smaller node ID
//!   fetches from the origin and the other waits for it, so a crowd arriving at several
//!   nodes at once costs the origin one fetch.
//! - `announce(Cached)` puts a cached value and renews it while the object stays in the
//!   cache: eviction stops the renewals, and the value then expires.
//! - A holder that served wrong bytes is never asked again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use proxy::directory::{Directory, Holder, Holding, PeerError, PeerRequest, PeerResponse};
use proxy::purge::message::PurgeTarget;

use crate::overlay::advert::node_id;
use crate::overlay::{Advert, Overlay, transfer};

/// Timing of the directory.
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    /// Longest a lookup may take before the proxy goes to the origin.
    pub locate_budget: Duration,
    /// Lifetime of a pending value.
    pub pending_ttl: Duration,
    /// Lifetime of a cached value; renewed at half of it while the object stays cached.
    pub cached_ttl: Duration,
    /// After its pending put, a claim waits as long again as the put took, within these
    /// bounds, before it looks for other claimants: puts of other nodes that claimed at the
    /// same moment land meanwhile, so the claimants see each other and one of them fetches.
    pub claim_settle: (Duration, Duration),
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            locate_budget: Duration::from_millis(300),
            pending_ttl: Duration::from_secs(20),
            cached_ttl: Duration::from_secs(600),
            claim_settle: (Duration::from_millis(25), Duration::from_millis(250)),
        }
    }
}

/// What the directory did (for `/metrics`).
#[derive(Debug, Default)]
pub struct DirectoryCounters {
    /// Lookups made.
    pub lookups: AtomicU64,
    /// Lookups that named at least one holder.
    pub lookup_hits: AtomicU64,
    /// Objects fetched from peers (transfers started).
    pub peer_fetches: AtomicU64,
    /// Values put (announcements and renewals).
    pub puts: AtomicU64,
    /// Holders reported for wrong bytes.
    pub bad_peers: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Renew {
    Pending,
    Cached,
}

/// What the directory asks the proxy (set once the proxy exists).
pub struct ProxyHooks {
    /// Whether the proxy still has an object.
    pub still_cached: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Whether the node is out of the network's answers (over its bandwidth quota).
    pub withdrawn: Box<dyn Fn() -> bool + Send + Sync>,
}

/// The overlay's directory.
pub struct OverlayDirectory {
    overlay: Overlay,
    config: DirectoryConfig,
    renewals: Mutex<HashMap<String, (Renew, Instant)>>,
    /// Holders that served wrong bytes, until when they are not asked.
    banned: Mutex<HashMap<PeerId, Instant>>,
    hooks: OnceLock<ProxyHooks>,
    /// What it did.
    pub counters: DirectoryCounters,
}

impl std::fmt::Debug for ProxyHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyHooks")
    }
}

impl std::fmt::Debug for OverlayDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayDirectory")
            .field("overlay", &self.overlay)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn key_of(url: &str) -> dht::Key {
    dht::Key::from_url(url)
}

/// How long a holder that served wrong bytes is not asked again.
const BAN_FOR: Duration = Duration::from_secs(3600);
/// Holders banned at once, at most.
const MAX_BANNED: usize = 4096;

/// How often the renewal task looks for values due.
const RENEW_TICK: Duration = Duration::from_secs(1);

impl OverlayDirectory {
    /// A directory over `overlay`; spawns its renewal task.
    pub fn new(overlay: Overlay, config: DirectoryConfig) -> Arc<OverlayDirectory> {
        let dir = Arc::new(OverlayDirectory {
            overlay,
            config,
            renewals: Mutex::new(HashMap::new()),
            banned: Mutex::new(HashMap::new()),
            hooks: OnceLock::new(),
            counters: DirectoryCounters::default(),
        });
        let weak = Arc::downgrade(&dir);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_TICK);
            loop {
                tick.tick().await;
                let Some(dir) = weak.upgrade() else { return };
                dir.renew_due(Instant::now());
            }
        });
        dir
    }

    /// Tells the directory how to ask the proxy about its objects and state.
    pub fn set_hooks(&self, hooks: ProxyHooks) {
        let _ = self.hooks.set(hooks);
    }

    /// Objects this node announces now.
    pub fn announced(&self) -> usize {
        self.renewals.lock().map_or(0, |r| r.len())
    }

    /// Starts a put; false if the overlay's queue is full (the caller tries again later).
    fn put(&self, url: &str, pending: bool) -> bool {
        let ttl = if pending {
            self.config.pending_ttl
        } else {
            self.config.cached_ttl
        };
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.overlay.put_in_background(key_of(url), pending, ttl)
    }

    fn renew_due(&self, now: Instant) {
        let due: Vec<(String, Renew)> = {
            let Ok(mut r) = self.renewals.lock() else {
                return;
            };
            let hooks = self.hooks.get();
            // Evicted objects stop being announced; their values expire on their own.
            r.retain(|url, (kind, _)| {
                *kind == Renew::Pending || hooks.is_none_or(|h| (h.still_cached)(url))
            });
            // Over quota: announce nothing until the cool-down ends (values expire meanwhile).
            if hooks.is_some_and(|h| (h.withdrawn)()) {
                return;
            }
            r.iter()
                .filter(|(_, (_, at))| *at <= now)
                .map(|(url, (kind, _))| (url.clone(), *kind))
                .collect()
        };
        for (url, kind) in due {
            // Rescheduled only once queued: a full queue leaves it due for the next tick.
            if !self.put(&url, kind == Renew::Pending) {
                break;
            }
            if let Ok(mut r) = self.renewals.lock()
                && let Some((_, at)) = r.get_mut(&url)
            {
                *at = now + self.interval(kind);
            }
        }
    }

    fn interval(&self, kind: Renew) -> Duration {
        match kind {
            Renew::Pending => self.config.pending_ttl / 2,
            Renew::Cached => self.config.cached_ttl / 2,
        }
    }

    fn schedule(&self, url: &str, kind: Renew) {
        if let Ok(mut r) = self.renewals.lock() {
            r.insert(
                url.to_string(),
                (kind, Instant::now() + self.interval(kind)),
            );
        }
    }

    fn holders(&self, values: Vec<dht::Value>) -> Vec<(Holder, dht::NodeId)> {
        let now = Instant::now();
        let banned: HashSet<PeerId> = self
            .banned
            .lock()
            .map(|mut b| {
                b.retain(|_, until| *until > now);
                b.keys().copied().collect()
            })
            .unwrap_or_default();
        let mut out: Vec<(Holder, dht::NodeId)> = values
            .into_iter()
            .filter_map(|v| {
                let advert = Advert::of(&v.holder).ok()?;
                if advert.peer == self.overlay.peer_id() || banned.contains(&advert.peer) {
                    return None;
                }
                Some((
                    Holder {
                        name: advert.peer.to_string(),
                        pending: v.pending,
                    },
                    v.holder.id,
                ))
            })
            .collect();
        // Holders with the object first: they answer at once.
        out.sort_by_key(|(h, _)| h.pending);
        out
    }

    async fn lookup(&self, url: &str, trace: Option<&str>) -> Vec<(Holder, dht::NodeId)> {
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let get = self.overlay.get(key_of(url), trace);
        let found = match tokio::time::timeout(self.config.locate_budget, get).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!(trace, url, error = %e, "locate: no holder");
                return Vec::new();
            }
            Err(_) => {
                tracing::debug!(trace, url, "locate: out of time");
                return Vec::new();
            }
        };
        let holders = self.holders(found.values);
        tracing::debug!(
            trace,
            url,
            level = found.level.0,
            hops = found.hops,
            holders = holders.len(),
            "locate"
        );
        if !holders.is_empty() {
            self.counters.lookup_hits.fetch_add(1, Ordering::Relaxed);
        }
        holders
    }
}

#[async_trait::async_trait]
impl Directory for OverlayDirectory {
    async fn locate(&self, key: &str, trace: Option<&str>) -> Vec<Holder> {
        self.lookup(key, trace)
            .await
            .into_iter()
            .map(|(h, _)| h)
            .collect()
    }

    async fn claim(&self, key: &str, trace: Option<&str>) -> Option<Holder> {
        self.schedule(key, Renew::Pending);
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        let put = self
            .overlay
            .put(key_of(key), true, self.config.pending_ttl, trace);
        let started = Instant::now();
        let _ = tokio::time::timeout(self.config.locate_budget, put).await;
        let (min, max) = self.config.claim_settle;
        tokio::time::sleep(started.elapsed().clamp(min, max)).await;
        let me = node_id(&self.overlay.peer_id());
        let mut holders = self.lookup(key, trace).await;
        // Lookups stop at the first node with values, and a key's values spread over several
        // nodes once one is full: each claimant sees part of the others, so two looks see
        // more than one.
        if !holders.iter().any(|(h, id)| !h.pending || *id < me) {
            holders.extend(self.lookup(key, trace).await);
        }
        // Someone has it already, or claimed it before us by the tie-break: wait for them.
        let first = holders
            .into_iter()
            .filter(|(h, id)| !h.pending || *id < me)
            .min_by_key(|(h, id)| (h.pending, *id))
            .map(|(h, _)| h);
        if let Some(h) = &first {
            tracing::debug!(trace, key, holder = %h.name, pending = h.pending, "claim: another node fetches it");
        }
        first
    }

    fn announce(&self, key: &str, holding: Holding) {
        match holding {
            Holding::Cached => {
                self.schedule(key, Renew::Cached);
                let _ = self.put(key, false);
            }
            Holding::Dropped => {
                if let Ok(mut r) = self.renewals.lock() {
                    r.remove(key);
                }
            }
        }
    }

    async fn fetch(&self, from: &Holder, req: PeerRequest) -> Result<PeerResponse, PeerError> {
        let peer: PeerId = from
            .name
            .parse()
            .map_err(|_| PeerError::Protocol(format!("bad holder {}", from.name)))?;
        self.counters.peer_fetches.fetch_add(1, Ordering::Relaxed);
        transfer::fetch(self.overlay.streams(), peer, req).await
    }

    fn report(&self, from: &Holder, problem: &PeerError) {
        tracing::warn!(peer = %from.name, %problem, "not asking this peer for objects again");
        self.counters.bad_peers.fetch_add(1, Ordering::Relaxed);
        if let (Ok(peer), Ok(mut banned)) = (from.name.parse::<PeerId>(), self.banned.lock())
            && (banned.len() < MAX_BANNED || banned.contains_key(&peer))
        {
            banned.insert(peer, Instant::now() + BAN_FOR);
        }
    }

    fn withdraw(&self, target: &PurgeTarget) {
        if let Ok(mut r) = self.renewals.lock() {
            r.retain(|url, _| !target.matches(url));
        }
    }

    fn flood(&self, purge: &[u8]) {
        if !self.overlay.flood_purge(purge.to_vec()) {
            tracing::warn!("the overlay's queue is full: a purge was applied here but not flooded");
        }
    }
}
