//! Test harness shared by the proxy's integration tests: an origin serving a handler, and a
//! proxy serving on a loopback port, both until the test ends.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test file uses part of it

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proxy::Proxy;
use tokio::net::TcpListener;

/// An HTTP/1.1 origin on a loopback port answering every request with `handler`.
pub async fn origin<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let svc = service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// `proxy` serving plain HTTP on a loopback port.
pub async fn serve(proxy: Arc<Proxy>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (keep, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = keep;
        proxy::server::run(listener, proxy, rx).await;
    });
    addr
}
