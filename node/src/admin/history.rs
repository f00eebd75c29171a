//! Requests over time for the status page's chart: the proxy's counters sampled every
//! [`EVERY`], the last [`KEPT`] samples kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How often the counters are sampled.
pub const EVERY: Duration = Duration::from_secs(10);
/// Samples kept (an hour at 10 s).
pub const KEPT: usize = 360;

/// One interval.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Interval {
    /// Its end (Unix seconds).
    pub at: u64,
    /// Requests answered in it (hits and misses).
    pub requests: u64,
    /// Of which from a stored copy.
    pub hits: u64,
}

#[derive(Debug, Default)]
struct Inner {
    last: Option<(u64, u64)>,
    intervals: VecDeque<Interval>,
}

/// The sampled history.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    /// Records the cumulative `hits` and `misses` at `at`.
    pub fn sample(&self, at: SystemTime, hits: u64, misses: u64) {
        let Ok(mut i) = self.inner.lock() else { return };
        if let Some((h0, m0)) = i.last {
            let hits_in = hits.saturating_sub(h0);
            let interval = Interval {
                at: at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                requests: hits_in + misses.saturating_sub(m0),
                hits: hits_in,
            };
            if i.intervals.len() >= KEPT {
                i.intervals.pop_front();
            }
            i.intervals.push_back(interval);
        }
        i.last = Some((hits, misses));
    }

    /// The intervals, oldest first.
    pub fn intervals(&self) -> Vec<Interval> {
        self.inner
            .lock()
            .map(|i| i.intervals.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Samples `proxy` every [`EVERY`] while the history is in use.
    pub fn spawn_sampler(history: &Arc<History>, proxy: Arc<proxy::Proxy>) {
        let weak: Weak<History> = Arc::downgrade(history);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let Some(h) = weak.upgrade() else { return };
                let s = proxy.stats().snapshot();
                h.sample(SystemTime::now(), s.hits, s.misses);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_differences_of_samples_and_bounded() {
        let h = History::default();
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        h.sample(t, 5, 5);
        assert!(h.intervals().is_empty(), "one sample makes no interval");
        h.sample(t + EVERY, 8, 6);
        assert_eq!(
            h.intervals(),
            vec![Interval {
                at: 1010,
                requests: 4,
                hits: 3
            }]
        );
        for k in 0..KEPT as u64 + 5 {
            h.sample(t + EVERY * (k as u32 + 2), 8 + k, 6);
        }
        assert_eq!(h.intervals().len(), KEPT);
    }
}
