//! Requests we sent and are waiting on: their deadlines, retries and what they are for.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::id::Contact;
use crate::io::{QueryId, RpcId};
use crate::wire::{Level, Request};

/// Why a request was sent, so its answer reaches the right place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// One step of a query at a level.
    Query { query: QueryId, level: Level },
    /// Liveness check of a bucket's least-recently-seen entry at a level.
    BucketPing { level: Level },
    /// Keeps a peer's RTT and cluster descriptors current for cluster decisions.
    ClusterProbe,
}

#[derive(Clone, Debug)]
pub(crate) struct Outstanding {
    pub(crate) to: Contact,
    pub(crate) req: Request,
    pub(crate) purpose: Purpose,
    /// When the request was (last) sent; an RTT is only measured from a first attempt
    /// (Karn's rule: a retried request's answer may belong to either attempt).
    pub(crate) sent_at: Instant,
    pub(crate) deadline: Instant,
    pub(crate) attempt: u32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Rpcs {
    next_id: u64,
    /// By ID, which is also the order they were sent in (IDs only grow, and a retry takes a
    /// new one). A vector, not a B-tree: a node has a few requests out at a time, and a
    /// B-tree leaf holds room for eleven of these records (a few hundred bytes each, most
    /// of it the request kept for a retry) from the first: kilobytes per simulated node.
    outstanding: Vec<(RpcId, Outstanding)>,
    deadlines: BTreeSet<(Instant, RpcId)>,
}

impl Rpcs {
    pub(crate) fn start(
        &mut self,
        now: Instant,
        timeout: Duration,
        to: Contact,
        req: Request,
        purpose: Purpose,
    ) -> RpcId {
        let id = RpcId(self.next_id);
        self.next_id += 1;
        let deadline = now + timeout;
        self.outstanding.push((
            id,
            Outstanding {
                to,
                req,
                purpose,
                sent_at: now,
                deadline,
                attempt: 0,
            },
        ));
        self.deadlines.insert((deadline, id));
        id
    }

    fn position(&self, id: RpcId) -> Option<usize> {
        self.outstanding.binary_search_by_key(&id, |(i, _)| *i).ok()
    }

    /// Takes a request out, keeping the vector's room (a retry puts it back at once).
    fn take(&mut self, id: RpcId) -> Option<Outstanding> {
        let (_, out) = self.outstanding.remove(self.position(id)?);
        self.deadlines.remove(&(out.deadline, id));
        Some(out)
    }

    /// The request is answered or abandoned.
    pub(crate) fn finish(&mut self, id: RpcId) -> Option<Outstanding> {
        let out = self.take(id)?;
        // Give back the room of a burst once it is over, and all of it when none is left:
        // most simulated nodes have nothing out most of the time.
        let room = self.outstanding.capacity();
        if self.outstanding.is_empty() {
            self.outstanding = Vec::new();
        } else if room > 8 && self.outstanding.len() < room / 4 {
            self.outstanding.shrink_to(room / 2);
        }
        Some(out)
    }
    /// Replaces a timed-out request by another attempt under a new [`RpcId`] (so a driver
    /// never has two sends in flight under one ID); a late answer to the old attempt is then
    /// unknown and dropped. Returns the new ID.
    pub(crate) fn retry(&mut self, id: RpcId, now: Instant, timeout: Duration) -> Option<RpcId> {
        let mut out = self.take(id)?;
        out.attempt += 1;
        let new = RpcId(self.next_id);
        self.next_id += 1;
        out.sent_at = now;
        out.deadline = now + timeout;
        self.deadlines.insert((out.deadline, new));
        self.outstanding.push((new, out));
        Some(new)
    }

    pub(crate) fn get(&self, id: RpcId) -> Option<&Outstanding> {
        self.position(id).map(|pos| &self.outstanding[pos].1)
    }

    /// The first request whose deadline has passed.
    pub(crate) fn pop_expired(&self, now: Instant) -> Option<RpcId> {
        self.deadlines
            .first()
            .filter(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| *id)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    pub(crate) fn len(&self) -> usize {
        self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::wire::{Header, RequestBody};

    fn ping(rpcs: &mut Rpcs, now: Instant, n: u8) -> RpcId {
        let to = Contact::new(NodeId([n; 32]), vec![n]);
        let req = Request {
            header: Header::default(),
            body: RequestBody::Ping,
        };
        rpcs.start(now, TIMEOUT, to, req, Purpose::ClusterProbe)
    }

    const TIMEOUT: Duration = Duration::from_secs(2);

    #[test]
    fn requests_are_found_by_id_and_expire_in_deadline_order() {
        let t0 = crate::test_clock::epoch();
        let mut rpcs = Rpcs::default();
        let ids: Vec<RpcId> = (0..3u8)
            .map(|n| ping(&mut rpcs, t0 + Duration::from_millis(n.into()), n))
            .collect();
        assert_eq!(rpcs.finish(ids[1]).map(|o| o.to.id), Some(NodeId([1; 32])));
        assert!(rpcs.finish(ids[1]).is_none(), "finished once");
        // A retry goes under a new ID with a later deadline; the old ID is unknown.
        let later = t0 + Duration::from_secs(2);
        let retried = rpcs.retry(ids[0], later, TIMEOUT).expect("outstanding");
        assert!(rpcs.get(ids[0]).is_none());
        assert_eq!(rpcs.get(retried).map(|o| o.attempt), Some(1));
        assert_eq!(rpcs.get(ids[2]).map(|o| o.to.id), Some(NodeId([2; 32])));
        assert_eq!(
            rpcs.next_deadline(),
            Some(t0 + TIMEOUT + Duration::from_millis(2))
        );
        assert_eq!(rpcs.pop_expired(t0 + TIMEOUT), None);
        assert_eq!(rpcs.pop_expired(later + TIMEOUT), Some(ids[2]));
        rpcs.finish(ids[2]);
        assert_eq!(rpcs.pop_expired(later + TIMEOUT), Some(retried));
        assert_eq!(rpcs.len(), 1);
    }

    #[test]
    fn a_burst_gives_its_room_back() {
        let t0 = crate::test_clock::epoch();
        let mut rpcs = Rpcs::default();
        let ids: Vec<RpcId> = (0..200u8).map(|n| ping(&mut rpcs, t0, n)).collect();
        let burst = rpcs.outstanding.capacity();
        for id in &ids[..198] {
            assert!(rpcs.finish(*id).is_some());
        }
        assert!(rpcs.outstanding.capacity() <= 16, "{burst} kept");
        assert_eq!(rpcs.get(ids[199]).map(|o| o.to.id), Some(NodeId([199; 32])));
        rpcs.finish(ids[198]);
        rpcs.finish(ids[199]);
        assert_eq!(rpcs.outstanding.capacity(), 0, "nothing out, nothing held");
    }
}
