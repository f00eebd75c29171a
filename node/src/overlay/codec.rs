//! DHT messages on libp2p request-response streams.
//!
//! One stream per request: the requester writes one frame and the responder answers with
//! one. A frame is a 4-byte big-endian length and that many bytes, capped so a peer cannot
//! make us buffer more than a DHT message may be. The codec only frames; the driver decodes
//! the contents with `dht::wire` (and counts what it refuses), so a bad message costs one
//! stream, never the connection or the node.
//!
//! ```text
//! request  = postcard(Envelope { advert, trace, load, body = dht::wire::encode_request(..) })
//! response = postcard(Envelope { advert, trace: None, load, body = dht::wire::encode_response(..) })
//! ```
//!
//! Both carry the sender's advert: a node that joined through a bare bootstrap address
//! learns the bootstrap node's full advert from its first answer.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use super::advert::MAX_ADVERT;

/// The DHT's protocol name; the version is also in the network key, this only names it.
pub const DHT_PROTOCOL: StreamProtocol = StreamProtocol::new("/reef/dht/1");

/// What travels with each DHT request besides the message itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's [`Advert`](super::advert::Advert): where it listens (the connection's
    /// source port is ephemeral).
    pub advert: Vec<u8>,
    /// The trace ID of the client request that caused this lookup, if any.
    pub trace: Option<[u8; 16]>,
    /// The sender's load, for other nodes' DNS answers.
    pub load: Load,
    /// `dht::wire` request bytes.
    pub body: Vec<u8>,
}

/// How busy a node says it is: its weight in DNS answers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Over its bandwidth quota: leave it out of DNS answers until it says otherwise.
    pub withdrawn: bool,
    /// Share of its capacity left, 0 to 1 (its weight among proxies).
    pub spare: f32,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            withdrawn: false,
            spare: 1.0,
        }
    }
}

/// Frames DHT messages; `max_message` is the DHT's own message cap.
#[derive(Clone, Debug)]
pub struct DhtCodec {
    max_message: usize,
}

impl DhtCodec {
    /// A codec accepting DHT messages of up to `max_message` bytes.
    pub fn new(max_message: usize) -> DhtCodec {
        DhtCodec { max_message }
    }

    fn max_request(&self) -> usize {
        self.max_message + MAX_ADVERT + 64
    }
}

impl Default for DhtCodec {
    fn default() -> Self {
        DhtCodec::new(dht::Config::default().max_message_size)
    }
}

/// Reads one length-prefixed frame of at most `max` bytes.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes one length-prefixed frame, in one write: yamux makes a frame of every write, and
/// a length written apart from its bytes was a tiny frame of its own on both ends.
pub async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + bytes.len());
    push_frame(&mut frame, bytes)?;
    io.write_all(&frame).await
}

/// Appends one length-prefixed frame to `out`.
pub fn push_frame(out: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn read_envelope<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> io::Result<Envelope> {
    let frame = read_frame(io, max).await?;
    postcard::from_bytes(&frame).map_err(invalid)
}

/// Writes one envelope and ends the stream (one message per stream).
async fn write_envelope<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    env: &Envelope,
) -> io::Result<()> {
    let bytes = postcard::to_stdvec(env).map_err(invalid)?;
    write_frame(io, &bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for DhtCodec {
    type Protocol = StreamProtocol;
    type Request = Envelope;
    type Response = Envelope;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Envelope> {
        read_envelope(io, self.max_request()).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Envelope> {
        read_envelope(io, self.max_request()).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Envelope,
    ) -> io::Result<()> {
        write_envelope(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Envelope,
    ) -> io::Result<()> {
        write_envelope(io, &resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_request_round_trips() {
        let env = Envelope {
            advert: vec![1, 2, 3],
            trace: Some([7; 16]),
            load: Load {
                withdrawn: true,
                spare: 0.5,
            },
            body: vec![9; 100],
        };
        let mut codec = DhtCodec::new(1024);
        let mut buf = futures::io::Cursor::new(Vec::new());
        block_on(codec.write_request(&DHT_PROTOCOL, &mut buf, env.clone())).expect("write");
        let mut rd = futures::io::Cursor::new(buf.into_inner());
        let back = block_on(codec.read_request(&DHT_PROTOCOL, &mut rd)).expect("read");
        assert_eq!(back, env);
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused() {
        let mut codec = DhtCodec::new(16);
        let over = 16 + MAX_ADVERT + 64 + 1;
        let mut big = (over as u32).to_be_bytes().to_vec();
        big.extend(vec![0u8; over]);
        let err = block_on(codec.read_response(&DHT_PROTOCOL, &mut futures::io::Cursor::new(big)))
            .expect_err("too large");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let short = vec![0, 0, 0, 8, 1, 2];
        assert!(
            block_on(codec.read_response(&DHT_PROTOCOL, &mut futures::io::Cursor::new(short)))
                .is_err()
        );
        let garbage = vec![0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(
            block_on(codec.read_request(&DHT_PROTOCOL, &mut futures::io::Cursor::new(garbage)))
                .is_err()
        );
    }
}
