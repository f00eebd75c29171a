//! Accepting connections: `run(listener, proxy, shutdown)` as in mini-redis. HTTP/1.1 and
//! h2c (prior knowledge) on one port, or HTTPS with `run_tls` (h2 or HTTP/1.1 by ALPN); a
//! header-read timeout against slowloris; connection limits per client and in all.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::service::Proxy;

/// Time a client has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Builder = Arc<auto::Builder<TokioExecutor>>;

/// Connections waiting to be accepted, at most (the kernel may cap it lower, at
/// `net.core.somaxconn`). A flash crowd arrives faster than any accept loop: a short queue
/// drops SYNs, and each dropped one costs its client a second before it tries again.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection settings, from the limits: a client that sends its headers too slowly
/// (slowloris) or too many of them is cut off.
fn builder(limits: &crate::limits::LimitsConfig) -> Builder {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's smallest buffer is 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192));
    Arc::new(builder)
}

/// Serves `listener` (plain HTTP/1.1 and h2c) until `shutdown` turns true; connections in
/// progress are finished.
pub async fn run(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    accept_loop(listener, proxy, None, shutdown).await;
}

/// Serves HTTPS on `listener` (HTTP/2 or HTTP/1.1 by ALPN) until `shutdown` turns true.
pub async fn run_tls(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    accept_loop(listener, proxy, Some(acceptor), shutdown).await;
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = builder(proxy.limits().config());
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // Over a connection limit: closed at once (the client sees a reset), like limit_conn.
        let Some(slot) = proxy.limits().open_connection(client.ip()) else {
            tracing::debug!(%client, "connection refused: over the connection limit");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (proxy, builder) = (proxy.clone(), builder.clone());
        // Two task types: a plain connection's task must not carry the size of TLS state
        // (every idle keep-alive connection pays for its task).
        match tls.clone() {
            None => {
                tokio::spawn(async move {
                    let _slot = slot;
                    serve(stream, client, proxy, builder).await;
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _slot = slot;
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => serve(tls, client, proxy, builder).await,
                        Ok(Err(e)) => tracing::debug!(%client, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%client, "tls handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serves one connection.
async fn serve<S>(stream: S, client: std::net::SocketAddr, proxy: Arc<Proxy>, builder: Builder)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        async move {
            let line = proxy.access_log().then(|| access_prefix(&req, client));
            let resp = proxy.handle(req, client).await;
            if let Some(prefix) = line {
                let size = resp
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                println!("{prefix} {} {size}", resp.status().as_u16());
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}

/// The start of a Common Log Format line: client, identity, user, time, request line (with
/// the Host, as a CDN serves many sites).
fn access_prefix(
    req: &hyper::Request<hyper::body::Incoming>,
    client: std::net::SocketAddr,
) -> String {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let when = httpdate::fmt_http_date(std::time::SystemTime::now());
    format!(
        "{} - - [{when}] \"{} {} {:?}\" host={host}",
        client.ip(),
        req.method(),
        req.uri(),
        req.version()
    )
}
