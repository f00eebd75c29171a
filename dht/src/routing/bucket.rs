//! One k-bucket: up to `k` contacts ordered least-recently-seen first, and a replacement
//! cache of contacts waiting for a slot.
//!
//! ```text
//! Kademlia, section 2.2: when a node hears from a contact whose bucket is full, it pings
//! the least-recently-seen entry. If that entry fails to respond, it is evicted and the new
//! contact inserted; if it responds, it moves to the tail and the new contact is discarded
//! (kept here in a replacement cache, as section 4.1 suggests).
//! ```
//! Keeping long-lived nodes first is what makes a Kademlia table resist churn and flooding:
//! a newcomer cannot push out a node that still answers.

use std::collections::VecDeque;
use std::time::Duration;

use crate::id::{Contact, NodeId};
use crate::stamp::Stamp;

/// A contact in a bucket and when we last heard from it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) contact: Contact,
    pub(crate) last_seen: Stamp,
}

/// What inserting a contact did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// The contact was present and moved to the most-recently-seen end.
    Updated,
    /// The contact took a free slot.
    Added,
    /// The bucket is full: the contact waits in the replacement cache, and the caller should
    /// ping this least-recently-seen entry; its failure frees the slot.
    PingOldest(Contact),
    /// The bucket is full and its oldest entry is already being pinged; the contact waits in
    /// the replacement cache.
    Queued,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Bucket {
    /// Least-recently-seen first.
    entries: Vec<Entry>,
    /// Most recently heard at the back; bounded by the replacement cache size.
    replacements: VecDeque<Entry>,
    /// The oldest entry we are pinging, so one full bucket sends one ping, not one per newcomer.
    pinging: Option<NodeId>,
}

impl Bucket {
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.position(id).is_some()
    }

    fn position(&self, id: &NodeId) -> Option<usize> {
        self.entries.iter().position(|e| e.contact.id == *id)
    }

    /// Replaces the address held for `contact.id` (entries and replacements), keeping its
    /// place and last-seen time. True if it was held.
    pub(crate) fn readdress(&mut self, contact: &Contact) -> bool {
        let mut held = false;
        for e in self.entries.iter_mut().chain(self.replacements.iter_mut()) {
            if e.contact.id == contact.id {
                e.contact.addr = contact.addr.clone();
                held = true;
            }
        }
        held
    }

    pub(crate) fn insert(
        &mut self,
        contact: &Contact,
        now: Stamp,
        k: usize,
        max_replacements: usize,
        ping_after: Duration,
    ) -> Insert {
        if let Some(pos) = self.position(&contact.id) {
            // To the most-recently-seen end, in place: most messages come from contacts
            // already held, and cloning the contact anew for each was a tenth of the work.
            self.entries[pos..].rotate_left(1);
            let last = self.entries.len() - 1;
            let entry = &mut self.entries[last];
            entry.last_seen = now;
            if entry.contact.addr != contact.addr {
                entry.contact.addr = contact.addr.clone();
            }
            if self.pinging == Some(contact.id) {
                self.pinging = None;
            }
            return Insert::Updated;
        }
        if self.entries.len() < k {
            self.replacements.retain(|e| e.contact.id != contact.id);
            // Grow by one: doubling kept an eighth of every table empty (room for 400
            // entries per simulated node holding 347), and a bucket gains entries a few dozen
            // times in its life, against the thousands of messages that only update one.
            self.entries.reserve_exact(1);
            self.entries.push(Entry {
                contact: contact.clone(),
                last_seen: now,
            });
            return Insert::Added;
        }
        self.replacements.retain(|e| e.contact.id != contact.id);
        if max_replacements > 0 {
            if self.replacements.len() >= max_replacements {
                self.replacements.pop_front();
            }
            self.replacements.push_back(Entry {
                contact: contact.clone(),
                last_seen: now,
            });
        }
        match (&self.pinging, self.entries.first()) {
            // Heard from lately: alive, no need to ask (libp2p keeps a connected entry too).
            (None, Some(oldest)) if now.since(oldest.last_seen) < ping_after => Insert::Queued,
            (None, Some(oldest)) => {
                self.pinging = Some(oldest.contact.id);
                Insert::PingOldest(oldest.contact.clone())
            }
            _ => Insert::Queued,
        }
    }

    /// The contact failed to answer: drop it and promote the most recently heard replacement.
    /// Returns whether an entry was removed.
    pub(crate) fn remove(&mut self, id: &NodeId) -> bool {
        if self.pinging == Some(*id) {
            self.pinging = None;
        }
        self.replacements.retain(|e| e.contact.id != *id);
        let Some(pos) = self.position(id) else {
            return false;
        };
        self.entries.remove(pos);
        if let Some(replacement) = self.replacements.pop_back() {
            // Keep the bucket ordered by last_seen, so the oldest entry is pinged first.
            let at = self
                .entries
                .iter()
                .position(|e| e.last_seen > replacement.last_seen)
                .unwrap_or(self.entries.len());
            self.entries.insert(at, replacement);
        }
        true
    }

    /// Contacts waiting for a slot (most recent last).
    #[cfg(test)]
    pub(crate) fn replacements(&self) -> impl Iterator<Item = &Contact> {
        self.replacements.iter().map(|e| &e.contact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Addr;
    use crate::stamp::Clock;

    /// `secs` seconds after a bucket's first time.
    fn at(secs: u64) -> Stamp {
        let t0 = crate::test_clock::epoch();
        let mut clock = Clock::default();
        clock.stamp(t0);
        clock.stamp(t0 + Duration::from_secs(secs))
    }

    fn c(n: u8) -> Contact {
        Contact::new(NodeId([n; 32]), Addr::default())
    }

    #[test]
    fn an_entry_is_the_size_of_a_cache_line() {
        // A full bucket is scanned on every message from one of its peers.
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn a_bucket_holds_room_for_its_entries_only() {
        let mut b = Bucket::default();
        for n in 0..7 {
            b.insert(&c(n), at(0), 20, 8, Duration::ZERO);
            assert_eq!(b.entries.capacity(), b.entries.len());
        }
    }

    #[test]
    fn full_bucket_keeps_one_pending_ping() {
        let t0 = at(0);
        let mut b = Bucket::default();
        for n in 0..3 {
            assert_eq!(b.insert(&c(n), t0, 3, 2, Duration::ZERO), Insert::Added);
        }
        assert_eq!(
            b.insert(&c(10), t0, 3, 2, Duration::ZERO),
            Insert::PingOldest(c(0))
        );
        // A second newcomer does not trigger a second ping.
        assert_eq!(b.insert(&c(11), t0, 3, 2, Duration::ZERO), Insert::Queued);
        assert_eq!(b.entries().len(), 3);
        assert_eq!(b.replacements().count(), 2);
    }

    #[test]
    fn oldest_entry_that_answers_stays() {
        let t0 = at(0);
        let mut b = Bucket::default();
        for n in 0..3 {
            b.insert(&c(n), t0, 3, 2, Duration::ZERO);
        }
        assert_eq!(
            b.insert(&c(10), t0, 3, 2, Duration::ZERO),
            Insert::PingOldest(c(0))
        );
        // The ping is answered: the old entry moves to the tail and the newcomer keeps waiting.
        assert_eq!(
            b.insert(&c(0), at(1), 3, 2, Duration::ZERO),
            Insert::Updated
        );
        let ids: Vec<u8> = b.entries().iter().map(|e| e.contact.id.0[0]).collect();
        assert_eq!(ids, vec![1, 2, 0]);
        assert!(!b.contains(&c(10).id));
        // The next newcomer pings the new oldest.
        assert_eq!(
            b.insert(&c(11), t0, 3, 2, Duration::ZERO),
            Insert::PingOldest(c(1))
        );
    }

    #[test]
    fn oldest_heard_lately_is_not_pinged() {
        let t0 = at(0);
        let minute = Duration::from_secs(60);
        let mut b = Bucket::default();
        b.insert(&c(0), t0, 1, 2, minute);
        assert_eq!(b.insert(&c(1), at(30), 1, 2, minute), Insert::Queued);
        assert_eq!(
            b.insert(&c(2), at(60), 1, 2, minute),
            Insert::PingOldest(c(0))
        );
    }

    #[test]
    fn failed_entry_is_replaced_by_newest_replacement() {
        let t0 = at(0);
        let mut b = Bucket::default();
        for n in 0..3 {
            b.insert(&c(n), t0, 3, 2, Duration::ZERO);
        }
        b.insert(&c(10), at(1), 3, 2, Duration::ZERO);
        b.insert(&c(11), at(2), 3, 2, Duration::ZERO);
        assert!(b.remove(&c(0).id));
        assert!(b.contains(&c(11).id));
        assert!(!b.contains(&c(10).id));
        assert_eq!(b.entries().len(), 3);
    }

    #[test]
    fn replacement_cache_is_bounded() {
        let t0 = at(0);
        let mut b = Bucket::default();
        b.insert(&c(0), t0, 1, 2, Duration::ZERO);
        for n in 1..10 {
            b.insert(&c(n), t0, 1, 2, Duration::ZERO);
        }
        let waiting: Vec<u8> = b.replacements().map(|c| c.id.0[0]).collect();
        assert_eq!(waiting, vec![8, 9]);
    }

    #[test]
    fn an_updated_entry_moves_to_the_end_and_a_removed_one_goes() {
        let t0 = at(0);
        let id = |last: u8| {
            let mut b = [7u8; 32];
            b[31] = last;
            NodeId(b)
        };
        let mut b = Bucket::default();
        for n in 0..3 {
            let contact = Contact::new(id(n), Addr::default());
            assert_eq!(b.insert(&contact, t0, 3, 2, Duration::ZERO), Insert::Added);
        }
        // Heard again from a new address: to the end, with the new address.
        let moved = Contact::new(id(0), Addr::from(vec![1, 2, 3, 4]));
        let later = at(1);
        assert_eq!(
            b.insert(&moved, later, 3, 2, Duration::ZERO),
            Insert::Updated
        );
        let order: Vec<u8> = b.entries().iter().map(|e| e.contact.id.0[31]).collect();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(b.entries()[2].contact.addr, moved.addr);
        assert_eq!(b.entries()[2].last_seen, later);
        assert!(b.remove(&id(1)));
        assert!(!b.contains(&id(1)));
        assert!(b.contains(&id(0)) && b.contains(&id(2)));
        assert_eq!(b.entries().len(), 2);
    }

    #[test]
    fn a_replacement_takes_the_place_its_last_seen_time_gives_it() {
        // Entries stay ordered by last-seen time (whole seconds on the table's clock), so the
        // oldest is pinged first even after a replacement fills a removed entry's slot.
        let c = |n: u8| Contact::new(NodeId([n; 32]), Addr::default());
        let mut b = Bucket::default();
        for n in 0..4 {
            assert_eq!(b.insert(&c(n), at(0), 4, 2, Duration::ZERO), Insert::Added);
        }
        assert_eq!(
            b.insert(&c(3), at(5), 4, 2, Duration::ZERO),
            Insert::Updated
        );
        assert_eq!(
            b.insert(&c(9), at(2), 4, 2, Duration::ZERO),
            Insert::PingOldest(c(0))
        );
        assert!(b.remove(&c(1).id));
        let order: Vec<u8> = b.entries().iter().map(|e| e.contact.id.0[0]).collect();
        assert_eq!(order, vec![0, 2, 9, 3], "heard at 0, 0, 2 and 5 s");
        assert_eq!(b.entries()[2].last_seen, at(2));
    }
}
