//! Response rate limiting (RRL) per client prefix, so the server cannot be turned into a
//! reflector for floods with spoofed sources.
//!
//! ```text
//! Each /24 (IPv4) or /56 (IPv6) gets a token bucket: `responses_per_second`, with a burst
//! of the same size. Over the limit, UDP responses are dropped, except every `slip`-th,
//! which goes out truncated and empty (TC=1): a real client retries over TCP, which a
//! spoofer cannot, and the victim of a reflection gets a fraction of the traffic.
//! (The scheme of BIND and Knot; TCP is never limited.)
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send an empty truncated response instead (TC=1), so the client retries over TCP.
    Slip,
    /// Send nothing.
    Drop,
}

/// Limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RrlConfig {
    /// Responses per second per client prefix; 0 disables rate limiting.
    pub responses_per_second: u32,
    /// Every this many limited responses, one slips out truncated (0: never).
    pub slip: u32,
    /// Prefixes tracked at most; the least recently seen is forgotten first.
    pub max_prefixes: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            responses_per_second: 50,
            slip: 2,
            max_prefixes: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    limited: u32,
}

/// The per-prefix buckets.
#[derive(Debug)]
pub struct Rrl {
    config: RrlConfig,
    buckets: Mutex<BTreeMap<(u8, u128), Bucket>>,
}

/// The prefix a client is limited under.
fn prefix(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => (6, u128::from(v6) & !((1u128 << 72) - 1)),
    }
}

impl Rrl {
    /// Buckets under `config`.
    pub fn new(config: RrlConfig) -> Rrl {
        Rrl {
            config,
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// The verdict for a UDP response to `client` at `now`.
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        let rate = f64::from(self.config.responses_per_second);
        if rate == 0.0 {
            return Verdict::Send;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return Verdict::Send;
        };
        let key = prefix(client);
        if !buckets.contains_key(&key) && buckets.len() >= self.config.max_prefixes {
            // Forget the bucket idle longest (a scan, but only when the table is full).
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
                buckets.remove(&oldest);
            }
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            at: now,
            limited: 0,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        if self.config.slip > 0 && b.limited % self.config.slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_a_prefix_and_slips_every_second_response() {
        let rrl = Rrl::new(RrlConfig {
            responses_per_second: 10,
            slip: 2,
            max_prefixes: 10,
        });
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_prefix: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(rrl.check(a, t0), Verdict::Send);
            assert_eq!(rrl.check(same_prefix, t0), Verdict::Send);
        }
        let verdicts: Vec<Verdict> = (0..4).map(|_| rrl.check(a, t0)).collect();
        assert_eq!(
            verdicts,
            vec![Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        assert_eq!(
            rrl.check(other, t0),
            Verdict::Send,
            "other prefixes unaffected"
        );
        // A tenth of a second refills one token.
        assert_eq!(rrl.check(a, t0 + Duration::from_millis(100)), Verdict::Send);
    }

    #[test]
    fn table_is_bounded() {
        let rrl = Rrl::new(RrlConfig {
            responses_per_second: 1,
            slip: 0,
            max_prefixes: 3,
        });
        let t0 = Instant::now();
        for i in 0..10u8 {
            rrl.check(
                IpAddr::from([10, i, 0, 1]),
                t0 + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(rrl.buckets.lock().unwrap().len(), 3);
    }
}
