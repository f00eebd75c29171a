//! A routing table for one level: k-buckets indexed by the length of the prefix a contact
//! shares with the local ID. At level 0 it holds any node; at a higher level only members of
//! the local node's cluster at that level (Coral keeps one table per level, section 4.2).

mod bucket;

use std::time::{Duration, Instant};

use bucket::Bucket;
pub(crate) use bucket::Insert;

use crate::id::{Contact, Distance, ID_LEN, Key, NodeId};
use crate::stamp::Clock;

/// The k-buckets of one level. Only non-empty buckets are allocated, so a node in a small
/// cluster costs a few hundred bytes, which matters when the simulator runs thousands.
/// They sit in a vector sorted by index, not a B-tree: a table has a dozen or so buckets,
/// and a B-tree's nodes (room for eleven, and an inner node once there are more) held
/// several kilobytes per table, mostly empty.
#[derive(Clone, Debug)]
pub(crate) struct RoutingTable {
    local: NodeId,
    k: usize,
    max_replacements: usize,
    /// The oldest entry of a full bucket is pinged only if silent for this long.
    ping_after: Duration,
    /// The clock of the entries' last-seen times.
    clock: Clock,
    /// `(ilog2(distance to local), bucket)`, by index: bucket 255 holds half the ID space.
    buckets: Vec<(u32, Bucket)>,
}

impl RoutingTable {
    pub(crate) fn new(
        local: NodeId,
        k: usize,
        max_replacements: usize,
        ping_after: Duration,
    ) -> Self {
        RoutingTable {
            local,
            k,
            max_replacements,
            ping_after,
            clock: Clock::default(),
            buckets: Vec::new(),
        }
    }

    fn index(&self, id: &NodeId) -> Option<u32> {
        self.local.distance(id).ilog2()
    }

    /// The bucket of index `idx`, if it is non-empty.
    fn bucket(&self, idx: u32) -> Option<&Bucket> {
        let pos = self.position(idx).ok()?;
        Some(&self.buckets[pos].1)
    }

    /// Where bucket `idx` is (`Ok`) or would go (`Err`).
    fn position(&self, idx: u32) -> Result<usize, usize> {
        self.buckets.binary_search_by_key(&idx, |(i, _)| *i)
    }

    fn values(&self) -> impl DoubleEndedIterator<Item = &Bucket> {
        self.buckets.iter().map(|(_, b)| b)
    }

    /// Records that `contact` is alive (it answered us or asked us something).
    /// The local node itself is never inserted.
    pub(crate) fn insert(&mut self, contact: &Contact, now: Instant) -> Option<Insert> {
        let idx = self.index(&contact.id)?;
        let now = self.clock.stamp(now);
        let pos = self.position(idx).unwrap_or_else(|pos| {
            // Exactly one more: a table has a dozen or so buckets, added once each and again
            // only when one empties, far less often than messages arrive.
            self.buckets.reserve_exact(1);
            self.buckets.insert(pos, (idx, Bucket::default()));
            pos
        });
        let bucket = &mut self.buckets[pos].1;
        Some(bucket.insert(contact, now, self.k, self.max_replacements, self.ping_after))
    }

    /// Removes a contact that failed or left the cluster; a replacement takes its slot.
    pub(crate) fn remove(&mut self, id: &NodeId) -> bool {
        let Some(idx) = self.index(id) else {
            return false;
        };
        let Ok(pos) = self.position(idx) else {
            return false;
        };
        let bucket = &mut self.buckets[pos].1;
        let removed = bucket.remove(id);
        if bucket.is_empty() {
            self.buckets.remove(pos);
        }
        removed
    }

    /// Replaces the address held for `contact.id`, if it is held.
    pub(crate) fn readdress(&mut self, contact: &Contact) -> bool {
        let Some(idx) = self.index(&contact.id) else {
            return false;
        };
        match self.position(idx) {
            Ok(pos) => self.buckets[pos].1.readdress(contact),
            Err(_) => false,
        }
    }

    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.index(id)
            .and_then(|idx| self.bucket(idx))
            .is_some_and(|b| b.contains(id))
    }

    /// No contact at all (empty buckets are not kept, so this is not a count).
    pub(crate) fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.values().map(|b| b.entries().len()).sum()
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
    }

    #[cfg(test)]
    pub(crate) fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.values()
            .flat_map(|b| b.entries().iter().map(|e| &e.contact))
    }

    /// Indices of the non-empty buckets.
    pub(crate) fn bucket_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().map(|(i, _)| *i)
    }

    /// Indices of the buckets none of whose entries was seen within `every` before `now`,
    /// nearest first (entries are kept least recently seen first: the last decides).
    pub(crate) fn stale_buckets(&self, now: Instant, every: Duration) -> Vec<u32> {
        self.buckets
            .iter()
            .filter(|(_, b)| {
                b.entries()
                    .last()
                    .is_none_or(|e| self.clock.silence(now, e.last_seen) >= every)
            })
            .map(|(i, _)| *i)
            .collect()
    }

    /// Per bucket (index, entries), for snapshots.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (u32, &[bucket::Entry])> {
        self.buckets.iter().map(|(i, b)| (*i, b.entries()))
    }

    /// The `n` known contacts closest to `target`, nearest first.
    ///
    /// Walks buckets in order of distance to `target` instead of sorting the whole table:
    /// with `d = local ^ target`, a contact in bucket `i` agrees with `d` above bit `i` and
    /// differs at bit `i`. So buckets whose bit `i` of `d` is set hold contacts closer than
    /// the local node (nearest: highest `i`), and buckets whose bit is clear hold contacts
    /// farther (nearest: lowest `i`). Only the entries of each bucket visited are sorted.
    pub(crate) fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        let d = self.local.distance(target);
        let closer = self.buckets.iter().rev().filter(|(i, _)| d.bit(*i));
        let farther = self.buckets.iter().filter(|(i, _)| !d.bit(*i));
        let mut out = Vec::with_capacity(n.min(self.len()));
        let mut scratch: Vec<(Distance, &Contact)> = Vec::new();
        for (_, bucket) in closer.chain(farther) {
            if out.len() >= n {
                break;
            }
            scratch.clear();
            scratch.extend(
                bucket
                    .entries()
                    .iter()
                    .map(|e| (e.contact.id.distance(target), &e.contact)),
            );
            scratch.sort_unstable_by_key(|(d, _)| *d);
            let room = n - out.len();
            out.extend(scratch.iter().take(room).map(|(_, c)| (*c).clone()));
        }
        out
    }

    /// An estimate of how many nodes share this table's cluster, from the density of IDs near
    /// the local one: with `n` nodes spread uniformly, the `k`-th closest sits near
    /// `k / n` of the ID space. Exact (count + 1) while the table holds fewer than `k`.
    pub(crate) fn estimate_size(&self) -> u32 {
        let closest = self.closest(&Key::from(self.local), self.k);
        if closest.len() < self.k {
            return u32::try_from(closest.len() + 1).unwrap_or(u32::MAX);
        }
        let Some(farthest) = closest.last() else {
            return 1;
        };
        let d = self.local.distance(&farthest.id).as_f64();
        let space = 2f64.powi(8 * ID_LEN as i32);
        if d <= 0.0 {
            return u32::MAX;
        }
        let estimate = (self.k as f64) * space / d;
        // Never below what we actually know.
        estimate
            .max((self.len() + 1) as f64)
            .min(f64::from(u32::MAX)) as u32
    }

    /// A random ID whose distance to the local one falls in bucket `idx`, for refreshes.
    pub(crate) fn random_id_in_bucket(&self, idx: u32, random: [u8; ID_LEN]) -> Key {
        let mut d = random;
        // Clear every bit above `idx`, set bit `idx`.
        let bit = 255 - idx as usize; // position from the most significant bit
        for (pos, byte) in d.iter_mut().enumerate() {
            for b in 0..8 {
                let i = pos * 8 + b;
                let mask = 0x80u8 >> b;
                if i < bit {
                    *byte &= !mask;
                } else if i == bit {
                    *byte |= mask;
                }
            }
        }
        let mut id = [0u8; ID_LEN];
        for (i, out) in id.iter_mut().enumerate() {
            *out = self.local.0[i] ^ d[i];
        }
        Key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Addr;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn contact(id: [u8; 32]) -> Contact {
        Contact::new(NodeId(id), Addr::default())
    }

    proptest! {
        #[test]
        fn table_holds_no_duplicates_and_respects_k(
            local in any::<[u8; 32]>(),
            ids in proptest::collection::vec(any::<[u8; 32]>(), 0..200),
            k in 1usize..8,
        ) {
            let now = crate::test_clock::epoch();
            let mut t = RoutingTable::new(NodeId(local), k, 4, Duration::ZERO);
            for id in &ids {
                t.insert(&contact(*id), now);
                t.insert(&contact(*id), now); // twice: still once in the table
            }
            let seen: Vec<NodeId> = t.contacts().map(|c| c.id).collect();
            let unique: BTreeSet<NodeId> = seen.iter().copied().collect();
            prop_assert_eq!(seen.len(), unique.len());
            prop_assert!(!unique.contains(&NodeId(local)));
            for (idx, entries) in t.buckets() {
                prop_assert!(entries.len() <= k);
                for e in entries {
                    prop_assert_eq!(NodeId(local).distance(&e.contact.id).ilog2(), Some(idx));
                }
            }
        }

        #[test]
        fn closest_is_sorted_and_is_the_true_closest(
            local in any::<[u8; 32]>(),
            ids in proptest::collection::vec(any::<[u8; 32]>(), 0..100),
            target in any::<[u8; 32]>(),
            n in 1usize..30,
        ) {
            let now = crate::test_clock::epoch();
            let mut t = RoutingTable::new(NodeId(local), 20, 4, Duration::ZERO);
            for id in &ids {
                t.insert(&contact(*id), now);
            }
            let target = Key(target);
            let got = t.closest(&target, n);
            prop_assert_eq!(got.len(), n.min(t.len()));
            for w in got.windows(2) {
                prop_assert!(w[0].id.distance(&target) < w[1].id.distance(&target));
            }
            // Nothing left out is closer than the farthest returned.
            if let Some(last) = got.last() {
                let bound = last.id.distance(&target);
                let chosen: BTreeSet<NodeId> = got.iter().map(|c| c.id).collect();
                for c in t.contacts().filter(|c| !chosen.contains(&c.id)) {
                    prop_assert!(c.id.distance(&target) > bound);
                }
            }
        }

        #[test]
        fn random_id_falls_in_its_bucket(local in any::<[u8; 32]>(), r in any::<[u8; 32]>(), idx in 0u32..256) {
            let t = RoutingTable::new(NodeId(local), 20, 4, Duration::ZERO);
            let id = t.random_id_in_bucket(idx, r);
            prop_assert_eq!(NodeId(local).distance(&id).ilog2(), Some(idx));
        }
    }

    #[test]
    fn size_estimate_tracks_a_uniform_population() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut id = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        };
        let now = crate::test_clock::epoch();
        let mut t = RoutingTable::new(NodeId(id()), 20, 4, Duration::ZERO);
        for _ in 0..5000 {
            t.insert(&contact(id()), now);
        }
        let est = t.estimate_size();
        assert!(
            (1500..=15000).contains(&est),
            "estimate {est} for 5000 nodes"
        );

        let mut small = RoutingTable::new(NodeId(id()), 20, 4, Duration::ZERO);
        for _ in 0..5 {
            small.insert(&contact(id()), now);
        }
        assert_eq!(small.estimate_size(), 6);
    }

    #[test]
    fn removing_frees_a_slot_for_a_replacement() {
        let now = crate::test_clock::epoch();
        let local = [0u8; 32];
        let mut t = RoutingTable::new(NodeId(local), 1, 2, Duration::ZERO);
        let mut a = [0u8; 32];
        a[0] = 0x80;
        let mut b = a;
        b[31] = 1;
        assert_eq!(t.insert(&contact(a), now), Some(Insert::Added));
        assert_eq!(
            t.insert(&contact(b), now),
            Some(Insert::PingOldest(contact(a)))
        );
        assert!(t.remove(&NodeId(a)));
        assert!(t.contains(&NodeId(b)));
    }
}
