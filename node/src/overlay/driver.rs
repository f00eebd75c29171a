//! The event loop: one task owns the swarm and the `dht::Node` and moves messages between
//! them. It reads the clock in one place ([`now`]), arms one timer from the node's
//! `poll_timeout`, and serves commands from cloneable [`Overlay`](super::Overlay) handles.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dht::wire::{decode_request, decode_response, encode_request, encode_response};
use dht::{Contact, Event, Found, InboundId, Input, QueryError, QueryId, RpcId, Transmit};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, ping};
use tokio::sync::{mpsc, oneshot, watch};

use super::advert::Advert;
use super::codec::{Envelope, Load};
use super::transport::{Behaviour, BehaviourEvent};
use super::{Counters, OverlayStatus, PeerInfo};

/// A request's kind, for logs.
fn kind_of(body: &dht::wire::RequestBody) -> &'static str {
    use dht::wire::RequestBody;
    match body {
        RequestBody::Ping => "ping",
        RequestBody::FindNode { .. } => "find_node",
        RequestBody::Get { .. } => "get",
        RequestBody::PutProbe { .. } => "put_probe",
        RequestBody::Store { .. } => "store",
    }
}

/// The only clock read of the overlay.
fn now() -> Instant {
    Instant::now()
}

/// What a handle asks of the driver.
#[derive(Debug)]
pub(super) enum Command {
    Get {
        key: dht::Key,
        trace: Option<Trace>,
        reply: oneshot::Sender<Result<Found, QueryError>>,
    },
    Put {
        key: dht::Key,
        trace: Option<Trace>,
        pending: bool,
        ttl: Duration,
        reply: Option<oneshot::Sender<bool>>,
    },
    Status {
        reply: oneshot::Sender<OverlayStatus>,
    },
    /// Floods a purge this node accepted from a client.
    Publish { data: Vec<u8> },
    /// This node's verdict on a purge that arrived by gossip: passed on only if accepted.
    Verdict {
        ticket: PurgeTicket,
        verdict: Verdict,
    },
}

/// Where purges travel: the network's topic, and where those from other nodes go.
pub(super) struct PurgeGossip {
    pub(super) topic: gossipsub::IdentTopic,
    pub(super) inbound: Option<mpsc::Sender<InboundPurge>>,
}

/// A purge from the gossip, to be checked by the proxy.
#[derive(Debug)]
pub struct InboundPurge {
    /// The signed purge message.
    pub data: Vec<u8>,
    /// Where the verdict goes.
    pub ticket: PurgeTicket,
}

/// Names one gossip message for its verdict.
#[derive(Debug, Clone)]
pub struct PurgeTicket {
    id: gossipsub::MessageId,
    from: PeerId,
}

/// What this node made of a purge from the gossip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: applied here and passed on.
    Accept,
    /// Forged or malformed: dropped, and its sender is at fault.
    Reject,
    /// Not applicable here (a replay, over the rate, the origin unreachable): dropped.
    Ignore,
}

/// Tells this node's load.
pub(crate) type LoadFn = Box<dyn Fn() -> Load + Send + Sync>;

/// A client request's trace ID (W3C trace-context, 16 bytes).
pub(super) type Trace = [u8; 16];

/// Bounds the peer-to-contact map (peers pinged or heard from).
const MAX_CONTACTS: usize = 4096;
/// How often the node tries to join again (bootstrap addresses, connected peers) while its
/// routing table is empty.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(5);

pub(super) struct Driver {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) dht: dht::Node,
    pub(super) me: Advert,
    pub(super) me_bytes: Vec<u8>,
    pub(super) max_message: usize,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) counters: Arc<Counters>,
    pub(super) bootstrap: Vec<Multiaddr>,
    /// Our requests in flight, with the trace of the client request that caused them.
    outbound: HashMap<OutboundRequestId, (RpcId, Option<Trace>)>,
    /// The trace of the input being handled: requests it causes carry it on (a lookup's
    /// later hops are caused by the answers to its earlier ones).
    current_trace: Option<Trace>,
    inbound: HashMap<InboundId, ResponseChannel<Envelope>>,
    next_inbound: u64,
    /// Peers' contacts, and when each was last heard from (a message or a ping).
    contacts: HashMap<PeerId, (Contact, Instant)>,
    /// What each peer's last message said of its load.
    peer_load: HashMap<PeerId, Load>,
    /// This node's load (said in every message it sends).
    load: LoadFn,
    gets: HashMap<QueryId, oneshot::Sender<Result<Found, QueryError>>>,
    puts: HashMap<QueryId, oneshot::Sender<bool>>,
    bootstrap_dials: HashMap<ConnectionId, Multiaddr>,
    next_bootstrap: Instant,
    /// The network's purge topic.
    purge_topic: gossipsub::IdentTopic,
    /// Where purges from the gossip go to be checked (none: they are ignored).
    purges: Option<mpsc::Sender<InboundPurge>>,
}

impl Driver {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        dht: dht::Node,
        me: Advert,
        commands: mpsc::Receiver<Command>,
        counters: Arc<Counters>,
        (bootstrap, load): (Vec<Multiaddr>, LoadFn),
        purges: PurgeGossip,
    ) -> Driver {
        let max_message = dht.config().max_message_size;
        let mut swarm = swarm;
        if let Err(e) = swarm.behaviour_mut().gossip.subscribe(&purges.topic) {
            tracing::warn!(error = %e, "could not subscribe to purges");
        }
        Driver {
            purge_topic: purges.topic,
            purges: purges.inbound,
            swarm,
            dht,
            me_bytes: me.encode(),
            me,
            max_message,
            commands,
            counters,
            bootstrap,
            outbound: HashMap::new(),
            current_trace: None,
            peer_load: HashMap::new(),
            load,
            inbound: HashMap::new(),
            next_inbound: 0,
            contacts: HashMap::new(),
            gets: HashMap::new(),
            puts: HashMap::new(),
            bootstrap_dials: HashMap::new(),
            next_bootstrap: now(),
        }
    }

    /// Runs until `stop` turns true or every handle is dropped.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            self.flush();
            let wake = self
                .dht
                .poll_timeout()
                .map_or(self.next_bootstrap, |t| t.min(self.next_bootstrap));
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let t = now();
                    self.dht.handle_timeout(t);
                    if t >= self.next_bootstrap {
                        self.housekeeping(t);
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Every few seconds: forgets answers nobody waits for any more (the requester timed
    /// out), and, while the routing table is empty and no join is under way, joins again
    /// through the connected peers and the bootstrap addresses.
    fn housekeeping(&mut self, t: Instant) {
        self.next_bootstrap = t + BOOTSTRAP_RETRY;
        self.inbound.retain(|_, ch| ch.is_open());
        if self.dht.stats(t).routing_peers > 0 || self.dht.joining() {
            return;
        }
        // Connections that outlived a partition (TCP waits it out) are the quickest way
        // back: look ourselves up through the peers at their other ends, as well as dialling
        // the bootstrap addresses.
        let connected: Vec<Contact> = self
            .swarm
            .connected_peers()
            .filter_map(|p| self.contacts.get(p).map(|(c, _)| c.clone()))
            .collect();
        if !connected.is_empty() {
            tracing::debug!(
                peers = connected.len(),
                "routing table empty: joining again through connected peers"
            );
            self.dht.bootstrap(t, connected);
        }
        for addr in self.bootstrap.clone() {
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.bootstrap_dials.insert(id, addr);
                }
                Err(e) => tracing::debug!(%addr, error = %e, "bootstrap dial failed"),
            }
        }
    }

    /// Records `peer`'s contact; `heard` if it just spoke to us.
    fn remember(&mut self, peer: PeerId, contact: Contact, heard: bool) {
        if self.contacts.len() >= MAX_CONTACTS && !self.contacts.contains_key(&peer) {
            // Forget the peer heard from longest ago.
            let evict = self
                .contacts
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p);
            if let Some(p) = evict {
                self.contacts.remove(&p);
                self.peer_load.remove(&p);
            }
        }
        let t = now();
        // A peer only written to has not been heard from: it starts long ago.
        let first = if heard {
            t
        } else {
            t.checked_sub(Duration::from_secs(3600)).unwrap_or(t)
        };
        let entry = self
            .contacts
            .entry(peer)
            .or_insert((contact.clone(), first));
        entry.0 = contact;
        if heard {
            entry.1 = t;
        }
    }

    fn note_load(&mut self, peer: PeerId, load: Load) {
        if self.peer_load.len() >= MAX_CONTACTS {
            // Keep the loads of peers still known (contacts evict the oldest).
            let contacts = &self.contacts;
            self.peer_load.retain(|p, _| contacts.contains_key(p));
        }
        if self.peer_load.len() < MAX_CONTACTS || self.peer_load.contains_key(&peer) {
            let spare = if load.spare.is_finite() {
                load.spare.clamp(0.0, 1.0)
            } else {
                1.0
            };
            self.peer_load.insert(peer, Load { spare, ..load });
        }
    }

    fn heard(&mut self, peer: &PeerId) {
        if let Some((_, at)) = self.contacts.get_mut(peer) {
            *at = now();
        }
    }

    /// Delivers what the DHT node wants sent and hands its events to whoever waits.
    fn flush(&mut self) {
        loop {
            if let Some(t) = self.dht.poll_transmit() {
                self.transmit(t);
                continue;
            }
            if let Some(e) = self.dht.poll_event() {
                self.on_dht_event(e);
                continue;
            }
            break;
        }
    }

    fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Request { to, rpc, req } => {
                let advert = match Advert::of(&to) {
                    Ok(a) if a.peer != self.me.peer => a,
                    _ => {
                        self.counters.bad_contacts.fetch_add(1, Ordering::Relaxed);
                        self.dht.handle_input(now(), Input::Failed { rpc });
                        return;
                    }
                };
                let Ok(body) = encode_request(&req, self.max_message) else {
                    self.dht.handle_input(now(), Input::Failed { rpc });
                    return;
                };
                let envelope = Envelope {
                    advert: self.me_bytes.clone(),
                    trace: self.current_trace,
                    load: (self.load)(),
                    body,
                };
                let id = self.swarm.behaviour_mut().dht.send_request_with_addresses(
                    &advert.peer,
                    envelope,
                    vec![advert.p2p.clone()],
                );
                self.outbound.insert(id, (rpc, self.current_trace));
                if !self.contacts.contains_key(&advert.peer) {
                    self.remember(advert.peer, to, false);
                }
            }
            Transmit::Response { inbound, resp } => {
                let Some(channel) = self.inbound.remove(&inbound) else {
                    return;
                };
                if let Ok(body) = encode_response(&resp, self.max_message) {
                    let envelope = Envelope {
                        advert: self.me_bytes.clone(),
                        trace: None,
                        load: (self.load)(),
                        body,
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .dht
                        .send_response(channel, envelope);
                }
            }
        }
    }

    fn on_dht_event(&mut self, e: Event) {
        match e {
            Event::GetDone { query, result, .. } => {
                if let Some(reply) = self.gets.remove(&query) {
                    let _ = reply.send(result);
                }
            }
            Event::PutDone { query, result, .. } => {
                if let Some(reply) = self.puts.remove(&query) {
                    let _ = reply.send(result.is_ok());
                }
            }
            Event::BootstrapDone { known, .. } => {
                tracing::info!(known, "bootstrap done");
            }
            Event::ClusterChanged {
                level,
                cluster,
                members,
            } => {
                tracing::info!(level = level.0, cluster = %format!("{:x}", cluster.0), members, "joined cluster");
            }
            Event::GetProgress { .. } => {}
        }
    }

    fn on_command(&mut self, c: Command) {
        let t = now();
        match c {
            Command::Get { key, trace, reply } => {
                self.current_trace = trace;
                let q = self.dht.get(t, key);
                self.gets.insert(q, reply);
                self.flush();
                self.current_trace = None;
            }
            Command::Put {
                key,
                trace,
                pending,
                ttl,
                reply,
            } => {
                let value = dht::Value {
                    holder: self.dht.contact().clone(),
                    pending,
                };
                self.current_trace = trace;
                let q = self.dht.put(t, key, value, ttl);
                if let Some(reply) = reply {
                    self.puts.insert(q, reply);
                }
                self.flush();
                self.current_trace = None;
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status(t));
            }
            Command::Publish { data } => {
                let topic = self.purge_topic.clone();
                if let Err(e) = self.swarm.behaviour_mut().gossip.publish(topic, data) {
                    // Alone in the network (or no peer subscribed yet): nobody to tell.
                    tracing::debug!(error = %e, "could not flood a purge");
                }
            }
            Command::Verdict { ticket, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&ticket.id, &ticket.from, acceptance);
            }
        }
    }

    /// A purge from the gossip: handed to the proxy to check (refused at once if its queue
    /// is full: nothing unchecked is passed on).
    fn on_gossip(&mut self, e: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = e
        else {
            return;
        };
        let ticket = PurgeTicket {
            id: message_id,
            from: propagation_source,
        };
        let queued = match &self.purges {
            Some(tx) if message.topic == self.purge_topic.hash() => tx
                .try_send(InboundPurge {
                    data: message.data,
                    ticket: ticket.clone(),
                })
                .is_ok(),
            _ => false,
        };
        if !queued {
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(
                    &ticket.id,
                    &ticket.from,
                    gossipsub::MessageAcceptance::Ignore,
                );
        }
    }

    fn status(&self, t: Instant) -> OverlayStatus {
        let snapshot = self.dht.snapshot(t);
        let mut peers: Vec<PeerInfo> = Vec::new();
        for level in &snapshot.levels {
            for (_, bucket) in &level.buckets {
                for p in bucket {
                    if level.level.0 == 0
                        && let Ok(a) = Advert::of(&p.contact)
                    {
                        let heard = self.contacts.get(&a.peer).map(|(_, at)| *at);
                        peers.push(PeerInfo {
                            peer: a.peer.to_string(),
                            p2p: a.p2p.to_string(),
                            http: a.http,
                            rtt_ms: p.min_rtt.map(|d| d.as_secs_f64() * 1e3),
                            heard_secs_ago: heard
                                .map(|at| t.saturating_duration_since(at).as_secs_f64()),
                            withdrawn: self.peer_load.get(&a.peer).is_some_and(|l| l.withdrawn),
                            spare: self
                                .peer_load
                                .get(&a.peer)
                                .map_or(1.0, |l| f64::from(l.spare)),
                        });
                    }
                }
            }
        }
        OverlayStatus {
            connected: self.swarm.connected_peers().count(),
            peers,
            snapshot,
            stats: self.dht.stats(t),
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Dht(e)) => self.on_rr(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                self.heard(&peer);
                if let Some((c, _)) = self.contacts.get(&peer) {
                    self.dht.handle_rtt(now(), c, rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) => {
                // A connection whose pings go unanswered is stalled (a partition: TCP keeps
                // it open and backs its retransmissions off for minutes). Closing it makes
                // the next request dial afresh instead of queueing behind the stall, which is
                // what lets the overlay heal as soon as the network does. (libp2p reports a
                // ping failure only after the second in a row: a stall is closed 35 to 50 s
                // after it starts, with a 15 s interval and a 10 s timeout.) Other failures
                // (an I/O error on the connection, no ping protocol) mean a broken
                // connection or peer just the same.
                tracing::debug!(%peer, %error, "pings failed: closing the connection");
                self.counters
                    .stalled_connections
                    .fetch_add(1, Ordering::Relaxed);
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(_) | BehaviourEvent::Stream(())) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } => {
                self.counters.connections.fetch_add(1, Ordering::Relaxed);
                if let Some(addr) = self.bootstrap_dials.remove(&connection_id) {
                    let contact = Advert {
                        peer: peer_id,
                        p2p: addr,
                        http: None,
                    }
                    .contact();
                    self.remember(peer_id, contact.clone(), true);
                    self.dht.bootstrap(now(), vec![contact]);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // After TCP accepted: a peer with another secret or version, or garbage.
                self.counters
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%send_back_addr, %error, "inbound connection failed its handshake (another network secret or protocol version?)");
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                self.bootstrap_dials.remove(&connection_id);
                self.counters.dial_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer_id, %error, "outbound connection failed (unreachable, or another network secret or protocol version)");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::debug!(%address, "overlay listening");
            }
            _ => {}
        }
    }

    fn on_rr(&mut self, e: request_response::Event<Envelope, Envelope>) {
        let t = now();
        match e {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let advert = match Advert::decode(&request.advert) {
                        Ok(a) if a.peer == peer => a,
                        _ => {
                            self.counters
                                .rejected_messages
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "DHT request with a missing or foreign advert");
                            return;
                        }
                    };
                    let req = match decode_request(&request.body, self.max_message) {
                        Ok(r) => r,
                        Err(e) => {
                            self.counters
                                .rejected_messages
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "undecodable DHT request");
                            return;
                        }
                    };
                    if let Some(trace) = &request.trace {
                        tracing::debug!(%peer, trace = %crate::hex::encode(trace), kind = kind_of(&req.body), "DHT request for a traced client request");
                    }
                    self.note_load(peer, request.load);
                    let from = advert.contact();
                    self.remember(peer, from.clone(), true);
                    let inbound = InboundId(self.next_inbound);
                    self.next_inbound += 1;
                    self.inbound.insert(inbound, channel);
                    self.dht
                        .handle_input(t, Input::Request { from, inbound, req });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some((rpc, trace)) = self.outbound.remove(&request_id) else {
                        return;
                    };
                    // The answerer's own advert replaces whatever address we had for it.
                    self.note_load(peer, response.load);
                    if let Ok(advert) = Advert::decode(&response.advert)
                        && advert.peer == peer
                    {
                        let contact = advert.contact();
                        self.dht.handle_contact(&contact);
                        self.remember(peer, contact, true);
                    }
                    match decode_response(&response.body, self.max_message) {
                        Ok(resp) => {
                            self.current_trace = trace;
                            self.dht.handle_input(t, Input::Response { rpc, resp });
                            self.flush();
                            self.current_trace = None;
                        }
                        Err(e) => {
                            self.counters
                                .rejected_messages
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "undecodable DHT response");
                            self.dht.handle_input(t, Input::Failed { rpc });
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((rpc, trace)) = self.outbound.remove(&request_id) {
                    tracing::trace!(%error, "DHT request failed");
                    self.current_trace = trace;
                    // A connection that closed or timed out under the request may be stale
                    // (a retry dials afresh), and a dial may fail while the network is just
                    // coming back (the kernel answers 'host unreachable' from its neighbour
                    // cache for a while after a link returns): both are retried. A peer
                    // without our protocol will not do better.
                    let input = match error {
                        request_response::OutboundFailure::UnsupportedProtocols => {
                            Input::Failed { rpc }
                        }
                        _ => Input::SendFailed { rpc },
                    };
                    self.dht.handle_input(t, input);
                    self.flush();
                    self.current_trace = None;
                }
            }
            request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }
}
