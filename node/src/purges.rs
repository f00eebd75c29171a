//! Purges flooded by other nodes: each is checked by this node's proxy exactly as a
//! publisher's own request would be (the forwarding node is never trusted), applied if valid,
//! and only then passed on by the gossip.

use std::sync::Arc;

use proxy::purge::Source;
use tokio::sync::{Semaphore, mpsc};

use crate::overlay::{InboundPurge, Overlay, Verdict};

/// Purges checked at once, at most (a check may wait for an origin's reef.json).
const CHECKS_AT_ONCE: usize = 64;
/// Purges from the gossip waiting to be checked; beyond it they are dropped unchecked (and
/// not passed on).
pub const QUEUE: usize = 1024;

/// Checks purges from `inbound` until the overlay stops.
pub async fn check_flooded(
    overlay: Overlay,
    proxy: Arc<proxy::Proxy>,
    mut inbound: mpsc::Receiver<InboundPurge>,
) {
    let slots = Arc::new(Semaphore::new(CHECKS_AT_ONCE));
    while let Some(purge) = inbound.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (overlay, proxy) = (overlay.clone(), proxy.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let verdict = match proxy.accept_purge(&purge.data, Source::Overlay).await {
                Ok(_) => Verdict::Accept,
                Err(e) if e.is_forged() => {
                    tracing::warn!(error = %e, "a peer flooded a forged purge");
                    Verdict::Reject
                }
                Err(_) => Verdict::Ignore,
            };
            overlay.purge_verdict(purge.ticket, verdict).await;
        });
    }
}
