//! Accepting connections: `run(listener, proxy, shutdown)` as in mini-redis. HTTP/1.1 and
//! h2c (prior knowledge) on one port, or HTTPS with `run_tls` (h2 or HTTP/1.1 by ALPN); a
//! header-read timeout against slowloris; connection limits per client and in all.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::keepalive::{self, Prefixed, Requests, Tracked};
use crate::limits::ConnectionSlot;
use crate::parking::{ParkingLot, Resume};
use crate::service::{Proxy, ProxyBody};

/// Time a client has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Builder = Arc<auto::Builder<TokioExecutor>>;

/// The connection settings: HTTP/1.1 or HTTP/2 by ALPN or preface (TLS and h2c), and plain
/// HTTP/1.1 (parked while idle, see [`keepalive`]). Shared: every parked connection holds
/// it.
#[derive(Debug)]
struct Builders {
    auto: Builder,
    http1: Arc<http1::Builder>,
    warm: Arc<keepalive::Warm>,
    /// How long a connection may wait for its first or next request.
    idle: Duration,
    /// Where idle plain connections wait; `None` if its thread could not start (then each
    /// waits in a task of its own).
    lot: Option<Arc<ParkingLot<Waiting>>>,
}

/// A plain connection waiting in the parking lot, and what goes on when its client sends.
struct Waiting {
    client: SocketAddr,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    slot: ConnectionSlot,
    /// Whether it has served HTTP/1.1 already (else it may still turn out to speak h2c).
    http1: bool,
}

impl Resume for Waiting {
    fn resume(self, stream: TcpStream) {
        let Waiting {
            client,
            proxy,
            builders,
            slot,
            http1,
        } = self;
        if http1 {
            spawn_http1(stream, client, proxy, builders, slot);
        } else {
            spawn_plain(stream, client, proxy, builders, slot);
        }
    }
}

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
fn builders(limits: &crate::limits::LimitsConfig, parked: Arc<AtomicU64>) -> Arc<Builders> {
    // hyper's smallest buffer is 8 KiB.
    let max_buf = limits.max_header_bytes.max(8192);
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(max_buf);
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(max_buf);
    Arc::new(Builders {
        auto: Arc::new(auto),
        http1: Arc::new(http1),
        warm: Arc::default(),
        idle: limits.header_read_timeout,
        lot: match ParkingLot::start(limits.header_read_timeout, parked) {
            Ok(lot) => Some(Arc::new(lot)),
            Err(e) => {
                tracing::warn!(error = %e, "no parking thread; idle connections cost more");
                None
            }
        },
    })
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
    let builders = builders(
        proxy.limits().config(),
        proxy.stats().idle_connections.clone(),
    );
    // Parked connections close with the server, however it ends.
    let _stop_parking = StopParking(builders.lot.clone());
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
        let (proxy, builders) = (proxy.clone(), builders.clone());
        // Two task types: a plain connection's task must not carry the size of TLS state
        // (every idle keep-alive connection pays for its task).
        match tls.clone() {
            // A connection whose request is already here is served at once; one that has
            // said nothing yet waits for its first bytes where idle ones wait: a burst of
            // connections must not make a task each before they have anything to say (the
            // burst's high-water mark stays with the allocator).
            None if has_bytes(&stream) => {
                spawn_plain(stream, client, proxy, builders, slot);
                // The new connection's task runs before the next accept (it is next in the
                // worker's queue), as nginx handles a connection's events before it accepts
                // again. Otherwise a burst of arrivals is accepted up to the runtime's budget
                // (128) before any is served, all of them alive at once with their buffers;
                // the heap grows to that, and glibc keeps the pages a few survivors sit on.
                // 10,000 connections opened at once: 300-700 bytes each once idle, 258 with.
                tokio::task::yield_now().await;
            }
            None => {
                park(
                    stream,
                    Waiting {
                        client,
                        proxy,
                        builders,
                        slot,
                        http1: false,
                    },
                );
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _slot = slot;
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => serve(tls, client, proxy, builders.auto.clone()).await,
                        Ok(Err(e)) => tracing::debug!(%client, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%client, "tls handshake timed out"),
                    }
                });
            }
        }
    }
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<hyper::Response<Tracked<ProxyBody>>, Infallible>> + Send>>;

/// The service of one connection, telling `requests` (if any) of every request.
///
/// Its future is boxed: hyper keeps the allocation of a connection's request future for the
/// connection's whole life, idle or not, and `handle`'s future is kilobytes (every path a
/// request can take is in it). Boxed, it lives only while a request does.
fn service(
    proxy: Arc<Proxy>,
    client: SocketAddr,
    requests: Option<Arc<Requests>>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Tracked<ProxyBody>>,
    Error = Infallible,
    Future = ServiceFuture,
> + Clone
+ Unpin
+ Send
+ 'static {
    service_fn(move |req: hyper::Request<Incoming>| -> ServiceFuture {
        if let Some(requests) = &requests {
            requests.saw(&req);
        }
        let (proxy, requests) = (proxy.clone(), requests.clone());
        Box::pin(async move {
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
            Ok(match requests {
                Some(requests) => requests.answer(resp),
                None => resp.map(Tracked::untracked),
            })
        })
    })
}

/// Serves one plain-text connection: h2c if it starts with HTTP/2's preface, else HTTP/1.1
/// parked while idle.
async fn serve_plain(
    stream: TcpStream,
    client: SocketAddr,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    slot: ConnectionSlot,
) {
    // Boxed: the sniffing's state must not size the task of every HTTP/1.1 connection.
    match Box::pin(keepalive::speaks_h2(&stream, builders.idle)).await {
        None => {}
        // Boxed: an h2 connection's state must not size every HTTP/1.1 connection's task.
        Some(true) => Box::pin(serve(stream, client, proxy, builders.auto.clone())).await,
        Some(false) => serve_http1(stream, client, proxy, builders, slot).await,
    }
}

/// Serves HTTP/1.1 on a connection with something to read, until it ends or parks (then
/// its next request starts this again, in a new task).
async fn serve_http1(
    stream: TcpStream,
    client: SocketAddr,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    slot: ConnectionSlot,
) {
    let (http1, warm) = (builders.http1.clone(), builders.warm.clone());
    let io = Prefixed::new(stream, proxy.stats.sent_from_files.clone());
    let make = {
        let proxy = proxy.clone();
        move |requests| service(proxy.clone(), client, Some(requests))
    };
    let park_idle = move |stream: TcpStream| {
        park(
            stream,
            Waiting {
                client,
                proxy,
                builders,
                slot,
                http1: true,
            },
        );
    };
    if let Err(e) = keepalive::serve(io, &http1, &warm, make, park_idle).await {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}

/// Whether `stream` has bytes to read now (a peek that does not wait). Most clients send
/// their request with the connection's first packets, and a connection served at once
/// skips a round through the parking lot (two poller registrations and a thread handoff).
fn has_bytes(stream: &TcpStream) -> bool {
    use rustix::net::RecvFlags;
    let mut byte = [0u8; 1];
    matches!(
        rustix::net::recv(stream, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((1, _))
    )
}

/// Hands `stream` back to `waiting` once it is readable, or closes it after the idle timeout
/// without a byte: in the parking lot, or if there is none, in a task of its own.
fn park(stream: TcpStream, waiting: Waiting) {
    match waiting.builders.lot.clone() {
        Some(lot) => lot.park(stream, waiting),
        None => {
            let idle = waiting.builders.idle;
            tokio::spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(idle, stream.readable()).await {
                    waiting.resume(stream);
                }
            });
        }
    }
}

/// [`serve_http1`] in a task of its own. (A plain function: an async one spawning itself
/// would need its own future's type to know whether that future is `Send`.)
fn spawn_http1(
    stream: TcpStream,
    client: SocketAddr,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    slot: ConnectionSlot,
) {
    // The connection's state (about 900 bytes) is boxed when the task first runs (see
    // `spawn_plain`).
    tokio::spawn(async move { Box::pin(serve_http1(stream, client, proxy, builders, slot)).await });
}

/// [`serve_plain`] in a task of its own, its state boxed when the task first runs: a burst
/// of connections made ready at once (the parking lot resumes them as fast as they become
/// readable) waits in the runtime's queue as tasks holding their arguments, about 200 bytes,
/// not 1.2 KB of a connection's state each. The queue's high-water mark stays with the
/// allocator: 10,000 keep-alive connections opened at once left about 300 bytes more per
/// connection after they went idle.
fn spawn_plain(
    stream: TcpStream,
    client: SocketAddr,
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    slot: ConnectionSlot,
) {
    tokio::spawn(async move { Box::pin(serve_plain(stream, client, proxy, builders, slot)).await });
}

/// Stops the parking lot when the accept loop ends.
struct StopParking(Option<Arc<ParkingLot<Waiting>>>);

impl Drop for StopParking {
    fn drop(&mut self) {
        if let Some(lot) = &self.0 {
            lot.stop();
        }
    }
}

/// Serves one connection, HTTP/1.1 or HTTP/2.
async fn serve<S>(stream: S, client: SocketAddr, proxy: Arc<Proxy>, builder: Builder)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service(proxy, client, None);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}

/// The start of a Common Log Format line: client, identity, user, time, request line (with
/// the Host, as a CDN serves many sites).
fn access_prefix(req: &hyper::Request<Incoming>, client: SocketAddr) -> String {
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
