//! A signed purge: what a publisher sends to one node, and what that node floods to every
//! other. Each node checks it itself against the origin's published keys, so the node that
//! forwarded it is never trusted.
//!
//! On the wire it is a small JSON object (binary fields in standard base64):
//!
//! ```text
//! {"url": "http://www.example.com/a.png", "prefix": false, "timestamp": 1795000000,
//!  "nonce": "<16 bytes>", "key": "<Ed25519 public key>", "signature": "<64 bytes>"}
//! ```
//!
//! The signature covers [`signed_bytes`]: a domain tag, then the fixed-size fields, then the
//! URL, so no two different purges sign the same bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::route::{Upstream, parse_origin};

/// Largest purge message accepted, in bytes.
pub const MAX_PURGE_BYTES: usize = 8 * 1024;
/// Longest URL a purge may name.
pub const MAX_PURGE_URL: usize = 4096;

/// What every signature starts with (a signature made for anything else never verifies).
const DOMAIN: &[u8] = b"reef-purge-v1\0";

/// A purge as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purge {
    /// The origin URL, or URL prefix, to purge.
    pub url: String,
    /// Purge every URL that starts with `url`.
    pub prefix: bool,
    /// When it was signed (Unix seconds).
    pub timestamp: u64,
    /// Random, so a purge cannot be replayed.
    pub nonce: [u8; 16],
    /// The publisher's Ed25519 public key.
    pub key: [u8; 32],
    /// Its signature over [`signed_bytes`].
    pub signature: [u8; 64],
}

/// Why a purge message is not even a purge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedPurge {
    /// Over [`MAX_PURGE_BYTES`].
    #[error("the purge message is larger than {MAX_PURGE_BYTES} bytes")]
    TooLarge,
    /// Not the JSON object described above.
    #[error("not a purge message: {0}")]
    Json(String),
    /// A binary field is not base64 of the right length.
    #[error("field {0:?} is not base64 of {1} bytes")]
    Field(&'static str, usize),
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("bad URL: {0}")]
    Url(String),
}

#[derive(Serialize, Deserialize)]
struct Json {
    url: String,
    #[serde(default)]
    prefix: bool,
    timestamp: u64,
    nonce: String,
    key: String,
    signature: String,
}

fn field<const N: usize>(name: &'static str, text: &str) -> Result<[u8; N], MalformedPurge> {
    B64.decode(text)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or(MalformedPurge::Field(name, N))
}

/// The bytes a publisher signs.
pub fn signed_bytes(url: &str, prefix: bool, timestamp: u64, nonce: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 25 + url.len());
    out.extend_from_slice(DOMAIN);
    out.push(u8::from(prefix));
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(url.as_bytes());
    out
}

/// Which cached URLs a purge covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeTarget {
    /// The origin whose published keys must have signed it.
    pub origin: Upstream,
    /// The cache key (`http://host[:port]/path?query`), or the start of the keys covered.
    pub key: String,
    /// Every key starting with `key`.
    pub prefix: bool,
}

impl PurgeTarget {
    /// The target of an origin URL (`http(s)://host[:port]/path?query`; no fragment).
    pub fn parse(url: &str, prefix: bool) -> Result<PurgeTarget, MalformedPurge> {
        let bad = |why: &str| MalformedPurge::Url(format!("{url:?}: {why}"));
        if url.len() > MAX_PURGE_URL {
            return Err(bad("too long"));
        }
        if url.contains('#') || url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad(
                "fragments, spaces and control characters are not allowed",
            ));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http:// or https://"))?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let origin = parse_origin(&format!("{}://{authority}", scheme.to_ascii_lowercase()))
            .map_err(MalformedPurge::Url)?;
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(PurgeTarget {
            key: format!("{origin}{path}"),
            origin,
            prefix,
        })
    }

    /// Whether the cache key `key` is covered.
    pub fn matches(&self, key: &str) -> bool {
        if self.prefix {
            key.starts_with(&self.key)
        } else {
            key == self.key
        }
    }
}

impl Purge {
    /// Signs a purge of `url` (or of every URL under it, with `prefix`) made at `timestamp`.
    pub fn sign(
        key: &Ed25519KeyPair,
        url: &str,
        prefix: bool,
        timestamp: u64,
        nonce: [u8; 16],
    ) -> Purge {
        let sig = key.sign(&signed_bytes(url, prefix, timestamp, &nonce));
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig.as_ref());
        let mut public = [0u8; 32];
        public.copy_from_slice(key.public_key().as_ref());
        Purge {
            url: url.to_string(),
            prefix,
            timestamp,
            nonce,
            key: public,
            signature,
        }
    }

    /// Reads a purge message (it is not verified yet).
    pub fn decode(bytes: &[u8]) -> Result<Purge, MalformedPurge> {
        if bytes.len() > MAX_PURGE_BYTES {
            return Err(MalformedPurge::TooLarge);
        }
        let j: Json =
            serde_json::from_slice(bytes).map_err(|e| MalformedPurge::Json(e.to_string()))?;
        if j.url.len() > MAX_PURGE_URL {
            return Err(MalformedPurge::Url("longer than 4096 bytes".into()));
        }
        Ok(Purge {
            nonce: field("nonce", &j.nonce)?,
            key: field("key", &j.key)?,
            signature: field("signature", &j.signature)?,
            url: j.url,
            prefix: j.prefix,
            timestamp: j.timestamp,
        })
    }

    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let j = Json {
            url: self.url.clone(),
            prefix: self.prefix,
            timestamp: self.timestamp,
            nonce: B64.encode(self.nonce),
            key: B64.encode(self.key),
            signature: B64.encode(self.signature),
        };
        serde_json::to_vec(&j).unwrap_or_default()
    }

    /// Whether its own key signed it (whether that key may purge the origin is another
    /// question: see the site's published keys).
    pub fn signature_valid(&self) -> bool {
        UnparsedPublicKey::new(&ED25519, self.key)
            .verify(
                &signed_bytes(&self.url, self.prefix, self.timestamp, &self.nonce),
                &self.signature,
            )
            .is_ok()
    }

    /// The URLs it covers.
    pub fn target(&self) -> Result<PurgeTarget, MalformedPurge> {
        PurgeTarget::parse(&self.url, self.prefix)
    }

    /// Its key in base64, as the well-known document lists keys.
    pub fn key_base64(&self) -> String {
        B64.encode(self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn keypair() -> Ed25519KeyPair {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    #[test]
    fn a_signed_purge_round_trips_and_verifies() {
        let k = keypair();
        let p = Purge::sign(
            &k,
            "http://www.example.com/a?b=1",
            false,
            1_795_000_000,
            [7; 16],
        );
        let back = Purge::decode(&p.encode()).unwrap();
        assert_eq!(back, p);
        assert!(back.signature_valid());
        let t = back.target().unwrap();
        assert_eq!(t.key, "http://www.example.com/a?b=1");
        assert!(t.matches("http://www.example.com/a?b=1"));
        assert!(!t.matches("http://www.example.com/a?b=10"));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let k = keypair();
        let p = Purge::sign(
            &k,
            "http://www.example.com/a",
            false,
            1_795_000_000,
            [7; 16],
        );
        let changed = [
            Purge {
                url: "http://www.example.com/b".into(),
                ..p.clone()
            },
            Purge {
                prefix: true,
                ..p.clone()
            },
            Purge {
                timestamp: p.timestamp + 1,
                ..p.clone()
            },
            Purge {
                nonce: [8; 16],
                ..p.clone()
            },
            Purge {
                key: {
                    let mut public = [0u8; 32];
                    public.copy_from_slice(keypair().public_key().as_ref());
                    public
                },
                ..p.clone()
            },
        ];
        for c in changed {
            assert!(!c.signature_valid(), "{c:?}");
        }
    }

    #[test]
    fn prefixes_cover_only_keys_under_them() {
        let t = PurgeTarget::parse("https://Example.com/img/", true).unwrap();
        assert_eq!(t.key, "https://example.com/img/");
        assert!(t.matches("https://example.com/img/a.png"));
        assert!(!t.matches("https://example.com/imgx"));
        assert!(!t.matches("http://example.com/img/a.png"));
        // A whole site: the path is at least "/", so a longer host never matches.
        let site = PurgeTarget::parse("http://example.com:8080", true).unwrap();
        assert_eq!(site.key, "http://example.com:8080/");
        assert!(!site.matches("http://example.com:80801/"));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bad in [
            &b"not json"[..],
            br#"{"url":"http://a/","timestamp":1,"nonce":"AAAA","key":"","signature":""}"#,
            br#"{"url":5}"#,
            &[b'x'; MAX_PURGE_BYTES + 1][..],
        ] {
            assert!(Purge::decode(bad).is_err());
        }
        for url in [
            "ftp://a/",
            "http://",
            "http://a b/",
            "http://a/#frag",
            "no scheme",
            "http://a:0/",
        ] {
            assert!(PurgeTarget::parse(url, false).is_err(), "{url}");
        }
    }
}
