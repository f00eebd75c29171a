//! Modelled proxies and the origin: caches with a byte budget, collapsed fetches, transfers
//! over uplinks of limited bandwidth. The logic follows ARCHITECTURE.md: local cache, then a
//! DHT lookup of the nearest peer caching (or fetching) the object, then the origin, with a
//! "pending" announcement before an origin fetch so others wait for it instead.

use std::collections::{BTreeMap, VecDeque};

use crate::queue::Micros;

/// A fetch in progress at a proxy: everyone waiting for the object there.
#[derive(Debug, Default)]
pub(crate) struct Fetch {
    /// Arrival times of the client requests waiting.
    pub(crate) waiters: Vec<Micros>,
    /// Other proxies that found this one "pending" and wait for its copy: (proxy, level).
    pub(crate) forward: Vec<(u32, u8)>,
    /// Fetching from the origin (so the pending announcement is renewed).
    pub(crate) from_origin: bool,
}

/// One proxy's cache and fetches.
#[derive(Debug, Default)]
pub(crate) struct Proxy {
    /// Object -> last use (an LRU tick).
    cache: BTreeMap<u32, u64>,
    /// LRU tick -> object.
    lru: BTreeMap<u64, u32>,
    used: u64,
    tick: u64,
    pub(crate) inflight: BTreeMap<u32, Fetch>,
    /// When the uplink to other proxies is free again (transfers go out one after another).
    pub(crate) uplink_free: Micros,
}

impl Proxy {
    pub(crate) fn has(&self, object: u32) -> bool {
        self.cache.contains_key(&object)
    }

    /// A cache hit: the object becomes most recently used.
    pub(crate) fn touch(&mut self, object: u32) {
        if let Some(t) = self.cache.get_mut(&object) {
            self.lru.remove(t);
            self.tick += 1;
            *t = self.tick;
            self.lru.insert(self.tick, object);
        }
    }

    /// Stores an object of `size` bytes; returns the objects evicted to stay within `budget`.
    pub(crate) fn insert(&mut self, object: u32, size: u64, budget: u64) -> Vec<u32> {
        if self.has(object) {
            self.touch(object);
            return Vec::new();
        }
        let mut evicted = Vec::new();
        while self.used + size > budget {
            let Some((_, victim)) = self.lru.pop_first() else {
                break;
            };
            self.cache.remove(&victim);
            self.used = self.used.saturating_sub(size);
            evicted.push(victim);
        }
        if size <= budget {
            self.tick += 1;
            self.cache.insert(object, self.tick);
            self.lru.insert(self.tick, object);
            self.used += size;
        }
        evicted
    }

    /// Objects cached (for bookkeeping when the proxy fails).
    pub(crate) fn cached(&self) -> impl Iterator<Item = u32> + '_ {
        self.cache.keys().copied()
    }

    /// Forgets everything (the process died).
    pub(crate) fn clear(&mut self) {
        *self = Proxy::default();
    }
}

/// A transfer being served by the origin.
#[derive(Debug)]
pub(crate) struct OriginTransfer {
    pub(crate) proxy: u32,
    pub(crate) incarnation: u8,
    pub(crate) object: u32,
    remaining_bits: f64,
}

/// The origin: an uplink shared equally by up to `concurrency` transfers at once (processor
/// sharing, as TCP flows roughly share a bottleneck); further requests wait in line.
#[derive(Debug)]
pub(crate) struct Origin {
    bps: f64,
    concurrency: usize,
    active: Vec<OriginTransfer>,
    waiting: VecDeque<OriginTransfer>,
    last_update: Micros,
    /// Bumped on every change, so only the latest scheduled completion check acts.
    pub(crate) generation: u64,
}

impl Origin {
    pub(crate) fn new(bps: f64, concurrency: usize) -> Self {
        Origin {
            bps,
            concurrency: concurrency.max(1),
            active: Vec::new(),
            waiting: VecDeque::new(),
            last_update: 0,
            generation: 0,
        }
    }

    fn advance(&mut self, now: Micros) {
        if !self.active.is_empty() {
            let secs = (now.saturating_sub(self.last_update)) as f64 / 1e6;
            let each = self.bps / self.active.len() as f64 * secs;
            for t in &mut self.active {
                t.remaining_bits -= each;
            }
        }
        self.last_update = now;
    }

    /// A request reached the origin.
    pub(crate) fn start(
        &mut self,
        now: Micros,
        proxy: u32,
        incarnation: u8,
        object: u32,
        bytes: u64,
    ) {
        self.advance(now);
        let t = OriginTransfer {
            proxy,
            incarnation,
            object,
            remaining_bits: bytes as f64 * 8.0,
        };
        if self.active.len() < self.concurrency {
            self.active.push(t);
        } else {
            self.waiting.push_back(t);
        }
        self.generation += 1;
    }

    /// Transfers finished by `now`; admits waiting ones into the freed slots.
    pub(crate) fn finish(&mut self, now: Micros) -> Vec<OriginTransfer> {
        self.advance(now);
        // Within a microsecond of done counts as done (float residue).
        let eps = self.bps / 1e6;
        let (done, active): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|t| t.remaining_bits <= eps);
        self.active = active;
        while self.active.len() < self.concurrency {
            let Some(t) = self.waiting.pop_front() else {
                break;
            };
            self.active.push(t);
        }
        self.generation += 1;
        done
    }

    /// When the next transfer completes at the current sharing, if any.
    pub(crate) fn next_completion(&self) -> Option<Micros> {
        let least = self
            .active
            .iter()
            .map(|t| t.remaining_bits)
            .fold(f64::INFINITY, f64::min);
        if !least.is_finite() {
            return None;
        }
        let rate = self.bps / self.active.len() as f64;
        Some(self.last_update + (least.max(0.0) / rate * 1e6).ceil() as Micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recently_used_within_budget() {
        let mut p = Proxy::default();
        assert!(p.insert(1, 40, 100).is_empty());
        assert!(p.insert(2, 40, 100).is_empty());
        p.touch(1);
        assert_eq!(p.insert(3, 40, 100), vec![2]);
        assert!(p.has(1) && p.has(3) && !p.has(2));
    }

    #[test]
    fn origin_shares_its_uplink_and_queues_beyond_concurrency() {
        // 8,000 bit/s: a 1,000-byte object alone takes 1 s.
        let mut o = Origin::new(8_000.0, 2);
        o.start(0, 1, 0, 10, 1000);
        assert_eq!(o.next_completion(), Some(1_000_000));
        o.start(0, 2, 0, 11, 1000);
        o.start(0, 3, 0, 12, 1000);
        // Two share the link: both finish at 2 s; the third waits for a slot.
        assert_eq!(o.next_completion(), Some(2_000_000));
        let done = o.finish(2_000_000);
        assert_eq!(done.len(), 2);
        assert_eq!(o.next_completion(), Some(3_000_000));
        assert_eq!(o.finish(3_000_000).len(), 1);
        assert_eq!(o.next_completion(), None);
    }
}
