//! Serves a zone from reef-dns with a fixed roster of proxies spread over the world, for
//! benchmarks (`scripts/bench-dns.sh`): the real hickory server and answer path, with a
//! roster like a network's instead of a single node's.
//!
//! Usage: `serve ADDR ZONE PROXIES` (e.g. `serve 127.0.0.1:5300 cdn.test 50`); runs until
//! killed. Response rate limiting is off: a benchmark is one client sending a flood.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use dns::answer::Settings;
use dns::{
    Geo, Handler, Location, Proxy, RosterSnapshot, Rrl, RrlConfig, StaticRoster, ZoneSuffix,
};

// One thread, like Knot's one UDP worker in the comparison.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .map_or("127.0.0.1:5300", String::as_str)
        .parse()?;
    let zone = ZoneSuffix::parse(args.get(2).map_or("cdn.test", String::as_str))?;
    let n: usize = args.get(3).map_or(Ok(50), |s| s.parse())?;
    let now = Instant::now();
    let proxy = |i: usize| Proxy {
        addr: IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1 + (i / 250) as u8,
            1 + (i % 250) as u8,
        )),
        // Spread over latitudes and longitudes.
        location: Some(Location::Point {
            lat: -60.0 + (i * 37 % 120) as f64,
            lon: -180.0 + (i * 71 % 360) as f64,
        }),
        spare: 1.0 + (i % 5) as f64,
        overloaded: false,
        last_seen: now,
        nameserver: i.is_multiple_of(10),
    };
    let roster = StaticRoster::new(RosterSnapshot {
        me: proxy(0),
        others: (1..n).map(proxy).collect(),
    });
    let mut settings = Settings::new(zone);
    settings.answer_count = 3;
    let rrl = Rrl::new(RrlConfig {
        responses_per_second: 0,
        ..RrlConfig::default()
    });
    let running = dns::start(
        addr,
        Handler::new(Arc::new(roster), Geo::none(), settings, rrl),
    )
    .await?;
    println!("serving on {}", running.local_addr());
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
