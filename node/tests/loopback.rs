//! Multi-process tests: real `reef` processes on loopback, ports from the OS.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `reef node`; killed when dropped.
struct Reef {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Reef {
    fn start(args: &[&str]) -> Reef {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reef"))
            .arg("node")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--dns",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--run-for",
                "30",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn reef");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Reef { child, lines }
    }

    /// The first output line containing `needle`, within 10 s.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line with {needle:?}: {e}"),
            }
        }
    }
}

impl Drop for Reef {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn second_node_joins_the_first_through_bootstrap() {
    let first = Reef::start(&[]);
    let line = first.wait_for("DHT listening on udp ");
    let addr = line
        .split("udp ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address in the start-up line")
        .to_string();
    let second = Reef::start(&["--bootstrap", &addr]);
    let done = second.wait_for("bootstrap done");
    assert!(done.contains("1 contacts known"), "{done}");
}

#[test]
fn refuses_to_bind_beyond_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args([
            "node",
            "--listen",
            "0.0.0.0:0",
            "--dns",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--run-for",
            "1",
        ])
        .output()
        .expect("run reef");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn node_answers_dns_for_the_zone_with_itself() {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    let node = Reef::start(&["--zone", "cdn.test"]);
    let line = node.wait_for("DNS for zone");
    let addr: std::net::SocketAddr = line
        .split("udp+tcp ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("DNS address in the start-up line");
    let mut msg = Message::new(7, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("www.example.com.cdn.test.").expect("name"),
        RecordType::A,
    ));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&msg.to_vec().expect("encode"), addr)
        .expect("send");
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    let resp = Message::from_vec(&buf[..n]).expect("decode");
    assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
    let ips: Vec<_> = resp
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .collect();
    assert_eq!(ips, vec![std::net::IpAddr::from([127, 0, 0, 1])]);
}

#[test]
fn node_proxies_and_caches_an_origin() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A tiny origin: answers every request with a cacheable page and counts them.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let port = origin.local_addr().expect("addr").port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in origin.incoming().take(10) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            counter.fetch_add(1, Ordering::SeqCst);
            let body = "hello from the origin";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let node = Reef::start(&[
        "--allow-private-origins",
        "--resolve",
        "origin.test=127.0.0.1",
        "--access-log",
    ]);
    let line = node.wait_for("caching proxy on http://");
    let http = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("HTTP address in the start-up line")
        .to_string();
    let get = || {
        let mut s = std::net::TcpStream::connect(&http).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            s,
            "GET /page HTTP/1.1\r\nHost: origin.test.{port}.cdn\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let first = get();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.ends_with("hello from the origin"), "{first}");
    let second = get();
    assert!(
        second
            .to_ascii_lowercase()
            .contains("cache-status: reef; hit"),
        "{second}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second request came from the cache"
    );
    let logged = node.wait_for("\"GET /page HTTP/1.1\"");
    assert!(logged.starts_with("127.0.0.1 - - ["), "{logged}");
    assert!(logged.ends_with(" 200 21"), "{logged}");
}

#[test]
fn node_stops_cleanly_on_sigterm() {
    let mut node = Reef::start(&[]);
    node.wait_for("caching proxy on http://");
    let pid = node.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    node.wait_for("stopping (SIGTERM)");
    let exit = node.child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn options_can_come_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["node", "--run-for", "1"])
        .env("REEF_LISTEN", "127.0.0.1:0")
        .env("REEF_DNS", "127.0.0.1:0")
        .env("REEF_HTTP", "127.0.0.1:0")
        .env("REEF_ZONE", "env.example")
        .output()
        .expect("run reef");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DNS for zone env.example"), "{stdout}");
}
