//! The UDP side of the nameserver: loops that read datagrams and have the handler answer
//! each one in place, replying from the same task.
//!
//! hickory-server's own UDP path spawns a task for every datagram and hands every reply
//! through a channel to the socket's task; at a hundred thousand queries a second that
//! bookkeeping cost more than computing the answer. Parsing, the answer and its encoding
//! are still hickory's (see [`handler`](crate::handler)); TCP stays with hickory-server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::roster::Roster;

/// The largest datagram read: any UDP payload, so an oversized query is parsed whole (and
/// answered or given FORMERR) rather than cut.
const DATAGRAM_BUFFER: usize = 65_535;

/// The longest pause after reading failed several times in a row, so an error that
/// persists does not spin a core.
const MAX_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Datagrams read (while more are waiting) before their answers are sent together. Back to
/// back, the answers mostly find their receiver still awake: waking a client's thread for
/// every reply cost the sender more than computing it.
const BATCH: usize = 16;

/// Batches answered in a row before the loop lets other tasks run (reading with
/// `try_recv_from` does not spend tokio's cooperative budget).
const YIELD_EVERY: u32 = 4;

/// Answers datagrams on `socket` until `shutdown`. Several loops may share one socket; each
/// takes the next datagrams when it is free. While datagrams are waiting the loop reads
/// them without going back to the runtime; only an empty socket waits for readiness (or
/// the shutdown).
pub(crate) async fn serve<R: Roster>(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler<R>>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut pause = Duration::ZERO;
    let mut in_a_row = 0u32;
    loop {
        let mut read = 0;
        let mut failed = None;
        while read < BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((len, from)) => {
                    read += 1;
                    let datagram = buf.get(..len).unwrap_or_default();
                    if let Some(bytes) = handler.answer_datagram(datagram, from).await {
                        replies.push((bytes, from));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for (bytes, to) in replies.drain(..) {
            if let Err(e) = send(&socket, &bytes, to).await {
                tracing::debug!(error = %e, %to, "sending a DNS reply failed");
            }
        }
        if read > 0 {
            pause = Duration::ZERO;
        }
        if let Some(e) = failed {
            // Usually about one datagram; if it persists, back off (and say so once).
            if pause.is_zero() {
                tracing::warn!(error = %e, "reading a DNS datagram failed");
            }
            pause = (pause * 2).clamp(Duration::from_millis(1), MAX_ERROR_PAUSE);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        } else if read == BATCH {
            in_a_row += 1;
            if in_a_row >= YIELD_EVERY {
                in_a_row = 0;
                tokio::task::yield_now().await;
                if shutdown.is_cancelled() {
                    return;
                }
            }
        } else {
            // The socket is empty.
            in_a_row = 0;
            tokio::select! {
                ready = socket.readable() => if let Err(e) = ready {
                    tracing::warn!(error = %e, "waiting for DNS datagrams failed");
                },
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Sends one reply: straight away if the socket takes it, else when it can.
async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
    match socket.try_send_to(bytes, to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            socket.send_to(bytes, to).await.map(drop)
        }
        other => other.map(drop),
    }
}
