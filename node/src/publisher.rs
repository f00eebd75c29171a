//! The publisher's commands: `reef publisher keygen` and `reef purge`.
//!
//! A publisher key is an Ed25519 key pair (ring). Its file holds the PKCS#8 document in
//! base64 on one line, mode 0600. The public key goes into the site's
//! `/.well-known/reef.json`; nodes obey purges signed by the keys listed there.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proxy::purge::PURGE_PATH;
use proxy::purge::message::{Purge, PurgeTarget};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::secret::{open_mode, write_private};

/// A new key pair written to `out`; returns the public key in base64.
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    let rng = SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|_| anyhow::anyhow!("ring made a key it cannot read"))?;
    let text = format!("{}\n", B64.encode(doc.as_ref()));
    write_private(out, text.as_bytes())
        .with_context(|| format!("writing {} (it must not exist yet)", out.display()))?;
    Ok(B64.encode(pair.public_key().as_ref()))
}

/// Reads a key file written by [`keygen`], refusing one others can read.
pub fn load_key(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    let shown = path.display();
    if let Some(mode) = open_mode(path).with_context(|| format!("reading {shown}"))? {
        anyhow::bail!("{shown} has mode {mode:o}: a publisher key must be private (chmod 600)");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
    let der = B64
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{shown} is not a publisher key (base64 PKCS#8)"))?;
    Ed25519KeyPair::from_pkcs8(&der)
        .map_err(|_| anyhow::anyhow!("{shown} is not an Ed25519 PKCS#8 key"))
}

/// A purge of `url` (or everything under it) signed with `key` now.
pub fn sign(key: &Ed25519KeyPair, url: &str, prefix: bool) -> anyhow::Result<Purge> {
    PurgeTarget::parse(url, prefix).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut nonce = [0u8; 16];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    Ok(Purge::sign(key, url, prefix, now, nonce))
}

/// Posts a signed purge to a node's proxy port; returns the status and the node's answer.
pub async fn send(node: SocketAddr, purge: &Purge) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(node)
        .await
        .with_context(|| format!("connecting to the node's proxy port {node}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::post(PURGE_PATH)
        .header(http::header::HOST, node.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(purge.encode())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        String::from_utf8_lossy(&body).trim_end().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_loads_and_signs_verifiable_purges() {
        let dir = std::env::temp_dir().join(format!("reef-pubkey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        let public = keygen(&path).expect("keygen");
        assert!(
            keygen(&path).is_err(),
            "an existing key is never overwritten"
        );
        let key = load_key(&path).expect("load");
        assert_eq!(B64.encode(key.public_key().as_ref()), public);
        let p = sign(&key, "http://www.example.com/a", false).expect("sign");
        assert!(p.signature_valid());
        assert_eq!(p.key_base64(), public);
        assert!(sign(&key, "not a url", false).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(load_key(&path).is_err(), "a readable key is refused");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
