//! The libp2p swarm: TCP, then the pre-shared-key layer keyed by the network secret
//! ([`psk`](super::psk), pnet's construction), then noise and yamux; and the behaviours the
//! overlay speaks over it.
//!
//! The key layer wraps the raw socket before anything else is said, so a node with another
//! secret or another protocol version fails at the first bytes (libp2p reports it only as a
//! failed handshake or a reset connection). No QUIC: it does its own TLS and would bypass the
//! key.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    PeerId, Swarm, SwarmBuilder, Transport, gossipsub, identify, noise, ping, tcp, yamux,
};

use super::codec::{DHT_PROTOCOL, DhtCodec};
use super::psk;

/// Everything the overlay speaks.
#[allow(missing_debug_implementations)] // libp2p's behaviours implement no Debug
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// DHT requests and responses.
    pub dht: request_response::Behaviour<DhtCodec>,
    /// Round trips for clustering (`dht::Node::handle_rtt`) and liveness.
    pub ping: ping::Behaviour,
    /// Who the peer says it is and where it listens.
    pub identify: identify::Behaviour,
    /// Raw streams for object transfer.
    pub stream: libp2p_stream::Behaviour,
    /// Publishers' purges, flooded to every node (each checks them itself).
    pub gossip: gossipsub::Behaviour,
}

/// Largest gossip message: a purge is at most `proxy::purge::message::MAX_PURGE_BYTES`.
const MAX_GOSSIP: usize = 16 * 1024;

/// The purge topic of the network keyed by `psk`: one per network, so nodes of two networks
/// that ever met could not mix their purges.
pub fn purge_topic(psk: &[u8; 32]) -> gossipsub::IdentTopic {
    let digest = ring::digest::digest(&ring::digest::SHA256, psk);
    gossipsub::IdentTopic::new(format!(
        "/reef/purge/{}",
        crate::hex::encode(&digest.as_ref()[..8])
    ))
}

/// Gossip with message validation by the application (a purge is passed on only once this
/// node has verified it), and IDs from the content, so the same purge sent to two nodes
/// travels once.
fn gossip(key: &Keypair) -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP)
        .message_id_fn(|m: &gossipsub::Message| {
            let digest = ring::digest::digest(&ring::digest::SHA256, &m.data);
            gossipsub::MessageId::from(&digest.as_ref()[..20])
        })
        .build()
        .map_err(|e| e.to_string())?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map_err(str::to_string)
}

/// Swarm settings that are not secrets.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// `PROTOCOL_VERSION` normally; differs only in tests of incompatible releases.
    pub protocol_version: String,
    /// The DHT's message cap.
    pub max_message: usize,
    /// How long a DHT request may wait for its answer on the wire.
    pub request_timeout: Duration,
    /// How often connected peers are pinged.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered; two such in a row and the connection counts as
    /// stalled and is closed.
    pub ping_timeout: Duration,
    /// How long a connection with nothing going on stays open.
    pub idle_timeout: Duration,
    /// Time for the TCP + pnet + noise + yamux upgrade.
    pub handshake_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            protocol_version: crate::secret::PROTOCOL_VERSION.to_string(),
            max_message: dht::Config::default().max_message_size,
            request_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// TCP that dials from a fresh port: libp2p binds a dial to its listening port by default
/// (for NAT hole punching, which reef does not do), and that bind fails with "address in
/// use" when the kernel still holds a TIME_WAIT for the same pair of ports, as it does after
/// a crowd of short connections: the node then could not reach its peers.
struct FreshPorts<T>(T);

impl<T: Transport + Unpin> Transport for FreshPorts<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: libp2p::core::transport::ListenerId,
        addr: libp2p::Multiaddr,
    ) -> Result<(), libp2p::TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: libp2p::core::transport::ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: libp2p::Multiaddr,
        mut opts: libp2p::core::transport::DialOpts,
    ) -> Result<Self::Dial, libp2p::TransportError<Self::Error>> {
        opts.port_use = libp2p::core::transport::PortUse::New;
        self.0.dial(addr, opts)
    }

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<libp2p::core::transport::TransportEvent<Self::ListenerUpgrade, Self::Error>>
    {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

fn tcp_stack(
    key: &Keypair,
    psk: [u8; 32],
    handshake_timeout: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    Ok(FreshPorts(tcp::tokio::Transport::new(
        tcp::Config::default().nodelay(true),
    ))
    .and_then(move |socket, _| psk::handshake(socket, psk))
    .upgrade(Version::V1Lazy)
    .authenticate(noise::Config::new(key)?)
    .multiplex(yamux::Config::default())
    .timeout(handshake_timeout)
    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
    .boxed())
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the overlay transport: {0}")]
pub struct BuildError(String);

/// A swarm with identity `key`, keyed by `psk`.
pub fn build(
    key: Keypair,
    psk: [u8; 32],
    config: &TransportConfig,
) -> Result<Swarm<Behaviour>, BuildError> {
    let handshake_timeout = config.handshake_timeout;
    let err = |e: &dyn std::fmt::Display| BuildError(e.to_string());
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| tcp_stack(key, psk, handshake_timeout).map_err(|e| e.into()))
        .map_err(|e| err(&e))?
        .with_behaviour(|key| {
            let rr =
                request_response::Config::default().with_request_timeout(config.request_timeout);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                dht: request_response::Behaviour::with_codec(
                    DhtCodec::new(config.max_message),
                    [(DHT_PROTOCOL, ProtocolSupport::Full)],
                    rr,
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(config.ping_interval)
                        .with_timeout(config.ping_timeout),
                ),
                identify: identify::Behaviour::new(
                    identify::Config::new(format!("/{}", config.protocol_version), key.public())
                        .with_agent_version(format!("reef/{}", env!("CARGO_PKG_VERSION"))),
                ),
                stream: libp2p_stream::Behaviour::new(),
                gossip: gossip(key)?,
            })
        })
        .map_err(|e| err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}
