//! The answer to one query, as a pure function of (question, client, roster snapshot,
//! location lookup, settings). No hickory types and no IO here: `handler.rs` adapts.
//!
//! NXDOMAIN and REFUSED are [`Answer`]s, not errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::geo::Location;
use crate::name::{NameError, ZoneName, ZoneSuffix};
use crate::roster::{Proxy, RosterSnapshot};

/// The query types the zone distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Nameservers.
    Ns,
    /// Start of authority.
    Soa,
    /// Anything (RFC 8482: answered minimally).
    Any,
    /// Any other type: NODATA for names that exist.
    Other(u16),
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The name as received (its case is preserved in the answer).
    pub name: &'a str,
    /// The type.
    pub qtype: QType,
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The resolver that sent the query.
    pub resolver: IpAddr,
    /// EDNS Client Subnet (RFC 7871), if the resolver sent one: address and source prefix.
    pub subnet: Option<(IpAddr, u8)>,
}

/// The zone's SOA fields (names are derived from the zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaTimers {
    /// Version of the zone.
    pub serial: u32,
    /// Secondary refresh interval, s.
    pub refresh: i32,
    /// Secondary retry interval, s.
    pub retry: i32,
    /// Secondary expiry, s.
    pub expire: i32,
    /// Negative-caching TTL, s (RFC 2308).
    pub minimum: u32,
}

/// How the zone answers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The zone.
    pub zone: ZoneSuffix,
    /// Proxies per A/AAAA answer.
    pub answer_count: usize,
    /// TTL of A/AAAA records, s: short, so dead proxies leave answers quickly.
    pub a_ttl: u32,
    /// Nameservers per NS answer or authority section.
    pub ns_count: usize,
    /// TTL of NS records and their glue, s.
    pub ns_ttl: u32,
    /// Only proxies seen alive within this are returned.
    pub alive_within: Duration,
    /// SOA timers.
    pub soa: SoaTimers,
}

impl Settings {
    /// The defaults for `zone`.
    pub fn new(zone: ZoneSuffix) -> Settings {
        Settings {
            zone,
            answer_count: 2,
            a_ttl: 30,
            ns_count: 2,
            ns_ttl: 3600,
            alive_within: Duration::from_secs(30),
            soa: SoaTimers {
                serial: 1,
                refresh: 3600,
                retry: 600,
                expire: 86_400,
                minimum: 60,
            },
        }
    }
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A nameserver, by address: its name is [`ZoneSuffix::nameserver_name`] (the adapter
    /// caches the encoded names rather than building them per query).
    Ns(IpAddr),
    /// The start of authority.
    Soa {
        /// Primary nameserver.
        mname: String,
        /// Responsible mailbox, as a name.
        rname: String,
        /// Timers.
        timers: SoaTimers,
    },
}

/// Whose record it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The name asked, in the case it was asked.
    Query,
    /// The zone apex, in the case of the name asked.
    Apex,
    /// The nameserver at this address.
    Nameserver(IpAddr),
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Owner name.
    pub name: Owner,
    /// TTL, s.
    pub ttl: u32,
    /// Data.
    pub data: RData,
}

/// Response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// Success (possibly NODATA: no answers).
    NoError,
    /// The name does not exist.
    NxDomain,
    /// Not our zone.
    Refused,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: Rcode,
    /// Authoritative (false only for REFUSED).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Rec>,
    /// Authority section (NS, or SOA for negative answers).
    pub authority: Vec<Rec>,
    /// Additional section (glue).
    pub additional: Vec<Rec>,
    /// ECS scope prefix to return, when the answer depended on the client subnet.
    pub ecs_scope: Option<u8>,
}

impl Answer {
    fn refused() -> Answer {
        Answer {
            rcode: Rcode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            ecs_scope: None,
        }
    }
}

/// Looks up where an address is.
pub trait Locate {
    /// The location of `ip`, if known.
    fn locate(&self, ip: IpAddr) -> Option<Location>;
}

impl<F: Fn(IpAddr) -> Option<Location>> Locate for F {
    fn locate(&self, ip: IpAddr) -> Option<Location> {
        self(ip)
    }
}

/// Answers `q` from `client`. `turn` varies the choice among equally good proxies (a
/// counter kept by the caller), so unknown clients are spread over all live proxies.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    q: &Question<'_>,
    client: &ClientInfo,
    roster: &RosterSnapshot,
    now: Instant,
    geo: &dyn Locate,
    settings: &Settings,
    turn: u64,
) -> Answer {
    let zone = &settings.zone;
    let kind = match zone.classify(q.name) {
        Ok(kind) => kind,
        Err(NameError::OutsideZone) => return Answer::refused(),
        // Names exist below it: NODATA (RFC 8020).
        Err(NameError::Partial) => return negative(q, settings, roster, Rcode::NoError),
        Err(_) => return negative(q, settings, roster, Rcode::NxDomain),
    };
    let located = locate_client(client, geo);
    let client_loc = located.map(|(loc, _)| loc);
    let ecs_scope = client.subnet.map(|_| located.map_or(0, |(_, scope)| scope));
    let live = roster.live(now, settings.alive_within);
    let mut out = Answer {
        rcode: Rcode::NoError,
        authoritative: true,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        ecs_scope,
    };
    match kind {
        ZoneName::Apex => match q.qtype {
            QType::Soa => out.answers.push(soa(settings, roster)),
            QType::Ns => {
                let (ns, glue) = nameservers(roster, &live, client_loc, geo, settings, turn);
                out.answers = ns;
                out.additional = glue;
            }
            QType::Any => {
                out.answers.push(soa(settings, roster));
                let (ns, glue) = nameservers(roster, &live, client_loc, geo, settings, turn);
                out.answers.extend(ns);
                out.additional = glue;
            }
            _ => return nodata(out, settings, roster),
        },
        ZoneName::Nameserver(ip) => {
            let known = std::iter::once(&roster.me)
                .chain(&roster.others)
                .any(|p| p.addr == ip && (p.nameserver || p.addr == roster.me.addr));
            if !known {
                // Not a nameserver of this network, so it has no address here; but origins
                // may sit below the name (`x.ns-1-2-3-4.<zone>`): NODATA, not NXDOMAIN.
                return negative(q, settings, roster, Rcode::NoError);
            }
            match (q.qtype, ip) {
                (QType::A | QType::Any, IpAddr::V4(v4)) => out.answers.push(Rec {
                    name: Owner::Query,
                    ttl: settings.ns_ttl,
                    data: RData::A(v4),
                }),
                (QType::Aaaa | QType::Any, IpAddr::V6(v6)) => out.answers.push(Rec {
                    name: Owner::Query,
                    ttl: settings.ns_ttl,
                    data: RData::Aaaa(v6),
                }),
                _ => return nodata(out, settings, roster),
            }
        }
        ZoneName::Origin(_) => {
            let want_v6 = match q.qtype {
                QType::A | QType::Any => false,
                QType::Aaaa => true,
                _ => return nodata(out, settings, roster),
            };
            let family: Vec<&Proxy> = live
                .iter()
                .copied()
                .filter(|p| p.addr.is_ipv6() == want_v6)
                .collect();
            for p in nearest(&family, client_loc, geo, settings.answer_count, turn) {
                out.answers.push(Rec {
                    name: Owner::Query,
                    ttl: settings.a_ttl,
                    data: address(p.addr),
                });
            }
            if out.answers.is_empty() {
                return nodata(out, settings, roster);
            }
            let (ns, glue) = nameservers(roster, &live, client_loc, geo, settings, turn);
            out.authority = ns;
            out.additional = glue;
        }
    }
    out
}

/// The client's location and the ECS scope it justifies: from the subnet if sent (scope =
/// its source prefix, capped at /24 and /56 as RFC 7871 advises), else the resolver.
fn locate_client(client: &ClientInfo, geo: &dyn Locate) -> Option<(Location, u8)> {
    match client.subnet {
        Some((ip, prefix)) if prefix > 0 => {
            let cap = if ip.is_ipv4() { 24 } else { 56 };
            geo.locate(ip).map(|l| (l, prefix.min(cap)))
        }
        _ => geo.locate(client.resolver).map(|l| (l, 0)),
    }
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    }
}

/// Up to `n` proxies: nearest first if the client is located, else a weighted random
/// choice by spare capacity (Efraimidis-Spirakis keys from `turn`), which over many queries
/// is a weighted round robin.
fn nearest<'a>(
    candidates: &[&'a Proxy],
    client: Option<Location>,
    geo: &dyn Locate,
    n: usize,
    turn: u64,
) -> Vec<&'a Proxy> {
    // With equal weights, u orders as ln(u)/w does: the logarithm is needed only when
    // spare capacities differ.
    let weighted = candidates.windows(2).any(|w| w[0].spare != w[1].spare);
    if weighted && client.is_none() {
        return successive_draws(candidates, n, turn);
    }
    let mut scored: Vec<(f64, f64, &Proxy)> = candidates
        .iter()
        .map(|p| {
            let distance = client
                .and_then(|c| {
                    // Compare like with like: a configured point against a client known only
                    // by country is looked up by address instead (its country).
                    let here = match (c, p.location) {
                        (Location::Point { .. }, Some(l @ Location::Point { .. }))
                        | (Location::Country(_), Some(l @ Location::Country(_))) => l,
                        (_, configured) => geo.locate(p.addr).or(configured)?,
                    };
                    c.distance_km(&here)
                })
                .unwrap_or(f64::INFINITY);
            // Efraimidis-Spirakis: the largest u^(1/w) wins; ln(u)/w orders the same, cheaper.
            let u = unit(turn, p.addr);
            let key = if weighted {
                u.ln() / p.spare.max(1e-6)
            } else {
                u
            };
            (distance, key, *p)
        })
        .collect();
    let order = |a: &(f64, f64, &Proxy), b: &(f64, f64, &Proxy)| {
        a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1))
    };
    if scored.len() > n && n > 0 {
        scored.select_nth_unstable_by(n - 1, order);
        scored.truncate(n);
    }
    scored.sort_unstable_by(order);
    scored.into_iter().take(n).map(|(_, _, p)| p).collect()
}

/// Up to `n` proxies drawn one after another, each with probability proportional to its
/// spare capacity among those left: the same distribution as the Efraimidis-Spirakis keys
/// (which are this, sorted), at a few additions per candidate instead of a logarithm, which
/// took a tenth of an answer's time with an unlocated client and fifty proxies.
fn successive_draws<'a>(candidates: &[&'a Proxy], n: usize, turn: u64) -> Vec<&'a Proxy> {
    let weight = |p: &Proxy| p.spare.max(1e-6);
    let mut left: Vec<&Proxy> = candidates.to_vec();
    let mut total: f64 = left.iter().map(|p| weight(p)).sum();
    let mut out = Vec::with_capacity(n.min(left.len()));
    for round in 0..n as u128 {
        if left.is_empty() {
            break;
        }
        let mut r = unit_bits(turn, (1 << 126) | round) * total;
        let mut pick = left.len() - 1;
        for (i, p) in left.iter().enumerate() {
            r -= weight(p);
            if r < 0.0 {
                pick = i;
                break;
            }
        }
        let p = left.swap_remove(pick);
        total -= weight(p);
        out.push(p);
    }
    out
}

/// A number in (0, 1) from (turn, address): stable per query, different across queries.
fn unit(turn: u64, ip: IpAddr) -> f64 {
    let bits = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) ^ (1 << 127),
    };
    unit_bits(turn, bits)
}

/// A number in (0, 1) from (turn, any 128 bits).
fn unit_bits(turn: u64, bits: u128) -> f64 {
    // Two rounds of splitmix64's finaliser over (turn, address): no allocation, well mixed.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let h = mix(turn.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (bits as u64));
    let h = mix(h ^ ((bits >> 64) as u64));
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// NS records (owned by the apex) naming nameservers near the client, and their glue.
fn nameservers(
    roster: &RosterSnapshot,
    live: &[&Proxy],
    client: Option<Location>,
    geo: &dyn Locate,
    settings: &Settings,
    turn: u64,
) -> (Vec<Rec>, Vec<Rec>) {
    // Nameservers only (a delegation to a host that serves no DNS is lame), and always this
    // node, which is answering, overloaded or not: NS is about DNS, not proxy bandwidth.
    let me = &roster.me;
    let servers: Vec<&Proxy> = std::iter::once(me)
        .chain(
            live.iter()
                .copied()
                .filter(|p| p.nameserver && p.addr != me.addr),
        )
        .collect();
    let chosen = nearest(&servers, client, geo, settings.ns_count, turn);
    let mut ns = Vec::with_capacity(chosen.len());
    let mut glue = Vec::with_capacity(chosen.len());
    for p in chosen {
        ns.push(Rec {
            name: Owner::Apex,
            ttl: settings.ns_ttl,
            data: RData::Ns(p.addr),
        });
        glue.push(Rec {
            name: Owner::Nameserver(p.addr),
            ttl: settings.ns_ttl,
            data: address(p.addr),
        });
    }
    (ns, glue)
}

fn soa(settings: &Settings, roster: &RosterSnapshot) -> Rec {
    let zone = settings.zone.as_text();
    Rec {
        name: Owner::Apex,
        ttl: settings.soa.minimum,
        data: RData::Soa {
            mname: settings.zone.nameserver_name(roster.me.addr),
            rname: format!("hostmaster.{zone}"),
            timers: settings.soa,
        },
    }
}

/// The name exists but has no record of this type: NOERROR, SOA in authority (RFC 2308).
fn nodata(mut out: Answer, settings: &Settings, roster: &RosterSnapshot) -> Answer {
    out.answers.clear();
    out.additional.clear();
    out.authority = vec![soa(settings, roster)];
    out
}

fn negative(
    _q: &Question<'_>,
    settings: &Settings,
    roster: &RosterSnapshot,
    rcode: Rcode,
) -> Answer {
    Answer {
        rcode,
        authoritative: true,
        answers: Vec::new(),
        authority: vec![soa(settings, roster)],
        additional: Vec::new(),
        ecs_scope: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn proxy(ip: &str, loc: Option<(f64, f64)>, seen_ago: u64, now: Instant) -> Proxy {
        Proxy {
            addr: ip.parse().unwrap(),
            location: loc.map(|(lat, lon)| Location::Point { lat, lon }),
            spare: 1.0,
            overloaded: false,
            last_seen: now - Duration::from_secs(seen_ago),
            nameserver: true,
        }
    }

    /// Me in Paris; peers in Berlin, Tokyo, Sydney (stale), New York (v6).
    fn now() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn roster() -> RosterSnapshot {
        let now = now();
        RosterSnapshot {
            me: proxy("192.0.2.1", Some((48.86, 2.35)), 0, now),
            others: vec![
                proxy("192.0.2.2", Some((52.52, 13.40)), 5, now),
                proxy("198.51.100.1", Some((35.68, 139.69)), 5, now),
                proxy("203.0.113.1", Some((-33.87, 151.21)), 600, now),
                proxy("2001:db8::1", Some((40.71, -74.0)), 5, now),
            ],
        }
    }

    fn settings() -> Settings {
        Settings::new(ZoneSuffix::parse("cdn").unwrap())
    }

    fn tokyo_resolver(ip: IpAddr) -> Option<Location> {
        (ip == "198.51.100.77".parse::<IpAddr>().unwrap()).then_some(Location::Point {
            lat: 35.0,
            lon: 139.0,
        })
    }

    fn ask(name: &str, qtype: QType, client: ClientInfo) -> Answer {
        answer(
            &Question { name, qtype },
            &client,
            &roster(),
            now(),
            &tokyo_resolver,
            &settings(),
            7,
        )
    }

    /// An A query for an origin from a client no database locates, at `turn`.
    fn ask_unlocated(roster: &RosterSnapshot, settings: &Settings, turn: u64) -> Answer {
        answer(
            &Question {
                name: "www.example.com.cdn",
                qtype: QType::A,
            },
            &from("10.0.0.1"),
            roster,
            now(),
            &tokyo_resolver,
            settings,
            turn,
        )
    }

    fn from(ip: &str) -> ClientInfo {
        ClientInfo {
            resolver: ip.parse().unwrap(),
            subnet: None,
        }
    }

    fn addrs(a: &Answer) -> Vec<String> {
        a.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(ip) => ip.to_string(),
                RData::Aaaa(ip) => ip.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn nearest_live_proxies_with_case_preserved() {
        let a = ask("WWW.Example.com.CDN.", QType::A, from("198.51.100.77"));
        assert_eq!(a.rcode, Rcode::NoError);
        assert!(a.authoritative);
        assert_eq!(
            addrs(&a)[0],
            "198.51.100.1",
            "Tokyo first for a Tokyo client"
        );
        assert_eq!(a.answers.len(), 2);
        assert!(
            a.answers
                .iter()
                .all(|r| r.name == Owner::Query && r.ttl == 30)
        );
        assert!(
            !addrs(&a).contains(&"203.0.113.1".to_string()),
            "stale proxy never returned"
        );
        // Authority: NS records under the zone, with glue.
        assert_eq!(a.authority.len(), 2);
        assert!(
            a.authority
                .iter()
                .all(|r| r.name == Owner::Apex && r.ttl == 3600)
        );
        assert_eq!(a.additional.len(), 2);
        assert_eq!(a.ecs_scope, None);
    }

    #[test]
    fn ecs_locates_the_client_and_sets_the_scope() {
        let client = ClientInfo {
            resolver: "192.0.2.200".parse().unwrap(),
            subnet: Some(("198.51.100.77".parse().unwrap(), 32)),
        };
        let a = ask("www.example.com.cdn", QType::A, client);
        assert_eq!(addrs(&a)[0], "198.51.100.1");
        assert_eq!(a.ecs_scope, Some(24));
        // An unlocatable subnet: scope 0 (the answer holds for any client).
        let client = ClientInfo {
            resolver: "192.0.2.200".parse().unwrap(),
            subnet: Some(("10.9.9.9".parse().unwrap(), 24)),
        };
        assert_eq!(
            ask("www.example.com.cdn", QType::A, client).ecs_scope,
            Some(0)
        );
    }

    #[test]
    fn unknown_clients_are_spread_over_live_proxies() {
        let mut firsts = std::collections::BTreeSet::new();
        for turn in 0..200 {
            let a = ask_unlocated(&roster(), &settings(), turn);
            firsts.insert(addrs(&a)[0].clone());
        }
        let want: std::collections::BTreeSet<String> = ["192.0.2.1", "192.0.2.2", "198.51.100.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(firsts, want);
    }

    #[test]
    fn unknown_clients_get_proxies_in_proportion_to_spare_capacity() {
        // Two proxies, one with three times the other's spare capacity: over many queries it
        // comes first about three times as often (a weighted round robin).
        let t = now();
        let mut r = RosterSnapshot {
            me: proxy("192.0.2.1", None, 0, t),
            others: vec![proxy("192.0.2.2", None, 0, t)],
        };
        r.me.spare = 1.0;
        r.others[0].spare = 3.0;
        let mut one = settings();
        one.answer_count = 1;
        let mut counts = std::collections::BTreeMap::new();
        for turn in 0..4000 {
            let a = ask_unlocated(&r, &one, turn);
            *counts.entry(addrs(&a)[0].clone()).or_insert(0u32) += 1;
        }
        let big = counts["192.0.2.2"];
        assert!((2800..3200).contains(&big), "{counts:?}");
    }

    #[test]
    fn overloaded_proxies_leave_answers_and_lone_node_answers_itself() {
        let mut r = roster();
        for p in &mut r.others {
            p.overloaded = true;
        }
        let q = Question {
            name: "www.example.com.cdn",
            qtype: QType::A,
        };
        let ask_tokyo = |r: &RosterSnapshot| {
            answer(
                &q,
                &from("198.51.100.77"),
                r,
                now(),
                &tokyo_resolver,
                &settings(),
                1,
            )
        };
        assert_eq!(addrs(&ask_tokyo(&r)), vec!["192.0.2.1"]);
        r.me.overloaded = true;
        assert_eq!(
            addrs(&ask_tokyo(&r)),
            vec!["192.0.2.1"],
            "nobody else: the node itself"
        );
    }

    #[test]
    fn aaaa_apex_nameservers_and_negative_answers() {
        let a = ask("www.example.com.cdn", QType::Aaaa, from("10.0.0.1"));
        assert_eq!(addrs(&a), vec!["2001:db8::1"]);
        let a = ask("cdn", QType::Soa, from("10.0.0.1"));
        assert!(matches!(a.answers[0].data, RData::Soa { .. }));
        let a = ask("cdn", QType::Ns, from("198.51.100.77"));
        assert_eq!(a.answers.len(), 2);
        assert_eq!(a.additional.len(), 2);
        // NODATA: a name that exists, a type it has not.
        for (name, t) in [("www.example.com.cdn", QType::Other(15)), ("cdn", QType::A)] {
            let a = ask(name, t, from("10.0.0.1"));
            assert_eq!((a.rcode, a.answers.len()), (Rcode::NoError, 0));
            assert!(matches!(a.authority[0].data, RData::Soa { .. }));
        }
        let a = ask("bad_label.example.cdn", QType::A, from("10.0.0.1"));
        assert_eq!(a.rcode, Rcode::NxDomain);
        assert!(matches!(a.authority[0].data, RData::Soa { .. }));
        assert_eq!(
            ask("www.example.org", QType::A, from("10.0.0.1")).rcode,
            Rcode::Refused
        );
        // Nameserver names resolve only for this network's nameservers.
        let a = ask("ns-192-0-2-2.cdn", QType::A, from("10.0.0.1"));
        assert_eq!(addrs(&a), vec!["192.0.2.2"]);
        let a = ask("ns-8-8-8-8.cdn", QType::A, from("10.0.0.1"));
        assert_eq!((a.rcode, a.answers.len()), (Rcode::NoError, 0));
        // An empty non-terminal above origin names: NODATA (RFC 8020).
        let a = ask("com.cdn", QType::A, from("10.0.0.1"));
        assert_eq!((a.rcode, a.answers.len()), (Rcode::NoError, 0));
    }
}
