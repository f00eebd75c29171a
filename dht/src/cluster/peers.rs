//! The peers a node heard from lately, with what they told it: bounded, and found by ID on
//! every received message.
//!
//! Layout, for memory first: thousands of nodes share one simulator process, and this table
//! is about half of a simulated node's memory. It was a hash map of whole entries (a map keeps room for
//! twice its entries, and each slot held an entry). Entries now sit in a dense vector of
//! slots that stay put while their peer lives; a table of slot numbers, hashed by peer ID,
//! finds them; the record of who was heard when refers to slots too.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use hashbrown::HashTable;

use super::PeerInfo;
use crate::id::{Contact, NodeId};
use crate::stamp::{Clock, Stamp};

#[derive(Clone, Debug)]
pub(super) struct PeerTable {
    capacity: usize,
    /// The clock of the `Stamp`s below; set by the first `touch`.
    clock: Clock,
    slots: Vec<Option<PeerInfo>>,
    /// Empty slots, reused before the vector grows.
    free: Vec<u32>,
    /// Slot numbers, hashed by the ID of the peer in the slot. The hasher is keyed from the
    /// node's seed and ID, so a run replays exactly. (The key is no secret when the seed is
    /// the default; IDs chosen to collide would cost at most `capacity` comparisons a lookup.)
    index: HashTable<u32>,
    hasher: FixedState,
    /// When each slot's peer was heard, oldest first, with stale entries (the peer was heard
    /// again since, or forgotten) left in place and skipped: every received message adds one,
    /// and appending is cheaper than keeping an ordered set. Compacted once stale entries
    /// are half as many as the live ones.
    heard: VecDeque<(Stamp, u32)>,
}

impl PeerTable {
    pub(super) fn new(capacity: usize, hash_key: u64) -> Self {
        PeerTable {
            capacity,
            clock: Clock::default(),
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(hash_key),
            heard: VecDeque::new(),
        }
    }

    /// The instant a stamp stands for (`None` only before any stamp exists).
    pub(super) fn instant(&self, s: Stamp) -> Option<Instant> {
        self.clock.instant(s)
    }

    /// How long from `s` to `now`.
    pub(super) fn silence(&self, now: Instant, s: Stamp) -> Duration {
        self.clock.silence(now, s)
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    fn slot_of(&self, id: &NodeId) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hasher.hash_one(id), |&s| holds(slots, s, id))
            .copied()
    }

    pub(super) fn get(&self, id: &NodeId) -> Option<&PeerInfo> {
        let slot = self.slot_of(id)?;
        self.slots[slot as usize].as_ref()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &PeerInfo> {
        self.slots.iter().flatten()
    }

    /// The entry of `from`, heard at `now`: created (making room by forgetting the peer heard
    /// from longest ago) or refreshed.
    pub(super) fn touch(&mut self, now: Instant, from: &Contact) -> &mut PeerInfo {
        let now = self.clock.stamp(now);
        // The queue is in time order only if time never goes back (the driver's clock).
        debug_assert!(self.heard.back().is_none_or(|(at, _)| *at <= now));
        if self.heard.len() > self.len() + self.len() / 2 + 16 {
            let slots = &self.slots;
            self.heard.retain(|(at, s)| is_live(slots, at, *s));
        }
        let (slot, new) = match self.slot_of(&from.id) {
            Some(slot) => (slot, false),
            None => {
                if self.len() >= self.capacity
                    && let Some((_, oldest)) = self.oldest_live()
                {
                    self.forget(&oldest);
                }
                let slot = self.insert(PeerInfo {
                    contact: from.clone(),
                    min_rtt_us: super::NO_RTT,
                    last_heard: now,
                    described_at: now,
                    clusters: Default::default(),
                });
                (slot, true)
            }
        };
        let Some(info) = self.slots[slot as usize].as_mut() else {
            unreachable!("slot_of and insert return occupied slots");
        };
        if new || info.last_heard != now {
            self.heard.push_back((now, slot));
        }
        if info.contact.addr != from.addr {
            info.contact = from.clone();
        }
        info.last_heard = now;
        info
    }

    fn insert(&mut self, info: PeerInfo) -> u32 {
        let hash = self.hasher.hash_one(info.contact.id);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(info);
                slot
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by an eighth, not double: 129 peers would hold room for 256
                    // entries of 112 bytes, and the table grows only while the node meets
                    // new peers faster than it forgets old ones.
                    let len = self.slots.len();
                    let room = self.capacity.saturating_sub(len).max(1);
                    self.slots.reserve_exact((len / 8 + 4).min(room));
                }
                self.slots.push(Some(info));
                // `Config::validate` keeps the capacity within u32.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            slots[s as usize]
                .as_ref()
                .map_or(0, |p| hasher.hash_one(p.contact.id))
        });
        slot
    }

    /// Forgets a peer; its entries in `heard` are stale from now on.
    pub(super) fn forget(&mut self, id: &NodeId) {
        let slots = &self.slots;
        let Ok(entry) = self
            .index
            .find_entry(self.hasher.hash_one(id), |&s| holds(slots, s, id))
        else {
            return;
        };
        let (slot, _) = entry.remove();
        self.slots[slot as usize] = None;
        self.free.push(slot);
    }

    /// The live entry heard longest ago, after dropping the stale ones in front of it. (A
    /// peer forgotten and heard again within one second has two live entries; the older
    /// goes the next time it comes to the front.)
    pub(super) fn oldest_live(&mut self) -> Option<(Stamp, NodeId)> {
        while let Some(&(at, slot)) = self.heard.front() {
            if let Some(p) = live(&self.slots, &at, slot) {
                return Some((at, p.contact.id));
            }
            self.heard.pop_front();
        }
        None
    }

    /// Live entries, heard longest ago first.
    pub(super) fn by_heard(&self) -> impl Iterator<Item = (Stamp, &PeerInfo)> {
        self.heard
            .iter()
            .filter_map(|(at, slot)| live(&self.slots, at, *slot).map(|p| (*at, p)))
    }
}

/// Whether slot `s` holds the peer `id`.
fn holds(slots: &[Option<PeerInfo>], s: u32, id: &NodeId) -> bool {
    slots
        .get(s as usize)
        .and_then(Option::as_ref)
        .is_some_and(|p| p.contact.id == *id)
}

/// The peer in `slot`, if `heard`'s entry `(at, slot)` is its latest (not superseded, and
/// the slot not emptied). A slot emptied and filled again within one second makes a stale
/// entry look live: the new peer then has two, both saying when it was indeed heard (readers
/// that list peers skip the repeat).
fn live<'a>(slots: &'a [Option<PeerInfo>], at: &Stamp, slot: u32) -> Option<&'a PeerInfo> {
    slots
        .get(slot as usize)
        .and_then(Option::as_ref)
        .filter(|p| p.last_heard == *at)
}

fn is_live(slots: &[Option<PeerInfo>], at: &Stamp, slot: u32) -> bool {
    live(slots, at, slot).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Addr;

    fn peer(n: u8) -> Contact {
        Contact::new(NodeId([n; 32]), Addr::default())
    }

    #[test]
    fn a_forgotten_peers_slot_is_reused_and_its_old_record_stays_dead() {
        let t0 = crate::test_clock::epoch();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut table = PeerTable::new(3, 1);
        for n in 0..3u8 {
            table.touch(at(n.into()), &peer(n));
        }
        table.forget(&peer(1).id);
        assert!(table.get(&peer(1).id).is_none());
        assert_eq!(table.len(), 2);
        // The newcomer takes the freed slot; the table does not grow.
        table.touch(at(5), &peer(9));
        assert_eq!(table.slots.len(), 3);
        assert_eq!(
            table.slots.capacity(),
            3,
            "no room past the table's capacity"
        );
        assert!(table.get(&peer(9).id).is_some());
        let order: Vec<u8> = table.by_heard().map(|(_, p)| p.contact.id.0[0]).collect();
        assert_eq!(
            order,
            vec![0, 2, 9],
            "peer 1's record does not come back as peer 9's"
        );
        // At capacity, a fourth peer pushes out the one heard longest ago.
        table.touch(at(6), &peer(7));
        assert!(table.get(&peer(0).id).is_none());
        assert_eq!(table.oldest_live().map(|(_, id)| id), Some(peer(2).id));
        assert_eq!(table.values().count(), 3);
    }
}
