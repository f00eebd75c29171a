//! The SHA-256 of a body as it arrives, hashed beside the transfer once it is large.
//!
//! Every fetched body is hashed (the disk tier's checksum, the digest peers verify). Hashing
//! in the task that receives the body puts it in series with the receiving: on a 100 MiB
//! peer transfer it was a quarter of the receiving node's CPU, and the transfer ran at the
//! speed of that one task. Past [`PARALLEL_FROM`] bytes the hashing moves to a thread of its
//! own, fed the body's chunks (shared, not copied) in order, so it runs on another core.
//! Small bodies, and large ones while every core already hashes one, are hashed in line:
//! handing them over would cost more than it saves. A thread keeps its place for its body's
//! whole transfer, even while that body trickles in: several slow large downloads at once
//! leave the others hashing in line, which is how every body was hashed before.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use ring::digest::{Context, SHA256};
use tokio::sync::{Semaphore, mpsc};

use crate::body::{BodyError, digest_array};

/// Bytes hashed in line before the hashing moves to its own thread.
pub(crate) const PARALLEL_FROM: u64 = 1 << 20;
/// Chunks handed over and not yet hashed, at most (backpressure on a slow hasher).
const QUEUE: usize = 64;

/// Places for hashing threads, one per core this process may use, across the process. A
/// thread holds its place until it ends, however it ends.
static HASHERS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

/// SHA-256 of the bytes given to [`BodyDigest::update`], in order.
pub(crate) struct BodyDigest {
    state: State,
    hashed: u64,
}

#[allow(clippy::large_enum_variant)] // one per fetch, kept in place
enum State {
    Inline(Context),
    Beside {
        chunks: mpsc::Sender<Bytes>,
        done: tokio::task::JoinHandle<Context>,
    },
    /// The hashing thread panicked or was cancelled: no digest can be trusted.
    Lost,
}

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Inline(_) => "in line",
            State::Beside { .. } => "beside",
            State::Lost => "lost",
        };
        f.debug_struct("BodyDigest")
            .field("state", &state)
            .field("hashed", &self.hashed)
            .finish()
    }
}

impl Default for BodyDigest {
    fn default() -> Self {
        BodyDigest {
            state: State::Inline(Context::new(&SHA256)),
            hashed: 0,
        }
    }
}

impl BodyDigest {
    /// Adds `data` (the next bytes of the body).
    pub(crate) async fn update(&mut self, data: Bytes) {
        self.hashed += data.len() as u64;
        if let State::Inline(ctx) = &mut self.state {
            if self.hashed < PARALLEL_FROM {
                ctx.update(&data);
                return;
            }
            let Ok(slot) = HASHERS.clone().try_acquire_owned() else {
                ctx.update(&data);
                return;
            };
            let mut ctx = ctx.clone();
            let (chunks, mut incoming) = mpsc::channel::<Bytes>(QUEUE);
            let done = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                while let Some(chunk) = incoming.blocking_recv() {
                    ctx.update(&chunk);
                }
                ctx
            });
            self.state = State::Beside { chunks, done };
        }
        let State::Beside { chunks, .. } = &self.state else {
            return;
        };
        // The thread only stops early by panicking or being cancelled: its state is gone.
        if chunks.send(data).await.is_err() {
            self.state = State::Lost;
        }
    }

    /// The digest of the bytes so far; hashing may go on. An error if the hashing thread
    /// panicked or was cancelled (the runtime shutting down): our failure, not the body's.
    pub(crate) async fn so_far(&mut self) -> Result<[u8; 32], BodyError> {
        self.state = match std::mem::replace(&mut self.state, State::Lost) {
            State::Beside { chunks, done } => {
                // Closing the channel ends the thread once it has hashed what it was given.
                drop(chunks);
                done.await.map_or(State::Lost, State::Inline)
            }
            other => other,
        };
        match &self.state {
            State::Inline(ctx) => Ok(digest_array(ctx.clone().finish())),
            State::Beside { .. } | State::Lost => {
                Err(BodyError::Upstream("hashing the body failed".into()))
            }
        }
    }

    /// The digest of all the bytes (see [`so_far`](Self::so_far)).
    pub(crate) async fn finish(mut self) -> Result<[u8; 32], BodyError> {
        self.so_far().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Feeds `data` in `chunk`-byte pieces, asking for the digest so far at `midway`: the
    /// digest so far, the whole one, and whether the hashing ended up beside.
    async fn digest_in_pieces(
        data: &[u8],
        chunk: usize,
        midway: usize,
    ) -> ([u8; 32], [u8; 32], bool) {
        let mut digest = BodyDigest::default();
        let mut at_midway = None;
        for (i, piece) in data.chunks(chunk).enumerate() {
            if i * chunk == midway {
                at_midway = digest.so_far().await.ok();
            }
            digest.update(Bytes::copy_from_slice(piece)).await;
        }
        let beside = matches!(digest.state, State::Beside { .. });
        let whole = digest.finish().await.expect("a digest");
        (at_midway.expect("a digest so far"), whole, beside)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_body_hashed_beside_gives_the_same_digest_as_in_one_go() {
        let data = body(5 * PARALLEL_FROM as usize + 12_345);
        let midway = 3 * PARALLEL_FROM as usize;
        let (so_far, whole, beside) = digest_in_pieces(&data, 64 << 10, midway).await;
        // No other test of this binary hashes a large body, so a place was free.
        assert!(beside, "a large body is hashed beside the transfer");
        assert_eq!(whole, crate::body::sha256(&data));
        assert_eq!(so_far, crate::body::sha256(&data[..midway]));
    }

    #[tokio::test]
    async fn a_small_body_is_hashed_in_line() {
        let data = body(100_000);
        let (so_far, whole, beside) = digest_in_pieces(&data, 1000, 50_000).await;
        assert!(!beside);
        assert_eq!(whole, crate::body::sha256(&data));
        assert_eq!(so_far, crate::body::sha256(&data[..50_000]));
        let mut digest = BodyDigest::default();
        digest.update(Bytes::from(data)).await;
        assert!(matches!(digest.state, State::Inline(_)));
    }
}
