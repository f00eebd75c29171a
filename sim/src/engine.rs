//! The discrete-event core: hosts (a real `dht::Node` and a modelled proxy each), one event
//! queue in virtual time, one seed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dht::{Addr, Contact, Event, InboundId, Input, Key, NodeId, QueryId, RpcId, Transmit};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::latency::LatencyModel;
use crate::metrics::{Metrics, Source};
use crate::proxy::{Origin, Proxy};
use crate::queue::{EventQueue, Micros};
use crate::scenario::Scenario;

/// The overlay design under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// Coral's hierarchical sloppy DSHT (reef's design).
    Coral,
    /// One level, classic Kademlia storage at the k closest nodes.
    Flat,
    /// No cooperation: every proxy goes to the origin on a miss.
    None,
}

impl Variant {
    /// Every variant, in report order.
    pub const ALL: [Variant; 3] = [Variant::Coral, Variant::Flat, Variant::None];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Coral => "coral",
            Variant::Flat => "flat",
            Variant::None => "none",
        }
    }

    /// The DHT configuration its nodes run, `None` for no DHT at all.
    pub fn dht_config(self) -> Option<dht::Config> {
        let base = dht::Config {
            // Compact per-node state: thousands of nodes share one process.
            peer_info_capacity: 128,
            ..dht::Config::default()
        };
        match self {
            Variant::Coral => Some(base),
            Variant::Flat => Some(dht::Config {
                sloppy: false,
                level_rtt_thresholds: Vec::new(),
                values_per_key: 20,
                ..base
            }),
            Variant::None => None,
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown variant {s:?} (coral, flat or none)"))
    }
}

/// Something that happens at a point of virtual time.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A message reaches a host (if it is still the same incarnation).
    Deliver {
        host: u32,
        incarnation: u8,
        input: Box<Input>,
    },
    /// A host's DHT asked to be woken.
    Wake { host: u32 },
    /// A host starts and joins the overlay.
    Join { host: u32 },
    /// The rate workload's generator: draws the requests of its next span, due from one
    /// lookahead later (so that no host has run past them, see `window.rs`), and its own
    /// next firing.
    Arrival,
    /// A request of the rate workload reaches a proxy.
    Request { proxy: u32, object: u32 },
    /// Gets and puts a host's DHT finished during a parallel window, handed to the proxy
    /// logic at the time they finished (if the host is still that incarnation).
    Outcome {
        host: u32,
        incarnation: u8,
        events: Vec<Event>,
    },
    /// A per-proxy client's next request.
    Client { proxy: u32 },
    /// An object finished arriving at a proxy.
    Arrived {
        proxy: u32,
        incarnation: u8,
        object: u32,
        source: Source,
    },
    /// A request reached the origin.
    OriginStart {
        proxy: u32,
        incarnation: u8,
        object: u32,
    },
    /// The origin may have finished transfers (only the latest generation acts).
    OriginTick { generation: u64 },
    /// Renew a pending announcement while an origin fetch lasts (of that incarnation).
    Renew {
        proxy: u32,
        incarnation: u8,
        object: u32,
    },
    /// A proxy waited on a peer that died: fetch from the origin instead.
    Fallback { proxy: u32, object: u32 },
    /// Churn: a host fails, or comes back.
    Crash { host: u32 },
    /// See `Crash`.
    Restart { host: u32 },
    /// The two halves lose (true) or regain (false) each other.
    Partition(bool),
    /// Rollout: a host switches to the new network secret.
    Rekey { host: u32 },
}

/// What an event touches, which decides how it runs in a parallel window (`window.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A message or a timer of one host's DHT: runs beside other hosts' in a window.
    Dht(u32),
    /// Proxy logic at one host (it may command that host's DHT): the host stops short of it,
    /// and it runs alone, after the window, in time order.
    Host(u32),
    /// Touches no host's DHT, and schedules nothing for a host sooner than the lookahead:
    /// runs alone after the window, in time order.
    Detached,
    /// Changes who can reach whom: a window ends before it.
    Barrier,
}

impl Ev {
    pub(crate) fn reach(&self) -> Reach {
        match *self {
            Ev::Deliver { host, .. } | Ev::Wake { host } => Reach::Dht(host),
            Ev::Join { host } | Ev::Outcome { host, .. } => Reach::Host(host),
            Ev::Client { proxy }
            | Ev::Request { proxy, .. }
            | Ev::Arrived { proxy, .. }
            | Ev::Renew { proxy, .. }
            | Ev::Fallback { proxy, .. } => Reach::Host(proxy),
            Ev::Arrival | Ev::OriginStart { .. } | Ev::OriginTick { .. } => Reach::Detached,
            Ev::Crash { .. } | Ev::Restart { .. } | Ev::Partition(_) | Ev::Rekey { .. } => {
                Reach::Barrier
            }
        }
    }
}

/// One simulated machine: a DHT node (when up and the variant has one) and a proxy.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) dht: Option<Box<dht::Node>>,
    pub(crate) up: bool,
    /// Bumped on every restart: messages and transfers meant for an earlier life are dropped.
    pub(crate) incarnation: u8,
    /// Network secret group: hosts of different groups cannot exchange messages at all.
    pub(crate) secret: u16,
    /// The earliest wake-up already queued, so timers are not queued twice.
    pub(crate) next_wake: Micros,
    pub(crate) proxy: Proxy,
}

/// A get in flight: for which object, since when, and whether any live proxy had it then.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) object: u32,
    pub(crate) started: Micros,
    pub(crate) available: bool,
    /// The second get of "announce, then confirm" (see `client.rs`).
    pub(crate) confirm: bool,
}

/// A run of one variant of one scenario. Same scenario, variant and seed: same run.
#[derive(Debug)]
pub struct Sim {
    pub(crate) sc: Scenario,
    pub(crate) variant: Variant,
    pub(crate) dht_config: Option<dht::Config>,
    /// The one real `Instant`; virtual time is `epoch + now` microseconds.
    pub(crate) epoch: Instant,
    pub(crate) now: Micros,
    pub(crate) queue: EventQueue<Ev>,
    /// The longest span a host runs in a parallel window: no message reaches a host sooner
    /// than `LatencyModel::min_one_way_to` it, at most this. Proxy logic schedules what it
    /// does at other hosts at least this far ahead. Zero runs every event alone.
    pub(crate) lookahead: Micros,
    /// Threads a window's hosts are shared among (the calling one included).
    workers: usize,
    /// Per host, its place among a window's runs (`window::NO_RUN` outside windows).
    pub(crate) run_of: Vec<u32>,
    /// Parallel windows run, and those shared among threads.
    pub(crate) windows: u64,
    pub(crate) shared_windows: u64,
    /// Independent streams, so every variant sees the same placement, workload and faults.
    pub(crate) rng_work: ChaCha8Rng,
    rng_net: ChaCha8Rng,
    pub(crate) rng_nodes: ChaCha8Rng,
    pub(crate) rng_faults: ChaCha8Rng,
    /// `nodes + 1` places: the last is the origin.
    pub(crate) latency: LatencyModel,
    pub(crate) hosts: Vec<Host>,
    pub(crate) ids: Vec<NodeId>,
    /// Every host's address: its index, 4 bytes big-endian (held in place by `Addr`, so
    /// copying a contact allocates nothing and counts no references).
    addrs: Vec<Addr>,
    pub(crate) keys: Vec<Key>,
    pub(crate) hot_key: Key,
    pub(crate) lookups: BTreeMap<(u32, QueryId), Lookup>,
    /// Pending announcements whose completion triggers the confirming get: (proxy, put) -> object.
    pub(crate) claims: BTreeMap<(u32, QueryId), u32>,
    pub(crate) origin: Origin,
    pub(crate) metrics: Metrics,
    /// Live proxies caching each object.
    pub(crate) holders: Vec<u32>,
    /// Hosts that have joined, in order (bootstrap contacts are drawn from them).
    pub(crate) joined: Vec<u32>,
    pub(crate) partitioned: bool,
    /// Which half of the world each host is in, for partitions.
    pub(crate) side: Vec<u8>,
    pub(crate) workload_start: Micros,
    pub(crate) workload_end: Micros,
    /// Round-trip every message through the wire format (slower; checks the codec at scale).
    wire: bool,
    pub(crate) events: u64,
    /// FNV-1a over (time, host, event kind) of every event: equal runs, equal hashes.
    trace: u64,
    pub(crate) zipf_cdf: Vec<f64>,
    /// When the rate workload's next request is due (`None`: no more).
    pub(crate) next_request: Option<Micros>,
    /// The time of the rate workload's last request drawn, in seconds since the workload
    /// started, unrounded.
    pub(crate) last_request_secs: f64,
}

/// Virtual time of `at` on a run's clock starting at `epoch`, rounded up: a wake-up never
/// lands before its deadline, or the node would be woken at the same instant forever.
pub(crate) fn micros_since(epoch: Instant, at: Instant) -> Micros {
    let d = at.saturating_duration_since(epoch);
    (d.as_micros() + u128::from(!d.subsec_nanos().is_multiple_of(1000))) as Micros
}

/// Hands a DHT message or timer (`Ev::Deliver`, `Ev::Wake`) to the host's node.
pub(crate) fn feed(node: &mut dht::Node, now: Instant, ev: Ev) {
    match ev {
        Ev::Deliver { input, .. } => node.handle_input(now, *input),
        _ => node.handle_timeout(now),
    }
}

pub(crate) fn secs(s: f64) -> Micros {
    (s.max(0.0) * 1e6) as Micros
}

impl Sim {
    /// Prepares a run; nothing happens until [`run`](Sim::run).
    pub fn new(sc: Scenario, variant: Variant, seed: u64) -> Sim {
        let stream =
            |k: u64| ChaCha8Rng::seed_from_u64(seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut rng_place = stream(1);
        let n = sc.nodes;
        let latency = LatencyModel::new(sc.latency.clone(), n + 1, &mut rng_place);
        let side = (0..n).map(|i| latency.side(i)).collect();
        let ids = (0..n)
            .map(|_| {
                let mut id = [0u8; 32];
                rng_place.fill_bytes(&mut id);
                NodeId(id)
            })
            .collect();
        let addrs = (0..n as u32)
            .map(|i| Addr::from(&i.to_be_bytes()[..]))
            .collect();
        let keys: Vec<Key> = (0..sc.objects)
            .map(|o| Key::from_url(&format!("http://site.example/object/{o}")))
            .collect();
        let zipf_cdf = match &sc.workload {
            crate::scenario::Workload::Rate {
                popularity: crate::scenario::Popularity::Zipf { s },
                ..
            } => {
                let mut acc = 0.0;
                (1..=sc.objects)
                    .map(|r| {
                        acc += 1.0 / (r as f64).powf(*s);
                        acc
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let hosts = (0..n)
            .map(|_| Host {
                dht: None,
                up: false,
                incarnation: 0,
                secret: 0,
                next_wake: Micros::MAX,
                proxy: Proxy::default(),
            })
            .collect();
        let workload_start = secs(sc.warmup_secs);
        let workload_end = workload_start + secs(sc.duration_secs);
        Sim {
            dht_config: variant.dht_config(),
            origin: Origin::new(sc.origin_uplink_bps, sc.origin_concurrency),
            metrics: Metrics {
                hot_key_load: vec![0; n],
                origin_fetches_per_object: vec![0; sc.objects],
                ..Metrics::default()
            },
            holders: vec![0; sc.objects],
            hot_key: keys.first().copied().unwrap_or(Key([0; 32])),
            keys,
            epoch: Instant::now(),
            now: 0,
            queue: EventQueue::new(),
            lookahead: latency.max_min_one_way(),
            workers: 1,
            run_of: vec![crate::window::NO_RUN; n],
            windows: 0,
            shared_windows: 0,
            rng_work: stream(2),
            rng_net: stream(3),
            rng_nodes: stream(4),
            rng_faults: stream(5),
            latency,
            hosts,
            ids,
            addrs,
            lookups: BTreeMap::new(),
            claims: BTreeMap::new(),
            joined: Vec::new(),
            partitioned: false,
            side,
            workload_start,
            workload_end,
            wire: false,
            events: 0,
            trace: 0xcbf2_9ce4_8422_2325,
            zipf_cdf,
            next_request: None,
            last_request_secs: 0.0,
            variant,
            sc,
        }
    }

    /// Shares each parallel window's hosts among `workers` threads (the caller's included).
    /// A run is the same, event for event, for any number.
    pub fn with_workers(mut self, workers: usize) -> Sim {
        self.workers = workers.max(1);
        self
    }

    /// Round-trips every message through `dht::wire` (slower; proves the codec at scale).
    pub fn with_wire(mut self, wire: bool) -> Sim {
        self.wire = wire;
        self
    }

    pub(crate) fn instant(&self, t: Micros) -> Instant {
        self.epoch + Duration::from_micros(t)
    }

    pub(crate) fn schedule(&mut self, at: Micros, ev: Ev) {
        // Never into the past: the queue would take it as now, and a message would arrive
        // late without a word (a window's merge once did this).
        debug_assert!(at >= self.queue.now(), "{at} < {}", self.queue.now());
        self.queue.push(at, ev);
    }

    pub(crate) fn contact(&self, host: u32) -> Contact {
        Contact {
            id: self.ids[host as usize],
            addr: self.addrs[host as usize].clone(),
        }
    }

    pub(crate) fn host_of(addr: &Addr) -> Option<u32> {
        let b: [u8; 4] = addr.as_bytes().try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// Workload time of `now`, if the workload has started.
    pub(crate) fn workload_time(&self) -> Option<Micros> {
        self.now.checked_sub(self.workload_start)
    }

    /// The variant this run simulates.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Hash of the event trace so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Virtual time now, and when the run ends.
    pub fn progress(&self) -> (Micros, Micros) {
        (self.now, self.workload_end)
    }

    /// Whether `a` can send to `b` now: both up, same secret, not cut apart.
    pub(crate) fn reachable(&self, a: u32, b: u32) -> bool {
        let (ha, hb) = (&self.hosts[a as usize], &self.hosts[b as usize]);
        ha.up
            && hb.up
            && ha.secret == hb.secret
            && !(self.partitioned && self.side[a as usize] != self.side[b as usize])
    }

    fn one_way(&mut self, a: u32, b: u32) -> Micros {
        let mut d = self.latency.rtt(a as usize, b as usize) / 2;
        if self.sc.jitter_ms > 0.0 {
            d += (self.rng_net.random_range(0.0..self.sc.jitter_ms) * 1000.0) as Micros;
        }
        d
    }

    fn lost(&mut self) -> bool {
        self.sc.loss > 0.0 && self.rng_net.random_bool(self.sc.loss)
    }

    /// Runs the scenario to its end, calling `progress` now and then with (now, end, events).
    /// Hosts' DHT messages and timers run in parallel windows (`window.rs`) when the latency
    /// model has a floor; everything else runs alone, in time order.
    pub fn run(&mut self, progress: &mut dyn FnMut(Micros, Micros, u64)) {
        self.schedule_start();
        let end = self.workload_end;
        // No DHT (the `none` variant), no windows: helpers would only spin.
        let windows = self.lookahead > 0 && self.dht_config.is_some();
        let helpers = if windows { self.workers - 1 } else { 0 };
        let epoch = self.epoch;
        std::thread::scope(|scope| {
            let pool = crate::window::Pool::start(scope, helpers, epoch);
            let mut last_report = 0u64;
            while let Some((at, ev)) = self.queue.peek() {
                if at > end {
                    break;
                }
                let windowed = match ev.reach() {
                    Reach::Dht(host) => self.latency.min_one_way_to(host as usize) > 0,
                    _ => false,
                };
                if windowed {
                    self.run_window(&pool, at, end);
                } else {
                    let Some((at, ev)) = self.queue.pop() else {
                        break;
                    };
                    self.now = at;
                    self.events += 1;
                    self.step(ev);
                }
                if self.events - last_report >= 200_000 {
                    last_report = self.events;
                    progress(self.now, end, self.events);
                }
            }
        });
        self.now = end;
        progress(end, end, self.events);
    }

    pub(crate) fn trace_event(&mut self, host: u32, kind: u8) {
        for b in self
            .now
            .to_le_bytes()
            .into_iter()
            .chain(host.to_le_bytes())
            .chain([kind])
        {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            ev @ (Ev::Deliver { host, .. } | Ev::Wake { host }) => {
                let Some(ev) = self.admit(host, ev) else {
                    return;
                };
                let now = self.instant(self.now);
                if let Some(dht) = self.hosts[host as usize].dht.as_mut() {
                    feed(dht, now, ev);
                }
                self.drain(host);
            }
            Ev::Join { host } => {
                self.trace_event(host, 2);
                self.join(host);
            }
            Ev::Arrival => {
                self.trace_event(u32::MAX, 3);
                self.on_arrival();
            }
            Ev::Request { proxy, object } => {
                self.trace_event(proxy, 14);
                self.request(proxy, object);
            }
            Ev::Outcome {
                host,
                incarnation,
                events,
            } => {
                self.trace_event(host, 15);
                if !self.is_live(host, incarnation) {
                    return;
                }
                for e in events {
                    self.on_dht_event(host, e);
                }
                self.drain(host);
            }
            Ev::Client { proxy } => {
                self.trace_event(proxy, 4);
                self.on_client(proxy);
            }
            Ev::Arrived {
                proxy,
                incarnation,
                object,
                source,
            } => {
                self.trace_event(proxy, 5);
                self.on_arrived(proxy, incarnation, object, source);
            }
            Ev::OriginStart {
                proxy,
                incarnation,
                object,
            } => {
                self.trace_event(proxy, 6);
                let now = self.now;
                self.origin
                    .start(now, proxy, incarnation, object, self.sc.object_bytes);
                self.schedule_origin_tick();
            }
            Ev::OriginTick { generation } => {
                if generation == self.origin.generation {
                    self.trace_event(u32::MAX, 7);
                    self.on_origin_tick();
                }
            }
            Ev::Renew {
                proxy,
                incarnation,
                object,
            } => {
                self.trace_event(proxy, 8);
                if self.hosts[proxy as usize].incarnation == incarnation {
                    self.on_renew(proxy, object);
                }
            }
            Ev::Fallback { proxy, object } => {
                self.trace_event(proxy, 9);
                self.on_fallback(proxy, object);
            }
            Ev::Crash { host } => {
                self.trace_event(host, 10);
                self.crash(host);
            }
            Ev::Restart { host } => {
                self.trace_event(host, 11);
                self.restart(host);
            }
            Ev::Partition(cut) => {
                self.trace_event(u32::MAX, 12);
                self.partitioned = cut;
            }
            Ev::Rekey { host } => {
                self.trace_event(host, 13);
                self.rekey(host);
            }
        }
    }

    pub(crate) fn count_hot_key(&mut self, host: u32, body: &dht::RequestBody) {
        if let Some(kind) = self.hot_key_kind(body) {
            self.metrics.hot_key_load[host as usize] += 1;
            self.metrics.hot_key_by_kind[kind] += 1;
        }
    }

    /// Takes back `count_hot_key` for a request that was handed back unrun.
    pub(crate) fn uncount_hot_key(&mut self, host: u32, body: &dht::RequestBody) {
        if let Some(kind) = self.hot_key_kind(body) {
            self.metrics.hot_key_load[host as usize] -= 1;
            self.metrics.hot_key_by_kind[kind] -= 1;
        }
    }

    /// Which kind of request for the hot key `body` is (get, put probe, store), if it is one.
    fn hot_key_kind(&self, body: &dht::RequestBody) -> Option<usize> {
        use dht::RequestBody as B;
        let (key, kind) = match body {
            B::Get { key, .. } => (key, 0),
            B::PutProbe { key, .. } => (key, 1),
            B::Store { key, .. } => (key, 2),
            B::Ping | B::FindNode { .. } => return None,
        };
        (*key == self.hot_key).then_some(kind)
    }

    pub(crate) fn schedule_origin_tick(&mut self) {
        if let Some(at) = self.origin.next_completion() {
            let generation = self.origin.generation;
            self.schedule(at.max(self.now), Ev::OriginTick { generation });
        }
    }

    /// Creates a host's DHT node (fresh state, same ID) and bootstraps it through a random
    /// live host of the same secret.
    pub(crate) fn start_node(&mut self, host: u32) {
        let h = &mut self.hosts[host as usize];
        h.up = true;
        h.next_wake = Micros::MAX;
        let Some(config) = self.dht_config.clone() else {
            return;
        };
        let config = dht::Config {
            rng_seed: self.rng_nodes.next_u64(),
            ..config
        };
        let me = self.contact(host);
        let Ok(mut node) = dht::Node::new(config, me) else {
            return;
        };
        let site = self.latency.site(host as usize);
        node.set_locality(vec![Key::hash(site.as_bytes())]);
        self.hosts[host as usize].dht = Some(Box::new(node));
        if let Some(via) = self.bootstrap_contact(host) {
            let contact = self.contact(via);
            let now = self.instant(self.now);
            if let Some(dht) = self.hosts[host as usize].dht.as_mut() {
                dht.bootstrap(now, vec![contact]);
            }
        }
        self.drain(host);
    }

    /// Another joined host that `host` (up) can reach, uniformly at random; `None` if there
    /// is none. Drawn by rejection: filtering every joined host at each join made the joins of
    /// a 100,000-node run quadratic (a tenth of its start-up). Uniform over the eligible
    /// either way; after `TRIES` misses (most hosts down or out of reach) it filters.
    fn bootstrap_contact(&mut self, host: u32) -> Option<u32> {
        const TRIES: usize = 64;
        let eligible = |sim: &Sim, j: u32| j != host && sim.reachable(host, j);
        if self.joined.is_empty() {
            return None;
        }
        for _ in 0..TRIES {
            let j = self.joined[self.rng_nodes.random_range(0..self.joined.len())];
            if eligible(self, j) {
                return Some(j);
            }
        }
        let candidates: Vec<u32> = (self.joined.iter().copied())
            .filter(|j| eligible(self, *j))
            .collect();
        (!candidates.is_empty())
            .then(|| candidates[self.rng_nodes.random_range(0..candidates.len())])
    }

    fn join(&mut self, host: u32) {
        self.start_node(host);
        self.joined.push(host);
    }

    /// Moves a host's outputs into the world: messages onto the network, events to the proxy
    /// logic, its next wake-up into the queue. Repeats while the proxy logic issues commands.
    pub(crate) fn drain(&mut self, host: u32) {
        loop {
            let mut transmits = Vec::new();
            let mut events = Vec::new();
            let wake;
            {
                let Some(dht) = self.hosts[host as usize].dht.as_mut() else {
                    return;
                };
                while let Some(t) = dht.poll_transmit() {
                    transmits.push(t);
                }
                while let Some(e) = dht.poll_event() {
                    events.push(e);
                }
                wake = dht.poll_timeout();
            }
            for t in transmits {
                self.send(host, t);
            }
            if let Some(w) = wake {
                self.queue_wake(host, w, self.now);
            }
            if events.is_empty() {
                return;
            }
            for e in events {
                self.on_dht_event(host, e);
            }
        }
    }

    /// Queues a wake-up of `host` for its DHT's next deadline (never before `last`, the time
    /// it last ran), unless an earlier one is queued; one that already ran (at or before
    /// `last`) no longer counts.
    pub(crate) fn queue_wake(&mut self, host: u32, deadline: Instant, last: Micros) {
        let w = micros_since(self.epoch, deadline).max(last);
        let h = &mut self.hosts[host as usize];
        if w < h.next_wake || h.next_wake <= last {
            h.next_wake = w;
            self.schedule(w, Ev::Wake { host });
        }
    }

    /// Whether `host` is up and still in the life `incarnation` (events meant for an
    /// earlier life are dropped).
    pub(crate) fn is_live(&self, host: u32, incarnation: u8) -> bool {
        let h = &self.hosts[host as usize];
        h.up && h.incarnation == incarnation
    }

    /// Puts a message on the network. It arrives one one-way delay later, and never sooner
    /// than the floor windows rely on (which only a host messaging itself would undercut).
    pub(crate) fn send(&mut self, from: u32, t: Transmit) {
        match t {
            Transmit::Request { to, rpc, req } => {
                let Some(dest) = Sim::host_of(&to.addr) else {
                    return;
                };
                self.metrics.messages += 1;
                if dest as usize >= self.hosts.len() || !self.reachable(from, dest) || self.lost() {
                    return; // the sender times out
                }
                let req = if self.wire {
                    self.round_trip_request(req)
                } else {
                    Some(req)
                };
                let Some(req) = req else { return };
                let inc = self.hosts[from as usize].incarnation;
                // The inbound handle carries the way back: (client, its incarnation, its rpc).
                let inbound = InboundId(
                    (u64::from(from) << 40) | (u64::from(inc) << 32) | (rpc.0 & 0xffff_ffff),
                );
                let floor = self.latency.min_one_way_to(dest as usize);
                let at = self.now + self.one_way(from, dest).max(floor);
                let input = Input::Request {
                    from: self.contact(from),
                    inbound,
                    req,
                };
                let incarnation = self.hosts[dest as usize].incarnation;
                self.schedule(
                    at,
                    Ev::Deliver {
                        host: dest,
                        incarnation,
                        input: Box::new(input),
                    },
                );
            }
            Transmit::Response { inbound, resp } => {
                let client = (inbound.0 >> 40) as u32;
                let incarnation = ((inbound.0 >> 32) & 0xff) as u8;
                let rpc = RpcId(inbound.0 & 0xffff_ffff);
                self.metrics.messages += 1;
                if client as usize >= self.hosts.len()
                    || !self.reachable(from, client)
                    || self.lost()
                {
                    return;
                }
                let resp = if self.wire {
                    self.round_trip_response(resp)
                } else {
                    Some(resp)
                };
                let Some(resp) = resp else { return };
                let floor = self.latency.min_one_way_to(client as usize);
                let at = self.now + self.one_way(from, client).max(floor);
                self.schedule(
                    at,
                    Ev::Deliver {
                        host: client,
                        incarnation,
                        input: Box::new(Input::Response { rpc, resp }),
                    },
                );
            }
        }
    }

    fn round_trip_request(&self, req: dht::Request) -> Option<dht::Request> {
        let max = self
            .dht_config
            .as_ref()
            .map_or(64 * 1024, |c| c.max_message_size);
        let bytes = dht::wire::encode_request(&req, max).ok()?;
        dht::wire::decode_request(&bytes, max).ok()
    }

    fn round_trip_response(&self, resp: dht::Response) -> Option<dht::Response> {
        let max = self
            .dht_config
            .as_ref()
            .map_or(64 * 1024, |c| c.max_message_size);
        let bytes = dht::wire::encode_response(&resp, max).ok()?;
        dht::wire::decode_response(&bytes, max).ok()
    }

    fn on_dht_event(&mut self, host: u32, e: Event) {
        match e {
            Event::GetDone { query, result, .. } => self.on_get_done(host, query, result),
            Event::PutDone { query, .. } => self.on_put_done(host, query),
            _ => {}
        }
    }

    /// Schedules joins, the workload and the faults.
    fn schedule_start(&mut self) {
        let n = self.hosts.len() as u32;
        let join = secs(self.sc.join_secs);
        for host in 0..n {
            let at = join * u64::from(host) / u64::from(n.max(1));
            self.schedule(at, Ev::Join { host });
        }
        self.schedule_workload();
        self.schedule_faults();
    }

    /// DHT requests sent by the live nodes, by kind, and their cluster moves (all levels:
    /// each rebuilds a routing table and looks the node up in its new cluster, so they weigh
    /// on the FIND_NODE count). One pass: every node's stats are gathered once.
    pub fn dht_totals(&self) -> (crate::metrics::DhtRequests, u64) {
        let now = self.instant(self.now);
        let mut r = crate::metrics::DhtRequests::default();
        let mut moves = 0;
        for dht in self.hosts.iter().filter_map(|h| h.dht.as_ref()) {
            let stats = dht.stats(now);
            let s = stats.requests_out;
            r.ping += s.ping;
            r.find_node += s.find_node;
            r.get += s.get;
            r.put_probe += s.put_probe;
            r.store += s.store;
            moves += stats.cluster_changes;
        }
        (r, moves)
    }

    /// Per level (index 0 = level 0), over the live nodes: how many distinct clusters, and
    /// how many nodes are alone in theirs (a node alone at a level finds nothing there, and
    /// its lookups fall through to the wider levels).
    pub fn cluster_census(&self) -> (Vec<usize>, Vec<usize>) {
        let now = self.instant(self.now);
        let mut per_level: Vec<std::collections::BTreeMap<u64, usize>> = Vec::new();
        for h in self.hosts.iter().filter(|h| h.up) {
            let Some(dht) = h.dht.as_ref() else { continue };
            for (i, l) in dht.snapshot(now).levels.iter().enumerate() {
                if per_level.len() <= i {
                    per_level.resize_with(i + 1, Default::default);
                }
                *per_level[i].entry(l.cluster.0).or_default() += 1;
            }
        }
        let clusters = per_level.iter().map(|m| m.len()).collect();
        let alone = per_level
            .iter()
            .map(|m| m.values().filter(|n| **n == 1).count())
            .collect();
        (clusters, alone)
    }

    /// What the run measured, with the overlay's state at its end (clusters, requests sent).
    pub fn report(&mut self) -> crate::metrics::VariantReport {
        let distances = self.hot_key_distances();
        let mut report = self.metrics.report(&distances);
        (report.clusters_per_level, report.alone_per_level) = self.cluster_census();
        (report.dht_requests, report.cluster_changes) = self.dht_totals();
        report
    }

    /// Parallel windows run so far, and how many of them were shared among threads.
    pub fn windows(&self) -> (u64, u64) {
        (self.windows, self.shared_windows)
    }

    /// The XOR distance (as log2) of each host to the hot key, for the load-vs-distance plot.
    pub(crate) fn hot_key_distances(&self) -> Vec<u32> {
        self.ids
            .iter()
            .map(|id| id.distance(&self.hot_key).ilog2().unwrap_or(0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_host_bootstraps_only_through_hosts_it_can_reach() {
        let sc = Scenario {
            nodes: 40,
            ..Scenario::named("flash-crowd").expect("a preset")
        };
        let mut sim = Sim::new(sc, Variant::Coral, 7);
        sim.joined = (0..40).collect();
        // Of the other 39: odd hosts are down, hosts 30 and up hold another secret.
        for (i, h) in sim.hosts.iter_mut().enumerate() {
            h.up = i.is_multiple_of(2);
            h.secret = u16::from(i >= 30);
        }
        let eligible: Vec<u32> = (2..30).step_by(2).collect();
        let mut picked = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let via = sim.bootstrap_contact(0).expect("someone to join through");
            assert!(
                eligible.contains(&via),
                "{via} is down, of another secret, or itself"
            );
            picked.insert(via);
        }
        assert_eq!(
            picked.len(),
            eligible.len(),
            "every eligible host gets picked"
        );
        // Host 30 (another secret) finds only the reachable hosts of its own secret.
        for _ in 0..100 {
            let via = sim
                .bootstrap_contact(30)
                .expect("hosts 30..40 share its secret");
            assert!(via >= 30 && via.is_multiple_of(2), "{via}");
            assert_ne!(via, 30, "not itself");
        }
        for h in &mut sim.hosts {
            h.up = false;
        }
        assert_eq!(sim.bootstrap_contact(0), None);
    }
}
