//! What a run measures, and the JSON report (scripts rely on these field names).

use serde::Serialize;

/// Where a request's object came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The proxy's own cache.
    LocalCache,
    /// Another proxy, located through the DHT at this level (2, 1 or 0).
    Peer(u8),
    /// The origin.
    Origin,
}

impl Source {
    fn index(self) -> usize {
        match self {
            Source::LocalCache => 0,
            Source::Peer(2) => 1,
            Source::Peer(1) => 2,
            Source::Peer(_) => 3,
            Source::Origin => 4,
        }
    }
}

/// One minute of the run (workload time).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Minute {
    /// Requests answered this minute, by source: local cache, level 2, 1, 0, origin.
    pub served: [u64; 5],
    /// Origin fetches started.
    pub origin_fetches: u64,
    /// Gets that found a value, and gets in all.
    pub gets_found: u64,
    /// Gets issued.
    pub gets: u64,
}

/// Counters of one variant's run.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub(crate) requests: u64,
    /// Requests at a proxy that was down (its clients see an error).
    pub(crate) failed: u64,
    pub(crate) origin_fetches: u64,
    pub(crate) origin_fetches_per_object: Vec<u32>,
    pub(crate) served: [u64; 5],
    pub(crate) lookup_us: Vec<u32>,
    pub(crate) hops: Vec<u32>,
    /// Requests answered at once (a local cache hit): counted, not kept one by one, as they
    /// are most of a long run's requests (100,000 nodes make 50 million in an hour).
    pub(crate) client_instant: u64,
    /// How long each request not answered at once waited, µs.
    pub(crate) client_us: Vec<u32>,
    /// DHT requests for the hottest key received, per node.
    pub(crate) hot_key_load: Vec<u32>,
    /// DHT requests for the hottest key, all nodes: gets, put probes, stores.
    pub(crate) hot_key_by_kind: [u64; 3],
    pub(crate) messages: u64,
    /// Gets for objects that some live proxy cached when the get started, and how many of
    /// them found a value.
    pub(crate) gets_available: u64,
    pub(crate) gets_available_found: u64,
    /// Values pointing at a proxy that no longer had the object.
    pub(crate) stale_values: u64,
    pub(crate) timeline: Vec<Minute>,
}

impl Metrics {
    pub(crate) fn minute(&mut self, workload_us: Option<u64>) -> Option<&mut Minute> {
        let m = (workload_us? / 60_000_000) as usize;
        if self.timeline.len() <= m {
            self.timeline.resize(m + 1, Minute::default());
        }
        self.timeline.get_mut(m)
    }

    pub(crate) fn serve(&mut self, source: Source, n: u64, workload_us: Option<u64>) {
        self.served[source.index()] += n;
        if let Some(m) = self.minute(workload_us) {
            m.served[source.index()] += n;
        }
    }
}

/// Percentiles of a distribution.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Mean and tail.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MeanP99 {
    /// Mean.
    pub mean: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Max and mean.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MaxMean {
    /// Maximum.
    pub max: f64,
    /// Mean over nodes that received any.
    pub mean: f64,
}

/// DHT requests sent, by kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DhtRequests {
    /// Liveness and cluster probes.
    pub ping: u64,
    /// Lookups: bootstrap, refresh, cluster joins.
    pub find_node: u64,
    /// Gets.
    pub get: u64,
    /// Put probes.
    pub put_probe: u64,
    /// Stores.
    pub store: u64,
}

/// DHT requests for one key, by kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HotKeyRequests {
    /// Gets.
    pub get: u64,
    /// Forward-phase probes of puts.
    pub put_probe: u64,
    /// Stores.
    pub store: u64,
}

/// Fractions of requests served from each source.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Served {
    /// The proxy's own cache.
    pub local_cache: f64,
    /// A peer found within the level-2 cluster.
    pub level2: f64,
    /// A peer found within the level-1 cluster.
    pub level1: f64,
    /// A peer found at the global level.
    pub level0: f64,
    /// The origin.
    pub origin: f64,
}

/// The figures of one variant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VariantReport {
    /// Client requests.
    pub requests: u64,
    /// Requests at proxies that were down.
    pub failed_requests: u64,
    /// Fetches from the origin.
    pub origin_fetches: u64,
    /// Fetches from the origin of the object fetched most often.
    pub origin_fetches_max_per_object: u64,
    /// Where answers came from, as fractions of answered requests.
    pub served: Served,
    /// DHT get latency.
    pub lookup_ms: Percentiles,
    /// Requests per successful get.
    pub hops: MeanP99,
    /// DHT requests per node for the hottest key.
    pub hot_key_load: MaxMean,
    /// DHT requests for the hottest key, all nodes: gets, put probes, stores.
    pub hot_key_requests: HotKeyRequests,
    /// The ten nodes most loaded by the hottest key: (log2 XOR distance to it, requests).
    pub hot_key_top: Vec<(u32, u32)>,
    /// DHT messages sent (requests and responses, including those lost on the way).
    pub messages: u64,
    /// DHT requests sent by the nodes alive at the end, by kind: what maintenance costs
    /// next to the workload's gets and puts.
    pub dht_requests: DhtRequests,
    /// Time from a client's request to the whole object at its proxy.
    pub client_ms: Percentiles,
    /// Gets that led to a holder able to serve the object, among gets for objects some live
    /// proxy cached when the get started.
    pub lookup_success: f64,
    /// Values that named a proxy no longer holding the object.
    pub stale_values: u64,
    /// Distinct clusters at the end of the run, per level (index 0 = level 0), over live nodes.
    pub clusters_per_level: Vec<usize>,
    /// Nodes alone in their cluster, per level (index 0 = level 0).
    pub alone_per_level: Vec<usize>,
    /// Times the live nodes moved to another cluster, all levels.
    pub cluster_changes: u64,
    /// Per minute of workload.
    pub timeline: Vec<Minute>,
    /// Hot-key load per node: (log2 of XOR distance to the key, requests).
    #[serde(skip)]
    pub hot_key_by_distance: Vec<(u32, u32)>,
    /// Lookup latencies, ms, at fractions 0, 1/1000, ..., 1 of the lookups (for CDF plots;
    /// empty without lookups).
    #[serde(skip)]
    pub lookup_cdf_ms: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Percentiles, in ms, of `zeros` samples of 0 µs and the samples `us` (sorted in place).
fn percentiles_us(zeros: u64, us: &mut [u32]) -> Percentiles {
    us.sort_unstable();
    let n = zeros + us.len() as u64;
    let at = |p: f64| {
        if n == 0 {
            return 0.0;
        }
        let i = ((n - 1) as f64 * p).round() as u64;
        i.checked_sub(zeros)
            .and_then(|j| us.get(j as usize))
            .map_or(0.0, |u| f64::from(*u) / 1000.0)
    };
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

/// The CDF of sorted samples at 1,001 fractions, in ms (the sample at fraction `k / 1000`,
/// picked as `percentiles_us` picks them).
fn cdf_ms(sorted: &[u32]) -> Vec<f64> {
    debug_assert!(sorted.is_sorted());
    let Some(last) = sorted.len().checked_sub(1) else {
        return Vec::new();
    };
    (0..=1000u64)
        .map(|k| {
            let i = ((last as u64 * k + 500) / 1000) as usize;
            f64::from(sorted[i.min(last)]) / 1000.0
        })
        .collect()
}

impl Metrics {
    /// The report of the run. Sorts the latency samples in place (they can be tens of
    /// millions; the run is over).
    pub(crate) fn report(&mut self, hot_key_distance: &[u32]) -> VariantReport {
        let answered: u64 = self.served.iter().sum();
        let frac = |i: usize| {
            if answered == 0 {
                0.0
            } else {
                self.served[i] as f64 / answered as f64
            }
        };
        let lookup_ms = percentiles_us(0, &mut self.lookup_us);
        let mut hops: Vec<f64> = self.hops.iter().map(|h| f64::from(*h)).collect();
        hops.sort_by(f64::total_cmp);
        let loaded: Vec<f64> = self
            .hot_key_load
            .iter()
            .filter(|l| **l > 0)
            .map(|l| f64::from(*l))
            .collect();
        VariantReport {
            requests: self.requests,
            failed_requests: self.failed,
            origin_fetches: self.origin_fetches,
            origin_fetches_max_per_object: self
                .origin_fetches_per_object
                .iter()
                .copied()
                .max()
                .map_or(0, u64::from),
            served: Served {
                local_cache: frac(0),
                level2: frac(1),
                level1: frac(2),
                level0: frac(3),
                origin: frac(4),
            },
            lookup_ms,
            hops: MeanP99 {
                mean: if hops.is_empty() {
                    0.0
                } else {
                    hops.iter().sum::<f64>() / hops.len() as f64
                },
                p99: percentile(&hops, 0.99),
            },
            hot_key_load: MaxMean {
                max: loaded.iter().copied().fold(0.0, f64::max),
                mean: if loaded.is_empty() {
                    0.0
                } else {
                    loaded.iter().sum::<f64>() / loaded.len() as f64
                },
            },
            hot_key_requests: HotKeyRequests {
                get: self.hot_key_by_kind[0],
                put_probe: self.hot_key_by_kind[1],
                store: self.hot_key_by_kind[2],
            },
            hot_key_top: {
                let mut top: Vec<(u32, u32)> = hot_key_distance
                    .iter()
                    .zip(&self.hot_key_load)
                    .filter(|(_, l)| **l > 0)
                    .map(|(d, l)| (*d, *l))
                    .collect();
                top.sort_by_key(|(_, l)| std::cmp::Reverse(*l));
                top.truncate(10);
                top
            },
            messages: self.messages,
            dht_requests: DhtRequests::default(),
            client_ms: percentiles_us(self.client_instant, &mut self.client_us),
            lookup_success: if self.gets_available == 0 {
                1.0
            } else {
                self.gets_available_found as f64 / self.gets_available as f64
            },
            stale_values: self.stale_values,
            clusters_per_level: Vec::new(),
            alone_per_level: Vec::new(),
            cluster_changes: 0,
            timeline: self.timeline.clone(),
            hot_key_by_distance: hot_key_distance
                .iter()
                .zip(&self.hot_key_load)
                .filter(|(_, l)| **l > 0)
                .map(|(d, l)| (*d, *l))
                .collect(),
            lookup_cdf_ms: cdf_ms(&self.lookup_us),
        }
    }
}

/// The whole run: every variant on the same seed.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario preset.
    pub scenario: String,
    /// Seed of the run.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Events processed, all variants.
    pub events: u64,
    /// Wall-clock seconds, all variants.
    pub wall_s: f64,
    /// Events per wall-clock second.
    pub events_per_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// Figures per variant, by name.
    pub variants: std::collections::BTreeMap<String, VariantReport>,
    /// The scenario's parameters as run.
    pub parameters: crate::scenario::Scenario,
}

/// Peak resident set size of this process in MiB (Linux), 0 elsewhere.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_answered_at_once_count_in_the_percentiles_without_being_kept() {
        // 60 instant answers and 40 that waited 1..=40 ms: the median is 0, p90 is the 30th
        // waiting one (index 89 of 100), p99 the 39th.
        let mut waited: Vec<u32> = (1..=40).rev().map(|ms| ms * 1000).collect();
        let p = percentiles_us(60, &mut waited);
        assert_eq!((p.p50, p.p90, p.p99), (0.0, 30.0, 39.0));
        let none = percentiles_us(0, &mut []);
        assert_eq!((none.p50, none.p99), (0.0, 0.0));
    }

    #[test]
    fn the_cdf_has_a_thousand_steps_from_the_least_to_the_most() {
        let sorted: Vec<u32> = (0..5000).map(|i| i * 10).collect();
        let cdf = cdf_ms(&sorted);
        assert_eq!(cdf.len(), 1001);
        assert_eq!(cdf[0], 0.0);
        assert_eq!(cdf[500], f64::from(sorted[2500]) / 1000.0);
        assert_eq!(cdf[1000], 49.99);
        assert!(cdf.windows(2).all(|w| w[0] <= w[1]));
        assert!(cdf_ms(&[]).is_empty());
    }
}
