//! Test harness: real `reef node` processes, a counting origin, and a plain HTTP/1.1 client,
//! all on loopback with ports from the OS.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test file uses part of it

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A running `reef node`; killed when dropped.
pub struct Reef {
    pub child: Child,
    pub info: serde_json::Value,
    lines: mpsc::Receiver<String>,
}

/// The options every test node gets: ports from the OS, private origins allowed.
pub const BASE: [&str; 11] = [
    "--p2p",
    "/ip4/127.0.0.1/tcp/0",
    "--http",
    "127.0.0.1:0",
    "--dns",
    "127.0.0.1:0",
    "--admin",
    "127.0.0.1:0",
    "--allow-private-origins",
    "--run-for",
    "120",
];

impl Reef {
    /// Starts a node with [`BASE`] and `args`, and waits for its listening line.
    pub fn start(args: &[&str]) -> Reef {
        Reef::start_with(&BASE, args)
    }

    /// Starts a node whose proxy listens on `http` (e.g. `127.0.0.2:0`).
    pub fn start_on(http: &str, args: &[&str]) -> Reef {
        let mut base = BASE;
        base[3] = http;
        Reef::start_with(&base, args)
    }

    /// Starts a node with exactly `base` and `args`.
    pub fn start_with(base: &[&str], args: &[&str]) -> Reef {
        // REEF_TEST_LOGS=DIR keeps each node's log (RUST_LOG from REEF_TEST_RUST_LOG).
        let stderr = match std::env::var_os("REEF_TEST_LOGS") {
            Some(dir) => {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let path =
                    std::path::Path::new(&dir).join(format!("node-{}-{n}.log", std::process::id()));
                Stdio::from(std::fs::File::create(path).expect("log file"))
            }
            None => Stdio::null(),
        };
        let level = std::env::var("REEF_TEST_RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = Command::new(env!("CARGO_BIN_EXE_reef"))
            .arg("node")
            .args(base)
            .args(args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
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
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the node prints its listening line");
        let info: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
        assert_eq!(info["event"], "listening", "{first}");
        Reef { child, info, lines }
    }

    fn addr(&self, field: &str) -> SocketAddr {
        self.info[field].as_str().unwrap().parse().unwrap()
    }

    pub fn http(&self) -> SocketAddr {
        self.addr("http")
    }

    pub fn admin(&self) -> SocketAddr {
        self.addr("admin")
    }

    pub fn p2p(&self) -> String {
        self.info["p2p"].as_str().unwrap().to_string()
    }

    /// Its name in `Cache-Status` by default: `reef-` and the end of its peer ID.
    pub fn name(&self) -> String {
        let id = self.info["peer_id"].as_str().unwrap();
        format!("reef-{}", &id[id.len() - 8..])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's `/status`.
    pub fn status(&self) -> serde_json::Value {
        let r = get(self.admin(), "admin", "/status", &[]);
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Waits until the node's routing table holds at least `n` peers.
    pub fn wait_peers(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status();
            if s["peers"].as_array().map_or(0, |p| p.len()) >= n {
                return;
            }
            assert!(Instant::now() < deadline, "fewer than {n} peers: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fetches `path` of origin `host` through this node.
    pub fn fetch(&self, host: &str, path: &str) -> Reply {
        get(self.http(), host, path, &[])
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Reef {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.as_str())
    }

    /// The answering node's own `Cache-Status` entry (the last; a peer's comes before it).
    pub fn own_entry(&self) -> &str {
        self.header("cache-status")
            .rsplit(", ")
            .next()
            .unwrap_or("")
    }

    /// Whether the answering node served it from its own cache.
    pub fn is_hit(&self) -> bool {
        self.own_entry()
            .split("; ")
            .nth(1)
            .is_some_and(|p| p == "hit")
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..eol]).unwrap_or("0");
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            out.extend_from_slice(&raw[..size.min(raw.len())]);
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
}

/// A GET with `Connection: close`, read to the end.
pub fn get(addr: SocketAddr, host: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    request(addr, "GET", host, path, extra, b"")
}

/// A POST of `body`.
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    let len = body.len().to_string();
    request(
        addr,
        "POST",
        "admin",
        path,
        &[("Content-Length", &len)],
        body,
    )
}

fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// One object of the origin.
#[derive(Clone)]
pub struct Object {
    pub body: Vec<u8>,
    pub cache_control: &'static str,
    /// Pause after each 64 KiB written (a slow origin).
    pub pace: Option<Duration>,
    /// Pause before the response head (an origin under load).
    pub delay: Option<Duration>,
}

impl Object {
    pub fn fresh(body: Vec<u8>) -> Object {
        Object {
            body,
            cache_control: "max-age=3600",
            pace: None,
            delay: None,
        }
    }
}

/// A loopback origin that counts requests per path and supports `Range` with `If-Range`.
pub struct Origin {
    pub addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    objects: Objects,
    stop: Arc<AtomicBool>,
}

fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}\"")
}

/// The origin's objects by path (changeable while it runs).
type Objects = Arc<Mutex<HashMap<String, Object>>>;

fn serve_origin(mut s: TcpStream, objects: &Objects, counts: &Mutex<HashMap<String, usize>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    let obj = objects.lock().unwrap().get(&path).cloned();
    let Some(obj) = obj else {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if let Some(d) = obj.delay {
        std::thread::sleep(d);
    }
    let tag = etag(&obj.body);
    let from = header("range")
        .and_then(|r| r.strip_prefix("bytes=").map(str::to_string))
        .and_then(|r| r.strip_suffix('-').and_then(|n| n.parse::<usize>().ok()))
        .filter(|_| header("if-range").is_none_or(|v| v == tag))
        .filter(|n| *n < obj.body.len());
    let (status, body, range) = match from {
        Some(n) => (
            "206 Partial Content",
            &obj.body[n..],
            format!(
                "Content-Range: bytes {n}-{}/{}\r\n",
                obj.body.len() - 1,
                obj.body.len()
            ),
        ),
        None => ("200 OK", &obj.body[..], String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nCache-Control: {}\r\nETag: {tag}\r\nAccept-Ranges: bytes\r\n{range}Connection: close\r\n\r\n",
        body.len(),
        obj.cache_control
    );
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    for piece in body.chunks(64 << 10) {
        if s.write_all(piece).is_err() {
            return;
        }
        if let Some(p) = obj.pace {
            std::thread::sleep(p);
        }
    }
}

impl Origin {
    pub fn start(objects: HashMap<String, Object>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let objects = Arc::new(Mutex::new(objects));
        let (c, st, o) = (counts.clone(), stop.clone(), objects.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let (objects, c) = (o.clone(), c.clone());
                        std::thread::spawn(move || serve_origin(s, &objects, &c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Origin {
            addr,
            counts,
            objects,
            stop,
        }
    }

    /// Serves `object` at `path` from now on (`None`: 404).
    pub fn set(&self, path: &str, object: Option<Object>) {
        let mut objects = self.objects.lock().unwrap();
        match object {
            Some(o) => objects.insert(path.to_string(), o),
            None => objects.remove(path),
        };
    }

    /// Requests for `path` so far.
    pub fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The name nodes reach this origin by (with `--resolve origin.test=127.0.0.1`).
    pub fn host(&self) -> String {
        format!("origin.test.{}.cdn", self.addr.port())
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Deterministic bytes of length `n` (seeded).
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A DNS query for `name` (type A) to `node`'s nameserver over UDP, sent up to three times
/// as a resolver would (UDP may drop a datagram when the server's buffer is full, as after
/// a flood of garbage on a loaded machine).
pub fn dns_query(node: &Reef, name: &str) -> hickory_proto::op::Message {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let addr: SocketAddr = node.info["dns"].as_str().unwrap().parse().unwrap();
    let mut msg = Message::new(1, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        sock.send_to(&msg.to_vec().unwrap(), addr).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Message::from_vec(&buf[..n]).unwrap();
        }
    }
    panic!("no answer from {addr} to three tries")
}

/// The A records `node`'s nameserver gives for `name`.
pub fn resolve_a(node: &Reef, name: &str) -> Vec<std::net::IpAddr> {
    dns_query(node, name)
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .collect()
}
