//! The small commands: `reef url` and `reef status`.

use std::net::SocketAddr;

use anyhow::Context;
use dns::ZoneSuffix;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// The CDN form of an origin URL: its host rewritten under `zone`.
pub fn cdn_url(url: &str, zone: &str) -> anyhow::Result<String> {
    let zone = ZoneSuffix::parse(zone).map_err(|e| anyhow::anyhow!("zone {zone:?}: {e}"))?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{url}: expected http://... or https://..."))?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let up = proxy::route::parse_origin(&format!("{}://{authority}", scheme.to_ascii_lowercase()))
        .map_err(|e| anyhow::anyhow!(e))?;
    if up.tls && up.port != 443 {
        anyhow::bail!("{url}: reef fetches HTTPS origins on port 443 only");
    }
    let router = proxy::route::Router::new(zone, None);
    // Clients speak plain HTTP to the proxy; the port label 443 makes it use HTTPS upstream.
    Ok(format!("http://{}{}", router.cdn_host(&up), path))
}

/// GETs `path` from the admin port.
async fn get(admin: SocketAddr, path: &str) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("connecting to the admin port {admin} (is the node running?)"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, admin.to_string())
        .body(Empty::<bytes::Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A node's status, for a person.
pub async fn status_text(admin: SocketAddr) -> anyhow::Result<String> {
    let text = get(admin, "/status").await?;
    let s: serde_json::Value = serde_json::from_str(&text).context("the node's /status")?;
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    out.push_str(&format!(
        "reef {} node {}\n  peer {}\n  overlay {}  proxy {}  up {} s\n",
        s["version"].as_str().unwrap_or("?"),
        s["node_id"].as_str().unwrap_or("?"),
        s["peer_id"].as_str().unwrap_or("?"),
        s["p2p"].as_str().unwrap_or("?"),
        s["http"].as_str().unwrap_or("-"),
        n(&s["uptime_secs"]),
    ));
    out.push_str(&format!(
        "peers: {} connected, {} in the routing table\n",
        n(&s["peers_connected"]),
        s["peers"].as_array().map_or(0, |p| p.len())
    ));
    for c in s["clusters"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  level {}: cluster {} (~{} members, {} known{})\n",
            n(&c["level"]),
            &c["cluster"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(12)
                .collect::<String>(),
            n(&c["size_estimate"]),
            n(&c["members_known"]),
            c["threshold_ms"]
                .as_u64()
                .map_or(String::new(), |t| format!(", under {t} ms"))
        ));
    }
    let cache = &s["cache"];
    let (hits, misses) = (n(&cache["hits"]), n(&cache["misses"]));
    let ratio = if hits + misses > 0 {
        100.0 * hits as f64 / (hits + misses) as f64
    } else {
        0.0
    };
    out.push_str(&format!(
        "cache: {} objects, {} bytes, {hits} hits / {misses} misses ({ratio:.1} % hits)\n",
        n(&cache["objects"]),
        n(&cache["bytes"]),
    ));
    let f = &s["fetches"];
    out.push_str(&format!(
        "fetches: {} from origins ({} bytes), {} from peers ({} bytes); served {} to peers\n",
        n(&f["origin"]),
        n(&f["origin_bytes"]),
        n(&f["peer"]),
        n(&f["peer_bytes"]),
        n(&f["served_to_peers"]),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_cdn_urls() {
        let cdn = |u: &str| cdn_url(u, "cdn.test").ok();
        assert_eq!(
            cdn("http://www.example.com/a/b?c=d").as_deref(),
            Some("http://www.example.com.cdn.test/a/b?c=d")
        );
        assert_eq!(
            cdn("http://www.example.com:8080").as_deref(),
            Some("http://www.example.com.8080.cdn.test")
        );
        assert_eq!(
            cdn("https://Www.Example.com/x").as_deref(),
            Some("http://www.example.com.443.cdn.test/x")
        );
        assert_eq!(cdn("https://www.example.com:8443/"), None);
        assert_eq!(cdn("ftp://www.example.com/"), None);
        assert_eq!(cdn("www.example.com"), None);
        assert_eq!(cdn("http:///path"), None);
    }
}
