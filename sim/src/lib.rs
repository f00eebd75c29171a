//! reef-sim: a discrete-event simulator of whole reef overlays in virtual time.
//!
//! Operators decide how to run a network (cluster thresholds, k, TTLs, when to roll the
//! secret) by simulating it first. Every node is a real [`dht::Node`], the same code `reef`
//! runs; proxies, caches and the origin are modelled. One event queue ordered by (virtual
//! time, sequence number) and one seed make every run replayable: the same scenario, variant
//! and seed give the same event trace (`tests/determinism.rs`).
//!
//! ```text
//!   Scenario (preset) + Variant (coral | flat | none) + seed
//!        │
//!        ▼
//!   Sim ── EventQueue<Ev> (timing wheel) ── step():
//!        │   Deliver → dht::Node::handle_input     Wake → handle_timeout
//!        │   Arrival/Client → proxy logic (cache → DHT get → peer | origin)
//!        │   Crash/Restart/Partition/Rekey → faults
//!        │   (hosts' Deliver and Wake run side by side in parallel windows: window.rs)
//!        ▼
//!   Metrics → VariantReport → Report (JSON), plots (SVG)
//! ```
//!
//! What it is not: a packet-level network simulator. Links have a latency (measured or from
//! distance), jitter and loss; transfers have bandwidth; there is no congestion between
//! unrelated flows.
//!
//! # Layout
//! - `engine.rs`: [`Sim`], hosts, message delivery, the event loop; [`Variant`].
//! - `client.rs`: the proxy logic per request; `proxy.rs`: caches and the origin model.
//! - `workload.rs`: request generation; `faults.rs`: churn, partitions, secret rollout.
//! - [`scenario`]: the named presets; [`latency`]: PlanetLab matrix and geographic model.
//! - [`queue`]: the timing-wheel event queue; [`metrics`]: counters and the JSON report.
//! - `window.rs`: parallel windows of hosts' DHT work, bounded by the lookahead.
//! - `plot.rs`: SVG plots; `run.rs`: running variants side by side.
//!
//! Data: the PlanetLab RTT matrix of Zhu et al. (IEEE/ACM ToN 2017, MIT licence) and world
//! cities from GeoNames (CC BY 4.0); see `sim/data/README.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod engine;
mod faults;
pub mod latency;
pub mod metrics;
pub mod plot;
mod proxy;
pub mod queue;
mod run;
pub mod scenario;
mod window;
mod workload;

pub use engine::{Sim, Variant};
pub use run::{RunOptions, run_variants};
