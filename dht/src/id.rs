//! Identifiers, contacts and the XOR metric.
//!
//! Node IDs and keys live in one 256-bit space (SHA-256), as in Kademlia; a key is the
//! SHA-256 of a URL. [`Distance`] orders IDs by XOR, which is symmetric, satisfies the
//! triangle inequality and gives every node the same view of "closest", so lookups from
//! anywhere converge on the same nodes.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Length of an ID in bytes.
pub const ID_LEN: usize = 32;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; ID_LEN]);

        /// Byte order (the order of the IDs as big numbers). The first eight bytes are
        /// compared as one word, which settles nearly every comparison of random IDs without
        /// a call to `memcmp`: routing tables and peer maps compare IDs on every message.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                let head = |id: &[u8; ID_LEN]| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&id[..8]);
                    u64::from_be_bytes(word)
                };
                head(&self.0)
                    .cmp(&head(&other.0))
                    .then_with(|| self.0[8..].cmp(&other.0[8..]))
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            /// The ID whose bytes are the SHA-256 of `data`.
            pub fn hash(data: &[u8]) -> Self {
                let digest = ring::digest::digest(&ring::digest::SHA256, data);
                let mut bytes = [0u8; ID_LEN];
                bytes.copy_from_slice(digest.as_ref());
                Self(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// XOR distance to any other point of the ID space.
            pub fn distance(&self, other: &impl AsRef<[u8; ID_LEN]>) -> Distance {
                Distance::between(&self.0, other.as_ref())
            }
        }

        impl AsRef<[u8; ID_LEN]> for $name {
            fn as_ref(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// The first 8 hex digits, enough to tell nodes apart in logs.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in &self.0[..4] {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

id_type!(
    /// A node's identity in every level of the DHT (Coral uses one ID at all levels).
    NodeId
);
id_type!(
    /// What a value is stored under: the SHA-256 of a URL.
    Key
);

impl Key {
    /// The key a proxy uses for a URL.
    pub fn from_url(url: &str) -> Self {
        Self::hash(url.as_bytes())
    }
}

impl From<NodeId> for Key {
    fn from(id: NodeId) -> Self {
        Key(id.0)
    }
}

/// XOR of two IDs, read as a 256-bit big-endian integer: the Kademlia metric.
///
/// Held as four big-endian `u64` words, so comparing two distances (the inner loop of every
/// lookup and every `closest`) is four integer compares rather than a 32-byte `memcmp`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Distance([u64; 4]);

impl Distance {
    /// The distance between two points of the ID space.
    pub fn between(a: &[u8; ID_LEN], b: &[u8; ID_LEN]) -> Self {
        let word = |w: usize| {
            let at = |id: &[u8; ID_LEN]| {
                let mut x = [0u8; 8];
                x.copy_from_slice(&id[w * 8..w * 8 + 8]);
                u64::from_be_bytes(x)
            };
            at(a) ^ at(b)
        };
        Distance([word(0), word(1), word(2), word(3)])
    }

    /// Index of the highest set bit (0..=255), `None` for distance zero. Two IDs at distance
    /// `d` share exactly `255 - ilog2(d)` leading bits; this is the k-bucket index.
    pub fn ilog2(&self) -> Option<u32> {
        self.0
            .iter()
            .position(|w| *w != 0)
            .map(|i| (3 - i as u32) * 64 + self.0[i].ilog2())
    }

    /// Whether bit `i` (0 = least significant) is set.
    pub fn bit(&self, i: u32) -> bool {
        let word = self.0[3 - (i / 64) as usize];
        (word >> (i % 64)) & 1 == 1
    }

    /// The distance as bytes, most significant first.
    pub fn to_bytes(&self) -> [u8; ID_LEN] {
        let mut out = [0u8; ID_LEN];
        for (w, word) in self.0.iter().enumerate() {
            out[w * 8..w * 8 + 8].copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The distance as a float (for size estimates only; loses precision by design).
    pub fn as_f64(&self) -> f64 {
        self.0
            .iter()
            .fold(0.0, |acc, w| acc * 18_446_744_073_709_551_616.0 + *w as f64)
    }
}

impl fmt::Debug for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ilog2() {
            Some(l) => write!(f, "Distance(2^{l})"),
            None => write!(f, "Distance(0)"),
        }
    }
}

/// A transport address, opaque to the DHT: `node` stores an encoded advert here (peer ID and
/// multiaddrs) and `sim` a host index. The DHT only keeps it and hands it back in
/// [`Transmit`](crate::Transmit)s. On the wire it is a byte string.
///
/// 24 bytes, so that a [`Contact`] is 56 and a routing-table entry 64, a cache line's size:
/// every node keeps a thousand or so contacts (tables, replacement caches, peers heard from,
/// stored values), and a simulator keeps 100,000 nodes. Up to [`Addr::INLINE`] bytes are held
/// in place, so copying a short address touches no shared reference count (with `Bytes`,
/// counting references to the simulator's addresses was a twentieth of a run); longer ones
/// are shared.
#[derive(Clone)]
pub struct Addr(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` is at most `INLINE`: only `From<&[u8]>` builds this.
    Inline {
        len: u8,
        bytes: [u8; Addr::INLINE],
    },
    Shared(Arc<[u8]>),
}

impl Addr {
    /// Longest address held in place.
    pub const INLINE: usize = 22;

    /// The address's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(b) => b,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether it has no bytes (an address a transport cannot use).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Addr {
    fn default() -> Self {
        Addr::from(&[][..])
    }
}

impl From<&[u8]> for Addr {
    fn from(b: &[u8]) -> Self {
        if b.len() > Addr::INLINE {
            return Addr(Repr::Shared(Arc::from(b)));
        }
        let mut bytes = [0; Addr::INLINE];
        bytes[..b.len()].copy_from_slice(b);
        Addr(Repr::Inline {
            len: b.len() as u8, // at most INLINE
            bytes,
        })
    }
}

impl From<Vec<u8>> for Addr {
    fn from(v: Vec<u8>) -> Self {
        // An `Arc<[u8]>` needs its own allocation (with the counts) either way.
        Addr::from(&v[..])
    }
}

impl PartialEq for Addr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Addr {}

impl PartialOrd for Addr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Addr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Addr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({} bytes)", self.len())
    }
}

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Addr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address as a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Addr, E> {
                Ok(Addr::from(b))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, b: Vec<u8>) -> Result<Addr, E> {
                Ok(Addr::from(b))
            }
            // `Bytes` took a string as its bytes too (self-describing formats).
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Addr, E> {
                Ok(Addr::from(s.as_bytes()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Addr, A::Error> {
                let mut b = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(byte) = seq.next_element::<u8>()? {
                    b.push(byte);
                }
                Ok(Addr::from(b))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// How to reach a node: who it is and where.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Contact {
    /// The node's ID at every level.
    pub id: NodeId,
    /// Where the transport can reach it.
    pub addr: Addr,
}

impl Contact {
    /// A contact from its parts.
    pub fn new(id: NodeId, addr: impl Into<Addr>) -> Self {
        Contact {
            id,
            addr: addr.into(),
        }
    }
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Contact({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = [u8; ID_LEN]> {
        any::<[u8; ID_LEN]>()
    }

    /// A byte string as serde's `serialize_bytes` writes it (what `bytes::Bytes` did).
    fn serde_bytes_like(b: &[u8]) -> impl Serialize + '_ {
        struct AsBytes<'a>(&'a [u8]);
        impl Serialize for AsBytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        AsBytes(b)
    }

    #[test]
    fn a_contact_fits_with_its_last_seen_time_in_a_cache_line() {
        assert_eq!(std::mem::size_of::<Addr>(), 24);
        assert_eq!(std::mem::size_of::<Contact>(), 56);
        let long = Addr::from(vec![7; Addr::INLINE + 1]);
        let short = Addr::from(vec![7; Addr::INLINE]);
        assert!(matches!(long.0, Repr::Shared(_)) && matches!(short.0, Repr::Inline { .. }));
        assert_eq!(long.clone().as_bytes(), &[7; Addr::INLINE + 1][..]);
        assert!(Addr::default().is_empty());
    }

    proptest! {
        /// An address is its bytes, short (in place) or long (shared): equal, ordered, and
        /// encoded as those bytes, as `Bytes` encoded them before.
        #[test]
        fn an_address_is_its_bytes(a in proptest::collection::vec(any::<u8>(), 0..64),
                                   b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (x, y) = (Addr::from(a.clone()), Addr::from(&b[..]));
            prop_assert_eq!(x.as_bytes(), &a[..]);
            prop_assert_eq!(x.len(), a.len());
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            let state = std::hash::RandomState::new();
            let same = Addr::from(&a[..]);
            prop_assert_eq!(
                std::hash::BuildHasher::hash_one(&state, &x),
                std::hash::BuildHasher::hash_one(&state, &same)
            );
            let wire = postcard::to_allocvec(&x).unwrap();
            prop_assert_eq!(&wire, &postcard::to_allocvec(&serde_bytes_like(&a)).unwrap());
            let back: Addr = postcard::from_bytes(&wire).unwrap();
            prop_assert_eq!(back.as_bytes(), &a[..]);
        }

        /// The word-at-a-time order is the byte order, including IDs that share a prefix.
        #[test]
        fn id_order_is_byte_order(a in id(), b in id(), shared in 0usize..=ID_LEN) {
            let mut b = b;
            b[..shared].copy_from_slice(&a[..shared]);
            prop_assert_eq!(NodeId(a).cmp(&NodeId(b)), a.cmp(&b));
            prop_assert_eq!(Key(a).cmp(&Key(b)), a.cmp(&b));
            prop_assert_eq!(NodeId(a).cmp(&NodeId(a)), std::cmp::Ordering::Equal);
        }

        #[test]
        fn xor_distance_is_symmetric(a in id(), b in id()) {
            prop_assert_eq!(Distance::between(&a, &b), Distance::between(&b, &a));
        }

        #[test]
        fn xor_distance_is_zero_only_to_itself(a in id(), b in id()) {
            prop_assert_eq!(Distance::between(&a, &a), Distance::default());
            prop_assert_eq!(Distance::between(&a, &b) == Distance::default(), a == b);
        }

        #[test]
        fn xor_distance_obeys_triangle_inequality(a in id(), b in id(), c in id()) {
            // d(a,c) = d(a,b) ^ d(b,c) <= d(a,b) + d(b,c); compared as floats is too lossy, so
            // check the XOR form: the highest bit of d(a,c) is at most the higher of the two.
            let ab = Distance::between(&a, &b);
            let bc = Distance::between(&b, &c);
            let ac = Distance::between(&a, &c);
            prop_assert!(ac.ilog2() <= ab.ilog2().max(bc.ilog2()));
        }

        #[test]
        fn xor_distance_is_unidirectional(a in id(), b in id(), c in id()) {
            // For a given point and distance there is exactly one other point: lookups for the
            // same key converge on the same path.
            prop_assume!(b != c);
            prop_assert_ne!(Distance::between(&a, &b), Distance::between(&a, &c));
        }

        #[test]
        fn distance_orders_like_its_big_endian_bytes(a in id(), b in id(), c in id(), d in id()) {
            let x = Distance::between(&a, &b);
            let y = Distance::between(&c, &d);
            prop_assert_eq!(x.cmp(&y), x.to_bytes().cmp(&y.to_bytes()));
            for i in 0..256u32 {
                let byte = x.to_bytes()[31 - (i / 8) as usize];
                prop_assert_eq!(x.bit(i), (byte >> (i % 8)) & 1 == 1);
            }
        }

        #[test]
        fn ilog2_counts_shared_prefix(a in id(), b in id()) {
            let d = Distance::between(&a, &b);
            if let Some(l) = d.ilog2() {
                let shared = 255 - l as usize;
                for bit in 0..shared {
                    let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
                    prop_assert_eq!(a[byte] & mask, b[byte] & mask);
                }
                let (byte, mask) = (shared / 8, 0x80u8 >> (shared % 8));
                prop_assert_ne!(a[byte] & mask, b[byte] & mask);
            } else {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn key_from_url_is_sha256() {
        // SHA-256("") is well known.
        let k = Key::from_url("");
        assert_eq!(format!("{k}"), "e3b0c442");
    }
}
