//! The seam to the rest of the network: who near this node has an object, and telling them
//! that this node has it. The proxy knows nothing of the DHT or libp2p; `reef-node`
//! implements [`Directory`] over the overlay, and tests use in-memory fakes.
//!
//! A miss asks [`Directory::locate`] (a time-budgeted lookup of the nearest holders). If a
//! holder answers, the object comes from it with [`Directory::fetch`], with the same
//! streaming semantics as an origin fetch: the holder may still be downloading it. If none
//! does, [`Directory::claim`] announces that this node is fetching it (a *pending* entry,
//! so a crowd arriving elsewhere waits for this node instead of the origin) and names an
//! earlier claimant to fetch from instead, if there is one. After the fetch the object is
//! announced as cached; the node's directory keeps renewing that while the object stays in
//! the cache.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::purge::message::PurgeTarget;

/// A node that holds an object or is fetching it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The node, in the directory's own terms (printable: it appears in logs).
    pub name: String,
    /// It is still fetching the object from the origin.
    pub pending: bool,
}

/// What this node now does with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// It has the object in its cache (announce, and keep renewing while it stays there).
    Cached,
    /// Its fetch failed or the object was not storable: stop announcing it.
    Dropped,
}

impl Holding {
    /// How a fetch that stored the object (or not) leaves this node holding it.
    pub fn after_fetch(stored: bool) -> Holding {
        if stored {
            Holding::Cached
        } else {
            Holding::Dropped
        }
    }
}

/// What a peer is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRequest {
    /// The cache key (`http://host:port/path?query`).
    pub key: String,
    /// The client's request headers that select a representation (for `Vary`).
    pub headers: HeaderMap,
    /// Bytes of the body to skip (a resumed transfer).
    pub offset: u64,
    /// The client request's trace ID, for the peer's logs.
    pub trace: Option<String>,
}

/// A piece of a peer's answer body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerChunk {
    /// More of the body.
    Data(Bytes),
    /// The body is complete; SHA-256 of all of it (from offset 0).
    End {
        /// The digest the receiver checks.
        sha256: [u8; 32],
    },
}

/// Why a peer could not serve an object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// It does not have the object (any more).
    #[error("the peer does not have the object")]
    NotFound,
    /// It could not be reached, or the transfer broke off.
    #[error("peer transfer failed: {0}")]
    Transfer(String),
    /// It sent something that is not the protocol.
    #[error("peer sent a malformed answer: {0}")]
    Protocol(String),
    /// The bytes it sent do not hash to the digest it sent.
    #[error("the peer's body does not match its SHA-256")]
    WrongBytes,
}

/// A body arriving from a peer: data chunks, then `End` (anything else is a failure).
pub type PeerBody = Pin<Box<dyn Stream<Item = Result<PeerChunk, PeerError>> + Send>>;

/// A peer's answer.
pub struct PeerResponse {
    /// The stored status.
    pub status: StatusCode,
    /// The stored headers, with the peer's `Age`.
    pub headers: HeaderMap,
    /// The peer's `Cache-Status` entry for this answer.
    pub cache_status: Option<HeaderValue>,
    /// The body from the requested offset.
    pub body: PeerBody,
}

impl fmt::Debug for PeerResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Who near this node has an object, and telling them this node has it.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + fmt::Debug + 'static {
    /// The nearest holders of `key`, nearest first; empty when none is found within the
    /// directory's time budget (the caller then goes to the origin).
    async fn locate(&self, key: &str, trace: Option<&str>) -> Vec<Holder>;

    /// This node is about to fetch `key` from the origin: announces it as pending and returns
    /// a holder that claimed it first, to fetch from instead. The pending entry is renewed
    /// until [`Directory::announce`] says how the fetch ended.
    async fn claim(&self, key: &str, trace: Option<&str>) -> Option<Holder>;

    /// How this node now holds `key`.
    fn announce(&self, key: &str, holding: Holding);

    /// Fetches an object from a holder.
    async fn fetch(&self, from: &Holder, req: PeerRequest) -> Result<PeerResponse, PeerError>;

    /// A holder served something wrong: stop using it.
    fn report(&self, from: &Holder, problem: &PeerError);

    /// A purge removed what `target` covers here: stop announcing it.
    fn withdraw(&self, _target: &PurgeTarget) {}

    /// A purge a client sent this node was accepted: send its signed message to every other
    /// node (each checks it itself).
    fn flood(&self, _purge: &[u8]) {}
}
