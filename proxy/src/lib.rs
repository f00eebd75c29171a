//! reef-proxy: the caching HTTP proxy (hyper) — not yet implemented.
//!
//! What will live here: a request for `host[.port].<zone>` (or the single-label form) names
//! its origin; the proxy serves a fresh cached copy (RFC 9111), else fetches it from a nearby
//! peer that a `Directory` names, else from the origin behind a per-origin concurrency limit,
//! collapsing concurrent misses into one fetch and announcing what it caches.
//!
//! It knows nothing of the DHT or libp2p: it declares the small `Directory` trait it needs
//! ("who near me has this URL?", "I have it now") and `node` implements it.
#![forbid(unsafe_code)]
