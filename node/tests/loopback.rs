//! One real `reef node` process on loopback: start-up, DNS, proxying, options, stopping.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::{Object, Origin, Reef};

#[test]
fn refuses_a_public_overlay_address_without_a_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args([
            "node",
            "--p2p",
            "/ip4/0.0.0.0/tcp/0",
            "--dns",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--run-for",
            "1",
        ])
        .output()
        .expect("run reef");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not loopback") && err.contains("reef secret new"),
        "{err}"
    );
}

#[test]
fn says_loudly_that_it_runs_on_the_development_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .arg("node")
        .args(&common::BASE[..9])
        .args(["--run-for", "1"])
        .output()
        .expect("run reef");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING") && err.contains("DEVELOPMENT secret"),
        "{err}"
    );
}

#[test]
fn node_answers_dns_for_the_zone_with_itself() {
    let node = Reef::start(&["--zone", "cdn.test"]);
    let resp = common::dns_query(&node, "www.example.com.cdn.test.");
    assert_eq!(
        resp.metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
    let ips: Vec<_> = resp
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .collect();
    assert_eq!(ips, vec![std::net::IpAddr::from([127, 0, 0, 1])]);
    assert_eq!(node.status()["dns"]["answered"], 1, "counted for operators");
    let metrics = common::get(node.admin(), "admin", "/metrics", &[]);
    assert!(String::from_utf8_lossy(&metrics.body).contains("\nreef_dns_answers_total 1\n"));
}

#[test]
fn node_proxies_and_caches_an_origin() {
    let origin = Origin::start(HashMap::from([(
        "/page".to_string(),
        Object::fresh(b"hello from the origin".to_vec()),
    )]));
    let node = Reef::start(&["--resolve", "origin.test=127.0.0.1"]);
    let first = node.fetch(&origin.host(), "/page");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, b"hello from the origin");
    let second = node.fetch(&origin.host(), "/page");
    assert!(
        second.is_hit()
            && second
                .own_entry()
                .starts_with(&format!("{}; hit", node.name())),
        "{second:?}"
    );
    assert_eq!(
        origin.count("/page"),
        1,
        "the second request came from the cache"
    );
    let status = node.status();
    assert_eq!(status["cache"]["hits"], 1);
    assert_eq!(status["cache"]["misses"], 1);
    assert_eq!(status["fetches"]["origin"], 1);
    // The status page's figures: bytes served from the cache, and the site's share.
    assert_eq!(status["cache"]["hit_bytes"], b"hello from the origin".len());
    let site = &status["sites"][0];
    assert_eq!(site["site"], "origin.test");
    assert_eq!(site["requests"], 2);
    assert_eq!(site["bytes"], 2 * b"hello from the origin".len());
    // A connection that has said nothing yet is open and idle (it holds no buffers).
    let _silent = std::net::TcpStream::connect(node.http()).expect("connect");
    let mut idle = 0;
    for _ in 0..100 {
        idle = node.status()["connections"]["idle"].as_u64().unwrap_or(0);
        if idle >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(idle >= 1, "{}", node.status()["connections"]);
    assert!(node.status()["connections"]["open"].as_u64() >= Some(1));
    let metrics = common::get(node.admin(), "admin", "/metrics", &[]);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("\nreef_cache_hits_total 1\n"), "{text}");
    assert!(
        text.contains("# TYPE reef_http_connections_idle gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE reef_origin_fetches_total counter"),
        "{text}"
    );
}

#[test]
fn node_stops_cleanly_on_sigterm() {
    let mut node = Reef::start(&[]);
    node.terminate();
    let exit = node.child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn options_can_come_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["node", "--run-for", "1"])
        .env("REEF_P2P", "/ip4/127.0.0.1/tcp/0")
        .env("REEF_DNS", "127.0.0.1:0")
        .env("REEF_HTTP", "127.0.0.1:0")
        .env("REEF_ADMIN", "127.0.0.1:0")
        .env("REEF_ZONE", "env.example")
        .output()
        .expect("run reef");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let info: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("")).expect("the listening line");
    assert_eq!(info["zone"], "env.example");
}

#[test]
fn url_and_secret_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args([
            "url",
            "http://www.example.com:8080/a?b",
            "--zone",
            "cdn.test",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "http://www.example.com.8080.cdn.test/a?b"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["url", "gopher://x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let secret = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["secret", "new"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&secret.stdout);
    assert!(
        text.starts_with("reef-secret-1 ") && text.trim().len() == 14 + 64,
        "{text}"
    );
}

#[test]
fn over_its_bandwidth_quota_a_node_sends_clients_to_the_origin() {
    let origin = Origin::start(HashMap::from([(
        "/page".to_string(),
        Object::fresh(vec![b'x'; 2000]),
    )]));
    let node = Reef::start(&[
        "--resolve",
        "origin.test=127.0.0.1",
        "--bandwidth-quota",
        "1000",
    ]);
    let first = node.fetch(&origin.host(), "/page");
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), 2000);
    let second = node.fetch(&origin.host(), "/page?x=1");
    assert_eq!(second.status, 302);
    assert_eq!(
        second.header("location"),
        format!("http://origin.test:{}/page?x=1", origin.addr.port())
    );
    assert!(second.header("cache-status").contains("over-quota"));
    assert_eq!(node.status()["over_quota"], true);
    assert_eq!(
        origin.count("/page"),
        1,
        "the redirected request cost this node nothing"
    );
}

#[test]
fn https_is_served_with_the_given_certificate_and_bad_files_are_refused() {
    let dir = std::env::temp_dir().join(format!("reef-node-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["*.cdn.test".to_string()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (c.display().to_string(), k.display().to_string());
    let node = Reef::start(&["--tls", "127.0.0.1:0", "--tls-cert", &c, "--tls-key", &k]);
    let https: std::net::SocketAddr = node.info["https"].as_str().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(https).is_ok(),
        "HTTPS listens on {https}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .arg("node")
        .args(&common::BASE[..9])
        .args([
            "--run-for",
            "1",
            "--tls",
            "127.0.0.1:0",
            "--tls-cert",
            &k,
            "--tls-key",
            &k,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn options_can_come_from_a_config_file_and_the_command_line_wins() {
    let dir = std::env::temp_dir().join(format!("reef-node-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("reef.toml");
    std::fs::write(
        &file,
        "zone = \"from.file\"\ncache_mem = 1048576\naccess-log = true\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let node = Reef::start(&["--config", &file]);
    assert_eq!(node.info["zone"], "from.file");
    drop(node);
    let node = Reef::start(&["--config", &file, "--zone", "from.cli"]);
    assert_eq!(node.info["zone"], "from.cli");
    drop(node);
    std::fs::write(dir.join("bad.toml"), "no_such_option = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["node", "--config"])
        .arg(dir.join("bad.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown option `no_such_option`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn random_bytes_on_the_dns_and_overlay_ports_are_shrugged_off() {
    use std::io::Write;
    let node = Reef::start(&[]);
    let dns: std::net::SocketAddr = node.info["dns"].as_str().unwrap().parse().unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for seed in 0..300u64 {
        let junk = common::bytes(1 + (seed as usize * 7) % 700, seed);
        sock.send_to(&junk, dns).unwrap();
    }
    for seed in 0..20u64 {
        if let Ok(mut s) = std::net::TcpStream::connect(dns) {
            let _ = s.write_all(&common::bytes(4096, 1000 + seed));
        }
    }
    // The overlay port: /ip4/127.0.0.1/tcp/PORT/p2p/...
    let p2p = node.p2p();
    let port: u16 = p2p.split('/').nth(4).unwrap().parse().unwrap();
    for seed in 0..20u64 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(&common::bytes(4096, 2000 + seed));
        }
    }
    // Still answering, and the garbage was counted as failed handshakes, not served.
    let resp = common::dns_query(&node, "www.example.com.cdn.");
    assert_eq!(
        resp.metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = node.status();
        if s["overlay"]["handshake_failures"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the nameserver still answers after all of it (hickory drops what does not parse).
    let again = common::dns_query(&node, "www-example-com.cdn.");
    assert_eq!(again.answers.len(), 1, "{again:?}");
}
