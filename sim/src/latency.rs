//! Where nodes sit and how long a round trip between two of them takes.
//!
//! Two models:
//! - **PlanetLab**: the measured 490-host RTT matrix (Zhu et al., IEEE/ACM ToN 2017; MIT).
//!   Node `i` sits at a matrix host (a random one of the 490 for each node beyond the 490th,
//!   so larger networks put several nodes "behind" one site), plus an access delay of its own.
//! - **Geo**: nodes in world cities weighted by population (GeoNames, CC BY 4.0);
//!   `RTT = inflation x great-circle distance / (100 km per ms) + access delay of each end`.
//!
//! PlanetLab hosts sat on academic backbones with almost no last-mile delay, hence the
//! per-node access delay in both models (configurable).

use std::sync::OnceLock;

use rand::{Rng, RngExt};

use crate::queue::Micros;

static PLANETLAB: &str = include_str!("../data/planetlab490_median_rtt_ms.txt");
static CITIES: &str = include_str!("../data/cities15000.tsv");

/// Which latency model a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyKind {
    /// The measured PlanetLab matrix.
    Planetlab,
    /// Cities weighted by population, RTT from distance.
    Geo,
}

impl std::str::FromStr for LatencyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "planetlab" => Ok(LatencyKind::Planetlab),
            "geo" => Ok(LatencyKind::Geo),
            other => Err(format!(
                "unknown latency model {other:?} (planetlab or geo)"
            )),
        }
    }
}

/// Parameters of the latency model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencyParams {
    /// The model.
    pub kind: LatencyKind,
    /// Range of the per-node access delay added to each end of a round trip, in ms.
    pub access_ms: (f64, f64),
    /// Geo model: path inflation over the great-circle distance (2.1 is typical).
    pub inflation: f64,
    /// RTT between two nodes placed at the same site, before access delays, in ms.
    pub same_site_ms: f64,
}

impl Default for LatencyParams {
    fn default() -> Self {
        LatencyParams {
            kind: LatencyKind::Planetlab,
            access_ms: (0.2, 3.0),
            inflation: 2.1,
            same_site_ms: 0.3,
        }
    }
}

/// The PlanetLab matrix, in microseconds, parsed once per process.
fn planetlab() -> &'static (usize, Vec<u32>) {
    static M: OnceLock<(usize, Vec<u32>)> = OnceLock::new();
    M.get_or_init(|| {
        let rows: Vec<Vec<u32>> = PLANETLAB
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .map(|v| (v.parse::<f64>().unwrap_or(0.0) * 1000.0).round() as u32)
                    .collect()
            })
            .collect();
        let n = rows.len();
        let flat = rows
            .into_iter()
            .flat_map(|r| r.into_iter().chain(std::iter::repeat(0)).take(n))
            .collect();
        (n, flat)
    })
}

/// Cities as (latitude, longitude in radians, population).
fn cities() -> &'static Vec<(f64, f64, f64)> {
    static C: OnceLock<Vec<(f64, f64, f64)>> = OnceLock::new();
    C.get_or_init(|| {
        CITIES
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                let lat: f64 = f.get(3)?.parse().ok()?;
                let lon: f64 = f.get(4)?.parse().ok()?;
                let pop: f64 = f.get(5)?.parse().ok()?;
                Some((lat.to_radians(), lon.to_radians(), pop))
            })
            .collect()
    })
}

#[derive(Clone, Copy, Debug)]
enum Place {
    Host(u16),
    City { lat: f32, lon: f32 },
}

/// RTTs between the nodes of one run.
#[derive(Debug)]
pub struct LatencyModel {
    params: LatencyParams,
    places: Vec<Place>,
    access_us: Vec<u32>,
    /// The smallest of `access_us`.
    min_access_us: u32,
}

impl LatencyModel {
    /// Places `n` nodes with the given randomness.
    pub fn new(params: LatencyParams, n: usize, rng: &mut impl Rng) -> Self {
        let places = match params.kind {
            LatencyKind::Planetlab => {
                let hosts = planetlab().0;
                // The first min(n, 490) nodes take distinct hosts in random order; the rest
                // share hosts at random.
                let mut order: Vec<u16> = (0..hosts as u16).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
                (0..n)
                    .map(|i| match order.get(i) {
                        Some(h) => Place::Host(*h),
                        None => Place::Host(rng.random_range(0..hosts as u16)),
                    })
                    .collect()
            }
            LatencyKind::Geo => {
                let cities = cities();
                let mut cumulative = Vec::with_capacity(cities.len());
                let mut total = 0.0;
                for (_, _, pop) in cities {
                    total += pop;
                    cumulative.push(total);
                }
                (0..n)
                    .map(|_| {
                        let x = rng.random_range(0.0..total);
                        let i = cumulative.partition_point(|c| *c < x).min(cities.len() - 1);
                        let (lat, lon, _) = cities[i];
                        Place::City {
                            lat: lat as f32,
                            lon: lon as f32,
                        }
                    })
                    .collect()
            }
        };
        let (lo, hi) = params.access_ms;
        let access_us: Vec<u32> = (0..n)
            .map(|_| {
                let ms = if hi > lo {
                    rng.random_range(lo..hi)
                } else {
                    lo
                };
                (ms * 1000.0) as u32
            })
            .collect();
        LatencyModel {
            params,
            places,
            min_access_us: access_us.iter().copied().min().unwrap_or(0),
            access_us,
        }
    }

    /// Nodes placed.
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Whether no node was placed.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Which half of the world a node is in, for partitions: in the geo model the Americas
    /// (west of 30 degrees W) against the rest; in the PlanetLab model, which carries no
    /// coordinates, the first and second halves of the host list.
    pub fn side(&self, node: usize) -> u8 {
        match self.places[node] {
            Place::Host(h) => u8::from(usize::from(h) >= planetlab().0 / 2),
            Place::City { lon, .. } => u8::from(lon > (-30f32).to_radians()),
        }
    }

    /// A name for where `node` sits: its matrix host, or its city. Nodes that share it share
    /// the first routers of their paths, which Coral's locality hints name (see
    /// `dht::Node::set_locality`).
    pub fn site(&self, node: usize) -> String {
        match self.places[node] {
            Place::Host(h) => format!("host/{h}"),
            Place::City { lat, lon } => format!("city/{lat}/{lon}"),
        }
    }

    /// A lower bound of the one-way delay from any other place to `node`: every round trip
    /// adds both ends' access delays to a base of zero or more, so half of it is at least
    /// half of `node`'s access delay and the smallest one. Zero when access delays are off.
    pub fn min_one_way_to(&self, node: usize) -> Micros {
        (u64::from(self.min_access_us) + u64::from(self.access_us[node])) / 2
    }

    /// The largest of [`min_one_way_to`](Self::min_one_way_to) over all places.
    pub fn max_min_one_way(&self) -> Micros {
        (0..self.places.len())
            .map(|i| self.min_one_way_to(i))
            .max()
            .unwrap_or(0)
    }

    /// Round-trip time between nodes `a` and `b`, in microseconds.
    pub fn rtt(&self, a: usize, b: usize) -> Micros {
        let base = match (self.places[a], self.places[b]) {
            (Place::Host(x), Place::Host(y)) => {
                if x == y {
                    (self.params.same_site_ms * 1000.0) as u32
                } else {
                    let (n, m) = planetlab();
                    m[x as usize * n + y as usize]
                }
            }
            (Place::City { lat: la, lon: oa }, Place::City { lat: lb, lon: ob }) => {
                let km = great_circle_km(la.into(), oa.into(), lb.into(), ob.into());
                let ms = self.params.inflation * km / 100.0 + self.params.same_site_ms;
                (ms * 1000.0) as u32
            }
            _ => 0,
        };
        if a == b {
            return 0;
        }
        u64::from(base) + u64::from(self.access_us[a]) + u64::from(self.access_us[b])
    }
}

fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_KM: f64 = 6371.0;
    let dlat = lat2 - lat1;
    let dlon = lon2 - lon1;
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn planetlab_matrix_is_complete_and_symmetric() {
        let (n, m) = planetlab();
        assert_eq!(*n, 490);
        assert_eq!(m.len(), 490 * 490);
        for a in (0..490).step_by(7) {
            assert_eq!(m[a * 490 + a], 0);
            for b in (0..490).step_by(11) {
                assert_eq!(m[a * 490 + b], m[b * 490 + a]);
            }
        }
        // The data set's median RTT is about 134 ms.
        let mut all: Vec<u32> = m.iter().copied().filter(|v| *v > 0).collect();
        all.sort_unstable();
        let median = all[all.len() / 2];
        assert!((120_000..150_000).contains(&median), "median {median} us");
    }

    #[test]
    fn geo_rtt_follows_distance() {
        // Paris to New York is about 5,840 km: 2.1 x 58.4 ms = 123 ms plus access delays.
        let km = great_circle_km(
            48.8566f64.to_radians(),
            2.3522f64.to_radians(),
            40.7128f64.to_radians(),
            (-74.0060f64).to_radians(),
        );
        assert!((5800.0..5900.0).contains(&km), "{km}");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let params = LatencyParams {
            kind: LatencyKind::Geo,
            ..LatencyParams::default()
        };
        let model = LatencyModel::new(params, 1000, &mut rng);
        let rtts: Vec<u64> = (1..1000).map(|b| model.rtt(0, b)).collect();
        assert!(
            rtts.iter().all(|r| *r < 450_000),
            "no RTT beyond half the planet"
        );
        assert_eq!(model.rtt(3, 3), 0);
    }

    #[test]
    fn no_message_is_faster_than_the_lookahead() {
        for kind in [LatencyKind::Planetlab, LatencyKind::Geo] {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let params = LatencyParams {
                kind,
                ..LatencyParams::default()
            };
            let model = LatencyModel::new(params, 1200, &mut rng);
            let mut floors = Vec::new();
            for b in (0..1200).step_by(7) {
                let floor = model.min_one_way_to(b);
                assert!(
                    floor >= 200,
                    "{kind:?}: access delays start at 0.2 ms, got {floor}"
                );
                assert!(floor <= model.max_min_one_way());
                for a in (0..1200).step_by(13).filter(|a| *a != b) {
                    assert!(model.rtt(a, b) / 2 >= floor, "{kind:?} {a}->{b}");
                }
                floors.push(floor);
            }
            // Most nodes wait for more than the smallest access delay: wider windows.
            floors.sort_unstable();
            assert!(floors[floors.len() / 2] > 2 * floors[0], "{floors:?}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let instant = LatencyParams {
            access_ms: (0.0, 0.0),
            ..LatencyParams::default()
        };
        let model = LatencyModel::new(instant, 10, &mut rng);
        assert_eq!(model.max_min_one_way(), 0);
    }

    #[test]
    fn nodes_beyond_490_share_sites() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let model = LatencyModel::new(LatencyParams::default(), 2000, &mut rng);
        assert_eq!(model.len(), 2000);
        let same_site = (1..2000).filter(|b| model.rtt(0, *b) < 7_000).count();
        assert!(
            same_site >= 2,
            "a few nodes share node 0's site or its neighbours"
        );
    }
}
