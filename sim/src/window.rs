//! Parallel windows: hosts' DHTs run side by side over a span of virtual time that no
//! message can cross.
//!
//! Conservative parallel simulation, in its synchronous form (lookahead, after Chandy and
//! Misra): no message reaches host `h` sooner than `L(h)` after it was sent
//! (`LatencyModel::min_one_way_to`: half of `h`'s access delay and the smallest one). So
//! from the earliest pending event, at `T`, the messages and timers host `h` has in
//! `[T, T + L(h))` depend only on its own state. Hosts run them on separate threads; what
//! they send to `h` lands at `T + L(h)` or later. Everything else runs alone, in time order
//! (`Reach` says which is which):
//! - proxy logic at a host (a request, an object arriving, a get's outcome, a join) stops
//!   that host's DHT at its time, and runs after the window;
//! - the origin and the workload's generator touch no DHT and schedule nothing for a host
//!   `h` sooner than `L(h)`, so they run after the window too;
//! - crashes, restarts, partitions and rekeys change who can reach whom: a window ends
//!   before them.
//!
//! A window does not depend on how its hosts are shared among threads: they are independent
//! within it, and their outputs are merged in the order their first events came. So a run
//! is the same, event for event, for any number of workers, and one worker runs the same
//! windows.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{Result as ThreadResult, Scope};
use std::time::{Duration, Instant};

use dht::{Event, Transmit};

use crate::engine::{Ev, Reach, Sim, feed, micros_since};
use crate::queue::Micros;

/// `Sim::run_of` of a host with no run in the current window.
pub(crate) const NO_RUN: u32 = u32::MAX;
/// `Sim::run_of` of a host stopped before it had anything to run in the window.
const STOPPED: u32 = u32::MAX - 1;

/// Below this many events a window runs on the calling thread: handing hosts to another
/// thread and back costs more than the work.
const MIN_PARALLEL_EVENTS: usize = 4;

/// One host's share of a window: its DHT node (moved out of the host meanwhile), the
/// messages and timers that reach it, in order, and what came of them.
pub(crate) struct HostRun {
    host: u32,
    node: Box<dht::Node>,
    /// It runs nothing at or after this: the window's end, or proxy logic at this host.
    limit: Micros,
    /// With each input, its time and its sequence number in the queue.
    inputs: Vec<(Micros, u64, Ev)>,
    /// Messages put on the network, with when.
    sent: Vec<(Micros, Transmit)>,
    /// Gets and puts that finished, when, and the sequence number of the input they came
    /// after: the host stopped there, for the proxy logic.
    outcome: Option<(Micros, u64, Vec<Event>)>,
    /// Inputs it did not run because it stopped.
    deferred: Vec<(Micros, u64, Ev)>,
    /// Time of the last input or timer it ran.
    last: Micros,
    /// Sequence number of the last input it ran (of the first, before it ran any).
    last_seq: u64,
}

impl HostRun {
    fn run(&mut self, epoch: Instant) {
        let mut inputs = std::mem::take(&mut self.inputs).into_iter();
        while let Some((at, seq, ev)) = inputs.next() {
            // Timers due at or before the input go first.
            let stopped = self.fire_timers(epoch, at + 1);
            if stopped {
                self.deferred.push((at, seq, ev));
                self.deferred.extend(inputs);
                return;
            }
            self.last = at;
            self.last_seq = seq;
            feed(&mut self.node, epoch + Duration::from_micros(at), ev);
            if self.collect(at) {
                self.deferred.extend(inputs);
                return;
            }
        }
        self.fire_timers(epoch, self.limit);
    }

    /// Runs the node's timers due before `before`. True if one finished a get or a put: the
    /// host stops there.
    fn fire_timers(&mut self, epoch: Instant, before: Micros) -> bool {
        while let Some(at) = self.node.poll_timeout() {
            let at = micros_since(epoch, at).max(self.last);
            if at >= before.min(self.limit) {
                break;
            }
            self.last = at;
            self.node.handle_timeout(epoch + Duration::from_micros(at));
            if self.collect(at) {
                return true;
            }
        }
        false
    }

    /// Takes the node's output at `at`; true if the proxy logic must see some of it.
    fn collect(&mut self, at: Micros) -> bool {
        while let Some(t) = self.node.poll_transmit() {
            self.sent.push((at, t));
        }
        let mut done = Vec::new();
        while let Some(e) = self.node.poll_event() {
            if matches!(e, Event::GetDone { .. } | Event::PutDone { .. }) {
                done.push(e);
            }
        }
        if done.is_empty() {
            return false;
        }
        self.outcome = Some((at, self.last_seq, done));
        true
    }
}

/// A place one thread leaves a value for another, which waits for it spinning: a window
/// lasts tens of microseconds, and waking a sleeping thread through the kernel took longer
/// than that (a run of 10,000 nodes was a quarter slower on two threads than on one).
struct Handoff<T> {
    full: AtomicBool,
    value: Mutex<Option<T>>,
}

impl<T> Handoff<T> {
    fn new() -> Self {
        Handoff {
            full: AtomicBool::new(false),
            value: Mutex::new(None),
        }
    }

    fn put(&self, value: T) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        self.full.store(true, Ordering::Release);
    }

    /// Waits for a value, or returns `None` once `closed` is set.
    fn take(&self, closed: &AtomicBool) -> Option<T> {
        let mut spins = 0u32;
        while !self.full.load(Ordering::Acquire) {
            if closed.load(Ordering::Acquire) {
                return None;
            }
            spins = spins.saturating_add(1);
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.full.store(false, Ordering::Release);
        self.value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Spins before a waiting thread yields its core (a few tens of microseconds).
const SPINS_BEFORE_YIELD: u32 = 20_000;

/// One helper's share of a window, going and coming back.
struct Lane {
    work: Handoff<Vec<HostRun>>,
    done: Handoff<ThreadResult<Vec<HostRun>>>,
}

/// Helper threads that run shares of windows, for the length of one run.
pub(crate) struct Pool {
    lanes: Vec<Arc<Lane>>,
    closed: Arc<AtomicBool>,
    epoch: Instant,
    /// The fraction of a window's events this thread runs itself.
    own_share: Cell<f64>,
}

impl Pool {
    /// Starts `helpers` threads in `scope` (none: windows run on the caller's thread). They
    /// end when the pool is dropped.
    pub(crate) fn start<'s>(scope: &'s Scope<'s, '_>, helpers: usize, epoch: Instant) -> Pool {
        let closed = Arc::new(AtomicBool::new(false));
        let lanes: Vec<Arc<Lane>> = (0..helpers)
            .map(|_| {
                let lane = Arc::new(Lane {
                    work: Handoff::new(),
                    done: Handoff::new(),
                });
                let (mine, closed) = (Arc::clone(&lane), Arc::clone(&closed));
                scope.spawn(move || {
                    while let Some(mut share) = mine.work.take(&closed) {
                        // A panic goes back to the caller, which raises it again.
                        let result = catch_unwind(AssertUnwindSafe(|| {
                            for r in &mut share {
                                r.run(epoch);
                            }
                            share
                        }));
                        mine.done.put(result);
                    }
                });
                lane
            })
            .collect();
        Pool {
            own_share: Cell::new(1.0 / (lanes.len() + 1) as f64),
            lanes,
            closed,
            epoch,
        }
    }

    /// Runs every host's share, on the helpers and on this thread, and returns them in the
    /// order given. Also says whether any share went to a helper.
    fn run(&self, mut runs: Vec<HostRun>, events: usize) -> (Vec<HostRun>, bool) {
        if self.lanes.is_empty() || events < MIN_PARALLEL_EVENTS || runs.len() < 2 {
            for r in &mut runs {
                r.run(self.epoch);
            }
            return (runs, false);
        }
        // Contiguous shares: this thread's is smaller, as it also does all the work between
        // windows; how much smaller is learned (`own_share`). (Keeping each host on one
        // thread, for its caches, measured no faster: a node is mostly cold by its next turn.)
        let helpers = self.lanes.len();
        // A helper always gets the last host at least, so which windows are shared does
        // not depend on timing.
        let last = runs.last().map_or(0, |r| r.inputs.len());
        let own = ((events as f64 * self.own_share.get()).round() as usize).min(events - last);
        let per_helper = (events - own).div_ceil(helpers).max(1);
        let mut split: Vec<Vec<HostRun>> = vec![Vec::new()];
        let mut filled = 0;
        for r in runs {
            let bound = own + per_helper * (split.len() - 1);
            if filled >= bound && split.len() <= helpers {
                split.push(Vec::new());
            }
            filled += r.inputs.len();
            if let Some(share) = split.last_mut() {
                share.push(r);
            }
        }
        let mut mine = split.remove(0);
        let handed = split.len();
        for (share, lane) in split.into_iter().zip(&self.lanes) {
            lane.work.put(share);
        }
        for r in &mut mine {
            r.run(self.epoch);
        }
        // Finished first: take more next time; else less.
        let waited = self.lanes[..handed]
            .iter()
            .any(|lane| !lane.done.full.load(Ordering::Acquire));
        let step = if waited { 0.002 } else { -0.002 };
        self.own_share
            .set((self.own_share.get() + step).clamp(0.05, 0.95));
        for lane in &self.lanes[..handed] {
            match lane.done.take(&self.closed) {
                Some(Ok(share)) => mine.extend(share),
                Some(Err(panic)) => resume_unwind(panic),
                None => unreachable!("the pool is closed only when dropped"),
            }
        }
        (mine, handed > 0)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Sim {
    /// Runs the window that starts with the DHT event at `start` (see the module doc).
    pub(crate) fn run_window(&mut self, pool: &Pool, start: Micros, end: Micros) {
        let past_end = end.saturating_add(1);
        let limit = start.saturating_add(self.lookahead).min(past_end);
        let mut window_end = limit;
        let mut runs: Vec<HostRun> = Vec::new();
        let mut touched: Vec<u32> = Vec::new();
        // Events handed back to the queue: proxy logic and detached events, to run alone
        // after the window, and the inputs of stopped hosts.
        let mut later: Vec<(Micros, u64, Ev)> = Vec::new();
        let mut events = 0;
        while let Some((at, ev)) = self.queue.peek() {
            if at >= limit {
                break;
            }
            let reach = ev.reach();
            if reach == Reach::Barrier {
                window_end = at;
                break;
            }
            let Some((at, seq, ev)) = self.queue.pop_entry() else {
                break;
            };
            match reach {
                Reach::Dht(host) => {
                    let slot = self.run_of[host as usize];
                    let horizon = start + self.latency.min_one_way_to(host as usize);
                    let stopped = at >= horizon
                        || slot == STOPPED
                        || (slot != NO_RUN && runs[slot as usize].limit <= at);
                    if stopped {
                        later.push((at, seq, ev));
                        continue;
                    }
                    self.now = at;
                    self.events += 1;
                    let Some(ev) = self.admit(host, ev) else {
                        continue;
                    };
                    let slot = if slot == NO_RUN {
                        let Some(node) = self.hosts[host as usize].dht.take() else {
                            continue; // a host without a DHT: nothing to run
                        };
                        touched.push(host);
                        self.run_of[host as usize] = runs.len() as u32;
                        runs.push(HostRun {
                            host,
                            node,
                            limit: horizon.min(past_end),
                            inputs: Vec::new(),
                            sent: Vec::new(),
                            outcome: None,
                            deferred: Vec::new(),
                            last: at,
                            last_seq: seq,
                        });
                        runs.len() - 1
                    } else {
                        slot as usize
                    };
                    runs[slot].inputs.push((at, seq, ev));
                    events += 1;
                }
                Reach::Host(host) => {
                    match self.run_of[host as usize] {
                        NO_RUN => {
                            touched.push(host);
                            self.run_of[host as usize] = STOPPED;
                        }
                        STOPPED => {}
                        slot => {
                            let r = &mut runs[slot as usize];
                            r.limit = r.limit.min(at);
                        }
                    }
                    later.push((at, seq, ev));
                }
                Reach::Detached => later.push((at, seq, ev)),
                Reach::Barrier => unreachable!("a window ends before a barrier"),
            }
        }
        for r in &mut runs {
            r.limit = r.limit.min(window_end);
        }
        // Back in the order they were made, whoever ran them: the merge assigns sequence
        // numbers and draws the network's randomness, so it must not depend on the workers.
        let (runs, shared) = pool.run(runs, events);
        self.windows += 1;
        self.shared_windows += u64::from(shared);
        for host in touched {
            self.run_of[host as usize] = NO_RUN;
        }
        // Before anything is scheduled: the window popped up to its end, and what it sends
        // and hands back lands earlier than that.
        self.queue.rewind(start);
        for r in runs {
            self.merge(r, &mut later);
        }
        // Handed back with their sequence numbers, they keep their places among events of
        // their time (an outcome takes the place of the input it came after).
        for (at, seq, ev) in later {
            self.queue.push_again(at, seq, ev);
        }
    }

    /// Whether a message or timer popped for `host` still concerns it: a message for an
    /// earlier life of the host is dropped. Traces it, and counts a request for the hot key.
    /// Events run alone and in windows pass here alike.
    pub(crate) fn admit(&mut self, host: u32, ev: Ev) -> Option<Ev> {
        match &ev {
            Ev::Deliver {
                incarnation, input, ..
            } => {
                self.trace_event(host, 0);
                if !self.is_live(host, *incarnation) {
                    return None;
                }
                if let dht::Input::Request { req, .. } = input.as_ref() {
                    self.count_hot_key(host, &req.body);
                }
            }
            _ => self.trace_event(host, 1),
        }
        Some(ev)
    }

    /// Puts a host's node back and its output into the world, in the order it came.
    fn merge(&mut self, r: HostRun, later: &mut Vec<(Micros, u64, Ev)>) {
        let host = r.host;
        self.hosts[host as usize].dht = Some(r.node);
        for (at, t) in r.sent {
            self.now = at;
            self.send(host, t);
        }
        for (at, seq, ev) in r.deferred {
            // Counted when popped; it will be again when it runs.
            self.events -= 1;
            if let Ev::Deliver { input, .. } = &ev
                && let dht::Input::Request { req, .. } = input.as_ref()
            {
                self.uncount_hot_key(host, &req.body);
            }
            later.push((at, seq, ev));
        }
        if let Some((at, seq, events)) = r.outcome {
            let incarnation = self.hosts[host as usize].incarnation;
            later.push((
                at,
                seq,
                Ev::Outcome {
                    host,
                    incarnation,
                    events,
                },
            ));
            return; // the proxy logic drains the host and sets its wake-up
        }
        if let Some(wake) = self.hosts[host as usize]
            .dht
            .as_ref()
            .and_then(|d| d.poll_timeout())
        {
            self.queue_wake(host, wake, r.last);
        }
    }
}
