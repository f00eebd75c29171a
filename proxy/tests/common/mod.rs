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

/// A 200 response with `body`, fresh for `max_age` seconds (cacheable by the proxy).
pub fn cacheable(body: Bytes, max_age: u32) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        "cache-control",
        format!("max-age={max_age}").parse().unwrap(),
    );
    r
}

/// A GET of `path` from the proxy at `addr` for `host`, with `extra` headers: the status,
/// the headers and the whole body.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, http::HeaderMap, Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut req = Request::get(format!("http://{addr}{path}")).header("host", host);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
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
