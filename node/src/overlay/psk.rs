//! The private-network layer under noise: libp2p's pnet construction with AES-256-CTR.
//!
//! Each side sends a fresh 24-byte random nonce; from then on every byte each way is XORed
//! with a keystream keyed by the network's pre-shared key and the sender's nonce. A node
//! with another key decrypts garbage, so the noise handshake that follows fails and nothing
//! of the overlay is exposed to it (pnet's guarantee; authentication and integrity are
//! noise's job).
//!
//! Why not `libp2p-pnet` itself: its cipher, XSalsa20, comes from `salsa20` 0.11, which has
//! only a portable scalar implementation. Measured on a 100 MiB peer transfer on loopback,
//! it took half of the sending node's CPU and capped the transfer at 173 MB/s against 330
//! MB/s without it. XChaCha20 (the `chacha20` crate) runs at 4.1 GB/s on one core here with
//! AVX-512 and 2.3 GB/s with AVX2 only, and was still a sixth of each node's CPU on a peer
//! transfer; AES-256-CTR runs at 5.7 GB/s on the same core, as AES is in hardware on most
//! machines volunteers run: AES-NI on x86-64, ARMv8's crypto extensions (enabled by the
//! `aes_armv8` flag in `.cargo/config.toml`, detected at run time). A CPU without them (a
//! Raspberry Pi 4) runs the crate's constant-time software AES, slower than ChaCha there.
//!
//! AES-CTR takes a 16-byte counter, not pnet's 24-byte nonce, so each direction gets its own
//! key: HKDF-Expand-SHA256 of the network key (itself uniform HKDF output, see
//! [`crate::secret`]) with the sender's nonce as context, counting from zero. No two streams
//! of the network share a keystream; the construction is otherwise pnet's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ctr::cipher::{KeyIvInit, StreamCipher};
use futures::io::BufReader;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ring::hkdf;

/// The keystream of one direction.
type Keystream = ctr::Ctr128BE<aes::Aes256>;

/// What a direction's key is derived for (HKDF's info): a key for anything else differs.
const KEY_INFO: &[u8] = b"reef pnet aes-256-ctr";

const NONCE_LEN: usize = 24;
/// Most plaintext accepted per write before it must be flushed to the socket.
const WRITE_BUFFER: usize = 64 << 10;
/// Most bytes taken from the socket per read. noise reads 8 KiB at a time; reading that
/// little per system call was an eighth of a receiving node's CPU on a 100 MiB transfer.
const READ_BUFFER: usize = 64 << 10;

/// A stream encrypted with the pre-shared key.
pub struct PskStream<S> {
    /// Buffered for reading (the cipher is positional: bytes are decrypted as they are
    /// handed out, wherever they were buffered).
    inner: BufReader<S>,
    read_cipher: Keystream,
    write_cipher: Keystream,
    /// Encrypted bytes not yet written to `inner`.
    pending: Vec<u8>,
}

impl<S> std::fmt::Debug for PskStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskStream").finish_non_exhaustive()
    }
}

/// Exchanges nonces over `socket` and returns it wrapped in the key's ciphers.
pub async fn handshake<S>(mut socket: S, key: [u8; 32]) -> io::Result<PskStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use ring::rand::SecureRandom;
    let mut local = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut local)
        .map_err(|_| io::Error::other("no entropy for the handshake nonce"))?;
    socket.write_all(&local).await?;
    socket.flush().await?;
    let mut remote = [0u8; NONCE_LEN];
    socket.read_exact(&mut remote).await?;
    Ok(PskStream {
        inner: BufReader::with_capacity(READ_BUFFER, socket),
        read_cipher: keystream(&key, &remote)?,
        write_cipher: keystream(&key, &local)?,
        pending: Vec::with_capacity(WRITE_BUFFER),
    })
}

/// The keystream of the direction whose sender chose `nonce`.
fn keystream(key: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> io::Result<Keystream> {
    let mut direction_key = [0u8; 32];
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, key)
        .expand(&[KEY_INFO, nonce], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut direction_key))
        .map_err(|_| io::Error::other("deriving a direction's key"))?;
    Ok(Keystream::new(&direction_key.into(), &[0u8; 16].into()))
}

impl<S: AsyncWrite + Unpin> PskStream<S> {
    /// Writes out `pending`; ready once it is empty.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[written..]) {
                Poll::Ready(Ok(0)) => {
                    break Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the socket accepted no bytes",
                    )));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        self.pending.drain(..written);
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PskStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(read) = buf.get_mut(..n) else {
            return Poll::Ready(Err(io::Error::other("the socket read more than asked")));
        };
        this.read_cipher.apply_keystream(read);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PskStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let n = buf.len().min(WRITE_BUFFER);
        let start = this.pending.len();
        this.pending.extend_from_slice(&buf[..n]);
        if let Some(fresh) = this.pending.get_mut(start..) {
            this.write_cipher.apply_keystream(fresh);
        }
        // Start sending now; what the socket does not take yet goes out on the next call.
        if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    type End = PskStream<tokio_util::compat::Compat<tokio::io::DuplexStream>>;

    /// Two ends, keyed `a` and `b`, over an in-memory duplex pipe of `capacity` bytes.
    async fn pair(capacity: usize, a: [u8; 32], b: [u8; 32]) -> (End, End) {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (x, y) = tokio::io::duplex(capacity);
        let (x, y) = futures::join!(handshake(x.compat(), a), handshake(y.compat(), b));
        (x.expect("handshake"), y.expect("handshake"))
    }

    #[test]
    fn the_same_key_carries_bytes_both_ways() {
        block_on(async {
            let (mut x, mut y) = pair(1 << 20, [7; 32], [7; 32]).await;
            let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let (w, r) = futures::join!(
                async {
                    x.write_all(&message).await?;
                    x.flush().await
                },
                async {
                    let mut got = vec![0u8; message.len()];
                    y.read_exact(&mut got).await.map(|_| got)
                }
            );
            w.expect("write");
            assert_eq!(r.expect("read"), message);
            y.write_all(b"and back").await.expect("write");
            y.flush().await.expect("flush");
            let mut back = [0u8; 8];
            x.read_exact(&mut back).await.expect("read");
            assert_eq!(&back, b"and back");
        });
    }

    #[test]
    fn small_reads_get_every_byte_in_order() {
        block_on(async {
            // A pipe smaller than a read: the reader waits for the writer, with its buffer
            // half full and with it empty.
            let (mut x, mut y) = pair(3000, [7; 32], [7; 32]).await;
            let message: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
            let (w, r) = futures::join!(
                async {
                    x.write_all(&message).await?;
                    x.flush().await
                },
                async {
                    // noise's reads (8 KiB), odd sizes, and a large read between them.
                    let mut got = Vec::new();
                    let mut sizes = [8192, 1, 100_000, 4099].into_iter().cycle();
                    while got.len() < message.len() {
                        let mut piece = vec![0u8; sizes.next().unwrap_or(1)];
                        let n = y.read(&mut piece).await?;
                        assert!(n > 0, "the stream ended early");
                        got.extend_from_slice(&piece[..n]);
                    }
                    Ok::<_, io::Error>(got)
                }
            );
            w.expect("write");
            assert_eq!(r.expect("read"), message);
        });
    }

    /// The keystream's first bytes for `key` and `nonce`.
    fn first_bytes(key: [u8; 32], nonce: [u8; NONCE_LEN]) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        keystream(&key, &nonce)
            .expect("a keystream")
            .apply_keystream(&mut bytes);
        bytes
    }

    #[test]
    fn each_nonce_keys_its_own_keystream() {
        let same = first_bytes([7; 32], [1; NONCE_LEN]);
        assert_eq!(same, first_bytes([7; 32], [1; NONCE_LEN]));
        // The two directions of a connection, and any two connections, differ by nonce.
        assert_ne!(same, first_bytes([7; 32], [2; NONCE_LEN]));
        assert_ne!(same, first_bytes([8; 32], [1; NONCE_LEN]));
        assert_ne!(same, [0u8; 64]);
    }

    /// What a node of this version sends with: HKDF-Expand-SHA256 of the key with
    /// "reef pnet aes-256-ctr" and the nonce as context, then AES-256-CTR from zero. The
    /// expected bytes were computed apart from this code (Python's `hmac` and
    /// `cryptography`): a change here is a change of the wire, and of the protocol version.
    #[test]
    fn the_keystream_is_the_documented_construction() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| 100 + i as u8);
        let mut bytes = [0u8; 32];
        keystream(&key, &nonce)
            .expect("a keystream")
            .apply_keystream(&mut bytes);
        assert_eq!(
            crate::hex::encode(&bytes),
            "cb13b69f92ef8075bb23fdec1d28ac92e2756243974668d4cfd82fc641ebe42f"
        );
    }

    #[test]
    fn another_key_reads_garbage() {
        block_on(async {
            let (mut x, mut y) = pair(1 << 20, [7; 32], [8; 32]).await;
            x.write_all(b"/multistream/1.0.0\n").await.expect("write");
            x.flush().await.expect("flush");
            let mut got = [0u8; 19];
            y.read_exact(&mut got).await.expect("read");
            assert_ne!(&got, b"/multistream/1.0.0\n");
        });
    }
}
