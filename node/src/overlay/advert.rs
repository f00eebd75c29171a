//! What a node's DHT contact says about it: how to dial it and where its proxy listens.
//!
//! `dht::Contact::addr` is opaque bytes to the DHT. Here it is a postcard-encoded [`Advert`]:
//! the node's libp2p peer ID, the multiaddr it listens on, and the HTTP address clients and
//! DNS answers use. The DHT node ID is the SHA-256 of the peer ID, so a contact can be checked
//! against the key that authenticated a connection: an advert whose peer ID does not hash to
//! the contact's ID is refused, and a request is only accepted with the advert of the peer
//! that sent it.

use std::net::{IpAddr, SocketAddr};

use dht::{Contact, NodeId};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// Bounds an advert: a peer ID is under 64 bytes and a TCP multiaddr under 40.
pub const MAX_ADVERT: usize = 512;

/// Why bytes are not a usable advert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    /// Larger than [`MAX_ADVERT`].
    #[error("advert of {0} bytes exceeds {MAX_ADVERT}")]
    TooLarge(usize),
    /// Not a postcard advert.
    #[error("malformed advert")]
    Malformed,
    /// The peer ID does not parse.
    #[error("bad peer id in advert")]
    PeerId,
    /// The multiaddr does not parse.
    #[error("bad multiaddr in advert")]
    Multiaddr,
    /// The contact's node ID is not the hash of the advert's peer ID.
    #[error("advert's peer id does not match the contact's node id")]
    Mismatch,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    peer: Vec<u8>,
    p2p: Vec<u8>,
    http: Option<SocketAddr>,
}

/// A node's advert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Its libp2p identity.
    pub peer: PeerId,
    /// Where it accepts overlay connections.
    pub p2p: Multiaddr,
    /// Where its proxy serves clients (what DNS answers and redirects give out).
    pub http: Option<SocketAddr>,
}

/// The DHT node ID of a peer: SHA-256 of its peer ID's bytes.
pub fn node_id(peer: &PeerId) -> NodeId {
    let digest = ring::digest::digest(&ring::digest::SHA256, &peer.to_bytes());
    let mut id = [0u8; 32];
    id.copy_from_slice(digest.as_ref());
    NodeId(id)
}

/// The IP address in a multiaddr (`/ip4/..` or `/ip6/..`), if it has one.
pub fn multiaddr_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// All 64 hex digits of a node ID (its `Display` shows 8, for logs).
pub fn hex(id: &NodeId) -> String {
    crate::hex::encode(&id.0)
}

impl Advert {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            peer: self.peer.to_bytes(),
            p2p: self.p2p.to_vec(),
            http: self.http,
        };
        postcard::to_stdvec(&wire).unwrap_or_default()
    }

    /// Parses bytes from the network.
    pub fn decode(bytes: &[u8]) -> Result<Advert, AdvertError> {
        if bytes.len() > MAX_ADVERT {
            return Err(AdvertError::TooLarge(bytes.len()));
        }
        let wire: Wire = postcard::from_bytes(bytes).map_err(|_| AdvertError::Malformed)?;
        Ok(Advert {
            peer: PeerId::from_bytes(&wire.peer).map_err(|_| AdvertError::PeerId)?,
            p2p: Multiaddr::try_from(wire.p2p).map_err(|_| AdvertError::Multiaddr)?,
            http: wire.http,
        })
    }

    /// The DHT contact for this advert.
    pub fn contact(&self) -> Contact {
        Contact::new(node_id(&self.peer), self.encode())
    }

    /// Its locality hint for the DHT (`dht::Node::set_locality`): the network of its public
    /// address, a /24 for IPv4 and a /48 for IPv6 (the HTTP address peers and DNS give out,
    /// else the overlay's). Nodes on one such network most likely share their first routers,
    /// which is what Coral's hints named; Coral found the routers by traceroute, which needs
    /// raw sockets a volunteer's node should not need. A private, loopback or link-local
    /// address gives no hint: nodes all over the world share 192.168.1.0/24.
    pub fn locality_keys(&self) -> Vec<dht::Key> {
        let public = self
            .http
            .map(|a| a.ip())
            .into_iter()
            .chain(multiaddr_ip(&self.p2p))
            .map(|ip| ip.to_canonical())
            .find(|ip| proxy::service::is_public(*ip));
        let network = match public {
            Some(ip @ IpAddr::V4(_)) => ipnet::IpNet::new(ip, 24),
            Some(ip @ IpAddr::V6(_)) => ipnet::IpNet::new(ip, 48),
            None => return Vec::new(),
        };
        network
            .map(|n| dht::Key::hash(format!("reef-locality/{}", n.trunc()).as_bytes()))
            .into_iter()
            .collect()
    }

    /// The advert in a contact, checked against the contact's node ID.
    pub fn of(contact: &Contact) -> Result<Advert, AdvertError> {
        let advert = Advert::decode(contact.addr.as_bytes())?;
        if node_id(&advert.peer) != contact.id {
            return Err(AdvertError::Mismatch);
        }
        Ok(advert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert() -> Advert {
        let key = libp2p::identity::Keypair::generate_ed25519();
        Advert {
            peer: key.public().to_peer_id(),
            p2p: "/ip4/127.0.0.1/tcp/4001".parse().expect("multiaddr"),
            http: Some("127.0.0.1:8080".parse().expect("addr")),
        }
    }

    #[test]
    fn locality_is_the_public_network() {
        let at = |p2p: &str, http: Option<&str>| Advert {
            p2p: p2p.parse().expect("multiaddr"),
            http: http.map(|h| h.parse().expect("addr")),
            ..advert()
        };
        let keys = |p2p: &str| at(p2p, None).locality_keys();
        let here = keys("/ip4/8.8.8.10/tcp/4001");
        assert_eq!(here.len(), 1);
        assert_eq!(here, keys("/ip4/8.8.8.200/tcp/4002"));
        assert_ne!(here, keys("/ip4/8.8.9.10/tcp/4001"));
        assert_eq!(
            here,
            keys("/ip6/::ffff:8.8.8.7/tcp/4001"),
            "IPv4-mapped is IPv4"
        );
        let v6 = keys("/ip6/2a00:1450:1:2::5/tcp/4001");
        assert_eq!(v6, keys("/ip6/2a00:1450:1:ff::9/tcp/4001"));
        assert_ne!(v6, keys("/ip6/2a00:1450:2::5/tcp/4001"));
        for private in [
            "/ip4/192.168.1.5/tcp/4001",
            "/ip4/10.0.0.5/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/fe80::1/tcp/4001",
            "/ip6/::ffff:192.168.1.5/tcp/4001",
        ] {
            assert!(keys(private).is_empty(), "{private} gives a hint");
        }
        // The address given out wins over the one bound.
        let behind_nat = at("/ip4/192.168.1.5/tcp/4001", Some("8.8.8.1:80"));
        assert_eq!(behind_nat.locality_keys(), here);
    }

    #[test]
    fn round_trips_through_a_contact() {
        let a = advert();
        assert_eq!(Advert::of(&a.contact()), Ok(a));
    }

    #[test]
    fn a_contact_with_someone_elses_advert_is_refused() {
        let a = advert();
        let b = advert();
        let forged = Contact::new(node_id(&a.peer), b.encode());
        assert_eq!(Advert::of(&forged), Err(AdvertError::Mismatch));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(Advert::decode(&[]), Err(AdvertError::Malformed));
        assert_eq!(
            Advert::decode(&[0xff; MAX_ADVERT + 1]),
            Err(AdvertError::TooLarge(MAX_ADVERT + 1))
        );
        let bad_peer = postcard::to_stdvec(&Wire {
            peer: vec![1, 2, 3],
            p2p: vec![],
            http: None,
        })
        .expect("encode");
        assert_eq!(Advert::decode(&bad_peer), Err(AdvertError::PeerId));
        let a = advert();
        let bad_addr = postcard::to_stdvec(&Wire {
            peer: a.peer.to_bytes(),
            p2p: vec![0xff, 0xff, 0xff],
            http: None,
        })
        .expect("encode");
        assert_eq!(Advert::decode(&bad_addr), Err(AdvertError::Multiaddr));
    }
}
