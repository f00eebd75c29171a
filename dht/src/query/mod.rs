//! Queries in progress: hierarchical gets, sloppy puts and plain lookups.
//!
//! A query owns one [`ClosestIter`] per phase and level; [`Node`](crate::Node) drives it
//! (see `node/drive.rs`) by sending the requests it asks for and feeding the answers back.

pub(crate) mod closest;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub(crate) use closest::{ClosestIter, Next};

use crate::id::{Contact, Key, NodeId};
use crate::wire::{Level, Value};

#[derive(Clone, Debug)]
pub(crate) struct Query {
    pub(crate) key: Key,
    pub(crate) deadline: Instant,
    /// Requests sent for this query, all levels.
    pub(crate) hops: u32,
    pub(crate) kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// `FindNode` towards `key` at one level: bootstrap, bucket refresh, joining a cluster.
    Lookup {
        level: Level,
        iter: ClosestIter,
        /// Report `BootstrapDone` when finished.
        bootstrap: bool,
    },
    /// Coral's hierarchical get: the highest level first, each lower level continuing from the
    /// closest nodes reached above; ends at the first node holding values.
    Get { level: Level, iter: ClosestIter },
    /// Coral's sloppy put, at every level at once.
    Put {
        value: Value,
        ttl: Duration,
        levels: Vec<PutLevel>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct PutLevel {
    pub(crate) level: Level,
    pub(crate) phase: PutPhase,
    /// Nodes that accepted the value (one in a sloppy put, up to `k` in a classic one).
    pub(crate) stored_at: Vec<NodeId>,
}

/// The two phases of a sloppy put at one level.
#[derive(Clone, Debug)]
pub(crate) enum PutPhase {
    /// Walking towards the key with `PutProbe`s. Every node that said it would accept the
    /// value goes on `stack` (in a classic put, every node answering). Left when the walk
    /// finds the closest nodes, or a node that is full and loaded (Coral, section 4.2).
    Forward {
        iter: ClosestIter,
        stack: Vec<Contact>,
        /// A full and loaded node answered: go no further.
        stopped: bool,
    },
    /// Trying the stacked nodes from the closest outwards, one `Store` at a time, until one
    /// accepts. `candidates` is sorted farthest first, so `pop` yields the closest.
    Backward {
        candidates: Vec<Contact>,
        waiting: Option<NodeId>,
    },
    /// Classic Kademlia (`Config::sloppy == false`): stores sent to the `k` closest nodes the
    /// walk found, all at once; left when every one answered or failed.
    Replicate { waiting: BTreeSet<NodeId> },
    /// Stored (or nobody accepted).
    Done,
}

impl Query {
    pub(crate) fn is_put_done(levels: &[PutLevel]) -> bool {
        levels.iter().all(|l| matches!(l.phase, PutPhase::Done))
    }
}
