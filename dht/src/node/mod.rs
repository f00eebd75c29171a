//! The DHT participant: every input, command and output goes through [`Node`].

mod drive;
mod locality;
mod maintain;
mod serve;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cluster::Clustering;
use crate::config::{Config, ConfigError};
use crate::id::{Contact, Key, NodeId};
use crate::io::{Event, Input, QueryId, RpcId, Transmit};
use crate::query::Query;
use crate::routing::{Insert, RoutingTable};
use crate::rpc::{Purpose, Rpcs};
use crate::stats::{LevelSnapshot, PeerSnapshot, Snapshot, Stats};
use crate::store::{Limits, Store};
use crate::wire::{Level, Request, RequestBody, Response, Value};

/// One DHT participant.
///
/// Methods come in three kinds:
/// - `handle_*`: feed an input (a message, a failed send, an RTT sample, the passage of time).
/// - commands: [`get`](Node::get), [`put`](Node::put), [`bootstrap`](Node::bootstrap); each
///   returns a [`QueryId`] and finishes as an [`Event`] carrying it.
/// - `poll_*`: take the outputs. After any `handle_*` or command, drain
///   [`poll_transmit`](Node::poll_transmit) until `None`, then [`poll_event`](Node::poll_event),
///   then read [`poll_timeout`](Node::poll_timeout) and call
///   [`handle_timeout`](Node::handle_timeout) when it passes.
///
/// `now` must never go backwards between calls. The node never reads a clock itself.
#[derive(Debug)]
pub struct Node {
    config: Config,
    me: Contact,
    /// The only randomness: cluster IDs and refresh targets.
    rng: ChaCha8Rng,
    /// `tables[level]`: members of our cluster at that level.
    tables: Vec<RoutingTable>,
    /// `stores[level]`: values put at that level (a level-2 get must find level-2 holders,
    /// which are near, not any holder).
    stores: Vec<Store>,
    clusters: Clustering,
    /// Cluster size estimates per level above 0, refreshed on each cluster check; sent in every
    /// header, so not recomputed per message.
    sizes: Vec<u32>,
    rpcs: Rpcs,
    /// Boxed: a query leaves the map while it takes a step (it needs the node too), and
    /// moving a pointer is cheaper than moving the query with its candidate lists.
    queries: BTreeMap<QueryId, Box<Query>>,
    next_query: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Periodic work; `None` until the first call that brings a `now`.
    timers: Option<Timers>,
    locality: locality::Locality,
    stats: Stats,
}

#[derive(Clone, Copy, Debug)]
struct Timers {
    cluster_check: Instant,
    /// Current interval between cluster checks (backs off while nothing changes).
    cluster_every: Duration,
    refresh: Instant,
}

impl Node {
    /// A node that knows nobody yet; call [`bootstrap`](Node::bootstrap) to join.
    pub fn new(config: Config, me: Contact) -> Result<Self, ConfigError> {
        config.validate()?;
        // Mixed with the node's ID: nodes sharing a configured seed (the default 0) must still
        // draw different cluster IDs and refresh targets.
        let mut material = config.rng_seed.to_be_bytes().to_vec();
        material.extend_from_slice(me.id.as_bytes());
        let mut rng = ChaCha8Rng::from_seed(NodeId::hash(&material).0);
        let levels = config.levels();
        let limits = Limits {
            sloppy: config.sloppy,
            values_per_key: config.values_per_key,
            loaded_threshold: config.loaded_threshold,
            loaded_window: config.loaded_window,
            min_ttl: config.min_ttl,
            max_ttl: config.max_ttl,
            max_keys: config.max_keys,
        };
        // The peer table's hash key: from the same material, without drawing from the RNG.
        material.extend_from_slice(b"peer table");
        let mut hash_key = [0u8; 8];
        hash_key.copy_from_slice(&NodeId::hash(&material).0[..8]);
        let clusters = Clustering::new(&config, &mut rng, u64::from_be_bytes(hash_key));
        Ok(Node {
            tables: (0..levels)
                .map(|_| {
                    RoutingTable::new(
                        me.id,
                        config.k,
                        config.replacement_cache_size,
                        config.liveness_check_after,
                    )
                })
                .collect(),
            stores: (0..levels).map(|_| Store::new(limits)).collect(),
            sizes: vec![1; levels - 1],
            clusters,
            rng,
            rpcs: Rpcs::default(),
            queries: BTreeMap::new(),
            next_query: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: None,
            locality: Default::default(),
            stats: Stats::default(),
            config,
            me,
        })
    }

    /// This node's contact.
    pub fn contact(&self) -> &Contact {
        &self.me
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Feeds a message or a transport failure.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.arrive(now);
        match input {
            Input::Request { from, inbound, req } => self.on_request(now, from, inbound, req),
            Input::Response { rpc, resp } => self.on_response(now, rpc, resp),
            Input::SendFailed { rpc } => {
                self.stats.send_failures += 1;
                self.retry_or_fail(now, rpc);
            }
            Input::Failed { rpc } => {
                self.stats.send_failures += 1;
                if let Some(out) = self.rpcs.finish(rpc) {
                    self.on_rpc_failed(now, rpc, out);
                }
            }
        }
    }

    /// The transport measured a round trip to `peer` (e.g. a libp2p ping). Drives clustering.
    /// RTTs of the node's own requests are measured too, from `poll_transmit` to the answer,
    /// so a driver that dials on the first request should also report pings: the minimum
    /// over all samples is what counts.
    pub fn handle_rtt(&mut self, now: Instant, peer: &Contact, rtt: Duration) {
        self.arrive(now);
        if peer.id != self.me.id {
            self.clusters.observe_rtt(now, peer, rtt);
        }
    }

    /// The transport learned from the peer itself (an authenticated connection) the address
    /// it advertises: replaces the address held for its ID in every routing table. It adds
    /// nobody, so a driver may call it on every message. Returns whether any table held it.
    pub fn handle_contact(&mut self, contact: &Contact) -> bool {
        if contact.id == self.me.id {
            return false;
        }
        let mut held = false;
        for table in &mut self.tables {
            held |= table.readdress(contact);
        }
        held
    }

    /// Lets time pass: request timeouts, query deadlines, cluster checks, refreshes, expiry.
    /// Spurious calls are harmless: nothing that is not yet due fires.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.arrive(now);
        self.on_timeout(now);
    }

    /// Joins the network through `contacts`: a lookup of the node's own ID at level 0.
    pub fn bootstrap(&mut self, now: Instant, contacts: Vec<Contact>) -> QueryId {
        self.arrive(now);
        self.start_lookup(now, Level::GLOBAL, Key::from(self.me.id), contacts, true)
    }

    /// Finds holders of `key` other than this node: level by level from the most local,
    /// stopping at the first node with values. Ends with [`Event::GetDone`].
    pub fn get(&mut self, now: Instant, key: Key) -> QueryId {
        self.arrive(now);
        let id = self.next_query_id();
        self.start_get(now, id, key, self.top_level());
        id
    }

    /// Announces `value` under `key` for `ttl` at every level (sloppily). Ends with
    /// [`Event::PutDone`]. `value.holder` is this node: a probe asks whether a node would
    /// take a value of the requester, and a renewal is refreshed in place only at nodes that
    /// know the holder as the requester.
    pub fn put(&mut self, now: Instant, key: Key, value: Value, ttl: Duration) -> QueryId {
        self.arrive(now);
        let id = self.next_query_id();
        self.start_put(now, id, (key, value, ttl), self.top_level());
        id
    }

    /// The next message to deliver.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next outcome.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Node::handle_timeout) next. May change after any
    /// `handle_*` or command.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers?;
        let queries = self.queries.values().map(|q| q.deadline).min();
        [
            Some(timers.cluster_check),
            Some(timers.refresh),
            self.rpcs.next_deadline(),
            queries,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Counters since start, and current sizes.
    pub fn stats(&self, now: Instant) -> Stats {
        let mut s = self.stats.clone();
        s.values_stored = self.stores.iter().map(Store::value_count).sum();
        s.keys_stored = self.stores.iter().map(Store::key_count).sum();
        s.keys_loaded = self.stores.iter().map(|st| st.loaded_key_count(now)).sum();
        s.peers_known = self.clusters.peer_count();
        s.routing_peers = self.tables[0].len();
        s.rpcs_in_flight = self.rpcs.len();
        s.queries_running = self.queries.len();
        s
    }

    /// Clusters and routing tables as they are now.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let levels = (0..self.config.levels())
            .map(|l| {
                let level = Level(l as u8);
                let table = &self.tables[l];
                LevelSnapshot {
                    level,
                    threshold: self.config.threshold(l),
                    cluster: self.clusters.own_id(level),
                    cluster_age: self.clusters.own_age(level, now),
                    size_estimate: l
                        .checked_sub(1)
                        .and_then(|i| self.sizes.get(i).copied())
                        .unwrap_or_else(|| table.estimate_size()),
                    buckets: table
                        .buckets()
                        .map(|(i, entries)| {
                            let peers = entries
                                .iter()
                                .map(|e| PeerSnapshot {
                                    contact: e.contact.clone(),
                                    min_rtt: self.clusters.min_rtt(&e.contact.id),
                                })
                                .collect();
                            (i, peers)
                        })
                        .collect(),
                    keys: self.stores[l].key_count(),
                    values: self.stores[l].value_count(),
                }
            })
            .collect();
        Snapshot {
            id: self.me.id,
            levels,
        }
    }

    /// The first call with a `now` starts the periodic work.
    fn arrive(&mut self, now: Instant) {
        if self.timers.is_none() {
            self.clusters.start(now);
            self.timers = Some(Timers {
                cluster_check: now + self.config.cluster_check_interval,
                cluster_every: self.config.cluster_check_interval,
                refresh: now + self.config.bucket_refresh_interval,
            });
        }
    }

    fn next_query_id(&mut self) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        self.stats.queries_started += 1;
        id
    }

    fn levels(&self) -> impl DoubleEndedIterator<Item = Level> + use<> {
        (0..self.config.levels() as u8).map(Level)
    }

    fn header(&self, now: Instant) -> crate::wire::Header {
        self.clusters.header(now, &self.sizes)
    }

    fn send_request(
        &mut self,
        now: Instant,
        to: Contact,
        body: RequestBody,
        purpose: Purpose,
    ) -> RpcId {
        let req = Request {
            header: self.header(now),
            body,
        };
        self.stats.requests_out.count(&req.body);
        let rpc = self.rpcs.start(
            now,
            self.config.rpc_timeout,
            to.clone(),
            req.clone(),
            purpose,
        );
        self.transmits.push_back(Transmit::Request { to, rpc, req });
        rpc
    }

    /// `contact` proved alive (it asked or answered something): refresh it in the table of
    /// every level whose cluster it shares with us (`shared`, a bit per level, as
    /// `Clustering::shared_levels` gives it), and drop it from those it left.
    fn saw(&mut self, now: Instant, contact: &Contact, shared: u32) {
        if contact.id == self.me.id {
            return;
        }
        let alone = self.tables[0].is_empty();
        for level in self.levels() {
            let table = &mut self.tables[level.index()];
            if shared & (1 << level.index()) != 0 {
                if let Some(Insert::PingOldest(oldest)) = table.insert(contact, now) {
                    self.send_request(
                        now,
                        oldest,
                        RequestBody::Ping,
                        Purpose::BucketPing { level },
                    );
                }
            } else if table.contains(&contact.id) {
                table.remove(&contact.id);
            }
        }
        if alone && !self.tables[0].is_empty() && !self.joining() {
            // The first contact after knowing no one (a start, or the end of a partition
            // that emptied the table): look ourselves up through it, as a bootstrap does, so
            // we learn the rest of the network and its nodes learn of us again. Without this
            // a node rejoined by one peer's message would route through that peer alone
            // until its next refresh.
            self.stats.rejoins += 1;
            self.start_lookup(now, Level::GLOBAL, Key::from(self.me.id), Vec::new(), false);
        }
    }

    /// Whether a level-0 lookup of our own ID (a bootstrap, a rejoin or a refresh) is
    /// running: a driver need not start another join meanwhile.
    pub fn joining(&self) -> bool {
        let me = Key::from(self.me.id);
        self.queries.values().any(|q| {
            q.key == me
                && matches!(q.kind, crate::query::Kind::Lookup { level, .. } if level == Level::GLOBAL)
        })
    }

    fn on_request(
        &mut self,
        now: Instant,
        from: Contact,
        inbound: crate::io::InboundId,
        req: Request,
    ) {
        self.stats.requests_in.count(&req.body);
        // Only level 0 is shared with ourselves: we are not in our own peer table.
        let mut shared = 1;
        if from.id != self.me.id {
            shared = self.clusters.observe_header(now, &from, &req.header);
            self.saw(now, &from, shared);
        }
        let body = self.serve(now, &from.id, shared, req.body);
        let resp = Response {
            header: self.header(now),
            body,
        };
        self.stats.responses_out += 1;
        self.transmits
            .push_back(Transmit::Response { inbound, resp });
    }
}
