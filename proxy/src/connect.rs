//! How the proxy reaches origins: a resolver that applies fixed addresses and refuses private
//! ones at connection time (so the address checked is the address connected to, whatever a
//! name resolves to the next time: no DNS rebinding), under hyper's HTTP connector, under
//! rustls for `https` origins (webpki roots, ring as the crypto provider).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;

use crate::service::is_public;

/// A request body to an origin: empty for fetches, the client's for passed-through methods.
pub type OriginBody = BoxBody<Bytes, hyper::Error>;

/// The client every origin request goes through.
pub type OriginClient = Client<HttpsConnector<HttpConnector<OriginResolver>>, OriginBody>;

/// Resolves origin names for the connector: fixed addresses first, then hickory's
/// resolver (asynchronous and cached, unlike getaddrinfo on a blocking thread) with the
/// nameservers given, else the system's configuration, then getaddrinfo if that cannot be
/// read.
#[derive(Debug, Clone)]
pub struct OriginResolver {
    fixed: Arc<BTreeMap<String, IpAddr>>,
    allow_private: bool,
    dns: Arc<OnceLock<Option<TokioResolver>>>,
}

impl OriginResolver {
    /// A resolver with fixed addresses for some names.
    pub fn new(fixed: BTreeMap<String, IpAddr>, allow_private: bool) -> Self {
        OriginResolver {
            fixed: Arc::new(fixed),
            allow_private,
            dns: Arc::new(OnceLock::new()),
        }
    }

    /// Sends origin lookups to `servers` instead of the system's nameservers (none: keep
    /// the system's).
    pub fn with_nameservers(self, servers: &[SocketAddr]) -> Result<Self, ClientError> {
        if servers.is_empty() {
            return Ok(self);
        }
        let config = ResolverConfig::from_name_servers(
            servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect(),
        );
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .build()
            .map_err(|e| ClientError::Resolver(e.to_string()))?;
        Ok(OriginResolver {
            dns: Arc::new(OnceLock::from(Some(resolver))),
            ..self
        })
    }

    fn dns(&self) -> Option<&TokioResolver> {
        self.dns
            .get_or_init(|| {
                match TokioResolver::builder_tokio().and_then(|b| b.build()) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "no DNS resolver configuration; using the system's getaddrinfo");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The allowed addresses of `host` (port 0: the connector sets it).
    pub async fn lookup(&self, host: &str) -> io::Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = match self.fixed.get(&host.to_ascii_lowercase()) {
            Some(ip) => vec![SocketAddr::new(*ip, 0)],
            None => match self.dns() {
                Some(dns) => dns
                    .lookup_ip(host)
                    .await
                    .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?
                    .iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect(),
                None => tokio::net::lookup_host((host, 0)).await?.collect(),
            },
        };
        let allowed: Vec<SocketAddr> = all
            .iter()
            .copied()
            .filter(|a| self.allow_private || is_public(a.ip()))
            .collect();
        if allowed.is_empty() {
            let kind = if all.is_empty() {
                io::ErrorKind::NotFound
            } else {
                io::ErrorKind::PermissionDenied
            };
            return Err(io::Error::new(kind, format!("{host}: no public address")));
        }
        Ok(allowed)
    }
}

impl tower_service::Service<Name> for OriginResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.lookup(name.as_str()).await?.into_iter()) })
    }
}

/// Why the client to origins could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS configuration (extra roots, protocol versions).
    #[error("tls configuration: {0}")]
    Tls(String),
    /// The resolver for `--origin-dns`.
    #[error("origin nameservers: {0}")]
    Resolver(String),
}

/// The client: plain HTTP and HTTPS, certificates checked against the webpki roots plus
/// `extra_roots` (a private CA, or a test's self-signed origin).
pub fn client(
    resolver: OriginResolver,
    extra_roots: &[CertificateDer<'static>],
) -> Result<OriginClient, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod resolver_tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_checked_whoever_resolves_them() {
        let strict = OriginResolver::new(BTreeMap::new(), false);
        let err = strict
            .lookup("127.0.0.1")
            .await
            .expect_err("loopback refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let open = OriginResolver::new(BTreeMap::new(), true);
        let ok = open.lookup("127.0.0.1").await.expect("allowed");
        assert_eq!(ok, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
        let fixed = OriginResolver::new(
            BTreeMap::from([("origin.test".to_string(), IpAddr::from([192, 0, 2, 7]))]),
            false,
        );
        assert!(
            fixed.lookup("ORIGIN.test").await.is_err(),
            "documentation addresses are not public"
        );
    }
}
