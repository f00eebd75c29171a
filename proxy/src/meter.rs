//! Bytes and requests served per site since start, for the status page's top sites.
//!
//! Counting is on the hot path, so a request costs one read-locked map lookup (no allocation
//! for a site already known) and each body frame one atomic add.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Sites counted at most; later ones are counted together under [`OTHER_SITES`].
const MAX_SITES: usize = 4096;
/// The name the sites beyond [`MAX_SITES`] are counted under.
pub const OTHER_SITES: &str = "(other sites)";

/// One site's counters.
#[derive(Debug, Default)]
pub struct SiteCounts {
    /// Body bytes served to clients.
    pub bytes: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
}

/// Counters per site.
#[derive(Debug, Default)]
pub struct SiteMeter {
    sites: RwLock<HashMap<String, Arc<SiteCounts>>>,
}

/// A site's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteFigures {
    /// The origin's host name.
    pub site: String,
    /// Body bytes served to clients.
    pub bytes: u64,
    /// Requests answered.
    pub requests: u64,
}

impl SiteMeter {
    /// The counters of `site` (created on first use), with its request counted.
    pub fn request(&self, site: &str) -> Option<Arc<SiteCounts>> {
        let known = self.sites.read().ok()?.get(site).cloned();
        let counts = match known {
            Some(c) => c,
            None => {
                let mut sites = self.sites.write().ok()?;
                let name = if sites.len() >= MAX_SITES && !sites.contains_key(site) {
                    OTHER_SITES
                } else {
                    site
                };
                sites.entry(name.to_string()).or_default().clone()
            }
        };
        counts.requests.fetch_add(1, Ordering::Relaxed);
        Some(counts)
    }

    /// The `n` sites that took the most bytes, most first.
    pub fn top(&self, n: usize) -> Vec<SiteFigures> {
        let Ok(sites) = self.sites.read() else {
            return Vec::new();
        };
        let mut all: Vec<SiteFigures> = sites
            .iter()
            .map(|(site, c)| SiteFigures {
                site: site.clone(),
                bytes: c.bytes.load(Ordering::Relaxed),
                requests: c.requests.load(Ordering::Relaxed),
            })
            .collect();
        all.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.site.cmp(&b.site)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_ranked_by_bytes_and_bounded() {
        let m = SiteMeter::default();
        m.request("a")
            .unwrap()
            .bytes
            .fetch_add(10, Ordering::Relaxed);
        let b = m.request("b").unwrap();
        b.bytes.fetch_add(30, Ordering::Relaxed);
        m.request("b");
        let top = m.top(5);
        assert_eq!(top[0].site, "b");
        assert_eq!((top[0].bytes, top[0].requests), (30, 2));
        assert_eq!((top[1].site.as_str(), top[1].bytes), ("a", 10));
        for i in 0..MAX_SITES + 10 {
            m.request(&format!("s{i}"));
        }
        assert!(m.top(usize::MAX).len() <= MAX_SITES + 1);
        assert!(m.top(usize::MAX).iter().any(|s| s.site == OTHER_SITES));
    }
}
