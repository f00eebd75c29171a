//! What one client may take: requests per second (a token bucket per client, 429 beyond
//! it, like nginx's `limit_req`) and open connections (per client and in all, like
//! `limit_conn`). A client is an IPv4 address or an IPv6 /64, since one IPv6 host holds a
//! whole /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The limits (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    /// Requests per second a client may sustain.
    pub requests_per_second: f64,
    /// Requests a client may make at once before the rate applies (a page with its images).
    pub burst: f64,
    /// Open connections from one client.
    pub connections_per_client: usize,
    /// Open connections in all.
    pub connections: usize,
    /// Time a client has to send a request's headers (slowloris), and that an idle keep-alive
    /// connection stays open.
    pub header_read_timeout: std::time::Duration,
    /// Largest request head (request line and headers) read; a longer one is refused.
    pub max_header_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_second: 50.0,
            burst: 200.0,
            connections_per_client: 256,
            connections: 16_384,
            header_read_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Clients tracked for rates before idle ones are forgotten.
const MAX_TRACKED: usize = 65_536;

/// A token bucket: `burst` tokens, refilled at `rate` a second (used for client requests
/// here and for publishers' purges).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// The tokens at `now`.
    pub(crate) fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst)
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let level = self.level(now, rate, burst);
        self.at = now;
        if level >= 1.0 {
            self.tokens = level - 1.0;
            true
        } else {
            self.tokens = level;
            false
        }
    }
}

/// The limits in force, with their state.
#[derive(Debug)]
pub struct Limits {
    config: LimitsConfig,
    buckets: Mutex<HashMap<u128, Bucket>>,
    conns: Mutex<HashMap<u128, usize>>,
    open: AtomicUsize,
}

/// A client: its IPv4 address, or its IPv6 /64.
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | (1 << 32),
        },
    }
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    key: u128,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.limits.conns.lock()
            && let Some(n) = conns.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.key);
            }
        }
    }
}

impl Limits {
    /// Limits per `config`.
    pub fn new(config: LimitsConfig) -> Arc<Limits> {
        Arc::new(Limits {
            config,
            buckets: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
        })
    }

    /// The limits.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Whether `ip` may make a request at `now` (and counts it if so).
    pub fn admit_request(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.config.requests_per_second;
        if rate <= 0.0 {
            return true;
        }
        let burst = self.config.burst.max(1.0);
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= MAX_TRACKED {
            // Forget clients whose bucket has refilled: they lose nothing.
            buckets.retain(|_, b| b.level(now, rate, burst) < burst);
        }
        buckets
            .entry(client_key(ip))
            .or_insert(Bucket::full(burst, now))
            .take(now, rate, burst)
    }

    /// A slot for a new connection from `ip`, or `None` if it would exceed a limit.
    pub fn open_connection(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let (total, per) = (self.config.connections, self.config.connections_per_client);
        if total > 0 && self.open.load(Ordering::Relaxed) >= total {
            return None;
        }
        let key = client_key(ip);
        let mut conns = self.conns.lock().ok()?;
        let n = conns.entry(key).or_insert(0);
        if per > 0 && *n >= per {
            return None;
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(rate: f64, burst: f64, per: usize, total: usize) -> Arc<Limits> {
        Limits::new(LimitsConfig {
            requests_per_second: rate,
            burst,
            connections_per_client: per,
            connections: total,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let l = limits(10.0, 3.0, 0, 0);
        let t = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!((0..3).all(|_| l.admit_request(a, t)));
        assert!(!l.admit_request(a, t));
        assert!(
            l.admit_request("192.0.2.2".parse().expect("ip"), t),
            "others are not affected"
        );
        assert!(
            l.admit_request(a, t + Duration::from_millis(100)),
            "one more after 1/rate"
        );
        assert!(!l.admit_request(a, t + Duration::from_millis(100)));
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let l = limits(1.0, 1.0, 0, 0);
        let t = Instant::now();
        assert!(l.admit_request("2001:db8::1".parse().expect("ip"), t));
        assert!(!l.admit_request("2001:db8::2".parse().expect("ip"), t));
        assert!(l.admit_request("2001:db8:0:1::1".parse().expect("ip"), t));
    }

    #[test]
    fn connections_are_counted_per_client_and_in_all_and_released() {
        let l = limits(0.0, 0.0, 2, 3);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let a1 = l.open_connection(a).expect("first");
        let _a2 = l.open_connection(a).expect("second");
        assert!(l.open_connection(a).is_none(), "per-client limit");
        let _b1 = l.open_connection(b).expect("another client");
        assert!(l.open_connection(b).is_none(), "total limit");
        drop(a1);
        let a3 = l.open_connection(a);
        assert!(a3.is_some(), "released on drop");
        assert_eq!(l.open_connections(), 3);
    }
}
