//! reef-node: the `reef` binary's library — one volunteer node.
//!
//! A reef node is at once a nameserver for the CDN zone, a caching HTTP proxy, and a node of
//! the hierarchical sloppy DHT (`reef-dht`) that finds nearby proxies caching an object. This
//! crate wires them: the libp2p overlay keyed by the network secret driving the DHT state
//! machine, the `proxy::Directory` over it, peer-to-peer object transfer, the admin port and
//! the command line.
//!
//! # Layout
//! - `main.rs`: the command line; [`run`]: `reef node` (options, start, stop); [`cli`]: the
//!   small commands.
//! - [`config_file`]: `--config FILE` (TOML) as command-line words.
//! - [`secret`]: the network secret and the pre-shared key derived from it.
//! - [`overlay`]: the swarm, the DHT codec, the driver loop, object transfer.
//! - [`directory`]: `proxy::Directory` over the overlay (locate, claim, announce, renew).
//! - [`roster`]: `dns::Roster` over the overlay (live proxies for DNS answers).
//! - [`data_dir`]: identity and known peers across restarts.
//! - [`admin`]: `/status` and `/metrics`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config_file;
pub mod data_dir;
pub mod directory;
pub mod hex;
pub mod overlay;
pub mod publisher;
pub mod purges;
pub mod reference;
pub mod roster;
pub mod run;
pub mod secret;
