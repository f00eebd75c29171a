//! Client requests: per-proxy clients, or a Poisson stream whose rate follows a curve.

use rand::RngExt;

use crate::engine::{Ev, Sim, secs};
use crate::queue::Micros;
use crate::scenario::{Popularity, Workload};

/// Virtual time whose requests one firing of the rate workload's generator draws.
const ARRIVAL_SPAN: Micros = 100_000;

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
                self.next_request = self.draw_request();
                self.schedule_generator();
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
            // Only a warm-up shorter than the lookahead puts the first request sooner.
            self.schedule(
                due.max(self.now + self.lookahead),
                Ev::Request { proxy, object },
            );
            self.next_request = self.draw_request();
        }
        self.schedule_generator();
    }

    /// The generator's next firing: one lookahead before the next request (at or after the
    /// end of the span just drawn), if there is one.
    fn schedule_generator(&mut self) {
        if let Some(due) = self.next_request {
            self.schedule(due.saturating_sub(self.lookahead), Ev::Arrival);
        }
    }

    /// The rate workload's next request, if it is due by the workload's end. The draw goes on
    /// from the exact time of the last one, not from its microsecond: rounding each time
    /// down would shorten every gap, by 1.25 % at 25,000 requests a second.
    fn draw_request(&mut self) -> Option<Micros> {
        let mass = -self.rng_work.random_range(f64::EPSILON..1.0).ln();
        self.last_request_secs = self.sc.arrival_after(self.last_request_secs, mass)?;
        let due = self
            .workload_start
            .saturating_add(secs(self.last_request_secs));
        (due <= self.workload_end).then_some(due)
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
