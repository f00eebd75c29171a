//! What the nameserver needs to know about the network: which proxies are alive, where they
//! are and how much they can take. `node` implements [`Roster`] from the overlay; tests use
//! in-memory fakes.

use std::net::IpAddr;
use std::sync::Arc;
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

/// The roster as last updated: shared, never copied per query.
#[derive(Debug, Clone)]
pub struct RosterSnapshot {
    /// This node: alive by definition (it is answering), and answered when no other proxy is.
    pub me: Proxy,
    /// Other proxies known to the node.
    pub others: Vec<Proxy>,
}

impl RosterSnapshot {
    /// A roster of just this node.
    pub fn alone(me: Proxy) -> Self {
        RosterSnapshot {
            me,
            others: Vec::new(),
        }
    }

    /// Proxies not overloaded and (other than this node) seen within `alive_within` of
    /// `now`, this node first; if none qualifies, this node alone (a name must resolve to
    /// something).
    pub fn live(&self, now: Instant, alive_within: Duration) -> Vec<&Proxy> {
        let me = Some(&self.me).filter(|p| !p.overloaded);
        // One subtraction per query rather than one per proxy. Before the clock has run
        // `alive_within` (just after boot), everything heard of is recent enough.
        let cutoff = now.checked_sub(alive_within);
        let others = self
            .others
            .iter()
            .filter(|p| !p.overloaded && cutoff.is_none_or(|t| p.last_seen >= t));
        let mut live: Vec<&Proxy> = Vec::with_capacity(self.others.len() + 1);
        live.extend(me.into_iter().chain(others));
        if live.is_empty() {
            vec![&self.me]
        } else {
            live
        }
    }
}

/// Source of roster snapshots; called once per query, so it hands out a shared snapshot
/// rather than building one.
pub trait Roster: Send + Sync + 'static {
    /// The current roster.
    fn snapshot(&self) -> Arc<RosterSnapshot>;
}

/// A roster that never changes (a single node before the overlay, and tests).
#[derive(Debug, Clone)]
pub struct StaticRoster(pub Arc<RosterSnapshot>);

impl StaticRoster {
    /// A fixed roster.
    pub fn new(snapshot: RosterSnapshot) -> Self {
        StaticRoster(Arc::new(snapshot))
    }
}

impl Roster for StaticRoster {
    fn snapshot(&self) -> Arc<RosterSnapshot> {
        self.0.clone()
    }
}
