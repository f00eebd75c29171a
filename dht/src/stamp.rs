//! Times kept in per-node tables as whole seconds on the table's own clock.
//!
//! A simulator runs thousands of nodes in one process, and every peer a node remembers
//! carries a time or two: four bytes, where an `Instant` takes sixteen. A second is fine
//! enough for what these times decide (silences of tens of seconds or minutes, ages compared
//! `cluster_age_tie` apart), and 2^32 seconds is 136 years.

use std::time::{Duration, Instant};

/// A time on a [`Clock`]: whole seconds (rounded down) since the clock's first reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(u32);

impl Stamp {
    /// The time from `earlier` to this stamp (zero if `earlier` is later).
    pub(crate) fn since(self, earlier: Stamp) -> Duration {
        Duration::from_secs(self.0.saturating_sub(earlier.0).into())
    }
}

/// What `Stamp(0)` is: the first instant the table was given.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    epoch: Option<Instant>,
}

impl Clock {
    /// `now` as a stamp (the first call sets the epoch).
    pub(crate) fn stamp(&mut self, now: Instant) -> Stamp {
        let epoch = *self.epoch.get_or_insert(now);
        let secs = now.saturating_duration_since(epoch).as_secs();
        Stamp(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    /// The instant a stamp stands for (`None` only before any stamp exists).
    pub(crate) fn instant(&self, s: Stamp) -> Option<Instant> {
        self.epoch.map(|e| e + Duration::from_secs(s.0.into()))
    }

    /// How long from `s` to `now`.
    pub(crate) fn silence(&self, now: Instant, s: Stamp) -> Duration {
        self.instant(s)
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_whole_seconds_since_the_first_reading() {
        let t0 = crate::test_clock::epoch();
        let mut c = Clock::default();
        assert_eq!(c.instant(Stamp(0)), None);
        let s0 = c.stamp(t0 + Duration::from_millis(300));
        let s1 = c.stamp(t0 + Duration::from_millis(2_900));
        assert!(s0 < s1);
        assert_eq!(s1, Stamp(2), "rounded down");
        assert_eq!(c.instant(s1), Some(t0 + Duration::from_millis(2_300)));
        assert_eq!(
            c.silence(t0 + Duration::from_secs(10), s1),
            Duration::from_millis(7_700)
        );
        assert_eq!(c.silence(t0, s1), Duration::ZERO, "never negative");
        assert_eq!(s1.since(s0), Duration::from_secs(2));
        assert_eq!(s0.since(s1), Duration::ZERO);
    }
}
