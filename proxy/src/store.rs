//! The memory tier: complete responses under a byte budget, with their `Vary` variants.
//!
//! quick_cache's policy (CLOCK-Pro-like, with ghost entries for recently evicted keys) admits
//! a new key cold and promotes it only when requested again, which suits CDN traffic where
//! most URLs are requested once: a scan of one-hit wonders cannot flush the popular objects.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::VARY;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};

use crate::body::SharedBody;
use crate::cache::freshness::Received;
use crate::disk::DiskTier;
use crate::purge::cutoffs::Cutoffs;
use crate::purge::message::PurgeTarget;

/// A stored response.
#[derive(Debug)]
pub struct Stored {
    /// Status.
    pub status: StatusCode,
    /// Headers as stored (hop-by-hop and, by default, cookies removed).
    pub headers: HeaderMap,
    /// Timing, for the age.
    pub received: Received,
    /// Freshness lifetime.
    pub lifetime: Duration,
    /// The request header values this response was chosen by (its `Vary` fields).
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// The body (complete, in the store).
    pub body: Arc<SharedBody>,
}

impl Stored {
    /// Whether this variant answers a request with `request` headers (RFC 9111 section 4.1).
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request.get(name) == value.as_ref())
    }

    /// The `Vary` field names of `response`, with the values `request` has for them.
    pub fn vary_of(
        request: &HeaderMap,
        response: &HeaderMap,
    ) -> Vec<(HeaderName, Option<HeaderValue>)> {
        let mut out: Vec<(HeaderName, Option<HeaderValue>)> = response
            .get_all(VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
            .map(|name| {
                let value = request.get(&name).cloned();
                (name, value)
            })
            .collect();
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Its current age at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.received.current_age(now)
    }

    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers as u64 + 256
    }
}

/// Variants of one URL.
type Variants = Arc<Vec<Arc<Stored>>>;

#[derive(Debug, Clone)]
struct ByBytes;

impl Weighter<String, Variants> for ByBytes {
    fn weight(&self, _key: &String, val: &Variants) -> u64 {
        val.iter().map(|s| s.weight()).sum::<u64>().max(1)
    }
}

/// Complete responses by URL, under a byte budget.
#[derive(Debug)]
pub struct Store {
    cache: Cache<
        String,
        Variants,
        ByBytes,
        quick_cache::DefaultHashBuilder,
        DefaultLifecycle<String, Variants>,
    >,
    /// Variants kept per URL at most (a header with endless values cannot grow one entry).
    max_variants: usize,
    /// The disk tier, if any: every stored response is also written there, and a memory
    /// miss reads it back.
    disk: Option<Arc<DiskTier>>,
    /// When URLs were purged: older copies are never stored again.
    cutoffs: Cutoffs,
}

impl Store {
    /// A store of about `budget` bytes that can hold objects of up to `largest` bytes.
    ///
    /// quick_cache splits its budget over shards and refuses an item heavier than one shard's
    /// share, so the shard count is chosen to leave each shard room for the largest object.
    pub fn new(budget: u64, largest: u64) -> Store {
        // quick_cache needs an estimate of the item count; assume 16 KiB objects.
        let items = (budget / (16 * 1024)).clamp(16, 1 << 24) as usize;
        let fit = (budget / largest.max(1)).max(1);
        // A power of two, at most 64, never more than `fit` (quick_cache rounds up).
        let shards = (1u64 << (63 - fit.leading_zeros())).min(64) as usize;
        let options = OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(budget.max(1))
            .shards(shards)
            .build();
        let cache = match options {
            Ok(o) => Cache::with_options(o, ByBytes, Default::default(), Default::default()),
            Err(_) => Cache::with(
                items,
                budget.max(1),
                ByBytes,
                Default::default(),
                Default::default(),
            ),
        };
        Store {
            cache,
            max_variants: 16,
            disk: None,
            cutoffs: Cutoffs::default(),
        }
    }

    /// The same, backed by `disk`.
    pub fn with_disk(budget: u64, largest: u64, disk: Option<Arc<DiskTier>>) -> Store {
        Store {
            disk,
            ..Store::new(budget, largest)
        }
    }

    /// Whether a body of `len` bytes (if known) fits somewhere: the memory tier refuses an
    /// item heavier than one of its shards, and such a body needs the disk tier, else it
    /// passes through.
    pub fn can_keep(&self, len: Option<u64>) -> bool {
        self.disk.is_some() || len.is_none_or(|n| n < self.cache.shard_capacity())
    }

    /// The disk tier, if any.
    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_deref()
    }

    /// The stored variant of `key` that matches `request`, from memory or else from disk
    /// (read on a blocking thread, then kept in memory unless it is read in place).
    pub async fn lookup(&self, key: &str, request: &HeaderMap) -> Option<Arc<Stored>> {
        if let Some(s) = self.get(key, request) {
            return Some(s);
        }
        let disk = self.disk.clone().filter(|d| d.contains(key))?;
        let k = key.to_string();
        let stored = tokio::task::spawn_blocking(move || disk.read(&k))
            .await
            .ok()??;
        if !stored.matches(request) {
            return None;
        }
        let stored = Arc::new(stored);
        // A large entry read in place stays on disk: its weight in memory would be a lie.
        let keep = stored.body.is_all_in_memory();
        if !self.put_unless_purged(key, stored.clone(), keep, || {}) {
            return None;
        }
        Some(stored)
    }

    /// The stored variant of `key` that matches `request`, if any.
    pub fn get(&self, key: &str, request: &HeaderMap) -> Option<Arc<Stored>> {
        let variants = self.cache.get(key)?;
        variants.iter().find(|s| s.matches(request)).cloned()
    }

    /// Stores a complete response, replacing the variant with the same `Vary` values, and
    /// writes it to the disk tier in the background. A response requested before a purge of
    /// its URL is the purged object, and is not stored.
    /// A body that lives in a file (it was too large to hold in memory) is kept by the
    /// memory tier in that file, weighing what it would in memory (so until the disk write
    /// lands, and without a disk tier, it is still a hit; one larger than the whole budget is
    /// refused, and passes through without a disk tier).
    /// Returns whether it was stored.
    pub fn put(&self, key: &str, stored: Arc<Stored>) -> bool {
        let write_to_disk = || {
            if let (Some(disk), Ok(rt)) = (&self.disk, tokio::runtime::Handle::try_current()) {
                let (disk, k, s) = (disk.clone(), key.to_string(), stored.clone());
                let ticket = disk.reserve(key);
                rt.spawn_blocking(move || {
                    if let Err(e) = disk.write(&k, &s, ticket) {
                        tracing::warn!(key = %k, error = %e, "could not write to the disk cache");
                    }
                });
            }
        };
        self.put_unless_purged(key, stored.clone(), true, write_to_disk)
    }

    /// Keeps `stored` in memory (and calls `also`, the disk write) unless a purge of `key`
    /// came after it was requested. Checked again after the insert: a purge records its
    /// moment before it removes anything, so a purge racing with this insert either removes
    /// the new entry or is seen here, and the entry goes.
    fn put_unless_purged(
        &self,
        key: &str,
        stored: Arc<Stored>,
        in_memory: bool,
        also: impl FnOnce(),
    ) -> bool {
        let requested = stored.received.request_time;
        if self.cutoffs.predates(key, requested) {
            tracing::debug!(key, "not storing a copy requested before its purge");
            return false;
        }
        also();
        if in_memory {
            self.put_memory(key, stored);
        }
        if self.cutoffs.predates(key, requested) {
            self.remove(key);
            return false;
        }
        true
    }

    fn put_memory(&self, key: &str, stored: Arc<Stored>) {
        let mut variants: Vec<Arc<Stored>> = self
            .cache
            .get(key)
            .map(|v| {
                v.iter()
                    .filter(|s| s.vary != stored.vary)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        variants.insert(0, stored);
        variants.truncate(self.max_variants);
        self.cache.insert(key.to_string(), Arc::new(variants));
    }

    /// Drops every variant of `key` (invalidation after an unsafe method, a purge).
    pub fn remove(&self, key: &str) {
        self.cache.remove(key);
        if let Some(d) = &self.disk {
            d.remove(key);
        }
    }

    /// The purge moments of URLs.
    pub fn cutoffs(&self) -> &Cutoffs {
        &self.cutoffs
    }

    /// Drops every URL `target` covers, in memory and on disk; returns how many URLs were
    /// held. (Record the purge in [`Store::cutoffs`] first, so a copy being stored meanwhile
    /// is refused.)
    pub fn purge(&self, target: &PurgeTarget) -> usize {
        if !target.prefix {
            let held = self.contains(&target.key);
            self.remove(&target.key);
            return usize::from(held);
        }
        // quick_cache's `retain` takes an `Fn`: the keys are counted in a pass of their own.
        let mut keys: std::collections::HashSet<String> = self
            .cache
            .iter()
            .map(|(k, _)| k)
            .filter(|k| target.matches(k))
            .collect();
        self.cache.retain(|k, _| !target.matches(k));
        if let Some(d) = &self.disk {
            keys.extend(d.remove_matching(|k| target.matches(k)));
        }
        keys.len()
    }

    /// Whether any variant of `key` is held, in memory or on disk (without counting as a
    /// use).
    pub fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key) || self.disk.as_ref().is_some_and(|d| d.contains(key))
    }

    /// Bytes held.
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// URLs held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::header::ACCEPT_ENCODING;

    fn stored(request: &HeaderMap, response: HeaderMap, body: &'static [u8]) -> Arc<Stored> {
        let now = SystemTime::now();
        Arc::new(Stored {
            status: StatusCode::OK,
            vary: Stored::vary_of(request, &response),
            received: Received::new(now, now, &response),
            headers: response,
            lifetime: Duration::from_secs(60),
            body: SharedBody::complete(Bytes::from_static(body)),
        })
    }

    #[test]
    fn variants_are_chosen_by_the_vary_headers() {
        let store = Store::new(1 << 20, 1 << 16);
        let mut vary = HeaderMap::new();
        vary.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        let mut gzip = HeaderMap::new();
        gzip.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let plain = HeaderMap::new();
        store.put("k", stored(&gzip, vary.clone(), b"zipped"));
        store.put("k", stored(&plain, vary.clone(), b"plain"));
        let body = |s: Arc<Stored>| s.body.collect().unwrap();
        assert_eq!(
            body(store.get("k", &gzip).unwrap()),
            Bytes::from_static(b"zipped")
        );
        assert_eq!(
            body(store.get("k", &plain).unwrap()),
            Bytes::from_static(b"plain")
        );
        let mut br = HeaderMap::new();
        br.insert(ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert!(store.get("k", &br).is_none());
        // Replacing a variant keeps the others.
        store.put("k", stored(&gzip, vary, b"zipped2"));
        assert_eq!(
            body(store.get("k", &gzip).unwrap()),
            Bytes::from_static(b"zipped2")
        );
        assert!(store.get("k", &plain).is_some());
        store.remove("k");
        assert!(store.get("k", &plain).is_none());
    }

    #[test]
    fn budget_bounds_the_bytes_held() {
        static BIG: [u8; 10_000] = [7; 10_000];
        let store = Store::new(100_000, 20_000);
        for i in 0..100 {
            store.put(
                &format!("k{i}"),
                stored(&HeaderMap::new(), HeaderMap::new(), &BIG),
            );
        }
        assert!(store.weight() <= 100_000, "{} bytes held", store.weight());
        assert!(store.len() >= 5);
        // An object of nearly the largest size is kept, not silently refused by a shard.
        static LARGE: [u8; 19_000] = [1; 19_000];
        store.put("large", stored(&HeaderMap::new(), HeaderMap::new(), &LARGE));
        assert!(store.get("large", &HeaderMap::new()).is_some());
    }
}
