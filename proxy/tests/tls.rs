//! Clients over HTTPS: HTTP/2 by ALPN with the operator's certificate, real sockets.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::{Config, Proxy};
use tokio::net::TcpListener;

/// An origin answering every request with a cacheable page.
async fn origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"hello over h2")));
                    r.headers_mut()
                        .insert("cache-control", "max-age=60".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("reef-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn https_clients_get_http2_with_the_operators_certificate() {
    let dir = temp("h2");
    // A wildcard for the zone covers every single-label CDN name.
    let cert = rcgen::generate_simple_self_signed(vec!["*.cdn.test".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let tls = proxy::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();

    let origin = origin().await;
    let mut config = Config::new(dns::ZoneSuffix::parse("cdn.test").unwrap());
    config.allow_private_origins = true;
    config.resolve.insert("origin.test".into(), origin.ip());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(proxy::server::run_tls(
        listener,
        Proxy::new(config).unwrap(),
        tls,
        stopped,
    ));

    // A client trusting the certificate, offering only h2.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www-example-com.cdn.test").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!("https://origin.test.{}.cdn.test/page", origin.port());
    for expected in ["fwd=miss", "hit"] {
        let req = Request::get(&uri).body(Empty::<Bytes>::new()).unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let cs = resp.headers()["cache-status"].to_str().unwrap().to_string();
        assert!(cs.contains(expected), "{cs}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello over h2");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_certificate_files_are_clear_errors() {
    let dir = temp("bad");
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    std::fs::write(dir.join("junk.pem"), "not a pem file").unwrap();
    let missing = proxy::tls::server_config(&dir.join("nope.pem"), &dir.join("nope.pem"));
    assert!(matches!(
        missing,
        Err(proxy::tls::ServerTlsError::Certificate { .. })
    ));
    let empty = proxy::tls::server_config(&dir.join("empty.pem"), &dir.join("junk.pem"));
    assert!(matches!(
        empty,
        Err(proxy::tls::ServerTlsError::Certificate { .. })
    ));
    let cert = rcgen::generate_simple_self_signed(vec!["*.cdn".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    let no_key = proxy::tls::server_config(&dir.join("cert.pem"), &dir.join("junk.pem"));
    assert!(matches!(
        no_key,
        Err(proxy::tls::ServerTlsError::Key { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
