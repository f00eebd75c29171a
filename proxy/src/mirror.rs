//! Mirror failover: when an origin fails to connect, times out, or answers 404 or 5xx, the
//! proxy tries the mirrors its site publishes (`/.well-known/reef.json`), in turn, with the
//! same path, as a Varnish restart retries a second backend on 404. The first good answer is
//! cached under the original URL.

use http::{Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::fetch::Answer;
use crate::service::{FetchError, Proxy, Want};

/// An origin's answer, with its fetch slot.
pub(crate) type Sent = Result<(Response<Incoming>, OwnedSemaphorePermit, Answer), FetchError>;

/// Whether an answer (or failure) sends the proxy to the mirrors.
fn failed(sent: &Sent) -> bool {
    match sent {
        Ok((_, _, answer)) => {
            answer.status == StatusCode::NOT_FOUND || answer.status.is_server_error()
        }
        // Refused addresses and full slots are this node's decisions, not the origin failing.
        Err(FetchError::Unreachable(_)) => true,
        Err(_) => false,
    }
}

impl Proxy {
    /// `sent` if it is good, else the first good answer of a mirror, else `sent`.
    pub(crate) async fn or_mirror(&self, want: &Want, sent: Sent) -> Sent {
        if !failed(&sent) {
            return sent;
        }
        let Some(site) = self.sites.cached(&want.up) else {
            return sent;
        };
        for mirror in &site.mirrors {
            let mirrored = Want {
                up: mirror.clone(),
                validate: None,
                ..want.clone()
            };
            let Ok(req) = self.origin_request(&mirrored, None) else {
                continue;
            };
            let answer = self.send_to_origin(mirror, req).await;
            if !failed(&answer) {
                tracing::info!(key = %want.key, %mirror, "the origin failed; fetched from a mirror");
                return answer;
            }
            tracing::debug!(key = %want.key, %mirror, "the mirror failed too");
        }
        sent
    }
}
