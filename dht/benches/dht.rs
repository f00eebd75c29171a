//! Criterion benchmarks of the hot paths: wire encode/decode, routing-table insert and
//! closest(k). Run with `cargo bench -p reef-dht`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dht::wire::{
    ClusterDescriptor, ClusterId, Header, Level, Request, RequestBody, Response, ResponseBody,
    Value, decode_request, decode_response, encode_request, encode_response,
};
use dht::{Config, Contact, Key, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MAX: usize = 64 * 1024;

fn ids(n: usize, seed: u64) -> Vec<[u8; 32]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        })
        .collect()
}

/// A multiaddr-sized address (e.g. /ip4/203.0.113.7/tcp/4001/p2p/<peer id>).
fn contact(id: [u8; 32]) -> Contact {
    Contact::new(NodeId(id), vec![7u8; 48])
}

fn header() -> Header {
    Header {
        clusters: (0..2)
            .map(|i| ClusterDescriptor {
                id: ClusterId(i),
                age: Duration::from_secs(3600),
                size: 120,
            })
            .collect(),
    }
}

fn wire(c: &mut Criterion) {
    let req = Request {
        header: header(),
        body: RequestBody::Get {
            level: Level(2),
            key: Key::from_url("http://www.example.com/index.html"),
        },
    };
    let resp = Response {
        header: header(),
        body: ResponseBody::Values {
            values: ids(4, 1)
                .into_iter()
                .map(|id| Value {
                    holder: contact(id),
                    pending: false,
                })
                .collect(),
            closer: ids(20, 2).into_iter().map(contact).collect(),
        },
    };
    let req_bytes = encode_request(&req, MAX).expect("encodes");
    let resp_bytes = encode_response(&resp, MAX).expect("encodes");
    let mut g = c.benchmark_group("wire");
    g.bench_function("encode_get_request", |b| {
        b.iter(|| encode_request(black_box(&req), MAX))
    });
    g.bench_function("decode_get_request", |b| {
        b.iter(|| decode_request(black_box(&req_bytes), MAX))
    });
    g.bench_function(
        format!("encode_values_response_{}B", resp_bytes.len()),
        |b| b.iter(|| encode_response(black_box(&resp), MAX)),
    );
    g.bench_function(
        format!("decode_values_response_{}B", resp_bytes.len()),
        |b| b.iter(|| decode_response(black_box(&resp_bytes), MAX)),
    );
    g.finish();
}

/// The routing table is internal; it is exercised through a node answering `FindNode`, which
/// is exactly insert (the requester is recorded) plus closest(k) (the answer).
fn routing(c: &mut Criterion) {
    let now = Instant::now();
    let peers: Vec<Contact> = ids(2000, 3).into_iter().map(contact).collect();
    let mut node = dht::Node::new(Config::default(), contact([0; 32])).expect("config");
    for (i, p) in peers.iter().enumerate() {
        let req = Request {
            header: Header::default(),
            body: RequestBody::Ping,
        };
        node.handle_input(
            now,
            dht::Input::Request {
                from: p.clone(),
                inbound: dht::InboundId(i as u64),
                req,
            },
        );
        while node.poll_transmit().is_some() {}
    }
    let table_size: usize = node.snapshot(now).levels[0]
        .buckets
        .iter()
        .map(|(_, p)| p.len())
        .sum();
    let mut g = c.benchmark_group("routing");
    let targets = ids(256, 4);
    let mut i = 0usize;
    g.bench_function(format!("find_node_closest20_table{table_size}"), |b| {
        b.iter(|| {
            i = (i + 1) % targets.len();
            let req = Request {
                header: Header::default(),
                body: RequestBody::FindNode {
                    level: Level(0),
                    target: Key(targets[i]),
                },
            };
            node.handle_input(
                now,
                dht::Input::Request {
                    from: peers[i].clone(),
                    inbound: dht::InboundId(0),
                    req,
                },
            );
            black_box(node.poll_transmit())
        })
    });
    g.bench_function("insert_2000_contacts_into_empty_table", |b| {
        b.iter_batched(
            || dht::Node::new(Config::default(), contact([0; 32])).expect("config"),
            |mut fresh| {
                for (i, p) in peers.iter().enumerate() {
                    let req = Request {
                        header: Header::default(),
                        body: RequestBody::Ping,
                    };
                    fresh.handle_input(
                        now,
                        dht::Input::Request {
                            from: p.clone(),
                            inbound: dht::InboundId(i as u64),
                            req,
                        },
                    );
                    while fresh.poll_transmit().is_some() {}
                }
                fresh
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, wire, routing);
criterion_main!(benches);
