//! reef-proxy: the RFC 9111 caching proxy that shields dying origins.
//!
//! A request for `host[.port].<zone>` (or the single-label form) names its origin. The proxy
//! serves a fresh cached copy, else fetches it from a nearby peer that a `Directory` names,
//! else from the origin behind a per-origin concurrency limit, collapsing concurrent misses
//! into one fetch, and announces what it caches. It knows nothing of the DHT or libp2p.
//!
//! Built so far: routing (Host header to origin, the 400 page, `Location` rewriting) and the
//! caching decisions (Cache-Control, storability, freshness, age, stale use). The hyper
//! server, the store and the fetch path come next.
//!
//! # Layout
//! - [`route`]: Host header -> [`Route`](route::Route); redirects kept on the CDN.
//! - [`cache::control`]: Cache-Control parsing.
//! - [`cache::freshness`]: storable, freshness lifetime, age, stale use (RFC 9111, RFC 5861).
#![forbid(unsafe_code)]

pub mod body;
pub mod cache;
pub mod connect;
pub mod headers;
mod render;
pub mod route;
pub mod server;
pub mod service;
pub mod store;

pub use service::{Config, Proxy};
