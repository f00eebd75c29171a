//! The proxy logic of every host: local cache, then the DHT for a nearby peer caching or
//! fetching the object, then the origin (announcing "pending" first).
//!
//! Announce, then confirm: two proxies that miss the same object at nearly the same time
//! would both find nothing and both go to the origin. So a proxy that found nothing first
//! announces itself as "pending", and once that announcement is stored it looks again. If it
//! now sees a settled holder, or a pending one with a lower node ID, it waits for that one;
//! otherwise it goes to the origin. Of two racing proxies, at most the one with the lower ID
//! fetches, unless neither sees the other's announcement in time. One DHT round trip more,
//! paid only on the way to the origin, which is the resource a flash crowd exhausts.

use std::time::Duration;

use dht::{Found, QueryError, QueryId, Value};

use crate::engine::{Ev, Lookup, Sim, secs};
use crate::metrics::Source;
use crate::proxy::Fetch;
use crate::queue::Micros;

impl Sim {
    /// A client asks proxy `p` for object `o`.
    pub(crate) fn request(&mut self, p: u32, o: u32) {
        self.metrics.requests += 1;
        let wt = self.workload_time();
        let h = &mut self.hosts[p as usize];
        if !h.up {
            self.metrics.failed += 1;
            return;
        }
        if h.proxy.has(o) {
            h.proxy.touch(o);
            self.metrics.serve(Source::LocalCache, 1, wt);
            self.metrics.client_instant += 1;
            return;
        }
        if let Some(f) = h.proxy.inflight.get_mut(&o) {
            f.waiters.push(self.now); // collapsed onto the fetch under way
            return;
        }
        h.proxy.inflight.insert(
            o,
            Fetch {
                waiters: vec![self.now],
                ..Fetch::default()
            },
        );
        if h.dht.is_none() {
            self.fetch_from_origin(p, o, 0);
            return;
        }
        let key = self.keys[o as usize];
        let now = self.instant(self.now);
        let Some(q) = self.hosts[p as usize].dht.as_mut().map(|d| d.get(now, key)) else {
            return;
        };
        self.track_get(p, q, o, false);
        self.drain(p);
    }

    fn track_get(&mut self, p: u32, q: QueryId, o: u32, confirm: bool) {
        let available = self.holders[o as usize] > 0;
        self.lookups.insert(
            (p, q),
            Lookup {
                object: o,
                started: self.now,
                available,
                confirm,
            },
        );
        if let Some(m) = self.metrics.minute(self.workload_time()) {
            m.gets += 1;
        }
    }

    /// The pending announcement of a claim is stored: look again before going to the origin.
    pub(crate) fn on_put_done(&mut self, p: u32, put: QueryId) {
        let Some(o) = self.claims.remove(&(p, put)) else {
            return;
        };
        if !self.hosts[p as usize].proxy.inflight.contains_key(&o) {
            return;
        }
        let key = self.keys[o as usize];
        let now = self.instant(self.now);
        if let Some(q) = self.hosts[p as usize].dht.as_mut().map(|d| d.get(now, key)) {
            self.track_get(p, q, o, true);
        }
    }

    pub(crate) fn on_get_done(&mut self, p: u32, q: QueryId, result: Result<Found, QueryError>) {
        let Some(l) = self.lookups.remove(&(p, q)) else {
            return;
        };
        let elapsed = self.now - l.started;
        self.metrics
            .lookup_us
            .push(elapsed.min(u64::from(u32::MAX)) as u32);
        let found = result.ok().filter(|f| !f.values.is_empty());
        let o = l.object;
        if !self.hosts[p as usize].proxy.inflight.contains_key(&o) {
            return; // the proxy restarted meanwhile
        }
        // A get succeeds when it leads to a holder that can serve the object; values naming
        // dead, unreachable or emptied holders do not count.
        let usable = self.use_holders(p, o, &l, found);
        if l.available {
            self.metrics.gets_available += 1;
            self.metrics.gets_available_found += u64::from(usable);
        }
        if usable && let Some(m) = self.metrics.minute(self.workload_time()) {
            m.gets_found += 1;
        }
    }

    /// Tries the holders a get found, nearest first; else claims the object for the origin.
    /// Returns whether a holder will serve it.
    fn use_holders(&mut self, p: u32, o: u32, l: &Lookup, found: Option<Found>) -> bool {
        let mut delay = 0;
        let me = self.ids[p as usize];
        if let Some(found) = found {
            self.metrics.hops.push(found.hops);
            let level = found.level.0;
            // Settled holders before pending ones, the nearest first. A confirming get only
            // defers to pending holders with a lower ID (see the module doc).
            let mut holders: Vec<(bool, Micros, u32)> = found
                .values
                .iter()
                .filter(|v| !(l.confirm && v.pending && v.holder.id >= me))
                .filter_map(|v| Sim::host_of(&v.holder.addr).map(|h| (v.pending, h)))
                .filter(|(_, h)| *h != p && (*h as usize) < self.hosts.len())
                .map(|(pending, h)| (pending, self.latency.rtt(p as usize, h as usize), h))
                .collect();
            holders.sort_unstable();
            for (_, rtt, h) in holders {
                if !self.reachable(p, h) {
                    delay += rtt; // a connection attempt that times out, roughly
                    self.metrics.stale_values += 1;
                    continue;
                }
                let holder = &mut self.hosts[h as usize].proxy;
                if holder.has(o) {
                    holder.touch(o);
                    self.transfer(h, p, o, Source::Peer(level), delay);
                    return true;
                }
                // Wait only for a holder fetching from the origin: one that is itself waiting
                // for a peer could be waiting for us (an outdated value), and neither would
                // ever fetch.
                if let Some(f) = holder.inflight.get_mut(&o)
                    && f.from_origin
                {
                    f.forward.push((p, level));
                    return true;
                }
                delay += rtt; // asked, and it no longer has the object
                self.metrics.stale_values += 1;
            }
        }
        if l.confirm {
            self.fetch_from_origin(p, o, delay);
        } else {
            self.claim(p, o);
        }
        false
    }

    /// Nobody has it: announce "pending" and, once stored, confirm (see the module doc).
    fn claim(&mut self, p: u32, o: u32) {
        // Recorded before the DHT's output is processed: a put can finish at once (a node
        // alone), and its PutDone must find the claim.
        let Some(put) = self.announce_pending_quietly(p, o) else {
            self.fetch_from_origin(p, o, 0);
            return;
        };
        self.claims.insert((p, put), o);
        self.drain(p);
    }

    /// Tells the DHT that `p` is fetching `o` now, so others wait for its copy; renewed while
    /// the fetch lasts. Returns the put, if the host has a DHT.
    fn announce_pending(&mut self, p: u32, o: u32) -> Option<QueryId> {
        let put = self.announce_pending_quietly(p, o);
        self.drain(p);
        put
    }

    /// `announce_pending` without processing the DHT's output yet.
    fn announce_pending_quietly(&mut self, p: u32, o: u32) -> Option<QueryId> {
        let ttl = Duration::from_secs_f64(self.sc.pending_ttl_secs);
        let put = self.put_quietly(p, o, true, ttl);
        if let Some(f) = self.hosts[p as usize].proxy.inflight.get_mut(&o) {
            f.from_origin = true;
        }
        let renew = self.now + secs(self.sc.pending_ttl_secs / 2.0);
        let incarnation = self.hosts[p as usize].incarnation;
        self.schedule(
            renew,
            Ev::Renew {
                proxy: p,
                incarnation,
                object: o,
            },
        );
        put
    }

    fn put(&mut self, p: u32, o: u32, pending: bool, ttl: Duration) -> Option<QueryId> {
        let put = self.put_quietly(p, o, pending, ttl);
        self.drain(p);
        put
    }

    fn put_quietly(&mut self, p: u32, o: u32, pending: bool, ttl: Duration) -> Option<QueryId> {
        let key = self.keys[o as usize];
        let value = Value {
            holder: self.contact(p),
            pending,
        };
        let now = self.instant(self.now);
        self.hosts[p as usize]
            .dht
            .as_mut()
            .map(|dht| dht.put(now, key, value, ttl))
    }

    pub(crate) fn on_renew(&mut self, p: u32, o: u32) {
        let fetching = self.hosts[p as usize]
            .proxy
            .inflight
            .get(&o)
            .is_some_and(|f| f.from_origin);
        if fetching {
            // Renewal of an announcement already confirmed: no claim to track.
            let _ = self.announce_pending(p, o);
        }
    }

    pub(crate) fn on_fallback(&mut self, p: u32, o: u32) {
        let h = &self.hosts[p as usize];
        let waiting = h.proxy.inflight.get(&o).is_some_and(|f| !f.from_origin);
        if h.up && waiting {
            // Its renewal chain starts here; a fetch already going to the origin has one.
            let _ = self.announce_pending(p, o);
            self.fetch_from_origin(p, o, 0);
        }
    }

    fn fetch_from_origin(&mut self, p: u32, o: u32, delay: Micros) {
        self.metrics.origin_fetches += 1;
        if let Some(n) = self.metrics.origin_fetches_per_object.get_mut(o as usize) {
            *n += 1;
        }
        if let Some(m) = self.metrics.minute(self.workload_time()) {
            m.origin_fetches += 1;
        }
        let origin = self.hosts.len();
        let at = self.now + delay + self.latency.rtt(p as usize, origin) / 2;
        let incarnation = self.hosts[p as usize].incarnation;
        self.schedule(
            at,
            Ev::OriginStart {
                proxy: p,
                incarnation,
                object: o,
            },
        );
    }

    pub(crate) fn on_origin_tick(&mut self) {
        let now = self.now;
        let origin = self.hosts.len();
        for t in self.origin.finish(now) {
            let at = now + self.latency.rtt(t.proxy as usize, origin) / 2;
            self.schedule(
                at,
                Ev::Arrived {
                    proxy: t.proxy,
                    incarnation: t.incarnation,
                    object: t.object,
                    source: Source::Origin,
                },
            );
        }
        self.schedule_origin_tick();
    }

    /// Sends object `o` from proxy `from` to proxy `to` over `from`'s uplink.
    fn transfer(&mut self, from: u32, to: u32, o: u32, source: Source, delay: Micros) {
        let secs_on_wire = self.sc.object_bytes as f64 * 8.0 / self.sc.proxy_uplink_bps;
        let rtt = self.latency.rtt(from as usize, to as usize);
        let up = &mut self.hosts[from as usize].proxy;
        let start = (self.now + delay + rtt / 2).max(up.uplink_free);
        up.uplink_free = start + secs(secs_on_wire);
        let at = up.uplink_free + rtt / 2;
        let incarnation = self.hosts[to as usize].incarnation;
        self.schedule(
            at,
            Ev::Arrived {
                proxy: to,
                incarnation,
                object: o,
                source,
            },
        );
    }

    pub(crate) fn on_arrived(&mut self, p: u32, incarnation: u8, o: u32, source: Source) {
        if !self.is_live(p, incarnation) {
            return;
        }
        let h = &mut self.hosts[p as usize];
        let Some(fetch) = h.proxy.inflight.remove(&o) else {
            return;
        };
        let budget = self.sc.cache_bytes;
        let had = h.proxy.has(o);
        let evicted = h.proxy.insert(o, self.sc.object_bytes, budget);
        if !had && h.proxy.has(o) {
            self.holders[o as usize] += 1;
        }
        for e in evicted {
            self.holders[e as usize] = self.holders[e as usize].saturating_sub(1);
        }
        let wt = self.workload_time();
        self.metrics.serve(source, fetch.waiters.len() as u64, wt);
        for w in &fetch.waiters {
            let us = self.now.saturating_sub(*w).min(u64::from(u32::MAX)) as u32;
            self.metrics.client_us.push(us);
        }
        let ttl = Duration::from_secs_f64(self.sc.announce_ttl_secs);
        let _ = self.put(p, o, false, ttl);
        for (q, level) in fetch.forward {
            if self.reachable(p, q) {
                self.transfer(p, q, o, Source::Peer(level), 0);
            } else {
                // It learns of it over the network, half a round trip later: no parallel
                // window has run it past that (see `window.rs`).
                let rtt = self.latency.rtt(p as usize, q as usize);
                self.schedule(
                    self.now + rtt / 2,
                    Ev::Fallback {
                        proxy: q,
                        object: o,
                    },
                );
            }
        }
    }
}
