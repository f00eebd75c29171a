//! When each purge was accepted here, by the URLs it covers: a copy obtained before that
//! moment is the purged object, whether it arrives from a fetch that was already under way or
//! from a peer that has not heard of the purge yet.
//!
//! Purges are kept per origin, so a lookup scans only its own origin's prefixes. The number
//! kept is bounded; when it overflows, the oldest purge is not forgotten but folded into an
//! origin-wide moment (and, past too many origins, a node-wide one): that refuses more old
//! copies than needed, never fewer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::message::PurgeTarget;

/// Purges remembered one by one at most.
const MAX_CUTOFFS: usize = 16_384;
/// Origins remembered at most.
const MAX_ORIGINS: usize = 16_384;
/// How long a purge is remembered: longer than any directory entry lives, so a peer that
/// missed the purge cannot hand the old copy back.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
struct PerOrigin {
    /// Every URL of the origin (purges folded in on overflow).
    wide: Option<SystemTime>,
    exact: HashMap<String, SystemTime>,
    prefixes: Vec<(String, SystemTime)>,
}

impl PerOrigin {
    fn latest(&self) -> Option<SystemTime> {
        let exact = self.exact.values().max().copied();
        let prefix = self.prefixes.iter().map(|(_, t)| *t).max();
        self.wide.max(exact).max(prefix)
    }

    fn forget(&mut self, key: &str, prefix: bool, at: SystemTime) {
        if prefix {
            self.prefixes.retain(|(k, t)| !(k == key && *t == at));
        } else if self.exact.get(key) == Some(&at) {
            self.exact.remove(key);
        }
    }

    fn is_empty(&self) -> bool {
        self.wide.is_none() && self.exact.is_empty() && self.prefixes.is_empty()
    }
}

#[derive(Debug)]
struct Recorded {
    origin: String,
    key: String,
    prefix: bool,
    at: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    origins: HashMap<String, PerOrigin>,
    order: VecDeque<Recorded>,
    /// Every URL (origins folded in on overflow).
    global: Option<SystemTime>,
}

/// Purge moments by URL and URL prefix.
#[derive(Debug, Default)]
pub struct Cutoffs {
    inner: Mutex<Inner>,
    /// Any purge at all (a node that never saw one checks nothing).
    any: AtomicBool,
}

/// The origin part of a cache key (`http://host:port` of `http://host:port/path`).
fn origin_of(key: &str) -> &str {
    let start = key.find("://").map_or(0, |i| i + 3);
    match key[start..].find('/') {
        Some(i) => &key[..start + i],
        None => key,
    }
}

impl Inner {
    /// Drops the oldest record; `fold` keeps its moment as an origin-wide one.
    fn pop_oldest(&mut self, fold: bool) {
        let Some(r) = self.order.pop_front() else {
            return;
        };
        if let Some(o) = self.origins.get_mut(&r.origin) {
            o.forget(&r.key, r.prefix, r.at);
            if fold {
                o.wide = o.wide.max(Some(r.at));
            }
            if o.is_empty() {
                self.origins.remove(&r.origin);
            }
        }
    }

    /// Folds the origin purged longest ago into the node-wide moment.
    fn fold_an_origin(&mut self) {
        let oldest = self
            .origins
            .iter()
            .min_by_key(|(_, o)| o.latest())
            .map(|(name, o)| (name.clone(), o.latest()));
        if let Some((name, latest)) = oldest {
            self.origins.remove(&name);
            self.order.retain(|r| r.origin != name);
            self.global = self.global.max(latest);
        }
    }
}

impl Cutoffs {
    /// Records that `target` was purged at `at`.
    pub fn record(&self, target: &PurgeTarget, at: SystemTime) {
        let Ok(mut i) = self.inner.lock() else { return };
        while i
            .order
            .front()
            .is_some_and(|r| at.duration_since(r.at).unwrap_or_default() > KEEP_FOR)
        {
            i.pop_oldest(false);
        }
        while i.order.len() >= MAX_CUTOFFS {
            i.pop_oldest(true);
        }
        let origin = origin_of(&target.key).to_string();
        if i.origins.len() >= MAX_ORIGINS && !i.origins.contains_key(&origin) {
            i.fold_an_origin();
        }
        let o = i.origins.entry(origin.clone()).or_default();
        if target.prefix {
            o.prefixes.push((target.key.clone(), at));
        } else {
            o.exact.insert(target.key.clone(), at);
        }
        i.order.push_back(Recorded {
            origin,
            key: target.key.clone(),
            prefix: target.prefix,
            at,
        });
        self.any.store(true, Ordering::Release);
    }

    /// The latest purge covering `key`, if any.
    pub fn of(&self, key: &str) -> Option<SystemTime> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let i = self.inner.lock().ok()?;
        let Some(o) = i.origins.get(origin_of(key)) else {
            return i.global;
        };
        let prefix = o
            .prefixes
            .iter()
            .filter(|(p, _)| key.starts_with(p.as_str()))
            .map(|(_, t)| *t)
            .max();
        i.global
            .max(o.wide)
            .max(o.exact.get(key).copied())
            .max(prefix)
    }

    /// Whether a copy of `key` obtained at `obtained` predates a purge of it.
    pub fn predates(&self, key: &str, obtained: SystemTime) -> bool {
        self.of(key).is_some_and(|cut| obtained < cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, prefix: bool) -> PurgeTarget {
        PurgeTarget::parse(url, prefix).unwrap()
    }

    #[test]
    fn copies_older_than_a_purge_of_their_url_or_a_prefix_predate_it() {
        let c = Cutoffs::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!c.predates("http://a/x", t0));
        c.record(&target("http://a/x", false), t0);
        c.record(&target("http://a/img/", true), t0 + Duration::from_secs(10));
        let before = t0 - Duration::from_secs(1);
        assert!(c.predates("http://a/x", before));
        assert!(!c.predates("http://a/x", t0 + Duration::from_secs(1)));
        assert!(!c.predates("http://a/y", before));
        assert!(!c.predates("http://a:8080/x", before), "another origin");
        assert!(c.predates("http://a/img/1.png", t0 + Duration::from_secs(5)));
        assert!(!c.predates("http://a/img/1.png", t0 + Duration::from_secs(11)));
        // Forgotten after a day.
        let later = t0 + KEEP_FOR + Duration::from_secs(60);
        c.record(&target("http://b/", false), later);
        assert!(!c.predates("http://a/x", before));
        assert!(!c.predates("http://a/img/1.png", t0));
    }

    #[test]
    fn on_overflow_old_purges_are_folded_in_never_forgotten() {
        let c = Cutoffs::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        c.record(&target("http://victim/page", false), t0);
        // A flood of purges of other origins' URLs, within the day.
        for n in 0..MAX_CUTOFFS + 10 {
            let at = t0 + Duration::from_millis(n as u64 + 1);
            c.record(&target(&format!("http://o{}/{n}", n % 50), false), at);
        }
        let before = t0 - Duration::from_secs(1);
        assert!(
            c.predates("http://victim/page", before),
            "a copy from before the victim's purge is still refused"
        );
        // Folding refuses more, never fewer: the victim's other URLs, from before the purge.
        assert!(c.predates("http://victim/other", before));
        assert!(!c.predates("http://victim/other", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_origin_of_a_key_is_its_scheme_host_and_port() {
        assert_eq!(origin_of("http://a:8080/x/y"), "http://a:8080");
        assert_eq!(origin_of("https://a/"), "https://a");
        assert_eq!(origin_of("http://a"), "http://a");
    }
}
