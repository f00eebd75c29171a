//! reef-node: the `reef` binary's library — one volunteer node.
//!
//! A reef node is at once a nameserver for the CDN zone, a caching HTTP proxy, and a node of
//! the hierarchical sloppy DHT (`reef-dht`) that finds nearby proxies caching an object. This
//! crate wires them: configuration, the command line, the overlay transport driving the DHT
//! state machine, and the `proxy::Directory` / `dns::Roster` implementations.
//!
//! At this stage it runs the DHT alone over a plain UDP transport bound to loopback
//! ([`udp`]), which exercises the sans-IO contract with real sockets. The libp2p overlay
//! keyed by the network secret, the proxy and the nameserver replace and join it later.
//!
//! # Layout
//! - `main.rs`: the command line.
//! - [`udp`]: the interim loopback transport and event loop around `dht::Node`.
#![forbid(unsafe_code)]

pub mod overlay;
pub mod secret;
pub mod udp;
