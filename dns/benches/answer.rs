//! Cost of one answer: the pure function, and one datagram through the handler (parse,
//! answer, encode) without sockets. `scripts/bench-dns.sh` measures the server end to end against Knot.
//! Run with `cargo bench -p reef-dns --bench answer`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use dns::answer::{ClientInfo, QType, Question, Settings, answer};
use dns::{
    Geo, Handler, Location, Proxy, RosterSnapshot, Rrl, RrlConfig, StaticRoster, ZoneSuffix,
};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RecordType};

fn roster(n: usize) -> RosterSnapshot {
    let now = Instant::now();
    let proxy = |i: usize| Proxy {
        addr: IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            1 + (i / 250) as u8,
            1 + (i % 250) as u8,
        )),
        location: Some(Location::Point {
            lat: -60.0 + (i * 37 % 120) as f64,
            lon: -180.0 + (i * 71 % 360) as f64,
        }),
        spare: 1.0 + (i % 5) as f64,
        overloaded: false,
        last_seen: now,
        nameserver: i.is_multiple_of(10),
    };
    RosterSnapshot {
        me: proxy(0),
        others: (1..n).map(proxy).collect(),
    }
}

fn bench(c: &mut Criterion) {
    let settings = {
        let mut s = Settings::new(ZoneSuffix::parse("cdn.test").expect("zone"));
        s.answer_count = 3;
        s
    };
    let r = roster(50);
    let client = ClientInfo {
        resolver: "127.0.0.1".parse().expect("ip"),
        subnet: None,
    };
    let located = |_| {
        Some(Location::Point {
            lat: 48.0,
            lon: 2.0,
        })
    };
    let unknown = |_| None;
    let now = Instant::now();
    let mut turn = 0u64;
    let q = Question {
        name: "www.site1.example.com.cdn.test.",
        qtype: QType::A,
    };
    c.bench_function("answer/50_proxies_client_located", |b| {
        b.iter(|| {
            turn += 1;
            black_box(answer(&q, &client, &r, now, &located, &settings, turn))
        })
    });
    c.bench_function("answer/50_proxies_client_unknown", |b| {
        b.iter(|| {
            turn += 1;
            black_box(answer(&q, &client, &r, now, &unknown, &settings, turn))
        })
    });

    let handler = Handler::new(
        Arc::new(StaticRoster::new(roster(50))),
        Geo::none(),
        settings,
        Rrl::new(RrlConfig {
            responses_per_second: 0,
            ..RrlConfig::default()
        }),
    );
    let mut msg = Message::new(7, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("www.site1.example.com.cdn.test.").expect("name"),
        RecordType::A,
    ));
    let bytes = msg.to_vec().expect("encode");
    let src: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // What a UDP loop does for one datagram (the hand-written reply, for this query).
    c.bench_function("handler/parse_answer_encode_50_proxies", |b| {
        b.iter(|| black_box(rt.block_on(handler.answer_datagram(&bytes, src))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
