//! Locality hints (Coral, section 4.3): nodes that share a place in the network (a driver
//! names it, e.g. by its address prefix or first routers) announce themselves under a key
//! made from that name at level 0, and a node still alone in a cluster looks the keys up to
//! meet the neighbours it has not heard of.
//!
//! Why: a node learns of peers through its level-0 lookups, which reach random nodes all
//! over the world. In a simulated flash crowd of 10,000 nodes on 490 sites, 1,123 nodes
//! (one in nine) were still alone in their level-1 cluster after the five-minute warm-up:
//! nodes on sparse sites never heard from their own site's other nodes. These gets and puts
//! are the node's own business: their outcomes stay inside (no [`Event`](crate::Event));
//! what the gets find is pinged, so its round trips and cluster descriptors reach the
//! cluster decisions.

use std::time::{Duration, Instant};

use super::Node;
use crate::id::Key;
use crate::io::QueryId;
use crate::rpc::Purpose;
use crate::wire::{Level, RequestBody, Value};

#[derive(Debug, Default)]
pub(super) struct Locality {
    keys: Vec<Key>,
    /// When to announce ourselves again; `None`: at the next chance.
    next_put: Option<Instant>,
    next_get: Option<Instant>,
    /// The hint queries running: their outcomes are not reported.
    running: Vec<QueryId>,
    /// After gets that found no one: how long until the next (zero after one that did).
    get_backoff: Duration,
}

impl Locality {
    /// Whether `query` is a hint query; it then stops being one.
    pub(super) fn take(&mut self, query: QueryId) -> bool {
        let before = self.running.len();
        self.running.retain(|q| *q != query);
        self.running.len() != before
    }
}

impl Node {
    /// Names where the node sits in the network, as keys (e.g. hashes of its address prefix,
    /// or of its first routers as Coral used): nodes that share a key find each other even
    /// when their lookups never crossed. An empty list turns the hints off.
    pub fn set_locality(&mut self, keys: Vec<Key>) {
        self.locality.keys = keys;
        self.locality.next_put = None;
        self.locality.next_get = None;
    }

    /// Announces the node under its locality keys every `locality_interval`, and looks them
    /// up as often while it is alone in its cluster at some level. Runs with the cluster
    /// checks, once the node knows someone, and only where there are clusters to find.
    pub(super) fn locality_step(&mut self, now: Instant) {
        if self.locality.keys.is_empty() || self.tables[0].is_empty() || self.config.levels() < 2 {
            return;
        }
        let every = self.config.locality_interval;
        let due = |at: Option<Instant>| at.is_none_or(|at| at <= now);
        if due(self.locality.next_put) {
            self.locality.next_put = now.checked_add(every);
            let value = Value {
                holder: self.me.clone(),
                pending: false,
            };
            // `Config::validate` keeps twice the interval within `max_ttl`.
            let ttl = every.saturating_mul(2);
            for key in self.locality.keys.clone() {
                let id = self.start_hint();
                self.start_put(now, id, (key, value.clone(), ttl), Level::GLOBAL);
            }
        }
        let alone = self.sizes.iter().any(|s| *s <= 1);
        if alone && due(self.locality.next_get) {
            self.locality.next_get = now.checked_add(every);
            for key in self.locality.keys.clone() {
                let id = self.start_hint();
                // At level 0 alone, where hints are put: a get that starts there never moves
                // down a level, so it reports no `GetProgress` either.
                self.start_get(now, id, key, Level::GLOBAL);
            }
        }
    }

    /// A query ID known as a hint's before the query takes its first step.
    fn start_hint(&mut self) -> QueryId {
        let id = self.next_query_id();
        self.locality.running.push(id);
        id
    }

    /// A hint get found `values` (none if it failed): pings the neighbours not yet timed. A
    /// get that found no one is repeated sooner than the interval, after
    /// `cluster_check_max_interval` and then twice as long each time: a node that starts
    /// before its neighbours have announced themselves should not stay alone for half an
    /// hour, and one alone on its network for good should not ask every minute.
    pub(super) fn on_locality_found(&mut self, now: Instant, values: Vec<Value>) {
        let every = self.config.locality_interval;
        if values.iter().all(|v| v.holder.id == self.me.id) {
            // Not `clamp`: the interval may be set below the check interval.
            let backoff = self.locality.get_backoff.saturating_mul(2);
            let backoff = backoff
                .max(self.config.cluster_check_max_interval)
                .min(every);
            self.locality.get_backoff = backoff;
            self.locality.next_get = now.checked_add(backoff);
        } else {
            self.locality.get_backoff = Duration::ZERO;
        }
        for v in values {
            if v.holder.id != self.me.id && self.clusters.min_rtt(&v.holder.id).is_none() {
                self.send_request(now, v.holder, RequestBody::Ping, Purpose::ClusterProbe);
            }
        }
    }
}
