//! Which origin a request is for: the Host header read as a CDN name (the encodings of
//! [`dns::name`]), or, for hosts outside the zone, the reverse-proxy origin if one is set.
//! Also the rewrite of redirects to the origin's own names, so clients stay on the CDN.

use std::fmt;

use dns::name::{NameError, ZoneName, ZoneSuffix};

/// Longest Host header accepted.
pub const MAX_HOST_LEN: usize = 255;

/// How to reach an origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Fetch over TLS (port label 443, or an `https://` reverse origin).
    pub tls: bool,
    /// Lowercase host name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Upstream {
    /// The `Host` header for requests to it (the port only when it is not 80).
    pub fn host_header(&self) -> String {
        match self.port {
            80 => self.host.clone(),
            p => format!("{}:{p}", self.host),
        }
    }
}

impl Upstream {
    /// The cache key of `path_and_query` at this upstream: its URL, built in one allocation
    /// (every request builds one).
    pub fn key_for(&self, path_and_query: &str) -> String {
        use fmt::Write;
        let mut key = String::with_capacity(self.host.len() + path_and_query.len() + 16);
        let _ = write!(key, "{self}{path_and_query}");
        key
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tls, self.port) {
            (false, 80) => write!(f, "http://{}", self.host),
            (true, 443) => write!(f, "https://{}", self.host),
            (true, p) => write!(f, "https://{}:{p}", self.host),
            (false, p) => write!(f, "http://{}:{p}", self.host),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A CDN name: cached and shared with peers.
    Cdn(Upstream),
    /// Reverse-proxy mode for the operator's own site (`--origin`).
    Reverse(Upstream),
}

/// Why a request names no origin. Each maps to a 400 page that says how to form a CDN URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No Host header (and no absolute URI).
    #[error("the request has no Host header")]
    MissingHost,
    /// The Host header is not a host name (bad characters, too long, bad port).
    #[error("malformed Host header")]
    BadHost,
    /// A name under the zone that encodes no origin.
    #[error("{host} is not a CDN name: {reason}")]
    NotAnOrigin {
        /// The host asked for.
        host: String,
        /// Why.
        reason: NameError,
    },
    /// Outside the zone, and no reverse-proxy origin is configured.
    #[error("{host} is not under the CDN zone")]
    OutsideZone {
        /// The host asked for.
        host: String,
    },
}

/// Parses an origin URL for reverse-proxy mode (`http://host[:port]` or `https://...`).
pub fn parse_origin(url: &str) -> Result<Upstream, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url}: expected http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.is_empty() {
        return Err(format!("{url}: expected scheme://host[:port] only"));
    }
    let (host, port) =
        split_host_port(authority).map_err(|_| format!("{url}: bad host or port"))?;
    Ok(Upstream {
        tls,
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        host,
    })
}

/// `host[:port]` (or `[v6]:port`) -> lowercase host and optional port.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), RouteError> {
    if s.is_empty() || s.len() > MAX_HOST_LEN || !s.is_ascii() {
        return Err(RouteError::BadHost);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or(RouteError::BadHost)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(RouteError::BadHost)?),
        };
        (h, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(RouteError::BadHost)?,
        ),
    };
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    if host.is_empty() || !host.bytes().all(valid) {
        return Err(RouteError::BadHost);
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// Reads Host headers against the zone.
#[derive(Debug, Clone)]
pub struct Router {
    zone: ZoneSuffix,
    reverse: Option<Upstream>,
}

impl Router {
    /// A router for `zone`, sending other hosts to `reverse` if set.
    pub fn new(zone: ZoneSuffix, reverse: Option<Upstream>) -> Self {
        Router { zone, reverse }
    }

    /// The zone.
    pub fn zone(&self) -> &ZoneSuffix {
        &self.zone
    }

    /// The route for a request with this Host header.
    pub fn route(&self, host_header: Option<&str>) -> Result<Route, RouteError> {
        let raw = host_header.ok_or(RouteError::MissingHost)?;
        let (host, _port) = split_host_port(raw.trim())?;
        match self.zone.classify(&host) {
            Ok(ZoneName::Origin(o)) => Ok(Route::Cdn(Upstream {
                tls: o.tls(),
                host: o.host,
                port: o.port,
            })),
            Ok(ZoneName::Apex) => Err(RouteError::NotAnOrigin {
                host,
                reason: NameError::Apex,
            }),
            Ok(ZoneName::Nameserver(_)) => Err(RouteError::NotAnOrigin {
                host,
                reason: NameError::InvalidHost("a nameserver name"),
            }),
            Err(NameError::OutsideZone) => match &self.reverse {
                Some(up) => Ok(Route::Reverse(up.clone())),
                None => Err(RouteError::OutsideZone { host }),
            },
            Err(reason) => Err(RouteError::NotAnOrigin { host, reason }),
        }
    }

    /// The CDN host name of an origin.
    pub fn cdn_host(&self, up: &Upstream) -> String {
        let port = match (up.tls, up.port) {
            (false, 80) => 80,
            (true, 443) => 443,
            (_, p) => p,
        };
        self.zone.encode(&dns::Origin {
            host: up.host.clone(),
            port,
        })
    }

    /// A `Location` pointing at the origin's own name (`http://origin/...` or
    /// `https://origin/...`) rewritten onto the CDN; other locations (relative ones, other
    /// hosts) are left alone.
    pub fn rewrite_location(&self, location: &str, origin: &Upstream) -> Option<String> {
        let (tls, rest) = if let Some(r) = location.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = location.strip_prefix("http://") {
            (false, r)
        } else {
            return None;
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let (host, port) = split_host_port(authority).ok()?;
        if host != origin.host {
            return None;
        }
        let target = Upstream {
            tls,
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            host,
        };
        Some(format!("http://{}{path}", self.cdn_host(&target)))
    }

    /// The body of the 400 page: what went wrong and how to form a CDN URL.
    pub fn help_page(&self, err: &RouteError) -> String {
        let z = self.zone.as_text();
        format!(
            "400 Bad Request: {err}.\n\n\
             This is a reef CDN node. To fetch a page through the CDN, add the zone to its host name:\n\n\
             \x20 http://www.example.com/page.html       ->  http://www.example.com.{z}/page.html\n\
             \x20 http://www.example.com:8080/a.iso      ->  http://www.example.com.8080.{z}/a.iso\n\
             \x20 https://www.example.com/a.css          ->  http://www.example.com.443.{z}/a.css\n\n\
             One-label form (dots as '-', a '-' as '--'), for wildcard certificates:\n\n\
             \x20 http://www-example-com.{z}/page.html\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn router(reverse: Option<&str>) -> Router {
        Router::new(
            ZoneSuffix::parse("cdn").unwrap(),
            reverse.map(|r| parse_origin(r).unwrap()),
        )
    }

    fn up(tls: bool, host: &str, port: u16) -> Upstream {
        Upstream {
            tls,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn cdn_names_route_to_their_origin() {
        let r = router(None);
        assert_eq!(
            r.route(Some("www.example.com.cdn")),
            Ok(Route::Cdn(up(false, "www.example.com", 80)))
        );
        assert_eq!(
            r.route(Some("WWW.example.com.cdn:8080")),
            Ok(Route::Cdn(up(false, "www.example.com", 80)))
        );
        assert_eq!(
            r.route(Some("www.example.com.8080.cdn")),
            Ok(Route::Cdn(up(false, "www.example.com", 8080)))
        );
        assert_eq!(
            r.route(Some("www.example.com.443.cdn")),
            Ok(Route::Cdn(up(true, "www.example.com", 443)))
        );
        assert_eq!(
            r.route(Some("www-example-com.cdn")),
            Ok(Route::Cdn(up(false, "www.example.com", 80)))
        );
    }

    #[test]
    fn everything_else_is_a_clear_error() {
        let r = router(None);
        assert_eq!(r.route(None), Err(RouteError::MissingHost));
        assert_eq!(r.route(Some("")), Err(RouteError::BadHost));
        assert_eq!(r.route(Some("a b.cdn")), Err(RouteError::BadHost));
        assert_eq!(r.route(Some("example.com.cdn:0")), Err(RouteError::BadHost));
        assert_eq!(
            r.route(Some("example.com.cdn:99999")),
            Err(RouteError::BadHost)
        );
        assert!(matches!(
            r.route(Some("cdn")),
            Err(RouteError::NotAnOrigin { .. })
        ));
        assert!(matches!(
            r.route(Some("localhost.cdn")),
            Err(RouteError::NotAnOrigin { .. })
        ));
        assert!(matches!(
            r.route(Some("www.example.com")),
            Err(RouteError::OutsideZone { .. })
        ));
        let page = r.help_page(&RouteError::MissingHost);
        assert!(page.contains("www.example.com.cdn") && page.contains("www-example-com.cdn"));
    }

    #[test]
    fn reverse_mode_takes_hosts_outside_the_zone_only() {
        let r = router(Some("http://127.0.0.1:8081"));
        assert_eq!(
            r.route(Some("my.site.org")),
            Ok(Route::Reverse(up(false, "127.0.0.1", 8081)))
        );
        assert_eq!(
            r.route(Some("www.example.com.cdn")),
            Ok(Route::Cdn(up(false, "www.example.com", 80)))
        );
        assert!(parse_origin("ftp://x").is_err());
        assert!(parse_origin("http://x/path").is_err());
        assert_eq!(parse_origin("https://x.org"), Ok(up(true, "x.org", 443)));
    }

    #[test]
    fn redirects_to_the_origin_stay_on_the_cdn() {
        let r = router(None);
        let o = up(false, "www.example.com", 80);
        assert_eq!(
            r.rewrite_location("http://www.example.com/new?q=1", &o)
                .as_deref(),
            Some("http://www.example.com.cdn/new?q=1")
        );
        assert_eq!(
            r.rewrite_location("https://www.example.com/login", &o)
                .as_deref(),
            Some("http://www.example.com.443.cdn/login")
        );
        assert_eq!(
            r.rewrite_location("http://WWW.EXAMPLE.COM:8080", &o)
                .as_deref(),
            Some("http://www.example.com.8080.cdn")
        );
        assert_eq!(r.rewrite_location("http://other.org/x", &o), None);
        assert_eq!(r.rewrite_location("/relative", &o), None);
    }

    proptest! {
        #[test]
        fn any_host_header_is_routed_or_refused_without_panic(h in "\\PC{0,300}") {
            let _ = router(Some("http://o.example")).route(Some(&h));
        }

        #[test]
        fn any_location_is_rewritten_or_left_without_panic(l in "\\PC{0,300}") {
            let _ = router(None).rewrite_location(&l, &up(false, "a.b", 80));
        }
    }
}
