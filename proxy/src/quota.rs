//! A volunteer's bandwidth quota. Coral's nodes, over their share, sent clients to the
//! origin and left the network's answers for a while; reef does the same: past
//! `bytes_per_hour` served to clients within the last hour, the node is *over quota* for a
//! cool-down (30 minutes by default): clients are redirected to the origin (302), peers get
//! nothing from it, and the node stops announcing objects and leaves DNS answers.
//!
//! Before that, sites share the quota fairly (Coral's fair sharing): once half of the hour's
//! quota is used, a site that has taken more than its share (the quota divided among the
//! sites served this hour) gets 403 while the others are still served.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes served per minute over the last hour, and the cool-down state.
#[derive(Debug)]
pub struct Quota {
    bytes_per_hour: u64,
    cool_down: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    start: Instant,
    /// (minute since `start`, bytes served in it), oldest first, at most 60 entries.
    minutes: VecDeque<(u64, u64)>,
    over_until: Option<Instant>,
    /// Bytes per site in the current hour (hours counted from `start`).
    hour: u64,
    sites: HashMap<String, u64>,
}

impl State {
    /// Bytes served in the hour before `now`.
    fn served_within_hour(&self, now: Instant) -> u64 {
        let minute = now.saturating_duration_since(self.start).as_secs() / 60;
        self.minutes
            .iter()
            .filter(|(m, _)| *m + WINDOW_MINUTES > minute)
            .map(|(_, b)| *b)
            .sum()
    }
}

/// Sites counted per hour at most; beyond it the smallest are forgotten.
const MAX_SITES: usize = 10_000;

/// Share of the quota used before fair sharing starts.
const FAIR_SHARE_FROM: f64 = 0.5;

const WINDOW_MINUTES: u64 = 60;

impl Quota {
    /// A quota of `bytes_per_hour`, with `cool_down` spent outside the network when exceeded.
    pub fn new(bytes_per_hour: u64, cool_down: Duration, now: Instant) -> Quota {
        Quota {
            bytes_per_hour,
            cool_down,
            state: Mutex::new(State {
                start: now,
                minutes: VecDeque::new(),
                over_until: None,
                hour: 0,
                sites: HashMap::new(),
            }),
        }
    }

    /// Counts `bytes` served for `site` at `now`; returns whether the node is over quota.
    pub fn serve_site(&self, site: &str, bytes: u64, now: Instant) -> bool {
        if let Ok(mut s) = self.state.lock() {
            let hour = now.saturating_duration_since(s.start).as_secs() / 3600;
            if hour != s.hour {
                s.hour = hour;
                s.sites.clear();
            }
            if s.sites.len() >= MAX_SITES && !s.sites.contains_key(site) {
                let smallest = s
                    .sites
                    .iter()
                    .min_by_key(|(_, b)| **b)
                    .map(|(k, _)| k.clone());
                if let Some(k) = smallest {
                    s.sites.remove(&k);
                }
            }
            *s.sites.entry(site.to_string()).or_default() += bytes;
        }
        self.serve(bytes, now)
    }

    /// Whether `site` has taken more than its fair share while the quota runs short.
    pub fn over_share(&self, site: &str, now: Instant) -> bool {
        let Ok(s) = self.state.lock() else {
            return false;
        };
        let served = s.served_within_hour(now);
        if (served as f64) < self.bytes_per_hour as f64 * FAIR_SHARE_FROM {
            return false;
        }
        let share = self.bytes_per_hour / s.sites.len().max(1) as u64;
        s.sites.get(site).is_some_and(|b| *b > share)
    }

    /// Counts `bytes` served at `now`; returns whether the node is over quota now.
    pub fn serve(&self, bytes: u64, now: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        let minute = now.saturating_duration_since(s.start).as_secs() / 60;
        while s
            .minutes
            .front()
            .is_some_and(|(m, _)| *m + WINDOW_MINUTES <= minute)
        {
            s.minutes.pop_front();
        }
        match s.minutes.back_mut() {
            Some((m, b)) if *m == minute => *b += bytes,
            _ => s.minutes.push_back((minute, bytes)),
        }
        let served: u64 = s.minutes.iter().map(|(_, b)| *b).sum();
        if served > self.bytes_per_hour && s.over_until.is_none_or(|t| t <= now) {
            s.over_until = Some(now + self.cool_down);
            // The next hour starts after the cool-down: what was served is forgiven.
            s.minutes.clear();
            tracing::warn!(
                served,
                quota = self.bytes_per_hour,
                cool_down_secs = self.cool_down.as_secs(),
                "over the bandwidth quota: redirecting clients to origins and leaving the network's answers"
            );
        }
        s.over_until.is_some_and(|t| t > now)
    }

    /// The share of the hour's quota still unused at `now` (0 while over it).
    pub fn spare(&self, now: Instant) -> f64 {
        let Ok(s) = self.state.lock() else {
            return 1.0;
        };
        if s.over_until.is_some_and(|t| t > now) {
            return 0.0;
        }
        let served = s.served_within_hour(now);
        (1.0 - served as f64 / self.bytes_per_hour.max(1) as f64).clamp(0.0, 1.0)
    }

    /// Whether the node is over quota at `now`.
    pub fn over(&self, now: Instant) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.over_until.is_some_and(|t| t > now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceeding_the_hourly_quota_starts_a_cool_down_that_ends() {
        let t0 = Instant::now();
        let q = Quota::new(1000, Duration::from_secs(1800), t0);
        assert!(!q.serve(600, t0));
        assert!(
            !q.serve(400, t0 + Duration::from_secs(120)),
            "exactly the quota is fine"
        );
        assert!(q.serve(1, t0 + Duration::from_secs(130)));
        assert!(q.over(t0 + Duration::from_secs(1000)));
        assert!(!q.over(t0 + Duration::from_secs(130 + 1800)));
        assert!(
            !q.serve(999, t0 + Duration::from_secs(130 + 1801)),
            "forgiven after"
        );
    }

    #[test]
    fn a_site_over_its_share_is_refused_once_the_quota_runs_short() {
        let t0 = Instant::now();
        let q = Quota::new(1000, Duration::from_secs(1800), t0);
        q.serve_site("big.example", 300, t0);
        q.serve_site("small.example", 100, t0);
        assert!(
            !q.over_share("big.example", t0),
            "under half the quota: no sharing yet"
        );
        q.serve_site("big.example", 250, t0);
        // 650 of 1000 used; two sites, so each may take 500.
        assert!(q.over_share("big.example", t0));
        assert!(!q.over_share("small.example", t0));
        assert!(!q.over_share("new.example", t0));
        assert!(
            !q.over_share("big.example", t0 + Duration::from_secs(3601)),
            "a new hour"
        );
    }

    #[test]
    fn spare_capacity_is_what_is_left_of_the_hour() {
        let t0 = Instant::now();
        let q = Quota::new(1000, Duration::from_secs(1800), t0);
        assert_eq!(q.spare(t0), 1.0);
        q.serve(250, t0);
        assert!((q.spare(t0) - 0.75).abs() < 1e-9);
        q.serve(800, t0);
        assert_eq!(q.spare(t0), 0.0);
    }

    #[test]
    fn bytes_older_than_an_hour_no_longer_count() {
        let t0 = Instant::now();
        let q = Quota::new(1000, Duration::from_secs(1800), t0);
        assert!(!q.serve(900, t0));
        assert!(!q.serve(900, t0 + Duration::from_secs(3601)));
        assert!(!q.over(t0 + Duration::from_secs(3601)));
    }
}
