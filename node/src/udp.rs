//! An interim DHT transport: one UDP socket, one datagram per message, bound to loopback.
//!
//! It exists so `reef node` runs the real DHT state machine over real sockets before the
//! libp2p overlay (with its network secret) lands; it has no authentication, which is why it
//! refuses to bind anything but a loopback address.
//!
//! ```text
//! datagram = kind:u8  rpc:u64-be  sender:[u8; 32]  body
//! kind 0 request, body = dht::wire request;  kind 1 response, body = dht::wire response;
//! kind 2 hello (empty body), answered by kind 3: learns a bootstrap address's node ID.
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dht::wire::{decode_request, decode_response, encode_request, encode_response};
use dht::{Contact, Event, InboundId, Input, Node, NodeId, RpcId, Transmit};

const HEADER_LEN: usize = 1 + 8 + 32;
const KIND_REQUEST: u8 = 0;
const KIND_RESPONSE: u8 = 1;
const KIND_HELLO: u8 = 2;
const KIND_HELLO_REPLY: u8 = 3;
/// How often a bootstrap address that has not answered is greeted again.
const HELLO_INTERVAL: Duration = Duration::from_secs(2);

/// Why the transport could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Without the overlay's network secret, only loopback is safe to bind.
    #[error("refusing to bind {0}: the interim UDP transport is unauthenticated and loopback-only")]
    NotLoopback(SocketAddr),
    /// A socket operation failed.
    #[error("udp socket: {0}")]
    Io(#[from] io::Error),
}

/// The DHT on a UDP socket.
#[derive(Debug)]
pub struct UdpDriver {
    socket: UdpSocket,
    dht: Node,
    max_message: usize,
    /// Who asked each request we owe an answer to, and under which of their RPC numbers.
    inbound: BTreeMap<InboundId, (SocketAddr, u64)>,
    next_inbound: u64,
    /// Bootstrap addresses whose node ID we are still waiting to learn.
    greeting: Vec<SocketAddr>,
    next_hello: Option<Instant>,
}

/// A contact's address is the peer's socket address as text.
pub fn contact_for(id: NodeId, addr: SocketAddr) -> Contact {
    Contact::new(id, addr.to_string().into_bytes())
}

fn socket_addr(c: &Contact) -> Option<SocketAddr> {
    std::str::from_utf8(&c.addr.0).ok()?.parse().ok()
}

impl UdpDriver {
    /// Binds `listen` (loopback only) and creates the node with a random ID.
    pub fn bind(listen: SocketAddr, config: dht::Config, id: NodeId) -> Result<Self, Error> {
        if !listen.ip().is_loopback() {
            return Err(Error::NotLoopback(listen));
        }
        let socket = UdpSocket::bind(listen)?;
        let me = contact_for(id, socket.local_addr()?);
        let max_message = config.max_message_size;
        let dht =
            Node::new(config, me).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(UdpDriver {
            socket,
            dht,
            max_message,
            inbound: BTreeMap::new(),
            next_inbound: 0,
            greeting: Vec::new(),
            next_hello: None,
        })
    }

    /// Joins through these addresses: greets each to learn its ID, then bootstraps the DHT.
    pub fn bootstrap(&mut self, addrs: Vec<SocketAddr>) {
        self.greeting = addrs;
        self.next_hello = Some(Instant::now());
    }

    fn greet(&mut self, now: Instant) -> Result<(), Error> {
        if self.greeting.is_empty() || self.next_hello.is_none_or(|t| t > now) {
            return Ok(());
        }
        let hello = self.frame(KIND_HELLO, 0, &[]);
        for addr in &self.greeting {
            self.socket.send_to(&hello, addr)?;
        }
        self.next_hello = Some(now + HELLO_INTERVAL);
        Ok(())
    }

    fn frame(&self, kind: u8, rpc: u64, body: &[u8]) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(HEADER_LEN + body.len());
        datagram.push(kind);
        datagram.extend_from_slice(&rpc.to_be_bytes());
        datagram.extend_from_slice(self.dht.contact().id.as_bytes());
        datagram.extend_from_slice(body);
        datagram
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The DHT state machine.
    pub fn dht(&mut self) -> &mut Node {
        &mut self.dht
    }

    /// Runs until `until`, or until `stop` is set (checked at least every second), handing
    /// every DHT event to `on_event`.
    pub fn run(
        &mut self,
        until: Option<Instant>,
        stop: &AtomicBool,
        mut on_event: impl FnMut(&Node, Event),
    ) -> Result<(), Error> {
        let mut buf = vec![0u8; self.max_message + HEADER_LEN];
        loop {
            self.greet(Instant::now())?;
            self.flush(&mut on_event)?;
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let wake = [self.dht.poll_timeout(), until, self.next_hello]
                .into_iter()
                .flatten()
                .min();
            let wait = wake
                .map_or(Duration::from_secs(1), |w| w.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            self.socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => {
                    let datagram = buf.get(..len).unwrap_or_default();
                    self.on_datagram(Instant::now(), from, datagram);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            self.dht.handle_timeout(Instant::now());
        }
    }

    fn flush(&mut self, on_event: &mut impl FnMut(&Node, Event)) -> Result<(), Error> {
        while let Some(t) = self.dht.poll_transmit() {
            let (kind, rpc, to, body) = match t {
                Transmit::Request { to, rpc, req } => {
                    let Some(addr) = socket_addr(&to) else {
                        continue;
                    };
                    let Ok(body) = encode_request(&req, self.max_message) else {
                        continue;
                    };
                    (KIND_REQUEST, rpc.0, addr, body)
                }
                Transmit::Response { inbound, resp } => {
                    let Some((addr, rpc)) = self.inbound.remove(&inbound) else {
                        continue;
                    };
                    let Ok(body) = encode_response(&resp, self.max_message) else {
                        continue;
                    };
                    (KIND_RESPONSE, rpc, addr, body)
                }
            };
            let datagram = self.frame(kind, rpc, &body);
            if let Err(e) = self.socket.send_to(&datagram, to) {
                tracing::debug!(%to, error = %e, "send failed");
                if kind == KIND_REQUEST {
                    self.dht
                        .handle_input(Instant::now(), Input::SendFailed { rpc: RpcId(rpc) });
                }
            }
        }
        while let Some(e) = self.dht.poll_event() {
            on_event(&self.dht, e);
        }
        Ok(())
    }

    fn on_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if datagram.len() < HEADER_LEN {
            tracing::debug!(%from, "short datagram dropped");
            return;
        }
        let (head, body) = datagram.split_at(HEADER_LEN);
        let mut rpc = [0u8; 8];
        rpc.copy_from_slice(&head[1..9]);
        let rpc = u64::from_be_bytes(rpc);
        let mut id = [0u8; 32];
        id.copy_from_slice(&head[9..]);
        match head[0] {
            KIND_REQUEST => match decode_request(body, self.max_message) {
                Ok(req) => {
                    let inbound = InboundId(self.next_inbound);
                    self.next_inbound += 1;
                    self.inbound.insert(inbound, (from, rpc));
                    let from = contact_for(NodeId(id), from);
                    self.dht
                        .handle_input(now, Input::Request { from, inbound, req });
                }
                Err(e) => tracing::debug!(%from, error = %e, "bad request dropped"),
            },
            KIND_RESPONSE => match decode_response(body, self.max_message) {
                Ok(resp) => self.dht.handle_input(
                    now,
                    Input::Response {
                        rpc: RpcId(rpc),
                        resp,
                    },
                ),
                Err(e) => tracing::debug!(%from, error = %e, "bad response dropped"),
            },
            KIND_HELLO => {
                let reply = self.frame(KIND_HELLO_REPLY, rpc, &[]);
                if let Err(e) = self.socket.send_to(&reply, from) {
                    tracing::debug!(%from, error = %e, "hello reply failed");
                }
            }
            KIND_HELLO_REPLY => {
                if let Some(pos) = self.greeting.iter().position(|a| *a == from) {
                    self.greeting.swap_remove(pos);
                    let contact = contact_for(NodeId(id), from);
                    self.dht.bootstrap(now, vec![contact]);
                }
            }
            other => tracing::debug!(%from, kind = other, "unknown datagram kind dropped"),
        }
    }
}
