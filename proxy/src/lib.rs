//! reef-proxy: the RFC 9111 caching proxy that shields dying origins.
//!
//! A request for `host[.port].<zone>` (or the single-label form) names its origin. The proxy
//! serves a fresh cached copy, else fetches it from a nearby peer that a `Directory` names,
//! else from the origin behind a per-origin concurrency limit, collapsing concurrent misses
//! into one fetch, and announces what it caches. It knows nothing of the DHT or libp2p.
//!
//! Built so far: routing (Host header to origin, the 400 page, `Location` rewriting), RFC 9111
//! decisions, a memory tier with `Vary` variants and a disk tier that survives restarts,
//! collapsed fetches on a shared growing body, revalidation with 304 merges, conditionals and
//! byte ranges, stale copies on origin failure, HTTP and HTTPS origins with the private-address
//! check at connection time, the `Directory` seam for peers, a bandwidth quota. Rate limits
//! and fair share; publishers' purges, opt-out and mirrors ([`purge`], [`site`]).
//!
//! ```text
//!  client ─▶ server.rs ─▶ service.rs: route ─▶ store (fresh? render) ─▶ in flight? join
//!                                               │                         │
//!                                               └─ stale / miss ─▶ fetch ─┴─▶ connect.rs ─▶ origin
//!                              render.rs: 304 / 206 / 416 / 200 with Age, Via, Cache-Status
//! ```
//!
//! # Layout
//! - [`route`]: Host header -> [`Route`](route::Route); redirects kept on the CDN.
//! - [`cache::control`], [`cache::freshness`], [`cache::conditional`]: RFC 9111/9110 decisions.
//! - [`store`]: the memory tier; [`body`]: the shared growing body.
//! - [`service`]: one request, end to end; `render.rs`: one response for one client.
//! - [`connect`]: resolver, TLS and the origin client; [`headers`]: header rules.
//! - [`server`]: `run(listener, proxy, shutdown)`.
#![forbid(unsafe_code)]

pub mod body;
pub mod cache;
pub mod connect;
mod digest;
pub mod directory;
pub mod disk;
mod fetch;
pub mod headers;
mod keepalive;
pub mod limits;
pub mod meter;
mod mirror;
pub mod pagecache;
mod parking;
mod pass;
mod peer;
pub mod purge;
pub mod quota;
pub mod reader;
mod render;
pub mod route;
pub mod server;
pub mod service;
pub mod site;
pub mod stats;
pub mod store;
pub mod tls;
pub mod trace;
pub mod zerocopy;

pub use service::{Config, Proxy};
