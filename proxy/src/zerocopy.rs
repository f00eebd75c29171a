//! Cached bodies sent from the page cache on plain HTTP/1.1, as nginx sends its cache files.
//!
//! A body written to the disk tier also lies whole in its entry's file. When hyper writes a
//! slice of such a body to a plain-text connection, [`poll_send`] sends those bytes with
//! sendfile(2) from the file instead of copying them from memory into the socket; only
//! bodies of [`MIN_SEND_FROM_FILE`] to [`MAX_SEND_FROM_FILE`] bytes, the sizes it serves
//! faster.
//!
//! Why: measured with 100 KiB cache hits on loopback (wrk, 50 connections), copying the
//! body into the socket was 31 % of reef's CPU, and the client's copy out of the socket cost
//! it twice as much as when nginx sent the same bytes from its page cache (33 % against 14 %
//! of the client's CPU: sendfile hands the socket the same, warm pages every time, a copy
//! hands it freshly written ones). nginx with `sendfile off` fell from 51k to 32k requests/s.
//!
//! Costs, knowingly taken: a file evicted from the disk tier keeps its disk space until its
//! body leaves memory too (at most the bound on open files of them), and a hit whose file
//! pages the kernel dropped from its page cache waits for the disk on a worker thread, as
//! nginx's sendfile does (pages of a hot object are touched by every hit and stay cached).
//!
//! A slice is sent from the file only if it lies inside one of the body's chunks in memory
//! ([`SharedBody::memory_offset`]): those bytes are, by construction, the bytes at that
//! position of the body, and the file holds the body as written. Anything else (the head,
//! chunked framing, other bodies) is written as it is. Entries are never changed in place (a
//! new version is a new file renamed over the old), so an open file keeps the bytes it had.

use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::SharedBody;

/// Bodies shorter than this are written from memory: sending the head and the body in one
/// write costs less than a write and a sendfile.
pub const MIN_SEND_FROM_FILE: u64 = 16 << 10;

/// Bodies longer than this are written from memory too. Measured with hits on loopback
/// (wrk, 4-50 connections), reef's CPU per request, sendfile against writes from memory:
/// 200 KiB 31 against 43 µs, 400 KiB 48 against 67, 700 KiB 72 against 103, but 1 MiB 505
/// against 247 and 10 MiB 3,520 against 2,250 (the kernel's softirq work grew several times
/// over; capping each sendfile at 256 KiB still left 1 MiB at 350). nginx shows the same:
/// with `sendfile off` it served 10 MiB hits at 3.4 GB/s, with it on at 1.8.
pub const MAX_SEND_FROM_FILE: u64 = 768 << 10;

/// Bodies whose head is written alone, as nginx writes it (`tcp_nopush off`), rather than
/// held back (MSG_MORE) to share the body's first packet. Why these: with BBR, the machine
/// default here, a held-back head let these responses of two or three 64 KiB packets be
/// paced by the kernel's timer (0.36 timer softirqs per 100 KiB hit, none with the head
/// alone), and their cost swung from run to run. Measured on loopback, wrk with 50
/// connections, reef's CPU per hit, head held against alone: 48 KiB 11.3 against 12.6 µs,
/// 80 KiB 15.7 against 16.3, 96 KiB 20.6-28.2 against 17.0-17.1, 112 KiB 23.5-30.4 against
/// 18.1-19.1, 176 KiB 39.1-41.7 against 28.9-30.1, 200 KiB 25.8 against 34.8, 320 KiB 42.2
/// against 57.4. Under CUBIC both kinds cost within 1 µs at 100 KiB.
pub const HEAD_ALONE: std::ops::RangeInclusive<u64> = (81 << 10)..=(192 << 10);

/// A response extension naming the body its bytes come from, so that the connection can
/// send them from the body's file.
#[derive(Debug, Clone)]
pub struct Sendable(pub Arc<SharedBody>);

/// Files kept open for sending by default (one per body in the memory tier that also lies
/// in a disk-cache file).
pub const DEFAULT_OPEN_FILES: usize = 1024;

/// The whole body of a stored response, `len` bytes at `offset` of `file`.
#[derive(Debug)]
pub struct FileCopy {
    file: File,
    offset: u64,
    /// The body's length: it decides how its head goes out (see [`HEAD_ALONE`]) without
    /// locking the body on every write.
    len: u64,
    _slot: OwnedSemaphorePermit,
}

impl FileCopy {
    /// `file`, open for reading, holding the body of `len` bytes from `offset` on, under
    /// `slot` of an [`OpenFiles`] bound.
    pub fn new(file: File, offset: u64, len: u64, slot: OwnedSemaphorePermit) -> FileCopy {
        FileCopy {
            file,
            offset,
            len,
            _slot: slot,
        }
    }
}

/// A bound on the files kept open by [`FileCopy`]s: each holds a descriptor for as long as
/// its body is in memory, and descriptors are a limited resource the connections need too.
#[derive(Debug)]
pub struct OpenFiles {
    slots: Arc<Semaphore>,
    max: usize,
}

impl OpenFiles {
    /// At most `max` open at once (0: none, sendfile is off), and at most a quarter of the
    /// process's limit on open files, so that connections never run out of descriptors
    /// (a soft limit of 1,024 is still common).
    pub fn new(max: usize) -> OpenFiles {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let share = limit.map_or(usize::MAX, |n| usize::try_from(n / 4).unwrap_or(usize::MAX));
        let max = max.min(share).min(Semaphore::MAX_PERMITS);
        OpenFiles {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A place for one more open file, if the bound allows; given back when dropped.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Files open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// The bound in force (after the share of the open-file limit).
    pub fn max(&self) -> usize {
        self.max
    }
}

/// Where one of `bufs` can be sent from a file: its index, the file and the position.
pub(crate) struct InFile {
    index: usize,
    copy: Arc<FileCopy>,
    at: u64,
}

/// The first of `bufs` that lies in the memory of `body`, if its file copy is known.
pub(crate) fn find(body: &SharedBody, bufs: &[IoSlice<'_>]) -> Option<InFile> {
    let copy = body.file_copy()?;
    bufs.iter().enumerate().find_map(|(index, buf)| {
        if buf.is_empty() {
            return None;
        }
        let pos = body.memory_offset(buf.as_ptr() as usize, buf.len())?;
        Some(InFile {
            index,
            copy: copy.clone(),
            at: copy.offset + pos,
        })
    })
}

/// Writes `bufs` to `stream`, sending `found`'s buffer from its file: what precedes it is
/// written first (in the same call when the socket takes it all). `sent` counts the bytes
/// sent from files. If the file cannot be sent from, the bytes in memory are written.
pub(crate) fn poll_send(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
    found: InFile,
    sent: &AtomicU64,
) -> Poll<io::Result<usize>> {
    let mut done = 0;
    // Whether bytes sent in this call wait (MSG_MORE) for the sendfile to push them.
    let held = found.index > 0 && !HEAD_ALONE.contains(&found.copy.len);
    if found.index > 0 {
        // The head goes first, mostly held back (MSG_MORE) to share its packet with the
        // body's first bytes: the client then wakes once per response, not once for the head
        // and again for the body. The sendfile that follows pushes both; if it sends less
        // than all, or nothing, the head is pushed below.
        let before = &bufs[..found.index];
        let want: usize = before.iter().map(|b| b.len()).sum();
        match poll_send_head(stream, cx, before, held) {
            Poll::Ready(Ok(n)) if n < want => {
                if held {
                    push(stream);
                }
                return Poll::Ready(Ok(n));
            }
            Poll::Ready(Ok(n)) => done = n,
            other => return other,
        }
    }
    let copy = &found.copy;
    let len = bufs[found.index].len();
    let mut at = found.at;
    loop {
        let tried = stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(&*stream, &copy.file, Some(&mut at), len).map_err(io::Error::from)
        });
        if held && !matches!(tried, Ok(n) if n == len) {
            push(stream);
        }
        match tried {
            Ok(n) if n > 0 => {
                sent.fetch_add(n as u64, Ordering::Relaxed);
                return Poll::Ready(Ok(done + n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if done > 0 {
                    return Poll::Ready(Ok(done));
                }
                match stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // The file ended early, or it or the socket cannot do sendfile: the bytes are in
            // memory too. Other errors are the socket's, and writing would meet them again.
            Ok(_) => return fall_back(stream, cx, bufs, found.index, done),
            Err(e) if cannot_sendfile(&e) => {
                tracing::debug!(error = %e, "sendfile refused; writing from memory");
                return fall_back(stream, cx, bufs, found.index, done);
            }
            Err(e) if done > 0 => {
                tracing::debug!(error = %e, "sendfile failed after the head");
                return Poll::Ready(Ok(done));
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Writes `bufs`, with MSG_MORE if `more`: the kernel then holds a last partial packet for
/// what follows, and the caller must [`push`] unless the bytes that follow go out in the
/// same call: held bytes otherwise wait for the next write or TCP's probe timer (200 ms or
/// more), which is how an earlier MSG_MORE head stalled some responses (31-37k instead of
/// 51k responses/s).
fn poll_send_head(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
    more: bool,
) -> Poll<io::Result<usize>> {
    let flags = if more {
        rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL
    } else {
        rustix::net::SendFlags::NOSIGNAL
    };
    loop {
        let tried = stream.try_io(Interest::WRITABLE, || {
            let mut control = rustix::net::SendAncillaryBuffer::default();
            rustix::net::sendmsg(stream, bufs, &mut control, flags).map_err(io::Error::from)
        });
        match tried {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            },
            other => return Poll::Ready(other),
        }
    }
}

/// Sends what MSG_MORE held back: setting TCP_NODELAY (on already) pushes pending data.
fn push(stream: &TcpStream) {
    if let Err(e) = rustix::net::sockopt::set_tcp_nodelay(stream, true) {
        tracing::debug!(error = %e, "could not push a response's head");
    }
}

/// Writes `bufs` from `index` on from memory, unless `done` bytes were written already in
/// this call (then reports those; the next call starts at `index`).
fn fall_back(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
    index: usize,
    done: usize,
) -> Poll<io::Result<usize>> {
    if done > 0 {
        return Poll::Ready(Ok(done));
    }
    Pin::new(stream).poll_write_vectored(cx, &bufs[index..])
}

/// Errors that say sendfile cannot be used here, not that the socket failed.
fn cannot_sendfile(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
    )
}
