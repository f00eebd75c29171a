//! Response rate limiting (RRL) per client prefix, so the server cannot be turned into a
//! reflector for floods with spoofed sources.
//!
//! ```text
//! Each (client /24 or /56, name asked) gets a token bucket: `responses_per_second`, with a
//! burst of the same size. Keying by name as BIND and Knot do spares a busy resolver that
//! asks for many names; all error responses share one name. Over the limit, UDP responses are dropped, except every `slip`-th,
//! which goes out truncated and empty (TC=1): a real client retries over TCP, which a
//! spoofer cannot, and the victim of a reflection gets a fraction of the traffic.
//! (The scheme of BIND and Knot; TCP is never limited.)
//! ```

use std::collections::{BTreeMap, BTreeSet};
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
    /// (Prefix, name) buckets tracked at most; the least recently used is forgotten first.
    pub max_prefixes: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            responses_per_second: 20,
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

type Key = (u8, u128, u64);

#[derive(Debug, Default)]
struct Table {
    buckets: BTreeMap<Key, Bucket>,
    /// Buckets by last use, so the least recently used is found without a scan.
    by_use: BTreeSet<(Instant, Key)>,
}

/// The buckets, per (client prefix, name).
#[derive(Debug)]
pub struct Rrl {
    config: RrlConfig,
    table: Mutex<Table>,
}

/// The name class that every error response (FORMERR, BADVERS, NOTIMP) is limited under.
pub const ERROR_NAME: u64 = u64::MAX;

/// A stable hash of a lowercase name, for the bucket key.
pub fn name_key(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.trim_end_matches('.').bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & !1 // never ERROR_NAME
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
            table: Mutex::new(Table::default()),
        }
    }

    /// The verdict for a UDP response to `client` about `name` (from [`name_key`], or
    /// [`ERROR_NAME`]) at `now`.
    pub fn check(&self, client: IpAddr, name: u64, now: Instant) -> Verdict {
        let rate = f64::from(self.config.responses_per_second);
        if rate == 0.0 {
            return Verdict::Send;
        }
        let Ok(mut table) = self.table.lock() else {
            return Verdict::Send;
        };
        let (family, bits) = prefix(client);
        let key = (family, bits, name);
        if !table.buckets.contains_key(&key)
            && table.buckets.len() >= self.config.max_prefixes
            && let Some((_, oldest)) = table.by_use.pop_first()
        {
            table.buckets.remove(&oldest);
        }
        let Table { buckets, by_use } = &mut *table;
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            at: now,
            limited: 0,
        });
        by_use.remove(&(b.at, key));
        by_use.insert((now.max(b.at), key));
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now.max(b.at);
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
        let n = name_key("www.example.com.cdn");
        for _ in 0..5 {
            assert_eq!(rrl.check(a, n, t0), Verdict::Send);
            assert_eq!(rrl.check(same_prefix, n, t0), Verdict::Send);
        }
        let verdicts: Vec<Verdict> = (0..4).map(|_| rrl.check(a, n, t0)).collect();
        assert_eq!(
            verdicts,
            vec![Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        assert_eq!(
            rrl.check(other, n, t0),
            Verdict::Send,
            "other prefixes unaffected"
        );
        let m = name_key("WWW.other.org.cdn.");
        assert_eq!(rrl.check(a, m, t0), Verdict::Send, "other names unaffected");
        // A tenth of a second refills one token.
        assert_eq!(
            rrl.check(a, n, t0 + Duration::from_millis(100)),
            Verdict::Send
        );
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
                7,
                t0 + Duration::from_millis(i.into()),
            );
        }
        let table = rrl.table.lock().unwrap();
        assert_eq!((table.buckets.len(), table.by_use.len()), (3, 3));
    }
}
