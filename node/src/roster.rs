//! `dns::Roster` from the overlay: the proxies DNS may send clients to.
//!
//! Every second a task rebuilds the snapshot from the overlay's level-0 peers: those that
//! advertise a proxy address, with the time they were last heard from (a DHT message or a
//! ping), so the nameserver only ever names proxies seen alive recently. Every DHT message
//! carries its sender's load: a proxy over its bandwidth quota leaves the answers until it
//! recovers, and the others are weighted by the share of their quota they have left.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dns::{Location, Proxy, Roster, RosterSnapshot};

use crate::overlay::Overlay;
use crate::overlay::advert::multiaddr_ip;
use crate::overlay::codec::Load;

/// The roster the nameserver reads; cheap to read, replaced whole.
#[derive(Debug)]
pub struct LiveRoster {
    current: RwLock<Arc<RosterSnapshot>>,
}

impl Roster for LiveRoster {
    fn snapshot(&self) -> Arc<RosterSnapshot> {
        match self.current.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// How this node appears in the roster.
#[derive(Clone, Debug)]
pub struct Me {
    /// The address clients reach its proxy at.
    pub addr: IpAddr,
    /// Its location, if configured.
    pub location: Option<Location>,
}

/// How often the roster is rebuilt.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

fn proxy(addr: IpAddr, location: Option<Location>, last_seen: Instant, load: Load) -> Proxy {
    Proxy {
        addr,
        location,
        spare: f64::from(load.spare),
        overloaded: load.withdrawn,
        last_seen,
        nameserver: true,
    }
}

/// The IP clients are given for a proxy listening on `http` (an unspecified listen address
/// is not an address).
fn client_ip(http: SocketAddr) -> Option<IpAddr> {
    (!http.ip().is_unspecified()).then_some(http.ip())
}

/// The IP of a peer's overlay address: where a proxy listening on all interfaces is
/// reachable too.
fn p2p_ip(p2p: &str) -> Option<IpAddr> {
    multiaddr_ip(&p2p.parse().ok()?).filter(|ip| !ip.is_unspecified())
}

impl LiveRoster {
    /// A roster of this node alone, rebuilt from `overlay` every second while it runs.
    pub fn start(
        overlay: Overlay,
        me: Me,
        load: Box<dyn Fn() -> Load + Send + Sync>,
    ) -> Arc<LiveRoster> {
        let alone = RosterSnapshot::alone(proxy(me.addr, me.location, Instant::now(), load()));
        let roster = Arc::new(LiveRoster {
            current: RwLock::new(Arc::new(alone)),
        });
        let weak = Arc::downgrade(&roster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REBUILD_EVERY);
            loop {
                tick.tick().await;
                let Some(roster) = weak.upgrade() else { return };
                let Some(status) = overlay.status().await else {
                    return;
                };
                let now = Instant::now();
                let others = status
                    .peers
                    .iter()
                    .filter_map(|p| {
                        let ip = client_ip(p.http?).or_else(|| p2p_ip(&p.p2p))?;
                        let ago = Duration::from_secs_f64(p.heard_secs_ago?.max(0.0));
                        let load = Load {
                            withdrawn: p.withdrawn,
                            spare: p.spare as f32,
                        };
                        Some(proxy(ip, None, now.checked_sub(ago)?, load))
                    })
                    .filter(|p| p.addr != me.addr)
                    .collect();
                let snapshot = RosterSnapshot {
                    me: proxy(me.addr, me.location, now, load()),
                    others,
                };
                if let Ok(mut current) = roster.current.write() {
                    *current = Arc::new(snapshot);
                }
            }
        });
        roster
    }
}
