//! Client requests: per-proxy clients, or a Poisson stream whose rate follows a curve.

use rand::RngExt;

use crate::engine::{Ev, Sim, secs};
use crate::queue::Micros;

/// Virtual time whose requests one firing of the rate workload's generator draws.
const ARRIVAL_SPAN: Micros = 100_000;
use crate::scenario::{Popularity, Workload};

impl Sim {
    pub(crate) fn schedule_workload(&mut self) {
        match self.sc.workload.clone() {
            Workload::PerProxy {
                start_spread_secs, ..
            } => {
                for proxy in 0..self.hosts.len() as u32 {
                    let offset = self.rng_work.random_range(0.0..start_spread_secs.max(1e-6));
                    let at = self.workload_start + secs(offset);
                    self.schedule(at, Ev::Client { proxy });
                }
            }
            Workload::Rate { .. } => {
                self.next_request = self.draw_request_after(self.workload_start);
                if let Some(due) = self.next_request {
                    // The generator runs one lookahead ahead of the requests it draws.
                    self.schedule(due.saturating_sub(self.lookahead), Ev::Arrival);
                }
            }
        }
    }

    pub(crate) fn on_client(&mut self, proxy: u32) {
        let Workload::PerProxy { interval_secs, .. } = self.sc.workload else {
            return;
        };
        let o = self.rng_work.random_range(0..self.sc.objects as u32);
        self.request(proxy, o);
        let next = self.now + secs(interval_secs);
        if next <= self.workload_end {
            self.schedule(next, Ev::Client { proxy });
        }
    }

    /// Schedules every request due in the span of `ARRIVAL_SPAN` that starts one lookahead
    /// from now, then the generator's next firing.
    ///
    /// A request is due no sooner than one lookahead after it is drawn: it commands a proxy's
    /// DHT, and a parallel window may already have run every host up to (not past) that
    /// time. One firing per span, not one per request: at 100,000 nodes the flash crowd
    /// draws 25,000 requests per second.
    pub(crate) fn on_arrival(&mut self) {
        let until = self.now + self.lookahead + ARRIVAL_SPAN;
        while let Some(due) = self.next_request.filter(|due| *due < until) {
            let proxy = self.rng_work.random_range(0..self.hosts.len() as u32);
            let object = self.pick_object();
            self.schedule(due, Ev::Request { proxy, object });
            self.next_request = self.draw_request_after(due);
        }
        if let Some(due) = self.next_request {
            // The next span starts where this one ended, or at the next request.
            let at = (self.now + ARRIVAL_SPAN).max(due.saturating_sub(self.lookahead));
            self.schedule(at, Ev::Arrival);
        }
    }

    /// The next request of the rate workload after `t`, if it is due by the workload's end.
    fn draw_request_after(&mut self, t: Micros) -> Option<Micros> {
        let mass = -self.rng_work.random_range(f64::EPSILON..1.0).ln();
        let since = t.saturating_sub(self.workload_start) as f64 / 1e6;
        let at = self.sc.arrival_after(since, mass)?;
        let due = self.workload_start.saturating_add(secs(at));
        (due <= self.workload_end).then_some(due.max(t))
    }

    fn pick_object(&mut self) -> u32 {
        let n = self.sc.objects as u32;
        let Workload::Rate { popularity, .. } = &self.sc.workload else {
            return self.rng_work.random_range(0..n);
        };
        match popularity {
            Popularity::Uniform => self.rng_work.random_range(0..n),
            Popularity::Zipf { .. } => {
                let total = self.zipf_cdf.last().copied().unwrap_or(1.0);
                let x = self.rng_work.random_range(0.0..total);
                (self.zipf_cdf.partition_point(|c| *c < x) as u32).min(n - 1)
            }
        }
    }
}
