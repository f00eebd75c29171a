//! The sloppy store of one level: a bounded set of values per key, each with its own TTL,
//! and the per-key request rate that makes a node "loaded".
//!
//! ```text
//! Coral, section 4.2: "A node is full with respect to some key k when it stores l values
//! for k whose TTLs are all at least one-half of the new value. A node is loaded with
//! respect to k when it has received more than the maximum leakage rate beta requests for
//! k within the past minute."
//! ```
//! A full node refuses a new holder, so puts spread onto nodes before it; a node that is
//! both full and loaded stops puts from going further, so the nodes nearest a hot key see at
//! most about `beta` requests a minute from each direction instead of all of them.
//!
//! Sizes: a simulator holds tens of thousands of stores per level, so the expiry index has
//! one entry per key (its soonest expiry), not one per value, and request times are
//! four-byte [`Stamp`]s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::id::{Key, NodeId};
use crate::stamp::{Clock, Stamp};
use crate::wire::Value;

#[derive(Clone, Debug)]
struct Stored {
    value: Value,
    expires: Instant,
}

/// Limits of one store, copied from [`Config`](crate::Config).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Coral's sloppy store; `false`: a classic Kademlia store, never full or loaded, which
    /// takes every value (the soonest to expire makes room).
    pub(crate) sloppy: bool,
    pub(crate) values_per_key: usize,
    pub(crate) loaded_threshold: u32,
    pub(crate) loaded_window: Duration,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) max_keys: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct Store {
    limits: Limits,
    values: BTreeMap<Key, Vec<Stored>>,
    /// Every key with values, by the soonest expiry among them: drives expiry (in
    /// logarithmic time, however many keys) and picks the key to drop when `max_keys` is hit.
    by_expiry: BTreeSet<(Instant, Key)>,
    /// The clock of the request stamps.
    clock: Clock,
    /// Recent request times per key, at most `loaded_threshold + 1` each (enough to decide).
    /// Whole seconds: a request counts towards the window for up to a second less than
    /// `loaded_window`, which the rule, a rate over a minute, does not notice.
    requests: BTreeMap<Key, VecDeque<Stamp>>,
}

impl Store {
    pub(crate) fn new(limits: Limits) -> Self {
        Store {
            limits,
            values: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            clock: Clock::default(),
            requests: BTreeMap::new(),
        }
    }

    /// The TTL actually granted for a requested one.
    pub(crate) fn clamp_ttl(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.limits.min_ttl, self.limits.max_ttl)
    }

    /// Counts a request (get, probe or store) for `key`, for the "loaded" rule.
    pub(crate) fn record_request(&mut self, key: Key, now: Instant) {
        if !self.requests.contains_key(&key) && self.requests.len() >= self.limits.max_keys {
            // Under a flood of distinct keys we stop tracking new ones rather than grow; such
            // keys are never "loaded", which only makes puts go one hop further.
            return;
        }
        let window = self.limits.loaded_window;
        let cap = self.limits.loaded_threshold as usize + 1;
        let stamp = self.clock.stamp(now);
        let clock = self.clock;
        let times = self.requests.entry(key).or_default();
        while times
            .front()
            .is_some_and(|t| clock.silence(now, *t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= cap {
            times.pop_front();
        }
        times.push_back(stamp);
    }

    /// More than `beta` requests for `key` in the last window (a sloppy store only).
    pub(crate) fn is_loaded(&self, key: &Key, now: Instant) -> bool {
        let window = self.limits.loaded_window;
        self.limits.sloppy
            && self.requests.get(key).is_some_and(|times| {
                times
                    .iter()
                    .filter(|t| self.clock.silence(now, **t) < window)
                    .count()
                    > self.limits.loaded_threshold as usize
            })
    }

    /// Holds `l` live values for `key` whose remaining TTLs are at least half of `ttl` (a
    /// sloppy store only).
    pub(crate) fn is_full(&self, key: &Key, ttl: Duration, now: Instant) -> bool {
        let ttl = self.clamp_ttl(ttl);
        let half = ttl / 2;
        self.limits.sloppy
            && self.values.get(key).is_some_and(|vs| {
                vs.iter()
                    .filter(|s| s.expires.saturating_duration_since(now) >= half)
                    .count()
                    >= self.limits.values_per_key
            })
    }

    /// Whether `store` would take a value of `holder` under `key` now: the node is not
    /// full for it (a classic store never is), or already holds a live value of `holder`'s.
    pub(crate) fn accepts(&self, key: &Key, holder: &NodeId, ttl: Duration, now: Instant) -> bool {
        let present = self.values.get(key).is_some_and(|vs| {
            vs.iter()
                .any(|s| s.value.holder.id == *holder && s.expires > now)
        });
        present || !self.is_full(key, ttl, now)
    }

    /// Stores `value` unless the node is full for `key`. A holder already present is always
    /// refreshed in place (renewals must not spread). Returns whether it was stored.
    pub(crate) fn store(&mut self, key: Key, value: Value, ttl: Duration, now: Instant) -> bool {
        self.expire_values(now);
        let ttl = self.clamp_ttl(ttl);
        if !self.accepts(&key, &value.holder.id, ttl, now) {
            return false;
        }
        self.insert(key, value, now + ttl)
    }

    /// Stores `value` even if full for `key`, displacing the value that expires first. Used
    /// for the putter's own store when no node on the way accepted: an announcement must land
    /// somewhere, and the bound of `l` values per key still holds.
    pub(crate) fn store_anyway(
        &mut self,
        key: Key,
        value: Value,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        self.expire_values(now);
        let expires = now + self.clamp_ttl(ttl);
        self.insert(key, value, expires)
    }

    fn insert(&mut self, key: Key, value: Value, expires: Instant) -> bool {
        if !self.values.contains_key(&key) && self.values.len() >= self.limits.max_keys {
            // Make room by dropping the whole key whose first value expires soonest, so the
            // key count (and with `l` per key, the value count) stays bounded.
            match self.by_expiry.first().copied() {
                Some((first, victim)) if first < expires => self.remove_key(victim),
                _ => return false,
            }
        }
        let holder = value.holder.id;
        let per_key = self.limits.values_per_key;
        let vs = self.values.entry(key).or_default();
        let first = soonest(vs);
        vs.retain(|s| s.value.holder.id != holder);
        // At capacity: the value that expires first goes (when not full, it has under ttl/2 left).
        if vs.len() >= per_key
            && let Some(victim) = (0..vs.len()).min_by_key(|&i| vs[i].expires)
        {
            vs.remove(victim);
        }
        vs.push(Stored { value, expires });
        self.settle(key, first);
        true
    }

    /// After `key`'s values changed: moves the key in the expiry index from `old` (its
    /// soonest expiry before the change, `None` if it had no values) to its soonest now, and
    /// drops the key once it has no values left. Every change to `values` ends here, so the
    /// index cannot go stale.
    fn settle(&mut self, key: Key, old: Option<Instant>) {
        let new = self.values.get(&key).and_then(|vs| soonest(vs));
        if new.is_none() {
            self.values.remove(&key);
        }
        if old == new {
            return;
        }
        if let Some(t) = old {
            self.by_expiry.remove(&(t, key));
        }
        if let Some(t) = new {
            self.by_expiry.insert((t, key));
        }
    }

    /// Live values for `key`, settled holders before pending ones, then longest-lived first.
    pub(crate) fn get(&self, key: &Key, now: Instant, max: usize) -> Vec<Value> {
        let Some(vs) = self.values.get(key) else {
            return Vec::new();
        };
        let mut live: Vec<&Stored> = vs.iter().filter(|s| s.expires > now).collect();
        live.sort_by_key(|s| (s.value.pending, std::cmp::Reverse(s.expires)));
        live.into_iter()
            .take(max)
            .map(|s| s.value.clone())
            .collect()
    }

    /// Drops expired values and stale request counts.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.expire_values(now);
        let window = self.limits.loaded_window;
        let clock = self.clock;
        self.requests.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| clock.silence(now, *t) < window)
        });
    }

    /// Drops expired values only: cheap enough for every store (request counts are pruned by
    /// the periodic [`expire`](Store::expire)).
    fn expire_values(&mut self, now: Instant) {
        while let Some(&(first, key)) = self.by_expiry.first() {
            if first > now {
                break;
            }
            if let Some(vs) = self.values.get_mut(&key) {
                vs.retain(|s| s.expires > now);
            }
            self.settle(key, Some(first));
        }
    }

    fn remove_key(&mut self, key: Key) {
        let Some(vs) = self.values.get_mut(&key) else {
            return;
        };
        let first = soonest(vs);
        vs.clear();
        self.settle(key, first);
    }

    /// When the next value expires.
    #[cfg(test)]
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(t, _)| *t)
    }

    /// Values held under all keys (counted when asked: stats and snapshots ask every few
    /// seconds, stores many times a second).
    pub(crate) fn value_count(&self) -> usize {
        self.values.values().map(Vec::len).sum()
    }

    pub(crate) fn key_count(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn loaded_key_count(&self, now: Instant) -> usize {
        self.requests
            .keys()
            .filter(|k| self.is_loaded(k, now))
            .count()
    }
}

/// The soonest expiry among `vs`.
fn soonest(vs: &[Stored]) -> Option<Instant> {
    vs.iter().map(|s| s.expires).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Addr, Contact};

    fn limits() -> Limits {
        Limits {
            sloppy: true,
            values_per_key: 4,
            loaded_threshold: 12,
            loaded_window: Duration::from_secs(60),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            max_keys: 10,
        }
    }

    fn value(n: u8) -> Value {
        Value {
            holder: Contact::new(NodeId([n; 32]), Addr::default()),
            pending: false,
        }
    }

    const KEY: Key = Key([9; 32]);
    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn full_after_l_values_with_long_enough_ttls() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        for n in 0..4 {
            assert!(!s.is_full(&KEY, MIN, now));
            assert!(s.store(KEY, value(n), MIN, now));
        }
        assert!(s.is_full(&KEY, MIN, now));
        assert!(!s.store(KEY, value(9), MIN, now), "a full node refuses");
        // A value asking for four times the TTL finds the node not full: the stored ones have
        // less than half its TTL left, so the soonest-expiring is replaced.
        assert!(!s.is_full(&KEY, MIN * 4, now));
        assert!(s.store(KEY, value(9), MIN * 4, now));
        assert_eq!(s.get(&KEY, now, 10).len(), 4);
    }

    #[test]
    fn renewal_of_a_present_holder_is_always_accepted() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        for n in 0..4 {
            s.store(KEY, value(n), MIN, now);
        }
        // What a put probe reports: full, yet taking a value of a holder it already has.
        assert!(s.is_full(&KEY, MIN, now));
        assert!(s.accepts(&KEY, &value(2).holder.id, MIN, now));
        assert!(!s.accepts(&KEY, &value(9).holder.id, MIN, now));
        let mut renewed = value(2);
        renewed.pending = true;
        assert!(s.store(KEY, renewed, MIN * 2, now));
        assert_eq!(s.value_count(), 4);
        let got = s.get(&KEY, now, 10);
        assert_eq!(
            got.last().map(|v| v.pending),
            Some(true),
            "pending sorts last"
        );
    }

    #[test]
    fn a_classic_store_is_never_full_or_loaded_and_takes_every_value() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(Limits {
            sloppy: false,
            ..limits()
        });
        for n in 0..20 {
            s.record_request(KEY, now);
            assert!(s.store(KEY, value(n), MIN, now), "value {n}");
        }
        assert!(!s.is_full(&KEY, MIN, now) && !s.is_loaded(&KEY, now));
        assert!(s.accepts(&KEY, &value(99).holder.id, MIN, now));
        assert_eq!(s.value_count(), 4, "the soonest to expire made room");
    }

    #[test]
    fn values_expire_individually() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        s.store(KEY, value(1), Duration::from_secs(10), now);
        s.store(KEY, value(2), Duration::from_secs(20), now);
        assert_eq!(s.next_expiry(), Some(now + Duration::from_secs(10)));
        let later = now + Duration::from_secs(15);
        assert_eq!(s.get(&KEY, later, 10), vec![value(2)]);
        s.expire(later);
        assert_eq!(s.value_count(), 1);
        s.expire(now + Duration::from_secs(20));
        assert_eq!((s.value_count(), s.key_count()), (0, 0));
    }

    #[test]
    fn store_anyway_displaces_the_soonest_to_expire() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        for n in 0..4 {
            s.store(KEY, value(n), MIN + Duration::from_secs(n.into()), now);
        }
        assert!(!s.store(KEY, value(9), MIN, now));
        assert!(s.store_anyway(KEY, value(9), MIN, now));
        let holders: Vec<u8> = s
            .get(&KEY, now, 10)
            .iter()
            .map(|v| v.holder.id.0[0])
            .collect();
        assert_eq!(holders.len(), 4);
        assert!(holders.contains(&9) && !holders.contains(&0));
    }

    #[test]
    fn loaded_after_more_than_beta_requests_in_a_minute() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        for i in 0..12 {
            s.record_request(KEY, now + Duration::from_secs(i));
        }
        assert!(!s.is_loaded(&KEY, now + Duration::from_secs(12)));
        s.record_request(KEY, now + Duration::from_secs(12));
        assert!(s.is_loaded(&KEY, now + Duration::from_secs(12)));
        // A minute after the first requests, the rate has fallen below beta again.
        assert!(!s.is_loaded(&KEY, now + Duration::from_secs(61)));
    }

    #[test]
    fn a_request_counts_for_the_window_give_or_take_under_a_second() {
        let t0 = crate::test_clock::epoch();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut s = Store::new(limits());
        // The first request sets the store's clock; thirteen more half a second later
        // make it loaded on their own.
        s.record_request(KEY, t0);
        for _ in 0..13 {
            s.record_request(KEY, ms(500));
        }
        // Stamps round down: the requests made half a second in count from second 0, so
        // they leave the window up to a second early, never late.
        assert!(s.is_loaded(&KEY, ms(59_400)));
        assert!(!s.is_loaded(&KEY, ms(60_200)));
    }

    #[test]
    fn ttl_is_clamped_to_bounds() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        s.store(KEY, value(1), Duration::from_secs(100_000), now);
        assert_eq!(s.next_expiry(), Some(now + Duration::from_secs(3600)));
    }

    #[test]
    fn key_count_is_bounded() {
        let now = crate::test_clock::epoch();
        let mut s = Store::new(limits());
        for n in 0..10u8 {
            assert!(s.store(
                Key([n; 32]),
                value(1),
                MIN + Duration::from_secs(n.into()),
                now
            ));
        }
        // The store is full of keys; a longer-lived value displaces the key expiring first,
        // whole: filling that key with more holders first does not let the count grow.
        for n in 2..5 {
            assert!(s.store(Key([0; 32]), value(n), MIN * 3, now));
        }
        assert!(s.store(Key([100; 32]), value(1), MIN * 2, now));
        assert_eq!(s.key_count(), 10);
        assert_eq!(s.value_count(), 10 + 3 - 4 + 1);
        assert!(s.get(&Key([0; 32]), now, 10).is_empty());
        // One that would expire before everything present is refused.
        assert!(!s.store(Key([101; 32]), value(1), Duration::from_secs(1), now));
    }

    /// The expiry index agrees with the values, whatever the sequence of stores, forced
    /// stores and expiries (it is kept in step, not recomputed).
    fn check_consistent(s: &Store, now: Instant) {
        let mut index: Vec<(Instant, Key)> = s
            .values
            .iter()
            .map(|(k, vs)| (soonest(vs).expect("no empty key is kept"), *k))
            .collect();
        index.sort();
        assert_eq!(s.by_expiry.iter().copied().collect::<Vec<_>>(), index);
        let live: usize = s
            .values
            .keys()
            .map(|k| s.get(k, now, usize::MAX).len())
            .sum();
        assert_eq!(s.value_count(), live);
        assert!(s.values.len() <= s.limits.max_keys);
        for vs in s.values.values() {
            assert!(vs.len() <= s.limits.values_per_key);
            let mut holders: Vec<_> = vs.iter().map(|v| v.value.holder.id).collect();
            holders.sort();
            holders.dedup();
            assert_eq!(holders.len(), vs.len(), "a holder appears once per key");
            assert!(
                vs.iter().all(|v| v.expires > now),
                "every change drops the expired values first"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_expiry_index_follows_every_change(
            ops in proptest::collection::vec((0u8..4, 0u8..16, 0u8..6, 1u64..200, 0u64..8), 1..300)
        ) {
            let t0 = crate::test_clock::epoch();
            let mut s = Store::new(limits());
            let mut now = t0;
            for (op, key, holder, ttl, step) in ops {
                now += Duration::from_secs(step);
                let (key, ttl) = (Key([key; 32]), Duration::from_secs(ttl));
                match op {
                    0 | 1 => {
                        s.store(key, value(holder), ttl, now);
                    }
                    2 => {
                        s.store_anyway(key, value(holder), ttl, now);
                    }
                    _ => s.expire(now),
                }
                check_consistent(&s, now);
            }
        }
    }
}
