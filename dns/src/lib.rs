//! reef-dns: the authoritative nameserver that sends each client to live proxies near it.
//!
//! Publishing with reef is only a hostname change (`www.example.com` ->
//! `www.example.com.<zone>`), so DNS is how clients find a nearby proxy. For any name under
//! the zone that encodes an origin, the server answers with a few proxies that were seen
//! alive recently and are nearest the client (EDNS Client Subnet, else the resolver's
//! address, located with a GeoIP database); NS records name nameservers near the client.
//!
//! ```text
//!  UDP/TCP ──▶ server.rs (hickory Server) ──▶ handler.rs (the only hickory adapter)
//!                                               │  RRL, EDNS, ECS, truncation
//!                                               ▼
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
//! - [`answer`]: the pure answer function.
//! - [`roster`]: the [`Roster`] trait and snapshots.
//! - [`geo`]: GeoIP lookups and background reload.
//! - [`rrl`]: response rate limiting.
//! - `handler.rs`, `server.rs`: hickory-server adapter and `run`.
#![forbid(unsafe_code)]

pub mod answer;
pub mod geo;
pub mod handler;
pub mod name;
pub mod roster;
pub mod rrl;
pub mod server;

pub use answer::{Answer, ClientInfo, QType, Question, Settings, answer};
pub use geo::{Geo, Location};
pub use handler::{DnsStats, Handler};
pub use name::{NameError, Origin, ZoneName, ZoneSuffix};
pub use roster::{Proxy, Roster, RosterSnapshot, StaticRoster};
pub use rrl::{Rrl, RrlConfig, Verdict};
pub use server::{Running, start};
