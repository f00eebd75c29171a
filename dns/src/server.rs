//! Serving the zone over UDP and TCP on one address: `run` as in mini-redis, with an
//! explicit shutdown. TCP is hickory-server's; UDP is served by the loops in `udp.rs`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::handler::{DnsStats, Handler, SharedHandler};
use crate::roster::Roster;
use crate::udp;

/// How long a TCP connection may idle between queries.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running nameserver.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stats: Arc<DnsStats>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Binds UDP and TCP on `addr` (port 0: the same free port for both) and serves.
pub async fn start<R: Roster>(addr: SocketAddr, handler: Handler<R>) -> io::Result<Running> {
    let (datagrams, tcp) = bind_both(addr).await?;
    let local = datagrams.local_addr()?;
    let stats = handler.stats();
    let handler = Arc::new(handler);
    let mut server = Server::new(SharedHandler(handler.clone()));
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 32);
    let token = server.shutdown_token().clone();
    // One UDP loop per runtime worker, so a busy server uses every core it is given.
    let datagrams = Arc::new(datagrams);
    let mut loops = tokio::task::JoinSet::new();
    let start_loop = {
        let token = token.clone();
        move |loops: &mut tokio::task::JoinSet<()>| {
            loops.spawn(udp::serve(
                datagrams.clone(),
                handler.clone(),
                token.clone(),
            ));
        }
    };
    for _ in 0..tokio::runtime::Handle::current().metrics().num_workers() {
        start_loop(&mut loops);
    }
    let supervise = {
        let token = token.clone();
        async move {
            // A loop ends only at shutdown; one that ended otherwise (a panic while answering
            // a datagram) is replaced, so UDP is never left unserved.
            while let Some(ended) = loops.join_next().await {
                if token.is_cancelled() {
                    continue;
                }
                tracing::error!(?ended, "a DNS UDP loop stopped; starting another");
                start_loop(&mut loops);
            }
        }
    };
    let task = tokio::spawn(async move {
        let (served, ()) = tokio::join!(server.block_until_done(), supervise);
        if let Err(e) = served {
            tracing::warn!(error = %e, "dns server stopped");
        }
    });
    Ok(Running {
        addr: local,
        stats,
        shutdown: token,
        task,
    })
}

async fn bind_both(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    // An ephemeral UDP port whose TCP twin is free too (a few tries).
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port pair");
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Running {
    /// The address served (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handler's counters.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.stats.clone()
    }

    /// Stops accepting queries and waits for the server task.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
