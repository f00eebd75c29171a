//! What goes into and comes out of a [`Node`](crate::Node).

use crate::error::QueryError;
use crate::id::{Contact, Key, NodeId};
use crate::wire::{ClusterId, Level, Request, Response, Value};

/// Names a get, put or bootstrap; its outcome arrives as an [`Event`] with the same ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct QueryId(pub u64);

/// Names a request this node sent; the driver hands it back with the response or failure.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RpcId(pub u64);

/// Names a request this node received; chosen by the driver, echoed in the response so the
/// driver can find the channel to answer on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct InboundId(pub u64);

/// Something that happened outside the node.
#[derive(Clone, Debug)]
pub enum Input {
    /// A peer sent a request. `from.id` is the peer as the transport authenticated it, and
    /// `from.addr` an address it can be reached at (a listen address, or a handle the driver
    /// can dial): it goes into routing tables and other nodes' lookups, so not the ephemeral
    /// source port of an inbound connection.
    Request {
        /// Who asked.
        from: Contact,
        /// The driver's handle for the reply.
        inbound: InboundId,
        /// What was asked.
        req: Request,
    },
    /// A peer answered a request this node sent.
    Response {
        /// The request answered.
        rpc: RpcId,
        /// The answer.
        resp: Response,
    },
    /// The transport gave up on a request we sent (it could not dial the peer, or the
    /// connection closed under it). Handled like a timeout, only sooner: the node retries
    /// up to `rpc_retries` times (a retry may find a fresh connection where a stale one
    /// failed, as after a partition) before it gives up on the peer.
    SendFailed {
        /// The request that failed.
        rpc: RpcId,
    },
    /// The request can never be answered: the peer cannot be addressed, its answer did not
    /// decode, or it does not speak the protocol. The peer is given up at once, unretried.
    Failed {
        /// The request.
        rpc: RpcId,
    },
}

/// A message the driver must deliver.
#[derive(Clone, Debug)]
pub enum Transmit {
    /// Send a request; deliver the answer as [`Input::Response`] with the same `rpc`.
    Request {
        /// The peer to send it to.
        to: Contact,
        /// Its handle.
        rpc: RpcId,
        /// The request.
        req: Request,
    },
    /// Answer a request received as [`Input::Request`].
    Response {
        /// The request answered.
        inbound: InboundId,
        /// The answer.
        resp: Response,
    },
}

/// Values found by a get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The values of the first node that had any (Coral stops there).
    pub values: Vec<Value>,
    /// The level where they were found: the higher, the nearer the holders.
    pub level: Level,
    /// Requests the get sent in all.
    pub hops: u32,
}

/// Where a put stored its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// One entry per level that stored it, with the node that accepted it.
    pub stored: Vec<(Level, NodeId)>,
    /// Requests the put sent in all.
    pub hops: u32,
}

/// An outcome the caller of the node should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A get searched a level without finding values and moves down to the next one.
    GetProgress {
        /// The get.
        query: QueryId,
        /// The level searched.
        level: Level,
    },
    /// A get finished.
    GetDone {
        /// The get.
        query: QueryId,
        /// The key sought.
        key: Key,
        /// The values, or why there are none.
        result: Result<Found, QueryError>,
    },
    /// A put finished at every level.
    PutDone {
        /// The put.
        query: QueryId,
        /// The key stored under.
        key: Key,
        /// Where it was stored, or why nowhere.
        result: Result<Placement, QueryError>,
    },
    /// The lookup started by `bootstrap` finished.
    BootstrapDone {
        /// The bootstrap.
        query: QueryId,
        /// Contacts in the level-0 routing table afterwards.
        known: usize,
    },
    /// The node moved to another cluster at a level.
    ClusterChanged {
        /// The level.
        level: Level,
        /// The cluster joined (or founded).
        cluster: ClusterId,
        /// Members it knows of in the new cluster.
        members: usize,
    },
}
