//! reef-sim: a discrete-event simulator of whole reef overlays in virtual time — not yet
//! implemented.
//!
//! What will live here: thousands of real `dht::Node`s driven by one event queue ordered by
//! (virtual time, sequence number) and one seeded RNG; a measured RTT matrix or a geographic
//! latency model, loss, churn, partitions and secret groups; modelled proxies, caches and
//! origins; and the Coral paper's scenarios run side by side with flat Kademlia and no
//! cooperation on the same seed. The in-crate test network of `reef-dht`
//! (`dht/src/tests/net.rs`) is its small precursor.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
