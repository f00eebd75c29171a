//! Where clients and proxies are: a GeoIP database (maxminddb; City or Country databases, or
//! the `country_code` layout of openly licensed ones), reloaded when the file changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// A place on Earth, as precisely as the database knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Location {
    /// Latitude and longitude in degrees (City databases, `--location`).
    Point {
        /// Degrees north.
        lat: f64,
        /// Degrees east.
        lon: f64,
    },
    /// Only the country (ISO 3166-1 alpha-2, uppercase).
    Country([u8; 2]),
}

impl Location {
    /// Parses `LAT,LON` (as given to `--location`).
    pub fn parse_point(s: &str) -> Result<Location, String> {
        let (lat, lon) = s
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: expected LAT,LON"))?;
        let lat: f64 = lat
            .trim()
            .parse()
            .map_err(|_| format!("{lat:?}: not a latitude"))?;
        let lon: f64 = lon
            .trim()
            .parse()
            .map_err(|_| format!("{lon:?}: not a longitude"))?;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("{s}: out of range"));
        }
        Ok(Location::Point { lat, lon })
    }

    /// A distance for ranking, in km: great-circle between points; between countries 0 if
    /// the same and a continent's width if not; `None` when they cannot be compared.
    pub fn distance_km(&self, other: &Location) -> Option<f64> {
        match (self, other) {
            (Location::Point { lat: a, lon: b }, Location::Point { lat: c, lon: d }) => {
                Some(great_circle_km(*a, *b, *c, *d))
            }
            (Location::Country(a), Location::Country(b)) => Some(if a == b { 0.0 } else { 5000.0 }),
            _ => None,
        }
    }
}

fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<Country<'a>>,
    location: Option<Loc>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Loc {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// Why a GeoIP database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read or is not a MaxMind DB.
    #[error("geoip database {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A loaded database.
pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeoDb({})", self.reader.metadata().database_type)
    }
}

impl GeoDb {
    /// A database from its bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GeoDb, String> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| e.to_string())?;
        Ok(GeoDb { reader })
    }

    /// Where `ip` is, if the database knows.
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        // An IPv4-only file rejects IPv6 lookups with an error: treated as unknown.
        let result = self.reader.lookup(ip).ok()?;
        let rec: Record<'_> = result.decode().ok()??;
        if let Some(loc) = &rec.location
            && let (Some(lat), Some(lon)) = (loc.latitude, loc.longitude)
        {
            return Some(Location::Point { lat, lon });
        }
        let code = rec
            .country
            .and_then(|c| c.iso_code)
            .or(rec.country_code)?
            .as_bytes();
        match code {
            [a, b] => Some(Location::Country([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }
}

/// The current database, swapped atomically when the file changes: queries always see a
/// complete database (the old one until the new one has loaded), never none.
#[derive(Debug, Clone, Default)]
pub struct Geo {
    /// The database and its generation (bumped by every swap).
    current: Arc<RwLock<(u64, Option<Arc<GeoDb>>)>>,
    /// Recent lookups of the current database: every answer locates every live proxy, and a
    /// database lookup costs far more than a map probe.
    memo: Arc<Mutex<Memo>>,
}

/// Lookups remembered at most; the memo starts over beyond this.
const MEMO_SIZE: usize = 8192;

#[derive(Debug, Default)]
struct Memo {
    /// Generation of the database the entries came from; a swap empties the memo.
    db: u64,
    places: HashMap<IpAddr, Option<Location>>,
}

impl Geo {
    /// No database: every location is unknown.
    pub fn none() -> Geo {
        Geo::default()
    }

    /// A fixed database (tests).
    pub fn fixed(db: GeoDb) -> Geo {
        let geo = Geo::none();
        geo.swap(db);
        geo
    }

    /// Loads `path` now; fails if it cannot be read.
    pub fn open(path: &Path) -> Result<Geo, GeoError> {
        let geo = Geo::none();
        geo.load(path)?;
        Ok(geo)
    }

    /// Reads `path` and makes it current.
    pub fn load(&self, path: &Path) -> Result<(), GeoError> {
        let err = |reason: String| GeoError::Open {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let db = GeoDb::from_bytes(bytes).map_err(err)?;
        self.swap(db);
        Ok(())
    }

    /// Makes `db` current.
    pub fn swap(&self, db: GeoDb) {
        let db = Arc::new(db);
        if let Ok(mut slot) = self.current.write() {
            *slot = (slot.0 + 1, Some(db));
        }
    }

    /// Where `ip` is, per the current database.
    pub fn locate(&self, ip: IpAddr) -> Option<Location> {
        let (identity, db) = {
            let slot = self.current.read().ok()?;
            (slot.0, slot.1.clone()?)
        };
        if let Ok(mut memo) = self.memo.lock() {
            if memo.db != identity {
                memo.db = identity;
                memo.places.clear();
            }
            if let Some(place) = memo.places.get(&ip) {
                return *place;
            }
        }
        let place = db.locate(ip);
        if let Ok(mut memo) = self.memo.lock()
            && memo.db == identity
        {
            if memo.places.len() >= MEMO_SIZE {
                memo.places.clear();
            }
            memo.places.insert(ip, place);
        }
        place
    }

    /// Watches `path` and reloads it when its modification time changes, checking every
    /// `every`. A file that fails to load is logged and the previous database kept.
    pub fn watch(&self, path: PathBuf, every: Duration) -> tokio::task::JoinHandle<()> {
        let geo = self.clone();
        tokio::spawn(async move {
            // Modification time and length: a rewrite within the clock's resolution still
            // changes one of them.
            let stamp = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            };
            let mut seen: Option<(SystemTime, u64)> = stamp(&path);
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = stamp(&path);
                if now.is_some() && now != seen {
                    let (geo, path) = (geo.clone(), path.clone());
                    // Parsing a large database is blocking work.
                    let loaded = tokio::task::spawn_blocking(move || geo.load(&path)).await;
                    match loaded {
                        Ok(Ok(())) => {
                            // Only now: a half-written file that failed is retried next tick.
                            seen = now;
                            tracing::info!("geoip database reloaded");
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "geoip reload failed; keeping the previous database")
                        }
                        Err(e) => tracing::warn!(error = %e, "geoip reload task failed"),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct CityRec {
        location: LocOut,
        country: CountryOut,
    }
    #[derive(Serialize)]
    struct LocOut {
        latitude: f64,
        longitude: f64,
    }
    #[derive(Serialize)]
    struct CountryOut {
        iso_code: &'static str,
    }
    #[derive(Serialize)]
    struct CodeRec {
        country_code: &'static str,
    }

    /// A tiny City database: 192.0.2.0/24 in Paris, 198.51.100.0/24 in Tokyo, and a
    /// country-only record for 203.0.113.0/24.
    pub(crate) fn test_db() -> Vec<u8> {
        let mut w = mmdb_writer::Writer::new("Reef-Test-City");
        let city = |lat, lon, cc| CityRec {
            location: LocOut {
                latitude: lat,
                longitude: lon,
            },
            country: CountryOut { iso_code: cc },
        };
        w.insert(
            "192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(),
            &city(48.86, 2.35, "FR"),
        )
        .unwrap();
        w.insert(
            "198.51.100.0/24".parse::<ipnet::IpNet>().unwrap(),
            &city(35.68, 139.69, "JP"),
        )
        .unwrap();
        w.insert(
            "203.0.113.0/24".parse::<ipnet::IpNet>().unwrap(),
            &CodeRec { country_code: "au" },
        )
        .unwrap();
        w.to_bytes().unwrap()
    }

    #[test]
    fn locates_points_and_countries() {
        let db = GeoDb::from_bytes(test_db()).unwrap();
        let paris = db.locate("192.0.2.7".parse().unwrap()).unwrap();
        assert!(matches!(paris, Location::Point { lat, .. } if (lat - 48.86).abs() < 1e-9));
        assert_eq!(
            db.locate("203.0.113.9".parse().unwrap()),
            Some(Location::Country(*b"AU"))
        );
        assert_eq!(db.locate("10.1.2.3".parse().unwrap()), None);
        assert_eq!(db.locate("2001:db8::1".parse().unwrap()), None);
        let tokyo = db.locate("198.51.100.1".parse().unwrap()).unwrap();
        let d = paris.distance_km(&tokyo).unwrap();
        assert!((9600.0..9800.0).contains(&d), "{d}");
    }

    #[test]
    fn remembered_places_follow_a_database_swap() {
        let geo = Geo::fixed(GeoDb::from_bytes(test_db()).unwrap());
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(geo.locate(ip), Some(Location::Country(*b"AU")));
        assert_eq!(
            geo.locate(ip),
            Some(Location::Country(*b"AU")),
            "from the memo"
        );
        let mut w = mmdb_writer::Writer::new("Reef-Test-City");
        w.insert(
            "203.0.113.0/24".parse::<ipnet::IpNet>().unwrap(),
            &CodeRec { country_code: "nz" },
        )
        .unwrap();
        geo.swap(GeoDb::from_bytes(w.to_bytes().unwrap()).unwrap());
        assert_eq!(
            geo.locate(ip),
            Some(Location::Country(*b"NZ")),
            "the new database answers"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(GeoDb::from_bytes(b"not a database".to_vec()).is_err());
        let e = Geo::open(Path::new("/nonexistent/reef.mmdb")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/reef.mmdb"));
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse_point("48.8, 2.3"),
            Ok(Location::Point {
                lat: 48.8,
                lon: 2.3
            })
        );
        assert!(Location::parse_point("91,0").is_err());
        assert!(Location::parse_point("abc").is_err());
    }
}
