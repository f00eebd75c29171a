//! Client requests: per-proxy clients, or a Poisson stream whose rate follows a curve.

use rand::RngExt;

use crate::engine::{Ev, Sim, secs};
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
                // The generator runs one lookahead ahead of the requests it draws.
                let at = self.workload_start.saturating_sub(self.lookahead);
                self.schedule(at, Ev::Arrival);
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

    /// Thinning (Lewis and Shedler): candidates at the peak rate, each kept with probability
    /// rate(t) / peak, give a Poisson process with the curve's rate.
    ///
    /// The candidate drawn now is due one lookahead later: a request commands a proxy's DHT,
    /// and a parallel window may already have run every host up to (not past) that time.
    pub(crate) fn on_arrival(&mut self) {
        let peak = self.sc.peak_rate();
        if peak <= 0.0 {
            return;
        }
        let due = (self.now + self.lookahead).max(self.workload_start);
        let t = (due - self.workload_start) as f64 / 1e6;
        if self.rng_work.random_range(0.0..1.0) < self.sc.rate_at(t) / peak {
            let proxy = self.rng_work.random_range(0..self.hosts.len() as u32);
            let object = self.pick_object();
            self.schedule(due, Ev::Request { proxy, object });
        }
        let u: f64 = self.rng_work.random_range(f64::EPSILON..1.0);
        let next = due + secs(-u.ln() / peak);
        if next <= self.workload_end {
            self.schedule(next - self.lookahead, Ev::Arrival);
        }
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
