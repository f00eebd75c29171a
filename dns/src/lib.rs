//! reef-dns: the authoritative nameserver for the CDN zone — not yet implemented.
//!
//! What will live here: hickory-server answering any name under `<zone>` with a few live
//! proxies near the client (EDNS Client Subnet or the resolver's address, located with a
//! GeoIP database), NS records for nameservers near the client, SOA and NS at the apex, and
//! response rate limiting. The answer logic is a pure function of (query, client, roster).
//!
//! It knows nothing of the DHT: it declares the `Roster` trait it needs ("live proxies and
//! nameservers near this client") and `node` implements it.
#![forbid(unsafe_code)]
