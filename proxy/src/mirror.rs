//! Mirror failover: when an origin fails to connect, times out, or answers 404 or 5xx, the
//! proxy tries the mirrors its site publishes (`/.well-known/reef.json`), in turn, with the
//! same path, as a Varnish restart retries a second backend on 404. The first good answer is
//! cached under the original URL. The mirrors share one deadline, an HTTPS site's mirrors
//! must be HTTPS too, and a 404 for a URL its publisher purged is not undone by a mirror.

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
        // A 404 for a URL its publisher purged is the object deleted: a mirror that has not
        // caught up must not bring it back.
        let not_found = matches!(&sent, Ok((_, _, a)) if a.status == StatusCode::NOT_FOUND);
        if not_found && self.store.cutoffs().of(&want.key).is_some() {
            return sent;
        }
        // The mirrors together get as long as the origin had.
        let deadline = tokio::time::Instant::now() + self.config.first_byte_timeout;
        for mirror in &site.mirrors {
            // An HTTPS site's objects never travel in clear text.
            if want.up.tls && !mirror.tls {
                tracing::debug!(key = %want.key, %mirror, "skipping a plain-HTTP mirror of an HTTPS site");
                continue;
            }
            let mirrored = Want {
                up: mirror.clone(),
                validate: None,
                ..want.clone()
            };
            let Ok(req) = self.origin_request(&mirrored, None) else {
                continue;
            };
            let Ok(answer) =
                tokio::time::timeout_at(deadline, self.send_to_origin(mirror, req)).await
            else {
                tracing::debug!(key = %want.key, "out of time for mirrors");
                break;
            };
            if !failed(&answer) {
                tracing::info!(key = %want.key, %mirror, "the origin failed; fetched from a mirror");
                return answer;
            }
            tracing::debug!(key = %want.key, %mirror, "the mirror failed too");
        }
        sent
    }
}
