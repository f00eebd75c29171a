//! The UDP side of the nameserver: loops that read datagrams and have the handler answer
//! each one in place, replying from the same task.
//!
//! hickory-server's own UDP path spawns a task for every datagram and hands every reply
//! through a channel to the socket's task; at a hundred thousand queries a second that
//! bookkeeping cost more than computing the answer. Parsing, the answer and its encoding
//! are still hickory's (see [`handler`](crate::handler)); TCP stays with hickory-server.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::roster::Roster;

/// The largest datagram read: any UDP payload, so an oversized query is parsed (and
/// refused) whole rather than cut.
const DATAGRAM_BUFFER: usize = 65_535;

/// Answers datagrams on `socket` until `shutdown`. Several loops may share one socket; each
/// takes the next datagram when it is free.
pub(crate) async fn serve<R: Roster>(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler<R>>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; DATAGRAM_BUFFER];
    let answer_all = async {
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((len, from)) => {
                    let datagram = buf.get(..len).unwrap_or_default();
                    handler.answer_datagram(datagram, from, &socket).await;
                }
                Err(e) => {
                    // Errors on an unconnected UDP socket are about one datagram; let
                    // other tasks run before the next read.
                    tracing::debug!(error = %e, "reading a DNS datagram failed");
                    tokio::task::yield_now().await;
                }
            }
        }
    };
    shutdown.run_until_cancelled(answer_all).await;
}
