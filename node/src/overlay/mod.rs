//! The overlay: the libp2p swarm keyed by the network secret, driving a `dht::Node`.
//!
//! [`start`] binds the listen address, waits for the address actually bound (so port 0
//! works), creates the DHT node with this node's [`Advert`] as its contact and spawns the
//! [driver](driver) task. [`Overlay`] is the cloneable handle everything else uses: DHT gets
//! and puts, status, and the stream control for object transfer.
//!
//! ```text
//!   Directory (proxy) ─┐                    ┌─ request-response /reef/dht/1 ─ dht::wire
//!   admin /status    ──┼─ Overlay ─ mpsc ─▶ Driver ─ Swarm ─┼─ ping ─▶ handle_rtt
//!   transfer.rs      ──┘ (stream Control)   (dht::Node)     ├─ identify
//!                                                           └─ stream /reef/object/1
//! ```

pub mod advert;
pub mod codec;
mod driver;
pub mod psk;
pub mod transfer;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use dht::{Found, QueryError};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

pub use advert::Advert;
use driver::{Command, Driver};
pub use driver::{InboundPurge, PurgeTicket, Verdict};
pub use transport::TransportConfig;

use crate::secret::NetworkSecret;

/// Everything the overlay needs to start.
pub struct OverlayConfig {
    /// Where to accept connections (`/ip4/127.0.0.1/tcp/4001`; port 0 picks one).
    pub listen: Multiaddr,
    /// Nodes to join through (dialled again while this node knows nobody).
    pub bootstrap: Vec<Multiaddr>,
    /// The network secret.
    pub secret: NetworkSecret,
    /// The node's identity.
    pub key: Keypair,
    /// The proxy's address as peers and DNS give it out.
    pub http: Option<SocketAddr>,
    /// Swarm settings.
    pub transport: TransportConfig,
    /// DHT settings.
    pub dht: dht::Config,
    /// This node's load, said in every message: over quota, peers leave it out of their DNS
    /// answers; its spare capacity is its weight in them.
    pub load: Box<dyn Fn() -> codec::Load + Send + Sync>,
    /// Where purges flooded by other nodes go to be checked (`None`: ignored).
    pub purges: Option<mpsc::Sender<InboundPurge>>,
}

impl std::fmt::Debug for OverlayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayConfig")
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// Why the overlay could not start.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The swarm could not be built.
    #[error(transparent)]
    Build(#[from] transport::BuildError),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The DHT configuration is invalid.
    #[error("DHT configuration: {0}")]
    Dht(#[from] dht::ConfigError),
}

/// Why a lookup found nothing.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The DHT found no value, or timed out.
    #[error(transparent)]
    Dht(QueryError),
    /// The overlay has stopped.
    #[error("the overlay has stopped")]
    Stopped,
}

/// Counters of what the overlay refused or could not do (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct Counters {
    /// Inbound connections that failed the pnet/noise/yamux upgrade: most likely a node with
    /// another network secret or protocol version.
    pub handshake_failures: AtomicU64,
    /// Connections closed because their pings went unanswered (stalled by a partition).
    pub stalled_connections: AtomicU64,
    /// Outbound connections that failed (unreachable peer, or another secret or version).
    pub dial_failures: AtomicU64,
    /// Connections established.
    pub connections: AtomicU64,
    /// DHT messages refused as undecodable or with a foreign advert.
    pub rejected_messages: AtomicU64,
    /// Contacts from the DHT whose advert did not check out.
    pub bad_contacts: AtomicU64,
}

/// One peer of the level-0 routing table.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// Its libp2p peer ID.
    pub peer: String,
    /// Where it listens.
    pub p2p: String,
    /// Its proxy.
    pub http: Option<SocketAddr>,
    /// The smallest round trip measured to it, if any.
    pub rtt_ms: Option<f64>,
    /// Seconds since it last sent a message or answered a ping.
    pub heard_secs_ago: Option<f64>,
    /// Its last message said it is over its bandwidth quota.
    pub withdrawn: bool,
    /// The share of its capacity its last message said it has left.
    pub spare: f64,
}

/// What the overlay looks like right now.
#[derive(Clone, Debug)]
pub struct OverlayStatus {
    /// Peers with an open connection.
    pub connected: usize,
    /// Peers of the level-0 routing table.
    pub peers: Vec<PeerInfo>,
    /// The DHT's clusters and tables.
    pub snapshot: dht::Snapshot,
    /// The DHT's counters.
    pub stats: dht::Stats,
}

/// A cloneable handle to the running overlay.
#[derive(Clone)]
pub struct Overlay {
    commands: mpsc::Sender<Command>,
    me: Advert,
    counters: Arc<Counters>,
    streams: libp2p_stream::Control,
}

/// How long to wait for the listener to report its address.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// Commands queued to the driver before callers wait.
const COMMAND_QUEUE: usize = 1024;

/// Starts the overlay; it runs until `stop` turns true.
pub async fn start(
    config: OverlayConfig,
    stop: watch::Receiver<bool>,
) -> Result<(Overlay, tokio::task::JoinHandle<()>), OverlayError> {
    let peer = config.key.public().to_peer_id();
    let psk = config.secret.psk(&config.transport.protocol_version);
    let purge_topic = transport::purge_topic(&psk);
    let mut swarm = transport::build(config.key, psk, &config.transport)?;
    let listen_err = |reason: String| OverlayError::Listen {
        addr: config.listen.clone(),
        reason,
    };
    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| listen_err(e.to_string()))?;
    // A wildcard listen address reports one address per interface: advertise one that other
    // hosts can reach (not loopback) if there is one within a moment of the first.
    let wildcard = advert::multiaddr_ip(&config.listen).is_some_and(|ip| ip.is_unspecified());
    let mut bound: Option<Multiaddr> = None;
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    loop {
        let wait = match &bound {
            Some(_) => tokio::time::Instant::now() + Duration::from_millis(200),
            None => deadline,
        };
        let event = tokio::select! {
            e = swarm.select_next_some() => e,
            _ = tokio::time::sleep_until(wait.min(deadline)) => break,
        };
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let loopback = advert::multiaddr_ip(&address).is_some_and(|ip| ip.is_loopback());
                if bound.is_none() || !loopback {
                    bound = Some(address);
                }
                if !wildcard || !loopback {
                    break;
                }
            }
            SwarmEvent::ListenerError { error, .. } => return Err(listen_err(error.to_string())),
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(listen_err(format!("listener closed: {reason:?}")));
            }
            _ => {}
        }
    }
    let bound = bound.ok_or_else(|| listen_err("no address bound in time".into()))?;
    let me = Advert {
        peer,
        p2p: bound,
        http: config.http,
    };
    let mut dht = dht::Node::new(config.dht, me.contact())?;
    dht.set_locality(me.locality_keys());
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let counters = Arc::new(Counters::default());
    let streams = swarm.behaviour().stream.new_control();
    let driver = Driver::new(
        swarm,
        dht,
        me.clone(),
        rx,
        counters.clone(),
        (config.bootstrap, config.load),
        driver::PurgeGossip {
            topic: purge_topic,
            inbound: config.purges,
        },
    );
    let task = tokio::spawn(driver.run(stop));
    Ok((
        Overlay {
            commands: tx,
            me,
            counters,
            streams,
        },
        task,
    ))
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Overlay {
    /// This node's advert.
    pub fn me(&self) -> &Advert {
        &self.me
    }

    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.me.peer
    }

    /// The overlay's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A control for opening and accepting object-transfer streams.
    pub fn streams(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    /// A hierarchical get: the values of the nearest node that has any. `trace` (32 hex
    /// digits) goes with the lookup's requests.
    pub async fn get(&self, key: dht::Key, trace: Option<&str>) -> Result<Found, LookupError> {
        let (reply, rx) = oneshot::channel();
        let trace = trace.and_then(crate::hex::decode);
        if self
            .commands
            .send(Command::Get { key, trace, reply })
            .await
            .is_err()
        {
            return Err(LookupError::Stopped);
        }
        rx.await
            .map_err(|_| LookupError::Stopped)?
            .map_err(LookupError::Dht)
    }

    /// Stores this node as a holder of `key` (`pending`: still fetching it); true once the
    /// put stored it somewhere.
    pub async fn put(
        &self,
        key: dht::Key,
        pending: bool,
        ttl: Duration,
        trace: Option<&str>,
    ) -> bool {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Put {
            key,
            trace: trace.and_then(crate::hex::decode),
            pending,
            ttl,
            reply: Some(reply),
        };
        if self.commands.send(cmd).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Starts a put without waiting for it; false if the driver's queue is full.
    pub fn put_in_background(&self, key: dht::Key, pending: bool, ttl: Duration) -> bool {
        self.commands
            .try_send(Command::Put {
                key,
                trace: None,
                pending,
                ttl,
                reply: None,
            })
            .is_ok()
    }

    /// Floods a purge this node accepted from a client; false if the driver's queue is full.
    pub fn flood_purge(&self, data: Vec<u8>) -> bool {
        self.commands.try_send(Command::Publish { data }).is_ok()
    }

    /// Says what this node made of a purge from the gossip (it is passed on only if
    /// accepted).
    pub async fn purge_verdict(&self, ticket: PurgeTicket, verdict: Verdict) {
        let _ = self
            .commands
            .send(Command::Verdict { ticket, verdict })
            .await;
    }

    /// The overlay's state, or `None` once it has stopped.
    pub async fn status(&self) -> Option<OverlayStatus> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Status { reply }).await.ok()?;
        rx.await.ok()
    }
}
