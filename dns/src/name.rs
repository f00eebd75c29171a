//! CDN names: how a name under the zone encodes an origin, and the names of nameservers.
//!
//! ```text
//! www.example.com.<zone>          -> origin www.example.com, port 80
//! www.example.com.8080.<zone>     -> port 8080 (port label 443: fetched over TLS)
//! www-example-com.<zone>          -> single-label form: "-" is ".", "--" is a literal "-"
//! ns-192-0-2-1.<zone>             -> the nameserver at 192.0.2.1 (ns6-<32 hex>: IPv6)
//! ```
//! The single-label form lets one `*.<zone>` wildcard certificate cover every origin (as
//! IPFS subdomain gateways do). Matching is case-insensitive; origins come out lowercase.
//! A nameserver name can never be an origin: it decodes to a numeric top-level label, which
//! no origin has.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest DNS name in text form, without the trailing dot.
pub const MAX_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// Why a name does not encode an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Not under the zone at all.
    #[error("not under the zone")]
    OutsideZone,
    /// The zone itself (the apex), which names no origin.
    #[error("the zone apex names no origin")]
    Apex,
    /// The labels do not form a valid host name (RFC 1123) with a dot in it.
    #[error("invalid origin host: {0}")]
    InvalidHost(&'static str),
    /// Names no origin itself, but names below it may (`com.<zone>` is above
    /// `www.example.com.<zone>`): an "empty non-terminal", answered NODATA, not NXDOMAIN
    /// (RFC 8020), so resolvers minimising query names still get through.
    #[error("names no origin, but names below it may")]
    Partial,
    /// A port label out of range.
    #[error("invalid port label")]
    InvalidPort,
    /// Over DNS length limits.
    #[error("name too long")]
    TooLong,
}

/// The origin a CDN name stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Lowercase host name, e.g. `www.example.com`.
    pub host: String,
    /// TCP port; 443 means HTTPS to the origin.
    pub port: u16,
}

impl Origin {
    /// Whether the origin is fetched over TLS (port label 443).
    pub fn tls(&self) -> bool {
        self.port == 443
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            80 => write!(f, "http://{}", self.host),
            443 => write!(f, "https://{}", self.host),
            p => write!(f, "http://{}:{p}", self.host),
        }
    }
}

/// What a name under the zone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneName {
    /// The zone apex.
    Apex,
    /// A nameserver of the zone, at this address.
    Nameserver(IpAddr),
    /// An origin served through the CDN.
    Origin(Origin),
}

/// The zone's name, normalized: lowercase labels, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSuffix {
    labels: Vec<String>,
}

impl ZoneSuffix {
    /// Parses a zone such as `cdn` or `reef.example.net.`.
    pub fn parse(zone: &str) -> Result<Self, NameError> {
        let lower = zone.to_ascii_lowercase();
        let labels: Vec<String> = split_labels(&lower)?
            .into_iter()
            .map(str::to_string)
            .collect();
        if labels.is_empty() {
            return Err(NameError::InvalidHost("empty zone"));
        }
        for l in &labels {
            check_host_label(l)?;
        }
        Ok(ZoneSuffix { labels })
    }

    /// The zone as text, without a trailing dot.
    pub fn as_text(&self) -> String {
        self.labels.join(".")
    }

    /// Number of labels of the zone.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// Classifies `name` (text form, any case, optional trailing dot).
    pub fn classify(&self, name: &str) -> Result<ZoneName, NameError> {
        // One lowercase copy, and labels that borrow from it: every request and every DNS
        // query is classified.
        let lower = name.to_ascii_lowercase();
        let labels = split_labels(&lower)?;
        let z = self.labels.len();
        if labels.len() < z
            || labels[labels.len() - z..]
                .iter()
                .zip(&self.labels)
                .any(|(a, b)| a != b)
        {
            return Err(NameError::OutsideZone);
        }
        let inner = &labels[..labels.len() - z];
        if inner.is_empty() {
            return Ok(ZoneName::Apex);
        }
        if let [only] = inner
            && let Some(ip) = decode_nameserver(only)
        {
            return Ok(ZoneName::Nameserver(ip));
        }
        decode_origin(inner).map(ZoneName::Origin)
    }

    /// The name of the nameserver at `ip`, under this zone.
    pub fn nameserver_name(&self, ip: IpAddr) -> String {
        let mut label = Vec::with_capacity(40);
        push_nameserver_label(ip, &mut label);
        format!("{}.{}", String::from_utf8_lossy(&label), self.as_text())
    }

    /// The CDN name of an origin in the multi-label form.
    pub fn encode(&self, origin: &Origin) -> String {
        match origin.port {
            80 => format!("{}.{}", origin.host, self.as_text()),
            p => format!("{}.{p}.{}", origin.host, self.as_text()),
        }
    }
}

/// Appends the first label of the nameserver name of `ip` (`ns-1-2-3-4`, or `ns6-` and 32
/// hex digits): its name below the zone, as [`ZoneSuffix::nameserver_name`] writes it and
/// `classify` reads it back.
pub(crate) fn push_nameserver_label(ip: IpAddr, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a vector cannot fail.
    let _ = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            write!(out, "ns-{}-{}-{}-{}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(v6) => {
            out.extend_from_slice(b"ns6-");
            v6.octets().iter().try_for_each(|b| write!(out, "{b:02x}"))
        }
    };
}

/// The labels of `name` (the caller lowercases it), without a trailing dot; rejects empty
/// labels and names over the limits.
fn split_labels(name: &str) -> Result<Vec<&str>, NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if name.is_empty() {
        return Ok(Vec::new());
    }
    name.split('.')
        .map(|l| {
            if l.is_empty() {
                Err(NameError::InvalidHost("empty label"))
            } else if l.len() > MAX_LABEL_LEN {
                Err(NameError::TooLong)
            } else {
                Ok(l)
            }
        })
        .collect()
}

fn check_host_label(l: &str) -> Result<(), NameError> {
    if l.is_empty() || l.len() > MAX_LABEL_LEN {
        return Err(NameError::InvalidHost("label length"));
    }
    if !l
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(NameError::InvalidHost(
            "characters other than letters, digits and '-'",
        ));
    }
    if l.starts_with('-') || l.ends_with('-') {
        return Err(NameError::InvalidHost("label starts or ends with '-'"));
    }
    Ok(())
}

fn decode_origin(labels: &[&str]) -> Result<Origin, NameError> {
    let (host_labels, port) = match labels.split_last() {
        Some((last, rest)) if !rest.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) => {
            let port: u16 = last.parse().map_err(|_| NameError::InvalidPort)?;
            if port == 0 || last.starts_with('0') {
                return Err(NameError::InvalidPort);
            }
            (rest, port)
        }
        _ => (labels, 80),
    };
    let host = match host_labels {
        [single] => decode_single_label(single)?,
        many => many.join("."),
    };
    let mut count = 0;
    let mut last = "";
    for p in host.split('.') {
        check_host_label(p)?;
        count += 1;
        last = p;
    }
    if count < 2 {
        return Err(NameError::Partial);
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::InvalidHost(
            "numeric top-level label (an address, not a name)",
        ));
    }
    if host.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    Ok(Origin { host, port })
}

/// `www-example-com` -> `www.example.com`; `my--site-example-com` -> `my-site.example.com`.
fn decode_single_label(label: &str) -> Result<String, NameError> {
    let mut out = String::with_capacity(label.len());
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            if chars.peek() == Some(&'-') {
                chars.next();
                out.push('-');
            } else {
                out.push('.');
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn decode_nameserver(label: &str) -> Option<IpAddr> {
    if let Some(rest) = label.strip_prefix("ns-") {
        let octets: Vec<u8> = rest
            .split('-')
            .map(|o| {
                if o.len() > 1 && o.starts_with('0') {
                    None
                } else {
                    o.parse().ok()
                }
            })
            .collect::<Option<_>>()?;
        let o: [u8; 4] = octets.try_into().ok()?;
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    let hex = label.strip_prefix("ns6-")?;
    if hex.len() != 32 {
        return None;
    }
    let mut o = [0u8; 16];
    for (i, out) in o.iter_mut().enumerate() {
        *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(IpAddr::V6(Ipv6Addr::from(o)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone() -> ZoneSuffix {
        ZoneSuffix::parse("cdn").unwrap()
    }

    fn origin(host: &str, port: u16) -> ZoneName {
        ZoneName::Origin(Origin {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn decodes_every_form() {
        let z = zone();
        assert_eq!(
            z.classify("www.example.com.cdn"),
            Ok(origin("www.example.com", 80))
        );
        assert_eq!(
            z.classify("WWW.Example.COM.cdn."),
            Ok(origin("www.example.com", 80))
        );
        assert_eq!(
            z.classify("www.example.com.8080.cdn"),
            Ok(origin("www.example.com", 8080))
        );
        assert_eq!(
            z.classify("www.example.com.443.cdn"),
            Ok(origin("www.example.com", 443))
        );
        assert_eq!(
            z.classify("www-example-com.cdn"),
            Ok(origin("www.example.com", 80))
        );
        assert_eq!(
            z.classify("my--site-example-com.cdn"),
            Ok(origin("my-site.example.com", 80))
        );
        assert_eq!(
            z.classify("www-example-com.8080.cdn"),
            Ok(origin("www.example.com", 8080))
        );
        assert_eq!(z.classify("cdn"), Ok(ZoneName::Apex));
        assert_eq!(z.classify("CDN."), Ok(ZoneName::Apex));
        assert_eq!(
            z.classify("ns-192-0-2-1.cdn"),
            Ok(ZoneName::Nameserver("192.0.2.1".parse().unwrap()))
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            z.classify(&z.nameserver_name(v6)),
            Ok(ZoneName::Nameserver(v6))
        );
    }

    #[test]
    fn rejects_what_is_not_an_origin() {
        let z = zone();
        assert_eq!(z.classify("www.example.com"), Err(NameError::OutsideZone));
        assert_eq!(z.classify("example.cdnx"), Err(NameError::OutsideZone));
        assert_eq!(z.classify("localhost.cdn"), Err(NameError::Partial));
        assert_eq!(z.classify("com.cdn"), Err(NameError::Partial));
        assert_eq!(z.classify("8080.cdn"), Err(NameError::Partial));
        assert!(matches!(
            z.classify("10.0.0.1.cdn"),
            Err(NameError::InvalidHost(_))
        ));
        assert!(matches!(
            z.classify("a..b.cdn"),
            Err(NameError::InvalidHost(_))
        ));
        assert!(matches!(
            z.classify("-bad.example.com.cdn"),
            Err(NameError::InvalidHost(_))
        ));
        assert!(matches!(
            z.classify("under_score.example.com.cdn"),
            Err(NameError::InvalidHost(_))
        ));
        assert_eq!(
            z.classify("www.example.com.0.cdn"),
            Err(NameError::InvalidPort)
        );
        assert_eq!(
            z.classify("www.example.com.70000.cdn"),
            Err(NameError::InvalidPort)
        );
        assert_eq!(
            z.classify("www.example.com.080.cdn"),
            Err(NameError::InvalidPort)
        );
        let long = format!("{}.example.com.cdn", "a".repeat(64));
        assert_eq!(z.classify(&long), Err(NameError::TooLong));
    }

    #[test]
    fn multi_label_zone() {
        let z = ZoneSuffix::parse("reef.example.net.").unwrap();
        assert_eq!(
            z.classify("a.b.c.reef.example.net"),
            Ok(origin("a.b.c", 80))
        );
        assert_eq!(z.classify("example.net"), Err(NameError::OutsideZone));
        assert_eq!(z.classify("other.example.net"), Err(NameError::OutsideZone));
        assert_eq!(
            z.encode(&Origin {
                host: "a.b".into(),
                port: 8080
            }),
            "a.b.8080.reef.example.net"
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics(name in "\\PC{0,300}") {
            let _ = zone().classify(&name);
        }

        #[test]
        fn encoded_origins_decode_back(
            labels in proptest::collection::vec("[a-z][a-z0-9]{0,10}", 2..5),
            port in 1u16..,
        ) {
            let o = Origin { host: labels.join("."), port };
            let z = zone();
            prop_assert_eq!(z.classify(&z.encode(&o)), Ok(ZoneName::Origin(o)));
        }
    }
}
