//! `Cache-Control` (RFC 9111 section 5.2), parsed once into typed directives.
//!
//! ```text
//! Cache-Control   = #cache-directive
//! cache-directive = token [ "=" ( token / quoted-string ) ]
//! ```
//! Directive names are case-insensitive. A directive that should carry delta-seconds but
//! does not (`max-age=abc`) makes the response stale (RFC 9111 section 4.2.1: "a cache
//! SHOULD consider it to be stale"), as do conflicting duplicates; values beyond 2^31
//! saturate there (section 1.2.2). Unknown directives are ignored.

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// Longest Cache-Control text considered; the rest of a longer header is ignored.
pub const MAX_CACHE_CONTROL_LEN: usize = 8 * 1024;
/// Most directives considered.
pub const MAX_DIRECTIVES: usize = 64;
/// delta-seconds saturate at 2^31 (RFC 9111 section 1.2.2).
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// The directives a cache acts on, from a request or a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age` (response: freshness lifetime; request: the oldest acceptable).
    pub max_age: Option<u64>,
    /// `s-maxage`: freshness lifetime for shared caches, over `max-age`.
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (any form): revalidate before every use.
    pub no_cache: bool,
    /// `private` (any form): a shared cache must not store it.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`: never serve stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: never serve stale from a shared cache.
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// Request `max-stale[=N]`: `Some(None)` accepts any staleness.
    pub max_stale: Option<Option<u64>>,
    /// Request `min-fresh=N`.
    pub min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
    /// A directive that should have carried a number did not, or two disagreed: stale.
    pub invalid: bool,
}

/// The value of one directive as written.
enum Arg<'a> {
    None,
    Value(&'a str),
}

fn delta_seconds(arg: &Arg<'_>) -> Option<u64> {
    let Arg::Value(v) = arg else { return None };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Saturate: a long run of digits is a large number, not an error.
    Some(
        v.parse::<u64>()
            .map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX)),
    )
}

/// Splits on commas outside quoted strings.
fn directives(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

impl CacheControl {
    /// Parses every `Cache-Control` line of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        let mut budget = MAX_CACHE_CONTROL_LEN;
        let mut count = 0;
        for value in headers.get_all(CACHE_CONTROL) {
            // Not visible ASCII: ignore the line (a parser must not guess).
            let Ok(text) = value.to_str() else { continue };
            let text = &text[..text.len().min(budget)];
            budget = budget.saturating_sub(text.len());
            for d in directives(text) {
                count += 1;
                if count > MAX_DIRECTIVES {
                    return cc;
                }
                cc.apply(d);
            }
        }
        cc
    }

    fn apply(&mut self, directive: &str) {
        let (name, arg) = match directive.split_once('=') {
            Some((n, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                (n.trim(), Arg::Value(v))
            }
            None => (directive, Arg::None),
        };
        let name = name.to_ascii_lowercase();
        let seconds =
            |slot: &mut Option<u64>, invalid: &mut bool| match (delta_seconds(&arg), *slot) {
                (None, _) => *invalid = true,
                (Some(n), None) => *slot = Some(n),
                (Some(n), Some(m)) if n != m => *invalid = true,
                _ => {}
            };
        match name.as_str() {
            "max-age" => seconds(&mut self.max_age, &mut self.invalid),
            "s-maxage" => seconds(&mut self.s_maxage, &mut self.invalid),
            "stale-while-revalidate" => {
                seconds(&mut self.stale_while_revalidate, &mut self.invalid)
            }
            "stale-if-error" => seconds(&mut self.stale_if_error, &mut self.invalid),
            "min-fresh" => seconds(&mut self.min_fresh, &mut self.invalid),
            "max-stale" => {
                self.max_stale = Some(match arg {
                    Arg::None => None,
                    Arg::Value(_) => delta_seconds(&arg),
                })
            }
            "no-store" => self.no_store = true,
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "only-if-cached" => self.only_if_cached = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn cc(lines: &[&str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        CacheControl::from_headers(&h)
    }

    #[test]
    fn parses_directives_across_lines_and_case() {
        let c = cc(&[
            "Public, MAX-AGE=60",
            "s-maxage=\"120\", stale-while-revalidate=30",
        ]);
        assert!(c.public);
        assert_eq!(
            (c.max_age, c.s_maxage, c.stale_while_revalidate),
            (Some(60), Some(120), Some(30))
        );
        assert!(!c.invalid);
        let c = cc(&["private=\"Set-Cookie, X-Id\", no-cache, must-revalidate"]);
        assert!(c.private && c.no_cache && c.must_revalidate);
        let c = cc(&["max-stale", "min-fresh=5, only-if-cached"]);
        assert_eq!(
            (c.max_stale, c.min_fresh, c.only_if_cached),
            (Some(None), Some(5), true)
        );
    }

    #[test]
    fn bad_or_conflicting_numbers_make_it_stale_and_big_ones_saturate() {
        assert!(cc(&["max-age=abc"]).invalid);
        assert!(cc(&["max-age"]).invalid);
        assert!(cc(&["max-age=-1"]).invalid);
        assert!(cc(&["max-age=10, max-age=20"]).invalid);
        assert!(!cc(&["max-age=10, max-age=10"]).invalid);
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            Some(DELTA_SECONDS_MAX)
        );
    }

    #[test]
    fn unknown_directives_are_ignored() {
        let c = cc(&["foo, bar=\"a,b\", max-age=5, x-y=\"q\\\"x,\""]);
        assert_eq!(c.max_age, Some(5));
        assert!(!c.invalid);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "[ -~]{0,400}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let mut h = HeaderMap::new();
                h.insert(CACHE_CONTROL, v);
                let _ = CacheControl::from_headers(&h);
            }
        }
    }
}
