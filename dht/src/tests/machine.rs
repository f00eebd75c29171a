//! One node driven by hand: what it does with odd, late or hostile input.

use std::time::Duration;

use crate::test_clock::epoch;
use crate::wire::{Header, Request, RequestBody, Response, ResponseBody};
use crate::{
    Config, Contact, Event, InboundId, Input, Key, Level, Node, NodeId, QueryError, Transmit,
};

fn node() -> Node {
    Node::new(Config::default(), Contact::new(NodeId([1; 32]), vec![1])).unwrap()
}

fn peer(n: u8) -> Contact {
    Contact::new(NodeId([n; 32]), vec![n])
}

fn request(body: RequestBody) -> Request {
    Request {
        header: Header::default(),
        body,
    }
}

fn response(body: ResponseBody) -> Response {
    Response {
        header: Header::default(),
        body,
    }
}

fn drain(n: &mut Node) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

/// `from` asks the node `body` (its `inbound`-th request); what the node sends in return.
fn asked_by(
    n: &mut Node,
    now: std::time::Instant,
    from: Contact,
    inbound: u64,
    body: RequestBody,
) -> Vec<Transmit> {
    n.handle_input(
        now,
        Input::Request {
            from,
            inbound: InboundId(inbound),
            req: request(body),
        },
    );
    drain(n)
}

/// `from` pings the node (its `inbound`-th request); what the node sends in return.
fn pinged_by(n: &mut Node, now: std::time::Instant, from: Contact, inbound: u64) -> Vec<Transmit> {
    asked_by(n, now, from, inbound, RequestBody::Ping)
}

/// The first request among `sent` whose body `pick` accepts.
fn rpc_of(sent: &[Transmit], pick: impl Fn(&RequestBody) -> bool) -> Option<crate::RpcId> {
    sent.iter().find_map(|t| match t {
        Transmit::Request { rpc, req, .. } if pick(&req.body) => Some(*rpc),
        _ => None,
    })
}

/// Answers every request `n` sends with `answer(to, body)`, and those its answers cause,
/// until it sends nothing more.
fn answer_until_quiet(
    n: &mut Node,
    at: std::time::Instant,
    mut answer: impl FnMut(&Contact, &RequestBody) -> ResponseBody,
) {
    let mut sent = drain(n);
    while !sent.is_empty() {
        for tx in sent {
            if let Transmit::Request { to, rpc, req } = tx {
                let resp = response(answer(&to, &req.body));
                n.handle_input(at, Input::Response { rpc, resp });
            }
        }
        sent = drain(n);
    }
}

/// A node at `now` on site "site/1" (its locality key, returned), alone in its clusters,
/// knowing peer 2.
fn alone_on_a_site(now: std::time::Instant) -> (Node, Key) {
    let mut n = node();
    let site = Key::hash(b"site/1");
    n.set_locality(vec![site]);
    pinged_by(&mut n, now, peer(2), 0);
    (n, site)
}

/// Starts a bootstrap through peer 2: its query and the one request it sends.
fn bootstrapping(n: &mut Node, now: std::time::Instant) -> (crate::QueryId, crate::RpcId) {
    let q = n.bootstrap(now, vec![peer(2)]);
    match drain(n).as_slice() {
        [Transmit::Request { rpc, .. }] => (q, *rpc),
        other => panic!("expected one FindNode, got {other:?}"),
    }
}

#[test]
fn answer_of_the_wrong_kind_is_counted_and_routed_around() {
    let now = epoch();
    let mut n = node();
    let (q, rpc) = bootstrapping(&mut n, now);
    // A Pong where Nodes was expected: dropped, counted, and the peer treated as failed.
    n.handle_input(
        now,
        Input::Response {
            rpc,
            resp: response(ResponseBody::Pong),
        },
    );
    assert_eq!(n.stats(now).dropped, 1);
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert_eq!(events, vec![Event::BootstrapDone { query: q, known: 0 }]);
}

#[test]
fn unknown_and_duplicate_responses_are_dropped() {
    let now = epoch();
    let mut n = node();
    n.handle_input(
        now,
        Input::Response {
            rpc: crate::RpcId(999),
            resp: response(ResponseBody::Pong),
        },
    );
    assert_eq!(n.stats(now).dropped, 1);
    n.bootstrap(now, vec![peer(2)]);
    let rpc = match drain(&mut n).as_slice() {
        [Transmit::Request { rpc, .. }] => *rpc,
        other => panic!("{other:?}"),
    };
    let nodes = response(ResponseBody::Nodes { closer: vec![] });
    n.handle_input(
        now,
        Input::Response {
            rpc,
            resp: nodes.clone(),
        },
    );
    n.handle_input(now, Input::Response { rpc, resp: nodes });
    let s = n.stats(now);
    assert_eq!((s.responses_in, s.dropped), (1, 2));
}

#[test]
fn request_for_a_level_it_does_not_have_is_refused() {
    let now = epoch();
    let mut n = node();
    let body = RequestBody::Get {
        level: Level(5),
        key: Key([0; 32]),
    };
    n.handle_input(
        now,
        Input::Request {
            from: peer(3),
            inbound: InboundId(7),
            req: request(body),
        },
    );
    // (It also looks itself up through its first contact: see the rejoin test.)
    let sent = drain(&mut n);
    let responses: Vec<_> = sent
        .iter()
        .filter_map(|t| match t {
            Transmit::Response { inbound, resp } => Some((*inbound, resp.body.clone())),
            Transmit::Request { .. } => None,
        })
        .collect();
    assert_eq!(
        responses,
        vec![(InboundId(7), ResponseBody::Refused)],
        "{sent:?}"
    );
}

#[test]
fn spurious_timeouts_do_nothing() {
    let now = epoch();
    let mut n = node();
    n.bootstrap(now, vec![peer(2)]);
    drain(&mut n);
    let wake = n.poll_timeout().expect("a deadline is armed");
    assert!(wake > now);
    for ms in [0, 1, 10, 100] {
        n.handle_timeout(now + Duration::from_millis(ms));
        assert!(drain(&mut n).is_empty(), "nothing was due at +{ms} ms");
    }
    // At the RPC deadline the request is retried exactly once.
    n.handle_timeout(wake);
    assert_eq!(drain(&mut n).len(), 1);
    assert_eq!(n.stats(wake).retries, 1);
}

#[test]
fn get_with_nobody_to_ask_fails_at_once() {
    let now = epoch();
    let mut n = node();
    let q = n.get(now, Key::from_url("http://x.example/"));
    assert!(drain(&mut n).is_empty());
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert!(matches!(
        events.last(),
        Some(Event::GetDone { query, result: Err(QueryError::NotFound { .. }), .. }) if *query == q
    ));
}

#[test]
fn invalid_config_is_an_error_not_a_panic() {
    let config = Config {
        k: 0,
        ..Config::default()
    };
    assert!(Node::new(config, peer(1)).is_err());
}

#[test]
fn nodes_with_the_default_seed_still_found_distinct_clusters() {
    let now = epoch();
    let a = Node::new(Config::default(), peer(1)).unwrap();
    let b = Node::new(Config::default(), peer(2)).unwrap();
    let (sa, sb) = (a.snapshot(now), b.snapshot(now));
    assert_ne!(sa.levels[1].cluster, sb.levels[1].cluster);
    assert_ne!(sa.levels[2].cluster, sb.levels[2].cluster);
}

#[test]
fn a_requester_from_another_cluster_gets_nothing_at_that_level() {
    let now = epoch();
    let mut n = node();
    // Teach it a neighbour so it has something to give away.
    n.handle_input(
        now,
        Input::Request {
            from: peer(9),
            inbound: InboundId(0),
            req: request(RequestBody::Ping),
        },
    );
    drain(&mut n);
    let foreign = Header {
        clusters: vec![
            crate::ClusterDescriptor {
                id: crate::ClusterId(77),
                age: Duration::ZERO,
                size: 1,
            };
            2
        ],
    };
    // Level 0: both peers it knows (the requester too); level 2: none.
    for (level, want_closer) in [(Level(0), 2), (Level(2), 0)] {
        let req = Request {
            header: foreign.clone(),
            body: RequestBody::FindNode {
                level,
                target: Key([0; 32]),
            },
        };
        n.handle_input(
            now,
            Input::Request {
                from: peer(3),
                inbound: InboundId(1),
                req,
            },
        );
        match drain(&mut n).as_slice() {
            [Transmit::Response { resp, .. }] => match &resp.body {
                ResponseBody::Nodes { closer } => {
                    assert_eq!(closer.len(), want_closer, "{level:?}")
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_peer_learned_address_replaces_the_held_one_without_adding_anyone() {
    let now = epoch();
    let mut n = node();
    pinged_by(&mut n, now, peer(2), 0);
    let addrs = |n: &Node| -> Vec<Vec<u8>> {
        n.snapshot(now).levels[0]
            .buckets
            .iter()
            .flat_map(|(_, b)| b.iter().map(|p| p.contact.addr.as_bytes().to_vec()))
            .collect()
    };
    assert_eq!(addrs(&n), vec![vec![2]]);
    assert!(n.handle_contact(&Contact::new(NodeId([2; 32]), vec![2, 2])));
    assert_eq!(addrs(&n), vec![vec![2, 2]]);
    assert!(!n.handle_contact(&peer(3)), "an unknown peer is not added");
    assert!(
        !n.handle_contact(&Contact::new(NodeId([1; 32]), vec![9])),
        "nor the node itself"
    );
    assert_eq!(addrs(&n), vec![vec![2, 2]]);
}

#[test]
fn a_node_that_knows_no_one_looks_itself_up_through_the_first_peer_that_speaks() {
    // After a partition emptied its table, one peer's request is all an isolated node hears:
    // it rejoins through that peer (a lookup of its own ID) instead of routing through it
    // alone until the next refresh.
    let now = epoch();
    let mut n = node();
    let sent = pinged_by(&mut n, now, peer(2), 0);
    let own = Key::from(NodeId([1; 32]));
    let lookups: Vec<_> = sent
        .iter()
        .filter(|t| {
            matches!(t, Transmit::Request { to, req, .. }
                if to.id == NodeId([2; 32])
                    && matches!(req.body, RequestBody::FindNode { target, level } if target == own && level == Level::GLOBAL))
        })
        .collect();
    assert_eq!(lookups.len(), 1, "{sent:?}");
    assert_eq!(n.stats(now).rejoins, 1);
    // A second peer, while the table is no longer empty, starts nothing more.
    let sent = pinged_by(&mut n, now, peer(3), 1);
    assert!(
        sent.iter().all(|t| matches!(t, Transmit::Response { .. })),
        "{sent:?}"
    );
    assert_eq!(n.stats(now).rejoins, 1);
}

#[test]
fn a_transport_failure_is_retried_like_a_timeout_before_the_peer_is_given_up() {
    // A stale connection that closes under a request (after a partition) fails the attempt,
    // not the peer: the retry goes out on a fresh connection.
    let now = epoch();
    let mut n = node();
    let q = n.bootstrap(now, vec![peer(2)]);
    let retries = n.config().rpc_retries;
    let mut rpcs = Vec::new();
    for attempt in 0..=retries {
        let rpc = match drain(&mut n).as_slice() {
            [Transmit::Request { to, rpc, .. }] if to.id == NodeId([2; 32]) => *rpc,
            other => panic!("attempt {attempt}: expected one request to peer 2, got {other:?}"),
        };
        assert!(!rpcs.contains(&rpc), "each attempt has its own id");
        rpcs.push(rpc);
        assert!(
            std::iter::from_fn(|| n.poll_event()).next().is_none(),
            "not given up after {attempt} failures"
        );
        n.handle_input(now, Input::SendFailed { rpc });
    }
    assert!(drain(&mut n).is_empty(), "no attempt past the retries");
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert_eq!(events, vec![Event::BootstrapDone { query: q, known: 0 }]);
    assert_eq!(n.stats(now).send_failures, u64::from(retries) + 1);
}

#[test]
fn a_request_that_can_never_be_answered_gives_the_peer_up_at_once() {
    let now = epoch();
    let mut n = node();
    let (q, rpc) = bootstrapping(&mut n, now);
    n.handle_input(now, Input::Failed { rpc });
    assert!(drain(&mut n).is_empty(), "no retry");
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert_eq!(events, vec![Event::BootstrapDone { query: q, known: 0 }]);
}

#[test]
fn a_node_alone_announces_itself_under_its_locality_key_and_pings_the_neighbours_found() {
    // Coral's locality hints: a node alone in its clusters puts itself under its site's key
    // (at level 0 only) and gets the key, then times the neighbours it finds. Neither query
    // is the driver's: no event reports them.
    let now = epoch();
    let (mut n, site) = alone_on_a_site(now);
    let later = now + Config::default().cluster_check_interval;
    n.handle_timeout(later);
    let sent = drain(&mut n);
    let probes: Vec<Level> = sent
        .iter()
        .filter_map(|t| match t {
            Transmit::Request { req, .. } => match req.body {
                RequestBody::PutProbe { level, key, .. } if key == site => Some(level),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(probes, vec![Level::GLOBAL], "{sent:?}");
    let probe = rpc_of(
        &sent,
        |b| matches!(b, RequestBody::PutProbe { key, .. } if *key == site),
    )
    .expect("a put probe of the site key");
    let get = rpc_of(
        &sent,
        |b| matches!(b, RequestBody::Get { key, .. } if *key == site),
    )
    .expect("a get of the site key");
    let neighbour = peer(7);
    n.handle_input(
        later,
        Input::Response {
            rpc: get,
            resp: response(ResponseBody::Values {
                values: vec![crate::Value {
                    holder: neighbour.clone(),
                    pending: false,
                }],
                closer: Vec::new(),
            }),
        },
    );
    let sent = drain(&mut n);
    assert!(
        sent.iter()
            .any(|t| matches!(t, Transmit::Request { to, req, .. }
            if to.id == neighbour.id && req.body == RequestBody::Ping)),
        "{sent:?}"
    );
    // The put completes: peer 2 is neither full nor loaded, and then accepts the value.
    n.handle_input(
        later,
        Input::Response {
            rpc: probe,
            resp: response(ResponseBody::Probe {
                full: false,
                loaded: false,
                accepts: true,
                closer: Vec::new(),
            }),
        },
    );
    let store = rpc_of(&drain(&mut n), |b| {
        matches!(b, RequestBody::Store { level, key, .. } if *key == site && *level == Level::GLOBAL)
    })
    .expect("a store of the site key at level 0");
    n.handle_input(
        later,
        Input::Response {
            rpc: store,
            resp: response(ResponseBody::Stored { accepted: true }),
        },
    );
    assert!(drain(&mut n).is_empty());
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::GetDone { .. } | Event::GetProgress { .. } | Event::PutDone { .. }
        )),
        "{events:?}"
    );
    // Nothing was put above level 0 (the node alone there would have stored it itself).
    let snap = n.snapshot(later);
    assert!(snap.levels[1..].iter().all(|l| l.keys == 0), "{snap:?}");
    assert_eq!(n.stats(later).queries_running, 0);
}

#[test]
fn a_node_without_locality_keys_sends_no_hints() {
    let now = epoch();
    let mut n = node();
    pinged_by(&mut n, now, peer(2), 0);
    n.handle_timeout(now + Config::default().cluster_check_interval);
    let sent = drain(&mut n);
    assert!(
        sent.iter()
            .all(|t| !matches!(t, Transmit::Request { req, .. }
            if matches!(req.body, RequestBody::Get { .. } | RequestBody::PutProbe { .. }))),
        "{sent:?}"
    );
}

#[test]
fn a_hint_get_that_found_no_one_is_repeated_within_a_minute_not_half_an_hour() {
    // A node that starts before its neighbours announced themselves asks again soon; peer 2
    // answers everything, knowing no one and storing nothing.
    let now = epoch();
    let (mut n, site) = alone_on_a_site(now);
    let mut site_gets = 0;
    let mut t = now;
    while t < now + Duration::from_secs(120) {
        t += Duration::from_secs(1);
        n.handle_timeout(t);
        answer_until_quiet(&mut n, t, |_, body| {
            if matches!(body, RequestBody::Get { key, .. } if *key == site) {
                site_gets += 1;
            }
            ResponseBody::empty_for(body)
        });
    }
    assert!(
        site_gets >= 2,
        "{site_gets} gets of the site key in two minutes"
    );
    assert!(site_gets <= 3, "{site_gets} gets: the wait doubles");
}

/// Node `n`, knowing peers 2 and 3, puts a value of its own under a key at peer 2's ID; a
/// peer probed answers `probe(its ID)`, and takes every store. Returns the peers probed,
/// those sent a store, and where the put says it stored.
fn put_answering(
    n: &mut Node,
    probe: impl Fn(NodeId) -> ResponseBody,
) -> (Vec<NodeId>, Vec<NodeId>, Vec<(Level, NodeId)>) {
    let now = epoch();
    pinged_by(n, now, peer(2), 0);
    pinged_by(n, now, peer(3), 1);
    let value = crate::Value {
        holder: Contact::new(NodeId([1; 32]), vec![1]),
        pending: false,
    };
    let put = n.put(now, Key([2; 32]), value, Duration::from_secs(600));
    let (mut probed, mut stored_to) = (Vec::new(), Vec::new());
    answer_until_quiet(n, now, |to, body| match body {
        RequestBody::PutProbe { .. } => {
            probed.push(to.id);
            probe(to.id)
        }
        RequestBody::Store { .. } => {
            stored_to.push(to.id);
            ResponseBody::Stored { accepted: true }
        }
        other => ResponseBody::empty_for(other),
    });
    let done = std::iter::from_fn(|| n.poll_event()).find_map(|e| match e {
        Event::PutDone { query, result, .. } if query == put => Some(result),
        _ => None,
    });
    let placement = done.expect("the put finished").expect("and stored");
    (probed, stored_to, placement.stored)
}

/// Peer 2 is full for the key (not loaded: the walk goes on) and refuses; peer 3 accepts.
fn peer_2_refuses(id: NodeId) -> ResponseBody {
    ResponseBody::Probe {
        full: id == peer(2).id,
        loaded: false,
        accepts: id != peer(2).id,
        closer: Vec::new(),
    }
}

#[test]
fn a_put_stores_at_the_closest_node_that_accepts_and_asks_none_that_refuses() {
    // Peer 2 is the closest to the key, but said it refuses; the one store goes to peer 3.
    let mut n = node();
    let (probed, stored_to, stored) = put_answering(&mut n, peer_2_refuses);
    assert!(probed.contains(&peer(2).id), "{probed:?}");
    assert_eq!(stored_to, vec![peer(3).id]);
    assert!(stored.contains(&(Level::GLOBAL, peer(3).id)), "{stored:?}");
}

#[test]
fn a_classic_put_stores_at_the_k_closest_whatever_they_said() {
    let config = Config {
        sloppy: false,
        ..Config::default()
    };
    let mut n = Node::new(config, Contact::new(NodeId([1; 32]), vec![1])).unwrap();
    let (_, mut stored_to, _) = put_answering(&mut n, peer_2_refuses);
    stored_to.sort();
    assert_eq!(stored_to, vec![peer(2).id, peer(3).id]);
}

#[test]
fn a_renewal_reaching_a_full_and_loaded_holder_refreshes_it_there() {
    // Peer 2 is full and loaded, so the walk stops there; it holds our value, so it accepts,
    // and the renewal goes to it rather than spreading to peer 3.
    let mut n = node();
    let (_, stored_to, _) = put_answering(&mut n, |id| ResponseBody::Probe {
        full: id == peer(2).id,
        loaded: id == peer(2).id,
        accepts: true,
        closer: Vec::new(),
    });
    assert_eq!(stored_to, vec![peer(2).id]);
}

#[test]
fn a_full_node_accepts_a_renewal_from_a_holder_it_has_and_no_newcomer() {
    let now = epoch();
    let mut n = node();
    let key = Key([9; 32]);
    let ttl = Duration::from_secs(600);
    let ask = |n: &mut Node, from: Contact, body: RequestBody| {
        asked_by(n, now, from, 0, body)
            .into_iter()
            .find_map(|t| match t {
                Transmit::Response { resp, .. } => Some(resp.body),
                Transmit::Request { .. } => None,
            })
    };
    for i in 0..Config::default().values_per_key {
        let holder = peer(10 + i as u8);
        let value = crate::Value {
            holder: holder.clone(),
            pending: false,
        };
        let store = RequestBody::Store {
            level: Level::GLOBAL,
            key,
            value,
            ttl,
        };
        assert_eq!(
            ask(&mut n, holder, store),
            Some(ResponseBody::Stored { accepted: true })
        );
    }
    let probe = RequestBody::PutProbe {
        level: Level::GLOBAL,
        key,
        ttl,
    };
    let from_holder = ask(&mut n, peer(10), probe.clone());
    assert!(
        matches!(
            from_holder,
            Some(ResponseBody::Probe {
                full: true,
                accepts: true,
                ..
            })
        ),
        "{from_holder:?}"
    );
    let from_newcomer = ask(&mut n, peer(40), probe);
    assert!(
        matches!(
            from_newcomer,
            Some(ResponseBody::Probe {
                full: true,
                accepts: false,
                ..
            })
        ),
        "{from_newcomer:?}"
    );
}
