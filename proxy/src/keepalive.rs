//! Plain-text HTTP/1.1 connections that cost next to nothing while idle.
//!
//! hyper keeps a connection's read and write buffers (8-16 KiB each) and its dispatcher for
//! the connection's whole life. Measured with 10,000 idle keep-alive connections that had
//! each made one request, that was about 20 KB per connection, against nginx's 523 B (nginx
//! frees a keep-alive connection's buffers while it waits). So a connection is *parked* when
//! hyper waits for a next request that has not arrived (at once when more than
//! [`WARM_CONNECTIONS`] are unparked, else after [`WARM_FOR`]): hyper hands the socket back
//! (`graceful_shutdown` + `into_parts`, which sends no `Connection: close`), the socket
//! waits for readability in the [`crate::parking`] lot with nothing of hyper's kept, and the
//! next request gets a fresh hyper connection. Bytes hyper had already read (a pipelined request) are replayed first.
//!
//! A connection is not parked after a request with a body (hyper may not have read all of
//! it, and what is left would be taken for the next request), nor after a request or a
//! response that ends the connection (`Connection: close`, or HTTP/1.0 without keep-alive):
//! hyper closes those, and parking one would leave its client waiting for the end.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::SharedBody;
use crate::zerocopy::{self, Sendable};

/// Live hyper connections, server-wide, up to which an idle one stays unparked for
/// [`WARM_FOR`]; beyond it, idle ones are parked at once. A few clients sending requests back
/// to back then never pay for a new hyper connection per request (that cost 9 % of 1 KiB hit
/// throughput), while a burst of connections that go idle together is parked at once: the
/// burst sets the memory's high-water mark, which the allocator keeps. (Busy connections
/// count too: with more than this many clients, requests pay that cost again.)
pub(crate) const WARM_CONNECTIONS: usize = 64;

/// How long an idle connection stays unparked while few hyper connections are alive.
pub(crate) const WARM_FOR: Duration = Duration::from_secs(1);

/// The hyper connections alive, server-wide.
#[derive(Debug, Default)]
pub(crate) struct Warm {
    active: AtomicUsize,
}

impl Warm {
    fn enter(&self) -> WarmGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        WarmGuard(self)
    }

    fn crowded(&self) -> bool {
        self.active.load(Ordering::Relaxed) > WARM_CONNECTIONS
    }
}

struct WarmGuard<'a>(&'a Warm);

impl Drop for WarmGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the service tells the connection about the requests it answered.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Requests seen.
    count: AtomicU64,
    /// Responses whose bodies hyper has written and dropped. Only then may keep-alive be
    /// turned off: turned off before a response's head is written, hyper would add
    /// `Connection: close` to it; before its body is, hyper would end the connection after
    /// it, and a client sending its next request at once would find it parked.
    finished: AtomicU64,
    /// `count` at the last request after which the connection must not be parked.
    last_unparkable: AtomicU64,
    /// Whether hyper's last read found nothing to read, and its last write went through:
    /// with every response written, hyper then waits for a request the client has not sent
    /// (rather than for the client to take the end of a response).
    waiting_to_read: AtomicBool,
    write_blocked: AtomicBool,
    /// The body of the latest response that may go out from its file (see
    /// [`crate::zerocopy`]). Kept until the next such response or the connection's end, not
    /// just until hyper drops the body: hyper may still hold its last chunk to write. (One
    /// kept longer is harmless: only slices inside its memory are sent from its file.)
    sendable: Mutex<Option<Arc<SharedBody>>>,
}

impl Requests {
    /// Called by the service for every request.
    pub(crate) fn saw<B: hyper::body::Body>(&self, req: &hyper::Request<B>) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if !req.body().is_end_stream() || !keeps_alive(req.version(), req.headers()) {
            self.last_unparkable.store(n, Ordering::Relaxed);
        }
    }

    /// Called by the service with each response, as it hands it to hyper: the response,
    /// with a body that reports when hyper is done with it. A body that may be sent from its
    /// file is registered for the writes.
    pub(crate) fn answer<B>(
        self: &Arc<Self>,
        mut resp: hyper::Response<B>,
    ) -> hyper::Response<Tracked<B>> {
        if !keeps_alive(resp.version(), resp.headers()) {
            let n = self.count.load(Ordering::Relaxed);
            self.last_unparkable.store(n, Ordering::Relaxed);
        }
        // A response that cannot go out from a file ends the previous one's turn: no write
        // of it has to be looked for in that body's memory.
        let sendable = resp.extensions_mut().remove::<Sendable>().map(|s| s.0);
        if let Ok(mut slot) = self.sendable.lock() {
            *slot = sendable;
        }
        resp.map(|inner| Tracked {
            inner,
            requests: Some(self.clone()),
        })
    }

    /// Where one of `bufs` can be sent from a file.
    fn in_file(&self, bufs: &[io::IoSlice<'_>]) -> Option<zerocopy::InFile> {
        zerocopy::find(self.sendable.lock().ok()?.as_deref()?, bufs)
    }

    /// Whether every response was written whole, and the connection may live on after the
    /// last.
    fn parkable(&self) -> bool {
        let n = self.count.load(Ordering::Relaxed);
        n > 0
            && self.finished.load(Ordering::Relaxed) == n
            && self.last_unparkable.load(Ordering::Relaxed) != n
            && self.waiting_to_read.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
    }
}

/// A response body that tells its connection's [`Requests`] when hyper drops it (written
/// whole, or abandoned with the connection).
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    inner: B,
    requests: Option<Arc<Requests>>,
}

impl<B> Tracked<B> {
    /// A body that reports to nobody (connections that are never parked).
    pub(crate) fn untracked(inner: B) -> Tracked<B> {
        Tracked {
            inner,
            requests: None,
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if let Some(requests) = &self.requests {
            requests.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a message of `version` with `headers` leaves its connection open (RFC 9112,
/// section 9.3): HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `keep-alive`.
fn keeps_alive(version: http::Version, headers: &http::HeaderMap) -> bool {
    let says = |token: &str| {
        crate::headers::connection_options(headers).any(|t| t.eq_ignore_ascii_case(token))
    };
    match version {
        http::Version::HTTP_11 => !says("close"),
        http::Version::HTTP_10 => says("keep-alive"),
        _ => false,
    }
}

/// A socket with bytes already read from it in front.
#[derive(Debug)]
pub(crate) struct Prefixed {
    prefix: Bytes,
    stream: TcpStream,
    /// The hyper connection being served, told of blocked reads and writes.
    watch: Option<Arc<Requests>>,
    /// Bytes sent from files, server-wide.
    sent_from_files: Arc<AtomicU64>,
}

impl Prefixed {
    /// `stream` with nothing in front; bytes it sends from files are counted in
    /// `sent_from_files`.
    pub(crate) fn new(stream: TcpStream, sent_from_files: Arc<AtomicU64>) -> Prefixed {
        Prefixed {
            prefix: Bytes::new(),
            stream,
            watch: None,
            sent_from_files,
        }
    }

    fn note<T>(&self, flag: fn(&Requests) -> &AtomicBool, poll: &Poll<T>) {
        if let Some(requests) = &self.watch {
            flag(requests).store(poll.is_pending(), Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Not an empty view that keeps its whole buffer alive while parked.
                self.prefix = Bytes::new();
            }
            let ready = Poll::Ready(Ok(()));
            self.note(|r| &r.waiting_to_read, &ready);
            return ready;
        }
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.note(|r| &r.waiting_to_read, &poll);
        poll
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(|r| &r.write_blocked, &poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = match this.watch.as_deref().and_then(|w| w.in_file(bufs)) {
            Some(found) => {
                zerocopy::poll_send(&mut this.stream, cx, bufs, found, &this.sent_from_files)
            }
            None => Pin::new(&mut this.stream).poll_write_vectored(cx, bufs),
        };
        self.note(|r| &r.write_blocked, &poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on `io` until the client leaves, an error ends it, or it idles: then the
/// socket is handed to `park` (see [`crate::parking`]). `io` must have something to read
/// (a new connection's first bytes, or a parked one's next request). `service` makes the
/// service for one hyper connection, given the counter it must report each request to.
pub(crate) async fn serve<S, F>(
    mut io: Prefixed,
    builder: &http1::Builder,
    warm: &Warm,
    mut service: F,
    park: impl FnOnce(TcpStream),
) -> hyper::Result<()>
where
    F: FnMut(Arc<Requests>) -> S,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<Tracked<crate::service::ProxyBody>>,
            Error = std::convert::Infallible,
        > + Unpin,
    S::Future: Unpin,
{
    loop {
        let requests = Arc::new(Requests::default());
        io.watch = Some(requests.clone());
        let mut conn =
            Box::new(builder.serve_connection(TokioIo::new(io), service(requests.clone())));
        let _warm = warm.enter();
        let mut timer = Box::pin(tokio::time::sleep(WARM_FOR));
        let (mut seen, mut parking) = (0, false);
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                    return Poll::Ready(r);
                }
                // Pending with every response written: hyper flushes the last of it (and
                // finishes that before it stops) or waits for a request not yet sent.
                if parking || !requests.parkable() {
                    return Poll::Pending;
                }
                let n = requests.count.load(Ordering::Relaxed);
                if n != seen {
                    seen = n;
                    timer.as_mut().reset(tokio::time::Instant::now() + WARM_FOR);
                }
                if !warm.crowded() && timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                Pin::new(&mut *conn).graceful_shutdown();
                parking = true;
            }
        })
        .await?;
        if !parking {
            // The client closed, or hyper ended the connection itself.
            return Ok(());
        }
        let parts = conn.into_parts();
        io = parts.io.into_inner();
        io.watch = None;
        // The prefix is used up: a connection parks only after a read of the socket itself
        // found nothing (`waiting_to_read`). What hyper read but did not parse goes first.
        debug_assert!(io.prefix.is_empty());
        io.prefix = parts.read_buf;
        if io.prefix.is_empty() {
            park(io.stream);
            return Ok(());
        }
    }
}

/// HTTP/2's connection preface: a plain-text client speaking h2c with prior knowledge
/// starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client on `stream` speaks h2c, judged from its first bytes without consuming
/// them; `None` if it sends nothing useful within `within`.
pub(crate) async fn speaks_h2(stream: &TcpStream, within: Duration) -> Option<bool> {
    let sniff = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        // `peek` leaves the socket readable: a client that sent part of the preface is
        // looked at again after a pause that grows, not in a tight loop.
        let mut pause = Duration::from_millis(5);
        loop {
            stream.readable().await.ok()?;
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            // A prefix of the preface so far: wait for more.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    };
    tokio::time::timeout(within, sniff).await.ok().flatten()
}
