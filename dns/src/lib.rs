//! reef-dns: the authoritative nameserver that sends each client to live proxies near it.
//!
//! Publishing with reef is only a hostname change (`www.example.com` ->
//! `www.example.com.<zone>`), so DNS is how clients find a nearby proxy. For any name under
//! the zone that encodes an origin, the server answers with a few proxies that were seen
//! alive recently and are nearest the client (EDNS Client Subnet, else the resolver's
//! address, located with a GeoIP database); NS records name nameservers near the client.
//!
//! ```text
//!  TCP ──▶ server.rs (hickory Server) ─┐
//!  UDP ──▶ udp.rs (one loop per core) ─┴▶ handler.rs (the hickory adapter: parse, RRL,
//!                                          │  EDNS, ECS, truncation, encode)
//!                                          ├──▶ wire.rs: positive UDP answers to bytes
//!                                          ▼
//!              answer.rs: answer(question, client, roster snapshot, geo, settings)  (pure)
//!                   │                 │
//!               name.rs           Roster (trait; node implements it) + geo.rs (maxminddb)
//! ```
//!
//! What it is not: a general-purpose authoritative server (no zone files, no DNSSEC, no
//! zone transfers) or a resolver. It never imports the DHT: `node` supplies the roster.
//!
//! # Layout
//! - [`name`]: CDN names (origin encodings, nameserver names).
//! - [`answer`](mod@answer): the pure answer function.
//! - [`roster`]: the [`Roster`] trait and snapshots.
//! - [`geo`]: GeoIP lookups and background reload.
//! - [`rrl`]: response rate limiting.
//! - `handler.rs`, `server.rs`: hickory-server adapter and `run`; `udp.rs`: the UDP
//!   loops (hickory-server's spawned a task per datagram); `wire.rs`: the common positive
//!   answer written without hickory's allocating encoder, checked against it by a test.
#![forbid(unsafe_code)]

// With default features off, only `name` is built: the proxy shares the CDN name codec
// without pulling in hickory.
pub mod name;
pub use name::{NameError, Origin, ZoneName, ZoneSuffix};

#[cfg(feature = "server")]
pub mod answer;
#[cfg(feature = "server")]
pub mod geo;
#[cfg(feature = "server")]
pub mod handler;
#[cfg(feature = "server")]
pub mod roster;
#[cfg(feature = "server")]
pub mod rrl;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod udp;
#[cfg(feature = "server")]
mod wire;

#[cfg(feature = "server")]
pub use answer::{Answer, ClientInfo, QType, Question, Settings, answer};
#[cfg(feature = "server")]
pub use geo::{Geo, Location};
#[cfg(feature = "server")]
pub use handler::{DnsStats, Handler};
#[cfg(feature = "server")]
pub use roster::{Proxy, Roster, RosterSnapshot, StaticRoster};
#[cfg(feature = "server")]
pub use rrl::{Rrl, RrlConfig, Verdict};
#[cfg(feature = "server")]
pub use server::{Running, start};
