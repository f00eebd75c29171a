//! Whether a response may be stored, how long it stays fresh, how old it is, and whether a
//! stale copy may still be served. Pure functions with `now` as a parameter all the way up
//! (pingora's `calculate_fresh_until` with the clock taken out).

use std::time::{Duration, SystemTime};

use http::header::{AGE, AUTHORIZATION, DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{HeaderMap, Method, StatusCode};

use super::control::CacheControl;

/// The operator's caching policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Heuristic freshness: this fraction of the time since `Last-Modified` (RFC 9111
    /// section 4.2.2 suggests 10 %).
    pub heuristic_fraction: f64,
    /// Cap of heuristic freshness.
    pub heuristic_max: Duration,
    /// Store responses with neither explicit freshness nor a validator for this long
    /// (`--min-ttl`); `None` (the default) does not store them.
    pub min_ttl: Option<Duration>,
    /// How long 404 and 410 are cached when the origin says nothing.
    pub negative_ttl: Duration,
    /// Stale copies may be served this long past expiry when the origin fails.
    pub stale_if_error_default: Duration,
    /// Cookies are stripped (the default); when not, responses with `Set-Cookie` are never
    /// shared.
    pub strip_cookies: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(24 * 3600),
            min_ttl: None,
            negative_ttl: Duration::from_secs(30),
            stale_if_error_default: Duration::from_secs(24 * 3600),
            strip_cookies: true,
        }
    }
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotStorable {
    /// Only GET responses are stored.
    #[error("method is not GET")]
    Method,
    /// A status a cache does not understand or may not store without explicit freshness.
    #[error("status not cacheable without explicit freshness")]
    Status,
    /// `no-store` in the request or the response.
    #[error("no-store")]
    NoStore,
    /// `private`: for the user's own cache only.
    #[error("private")]
    Private,
    /// The request carried credentials and the response did not allow sharing.
    #[error("authorized request")]
    Authorization,
    /// `Vary: *`: no stored response can ever match.
    #[error("Vary: *")]
    VaryAny,
    /// Neither freshness nor a validator, and no minimum TTL configured.
    #[error("neither freshness information nor a validator")]
    NoFreshness,
    /// Sets a cookie, and cookies are passed through.
    #[error("sets a cookie")]
    SetCookie,
}

/// Statuses "heuristically cacheable" (RFC 9110 section 15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    let v = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(v).ok()
}

fn explicit(cc: &CacheControl, headers: &HeaderMap) -> bool {
    cc.s_maxage.is_some() || cc.max_age.is_some() || headers.contains_key(EXPIRES)
}

/// Whether a shared cache may store the response to this request (RFC 9111 section 3).
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    policy: &Policy,
) -> Result<(), NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    let req_cc = CacheControl::from_headers(request);
    let cc = CacheControl::from_headers(response);
    if req_cc.no_store || cc.no_store {
        return Err(NotStorable::NoStore);
    }
    if cc.private {
        return Err(NotStorable::Private);
    }
    if request.contains_key(AUTHORIZATION)
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if response.get_all(VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|f| f.trim() == "*"))
    }) {
        return Err(NotStorable::VaryAny);
    }
    if !policy.strip_cookies && response.contains_key(SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    let has_explicit = explicit(&cc, response);
    if !heuristically_cacheable(status) && !has_explicit {
        return Err(NotStorable::Status);
    }
    let validator = response.contains_key(ETAG) || response.contains_key(LAST_MODIFIED);
    let negative = matches!(status.as_u16(), 404 | 410);
    if !has_explicit && !validator && !negative && policy.min_ttl.is_none() {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// How long the response is fresh from its generation (RFC 9111 section 4.2.1): `s-maxage`,
/// else `max-age`, else `Expires - Date`, else a heuristic (10 % of the age of
/// `Last-Modified`, capped), else the negative TTL for 404/410, else the minimum TTL.
pub fn freshness_lifetime(
    status: StatusCode,
    response: &HeaderMap,
    response_time: SystemTime,
    policy: &Policy,
) -> Duration {
    let cc = CacheControl::from_headers(response);
    if cc.invalid {
        return Duration::ZERO;
    }
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return Duration::from_secs(s);
    }
    let served = date(response, DATE).unwrap_or(response_time);
    if response.contains_key(EXPIRES) {
        // An invalid Expires (e.g. "0") means already expired.
        return date(response, EXPIRES)
            .and_then(|e| e.duration_since(served).ok())
            .unwrap_or(Duration::ZERO);
    }
    if heuristically_cacheable(status)
        && let Some(lm) = date(response, LAST_MODIFIED)
        && let Ok(age) = served.duration_since(lm)
    {
        return age
            .mul_f64(policy.heuristic_fraction)
            .min(policy.heuristic_max);
    }
    if matches!(status.as_u16(), 404 | 410) {
        return policy.negative_ttl;
    }
    policy.min_ttl.unwrap_or(Duration::ZERO)
}

/// When the cache sent the request and got the response, and what the response said: all
/// that is needed to compute its age later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// When the request was sent upstream.
    pub request_time: SystemTime,
    /// When the response arrived.
    pub response_time: SystemTime,
    /// Its `Date`, if valid.
    pub date: Option<SystemTime>,
    /// Its `Age`, if valid.
    pub age: Duration,
}

impl Received {
    /// Reads `Date` and `Age` from the response headers.
    pub fn new(request_time: SystemTime, response_time: SystemTime, response: &HeaderMap) -> Self {
        let age = response
            .get(AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(Duration::ZERO, |s| {
                Duration::from_secs(s.min(super::control::DELTA_SECONDS_MAX))
            });
        Received {
            request_time,
            response_time,
            date: date(response, DATE),
            age,
        }
    }

    /// The response's current age at `now` (RFC 9111 section 4.2.3).
    ///
    /// ```text
    /// apparent_age = max(0, response_time - date_value);
    /// response_delay = response_time - request_time;
    /// corrected_age_value = age_value + response_delay;
    /// corrected_initial_age = max(apparent_age, corrected_age_value);
    /// resident_time = now - response_time;
    /// current_age = corrected_initial_age + resident_time;
    /// ```
    pub fn current_age(&self, now: SystemTime) -> Duration {
        let apparent = self
            .date
            .and_then(|d| self.response_time.duration_since(d).ok())
            .unwrap_or(Duration::ZERO);
        let delay = self
            .response_time
            .duration_since(self.request_time)
            .unwrap_or(Duration::ZERO);
        let corrected = self.age.saturating_add(delay);
        let initial = apparent.max(corrected);
        let resident = now
            .duration_since(self.response_time)
            .unwrap_or(Duration::ZERO);
        initial.saturating_add(resident)
    }
}

/// What may be done with a stored response at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Fresh: serve it.
    Fresh,
    /// Stale, but may be served while revalidating in the background (stale-while-revalidate).
    StaleWhileRevalidate,
    /// Stale: revalidate first; if the origin fails, it may still be served (stale-if-error,
    /// or the operator's default allowance) unless `must-revalidate` forbids it.
    Revalidate {
        /// Serving it on an origin error is allowed.
        if_error: bool,
    },
}

/// Decides how a stored response may be used for a request at `now`.
pub fn usable(
    request: &HeaderMap,
    response: &HeaderMap,
    lifetime: Duration,
    age: Duration,
    policy: &Policy,
) -> Use {
    let cc = CacheControl::from_headers(response);
    let req = CacheControl::from_headers(request);
    let strict = cc.must_revalidate || cc.proxy_revalidate;
    let fresh_enough = match (req.max_age, req.min_fresh) {
        (Some(max), _) if age > Duration::from_secs(max) => false,
        (_, Some(min)) => age.saturating_add(Duration::from_secs(min)) < lifetime,
        _ => age < lifetime,
    };
    if fresh_enough && !cc.no_cache && !req.no_cache {
        return Use::Fresh;
    }
    let stale_by = age.saturating_sub(lifetime);
    if !strict
        && !cc.no_cache
        && !req.no_cache
        && let Some(swr) = cc.stale_while_revalidate
        && stale_by <= Duration::from_secs(swr)
    {
        return Use::StaleWhileRevalidate;
    }
    let allowance = cc
        .stale_if_error
        .map_or(policy.stale_if_error_default, Duration::from_secs);
    Use::Revalidate {
        if_error: !strict && stale_by <= allowance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn http_date(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    use http::header::CACHE_CONTROL as CC;
    const OK: StatusCode = StatusCode::OK;

    fn lifetime(status: StatusCode, h: &HeaderMap) -> Duration {
        freshness_lifetime(status, h, t(0), &Policy::default())
    }

    #[test]
    fn freshness_from_directives_in_order() {
        assert_eq!(
            lifetime(OK, &headers(&[(CC, "max-age=60")])),
            Duration::from_secs(60)
        );
        assert_eq!(
            lifetime(OK, &headers(&[(CC, "max-age=60, s-maxage=5")])),
            Duration::from_secs(5)
        );
        let d = http_date(0);
        let e = http_date(300);
        let h = headers(&[(DATE, &d), (EXPIRES, &e)]);
        assert_eq!(lifetime(OK, &h), Duration::from_secs(300));
        assert_eq!(
            lifetime(OK, &headers(&[(EXPIRES, "0")])),
            Duration::ZERO,
            "invalid Expires is expired"
        );
        let h = headers(&[(CC, "max-age=60"), (EXPIRES, &e)]);
        assert_eq!(
            lifetime(OK, &h),
            Duration::from_secs(60),
            "max-age beats Expires"
        );
        assert_eq!(lifetime(OK, &headers(&[(CC, "max-age=x")])), Duration::ZERO);
    }

    #[test]
    fn heuristic_is_ten_percent_of_last_modified_age_capped() {
        let lm = httpdate::fmt_http_date(t(0) - Duration::from_secs(1000));
        let d = http_date(0);
        assert_eq!(
            lifetime(OK, &headers(&[(DATE, &d), (LAST_MODIFIED, &lm)])),
            Duration::from_secs(100)
        );
        let old = httpdate::fmt_http_date(t(0) - Duration::from_secs(100 * 24 * 3600));
        assert_eq!(
            lifetime(OK, &headers(&[(DATE, &d), (LAST_MODIFIED, &old)])),
            Duration::from_secs(24 * 3600)
        );
        // Not for a status that is not heuristically cacheable.
        assert_eq!(
            lifetime(StatusCode::FOUND, &headers(&[(LAST_MODIFIED, &lm)])),
            Duration::ZERO
        );
        // 404 without information: the negative TTL.
        assert_eq!(
            lifetime(StatusCode::NOT_FOUND, &HeaderMap::new()),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn what_may_be_stored() {
        let p = Policy::default();
        let get = Method::GET;
        let none = HeaderMap::new();
        let ok = |resp: &HeaderMap| storable(&get, &none, OK, resp, &p);
        assert_eq!(ok(&headers(&[(CC, "max-age=60")])), Ok(()));
        assert_eq!(
            ok(&headers(&[(ETAG, "\"v1\"")])),
            Ok(()),
            "a validator suffices"
        );
        assert_eq!(ok(&none), Err(NotStorable::NoFreshness));
        let with_min = Policy {
            min_ttl: Some(Duration::from_secs(10)),
            ..Policy::default()
        };
        assert_eq!(storable(&get, &none, OK, &none, &with_min), Ok(()));
        assert_eq!(
            freshness_lifetime(OK, &none, t(0), &with_min),
            Duration::from_secs(10)
        );
        assert_eq!(
            ok(&headers(&[(CC, "no-store, max-age=60")])),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            ok(&headers(&[(CC, "private, max-age=60")])),
            Err(NotStorable::Private)
        );
        assert_eq!(
            ok(&headers(&[(CC, "max-age=60"), (VARY, "Accept, *")])),
            Err(NotStorable::VaryAny)
        );
        assert_eq!(
            storable(
                &Method::POST,
                &none,
                OK,
                &headers(&[(CC, "max-age=60")]),
                &p
            ),
            Err(NotStorable::Method)
        );
        let auth = headers(&[(AUTHORIZATION, "Basic eDp5")]);
        assert_eq!(
            storable(&get, &auth, OK, &headers(&[(CC, "max-age=60")]), &p),
            Err(NotStorable::Authorization)
        );
        assert_eq!(
            storable(&get, &auth, OK, &headers(&[(CC, "public, max-age=60")]), &p),
            Ok(())
        );
        assert_eq!(
            storable(
                &get,
                &headers(&[(CC, "no-store")]),
                OK,
                &headers(&[(CC, "max-age=60")]),
                &p
            ),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            storable(
                &get,
                &none,
                StatusCode::FOUND,
                &headers(&[(ETAG, "\"x\"")]),
                &p
            ),
            Err(NotStorable::Status)
        );
        assert_eq!(
            storable(
                &get,
                &none,
                StatusCode::FOUND,
                &headers(&[(CC, "max-age=5")]),
                &p
            ),
            Ok(())
        );
        let keep_cookies = Policy {
            strip_cookies: false,
            ..Policy::default()
        };
        assert_eq!(
            storable(
                &get,
                &none,
                OK,
                &headers(&[(CC, "max-age=60"), (SET_COOKIE, "a=b")]),
                &keep_cookies
            ),
            Err(NotStorable::SetCookie)
        );
    }

    #[test]
    fn age_follows_rfc_9111() {
        // Sent at 0, received at 2 with Date 1 and Age 10; asked at 32.
        let d = http_date(1);
        let r = Received::new(t(0), t(2), &headers(&[(DATE, &d), (AGE, "10")]));
        assert_eq!(r.current_age(t(32)), Duration::from_secs(10 + 2 + 30));
        // A Date in the future and garbage Age count as zero.
        let d = http_date(100);
        let r = Received::new(t(0), t(0), &headers(&[(DATE, &d), (AGE, "soon")]));
        assert_eq!(r.current_age(t(5)), Duration::from_secs(5));
    }

    #[test]
    fn stale_use_depends_on_directives() {
        let p = Policy::default();
        let none = HeaderMap::new();
        let use_at = |resp: &HeaderMap, age: u64| {
            usable(
                &none,
                resp,
                Duration::from_secs(60),
                Duration::from_secs(age),
                &p,
            )
        };
        let plain = headers(&[(CC, "max-age=60")]);
        assert_eq!(use_at(&plain, 10), Use::Fresh);
        assert_eq!(use_at(&plain, 61), Use::Revalidate { if_error: true });
        assert_eq!(
            use_at(&plain, 60 + 25 * 3600),
            Use::Revalidate { if_error: false }
        );
        let swr = headers(&[(CC, "max-age=60, stale-while-revalidate=30")]);
        assert_eq!(use_at(&swr, 80), Use::StaleWhileRevalidate);
        assert_eq!(use_at(&swr, 100), Use::Revalidate { if_error: true });
        let sie = headers(&[(CC, "max-age=60, stale-if-error=10")]);
        assert_eq!(use_at(&sie, 75), Use::Revalidate { if_error: false });
        for strict in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
        ] {
            assert_eq!(
                use_at(&headers(&[(CC, strict)]), 61),
                Use::Revalidate { if_error: false }
            );
        }
        assert_eq!(
            use_at(&headers(&[(CC, "max-age=60, no-cache")]), 1),
            Use::Revalidate { if_error: true }
        );
        // Request directives: max-age=0 and no-cache force revalidation; min-fresh narrows.
        let req = headers(&[(CC, "max-age=0")]);
        assert!(matches!(
            usable(
                &req,
                &plain,
                Duration::from_secs(60),
                Duration::from_secs(1),
                &p
            ),
            Use::Revalidate { .. }
        ));
        let req = headers(&[(CC, "min-fresh=30")]);
        assert!(matches!(
            usable(
                &req,
                &plain,
                Duration::from_secs(60),
                Duration::from_secs(40),
                &p
            ),
            Use::Revalidate { .. }
        ));
    }
}
