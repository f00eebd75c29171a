//! The messages nodes exchange, and their encoding: serde + postcard, with the protocol
//! version in front of every message, a size limit, and checked bounds on every collection.
//!
//! Decoding is the only place where bytes from the network become values, so it must reject
//! anything malformed with a [`DecodeError`] and never panic (it is fuzzed and property-tested
//! on arbitrary bytes). The same functions serve the libp2p codec in `node` and the `--wire`
//! mode of `sim`.
//!
//! ```text
//! message  = version:varint(u16)  body:postcard(Request | Response)   (no trailing bytes)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::{Contact, Key};

/// Version of the message format. A node drops messages of any other version; changing the
/// format is rolled out together with a new network secret.
pub const PROTOCOL_VERSION: u16 = 2;
/// Levels a message may describe, including level 0.
pub const MAX_LEVELS: usize = 8;
/// Contacts one message may carry.
pub const MAX_CONTACTS: usize = 64;
/// Values one message may carry.
pub const MAX_VALUES: usize = 64;
/// Bytes of one opaque address.
pub const MAX_ADDR_LEN: usize = 512;
/// Longest duration (TTL, cluster age) a message may carry; bounds all time arithmetic.
pub const MAX_WIRE_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A level of the hierarchy: 0 is global, higher levels are smaller clusters of nodes with
/// lower RTTs between them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Level(pub u8);

impl Level {
    /// The global level every node belongs to.
    pub const GLOBAL: Level = Level(0);

    /// The level as an index into per-level tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Names a cluster at one level. Chosen at random by the node that founds the cluster.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ClusterId(pub u64);

/// What a node says about its cluster at one level in every message it sends, so receivers
/// can decide whether to join it (Coral, section 4.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ClusterDescriptor {
    /// Which cluster.
    pub id: ClusterId,
    /// Time since the cluster was founded, as the sender knows it. Older clusters win ties.
    pub age: Duration,
    /// The sender's estimate of the number of members.
    pub size: u32,
}

/// A value stored under a URL's key: a proxy that caches the object, or is fetching it now.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Value {
    /// The proxy to fetch from; also the value's identity within a key (one value per holder).
    pub holder: Contact,
    /// The holder is still fetching the object from the origin (a short-lived entry that lets
    /// other proxies wait for it instead of going to the origin themselves).
    pub pending: bool,
}

/// Sent with every message: the sender's cluster at each level above 0.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Header {
    /// `clusters[i]` describes the sender's cluster at level `i + 1`.
    #[serde(deserialize_with = "de_clusters")]
    pub clusters: Vec<ClusterDescriptor>,
}

/// A request and the header of its sender.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Request {
    /// The sender's clusters.
    pub header: Header,
    /// What is asked.
    pub body: RequestBody,
}

/// What a node can ask another.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RequestBody {
    /// Are you alive? (Checks a bucket's least-recently-seen entry; also carries the header.)
    Ping,
    /// Which nodes of your cluster at `level` are closest to `target`?
    FindNode {
        /// The level whose routing table answers.
        level: Level,
        /// The point of the ID space sought.
        target: Key,
    },
    /// Values stored for `key` at `level`, else closer nodes.
    Get {
        /// The level whose store and table answer.
        level: Level,
        /// The key sought.
        key: Key,
    },
    /// Forward phase of a sloppy put: are you full and loaded for `key`, and who is closer?
    PutProbe {
        /// The level of the put.
        level: Level,
        /// The key to store under.
        key: Key,
        /// TTL of the value to be stored ("full" depends on it).
        ttl: Duration,
    },
    /// Backward phase of a sloppy put: store this value if you accept it.
    Store {
        /// The level of the put.
        level: Level,
        /// The key to store under.
        key: Key,
        /// The value.
        value: Value,
        /// How long to keep it.
        ttl: Duration,
    },
}

/// A response and the header of its sender.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Response {
    /// The responder's clusters.
    pub header: Header,
    /// The answer.
    pub body: ResponseBody,
}

/// The answer to each [`RequestBody`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ResponseBody {
    /// Answer to `Ping`.
    Pong,
    /// Answer to `FindNode`: the closest nodes known at that level.
    Nodes {
        /// Closest known contacts, nearest first.
        #[serde(deserialize_with = "de_contacts")]
        closer: Vec<Contact>,
    },
    /// Answer to `Get`: values if any are stored, and closer nodes.
    Values {
        /// Values stored for the key (may be empty).
        #[serde(deserialize_with = "de_values")]
        values: Vec<Value>,
        /// Closest known contacts, nearest first.
        #[serde(deserialize_with = "de_contacts")]
        closer: Vec<Contact>,
    },
    /// Answer to `PutProbe`.
    Probe {
        /// Holds `l` values whose TTLs are at least half the new one's.
        full: bool,
        /// Served more than `beta` requests for the key in the last window.
        loaded: bool,
        /// Would store a value of the requester's now (the putter announces itself): not
        /// full, or already holding one of its values (a renewal refreshes in place); always,
        /// at a node doing classic puts. A put's backward phase asks only such nodes: a store
        /// sent to a node known to refuse it is a wasted round trip.
        accepts: bool,
        /// Closest known contacts, nearest first.
        #[serde(deserialize_with = "de_contacts")]
        closer: Vec<Contact>,
    },
    /// Answer to `Store`.
    Stored {
        /// The value was stored (false: the node became full meanwhile).
        accepted: bool,
    },
    /// The request names a level this node does not have (a differently configured network).
    Refused,
}

impl ResponseBody {
    /// The answer that gives nothing away and takes nothing in: a node asked by a peer outside
    /// the level's cluster knows no one there, holds nothing and stores nothing.
    pub(crate) fn empty_for(req: &RequestBody) -> Self {
        match req {
            RequestBody::Ping => ResponseBody::Pong,
            RequestBody::FindNode { .. } => ResponseBody::Nodes { closer: Vec::new() },
            RequestBody::Get { .. } => ResponseBody::Values {
                values: Vec::new(),
                closer: Vec::new(),
            },
            RequestBody::PutProbe { .. } => ResponseBody::Probe {
                full: false,
                loaded: false,
                accepts: false,
                closer: Vec::new(),
            },
            RequestBody::Store { .. } => ResponseBody::Stored { accepted: false },
        }
    }
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message is larger than the configured limit.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message ends before it is complete.
    #[error("message truncated")]
    Truncated,
    /// Another protocol version; nodes of different releases do not talk.
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version {
        /// The version found.
        got: u16,
    },
    /// Well-formed postcard, but a count or length is over a protocol limit.
    #[error("message over a protocol limit: {0}")]
    Limit(&'static str),
    /// Not a message at all.
    #[error("malformed message: {0}")]
    Invalid(String),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded message would exceed the size limit (too many or too long contacts).
    #[error("encoded message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The serializer failed.
    #[error("cannot encode message: {0}")]
    Serialize(String),
}

/// Encodes a request with the protocol version in front.
pub fn encode_request(req: &Request, max_size: usize) -> Result<Vec<u8>, EncodeError> {
    encode(req, max_size)
}

/// Encodes a response with the protocol version in front.
pub fn encode_response(resp: &Response, max_size: usize) -> Result<Vec<u8>, EncodeError> {
    encode(resp, max_size)
}

/// Decodes and checks a request. Never panics, whatever the bytes.
pub fn decode_request(bytes: &[u8], max_size: usize) -> Result<Request, DecodeError> {
    let req: Request = decode(bytes, max_size)?;
    check_header(&req.header)?;
    match &req.body {
        RequestBody::Ping => {}
        RequestBody::FindNode { level, .. } | RequestBody::Get { level, .. } => {
            check_level(*level)?;
        }
        RequestBody::PutProbe { level, ttl, .. } => {
            check_level(*level)?;
            check_duration(*ttl)?;
        }
        RequestBody::Store {
            level, value, ttl, ..
        } => {
            check_level(*level)?;
            check_duration(*ttl)?;
            check_contact(&value.holder)?;
        }
    }
    Ok(req)
}

/// Decodes and checks a response. Never panics, whatever the bytes.
pub fn decode_response(bytes: &[u8], max_size: usize) -> Result<Response, DecodeError> {
    let resp: Response = decode(bytes, max_size)?;
    check_header(&resp.header)?;
    match &resp.body {
        ResponseBody::Pong | ResponseBody::Stored { .. } | ResponseBody::Refused => {}
        ResponseBody::Nodes { closer } | ResponseBody::Probe { closer, .. } => {
            check_contacts(closer)?;
        }
        ResponseBody::Values { values, closer } => {
            check_contacts(closer)?;
            if values.len() > MAX_VALUES {
                return Err(DecodeError::Limit("too many values"));
            }
            for v in values {
                check_contact(&v.holder)?;
            }
        }
    }
    Ok(resp)
}

fn encode<T: Serialize>(msg: &T, max_size: usize) -> Result<Vec<u8>, EncodeError> {
    let bytes = postcard::to_stdvec(&(PROTOCOL_VERSION, msg))
        .map_err(|e| EncodeError::Serialize(e.to_string()))?;
    if bytes.len() > max_size {
        return Err(EncodeError::TooLarge {
            len: bytes.len(),
            max: max_size,
        });
    }
    Ok(bytes)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], max_size: usize) -> Result<T, DecodeError> {
    if bytes.len() > max_size {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_size,
        });
    }
    // The version comes first and is read alone, so a message of another release is reported
    // as such rather than as garbage.
    let (version, rest): (u16, &[u8]) = postcard::take_from_bytes(bytes).map_err(postcard_error)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::Version { got: version });
    }
    let (msg, rest): (T, &[u8]) = postcard::take_from_bytes(rest).map_err(postcard_error)?;
    if !rest.is_empty() {
        return Err(DecodeError::Invalid(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

fn postcard_error(e: postcard::Error) -> DecodeError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
        other => DecodeError::Invalid(other.to_string()),
    }
}

fn check_header(h: &Header) -> Result<(), DecodeError> {
    if h.clusters.len() >= MAX_LEVELS {
        return Err(DecodeError::Limit("too many cluster descriptors"));
    }
    h.clusters.iter().try_for_each(|c| check_duration(c.age))
}

fn check_level(level: Level) -> Result<(), DecodeError> {
    if level.index() >= MAX_LEVELS {
        return Err(DecodeError::Limit("level out of range"));
    }
    Ok(())
}

fn check_duration(d: Duration) -> Result<(), DecodeError> {
    if d > MAX_WIRE_DURATION {
        return Err(DecodeError::Limit("duration out of range"));
    }
    Ok(())
}

// Lists reserve no more room up front than their limit allows (see `crate::bounded`); the
// checks above reject a longer one.
fn de_contacts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Contact>, D::Error> {
    crate::bounded::vec(d, MAX_CONTACTS)
}

fn de_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    crate::bounded::vec(d, MAX_VALUES)
}

fn de_clusters<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ClusterDescriptor>, D::Error> {
    crate::bounded::vec(d, MAX_LEVELS)
}

fn check_contacts(contacts: &[Contact]) -> Result<(), DecodeError> {
    if contacts.len() > MAX_CONTACTS {
        return Err(DecodeError::Limit("too many contacts"));
    }
    contacts.iter().try_for_each(check_contact)
}

fn check_contact(c: &Contact) -> Result<(), DecodeError> {
    if c.addr.len() > MAX_ADDR_LEN {
        return Err(DecodeError::Limit("address too long"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::id::{Addr, NodeId};
    use proptest::prelude::*;

    const MAX: usize = 64 * 1024;

    fn contact() -> impl Strategy<Value = Contact> {
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(id, addr)| Contact::new(NodeId(id), Addr::from(addr)))
    }

    fn duration() -> impl Strategy<Value = Duration> {
        (0u64..MAX_WIRE_DURATION.as_secs(), 0u32..1_000_000_000)
            .prop_map(|(s, n)| Duration::new(s, n))
    }

    fn header() -> impl Strategy<Value = Header> {
        proptest::collection::vec(
            (any::<u64>(), duration(), any::<u32>()).prop_map(|(id, age, size)| {
                ClusterDescriptor {
                    id: ClusterId(id),
                    age,
                    size,
                }
            }),
            0..MAX_LEVELS,
        )
        .prop_map(|clusters| Header { clusters })
    }

    fn level() -> impl Strategy<Value = Level> {
        (0..MAX_LEVELS as u8).prop_map(Level)
    }

    fn key() -> impl Strategy<Value = Key> {
        any::<[u8; 32]>().prop_map(Key)
    }

    pub(crate) fn request() -> impl Strategy<Value = Request> {
        let body = prop_oneof![
            Just(RequestBody::Ping),
            (level(), key()).prop_map(|(level, target)| RequestBody::FindNode { level, target }),
            (level(), key()).prop_map(|(level, key)| RequestBody::Get { level, key }),
            (level(), key(), duration()).prop_map(|(level, key, ttl)| RequestBody::PutProbe {
                level,
                key,
                ttl
            }),
            (level(), key(), contact(), any::<bool>(), duration()).prop_map(
                |(level, key, holder, pending, ttl)| RequestBody::Store {
                    level,
                    key,
                    value: Value { holder, pending },
                    ttl,
                }
            ),
        ];
        (header(), body).prop_map(|(header, body)| Request { header, body })
    }

    pub(crate) fn response() -> impl Strategy<Value = Response> {
        let contacts = || proptest::collection::vec(contact(), 0..20);
        let values = proptest::collection::vec(
            (contact(), any::<bool>()).prop_map(|(holder, pending)| Value { holder, pending }),
            0..10,
        );
        let body = prop_oneof![
            Just(ResponseBody::Pong),
            Just(ResponseBody::Refused),
            contacts().prop_map(|closer| ResponseBody::Nodes { closer }),
            (values, contacts())
                .prop_map(|(values, closer)| ResponseBody::Values { values, closer }),
            (any::<bool>(), any::<bool>(), any::<bool>(), contacts()).prop_map(
                |(full, loaded, accepts, closer)| ResponseBody::Probe {
                    full,
                    loaded,
                    accepts,
                    closer,
                }
            ),
            any::<bool>().prop_map(|accepted| ResponseBody::Stored { accepted }),
        ];
        (header(), body).prop_map(|(header, body)| Response { header, body })
    }

    proptest! {
        #[test]
        fn request_round_trips(req in request()) {
            let bytes = encode_request(&req, MAX).unwrap();
            prop_assert_eq!(decode_request(&bytes, MAX).unwrap(), req);
        }

        #[test]
        fn response_round_trips(resp in response()) {
            let bytes = encode_response(&resp, MAX).unwrap();
            prop_assert_eq!(decode_response(&bytes, MAX).unwrap(), resp);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_request(&bytes, MAX);
            let _ = decode_response(&bytes, MAX);
            // With a valid version prefix the body parser is reached too.
            let mut prefixed = vec![PROTOCOL_VERSION as u8];
            prefixed.extend_from_slice(&bytes);
            let _ = decode_request(&prefixed, MAX);
            let _ = decode_response(&prefixed, MAX);
        }

        #[test]
        fn every_truncation_of_a_message_is_an_error(req in request()) {
            let bytes = encode_request(&req, MAX).unwrap();
            for len in 0..bytes.len() {
                prop_assert!(decode_request(&bytes[..len], MAX).is_err());
            }
        }
    }

    #[test]
    fn rejects_other_versions() {
        let req = Request {
            header: Header::default(),
            body: RequestBody::Ping,
        };
        let mut bytes = encode_request(&req, MAX).unwrap();
        // The version is a one-byte varint while below 128.
        let other = PROTOCOL_VERSION as u8 + 1;
        bytes[0] = other;
        assert_eq!(
            decode_request(&bytes, MAX),
            Err(DecodeError::Version {
                got: u16::from(other)
            })
        );
    }

    #[test]
    fn rejects_oversized_and_trailing_input() {
        let req = Request {
            header: Header::default(),
            body: RequestBody::Ping,
        };
        let mut bytes = encode_request(&req, MAX).unwrap();
        assert!(matches!(
            decode_request(&bytes, 1),
            Err(DecodeError::TooLarge { .. })
        ));
        bytes.push(0);
        assert!(matches!(
            decode_request(&bytes, MAX),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn a_list_announcing_more_than_its_bytes_is_truncated() {
        // Version, an empty header, `Nodes`, then a length of four billion and nothing else.
        let mut bytes = postcard::to_stdvec(&(PROTOCOL_VERSION, Header::default())).unwrap();
        bytes.push(1);
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(decode_response(&bytes, MAX), Err(DecodeError::Truncated));
    }

    #[test]
    fn rejects_counts_over_protocol_limits() {
        let c = Contact::new(NodeId([1; 32]), Addr::from(vec![0; 4]));
        let resp = Response {
            header: Header::default(),
            body: ResponseBody::Nodes {
                closer: vec![c; MAX_CONTACTS + 1],
            },
        };
        let bytes = encode_response(&resp, MAX).unwrap();
        assert_eq!(
            decode_response(&bytes, MAX),
            Err(DecodeError::Limit("too many contacts"))
        );
        let long = Contact::new(NodeId([1; 32]), Addr::from(vec![0; MAX_ADDR_LEN + 1]));
        let req = Request {
            header: Header::default(),
            body: RequestBody::Store {
                level: Level(0),
                key: Key([0; 32]),
                value: Value {
                    holder: long,
                    pending: false,
                },
                ttl: Duration::from_secs(1),
            },
        };
        let bytes = encode_request(&req, MAX).unwrap();
        assert_eq!(
            decode_request(&bytes, MAX),
            Err(DecodeError::Limit("address too long"))
        );
    }

    #[test]
    fn encode_refuses_messages_over_the_limit() {
        let c = Contact::new(NodeId([1; 32]), Addr::from(vec![0; 100]));
        let resp = Response {
            header: Header::default(),
            body: ResponseBody::Nodes {
                closer: vec![c; 20],
            },
        };
        assert!(matches!(
            encode_response(&resp, 1024),
            Err(EncodeError::TooLarge { .. })
        ));
    }
}
