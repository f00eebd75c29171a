//! Cached bodies that also lie in disk-cache files go out on plain HTTP/1.1 with sendfile,
//! and clients get exactly the bytes they asked for: whole bodies, ranges, pipelined
//! responses, and after a restart. Real sockets, a real origin, a real disk tier.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxy::{Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIG: usize = 300_000;
const SMALL: usize = 1_000;
/// Under hyper's write buffer (64 KiB): its last (only) chunk is still being written after
/// hyper has dropped the body.
const MID: usize = 40_000;
/// Over `MAX_SEND_FROM_FILE`: written from memory, which costs less at that size.
const HUGE: usize = 1 << 20;
/// In `HEAD_ALONE`: the head is written by itself before the body's sendfile.
const HUNDRED: usize = 100 << 10;

/// `len` bytes of a pattern that depends on `seed`.
fn pattern(len: usize, seed: usize) -> Bytes {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

/// The body the origin serves at `path`: `/big*` and `/small`.
fn body_of(path: &str) -> Bytes {
    match path {
        "/small" => pattern(SMALL, 0),
        "/mid" => pattern(MID, 1),
        "/huge" => pattern(HUGE, 2),
        "/hundred" => pattern(HUNDRED, 3),
        other => pattern(BIG, other.len()),
    }
}

async fn origin() -> SocketAddr {
    common::origin(|req: Request<hyper::body::Incoming>| {
        let r = common::cacheable(body_of(req.uri().path()), 600);
        async move { r }
    })
    .await
}

struct Setup {
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    host: String,
    dir: PathBuf,
    /// Whether the directory outlives the setup (for the next life of a restarted proxy).
    keep: bool,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reef-sendfile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A proxy in front of `port` with a disk tier in `dir` keeping up to `open_files` open.
async fn setup(port: u16, dir: PathBuf, open_files: usize) -> Setup {
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = true;
    config
        .resolve
        .insert("origin.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let tier = proxy::disk::DiskTier::open(&dir, 64 << 20)
        .unwrap()
        .with_open_files(open_files);
    config.disk = Some(Arc::new(tier));
    let proxy = Proxy::new(config).unwrap();
    let addr = common::serve(proxy.clone()).await;
    Setup {
        proxy,
        addr,
        host: format!("origin.test.{port}.cdn"),
        dir,
        keep: false,
    }
}

impl Setup {
    /// (status, body) of a GET of `path` with `extra` headers.
    async fn get(&self, path: &str, extra: &[(&str, &str)]) -> (u16, Bytes) {
        let (status, _, body) = common::get(self.addr, &self.host, path, extra).await;
        (status, body)
    }

    /// Waits until `n` objects are in the disk tier.
    async fn on_disk(&self, n: usize) {
        for _ in 0..500 {
            if self.proxy.store().disk().is_some_and(|d| d.len() == n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the objects never reached the disk tier");
    }

    /// Sends GETs of `paths` on one connection, all at once (the last asks to close), and
    /// checks that the answers come back in order, each a 200 head followed by exactly its
    /// body of `len` bytes.
    async fn pipelined(&self, paths: &[&str], len: usize) {
        let mut conn = TcpStream::connect(self.addr).await.unwrap();
        let mut raw = String::new();
        for (i, p) in paths.iter().enumerate() {
            let close = if i + 1 == paths.len() {
                "Connection: close\r\n"
            } else {
                ""
            };
            raw += &format!("GET {p} HTTP/1.1\r\nHost: {}\r\n{close}\r\n", self.host);
        }
        conn.write_all(raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let mut rest = &out[..];
        for p in paths {
            let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(head.contains(&format!("content-length: {len}")), "{head}");
            assert!(rest[end..end + len] == body_of(p)[..], "body of {p}");
            rest = &rest[end + len..];
        }
        assert!(rest.is_empty());
    }

    /// Three hits of `path` (a body of `len` bytes, in the disk tier): each whole, and each
    /// sent from its file.
    async fn hits_sent_from_file(&self, path: &str, len: usize) {
        for _ in 0..3 {
            let before = self.sent_from_files();
            assert_eq!(self.get(path, &[]).await, (200, body_of(path)));
            assert_eq!(self.sent_from_files() - before, len as u64);
        }
    }

    /// Stores `path` and `/big` (which sendfile serves) in the disk tier and checks that
    /// only `/big` holds an open file, and that `path` is still served whole.
    async fn only_big_holds_a_file_beside(&self, path: &str) {
        assert_eq!(self.get(path, &[]).await, (200, body_of(path)));
        self.get("/big", &[]).await;
        self.on_disk(2).await;
        assert_eq!(self.proxy.store().disk().unwrap().open_files(), 1);
        assert_eq!(self.get(path, &[]).await, (200, body_of(path)));
    }

    fn sent_from_files(&self) -> u64 {
        self.proxy.stats().snapshot().sent_from_files
    }
}

#[tokio::test]
async fn a_hit_is_sent_from_its_disk_file_whole_and_in_ranges() {
    let port = origin().await.port();
    let s = setup(port, temp("hit"), 16).await;
    let want = body_of("/big");
    assert_eq!(s.get("/big", &[]).await, (200, want.clone()));
    s.on_disk(1).await;
    assert_eq!(s.proxy.store().disk().unwrap().open_files(), 1);

    let before = s.sent_from_files();
    assert_eq!(s.get("/big", &[]).await, (200, want.clone()));
    assert_eq!(s.sent_from_files() - before, BIG as u64);

    let before = s.sent_from_files();
    let (status, part) = s.get("/big", &[("range", "bytes=1000-200999")]).await;
    assert_eq!((status, part), (206, want.slice(1000..201_000)));
    assert_eq!(s.sent_from_files() - before, 200_000);

    // A multipart answer: the part headers are written, the parts sent from the file.
    let (status, multi) = s
        .get("/big", &[("range", "bytes=0-99999,200000-299999")])
        .await;
    assert_eq!(status, 206);
    let text = multi.as_ref();
    for (a, b) in [(0usize, 99_999usize), (200_000, 299_999)] {
        let head = format!("content-range: bytes {a}-{b}/{BIG}\r\n\r\n");
        let at = text
            .windows(head.len())
            .position(|w| w == head.as_bytes())
            .unwrap()
            + head.len();
        assert!(text[at..at + b + 1 - a] == want[a..=b], "part {a}-{b}");
    }
}

#[tokio::test]
async fn small_bodies_and_heads_are_written_from_memory() {
    let port = origin().await.port();
    let s = setup(port, temp("small"), 16).await;
    s.only_big_holds_a_file_beside("/small").await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let head = Request::head(format!("http://{}/big", s.addr))
        .header("host", &s.host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.request(head).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    assert_eq!(s.sent_from_files(), 0);
}

#[tokio::test]
async fn a_body_shorter_than_hypers_write_buffer_is_sent_from_its_file_too() {
    let port = origin().await.port();
    let s = setup(port, temp("mid"), 16).await;
    s.get("/mid", &[]).await;
    s.on_disk(1).await;
    s.hits_sent_from_file("/mid", MID).await;
}

#[tokio::test]
async fn a_body_whose_head_goes_alone_is_sent_whole_from_its_file() {
    assert!(proxy::zerocopy::HEAD_ALONE.contains(&(HUNDRED as u64)));
    let port = origin().await.port();
    let s = setup(port, temp("hundred"), 16).await;
    s.get("/hundred", &[]).await;
    s.on_disk(1).await;
    s.hits_sent_from_file("/hundred", HUNDRED).await;
    // Pipelined: each head, written alone, is followed by its own body.
    s.pipelined(&["/hundred"; 3], HUNDRED).await;
}

#[tokio::test]
async fn bodies_too_large_for_sendfile_to_pay_are_written_from_memory() {
    assert!(HUGE as u64 > proxy::zerocopy::MAX_SEND_FROM_FILE);
    let port = origin().await.port();
    let s = setup(port, temp("huge"), 16).await;
    s.only_big_holds_a_file_beside("/huge").await;
    assert_eq!(s.sent_from_files(), 0);
}

#[tokio::test]
async fn with_no_files_allowed_open_bodies_are_written_from_memory() {
    let port = origin().await.port();
    let s = setup(port, temp("none"), 0).await;
    s.get("/big", &[]).await;
    s.on_disk(1).await;
    assert_eq!(s.get("/big", &[]).await, (200, body_of("/big")));
    assert_eq!(s.proxy.store().disk().unwrap().open_files(), 0);
    assert_eq!(s.sent_from_files(), 0);
}

#[tokio::test]
async fn pipelined_hits_each_get_their_own_bytes() {
    let port = origin().await.port();
    let s = setup(port, temp("pipelined"), 16).await;
    let paths = ["/big", "/bigger", "/biggest"];
    for p in paths {
        s.get(p, &[]).await;
    }
    s.on_disk(3).await;
    s.pipelined(&["/big", "/bigger", "/biggest", "/big"], BIG)
        .await;
    assert_eq!(s.sent_from_files(), 4 * BIG as u64);
}

#[tokio::test]
async fn after_a_restart_hits_are_sent_from_the_files_read_back() {
    let port = origin().await.port();
    let dir = temp("restart");
    {
        let mut s = setup(port, dir.clone(), 16).await;
        s.get("/big", &[]).await;
        s.on_disk(1).await;
        s.keep = true;
    }
    let s = setup(port, dir, 16).await;
    // The first hit reads the entry back (checking its digest); the next is sent from it.
    assert_eq!(s.get("/big", &[]).await, (200, body_of("/big")));
    let before = s.sent_from_files();
    assert_eq!(s.get("/big", &[]).await, (200, body_of("/big")));
    assert_eq!(s.sent_from_files() - before, BIG as u64);
}
