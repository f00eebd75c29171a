//! A Coral-style hierarchical, locality-clustered, sloppy Kademlia DHT as a pure state machine.
//!
//! `dht` performs no IO and never reads a clock or an entropy source. Time arrives as the
//! `now: Instant` argument, randomness comes from [`Config::rng_seed`], and bytes leave as
//! [`Transmit`]s that the caller delivers. `node` drives it over libp2p; `sim` drives thousands
//! of them in virtual time. Both run the same code, so the same seed and the same inputs give
//! the same outputs.
//!
//! What it is (Coral, NSDI 2004, section 4):
//! - **Kademlia** underneath: 256-bit IDs (SHA-256), XOR metric, k-buckets with
//!   least-recently-seen eviction and a replacement cache, iterative lookups with `alpha`
//!   requests in flight that route around nodes that do not answer.
//! - **Hierarchy**: level 0 is global; level 1 and 2 are clusters of nodes within 60 ms and
//!   20 ms of each other, formed and merged from RTT samples. One routing table and one store
//!   per level; a get searches the most local level first.
//! - **Sloppy storage**: a key holds a set of values (proxies caching a URL) with their own
//!   TTLs; puts stop before nodes that are *full* and *loaded*, so a hot key spreads over many
//!   nodes instead of melting the k closest.
//!
//! What it is not: a general key-value store (values are contacts), a transport, or a
//! security boundary (the network secret in `node` keeps outsiders away).
//!
//! ```text
//!            commands (get/put/bootstrap)        handle_input / handle_rtt / handle_timeout
//!                       │                                      │
//!                       ▼                                      ▼
//!   ┌────────────────────────────── Node ───────────────────────────────────┐
//!   │ queries (ClosestIter per level)   rpcs (deadlines, retries)           │
//!   │ tables[level]  stores[level]      clusters (RTTs, descriptors)        │
//!   └───────────────────────────────────────────────────────────────────────┘
//!          │ poll_transmit                │ poll_event               │ poll_timeout
//!          ▼                              ▼                          ▼
//!     driver sends bytes (wire)     GetDone, PutDone, ...     driver arms one timer
//! ```
//!
//! # Layout
//! - [`node`](Node): the state machine; `node/drive.rs` runs queries, `node/serve.rs` answers,
//!   `node/maintain.rs` handles time.
//! - `config.rs`: [`Config`] with Coral's defaults.
//! - `id.rs`: [`NodeId`], [`Key`], [`Distance`], [`Contact`].
//! - `cluster.rs`: cluster membership from RTTs and headers.
//! - `routing/`: per-level k-bucket tables.
//! - `query/`: the lookup iterator and query state.
//! - `store.rs`: the sloppy store with full/loaded accounting.
//! - `rpc.rs`: outstanding requests, deadlines, retries.
//! - [`wire`]: messages and their bounded, versioned encoding.
//! - `stats.rs`: counters and snapshots for operators.
//!
//! # Example
//! `examples/single_node.rs` drives one node by hand: a put and a get on a node alone, which
//! stores and finds the value locally. `dht/src/tests/net.rs` drives a few hundred in virtual
//! time.
#![warn(missing_docs)]

mod bounded;
mod cluster;
mod config;
mod error;
mod id;
mod io;
mod node;
mod query;
mod routing;
mod rpc;
mod stamp;
mod stats;
mod store;
pub mod wire;

#[cfg(test)]
#[path = "../testkit/clock.rs"]
mod test_clock;
#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use error::QueryError;
pub use id::{Addr, Contact, Distance, ID_LEN, Key, NodeId};
pub use io::{Event, Found, InboundId, Input, Placement, QueryId, RpcId, Transmit};
pub use node::Node;
pub use stats::{KindCounts, LevelSnapshot, PeerSnapshot, Snapshot, Stats};
pub use wire::{
    ClusterDescriptor, ClusterId, DecodeError, Header, Level, Request, RequestBody, Response,
    ResponseBody, Value,
};
