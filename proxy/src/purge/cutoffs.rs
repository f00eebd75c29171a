//! When each purge was accepted here, by the URLs it covers: a copy obtained before that
//! moment is the purged object, whether it arrives from a fetch that was already under way or
//! from a peer that has not heard of the purge yet.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::message::PurgeTarget;

/// Purges remembered at most (the oldest are forgotten first).
const MAX_CUTOFFS: usize = 16_384;
/// How long a purge is remembered: longer than any directory entry lives, so a peer that
/// missed the purge cannot hand the old copy back.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
struct Inner {
    exact: HashMap<String, SystemTime>,
    prefixes: Vec<(String, SystemTime)>,
    order: VecDeque<(String, bool, SystemTime)>,
}

/// Purge moments by URL and URL prefix.
#[derive(Debug, Default)]
pub struct Cutoffs {
    inner: Mutex<Inner>,
    /// Any purge at all (a node that never saw one checks nothing).
    any: AtomicBool,
}

impl Cutoffs {
    /// Records that `target` was purged at `at`.
    pub fn record(&self, target: &PurgeTarget, at: SystemTime) {
        let Ok(mut i) = self.inner.lock() else { return };
        while i.order.len() >= MAX_CUTOFFS
            || i.order
                .front()
                .is_some_and(|(_, _, t)| at.duration_since(*t).unwrap_or_default() > KEEP_FOR)
        {
            let Some((key, prefix, t)) = i.order.pop_front() else {
                break;
            };
            if prefix {
                i.prefixes.retain(|(k, when)| !(k == &key && *when == t));
            } else if i.exact.get(&key) == Some(&t) {
                i.exact.remove(&key);
            }
        }
        if target.prefix {
            i.prefixes.push((target.key.clone(), at));
        } else {
            i.exact.insert(target.key.clone(), at);
        }
        i.order.push_back((target.key.clone(), target.prefix, at));
        self.any.store(true, Ordering::Release);
    }

    /// The latest purge covering `key`, if any.
    pub fn of(&self, key: &str) -> Option<SystemTime> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let i = self.inner.lock().ok()?;
        let exact = i.exact.get(key).copied();
        let prefix = i
            .prefixes
            .iter()
            .filter(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, t)| *t)
            .max();
        exact.max(prefix)
    }

    /// Whether a copy of `key` obtained at `obtained` predates a purge of it.
    pub fn predates(&self, key: &str, obtained: SystemTime) -> bool {
        self.of(key).is_some_and(|cut| obtained < cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_older_than_a_purge_of_their_url_or_a_prefix_predate_it() {
        let c = Cutoffs::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!c.predates("http://a/x", t0));
        c.record(&PurgeTarget::parse("http://a/x", false).unwrap(), t0);
        c.record(
            &PurgeTarget::parse("http://a/img/", true).unwrap(),
            t0 + Duration::from_secs(10),
        );
        let before = t0 - Duration::from_secs(1);
        assert!(c.predates("http://a/x", before));
        assert!(!c.predates("http://a/x", t0 + Duration::from_secs(1)));
        assert!(!c.predates("http://a/y", before));
        assert!(c.predates("http://a/img/1.png", t0 + Duration::from_secs(5)));
        assert!(!c.predates("http://a/img/1.png", t0 + Duration::from_secs(11)));
        // Forgotten after a day.
        let later = t0 + KEEP_FOR + Duration::from_secs(60);
        c.record(&PurgeTarget::parse("http://b/", false).unwrap(), later);
        assert!(!c.predates("http://a/x", before));
        assert!(!c.predates("http://a/img/1.png", t0));
    }
}
