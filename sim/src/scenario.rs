//! Named presets: what a run simulates, with every parameter documented.

use serde::Serialize;

use crate::latency::{LatencyKind, LatencyParams};

/// How clients generate requests.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// One client per proxy, starting at a uniformly random time within `start_spread_secs`
    /// of the workload start, then requesting a uniformly random object every `interval_secs`
    /// (the NSDI 2004 flash-crowd experiment).
    PerProxy {
        /// Client start times spread over this window.
        start_spread_secs: f64,
        /// Time between one client's requests.
        interval_secs: f64,
    },
    /// A Poisson stream of requests at uniformly random proxies, with a rate that follows a
    /// piecewise-linear curve of (seconds since workload start, requests per second).
    Rate {
        /// The curve; the rate is held after the last point.
        curve: Vec<(f64, f64)>,
        /// Object popularity.
        popularity: Popularity,
    },
}

/// Which object a request asks for.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Popularity {
    /// Every object alike.
    Uniform,
    /// Object of rank `r` (1-based) drawn with weight `1 / r^s`.
    Zipf {
        /// The exponent.
        s: f64,
    },
}

/// Nodes failing and coming back.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Churn {
    /// Mean time a node stays up (exponential); 0 disables churn.
    pub mean_session_secs: f64,
    /// Mean time a failed node stays down before it restarts (exponential).
    pub mean_downtime_secs: f64,
}

/// Two halves of the network losing each other for a while.
#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    /// When the link between the halves goes down, seconds after the workload starts.
    pub at_secs: f64,
    /// When it comes back.
    pub heal_secs: f64,
}

/// A new network secret rolled out node by node.
#[derive(Clone, Debug, Serialize)]
pub struct Rollout {
    /// When the first node switches, seconds after the workload starts.
    pub start_secs: f64,
    /// When the last node has switched.
    pub end_secs: f64,
}

/// A complete description of a run, apart from the variant and the seed.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Preset name.
    pub name: &'static str,
    /// One sentence on what it shows.
    pub description: &'static str,
    /// Proxies (each also a DHT node and a client site).
    pub nodes: usize,
    /// Latency model.
    pub latency: LatencyParams,
    /// Nodes join one by one over this period from the start of the run.
    pub join_secs: f64,
    /// The workload starts this long after the start of the run (clusters settle meanwhile).
    pub warmup_secs: f64,
    /// The workload runs this long.
    pub duration_secs: f64,
    /// Number of distinct objects.
    pub objects: usize,
    /// Size of every object, bytes.
    pub object_bytes: u64,
    /// Request generation.
    pub workload: Workload,
    /// The origin's uplink, bits per second.
    pub origin_uplink_bps: f64,
    /// Transfers the origin serves at once; the rest wait for a slot.
    pub origin_concurrency: usize,
    /// Each proxy's uplink to other proxies, bits per second.
    pub proxy_uplink_bps: f64,
    /// Each proxy's cache budget, bytes (LRU).
    pub cache_bytes: u64,
    /// TTL of a proxy's "I have it" announcement (Coral: about an hour).
    pub announce_ttl_secs: f64,
    /// TTL of a "fetching it now" announcement, renewed while the fetch lasts (20 s).
    pub pending_ttl_secs: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Extra one-way delay, uniform in [0, jitter], ms.
    pub jitter_ms: f64,
    /// Node failures.
    pub churn: Churn,
    /// A partition between two halves.
    pub partition: Option<Partition>,
    /// A secret rollout.
    pub rollout: Option<Rollout>,
}

impl Scenario {
    fn base(name: &'static str, description: &'static str) -> Scenario {
        Scenario {
            name,
            description,
            nodes: 1000,
            latency: LatencyParams::default(),
            join_secs: 120.0,
            warmup_secs: 300.0,
            duration_secs: 1800.0,
            objects: 12,
            object_bytes: 41 * 1024,
            workload: Workload::PerProxy {
                start_spread_secs: 180.0,
                interval_secs: 2.0,
            },
            origin_uplink_bps: 384_000.0,
            origin_concurrency: 16,
            proxy_uplink_bps: 10_000_000.0,
            cache_bytes: 64 << 20,
            announce_ttl_secs: 3600.0,
            pending_ttl_secs: 20.0,
            loss: 0.0,
            jitter_ms: 0.0,
            churn: Churn::default(),
            partition: None,
            rollout: None,
        }
    }

    /// Every preset, by name.
    pub fn all() -> Vec<Scenario> {
        vec![
            Scenario {
                nodes: 166,
                ..Scenario::base(
                    "coral-flash-crowd",
                    "NSDI 2004: 166 proxies, 12 files of 41 KB behind a 384 kbit/s origin, a client at every proxy starting within 3 minutes, 30 minutes of requests",
                )
            },
            Scenario {
                objects: 20,
                object_bytes: 100 * 1024,
                origin_uplink_bps: 10_000_000.0,
                duration_secs: 3600.0,
                workload: Workload::Rate {
                    // 0 -> 50 req/s in 5 minutes, 250 req/s within the hour, then decaying
                    // (per 1,000 nodes; scaled with N).
                    curve: vec![(0.0, 0.0), (300.0, 50.0), (2400.0, 250.0), (3600.0, 100.0)],
                    popularity: Popularity::Zipf { s: 1.0 },
                },
                ..Scenario::base(
                    "flash-crowd",
                    "one site's 20 objects go from 0 to 50 req/s in 5 minutes and 250 req/s within the hour (per 1,000 nodes), then decay",
                )
            },
            Scenario {
                objects: 20_000,
                object_bytes: 20 * 1024,
                origin_uplink_bps: 100_000_000.0,
                duration_secs: 1800.0,
                workload: Workload::Rate {
                    curve: vec![(0.0, 30.0)],
                    popularity: Popularity::Zipf { s: 1.1 },
                },
                ..Scenario::base(
                    "zipf",
                    "a long-tailed day like CoralCDN's 2009 logs: most URLs requested once, the top 1 % drawing most requests",
                )
            },
            Scenario {
                nodes: 500,
                duration_secs: 3600.0,
                objects: 200,
                object_bytes: 20 * 1024,
                origin_uplink_bps: 100_000_000.0,
                workload: Workload::Rate {
                    curve: vec![(0.0, 20.0)],
                    popularity: Popularity::Zipf { s: 0.9 },
                },
                churn: Churn {
                    mean_session_secs: 36_000.0,
                    mean_downtime_secs: 600.0,
                },
                ..Scenario::base(
                    "churn",
                    "nodes leave with exponential sessions (10 % per hour) and come back; stale values and lookup success over time",
                )
            },
            Scenario {
                nodes: 500,
                duration_secs: 1800.0,
                objects: 50,
                object_bytes: 20 * 1024,
                origin_uplink_bps: 100_000_000.0,
                latency: LatencyParams {
                    kind: LatencyKind::Geo,
                    ..LatencyParams::default()
                },
                workload: Workload::Rate {
                    curve: vec![(0.0, 20.0)],
                    popularity: Popularity::Zipf { s: 0.9 },
                },
                partition: Some(Partition {
                    at_secs: 600.0,
                    heal_secs: 1200.0,
                }),
                ..Scenario::base(
                    "partition",
                    "the Americas and the rest of the world lose each other for 10 minutes and heal; lookups and origin load during and after",
                )
            },
            Scenario {
                nodes: 500,
                duration_secs: 4200.0,
                objects: 50,
                object_bytes: 20 * 1024,
                origin_uplink_bps: 100_000_000.0,
                workload: Workload::Rate {
                    curve: vec![(0.0, 20.0)],
                    popularity: Popularity::Zipf { s: 0.9 },
                },
                rollout: Some(Rollout {
                    start_secs: 300.0,
                    end_secs: 3900.0,
                }),
                ..Scenario::base(
                    "rollout",
                    "a new network secret reaches a growing fraction of nodes over an hour; how much cache and lookup success each side keeps",
                )
            },
        ]
    }

    /// The preset called `name`.
    pub fn named(name: &str) -> Option<Scenario> {
        Scenario::all().into_iter().find(|s| s.name == name)
    }

    /// Request rate at `t` seconds after the workload starts, scaled to the node count
    /// (curves are given per 1,000 nodes).
    pub fn rate_at(&self, t: f64) -> f64 {
        let Workload::Rate { curve, .. } = &self.workload else {
            return 0.0;
        };
        let scale = self.nodes as f64 / 1000.0;
        let per_thousand = match curve.iter().position(|(x, _)| *x > t) {
            None => curve.last().map_or(0.0, |(_, r)| *r),
            Some(0) => curve[0].1,
            Some(i) => {
                let (x0, r0) = curve[i - 1];
                let (x1, r1) = curve[i];
                r0 + (r1 - r0) * (t - x0) / (x1 - x0)
            }
        };
        per_thousand * scale
    }

    /// The time after `t` (seconds since the workload started) by which the curve's rate,
    /// integrated from `t`, reaches `mass`; `None` if it never does (the rate falls to zero
    /// for good). With `mass` drawn from Exp(1), this is the next arrival of the Poisson
    /// process with the curve's rate: the time change of a non-homogeneous Poisson process,
    /// exact for a piecewise-linear rate, and one draw per request (thinning at the peak
    /// rate drew candidates that were thrown away: half of them over the flash crowd's hour).
    pub fn arrival_after(&self, t: f64, mass: f64) -> Option<f64> {
        let Workload::Rate { curve, .. } = &self.workload else {
            return None;
        };
        if mass <= 0.0 {
            return Some(t);
        }
        let scale = self.nodes as f64 / 1000.0;
        let (mut t, mut mass) = (t, mass);
        let mut next = curve.partition_point(|(x, _)| *x <= t);
        loop {
            let rate = self.rate_at(t);
            let Some(&(x1, r1)) = curve.get(next) else {
                // Held after the last point.
                return (rate > 0.0).then(|| t + mass / rate);
            };
            // Before the first point the rate is held too: the segment is flat.
            let r1 = if next == 0 { rate } else { r1 * scale };
            let span = x1 - t;
            let area = (rate + r1) / 2.0 * span;
            if area >= mass {
                // Solve rate * d + slope * d^2 / 2 = mass, in the form that does not cancel
                // when the slope is small.
                let slope = (r1 - rate) / span;
                let root = (rate * rate + 2.0 * slope * mass).max(0.0).sqrt();
                let d = 2.0 * mass / (rate + root);
                return Some(t + d.clamp(0.0, span));
            }
            mass -= area;
            t = x1;
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_curve(curve: Vec<(f64, f64)>) -> Scenario {
        Scenario {
            nodes: 1000,
            workload: Workload::Rate {
                curve,
                popularity: Popularity::Uniform,
            },
            ..Scenario::named("flash-crowd").expect("a preset")
        }
    }

    /// The curve's rate integrated from `a` to `b`, by the midpoint rule on a fine grid.
    fn integral(sc: &Scenario, a: f64, b: f64) -> f64 {
        let steps = 100_000;
        let h = (b - a) / f64::from(steps);
        (0..steps)
            .map(|i| sc.rate_at(a + (f64::from(i) + 0.5) * h) * h)
            .sum()
    }

    #[test]
    fn the_next_arrival_is_where_the_rate_integrates_to_the_mass() {
        let sc = with_curve(vec![
            (10.0, 5.0),
            (300.0, 50.0),
            (2400.0, 250.0),
            (3600.0, 100.0),
        ]);
        // Within the flat start, within one slope, across several segments, past the end.
        for (a, b) in [(0.0, 7.0), (400.0, 500.0), (5.0, 2500.0), (3000.0, 4000.0)] {
            let mass = integral(&sc, a, b);
            let t = sc.arrival_after(a, mass).expect("the rate stays positive");
            assert!((t - b).abs() < 1e-5 * b, "from {a}: {t} for {b}");
        }
        // From a point exactly, across a stretch of zero and a step (two points at one time).
        let gaps = with_curve(vec![
            (0.0, 10.0),
            (100.0, 0.0),
            (200.0, 0.0),
            (200.0, 5.0),
            (300.0, 10.0),
        ]);
        for (a, b) in [(100.0, 250.0), (50.0, 150.0 + 75.0), (0.0, 300.0)] {
            let mass = integral(&gaps, a, b);
            let t = gaps.arrival_after(a, mass).expect("the rate comes back");
            assert!((t - b).abs() < 1e-5 * b, "from {a}: {t} for {b}");
        }
    }

    #[test]
    fn arrivals_follow_the_curve_and_stop_when_the_rate_falls_to_zero() {
        use rand::{RngExt, SeedableRng};
        let sc = with_curve(vec![
            (0.0, 0.0),
            (300.0, 50.0),
            (2400.0, 250.0),
            (3600.0, 0.0),
        ]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (mut t, mut counts) = (0.0, [0u32; 3]);
        while let Some(next) = sc.arrival_after(t, -rng.random_range(f64::EPSILON..1.0).ln()) {
            t = next;
            counts[usize::from(t >= 300.0) + usize::from(t >= 2400.0)] += 1;
        }
        // Expected: 7,500, 315,000 and 150,000 requests; a Poisson count is off by more than
        // its square root (87, 561, 387) about a third of the time.
        for (got, want) in counts.iter().zip([7_500.0, 315_000.0, 150_000.0]) {
            let sd = f64::sqrt(want);
            assert!((f64::from(*got) - want).abs() < 4.0 * sd, "{counts:?}");
        }
        assert!(t < 3600.0, "nothing after the rate reached zero");
        let idle = with_curve(vec![(0.0, 0.0)]);
        assert_eq!(idle.arrival_after(0.0, 0.5), None);
    }

    #[test]
    fn presets_are_unique_and_named() {
        let all = Scenario::all();
        let mut names: Vec<_> = all.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for n in [
            "coral-flash-crowd",
            "flash-crowd",
            "zipf",
            "churn",
            "partition",
            "rollout",
        ] {
            assert!(Scenario::named(n).is_some(), "{n}");
        }
    }

    #[test]
    fn flash_crowd_rate_ramps_and_scales() {
        let mut s = Scenario::named("flash-crowd").unwrap();
        assert_eq!(s.rate_at(0.0), 0.0);
        assert!((s.rate_at(150.0) - 25.0).abs() < 1e-9);
        assert!((s.rate_at(300.0) - 50.0).abs() < 1e-9);
        assert!((s.rate_at(2400.0) - 250.0).abs() < 1e-9);
        s.nodes = 2000;
        assert!((s.rate_at(300.0) - 100.0).abs() < 1e-9);
        assert!((s.rate_at(2400.0) - 500.0).abs() < 1e-9);
    }
}
