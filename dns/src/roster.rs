//! What the nameserver needs to know about the network: which proxies are alive, where they
//! are and how much they can take. `node` implements [`Roster`] from the overlay; tests use
//! in-memory fakes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::geo::Location;

/// A proxy (and nameserver) of the network, as the roster last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    /// Its public address: what A/AAAA records carry.
    pub addr: IpAddr,
    /// Where it is, if configured (`--location`); else looked up from `addr`.
    pub location: Option<Location>,
    /// Spare capacity it announced, as a weight (e.g. spare bytes per second); 0 = none.
    pub spare: f64,
    /// Over its bandwidth quota: leaves answers until it recovers.
    pub overloaded: bool,
    /// When it was last heard alive.
    pub last_seen: Instant,
    /// It also serves DNS for the zone (goes into NS records).
    pub nameserver: bool,
}

/// The roster at one instant.
#[derive(Debug, Clone)]
pub struct RosterSnapshot {
    /// When the snapshot was taken (ages are measured from here).
    pub now: Instant,
    /// This node: answered when no other proxy is known alive.
    pub me: Proxy,
    /// Other proxies known to the node.
    pub others: Vec<Proxy>,
}

impl RosterSnapshot {
    /// A roster of just this node.
    pub fn alone(me: Proxy) -> Self {
        RosterSnapshot {
            now: me.last_seen,
            me,
            others: Vec::new(),
        }
    }

    /// Proxies seen within `alive_within` and not overloaded, this node first; if none
    /// qualifies, this node alone (a name must resolve to something).
    pub fn live(&self, alive_within: Duration) -> Vec<&Proxy> {
        let live: Vec<&Proxy> = std::iter::once(&self.me)
            .chain(&self.others)
            .filter(|p| {
                !p.overloaded && self.now.saturating_duration_since(p.last_seen) <= alive_within
            })
            .collect();
        if live.is_empty() {
            vec![&self.me]
        } else {
            live
        }
    }
}

/// Source of roster snapshots; cheap to call once per query.
pub trait Roster: Send + Sync + 'static {
    /// The current roster.
    fn snapshot(&self) -> RosterSnapshot;
}

/// A roster that never changes (a single node before the overlay, and tests).
#[derive(Debug, Clone)]
pub struct StaticRoster(pub RosterSnapshot);

impl Roster for StaticRoster {
    /// The fixed roster, read now: this node is alive, the others as last seen.
    fn snapshot(&self) -> RosterSnapshot {
        let now = Instant::now();
        let mut s = self.0.clone();
        s.now = now;
        s.me.last_seen = now;
        s
    }
}
