//! Plain-text HTTP/1.1 connections that cost next to nothing while idle.
//!
//! hyper keeps a connection's read and write buffers (8-16 KiB each) and its dispatcher for
//! the connection's whole life. Measured with 10,000 idle keep-alive connections that had
//! each made one request, that was about 20 KB per connection, against nginx's 523 B (nginx
//! frees a keep-alive connection's buffers while it waits). So a connection is *parked* as
//! soon as hyper waits for a next request that has not arrived: hyper hands the socket back
//! (`graceful_shutdown` + `into_parts`, which sends no `Connection: close`), the socket
//! waits for readability with nothing else allocated, and the next request gets a fresh
//! hyper connection. Bytes hyper had already read (a pipelined request) are replayed first.
//! A fresh hyper connection per request did not measurably slow 1 KiB hits (wrk, 50
//! connections). Parking after a delay instead needs a timer per request, and left many
//! connections unparked at once in a burst, which is what sets the memory's high-water mark.
//!
//! A connection whose last request had a body is not parked: hyper may not have read all of
//! it, and what is left would be taken for the next request.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the service tells the connection about the requests it answered.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Requests seen.
    count: AtomicU64,
    /// Responses handed to hyper. Only once every response's head is written may keep-alive
    /// be turned off: turned off before, hyper would add `Connection: close` to it.
    answered: AtomicU64,
    /// `count` at the last request that had a body (such a connection is not parked).
    last_with_body: AtomicU64,
}

impl Requests {
    /// Called by the service for every request.
    pub(crate) fn saw(&self, has_body: bool) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if has_body {
            self.last_with_body.store(n, Ordering::Relaxed);
        }
    }

    /// Called by the service with each response, as it hands it to hyper.
    pub(crate) fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the connection answered every request it got, and the last one had no body.
    /// (hyper writes a response's head in the same poll that takes the response.)
    fn parkable(&self) -> bool {
        let n = self.count.load(Ordering::Relaxed);
        n > 0
            && self.answered.load(Ordering::Relaxed) == n
            && self.last_with_body.load(Ordering::Relaxed) != n
    }
}

/// A socket with bytes already read from it in front.
#[derive(Debug)]
pub(crate) struct Prefixed {
    prefix: Bytes,
    stream: TcpStream,
}

impl Prefixed {
    /// `stream` with nothing in front.
    pub(crate) fn new(stream: TcpStream) -> Prefixed {
        Prefixed {
            prefix: Bytes::new(),
            stream,
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
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
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

/// Serves HTTP/1.1 on `io`, parking it whenever it idles, until the client leaves, an error
/// ends it, or it stays idle for `idle_timeout`. `service` makes the service for one hyper
/// connection, given the counter it must report each request to.
pub(crate) async fn serve<S, F>(
    mut io: Prefixed,
    builder: &http1::Builder,
    idle_timeout: Duration,
    mut service: F,
) -> hyper::Result<()>
where
    F: FnMut(Arc<Requests>) -> S,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<crate::service::ProxyBody>,
            Error = std::convert::Infallible,
        > + Unpin,
    S::Future: Unpin,
{
    loop {
        if io.prefix.is_empty() {
            match tokio::time::timeout(idle_timeout, io.stream.readable()).await {
                Ok(Ok(())) => {}
                // Idle too long, or the socket failed: closed, as hyper would.
                _ => return Ok(()),
            }
        }
        let requests = Arc::new(Requests::default());
        let mut conn =
            Box::new(builder.serve_connection(TokioIo::new(io), service(requests.clone())));
        let mut parking = false;
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                    return Poll::Ready(r);
                }
                // Pending after a request: the response is still being written (hyper
                // finishes it, then stops), or hyper waits for another request.
                if parking || !requests.parkable() {
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
        if !parts.read_buf.is_empty() {
            let mut prefix = Vec::with_capacity(io.prefix.len() + parts.read_buf.len());
            prefix.extend_from_slice(&io.prefix);
            prefix.extend_from_slice(&parts.read_buf);
            io.prefix = Bytes::from(prefix);
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
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(within, sniff).await.ok().flatten()
}
