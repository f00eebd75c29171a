//! The nameserver's pure answer function on any name, type and client, with a small roster.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use dns::{ClientInfo, Location, Proxy, QType, Question, RosterSnapshot, Settings, ZoneSuffix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, name) = data.split_at(6);
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let qtype = match head[0] % 6 {
        0 => QType::A,
        1 => QType::Aaaa,
        2 => QType::Ns,
        3 => QType::Soa,
        4 => QType::Any,
        _ => QType::Other(u16::from_be_bytes([head[1], head[2]])),
    };
    let resolver = IpAddr::V4(Ipv4Addr::new(head[1], head[2], head[3], head[4]));
    let subnet =
        (head[5] % 3 == 0).then(|| (IpAddr::V6(Ipv6Addr::from([head[3]; 16])), head[5] % 129));
    let now = Instant::now();
    let proxy = |last: u8| Proxy {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
        location: Location::parse_point(&format!("{}.0,{}.0", last % 90, last)).ok(),
        spare: f64::from(last) / 10.0,
        overloaded: last % 5 == 0,
        last_seen: now,
        nameserver: last % 2 == 0,
    };
    let roster = RosterSnapshot {
        me: proxy(1),
        others: (2..8).map(proxy).collect(),
    };
    let Ok(zone) = ZoneSuffix::parse("cdn.example.net") else {
        return;
    };
    let settings = Settings::new(zone);
    let geo = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => {
            Location::parse_point(&format!("{}.0,{}.0", v4.octets()[0] % 90, v4.octets()[1])).ok()
        }
        IpAddr::V6(_) => None,
    };
    let q = Question { name, qtype };
    let client = ClientInfo { resolver, subnet };
    let _ = dns::answer(
        &q,
        &client,
        &roster,
        now,
        &geo,
        &settings,
        u64::from(head[5]),
    );
});
