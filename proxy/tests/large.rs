//! Objects larger than the memory a body may use: they stream through a file and are never
//! held whole in memory; they are cached on disk only, or without a disk tier kept in their
//! file within the memory budget, or passed through if larger than it. Real sockets, a real
//! origin.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Request;
use proxy::{Config, Proxy};

const SIZE: usize = 3_000_000;
/// Bytes of one body held in memory at most, in these tests.
const SPILL_ABOVE: u64 = 256 << 10;

fn big() -> Bytes {
    (0..SIZE).map(|i| (i * 7 % 251) as u8).collect()
}

/// An origin answering every path with the same 3 MB (cacheable), counting requests for
/// `/big`.
async fn origin(count: Arc<AtomicUsize>) -> SocketAddr {
    let body = big();
    common::origin(move |req: Request<hyper::body::Incoming>| {
        if req.uri().path() == "/big" {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let r = common::cacheable(body.clone(), 60);
        async move { r }
    })
    .await
}

struct Setup {
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    host: String,
    /// The object's cache key.
    key: String,
    count: Arc<AtomicUsize>,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A proxy whose bodies spill beyond [`SPILL_ABOVE`], with a disk tier or not, and a memory
/// budget of `memory` bytes.
async fn setup(name: &str, disk: bool, memory: u64) -> Setup {
    let count = Arc::new(AtomicUsize::new(0));
    let port = origin(count.clone()).await.port();
    let dir = std::env::temp_dir().join(format!("reef-large-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("spill")).unwrap();
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn").unwrap());
    config.allow_private_origins = true;
    config
        .resolve
        .insert("origin.test".into(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    config.spill_above = SPILL_ABOVE;
    config.cache_bytes = memory;
    if disk {
        let tier = proxy::disk::DiskTier::open(&dir.join("cache"), 64 << 20).unwrap();
        config.disk = Some(Arc::new(tier));
    } else {
        config.spill_dir = Some(dir.join("spill"));
    }
    let proxy = Proxy::new(config).unwrap();
    let addr = common::serve(proxy.clone()).await;
    Setup {
        proxy,
        addr,
        host: format!("origin.test.{port}.cdn"),
        key: format!("http://origin.test:{port}/big"),
        count,
        dir,
    }
}

impl Setup {
    /// (status, Cache-Status, body) of a GET with `extra` headers.
    async fn get(&self, extra: &[(&str, &str)]) -> (u16, String, Bytes) {
        let (status, headers, body) = common::get(self.addr, &self.host, "/big", extra).await;
        let cs = headers
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, cs, body)
    }

    /// Waits for the background disk write of the object.
    async fn on_disk(&self) {
        for _ in 0..200 {
            if self.proxy.store().disk().is_some_and(|d| d.len() == 1) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the object never reached the disk tier");
    }
}

#[tokio::test]
async fn an_object_larger_than_memory_is_cached_on_disk_and_served_whole() {
    let s = setup("disk", true, 256 << 20).await;
    // Clients collapsed on the first fetch each get the whole body.
    let (a, b) = tokio::join!(s.get(&[]), s.get(&[]));
    for (status, _, body) in [&a, &b] {
        assert_eq!(*status, 200);
        assert!(*body == big(), "a collapsed client got the wrong bytes");
    }
    s.on_disk().await;
    // The disk copy is read in place, not into memory.
    let tier = s.proxy.store().disk().unwrap();
    let on_disk = tier.read(&s.key).expect("on disk");
    assert_eq!(on_disk.body.in_memory(), 0);
    let mut bytes = Vec::new();
    on_disk.body.write_to(&mut bytes).unwrap();
    assert!(bytes == big());
    let (status, cs, body) = s.get(&[]).await;
    assert_eq!(status, 200);
    assert!(cs.contains("; hit"), "{cs}");
    assert!(body == big(), "the disk copy is the object");
    // A range deep inside is served from the file.
    let (status, _, part) = s.get(&[("range", "bytes=2000000-2000099")]).await;
    assert_eq!(status, 206);
    assert_eq!(part, big().slice(2_000_000..2_000_100));
    assert_eq!(s.count.load(Ordering::Relaxed), 1, "one origin fetch");
}

#[tokio::test]
async fn without_a_disk_tier_a_large_object_is_kept_in_its_file() {
    let s = setup("file", false, 64 << 20).await;
    let (status, cs, body) = s.get(&[]).await;
    assert_eq!(status, 200);
    assert!(cs.contains("stored"), "{cs}");
    assert!(body == big());
    let (status, cs, body) = s.get(&[]).await;
    assert_eq!(status, 200);
    assert!(cs.contains("; hit"), "{cs}");
    assert!(body == big());
    assert_eq!(s.count.load(Ordering::Relaxed), 1);
    // Counted in the memory budget at its full size, yet not held in memory.
    assert!(s.proxy.store().weight() >= SIZE as u64);
    let stored = s
        .proxy
        .store()
        .get(&s.key, &http::HeaderMap::new())
        .expect("in the memory tier");
    assert!(!stored.body.is_all_in_memory());
    assert!(stored.body.in_memory() <= SPILL_ABOVE);
    // Its file is unlinked: nothing is left in the directory.
    let left = std::fs::read_dir(s.dir.join("spill")).unwrap().count();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn without_a_disk_tier_an_object_larger_than_memory_passes_through() {
    let s = setup("through", false, 1 << 20).await;
    for _ in 0..2 {
        let (status, cs, body) = s.get(&[]).await;
        assert_eq!(status, 200);
        assert!(cs.contains("fwd=miss") && !cs.contains("stored"), "{cs}");
        assert!(body == big());
    }
    assert_eq!(s.count.load(Ordering::Relaxed), 2, "nothing was cached");
    assert!(s.proxy.store().weight() < SIZE as u64);
    let left = std::fs::read_dir(s.dir.join("spill")).unwrap().count();
    assert_eq!(left, 0);
}
