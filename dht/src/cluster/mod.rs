//! Cluster membership at each level, decided from RTT samples and the cluster descriptors
//! peers put in every message header.
//!
//! ```text
//! Coral, section 4.3 (paraphrased): a node joins a level-i cluster only if its RTT to at
//! least 80 % of the members it has sampled is below the level's threshold. Every message
//! carries the sender's cluster IDs, ages and size estimates. A node that finds an acceptable
//! cluster larger than its own switches to it (on equal size, to the older one); a node whose
//! cluster is no longer acceptable, with nothing better in sight, starts a new cluster.
//! ```
//!
//! [Implementation Notes]
//! 1. Ages travel as "time since founding", never as instants: nodes share no clock. A
//!    received age is stored with the local time it was heard, and advanced from there.
//! 2. "Larger" has hysteresis (`cluster_size_hysteresis`) because size estimates are noisy;
//!    within that band the older cluster wins, and within `cluster_age_tie` of equal age the
//!    lower cluster ID wins, so two young clusters of one size merge rather than stare at
//!    each other. The order is total, so a node never moves back and forth between two.
//! 3. Only descriptors heard directly from a peer are trusted for that peer; contacts learned
//!    second-hand carry none and are not members until they speak to us.

use std::time::{Duration, Instant};

use rand::Rng;
use smallvec::SmallVec;

mod peers;

use crate::config::Config;
use crate::id::{Contact, NodeId};
use crate::stamp::Stamp;
use crate::wire::{ClusterDescriptor, ClusterId, Header, Level};
use peers::PeerTable;

/// A duration that keeps growing: an age observed at some local instant.
#[derive(Clone, Copy, Debug)]
struct AgeClock {
    age: Duration,
    at: Instant,
}

impl AgeClock {
    fn at(&self, now: Instant) -> Duration {
        self.age
            .saturating_add(now.saturating_duration_since(self.at))
    }
}

#[derive(Clone, Copy, Debug)]
struct Membership {
    id: ClusterId,
    /// `None` until the node's clock starts (the first call that brings a `now`).
    age: Option<AgeClock>,
}

impl Membership {
    fn age(&self, now: Instant) -> Duration {
        self.age.map_or(Duration::ZERO, |a| a.at(now))
    }
}

/// When a node last moved at a level, and how long it now holds still before moving by
/// choice again. Membership by sampled RTTs is not transitive: a node at the edge of a large
/// cluster finds it near or not depending on which members it sampled lately, and without
/// damping it went back and forth between that cluster and a smaller one. Each move
/// rebuilds a routing table and looks the node up in its new cluster, and in a simulated
/// flash crowd of 10,000 nodes such moves were over a third of all DHT messages. Route flap
/// damping, as BGP does it: the hold doubles with each move in quick succession.
#[derive(Clone, Copy, Debug, Default)]
struct Damping {
    moved: Option<Instant>,
    hold: Duration,
}

/// A peer's cluster at one level as it told us; its age was as of `PeerInfo::described_at`.
#[derive(Clone, Copy, Debug)]
struct HeardDescriptor {
    id: ClusterId,
    /// Whole seconds (ages are compared within `cluster_age_tie`, seconds apart).
    age_secs: u32,
    size: u32,
}

/// Sizes: this table is half of a simulated node's memory, so times are whole seconds on
/// the table's clock (`crate::stamp::Stamp`) and the RTT is in microseconds, not 16-byte
/// `Instant`s and `Duration`s.
#[derive(Clone, Debug)]
struct PeerInfo {
    contact: Contact,
    /// Lowest RTT measured, in microseconds (`NO_RTT`: none yet); queueing only ever adds
    /// delay, so the minimum is the best estimate of the path's propagation delay.
    min_rtt_us: u32,
    last_heard: Stamp,
    /// When the peer last told us its clusters (one time for all levels, not one each).
    described_at: Stamp,
    /// `clusters[i]`: the peer's cluster at level `i + 1`, as it last told us. In line for
    /// Coral's two levels above 0: every message reads this, and a pointer to chase was a
    /// cache miss per peer in a simulation of thousands of nodes.
    clusters: SmallVec<[HeardDescriptor; 2]>,
}

/// `PeerInfo::min_rtt_us` of a peer never timed.
const NO_RTT: u32 = u32::MAX;

impl PeerInfo {
    /// Takes in a round trip measured to the peer (71 minutes and more count as 71 minutes).
    fn note_rtt(&mut self, rtt: Duration) {
        let us = u32::try_from(rtt.as_micros()).map_or(NO_RTT - 1, |us| us.min(NO_RTT - 1));
        self.min_rtt_us = self.min_rtt_us.min(us);
    }

    fn min_rtt(&self) -> Option<Duration> {
        (self.min_rtt_us != NO_RTT).then(|| Duration::from_micros(self.min_rtt_us.into()))
    }
}

/// A cluster as seen from here, while deciding whether to move.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: ClusterId,
    size: u32,
    age: Duration,
    sampled: usize,
    near: usize,
}

/// What the local node knows about clusters: its own at each level above 0, and what peers
/// said about theirs.
#[derive(Clone, Debug)]
pub(crate) struct Clustering {
    thresholds: Vec<Duration>,
    fraction: f64,
    hysteresis: f64,
    age_tie: Duration,
    peer_ttl: Duration,
    /// `own[i]`: the local node's cluster at level `i + 1`.
    own: Vec<Membership>,
    /// `damping[i]`: moves at level `i + 1`.
    damping: Vec<Damping>,
    hold_base: Duration,
    hold_max: Duration,
    peers: PeerTable,
}

impl Clustering {
    /// Starts alone: a new single-node cluster at every level.
    pub(crate) fn new(config: &Config, rng: &mut impl Rng, hash_key: u64) -> Self {
        let own: Vec<Membership> = config
            .level_rtt_thresholds
            .iter()
            .map(|_| Membership {
                id: ClusterId(rng.next_u64()),
                age: None,
            })
            .collect();
        Clustering {
            thresholds: config.level_rtt_thresholds.clone(),
            fraction: config.cluster_membership_fraction,
            hysteresis: config.cluster_size_hysteresis,
            age_tie: config.cluster_age_tie,
            peer_ttl: config.peer_info_ttl,
            damping: vec![Damping::default(); own.len()],
            hold_base: config.cluster_move_hold,
            hold_max: config.cluster_move_hold_max,
            own,
            peers: PeerTable::new(config.peer_info_capacity, hash_key),
        }
    }

    /// The node's clock starts: clusters it founded begin to age.
    pub(crate) fn start(&mut self, now: Instant) {
        for m in &mut self.own {
            m.age.get_or_insert(AgeClock {
                age: Duration::ZERO,
                at: now,
            });
        }
    }

    /// The local node's cluster at `level` (level 0 has the one global cluster, ID 0).
    pub(crate) fn own_id(&self, level: Level) -> ClusterId {
        level
            .index()
            .checked_sub(1)
            .and_then(|i| self.own.get(i))
            .map_or(ClusterId(0), |m| m.id)
    }

    pub(crate) fn own_age(&self, level: Level, now: Instant) -> Duration {
        level
            .index()
            .checked_sub(1)
            .and_then(|i| self.own.get(i))
            .map_or(Duration::ZERO, |m| m.age(now))
    }

    /// The header for an outgoing message; `sizes[i]` is the size estimate at level `i + 1`.
    pub(crate) fn header(&self, now: Instant, sizes: &[u32]) -> Header {
        Header {
            clusters: self
                .own
                .iter()
                .enumerate()
                .map(|(i, m)| ClusterDescriptor {
                    id: m.id,
                    age: m.age(now).min(crate::wire::MAX_WIRE_DURATION),
                    size: sizes.get(i).copied().unwrap_or(1),
                })
                .collect(),
        }
    }

    /// A message from `from` arrived carrying `header`. Returns the levels it now shares
    /// with us (as `shared_levels` does).
    pub(crate) fn observe_header(&mut self, now: Instant, from: &Contact, header: &Header) -> u32 {
        self.observe(now, from, header, None)
    }

    /// A message from `from` arrived carrying `header`, and (for an answer to a first
    /// attempt) the round trip it measured: one update for both. Returns the levels the peer
    /// now shares with us (as `shared_levels` does), so the message's handling needs no
    /// second search of the peer table.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        from: &Contact,
        header: &Header,
        rtt: Option<Duration>,
    ) -> u32 {
        let levels = self.own.len();
        let info = self.peers.touch(now, from);
        if let Some(rtt) = rtt {
            info.note_rtt(rtt);
        }
        info.described_at = info.last_heard;
        info.clusters.clear();
        info.clusters.extend(
            header
                .clusters
                .iter()
                .take(levels)
                .map(|d| HeardDescriptor {
                    id: d.id,
                    age_secs: u32::try_from(d.age.as_secs()).unwrap_or(u32::MAX),
                    size: d.size,
                }),
        );
        shared_mask(&self.own, &info.clusters)
    }

    /// The transport (or an RPC) measured a round trip to `from`.
    pub(crate) fn observe_rtt(&mut self, now: Instant, from: &Contact, rtt: Duration) {
        self.peers.touch(now, from).note_rtt(rtt);
    }

    /// Forgets a peer (it failed to answer).
    pub(crate) fn forget(&mut self, id: &NodeId) {
        self.peers.forget(id);
    }

    /// The peer last said it is in our cluster at `level` (every peer is, at level 0).
    pub(crate) fn is_member(&self, peer: &NodeId, level: Level) -> bool {
        self.shared_levels(peer) & (1 << level.index()) != 0
    }

    /// Every level the peer last said it shares with us, as a bit set (bit `l` for level
    /// `l`; bit 0, the global level, is always set). One lookup for all levels: this runs on
    /// every message.
    pub(crate) fn shared_levels(&self, peer: &NodeId) -> u32 {
        self.peers.get(peer).map_or(1, |p| self.shared_with(p))
    }

    /// `shared_levels` of a peer already at hand.
    fn shared_with(&self, p: &PeerInfo) -> u32 {
        shared_mask(&self.own, &p.clusters)
    }

    /// Peers that last said they are in our cluster at `level`, in ID order (the order
    /// decides which of them fill a routing table, and must not depend on the hasher).
    pub(crate) fn members(&self, level: Level) -> Vec<Contact> {
        let mut members: Vec<Contact> = self
            .peers
            .values()
            .filter(|p| self.shared_with(p) & (1 << level.index()) != 0)
            .map(|p| p.contact.clone())
            .collect();
        members.sort_unstable_by_key(|c| c.id);
        members
    }

    /// The `n` peers heard from longest ago, to ping so RTTs and descriptors stay current.
    pub(crate) fn stalest(&self, now: Instant, min_silence: Duration, n: usize) -> Vec<Contact> {
        let mut stalest: Vec<Contact> = Vec::with_capacity(n);
        for (_, p) in self
            .peers
            .by_heard()
            .take_while(|(heard, _)| self.peers.silence(now, *heard) >= min_silence)
        {
            if stalest.len() == n {
                break;
            }
            // A peer may have two live records (see `peers::live`): list it once.
            if !stalest.iter().any(|c| c.id == p.contact.id) {
                stalest.push(p.contact.clone());
            }
        }
        stalest
    }

    /// Drops what was not heard for `peer_info_ttl`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((heard, id)) = self.peers.oldest_live() {
            if self.peers.silence(now, heard) < self.peer_ttl {
                break;
            }
            self.forget(&id);
        }
    }

    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub(crate) fn min_rtt(&self, peer: &NodeId) -> Option<Duration> {
        self.peers.get(peer).and_then(PeerInfo::min_rtt)
    }

    /// Re-decides membership at `level` (>= 1). `own_size` is the local estimate of the current
    /// cluster's size. Returns the new cluster if the node moved.
    pub(crate) fn evaluate(
        &mut self,
        now: Instant,
        level: Level,
        own_size: u32,
        rng: &mut impl Rng,
    ) -> Option<ClusterId> {
        let i = level.index().checked_sub(1)?;
        let threshold = *self.thresholds.get(i)?;
        let own_id = self.own.get(i)?.id;
        // Per cluster: RTT samples, and every member's claim of size and age. The median
        // claim counts, so one wrong (or hostile) estimate cannot pull a neighbourhood over.
        // One sorted vector rather than maps: this runs for every node every few seconds.
        let mut rows: Vec<(ClusterId, u32, Duration, Option<Duration>)> = self
            .peers
            .values()
            .filter_map(|p| {
                let d = p.clusters.get(i)?;
                let age = AgeClock {
                    age: Duration::from_secs(d.age_secs.into()),
                    at: self.peers.instant(p.described_at)?,
                };
                Some((d.id, d.size, age.at(now), p.min_rtt()))
            })
            .collect();
        rows.push((own_id, own_size, self.own_age(level, now), None));
        rows.sort_unstable_by_key(|r| r.0);
        let mut candidates = Vec::new();
        let (mut sizes, mut ages) = (Vec::new(), Vec::new());
        for group in rows.chunk_by(|a, b| a.0 == b.0) {
            sizes.clear();
            ages.clear();
            sizes.extend(group.iter().map(|r| r.1));
            ages.extend(group.iter().map(|r| r.2));
            let rtts = group.iter().filter_map(|r| r.3);
            candidates.push(Candidate {
                id: group[0].0,
                size: median(&mut sizes),
                age: median(&mut ages),
                sampled: rtts.clone().count(),
                near: rtts.filter(|rtt| *rtt < threshold).count(),
            });
        }
        let acceptable =
            |c: &Candidate| c.sampled > 0 && (c.near as f64) >= self.fraction * (c.sampled as f64);
        let own = candidates
            .iter()
            .find(|c| c.id == own_id)
            .copied()
            .unwrap_or(Candidate {
                id: own_id,
                size: own_size,
                age: Duration::ZERO,
                sampled: 0,
                near: 0,
            });
        // With no samples of our own cluster there is nothing to contradict staying in it.
        let own_ok = own.sampled == 0 || acceptable(&own);
        let best = candidates
            .iter()
            .filter(|c| c.id != own_id && acceptable(c))
            .copied()
            .reduce(|a, b| if self.beats(&b, &a) { b } else { a });
        // A node that moved lately does not move again by choice (it must if its cluster is
        // no longer near): see `Damping`.
        let damping = self.damping[i];
        // A node alone in its cluster (its last one fell apart, or it had to found one) joins
        // the first acceptable cluster at once: at 10,000 simulated nodes, holding such nodes
        // left 78 alone at level 2 instead of 10, and made more moves, not fewer.
        let holding = own_ok
            && own_size > 1
            && damping
                .moved
                .is_some_and(|at| now.saturating_duration_since(at) < damping.hold);
        let next = match best {
            Some(b) if !own_ok || (!holding && self.beats(&b, &own)) => Membership {
                id: b.id,
                age: Some(AgeClock {
                    age: b.age,
                    at: now,
                }),
            },
            _ if !own_ok => Membership {
                id: ClusterId(rng.next_u64()),
                age: Some(AgeClock {
                    age: Duration::ZERO,
                    at: now,
                }),
            },
            _ => return None,
        };
        self.own[i] = next;
        let d = &mut self.damping[i];
        // Moves in quick succession hold the node still for longer each time. Only a node
        // that stayed put for the longest hold past its current one starts again from the
        // shortest: a node moving as soon as each hold ends keeps the longest.
        d.hold = match d.moved {
            Some(at)
                if now.saturating_duration_since(at) < d.hold.saturating_add(self.hold_max) =>
            {
                d.hold
                    .saturating_mul(2)
                    .clamp(self.hold_base, self.hold_max)
            }
            _ => self.hold_base,
        };
        d.moved = Some(now);
        Some(next.id)
    }

    /// Whether cluster `a` is preferable to cluster `b` (see the implementation notes).
    fn beats(&self, a: &Candidate, b: &Candidate) -> bool {
        let (sa, sb) = (f64::from(a.size), f64::from(b.size));
        let h = 1.0 + self.hysteresis;
        if sa > sb * h {
            return true;
        }
        if sb > sa * h {
            return false;
        }
        if a.age > b.age.saturating_add(self.age_tie) {
            return true;
        }
        if b.age > a.age.saturating_add(self.age_tie) {
            return false;
        }
        a.id < b.id
    }
}

/// The levels a peer that described `clusters` shares with a node in `own`, as a bit set.
fn shared_mask(own: &[Membership], clusters: &[HeardDescriptor]) -> u32 {
    clusters
        .iter()
        .zip(own)
        .enumerate()
        .filter(|(_, (d, own))| d.id == own.id)
        .fold(1, |shared, (i, _)| shared | 1 << (i + 1))
}

/// The middle element (the upper one of an even count); `T::default()` if empty.
fn median<T: Ord + Copy + Default>(v: &mut [T]) -> T {
    if v.is_empty() {
        return T::default();
    }
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Addr;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const L2: Level = Level(2);

    fn peer(n: u8) -> Contact {
        Contact::new(NodeId([n; 32]), Addr::default())
    }

    fn header_at_level2(id: u64, age_secs: u64, size: u32) -> Header {
        let d = |id| ClusterDescriptor {
            id: ClusterId(id),
            age: Duration::from_secs(age_secs),
            size,
        };
        Header {
            clusters: vec![d(id + 1000), d(id)],
        }
    }

    fn setup() -> (Clustering, Instant, ChaCha8Rng) {
        setup_with(&Config::default())
    }

    fn setup_with(config: &Config) -> (Clustering, Instant, ChaCha8Rng) {
        let now = crate::test_clock::epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c = Clustering::new(config, &mut rng, 7);
        c.start(now);
        (c, now, rng)
    }

    #[test]
    fn joins_a_near_cluster_and_not_a_far_one() {
        let (mut c, now, mut rng) = setup();
        for n in 0..5 {
            c.observe_header(now, &peer(n), &header_at_level2(7, 100, 5));
            c.observe_rtt(now, &peer(n), Duration::from_millis(150));
        }
        assert_eq!(c.evaluate(now, L2, 1, &mut rng), None, "far cluster");
        for n in 10..13 {
            c.observe_header(now, &peer(n), &header_at_level2(8, 100, 3));
            c.observe_rtt(now, &peer(n), Duration::from_millis(5));
        }
        assert_eq!(c.evaluate(now, L2, 1, &mut rng), Some(ClusterId(8)));
        assert!(c.is_member(&peer(10).id, L2));
        assert!(!c.is_member(&peer(0).id, L2));
        assert_eq!(c.members(L2).len(), 3);
    }

    #[test]
    fn eighty_percent_rule() {
        let (mut c, now, mut rng) = setup();
        // 3 of 4 sampled members near: 75 % < 80 %, not acceptable.
        for n in 0..4 {
            c.observe_header(now, &peer(n), &header_at_level2(7, 100, 4));
            let rtt = if n < 3 { 5 } else { 50 };
            c.observe_rtt(now, &peer(n), Duration::from_millis(rtt));
        }
        assert_eq!(c.evaluate(now, L2, 1, &mut rng), None);
        // A fifth near member makes it 4 of 5 = 80 %.
        c.observe_header(now, &peer(9), &header_at_level2(7, 100, 4));
        c.observe_rtt(now, &peer(9), Duration::from_millis(5));
        assert_eq!(c.evaluate(now, L2, 1, &mut rng), Some(ClusterId(7)));
    }

    #[test]
    fn moves_to_larger_cluster_only_beyond_hysteresis() {
        let (mut c, now, mut rng) = setup_with(&Config {
            cluster_move_hold: Duration::ZERO,
            ..Config::default()
        });
        c.observe_header(now, &peer(1), &header_at_level2(7, 100, 10));
        c.observe_rtt(now, &peer(1), Duration::from_millis(5));
        assert_eq!(c.evaluate(now, L2, 1, &mut rng), Some(ClusterId(7)));
        // Another cluster only slightly larger (and younger) does not pull us over.
        c.observe_header(now, &peer(2), &header_at_level2(3, 5, 12));
        c.observe_rtt(now, &peer(2), Duration::from_millis(5));
        assert_eq!(c.evaluate(now, L2, 10, &mut rng), None);
        // A clearly larger one does.
        c.observe_header(now, &peer(2), &header_at_level2(3, 5, 30));
        assert_eq!(c.evaluate(now, L2, 10, &mut rng), Some(ClusterId(3)));
    }

    #[test]
    fn equal_clusters_merge_into_the_older_then_the_lower_id() {
        let (mut c, now, mut rng) = setup();
        c.observe_header(now, &peer(1), &header_at_level2(50, 100, 2));
        c.observe_rtt(now, &peer(1), Duration::from_millis(5));
        c.observe_header(now, &peer(2), &header_at_level2(60, 300, 2));
        c.observe_rtt(now, &peer(2), Duration::from_millis(5));
        assert_eq!(c.evaluate(now, L2, 2, &mut rng), Some(ClusterId(60)));
        // Same size and age: the lower ID wins.
        let (mut c, now, mut rng) = setup();
        c.observe_header(now, &peer(1), &header_at_level2(50, 100, 2));
        c.observe_rtt(now, &peer(1), Duration::from_millis(5));
        c.observe_header(now, &peer(2), &header_at_level2(40, 101, 2));
        c.observe_rtt(now, &peer(2), Duration::from_millis(5));
        assert_eq!(c.evaluate(now, L2, 2, &mut rng), Some(ClusterId(40)));
        // And once there, it stays: no flapping.
        assert_eq!(c.evaluate(now, L2, 2, &mut rng), None);
    }

    #[test]
    fn leaves_a_cluster_that_is_no_longer_near() {
        let (mut c, now, mut rng) = setup();
        for n in 0..3 {
            c.observe_header(now, &peer(n), &header_at_level2(7, 100, 3));
            c.observe_rtt(now, &peer(n), Duration::from_millis(5));
        }
        assert_eq!(c.evaluate(now, L2, 1, &mut rng), Some(ClusterId(7)));
        // The members turn out to be far (new peers of the same cluster, all distant).
        for n in 20..40 {
            c.observe_header(now, &peer(n), &header_at_level2(7, 100, 3));
            c.observe_rtt(now, &peer(n), Duration::from_millis(90));
        }
        let moved = c.evaluate(now, L2, 3, &mut rng);
        assert!(
            moved.is_some_and(|id| id != ClusterId(7)),
            "starts a new cluster"
        );
    }

    #[test]
    fn ages_keep_growing_between_messages() {
        let (mut c, now, mut rng) = setup();
        c.observe_header(now, &peer(1), &header_at_level2(7, 100, 3));
        c.observe_rtt(now, &peer(1), Duration::from_millis(5));
        c.evaluate(now, L2, 1, &mut rng);
        let later = now + Duration::from_secs(50);
        let h = c.header(later, &[1, 3]);
        assert_eq!(h.clusters[1].id, ClusterId(7));
        assert_eq!(h.clusters[1].age, Duration::from_secs(150));
        assert_eq!(h.clusters[1].size, 3);
    }

    #[test]
    fn peer_table_is_bounded() {
        let (mut c, now, _) = setup_with(&Config {
            peer_info_capacity: 4,
            ..Config::default()
        });
        for n in 0..10u8 {
            c.observe_rtt(
                now + Duration::from_secs(n.into()),
                &peer(n),
                Duration::from_millis(5),
            );
        }
        assert_eq!(c.peer_count(), 4);
        assert!(c.min_rtt(&peer(9).id).is_some());
        assert!(c.min_rtt(&peer(0).id).is_none());
    }

    #[test]
    fn a_peer_heard_again_is_no_longer_the_stalest_and_only_silent_ones_expire() {
        let (mut c, now, _) = setup_with(&Config {
            peer_info_capacity: 3,
            peer_info_ttl: Duration::from_secs(100),
            ..Config::default()
        });
        let at = |s: u64| now + Duration::from_secs(s);
        let rtt = Duration::from_millis(5);
        for n in 0..3u8 {
            c.observe_rtt(at(n.into()), &peer(n), rtt);
        }
        // Peer 0 speaks again, many times (enough to compact the record of who was heard).
        for s in 10..400u64 {
            c.observe_rtt(at(2 + s / 10), &peer(0), rtt);
        }
        let stalest: Vec<u8> = c
            .stalest(at(50), Duration::from_secs(1), 3)
            .iter()
            .map(|p| p.id.0[0])
            .collect();
        assert_eq!(stalest, vec![1, 2, 0], "oldest first, each peer once");
        // A newcomer at capacity pushes out peer 1, the one heard longest ago, not peer 0.
        c.observe_rtt(at(50), &peer(3), rtt);
        assert!(c.min_rtt(&peer(1).id).is_none());
        assert!(c.min_rtt(&peer(0).id).is_some());
        // At 138 s, peer 2 (heard at 2 s) has been silent past its 100 s; peer 0 (41 s) not.
        c.expire(at(138));
        assert!(c.min_rtt(&peer(2).id).is_none());
        assert!(c.min_rtt(&peer(0).id).is_some());
        assert!(c.min_rtt(&peer(3).id).is_some());
        assert_eq!(c.peer_count(), 2);
    }

    /// Peer `n` says it is in level-2 cluster `cluster` (100 s old, of `size` nodes), and it
    /// is near (5 ms).
    fn hear_near(c: &mut Clustering, at: Instant, n: u8, cluster: u64, size: u32) {
        c.observe_header(at, &peer(n), &header_at_level2(cluster, 100, size));
        c.observe_rtt(at, &peer(n), Duration::from_millis(5));
    }

    /// The node joins near cluster 7 at `t0`; 10 s later a clearly larger near cluster, 3,
    /// appears, and is not joined within the 30 s hold.
    fn joined_then_held(c: &mut Clustering, t0: Instant, rng: &mut ChaCha8Rng) {
        hear_near(c, t0, 1, 7, 10);
        assert_eq!(c.evaluate(t0, L2, 1, rng), Some(ClusterId(7)));
        let at10 = t0 + Duration::from_secs(10);
        hear_near(c, at10, 2, 3, 40);
        assert_eq!(c.evaluate(at10, L2, 10, rng), None, "held");
    }

    #[test]
    fn a_node_that_moved_holds_still_longer_each_time_but_leaves_a_far_cluster_at_once() {
        let (mut c, t0, mut rng) = setup();
        let at = |s: u64| t0 + Duration::from_secs(s);
        joined_then_held(&mut c, t0, &mut rng);
        assert_eq!(c.evaluate(at(30), L2, 10, &mut rng), Some(ClusterId(3)));
        // The second move within ten minutes doubles the hold to 60 s.
        hear_near(&mut c, at(40), 3, 5, 200);
        assert_eq!(c.evaluate(at(80), L2, 40, &mut rng), None, "held for 60 s");
        assert_eq!(c.evaluate(at(90), L2, 40, &mut rng), Some(ClusterId(5)));
        // Its cluster turns out far: it leaves at once, hold or not.
        for n in 20..30 {
            c.observe_header(at(100), &peer(n), &header_at_level2(5, 100, 200));
            c.observe_rtt(at(100), &peer(n), Duration::from_millis(90));
        }
        let moved = c.evaluate(at(100), L2, 200, &mut rng);
        assert!(moved.is_some_and(|id| id != ClusterId(5)), "left at once");
    }

    #[test]
    fn a_node_alone_after_its_cluster_fell_apart_is_not_held() {
        let (mut c, t0, mut rng) = setup();
        // Within the hold, a larger near cluster is not joined by a node with company...
        joined_then_held(&mut c, t0, &mut rng);
        // ...but is by one whose table shows no one else left in its cluster.
        let at10 = t0 + Duration::from_secs(10);
        assert_eq!(c.evaluate(at10, L2, 1, &mut rng), Some(ClusterId(3)));
    }

    #[test]
    fn a_node_moving_whenever_its_hold_ends_keeps_the_longest_hold() {
        let (mut c, t0, mut rng) = setup_with(&Config {
            cluster_move_hold: Duration::from_secs(30),
            cluster_move_hold_max: Duration::from_secs(120),
            ..Config::default()
        });
        // Each round a clearly larger near cluster appears; the node moves as soon as it may.
        let mut now = t0;
        let mut waits = Vec::new();
        let mut last = t0;
        for round in 0..7u8 {
            let cluster = 100 + u64::from(round);
            hear_near(&mut c, now, round, cluster, 10 << round);
            while c.evaluate(now, L2, 5 << round, &mut rng) != Some(ClusterId(cluster)) {
                now += Duration::from_secs(1);
            }
            waits.push((now - last).as_secs());
            last = now;
        }
        // 0 (the first move), then holds of 30, 60, 120 s, and 120 s from then on.
        assert_eq!(waits, vec![0, 30, 60, 120, 120, 120, 120]);
        // Staying put for the hold and the longest hold after it starts again at 30 s.
        now += Duration::from_secs(240);
        hear_near(&mut c, now, 50, 500, 100_000);
        assert_eq!(c.evaluate(now, L2, 10_000, &mut rng), Some(ClusterId(500)));
        hear_near(&mut c, now, 51, 501, 1_000_000);
        let later = now + Duration::from_secs(30);
        assert_eq!(
            c.evaluate(later - Duration::from_secs(1), L2, 100_000, &mut rng),
            None
        );
        assert_eq!(
            c.evaluate(later, L2, 100_000, &mut rng),
            Some(ClusterId(501))
        );
    }
}
