//! Why a query finished without the result asked for.

use crate::id::{Key, NodeId};

/// Why a get or put failed. Carries what the caller needs to retry or report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No node at any level returned a value before the get ran out of closer nodes.
    #[error("no value for key {key}")]
    NotFound {
        /// The key sought.
        key: Key,
        /// The closest nodes that answered at level 0, nearest first.
        closest: Vec<NodeId>,
    },
    /// The query deadline (`Config::query_timeout`) passed first.
    #[error("query for key {key} timed out")]
    Timeout {
        /// The key of the query.
        key: Key,
    },
    /// No node at any level, the local one included, accepted the value.
    #[error("no node accepted a value for key {key}")]
    NotStored {
        /// The key of the put.
        key: Key,
    },
}
