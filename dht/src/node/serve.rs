//! Answering requests from other nodes.

use std::time::Instant;

use super::Node;
use crate::id::{Contact, Key, NodeId};
use crate::wire::{Level, MAX_CONTACTS, RequestBody, ResponseBody};

impl Node {
    /// The answer to one request. Pure with respect to the network: it only reads and updates
    /// local tables and stores.
    ///
    /// At levels above 0 a requester outside our cluster gets empty answers: our table and
    /// store at that level belong to a cluster it is not in, and routing it through them would
    /// leak its lookups out of its own cluster. `shared`: the levels the requester shares with
    /// us, a bit per level (`Clustering::shared_levels`).
    pub(super) fn serve(
        &mut self,
        now: Instant,
        from: &NodeId,
        shared: u32,
        body: RequestBody,
    ) -> ResponseBody {
        let level = match &body {
            RequestBody::Ping => Level::GLOBAL,
            RequestBody::FindNode { level, .. }
            | RequestBody::Get { level, .. }
            | RequestBody::PutProbe { level, .. }
            | RequestBody::Store { level, .. } => *level,
        };
        if !self.level_ok(level) {
            return ResponseBody::Refused;
        }
        if shared & (1 << level.index()) == 0 {
            return ResponseBody::empty_for(&body);
        }
        match body {
            RequestBody::Ping => ResponseBody::Pong,
            RequestBody::FindNode { level, target } => ResponseBody::Nodes {
                closer: self.closer(level, &target),
            },
            RequestBody::Get { level, key } => {
                let store = &mut self.stores[level.index()];
                store.record_request(key, now);
                let values = store.get(&key, now, self.config.max_values_per_response);
                ResponseBody::Values {
                    values,
                    closer: self.closer(level, &key),
                }
            }
            RequestBody::PutProbe { level, key, ttl } => {
                let store = &mut self.stores[level.index()];
                store.record_request(key, now);
                ResponseBody::Probe {
                    full: store.is_full(&key, ttl, now),
                    loaded: store.is_loaded(&key, now),
                    accepts: store.accepts(&key, from, ttl, now),
                    closer: self.closer(level, &key),
                }
            }
            RequestBody::Store {
                level,
                key,
                value,
                ttl,
            } => {
                let accepted = self.stores[level.index()].store(key, value, ttl, now);
                if accepted {
                    self.stats.stores_accepted += 1;
                } else {
                    self.stats.stores_refused += 1;
                }
                ResponseBody::Stored { accepted }
            }
        }
    }

    fn level_ok(&self, level: Level) -> bool {
        level.index() < self.config.levels()
    }

    fn closer(&self, level: Level, target: &Key) -> Vec<Contact> {
        self.tables[level.index()].closest(target, self.config.k.min(MAX_CONTACTS))
    }
}
