//! Requests we sent and are waiting on: their deadlines, retries and what they are for.

use std::collections::{BTreeMap, BTreeSet};
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
    outstanding: BTreeMap<RpcId, Outstanding>,
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
        self.outstanding.insert(
            id,
            Outstanding {
                to,
                req,
                purpose,
                sent_at: now,
                deadline,
                attempt: 0,
            },
        );
        self.deadlines.insert((deadline, id));
        id
    }

    /// The request is answered or abandoned.
    pub(crate) fn finish(&mut self, id: RpcId) -> Option<Outstanding> {
        let out = self.outstanding.remove(&id)?;
        self.deadlines.remove(&(out.deadline, id));
        Some(out)
    }
    /// Replaces a timed-out request by another attempt under a new [`RpcId`] (so a driver
    /// never has two sends in flight under one ID); a late answer to the old attempt is then
    /// unknown and dropped. Returns the new ID.
    pub(crate) fn retry(&mut self, id: RpcId, now: Instant, timeout: Duration) -> Option<RpcId> {
        let mut out = self.finish(id)?;
        out.attempt += 1;
        let new = RpcId(self.next_id);
        self.next_id += 1;
        out.sent_at = now;
        out.deadline = now + timeout;
        self.deadlines.insert((out.deadline, new));
        self.outstanding.insert(new, out);
        Some(new)
    }

    pub(crate) fn get(&self, id: RpcId) -> Option<&Outstanding> {
        self.outstanding.get(&id)
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
