//! Time-driven work: request timeouts and retries, cluster checks, bucket refresh, expiry;
//! and the bookkeeping every answered or failed request triggers.

use std::time::Instant;

use rand::{Rng, RngExt};

use super::{Node, Timers};
use crate::id::{ID_LEN, Key};
use crate::io::{Event, RpcId, Transmit};
use crate::routing::Insert;
use crate::rpc::{Outstanding, Purpose};
use crate::wire::{Level, RequestBody, Response, ResponseBody};

impl Node {
    pub(super) fn on_timeout(&mut self, now: Instant) {
        while let Some(rpc) = self.rpcs.pop_expired(now) {
            self.on_rpc_timeout(now, rpc);
        }
        self.expire_queries(now);
        let Some(timers) = self.timers else { return };
        if timers.cluster_check <= now {
            self.check_clusters(now);
        }
        if timers.refresh <= now {
            self.refresh(now);
        }
    }
    fn on_rpc_timeout(&mut self, now: Instant, rpc: RpcId) {
        self.stats.timeouts += 1;
        self.retry_or_fail(now, rpc);
    }

    /// An attempt went unanswered (timed out, or the transport failed it): sends another
    /// while retries remain, else gives up on the peer.
    pub(super) fn retry_or_fail(&mut self, now: Instant, rpc: RpcId) {
        let Some(out) = self.rpcs.get(rpc) else {
            return;
        };
        if let Purpose::Query { query, .. } = out.purpose
            && !self.queries.contains_key(&query)
        {
            // Its query is over: no retry, and one silence is too little to evict the peer.
            self.rpcs.finish(rpc);
            return;
        }
        if out.attempt < self.config.rpc_retries {
            let timeout = self.config.rpc_timeout;
            let Some(new) = self.rpcs.retry(rpc, now, timeout) else {
                return;
            };
            let Some(out) = self.rpcs.get(new).cloned() else {
                return;
            };
            self.stats.retries += 1;
            self.stats.requests_out.count(&out.req.body);
            self.transmits.push_back(Transmit::Request {
                to: out.to.clone(),
                rpc: new,
                req: out.req.clone(),
            });
            if let Purpose::Query { query, level } = out.purpose {
                self.on_query_slow(now, query, level, &out);
            }
            return;
        }
        if let Some(out) = self.rpcs.finish(rpc) {
            self.on_rpc_failed(now, rpc, out);
        }
    }

    /// A request will never be answered: the peer is gone from every table.
    pub(super) fn on_rpc_failed(&mut self, now: Instant, _rpc: RpcId, out: Outstanding) {
        for table in &mut self.tables {
            table.remove(&out.to.id);
        }
        self.clusters.forget(&out.to.id);
        if let Purpose::Query { query, level } = out.purpose {
            self.on_query_failure(now, query, level, &out);
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, rpc: RpcId, resp: Response) {
        let Some(out) = self.rpcs.finish(rpc) else {
            // Unknown, or answered already (a retry's twin): nothing to match it to.
            self.stats.dropped += 1;
            return;
        };
        if !answers(&out.req.body, &resp.body) {
            // Misbehaving: counted, dropped from every table, and failed in its query.
            self.stats.dropped += 1;
            self.on_rpc_failed(now, rpc, out);
            return;
        }
        self.stats.responses_in += 1;
        // An RTT only from a first attempt (Karn's rule).
        let rtt = (out.attempt == 0).then(|| now.saturating_duration_since(out.sent_at));
        let shared = self.clusters.observe(now, &out.to, &resp.header, rtt);
        if matches!(resp.body, ResponseBody::Refused) {
            // It does not share our level layout: useless for routing.
            for table in &mut self.tables {
                table.remove(&out.to.id);
            }
        } else {
            self.saw(now, &out.to, shared);
        }
        self.dispatch_response(now, rpc, out, resp);
    }

    /// Re-decides cluster membership at every level, keeps peer samples fresh, drops expired
    /// values.
    fn check_clusters(&mut self, now: Instant) {
        for store in &mut self.stores {
            store.expire(now);
        }
        self.clusters.expire(now);
        for i in 1..self.config.levels() {
            self.sizes[i - 1] = self.tables[i].estimate_size();
        }
        let mut moved = false;
        for i in 1..self.config.levels() {
            let level = Level(i as u8);
            let size = self.sizes[i - 1];
            let Some(cluster) = self.clusters.evaluate(now, level, size, &mut self.rng) else {
                continue;
            };
            moved = true;
            // Rebuild the level's table from the peers that said they are in the new cluster,
            // then look ourselves up in it so its members learn of us (Coral, section 4.3).
            let members = self.clusters.members(level);
            self.tables[i].clear();
            for m in &members {
                if let Some(Insert::PingOldest(oldest)) = self.tables[i].insert(m, now) {
                    let purpose = Purpose::BucketPing { level };
                    self.send_request(now, oldest, RequestBody::Ping, purpose);
                }
            }
            self.sizes[i - 1] = self.tables[i].estimate_size();
            self.stats.cluster_changes += 1;
            self.events.push_back(Event::ClusterChanged {
                level,
                cluster,
                members: members.len(),
            });
            if !members.is_empty() {
                self.start_lookup(now, level, Key::from(self.me.id), Vec::new(), false);
            }
        }
        // Ping the peers heard from longest ago, so RTTs and cluster descriptors of clusters we
        // might join stay current even when no query happens to touch them.
        let silence = self.config.cluster_check_max_interval;
        for peer in self.clusters.stalest(now, silence, self.config.alpha) {
            self.send_request(now, peer, RequestBody::Ping, Purpose::ClusterProbe);
        }
        self.locality_step(now);
        if let Some(t) = &mut self.timers {
            t.cluster_every = if moved {
                self.config.cluster_check_interval
            } else {
                (t.cluster_every * 2).min(self.config.cluster_check_max_interval)
            };
            t.cluster_check = now + t.cluster_every;
        }
    }

    /// Kademlia's bucket refresh, at every level, of the buckets traffic left alone: one
    /// stale bucket (none of its entries heard from for a whole `bucket_refresh_interval`) is
    /// refreshed by a lookup of a random ID in its range, and a stale nearest bucket by a
    /// lookup of our own ID (which finds our closest neighbours). Kademlia refreshes only
    /// buckets with no lookup in the past hour, BEP 5 those unchanged for 15 minutes: on a
    /// busy node queries keep the buckets fresh, and refreshing them anyway was most of the
    /// FIND_NODE traffic of a simulated flash crowd.
    fn refresh(&mut self, now: Instant) {
        let every = self.config.bucket_refresh_interval;
        for i in 0..self.config.levels() {
            let level = Level(i as u8);
            let stale = self.tables[i].stale_buckets(now, every);
            if stale.is_empty() {
                continue;
            }
            if self.tables[i].bucket_indices().next() == stale.first().copied() {
                self.start_lookup(now, level, Key::from(self.me.id), Vec::new(), false);
            }
            let pick = stale[self.rng.random_range(0..stale.len())];
            let mut random = [0u8; ID_LEN];
            self.rng.fill_bytes(&mut random);
            let target = self.tables[i].random_id_in_bucket(pick, random);
            self.start_lookup(now, level, target, Vec::new(), false);
        }
        if let Some(t) = &mut self.timers {
            *t = Timers {
                refresh: now + self.config.bucket_refresh_interval,
                ..*t
            };
        }
    }
}

/// Whether `resp` is an answer to `req` at all (any request may be refused).
fn answers(req: &RequestBody, resp: &ResponseBody) -> bool {
    matches!(
        (req, resp),
        (_, ResponseBody::Refused)
            | (RequestBody::Ping, ResponseBody::Pong)
            | (RequestBody::FindNode { .. }, ResponseBody::Nodes { .. })
            | (RequestBody::Get { .. }, ResponseBody::Values { .. })
            | (RequestBody::PutProbe { .. }, ResponseBody::Probe { .. })
            | (RequestBody::Store { .. }, ResponseBody::Stored { .. })
    )
}
