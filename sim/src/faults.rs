//! Faults: churn (crash and restart), a partition between two halves, a secret rollout.

use std::collections::BTreeMap;

use rand::RngExt;

use crate::engine::{Ev, Sim, secs};
use crate::proxy::Fetch;

impl Sim {
    pub(crate) fn schedule_faults(&mut self) {
        let start = self.workload_start;
        if self.sc.churn.mean_session_secs > 0.0 {
            for host in 0..self.hosts.len() as u32 {
                let at = start + self.exponential(self.sc.churn.mean_session_secs);
                self.schedule(at, Ev::Crash { host });
            }
        }
        if let Some(p) = self.sc.partition.clone() {
            self.schedule(start + secs(p.at_secs), Ev::Partition(true));
            self.schedule(start + secs(p.heal_secs), Ev::Partition(false));
        }
        if let Some(r) = self.sc.rollout.clone() {
            // Hosts switch one by one, in a random order, evenly over the rollout window.
            let n = self.hosts.len() as u32;
            let mut order: Vec<u32> = (0..n).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, self.rng_faults.random_range(0..=i));
            }
            let span = secs(r.end_secs - r.start_secs);
            for (i, host) in order.into_iter().enumerate() {
                let at = start + secs(r.start_secs) + span * i as u64 / u64::from(n.max(1));
                self.schedule(at, Ev::Rekey { host });
            }
        }
    }

    fn exponential(&mut self, mean_secs: f64) -> u64 {
        let u: f64 = self.rng_faults.random_range(f64::EPSILON..1.0);
        secs(-u.ln() * mean_secs)
    }

    /// The fetches of a host whose process ended: its clients see errors, proxies waiting
    /// for its copy go to the origin, its lookups and claims are forgotten.
    fn abandon(&mut self, host: u32, inflight: BTreeMap<u32, Fetch>) {
        for (o, fetch) in inflight {
            self.metrics.failed += fetch.waiters.len() as u64;
            for (q, _) in fetch.forward {
                self.schedule(
                    self.now,
                    Ev::Fallback {
                        proxy: q,
                        object: o,
                    },
                );
            }
        }
        self.lookups.retain(|(p, _), _| *p != host);
        self.claims.retain(|(p, _), _| *p != host);
    }

    /// The host's process dies: DHT state, cache and fetches are gone.
    pub(crate) fn crash(&mut self, host: u32) {
        let h = &mut self.hosts[host as usize];
        if !h.up {
            return;
        }
        h.up = false;
        h.dht = None;
        let cached: Vec<u32> = h.proxy.cached().collect();
        let inflight = std::mem::take(&mut h.proxy.inflight);
        h.proxy.clear();
        for o in cached {
            self.holders[o as usize] = self.holders[o as usize].saturating_sub(1);
        }
        self.abandon(host, inflight);
        let down = self.sc.churn.mean_downtime_secs;
        if self.sc.churn.mean_session_secs > 0.0 {
            let at = self.now + self.exponential(down);
            self.schedule(at, Ev::Restart { host });
        }
    }

    /// The host comes back with the same ID and an empty cache, and rejoins.
    pub(crate) fn restart(&mut self, host: u32) {
        if self.hosts[host as usize].up {
            return;
        }
        let h = &mut self.hosts[host as usize];
        h.incarnation = h.incarnation.wrapping_add(1);
        self.start_node(host);
        if self.sc.churn.mean_session_secs > 0.0 {
            let at = self.now + self.exponential(self.sc.churn.mean_session_secs);
            self.schedule(at, Ev::Crash { host });
        }
    }

    /// The host is upgraded to the release with the new secret: it restarts (keeping its disk
    /// cache) and can only talk to hosts that switched before it.
    pub(crate) fn rekey(&mut self, host: u32) {
        let h = &mut self.hosts[host as usize];
        h.secret = 1;
        if !h.up {
            return; // down: it comes back with the new release when it restarts
        }
        h.dht = None;
        h.incarnation = h.incarnation.wrapping_add(1);
        // Fetches in flight die with the process; the cache (on disk) survives.
        let inflight = std::mem::take(&mut h.proxy.inflight);
        self.abandon(host, inflight);
        self.hosts[host as usize].up = false;
        self.start_node(host);
    }
}
