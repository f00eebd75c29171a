//! Driving queries: starting them, sending what their iterators ask for, feeding answers back,
//! and finishing them with an event.

use std::collections::BTreeSet;

use rand::Rng;
use std::time::{Duration, Instant};

use super::Node;
use crate::error::QueryError;
use crate::id::{Contact, Key};
use crate::io::{Event, Found, Placement, QueryId, RpcId};
use crate::query::{ClosestIter, Kind, Next, PutLevel, PutPhase, Query};
use crate::rpc::{Outstanding, Purpose};
use crate::wire::{Level, RequestBody, Response, ResponseBody, Value};

/// The backward phase's request: store `value` under `key` at `level`.
fn store_body(level: Level, key: Key, value: &Value, ttl: Duration) -> RequestBody {
    RequestBody::Store {
        level,
        key,
        value: value.clone(),
        ttl,
    }
}

/// Whether a query goes on after a step.
enum Step {
    Continue,
    Finished,
}

impl Node {
    fn iter(&self, level: Level, key: Key, extra: Vec<Contact>) -> ClosestIter {
        self.iter_with(level, key, extra, self.config.alpha)
    }

    fn iter_with(&self, level: Level, key: Key, extra: Vec<Contact>, alpha: usize) -> ClosestIter {
        let seeds = self.tables[level.index()]
            .closest(&key, self.config.k)
            .into_iter()
            .chain(extra);
        ClosestIter::new(key, self.me.id, seeds, alpha, self.config.k)
    }

    fn insert_query(&mut self, now: Instant, key: Key, kind: Kind) -> QueryId {
        let id = self.next_query_id();
        self.insert_query_as(now, id, key, kind);
        id
    }

    /// Starts query `id` (allocated by the caller, who may need to know it before the first
    /// step: a step can already report progress, or finish the query).
    fn insert_query_as(&mut self, now: Instant, id: QueryId, key: Key, kind: Kind) {
        let query = Query {
            key,
            deadline: now + self.config.query_timeout,
            hops: 0,
            kind,
        };
        self.queries.insert(id, Box::new(query));
        self.advance(now, id);
    }

    /// The most local level: where gets start and puts reach up to.
    pub(super) fn top_level(&self) -> Level {
        Level((self.config.levels() - 1) as u8)
    }

    /// Values stored here at `level` for `key`, except our own: a get looks for *other*
    /// holders (a proxy knows its own cache), and stopping at our own announcement would hide
    /// the others (Coral's get ends at the first node with values).
    fn local_values(&self, level: Level, key: &Key, now: Instant) -> Vec<Value> {
        let mut values =
            self.stores[level.index()].get(key, now, self.config.max_values_per_response + 1);
        values.retain(|v| v.holder.id != self.me.id);
        values.truncate(self.config.max_values_per_response);
        values
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        level: Level,
        target: Key,
        seeds: Vec<Contact>,
        bootstrap: bool,
    ) -> QueryId {
        let iter = self.iter(level, target, seeds);
        self.insert_query(
            now,
            target,
            Kind::Lookup {
                level,
                iter,
                bootstrap,
            },
        )
    }

    /// Get `id` of `key`, from level `top` down to level 0.
    pub(super) fn start_get(&mut self, now: Instant, id: QueryId, key: Key, top: Level) {
        let local = self.local_values(top, &key, now);
        if !local.is_empty() {
            let found = Found {
                values: local,
                level: top,
                hops: 0,
            };
            self.finish_get(now, id, key, Ok(found));
            return;
        }
        let iter = self.iter(top, key, Vec::new());
        self.insert_query_as(now, id, key, Kind::Get { level: top, iter });
    }

    /// Put `id` of `value` under `key`, at every level from `top` down to level 0.
    pub(super) fn start_put(
        &mut self,
        now: Instant,
        id: QueryId,
        (key, value, ttl): (Key, Value, Duration),
        top: Level,
    ) {
        let ttl = self.stores[0].clamp_ttl(ttl);
        let mut levels = Vec::new();
        for level in self.levels().rev().filter(|l| *l <= top) {
            let mut iter = self.iter_with(level, key, Vec::new(), self.config.put_alpha);
            if self.config.sloppy {
                iter = iter.gradual(self.rng.next_u64());
            }
            levels.push(PutLevel {
                level,
                phase: PutPhase::Forward {
                    iter,
                    stack: Vec::new(),
                    stopped: false,
                },
                stored_at: Vec::new(),
            });
        }
        self.insert_query_as(now, id, key, Kind::Put { value, ttl, levels });
    }

    /// Runs a query until it waits for the network or finishes.
    pub(super) fn advance(&mut self, now: Instant, id: QueryId) {
        let Some(mut q) = self.queries.remove(&id) else {
            return;
        };
        if let Step::Continue = self.step(now, id, &mut q) {
            self.queries.insert(id, q);
        }
    }

    fn step(&mut self, now: Instant, id: QueryId, q: &mut Query) -> Step {
        let key = q.key;
        match &mut q.kind {
            Kind::Lookup {
                level,
                iter,
                bootstrap,
            } => loop {
                match iter.next() {
                    Next::Ask(c) => {
                        let body = RequestBody::FindNode {
                            level: *level,
                            target: *iter.target(),
                        };
                        self.send_request(
                            now,
                            c,
                            body,
                            Purpose::Query {
                                query: id,
                                level: *level,
                            },
                        );
                        q.hops += 1;
                    }
                    Next::Wait => return Step::Continue,
                    Next::Done => {
                        if *bootstrap {
                            self.events.push_back(Event::BootstrapDone {
                                query: id,
                                known: self.tables[0].len(),
                            });
                        }
                        return Step::Finished;
                    }
                }
            },
            Kind::Get { level, iter } => loop {
                match iter.next() {
                    Next::Ask(c) => {
                        let body = RequestBody::Get { level: *level, key };
                        self.send_request(
                            now,
                            c,
                            body,
                            Purpose::Query {
                                query: id,
                                level: *level,
                            },
                        );
                        q.hops += 1;
                    }
                    Next::Wait => return Step::Continue,
                    Next::Done => {
                        let reached = iter.closest_succeeded(self.config.k);
                        if level.0 == 0 {
                            let closest = reached.iter().map(|c| c.id).collect();
                            self.finish_get(
                                now,
                                id,
                                key,
                                Err(QueryError::NotFound { key, closest }),
                            );
                            return Step::Finished;
                        }
                        self.events.push_back(Event::GetProgress {
                            query: id,
                            level: *level,
                        });
                        *level = Level(level.0 - 1);
                        let local = self.local_values(*level, &key, now);
                        if !local.is_empty() {
                            let found = Found {
                                values: local,
                                level: *level,
                                hops: q.hops,
                            };
                            self.finish_get(now, id, key, Ok(found));
                            return Step::Finished;
                        }
                        // Coral, section 4.4: continue from the closest nodes reached above; their
                        // IDs are close to the key in the larger cluster too. Only those that
                        // share our cluster at the new level can route in it.
                        let reached = reached
                            .into_iter()
                            .filter(|c| self.clusters.is_member(&c.id, *level))
                            .collect();
                        *iter = self.iter(*level, key, reached);
                    }
                }
            },
            Kind::Put { value, ttl, levels } => {
                for pl in levels.iter_mut() {
                    self.step_put_level(now, id, key, value, *ttl, pl, &mut q.hops);
                }
                if Query::is_put_done(levels) {
                    let stored: Vec<_> = levels
                        .iter()
                        .flat_map(|l| l.stored_at.iter().map(|n| (l.level, *n)))
                        .collect();
                    self.finish_put(id, key, stored, q.hops, false);
                    return Step::Finished;
                }
                Step::Continue
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step_put_level(
        &mut self,
        now: Instant,
        id: QueryId,
        key: Key,
        value: &Value,
        ttl: Duration,
        pl: &mut PutLevel,
        hops: &mut u32,
    ) {
        let level = pl.level;
        if let PutPhase::Forward {
            iter,
            stack,
            stopped,
        } = &mut pl.phase
        {
            // Once a full and loaded node answered, the walk goes no further.
            if !*stopped {
                loop {
                    match iter.next() {
                        Next::Ask(c) => {
                            let body = RequestBody::PutProbe { level, key, ttl };
                            self.send_request(now, c, body, Purpose::Query { query: id, level });
                            *hops += 1;
                        }
                        Next::Wait => return,
                        Next::Done => break,
                    }
                }
            }
            let stack = std::mem::take(stack);
            if !self.config.sloppy {
                pl.phase = self.replicate(now, id, key, value, ttl, level, stack, pl, hops);
                return;
            }
            pl.phase = self.backward_phase(key, stack);
        }
        if let PutPhase::Backward {
            candidates,
            waiting,
        } = &mut pl.phase
        {
            if waiting.is_some() {
                return;
            }
            while let Some(c) = candidates.pop() {
                if c.id == self.me.id {
                    if self.stores[level.index()].store(key, value.clone(), ttl, now) {
                        pl.stored_at.push(c.id);
                        pl.phase = PutPhase::Done;
                        return;
                    }
                    continue;
                }
                *waiting = Some(c.id);
                let body = store_body(level, key, value, ttl);
                self.send_request(now, c, body, Purpose::Query { query: id, level });
                *hops += 1;
                return;
            }
            // Nobody accepted, the local node included: keep it here anyway (see `store_anyway`).
            if self.stores[level.index()].store_anyway(key, value.clone(), ttl, now) {
                pl.stored_at.push(self.me.id);
            }
            pl.phase = PutPhase::Done;
        }
    }

    /// Classic put: store at the `k` closest nodes found (the local node among them if it is
    /// that close), all at once.
    #[allow(clippy::too_many_arguments)]
    fn replicate(
        &mut self,
        now: Instant,
        id: QueryId,
        key: Key,
        value: &Value,
        ttl: Duration,
        level: Level,
        mut stack: Vec<Contact>,
        pl: &mut PutLevel,
        hops: &mut u32,
    ) -> PutPhase {
        stack.push(self.me.clone());
        stack.sort_by_key(|c| c.id.distance(&key));
        stack.truncate(self.config.k);
        let mut waiting = BTreeSet::new();
        for c in stack {
            if c.id == self.me.id {
                if self.stores[level.index()].store_anyway(key, value.clone(), ttl, now) {
                    pl.stored_at.push(c.id);
                }
                continue;
            }
            waiting.insert(c.id);
            let body = store_body(level, key, value, ttl);
            self.send_request(now, c, body, Purpose::Query { query: id, level });
            *hops += 1;
        }
        if waiting.is_empty() {
            PutPhase::Done
        } else {
            PutPhase::Replicate { waiting }
        }
    }

    /// The nodes to try storing at, closest first; the local node is one of them.
    fn backward_phase(&self, key: Key, mut stack: Vec<Contact>) -> PutPhase {
        stack.push(self.me.clone());
        // Farthest first: `pop` yields the closest.
        stack.sort_by_key(|c| std::cmp::Reverse(c.id.distance(&key)));
        PutPhase::Backward {
            candidates: stack,
            waiting: None,
        }
    }

    /// A response to a query's request arrived (already matched to its request).
    pub(super) fn on_query_response(
        &mut self,
        now: Instant,
        id: QueryId,
        level: Level,
        out: &Outstanding,
        resp: Response,
    ) {
        let Some(mut q) = self.queries.remove(&id) else {
            return; // the query finished; the answer still refreshed the tables
        };
        let peer = out.to.id;
        let mut step = true;
        match (&mut q.kind, resp.body) {
            (Kind::Lookup { iter, .. }, ResponseBody::Nodes { closer }) => {
                iter.on_success(&peer, closer)
            }
            (Kind::Get { level: at, iter }, ResponseBody::Values { mut values, closer }) => {
                values.retain(|v| v.holder.id != self.me.id);
                if !values.is_empty() {
                    let found = Found {
                        values,
                        level,
                        hops: q.hops,
                    };
                    self.finish_get(now, id, q.key, Ok(found));
                    return;
                }
                if *at == level {
                    iter.on_success(&peer, closer);
                } else {
                    step = false; // a late answer from a level already left
                }
            }
            (Kind::Put { levels, .. }, body) => {
                if let Some(pl) = levels.iter_mut().find(|pl| pl.level == level) {
                    Self::on_put_response(pl, &out.to, body, self.config.sloppy);
                }
            }
            // Refused (answers of the wrong kind never get here: see `on_response`).
            _ => self.fail_in_query(&mut q, &peer, level),
        }
        self.queries.insert(id, q);
        if step {
            self.advance(now, id);
        }
    }

    fn on_put_response(pl: &mut PutLevel, peer: &Contact, body: ResponseBody, sloppy: bool) {
        let id = &peer.id;
        match (&mut pl.phase, body) {
            (
                PutPhase::Forward {
                    iter,
                    stack,
                    stopped,
                },
                ResponseBody::Probe {
                    full,
                    loaded,
                    accepts,
                    closer,
                },
            ) => {
                if *stopped {
                    return; // a late probe answer after the walk stopped
                }
                // The backward phase stores at the closest node that accepts (one full and
                // loaded too: it may hold our value, being renewed); one that said it would
                // refuse is not asked. A classic put stores at the k closest regardless.
                if accepts || !sloppy {
                    stack.push(peer.clone());
                }
                if sloppy && full && loaded {
                    // Coral: the forward phase stops at the first node that is full and loaded.
                    iter.on_success(id, Vec::new());
                    *stopped = true;
                } else {
                    iter.on_success(id, closer);
                }
            }
            (PutPhase::Backward { waiting, .. }, ResponseBody::Stored { accepted })
                if *waiting == Some(*id) =>
            {
                *waiting = None;
                if accepted {
                    pl.stored_at.push(*id);
                    pl.phase = PutPhase::Done;
                }
            }
            (PutPhase::Replicate { waiting }, ResponseBody::Stored { accepted }) => {
                if waiting.remove(id) && accepted {
                    pl.stored_at.push(*id);
                }
                if waiting.is_empty() {
                    pl.phase = PutPhase::Done;
                }
            }
            (PutPhase::Replicate { waiting }, _) => {
                waiting.remove(id);
                if waiting.is_empty() {
                    pl.phase = PutPhase::Done;
                }
            }
            (PutPhase::Forward { iter, .. }, _) => iter.on_failure(id),
            (PutPhase::Backward { waiting, .. }, _) if *waiting == Some(*id) => *waiting = None,
            _ => {} // a late answer to a phase already left
        }
    }

    fn fail_in_query(&mut self, q: &mut Query, peer: &crate::id::NodeId, level: Level) {
        match &mut q.kind {
            Kind::Lookup { iter, .. } => iter.on_failure(peer),
            Kind::Get { level: at, iter } if *at == level => iter.on_failure(peer),
            Kind::Get { .. } => {}
            Kind::Put { levels, .. } => {
                if let Some(pl) = levels.iter_mut().find(|pl| pl.level == level) {
                    match &mut pl.phase {
                        PutPhase::Forward { iter, .. } => iter.on_failure(peer),
                        PutPhase::Backward { waiting, .. } if *waiting == Some(*peer) => {
                            *waiting = None
                        }
                        PutPhase::Replicate { waiting } => {
                            waiting.remove(peer);
                            if waiting.is_empty() {
                                pl.phase = PutPhase::Done;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// A query's request failed for good (timeouts exhausted, transport failure).
    pub(super) fn on_query_failure(
        &mut self,
        now: Instant,
        id: QueryId,
        level: Level,
        out: &Outstanding,
    ) {
        let Some(mut q) = self.queries.remove(&id) else {
            return;
        };
        self.fail_in_query(&mut q, &out.to.id, level);
        self.queries.insert(id, q);
        self.advance(now, id);
    }

    /// A query's request missed its first deadline and is being retried.
    pub(super) fn on_query_slow(
        &mut self,
        now: Instant,
        id: QueryId,
        level: Level,
        out: &Outstanding,
    ) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let peer = &out.to.id;
        match &mut q.kind {
            Kind::Lookup { iter, .. } => iter.on_slow(peer),
            Kind::Get { level: at, iter } if *at == level => iter.on_slow(peer),
            Kind::Put { levels, .. } => {
                if let Some(PutLevel {
                    phase: PutPhase::Forward { iter, .. },
                    ..
                }) = levels.iter_mut().find(|pl| pl.level == level)
                {
                    iter.on_slow(peer);
                }
            }
            Kind::Get { .. } => return,
        }
        self.advance(now, id);
    }

    /// Ends queries whose deadline passed.
    pub(super) fn expire_queries(&mut self, now: Instant) {
        let due: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(q) = self.queries.remove(&id) else {
                continue;
            };
            match q.kind {
                Kind::Lookup { bootstrap, .. } => {
                    if bootstrap {
                        self.events.push_back(Event::BootstrapDone {
                            query: id,
                            known: self.tables[0].len(),
                        });
                    }
                }
                Kind::Get { .. } => {
                    self.finish_get(now, id, q.key, Err(QueryError::Timeout { key: q.key }))
                }
                Kind::Put { levels, .. } => {
                    let stored = levels
                        .iter()
                        .flat_map(|l| l.stored_at.iter().map(|n| (l.level, *n)))
                        .collect();
                    self.finish_put(id, q.key, stored, q.hops, true);
                }
            }
        }
    }

    fn finish_get(
        &mut self,
        now: Instant,
        query: QueryId,
        key: Key,
        result: Result<Found, QueryError>,
    ) {
        if self.locality.take(query) {
            let values = result.map(|found| found.values).unwrap_or_default();
            self.on_locality_found(now, values);
            return;
        }
        self.events.push_back(Event::GetDone { query, key, result });
    }

    fn finish_put(
        &mut self,
        query: QueryId,
        key: Key,
        stored: Vec<(Level, crate::id::NodeId)>,
        hops: u32,
        timed_out: bool,
    ) {
        if self.locality.take(query) {
            return;
        }
        let result = match (stored.is_empty(), timed_out) {
            (false, _) => Ok(Placement { stored, hops }),
            (true, true) => Err(QueryError::Timeout { key }),
            (true, false) => Err(QueryError::NotStored { key }),
        };
        self.events.push_back(Event::PutDone { query, key, result });
    }

    /// Routes a response to whatever sent the request.
    pub(super) fn dispatch_response(
        &mut self,
        now: Instant,
        _rpc: RpcId,
        out: Outstanding,
        resp: Response,
    ) {
        match out.purpose {
            Purpose::Query { query, level } => {
                self.on_query_response(now, query, level, &out, resp)
            }
            Purpose::BucketPing { .. } | Purpose::ClusterProbe => {}
        }
    }
}
