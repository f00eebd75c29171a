//! The iterative lookup engine: which peer to ask next on the way to a target.
//!
//! Shaped like libp2p's `ClosestPeersIter`: `next()` says whom to ask, `on_success` and
//! `on_failure` feed the answers back. It knows nothing about messages, so the same iterator
//! drives `FindNode`, `Get` and the forward phase of a sloppy put.

use std::collections::BTreeMap;

use crate::id::{Contact, Distance, Key, NodeId};

/// What the lookup wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the request to this peer.
    Ask(Contact),
    /// Nothing to send until a response, a failure or a timeout arrives.
    Wait,
    /// The `k` closest peers reachable have answered (or nobody is left to ask).
    Done,
}

/// The state of one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerState {
    /// Known (from a seed or a response) and not yet asked. Left when `next` picks it.
    NotContacted,
    /// Asked; the answer is outstanding and counts against `alpha`. Left on an answer, a
    /// failure, or the first timeout (to `Slow`).
    Waiting,
    /// Asked and not answered within one RPC timeout: it is being retried, but no longer
    /// holds a parallelism slot, so one slow node does not stall the lookup.
    Slow,
    /// Answered. Final.
    Succeeded,
    /// Gave up on it after the retries, or it answered nonsense. Final, except that a late
    /// answer still counts as success.
    Failed,
}

#[derive(Clone, Debug)]
struct Peer {
    contact: Contact,
    state: PeerState,
}

#[derive(Clone, Debug)]
pub(crate) struct ClosestIter {
    target: Key,
    local: NodeId,
    alpha: usize,
    k: usize,
    /// Ordered by distance to the target; distances are unique per ID.
    peers: BTreeMap<Distance, Peer>,
    in_flight: usize,
    /// `Some(salt)`: walk gradually (see [`ClosestIter::gradual`]).
    gradual: Option<u64>,
}

impl ClosestIter {
    pub(crate) fn new(
        target: Key,
        local: NodeId,
        seeds: impl IntoIterator<Item = Contact>,
        alpha: usize,
        k: usize,
    ) -> Self {
        let mut iter = ClosestIter {
            target,
            local,
            alpha: alpha.max(1),
            k: k.max(1),
            peers: BTreeMap::new(),
            in_flight: 0,
            gradual: None,
        };
        iter.add(seeds);
        iter
    }

    /// Walks towards the target one prefix length at a time instead of jumping to the closest
    /// node known: the next peer asked is one whose shared prefix with the target is the
    /// shortest among those longer than any peer's that answered; among equals, `salt` picks
    /// (a different one for different walkers).
    ///
    /// ```text
    /// Coral, section 4.2: puts traverse nodes "successively closer" to the key and stop at the
    /// first node that is full and loaded. With one-step-at-a-time routing, walkers from
    /// different parts of the ID space reach the key through different nodes at each prefix
    /// length, so the nodes that fill up and stop later walks form a widening frontier around
    /// the key rather than a single node in front of it.
    /// ```
    pub(crate) fn gradual(mut self, salt: u64) -> Self {
        self.gradual = Some(salt);
        self
    }

    /// Most candidates tracked: enough to route around a few failures near the target.
    fn capacity(&self) -> usize {
        4 * self.k
    }

    fn add(&mut self, contacts: impl IntoIterator<Item = Contact>) {
        for c in contacts {
            if c.id == self.local {
                continue;
            }
            let d = c.id.distance(&self.target);
            self.peers.entry(d).or_insert(Peer {
                contact: c,
                state: PeerState::NotContacted,
            });
        }
        while self.peers.len() > self.capacity() {
            // Drop the farthest candidate that is not being waited on.
            let victim = self
                .peers
                .iter()
                .rev()
                .find(|(_, p)| !matches!(p.state, PeerState::Waiting | PeerState::Slow))
                .map(|(d, _)| *d);
            match victim {
                Some(d) => {
                    self.peers.remove(&d);
                }
                None => break,
            }
        }
    }

    pub(crate) fn next(&mut self) -> Next {
        if let Some(salt) = self.gradual {
            return self.next_gradual(salt);
        }
        let mut succeeded = 0;
        let mut waiting_closer = false;
        for peer in self.peers.values_mut() {
            match peer.state {
                PeerState::Succeeded => {
                    succeeded += 1;
                    if succeeded >= self.k {
                        return if waiting_closer {
                            Next::Wait
                        } else {
                            Next::Done
                        };
                    }
                }
                PeerState::Waiting => waiting_closer = true,
                PeerState::Slow | PeerState::Failed => {}
                PeerState::NotContacted => {
                    if self.in_flight >= self.alpha {
                        return Next::Wait;
                    }
                    peer.state = PeerState::Waiting;
                    self.in_flight += 1;
                    return Next::Ask(peer.contact.clone());
                }
            }
        }
        let slow = self.peers.values().any(|p| p.state == PeerState::Slow);
        if self.in_flight > 0 || slow {
            Next::Wait
        } else {
            Next::Done
        }
    }

    fn next_gradual(&mut self, salt: u64) -> Next {
        if self.in_flight >= self.alpha {
            return Next::Wait;
        }
        // Shared prefix length with the target = 255 - ilog2(distance).
        let prefix = |d: &Distance| d.ilog2().map_or(256, |l| 255 - l);
        let local = self.local.distance(&self.target);
        let best = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Succeeded)
            .map(|(d, _)| *d)
            .chain(std::iter::once(local))
            .min()
            .unwrap_or(local);
        let reached = prefix(&best);
        // Closer than anyone who answered; a longer prefix if there is one (the shortest such,
        // by salt), else the closest: the walk ends at the closest node it can find.
        let closer = || {
            self.peers
                .range(..best)
                .filter(|(_, p)| p.state == PeerState::NotContacted)
        };
        let step = closer()
            .filter(|(d, _)| prefix(d) > reached)
            .map(|(d, p)| (prefix(d), mix(salt, &p.contact.id), *d))
            .min()
            .or_else(|| closer().next().map(|(d, _)| (0, 0, *d)));
        match step {
            Some((_, _, d)) => {
                let Some(peer) = self.peers.get_mut(&d) else {
                    return Next::Wait;
                };
                peer.state = PeerState::Waiting;
                self.in_flight += 1;
                Next::Ask(peer.contact.clone())
            }
            None if self.in_flight > 0 => Next::Wait,
            None => Next::Done,
        }
    }

    fn peer_mut(&mut self, id: &NodeId) -> Option<&mut Peer> {
        let d = id.distance(&self.target);
        self.peers.get_mut(&d)
    }

    fn settle(&mut self, id: &NodeId, state: PeerState) -> bool {
        let Some(peer) = self.peer_mut(id) else {
            return false;
        };
        let was = peer.state;
        if was == PeerState::Succeeded {
            return false;
        }
        peer.state = state;
        if was == PeerState::Waiting {
            self.in_flight -= 1;
        }
        true
    }

    /// `peer` answered with `closer` contacts.
    pub(crate) fn on_success(&mut self, peer: &NodeId, closer: impl IntoIterator<Item = Contact>) {
        if self.settle(peer, PeerState::Succeeded) {
            self.add(closer);
        }
    }

    /// `peer` will not answer (or answered nonsense).
    pub(crate) fn on_failure(&mut self, peer: &NodeId) {
        if self
            .peer_mut(peer)
            .is_some_and(|p| p.state != PeerState::Failed)
        {
            self.settle(peer, PeerState::Failed);
        }
    }

    /// `peer` missed its first deadline; it is retried but frees its slot.
    pub(crate) fn on_slow(&mut self, peer: &NodeId) {
        if self
            .peer_mut(peer)
            .is_some_and(|p| p.state == PeerState::Waiting)
        {
            self.settle(peer, PeerState::Slow);
        }
    }

    /// The `n` closest peers that answered, nearest first.
    pub(crate) fn closest_succeeded(&self, n: usize) -> Vec<Contact> {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Succeeded)
            .take(n)
            .map(|p| p.contact.clone())
            .collect()
    }

    pub(crate) fn target(&self) -> &Key {
        &self.target
    }
}

/// A per-walk pseudo-random rank of a node (FNV-1a over salt and ID).
fn mix(salt: u64, id: &NodeId) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Addr;
    use proptest::prelude::*;

    fn c(id: [u8; 32]) -> Contact {
        Contact::new(NodeId(id), Addr::default())
    }

    fn id(n: u8) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[31] = n;
        b
    }

    #[test]
    fn asks_alpha_at_a_time_then_waits() {
        let mut it = ClosestIter::new(
            Key(id(0)),
            NodeId([0xff; 32]),
            (1..=5).map(|n| c(id(n))),
            2,
            3,
        );
        assert_eq!(it.next(), Next::Ask(c(id(1))));
        assert_eq!(it.next(), Next::Ask(c(id(2))));
        assert_eq!(it.next(), Next::Wait);
        it.on_success(&NodeId(id(1)), vec![]);
        assert_eq!(it.next(), Next::Ask(c(id(3))));
    }

    #[test]
    fn slow_peer_frees_its_slot_and_failure_routes_around_it() {
        let mut it = ClosestIter::new(
            Key(id(0)),
            NodeId([0xff; 32]),
            (1..=4).map(|n| c(id(n))),
            1,
            2,
        );
        assert_eq!(it.next(), Next::Ask(c(id(1))));
        assert_eq!(it.next(), Next::Wait);
        it.on_slow(&NodeId(id(1)));
        assert_eq!(it.next(), Next::Ask(c(id(2))));
        it.on_success(&NodeId(id(2)), vec![]);
        assert_eq!(it.next(), Next::Ask(c(id(3))));
        it.on_success(&NodeId(id(3)), vec![]);
        // k = 2 answered; the slow one is not waited for once k closer results exist.
        assert_eq!(it.next(), Next::Done);
        it.on_failure(&NodeId(id(1)));
        assert_eq!(it.closest_succeeded(5), vec![c(id(2)), c(id(3))]);
    }

    #[test]
    fn finishes_when_nobody_is_left() {
        let mut it = ClosestIter::new(Key(id(0)), NodeId([0xff; 32]), vec![c(id(1))], 3, 20);
        assert_eq!(it.next(), Next::Ask(c(id(1))));
        it.on_failure(&NodeId(id(1)));
        assert_eq!(it.next(), Next::Done);
        assert!(it.closest_succeeded(20).is_empty());
    }

    #[test]
    fn never_asks_itself() {
        let me = NodeId(id(1));
        let mut it = ClosestIter::new(Key(id(0)), me, vec![c(id(1)), c(id(2))], 3, 20);
        assert_eq!(it.next(), Next::Ask(c(id(2))));
        it.on_success(&NodeId(id(2)), vec![c(id(1))]);
        assert_eq!(it.next(), Next::Done);
    }

    #[test]
    fn gradual_walk_gains_one_prefix_length_at_a_time() {
        // Target 0; peers at prefix lengths 248 (id ends 0x80), 252 (0x08) and 254 (0x02).
        let me = NodeId([0xff; 32]);
        let mut it = ClosestIter::new(
            Key(id(0)),
            me,
            vec![c(id(0x80)), c(id(0x08)), c(id(0x02))],
            1,
            20,
        )
        .gradual(7);
        assert_eq!(it.next(), Next::Ask(c(id(0x80))));
        it.on_success(&NodeId(id(0x80)), vec![c(id(0x40))]);
        assert_eq!(it.next(), Next::Ask(c(id(0x40))));
        it.on_success(&NodeId(id(0x40)), vec![]);
        assert_eq!(it.next(), Next::Ask(c(id(0x08))));
        it.on_success(&NodeId(id(0x08)), vec![]);
        assert_eq!(it.next(), Next::Ask(c(id(0x02))));
        it.on_success(&NodeId(id(0x02)), vec![]);
        assert_eq!(it.next(), Next::Done);
    }

    proptest! {
        #[test]
        fn closest_iter_yields_sorted_by_distance(
            target in any::<[u8; 32]>(),
            ids in proptest::collection::vec(any::<[u8; 32]>(), 1..60),
        ) {
            let target = Key(target);
            let mut it = ClosestIter::new(target, NodeId([0; 32]), ids.iter().map(|i| c(*i)), 1, 100);
            let mut asked = Vec::new();
            while let Next::Ask(p) = it.next() {
                asked.push(p.id.distance(&target));
                it.on_success(&p.id, vec![]);
            }
            for w in asked.windows(2) {
                prop_assert!(w[0] < w[1]);
            }
        }

        #[test]
        fn in_flight_never_exceeds_alpha(
            ids in proptest::collection::vec(any::<[u8; 32]>(), 1..60),
            alpha in 1usize..5,
            outcomes in proptest::collection::vec(0u8..3, 0..200),
        ) {
            let mut it = ClosestIter::new(Key([7; 32]), NodeId([0; 32]), ids.iter().map(|i| c(*i)), alpha, 8);
            let mut waiting: Vec<NodeId> = Vec::new();
            for o in outcomes {
                while let Next::Ask(p) = it.next() {
                    waiting.push(p.id);
                }
                prop_assert!(it.in_flight <= alpha);
                if let Some(p) = waiting.pop() {
                    match o {
                        0 => it.on_success(&p, vec![]),
                        1 => it.on_failure(&p),
                        _ => it.on_slow(&p),
                    }
                }
            }
        }
    }
}
