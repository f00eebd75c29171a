//! Counters and snapshots for operators (the shape of quinn's `ConnectionStats`).

use std::time::Duration;

use crate::id::{Contact, NodeId};
use crate::wire::{ClusterId, Level, RequestBody};

/// Messages of each request kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// `Ping`.
    pub ping: u64,
    /// `FindNode`.
    pub find_node: u64,
    /// `Get`.
    pub get: u64,
    /// `PutProbe`.
    pub put_probe: u64,
    /// `Store`.
    pub store: u64,
}

impl KindCounts {
    pub(crate) fn count(&mut self, body: &RequestBody) {
        let slot = match body {
            RequestBody::Ping => &mut self.ping,
            RequestBody::FindNode { .. } => &mut self.find_node,
            RequestBody::Get { .. } => &mut self.get,
            RequestBody::PutProbe { .. } => &mut self.put_probe,
            RequestBody::Store { .. } => &mut self.store,
        };
        *slot += 1;
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.ping + self.find_node + self.get + self.put_probe + self.store
    }
}

/// What a node did since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received, by kind.
    pub requests_in: KindCounts,
    /// Requests sent, by kind (retries included).
    pub requests_out: KindCounts,
    /// Responses received that matched an outstanding request.
    pub responses_in: u64,
    /// Responses sent.
    pub responses_out: u64,
    /// Messages dropped: unknown or late responses, answers of the wrong kind, responses that
    /// could not be encoded.
    pub dropped: u64,
    /// Request attempts that ran out of time.
    pub timeouts: u64,
    /// Requests sent again after a timeout.
    pub retries: u64,
    /// Requests the transport reported as failed.
    pub send_failures: u64,
    /// Store requests accepted and refused (full).
    pub stores_accepted: u64,
    /// Store requests refused because the node was full for the key.
    pub stores_refused: u64,
    /// Gets, puts and lookups started.
    pub queries_started: u64,
    /// Self-lookups started because a contact arrived while the routing table was empty.
    pub rejoins: u64,
    /// Times the node moved to another cluster, at any level.
    pub cluster_changes: u64,
    /// Values held now, all levels.
    pub values_stored: usize,
    /// Keys with values now, all levels.
    pub keys_stored: usize,
    /// Keys this node is loaded for now (more than beta requests in the window), all levels.
    pub keys_loaded: usize,
    /// Peers whose RTT and clusters the node remembers now.
    pub peers_known: usize,
    /// Contacts in the level-0 routing table now: none means the node cannot route and must
    /// join again.
    pub routing_peers: usize,
    /// Requests waiting for an answer now.
    pub rpcs_in_flight: usize,
    /// Queries running now.
    pub queries_running: usize,
}

/// A contact in a routing table, with what we know of its RTT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The contact.
    pub contact: Contact,
    /// Lowest RTT measured, if any.
    pub min_rtt: Option<Duration>,
}

/// One level as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelSnapshot {
    /// The level.
    pub level: Level,
    /// RTT threshold of its clusters (`None` at level 0).
    pub threshold: Option<Duration>,
    /// The node's cluster (0 at level 0).
    pub cluster: ClusterId,
    /// Age of that cluster.
    pub cluster_age: Duration,
    /// The node's estimate of the cluster's size.
    pub size_estimate: u32,
    /// Routing table: (bucket index, contacts least-recently-seen first).
    pub buckets: Vec<(u32, Vec<PeerSnapshot>)>,
    /// Keys and values stored at this level.
    pub keys: usize,
    /// Values stored at this level.
    pub values: usize,
}

/// The node's clusters and routing tables at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The node.
    pub id: NodeId,
    /// Level 0 first.
    pub levels: Vec<LevelSnapshot>,
}
