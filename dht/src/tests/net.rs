//! A small network of real [`Node`]s in virtual time, for scenario tests: a latency function,
//! message loss, crashed nodes, and every message round-tripped through the wire format.
//!
//! The shape of quinn's `Pair` grown to many nodes; `sim` is the full-size version of this.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::wire::{decode_request, decode_response, encode_request, encode_response};
use crate::{Config, Contact, Event, InboundId, Input, Node, NodeId, RpcId, Transmit};

pub(crate) type Latency = Box<dyn Fn(usize, usize) -> Duration>;

#[derive(Debug)]
enum What {
    Deliver(Box<Input>),
    Wake,
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    host: usize,
    what: What,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub(crate) struct Net {
    pub(crate) epoch: Instant,
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<Node>,
    pub(crate) up: Vec<bool>,
    /// Events each node reported, in order.
    pub(crate) events: Vec<Vec<Event>>,
    latency: Latency,
    loss: f64,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    next_wake: Vec<Option<Instant>>,
    /// (server, inbound) -> (client, rpc), so a response finds its way back.
    inbound: BTreeMap<(usize, InboundId), (usize, RpcId)>,
    next_inbound: u64,
    /// SHA-256 over every delivery (time, host, message bytes): equal traces, equal hashes.
    trace: ring::digest::Context,
    max_message: usize,
}

pub(crate) fn addr(host: usize) -> Vec<u8> {
    (host as u32).to_be_bytes().to_vec()
}

fn host_of(c: &Contact) -> Option<usize> {
    let b: [u8; 4] = c.addr.as_bytes().try_into().ok()?;
    Some(u32::from_be_bytes(b) as usize)
}

impl Net {
    /// `n` nodes with IDs and seeds derived from `seed`; none knows another yet.
    pub(crate) fn new(n: usize, seed: u64, config: &Config, latency: Latency) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                rng.fill_bytes(&mut id);
                let config = Config {
                    rng_seed: rng.next_u64(),
                    ..config.clone()
                };
                Node::new(config, Contact::new(NodeId(id), addr(i))).expect("valid config")
            })
            .collect();
        let epoch = crate::test_clock::epoch();
        Net {
            epoch,
            now: epoch,
            nodes,
            up: vec![true; n],
            events: (0..n).map(|_| Vec::new()).collect(),
            latency,
            loss: 0.0,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            next_wake: vec![None; n],
            inbound: BTreeMap::new(),
            next_inbound: 0,
            trace: ring::digest::Context::new(&ring::digest::SHA256),
            max_message: config.max_message_size,
        }
    }

    pub(crate) fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    pub(crate) fn contact(&self, i: usize) -> Contact {
        self.nodes[i].contact().clone()
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    fn schedule(&mut self, at: Instant, host: usize, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            host,
            what,
        }));
    }

    /// Lets node `i` act now (a command was issued): collects its outputs.
    pub(crate) fn with<T>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.nodes[i], now);
        self.drain(i);
        out
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss)
    }

    fn drain(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            match t {
                Transmit::Request { to, rpc, req } => {
                    let bytes = encode_request(&req, self.max_message).expect("encodable");
                    let Some(j) = host_of(&to) else { continue };
                    if j >= self.nodes.len() || !self.up[j] || self.lost() {
                        continue; // the requester times out
                    }
                    let req = decode_request(&bytes, self.max_message).expect("decodable");
                    let inbound = InboundId(self.next_inbound);
                    self.next_inbound += 1;
                    self.inbound.insert((j, inbound), (i, rpc));
                    let at = self.now + (self.latency)(i, j) / 2;
                    let from = self.contact(i);
                    self.schedule(
                        at,
                        j,
                        What::Deliver(Box::new(Input::Request { from, inbound, req })),
                    );
                }
                Transmit::Response { inbound, resp } => {
                    let bytes = encode_response(&resp, self.max_message).expect("encodable");
                    let Some((client, rpc)) = self.inbound.remove(&(i, inbound)) else {
                        continue;
                    };
                    if !self.up[client] || self.lost() {
                        continue;
                    }
                    let resp = decode_response(&bytes, self.max_message).expect("decodable");
                    let at = self.now + (self.latency)(i, client) / 2;
                    self.schedule(
                        at,
                        client,
                        What::Deliver(Box::new(Input::Response { rpc, resp })),
                    );
                }
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
        if let Some(wake) = self.nodes[i].poll_timeout()
            && self.next_wake[i].is_none_or(|w| wake < w || w <= self.now)
        {
            self.next_wake[i] = Some(wake);
            self.schedule(wake.max(self.now), i, What::Wake);
        }
    }

    /// Runs one event; false when nothing is scheduled before `until`.
    fn step(&mut self, until: Instant) -> bool {
        let Some(Reverse(next)) = self.queue.peek() else {
            return false;
        };
        if next.at > until {
            return false;
        }
        let Some(Reverse(ev)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(ev.at);
        let i = ev.host;
        if !self.up[i] {
            return true;
        }
        let now = self.now;
        self.trace
            .update(&(now - self.epoch).as_nanos().to_be_bytes());
        self.trace.update(&(i as u64).to_be_bytes());
        match ev.what {
            What::Deliver(input) => {
                let tag = match input.as_ref() {
                    Input::Request { req, .. } => encode_request(req, self.max_message).ok(),
                    Input::Response { resp, .. } => encode_response(resp, self.max_message).ok(),
                    Input::SendFailed { .. } | Input::Failed { .. } => None,
                };
                self.trace.update(&tag.unwrap_or_default());
                self.nodes[i].handle_input(now, *input);
            }
            What::Wake => {
                if self.next_wake[i].is_some_and(|w| w <= now) {
                    self.next_wake[i] = None;
                }
                self.nodes[i].handle_timeout(now);
            }
        }
        self.drain(i);
        true
    }

    /// Runs for `d` of virtual time.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
        self.now = until;
    }

    /// Runs until `pred` holds for the events so far, or `limit` passes. Returns whether it held.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&Net) -> bool,
    ) -> bool {
        let until = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step(until) {
                self.now = until;
                return pred(self);
            }
        }
    }

    pub(crate) fn crash(&mut self, i: usize) {
        self.up[i] = false;
    }

    pub(crate) fn trace_hash(&self) -> Vec<u8> {
        self.trace.clone().finish().as_ref().to_vec()
    }

    /// Node `j` bootstraps from node `via`.
    pub(crate) fn bootstrap(&mut self, j: usize, via: usize) {
        let c = self.contact(via);
        self.with(j, |n, now| n.bootstrap(now, vec![c]));
    }
}
