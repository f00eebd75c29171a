//! The nameserver over real sockets on loopback, queried with hickory-proto messages as a
//! resolver would send them.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dns::answer::Settings;
use dns::geo::{Geo, GeoDb, Location};
use dns::{Handler, Proxy, RosterSnapshot, Rrl, RrlConfig, StaticRoster, ZoneSuffix};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[derive(Serialize)]
struct City {
    location: Loc,
}
#[derive(Serialize)]
struct Loc {
    latitude: f64,
    longitude: f64,
}

/// 192.0.2.0/24 is in Paris, 198.51.100.0/24 in Tokyo (or the reverse, `swapped`).
fn geo_db(swapped: bool) -> Vec<u8> {
    let mut w = mmdb_writer::Writer::new("Reef-Test-City");
    let (paris, tokyo) = ((48.86, 2.35), (35.68, 139.69));
    let (a, b) = if swapped {
        (tokyo, paris)
    } else {
        (paris, tokyo)
    };
    for (net, (lat, lon)) in [("192.0.2.0/24", a), ("198.51.100.0/24", b)] {
        let city = City {
            location: Loc {
                latitude: lat,
                longitude: lon,
            },
        };
        w.insert(net.parse::<ipnet::IpNet>().unwrap(), &city)
            .unwrap();
    }
    if swapped {
        // One more network, so the new file differs in length too: two writes within one
        // tick of a coarse file-system clock share a modification time.
        let city = City {
            location: Loc {
                latitude: 0.0,
                longitude: 0.0,
            },
        };
        w.insert("203.0.113.0/24".parse::<ipnet::IpNet>().unwrap(), &city)
            .unwrap();
    }
    w.to_bytes().unwrap()
}

fn proxy(ip: &str, lat: f64, lon: f64) -> Proxy {
    Proxy {
        addr: ip.parse().unwrap(),
        location: Some(Location::Point { lat, lon }),
        spare: 1.0,
        overloaded: false,
        last_seen: Instant::now(),
        nameserver: true,
    }
}

/// Me (loopback) in Berlin; proxies in Paris and Tokyo, and `extra` more in Paris.
fn roster(extra: usize) -> StaticRoster {
    let mut others = vec![
        proxy("192.0.2.10", 48.86, 2.35),
        proxy("198.51.100.10", 35.68, 139.69),
    ];
    for i in 0..extra {
        others.push(proxy(&format!("192.0.2.{}", 100 + i), 48.86, 2.35));
    }
    StaticRoster::new(RosterSnapshot {
        me: proxy("127.0.0.1", 52.52, 13.40),
        others,
    })
}

async fn serve(settings: Settings, geo: Geo, rrl: RrlConfig, extra: usize) -> dns::Running {
    let handler = Handler::new(Arc::new(roster(extra)), geo, settings, Rrl::new(rrl));
    dns::start("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap()
}

fn settings() -> Settings {
    Settings::new(ZoneSuffix::parse("cdn").unwrap())
}

fn no_rrl() -> RrlConfig {
    RrlConfig {
        responses_per_second: 0,
        ..RrlConfig::default()
    }
}

fn query(name: &str, t: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut msg = Message::new(0x4242, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if let Some(e) = edns {
        msg.set_edns(e);
    }
    msg.to_vec().unwrap()
}

async fn udp(addr: SocketAddr, bytes: &[u8]) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

async fn tcp(addr: SocketAddr, bytes: &[u8]) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(bytes).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers.iter().filter_map(|r| r.data.ip_addr()).collect()
}

fn ecs(subnet: &str) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.options_mut()
        .insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
    e
}

#[tokio::test]
async fn answers_origins_with_live_proxies_and_nameservers() {
    let server = serve(settings(), Geo::none(), no_rrl(), 0).await;
    let addr = server.local_addr();
    let m = udp(addr, &query("WWW.Example.COM.cdn.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 2);
    for r in &m.answers {
        assert_eq!(r.name.to_ascii(), "WWW.Example.COM.cdn.", "case preserved");
        assert_eq!(r.ttl, 30);
    }
    assert!(
        m.authorities
            .iter()
            .all(|r| matches!(r.data, RData::NS(_)) && r.ttl == 3600)
    );
    assert_eq!(m.additionals.len(), 2, "glue for the NS records");
    // Apex SOA and NS; the nameserver names resolve to their glue.
    let soa = udp(addr, &query("cdn.", RecordType::SOA, None))
        .await
        .unwrap();
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    let ns = udp(addr, &query("cdn.", RecordType::NS, None))
        .await
        .unwrap();
    let RData::NS(first) = &ns.answers[0].data else {
        panic!("{ns:?}")
    };
    let glue = udp(addr, &query(&first.0.to_ascii(), RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(glue.answers.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn negative_answers_refusals_and_edns() {
    let server = serve(settings(), Geo::none(), no_rrl(), 0).await;
    let addr = server.local_addr();
    let nx = udp(addr, &query("bad_label.example.cdn.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(nx.authorities[0].data, RData::SOA(_)));
    let refused = udp(addr, &query("www.example.org.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    // One label holding a dot ("x.cdn" as a single label at the root) is not in the zone,
    // whatever its text form looks like.
    let mut msg = Message::new(9, MessageType::Query, OpCode::Query);
    let odd = Name::from_labels(vec![b"x.cdn".to_vec()]).unwrap();
    msg.add_query(Query::query(odd, RecordType::A));
    let m = udp(addr, &msg.to_vec().unwrap()).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // Above origin names but not one itself: NODATA, not NXDOMAIN (RFC 8020).
    let ent = udp(addr, &query("com.cdn.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
    let nodata = udp(addr, &query("www.example.com.cdn.", RecordType::MX, None))
        .await
        .unwrap();
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert!(matches!(nodata.authorities[0].data, RData::SOA(_)));
    // EDNS: the reply carries an OPT; an unknown version gets BADVERS (extended rcode 16).
    let mut e = Edns::new();
    e.set_max_payload(4096);
    let m = udp(
        addr,
        &query("www.example.com.cdn.", RecordType::A, Some(e.clone())),
    )
    .await
    .unwrap();
    let opt = m.edns.as_ref().expect("OPT in reply");
    assert_eq!(opt.max_payload(), 1232, "never more than we send");
    assert!(!opt.flags().dnssec_ok);
    // RFC 3225: DO is copied into the reply.
    let mut with_do = e.clone();
    with_do.flags_mut().dnssec_ok = true;
    let m = udp(
        addr,
        &query("www.example.com.cdn.", RecordType::A, Some(with_do)),
    )
    .await
    .unwrap();
    assert!(
        m.edns.as_ref().is_some_and(|o| o.flags().dnssec_ok),
        "DO copied"
    );
    assert_eq!(m.answers.len(), 2);
    e.set_version(1);
    let bad = udp(addr, &query("www.example.com.cdn.", RecordType::A, Some(e)))
        .await
        .unwrap();
    assert_eq!(u16::from(bad.metadata.response_code), 16);
    // An unknown EDNS option is ignored.
    let mut e = Edns::new();
    e.options_mut()
        .insert(EdnsOption::Unknown(65001, vec![1, 2, 3]));
    let m = udp(addr, &query("www.example.com.cdn.", RecordType::A, Some(e)))
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn client_subnet_picks_the_nearest_proxy_and_scopes_the_answer() {
    let geo = Geo::fixed(GeoDb::from_bytes(geo_db(false)).unwrap());
    let server = serve(settings(), geo, no_rrl(), 0).await;
    let addr = server.local_addr();
    let tokyo = udp(
        addr,
        &query(
            "www.example.com.cdn.",
            RecordType::A,
            Some(ecs("198.51.100.0/24")),
        ),
    )
    .await
    .unwrap();
    assert_eq!(addrs(&tokyo)[0], "198.51.100.10".parse::<IpAddr>().unwrap());
    let Some(EdnsOption::Subnet(cs)) = tokyo.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet))
    else {
        panic!("no ECS in the reply: {tokyo:?}")
    };
    assert_eq!((cs.source_prefix(), cs.scope_prefix()), (24, 24));
    let paris = udp(
        addr,
        &query(
            "www.example.com.cdn.",
            RecordType::A,
            Some(ecs("192.0.2.0/24")),
        ),
    )
    .await
    .unwrap();
    assert_eq!(addrs(&paris)[0], "192.0.2.10".parse::<IpAddr>().unwrap());
    // A query with a non-zero scope is malformed (RFC 7871).
    let mut e = Edns::new();
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        "192.0.2.0".parse().unwrap(),
        24,
        8,
    )));
    let bad = udp(addr, &query("www.example.com.cdn.", RecordType::A, Some(e)))
        .await
        .unwrap();
    assert_eq!(bad.metadata.response_code, ResponseCode::FormErr);
    server.shutdown().await;
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let mut s = settings();
    s.answer_count = 40;
    let server = serve(s, Geo::none(), no_rrl(), 40).await;
    let addr = server.local_addr();
    let q = query("www.example.com.cdn.", RecordType::A, None);
    let small = udp(addr, &q).await.unwrap();
    assert!(small.metadata.truncation, "over 512 bytes without EDNS: TC");
    let full = tcp(addr, &q).await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 40);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_packets_do_not_stop_the_server() {
    let server = serve(settings(), Geo::none(), no_rrl(), 0).await;
    let addr = server.local_addr();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01],
        // A header claiming one question, then a compression pointer to itself.
        vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ],
    ];
    let mut x: u32 = 12345;
    for len in [12usize, 40, 300, 1500] {
        junk.push(
            (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect(),
        );
    }
    for j in &junk {
        if let Some(m) = udp(addr, j).await {
            assert!(
                matches!(
                    m.metadata.response_code,
                    ResponseCode::FormErr
                        | ResponseCode::NotImp
                        | ResponseCode::Refused
                        | ResponseCode::NXDomain
                ),
                "unexpected answer to junk: {m:?}"
            );
        }
    }
    let m = udp(addr, &query("www.example.com.cdn.", RecordType::A, None))
        .await
        .unwrap();
    assert_eq!(m.answers.len(), 2, "still answering");
    server.shutdown().await;
}

/// A burst read and answered in batches: every query gets its own answer, none is lost or
/// answered twice.
#[tokio::test]
async fn a_burst_of_queries_gets_every_answer() {
    let server = serve(settings(), Geo::none(), no_rrl(), 3).await;
    let addr = server.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Within the default socket buffers (a few hundred small datagrams), so none is dropped.
    let burst = 100u16;
    for id in 0..burst {
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        let name = format!("www.site{id}.example.com.cdn.");
        msg.add_query(Query::query(
            Name::from_ascii(&name).unwrap(),
            RecordType::A,
        ));
        sock.send_to(&msg.to_vec().unwrap(), addr).await.unwrap();
    }
    let mut seen = vec![false; usize::from(burst)];
    let mut buf = vec![0u8; 4096];
    for _ in 0..burst {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer is missing")
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        let id = usize::from(m.metadata.id);
        assert!(!seen[id], "answered twice: {id}");
        seen[id] = true;
        let q = m.queries[0].name().to_string();
        assert_eq!(
            q,
            format!("www.site{id}.example.com.cdn."),
            "the answer to its own question"
        );
        assert_eq!(m.answers.len(), 2);
    }
    assert!(seen.iter().all(|s| *s));
    server.shutdown().await;
}

/// The UDP loop's own checks: a response is never answered (two servers must not bounce
/// packets off each other), a query that does not parse gets FORMERR with its id, and a
/// stopped server answers nothing.
#[tokio::test]
async fn udp_ignores_responses_refuses_garbage_and_stops() {
    let server = serve(settings(), Geo::none(), no_rrl(), 0).await;
    let addr = server.local_addr();
    let mut response = query("www.example.com.cdn.", RecordType::A, None);
    response[2] |= 0x80; // QR: this is a response
    assert!(
        udp(addr, &response).await.is_none(),
        "a response was answered"
    );
    // A header claiming one question, then a compression pointer to itself.
    let looped = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
    ];
    let m = udp(addr, &looped).await.expect("no FORMERR");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    assert!(m.queries.is_empty(), "the unparsed question is not echoed");
    assert!(server.stats().malformed.load(Ordering::Relaxed) >= 1);
    let ok = query("www.example.com.cdn.", RecordType::A, None);
    assert!(udp(addr, &ok).await.is_some(), "still answering");
    server.shutdown().await;
    assert!(udp(addr, &ok).await.is_none(), "answered after shutdown");
}

#[tokio::test]
async fn rate_limiting_drops_and_slips_a_flood_but_not_tcp() {
    let rrl = RrlConfig {
        responses_per_second: 5,
        slip: 2,
        max_prefixes: 100,
    };
    let server = serve(settings(), Geo::none(), rrl, 0).await;
    let addr = server.local_addr();
    let q = query("www.example.com.cdn.", RecordType::A, None);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..40 {
        sock.send_to(&q, addr).await.unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty());
            truncated += 1;
        } else {
            full += 1;
        }
    }
    assert!(full <= 7, "{full} full answers to a flood of 40 at 5/s");
    assert!(
        truncated >= 10,
        "every second limited response slips ({truncated})"
    );
    assert!(full + truncated < 40, "some were dropped");
    let stats = server.stats();
    assert!(stats.rrl_dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // TCP is never limited.
    assert_eq!(tcp(addr, &q).await.answers.len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn geoip_reloads_under_load_without_losing_a_query() {
    let dir = std::env::temp_dir().join(format!("reef-dns-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("city.mmdb");
    std::fs::write(&path, geo_db(false)).unwrap();
    let geo = Geo::open(&path).unwrap();
    let watcher = geo.watch(path.clone(), Duration::from_millis(50));
    let server = serve(settings(), geo, no_rrl(), 0).await;
    let addr = server.local_addr();
    let q = query(
        "www.example.com.cdn.",
        RecordType::A,
        Some(ecs("198.51.100.0/24")),
    );
    let tokyo: IpAddr = "198.51.100.10".parse().unwrap();
    let paris: IpAddr = "192.0.2.10".parse().unwrap();
    assert_eq!(addrs(&udp(addr, &q).await.unwrap())[0], tokyo);
    // Swap the file (write elsewhere, rename into place) while querying continuously.
    let tmp = dir.join("city.mmdb.new");
    std::fs::write(&tmp, geo_db(true)).unwrap();
    // Make sure the modification time differs even on coarse clocks.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::rename(&tmp, &path).unwrap();
    let mut answered = 0;
    let mut moved = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = udp(addr, &q)
            .await
            .expect("every query answered during the reload");
        answered += 1;
        if addrs(&m)[0] == paris {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        moved,
        "the reloaded database places the subnet in Paris ({answered} queries)"
    );
    watcher.abort();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
