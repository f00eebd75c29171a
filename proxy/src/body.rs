//! A response body shared by everyone who wants it: the fetch appends chunks as they arrive,
//! and each reader follows at its own pace. A slow client never slows the fetch or the other
//! clients: it only falls behind in a list of chunks that are already stored.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a body ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The upstream connection failed or the body was cut off.
    #[error("upstream body failed: {0}")]
    Upstream(String),
    /// The body exceeded the size cap.
    #[error("body exceeds the size cap of {0} bytes")]
    TooLarge(u64),
}

#[derive(Debug, Default)]
struct State {
    chunks: Vec<Bytes>,
    len: u64,
    /// `Some` once the body is complete (Ok) or has failed.
    end: Option<Result<(), BodyError>>,
}

/// Largest body [`SharedBody::stored_copy`] stores as one contiguous buffer.
pub const CONTIGUOUS_UP_TO: u64 = 1 << 20;

/// A growing body. Cloning the `Arc` is how readers share it.
#[derive(Debug, Default)]
pub struct SharedBody {
    state: Mutex<State>,
    grew: Notify,
    /// SHA-256 of the complete body, set by whoever completed it: peers are sent it so they
    /// can check what they received.
    digest: OnceLock<[u8; 32]>,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// What a reader finds at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The next chunk.
    Chunk(Bytes),
    /// The body is complete and the reader has all of it.
    End,
    /// The body failed; the reader must not treat what it has as complete.
    Failed(BodyError),
    /// Nothing yet: wait for [`SharedBody::wait`].
    Pending,
}

impl SharedBody {
    /// An empty, growing body.
    pub fn new() -> Arc<Self> {
        Arc::new(SharedBody::default())
    }

    /// A complete body.
    pub fn complete(data: Bytes) -> Arc<Self> {
        let digest = sha256(&data);
        SharedBody::complete_with(data, digest)
    }

    /// A complete body whose digest is already known.
    pub fn complete_with(data: Bytes, digest: [u8; 32]) -> Arc<Self> {
        SharedBody::complete_from(vec![data], digest)
    }

    /// A complete body of `chunks` whose digest is already known.
    fn complete_from(chunks: Vec<Bytes>, digest: [u8; 32]) -> Arc<Self> {
        let body = SharedBody::new();
        for chunk in chunks {
            body.push(chunk);
        }
        body.finish_with_digest(digest);
        body
    }

    /// Appends a chunk (the fetch side).
    pub fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if let Ok(mut s) = self.state.lock() {
            if s.end.is_some() {
                return;
            }
            s.len += chunk.len() as u64;
            s.chunks.push(chunk);
        }
        self.grew.notify_waiters();
    }

    /// Ends the body: complete, or failed (the fetch side).
    pub fn finish(&self, end: Result<(), BodyError>) {
        if let Ok(mut s) = self.state.lock()
            && s.end.is_none()
        {
            s.end = Some(end);
        }
        self.grew.notify_waiters();
    }

    /// Completes the body, recording its SHA-256.
    pub fn finish_with_digest(&self, digest: [u8; 32]) {
        let _ = self.digest.set(digest);
        self.finish(Ok(()));
    }

    /// SHA-256 of the complete body, if it was recorded.
    pub fn digest(&self) -> Option<[u8; 32]> {
        self.digest.get().copied()
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.len)
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Some(Ok)` when complete, `Some(Err)` when failed, `None` while growing.
    pub fn end(&self) -> Option<Result<(), BodyError>> {
        self.state.lock().ok().and_then(|s| s.end.clone())
    }

    /// The chunk at `index`, or what to do instead.
    pub fn next(&self, index: usize) -> Next {
        let Ok(s) = self.state.lock() else {
            return Next::Failed(BodyError::Upstream("poisoned".into()));
        };
        if let Some(c) = s.chunks.get(index) {
            return Next::Chunk(c.clone());
        }
        match &s.end {
            Some(Ok(())) => Next::End,
            Some(Err(e)) => Next::Failed(e.clone()),
            None => Next::Pending,
        }
    }

    /// Waits until the body grows or ends after a reader saw [`Next::Pending`] at `index`.
    pub async fn wait(&self, index: usize) {
        let notified = self.grew.notified();
        tokio::pin!(notified);
        // Register first, then re-check: a push between the caller's check and here is not lost.
        notified.as_mut().enable();
        if !matches!(self.next(index), Next::Pending) {
            return;
        }
        notified.await;
    }

    /// A complete copy to store, with `digest`, if the body is complete. Up to
    /// [`CONTIGUOUS_UP_TO`] it is one buffer, so a hit is written with the fewest frames and
    /// syscalls; a larger body keeps the chunks it arrived in, shared rather than copied
    /// (copying a 100 MiB body cost a fifth of a transfer's CPU in memcpy and page faults,
    /// and held it twice in memory).
    pub fn stored_copy(&self, digest: [u8; 32]) -> Option<Arc<SharedBody>> {
        let chunks = {
            let s = self.state.lock().ok()?;
            if !matches!(s.end, Some(Ok(()))) {
                return None;
            }
            if s.len > CONTIGUOUS_UP_TO {
                s.chunks.clone()
            } else {
                vec![concat(&s)]
            }
        };
        Some(SharedBody::complete_from(chunks, digest))
    }

    /// The whole body, if complete (for revalidation merges and tests).
    pub fn collect(&self) -> Option<Bytes> {
        let s = self.state.lock().ok()?;
        if !matches!(s.end, Some(Ok(()))) {
            return None;
        }
        Some(concat(&s))
    }
}

/// The chunks of `s` in one buffer.
fn concat(s: &State) -> Bytes {
    let mut out = Vec::with_capacity(s.len as usize);
    for c in &s.chunks {
        out.extend_from_slice(c);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_follow_at_their_own_pace() {
        let body = SharedBody::new();
        assert_eq!(body.next(0), Next::Pending);
        let reader = {
            let body = body.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut i = 0;
                loop {
                    match body.next(i) {
                        Next::Chunk(c) => {
                            got.extend_from_slice(&c);
                            i += 1;
                        }
                        Next::Pending => body.wait(i).await,
                        Next::End => return Ok(got),
                        Next::Failed(e) => return Err(e),
                    }
                }
            })
        };
        for part in [&b"hello "[..], b"shared ", b"world"] {
            body.push(Bytes::from_static(part));
            tokio::task::yield_now().await;
        }
        body.finish(Ok(()));
        assert_eq!(reader.await.unwrap().unwrap(), b"hello shared world");
        // A late reader gets everything from the start.
        assert_eq!(
            body.collect().unwrap(),
            Bytes::from_static(b"hello shared world")
        );
        assert_eq!(body.len(), 18);
    }

    #[test]
    fn a_failed_body_is_never_complete() {
        let body = SharedBody::new();
        body.push(Bytes::from_static(b"partial"));
        body.finish(Err(BodyError::Upstream("reset".into())));
        assert_eq!(body.next(0), Next::Chunk(Bytes::from_static(b"partial")));
        assert!(matches!(body.next(1), Next::Failed(_)));
        assert_eq!(body.collect(), None);
        // Nothing more is accepted after the end.
        body.push(Bytes::from_static(b"more"));
        body.finish(Ok(()));
        assert!(matches!(body.end(), Some(Err(_))));
        assert!(body.stored_copy([0; 32]).is_none());
    }

    #[test]
    fn a_stored_copy_is_whole_and_large_bodies_share_their_chunks() {
        let small = SharedBody::new();
        small.push(Bytes::from_static(b"one "));
        small.push(Bytes::from_static(b"two"));
        assert!(small.stored_copy([1; 32]).is_none(), "not complete yet");
        small.finish(Ok(()));
        let copy = small.stored_copy([1; 32]).unwrap();
        assert_eq!(copy.next(0), Next::Chunk(Bytes::from_static(b"one two")));
        assert_eq!(copy.next(1), Next::End);
        assert_eq!(copy.digest(), Some([1; 32]));

        let chunk = Bytes::from(vec![7u8; 64 << 10]);
        let large = SharedBody::new();
        let n = (CONTIGUOUS_UP_TO as usize / chunk.len()) + 1;
        for _ in 0..n {
            large.push(chunk.clone());
        }
        large.finish(Ok(()));
        let copy = large.stored_copy([2; 32]).unwrap();
        assert_eq!(copy.collect(), large.collect());
        assert_eq!(copy.digest(), Some([2; 32]));
        // The same memory, not a second copy of it.
        let Next::Chunk(first) = copy.next(0) else {
            panic!("no first chunk")
        };
        assert_eq!(first.as_ptr(), chunk.as_ptr());
    }
}
