//! Reads of cached bodies' files that never wait for the disk.
//!
//! A body larger than memory's share lies in its file, and every hit reads it back. Read
//! on a blocking thread, each read of [`crate::body::FILE_READ_UP_TO`] bytes cost two
//! thread switches: measured with 10 MiB hits of an object a restarted node had on disk
//! (wrk, 4 connections, loopback), a third of the node's CPU went to handing reads over
//! (`finish_task_switch` 16 %, wake-ups 19 %), and it served 2.2-2.7 GB/s against 3.9 from
//! memory. The bytes of a hot object are in the page cache, where a read costs only its
//! copy, so it is tried in place first with `RWF_NOWAIT`, which fails rather than wait
//! for the disk; only bytes that are not all cached go to a blocking thread, as before.

use std::fs::File;
use std::io::IoSliceMut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::io::{Errno, ReadWriteFlags};

/// Cleared the first time the kernel or file system says it cannot read without waiting
/// (`EOPNOTSUPP`, `ENOSYS`): every read then goes to a blocking thread.
static SUPPORTED: AtomicBool = AtomicBool::new(true);

/// Reads served from the page cache in place, and reads that went to a blocking thread.
static IN_PLACE: AtomicU64 = AtomicU64::new(0);
static WAITED: AtomicU64 = AtomicU64::new(0);

/// How this process's reads of cached bodies' files went since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileReads {
    /// Read from the page cache, without a thread switch.
    pub in_place: u64,
    /// Handed to a blocking thread (not all cached, or no way to tell).
    pub waited: u64,
}

/// The counts so far.
pub fn file_reads() -> FileReads {
    FileReads {
        in_place: IN_PLACE.load(Ordering::Relaxed),
        waited: WAITED.load(Ordering::Relaxed),
    }
}

/// Counts a read that went to a blocking thread.
pub(crate) fn note_waited() {
    WAITED.fetch_add(1, Ordering::Relaxed);
}

/// `len` bytes at `offset` of `file` if all are in the page cache, else `None`.
pub(crate) fn read(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    if !SUPPORTED.load(Ordering::Relaxed) {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match rustix::io::preadv2(
            file,
            &mut [IoSliceMut::new(&mut buf[done..])],
            at,
            ReadWriteFlags::NOWAIT,
        ) {
            // Past the end: the blocking read reports it.
            Ok(0) => return None,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
                SUPPORTED.store(false, Ordering::Relaxed);
                return None;
            }
            // EAGAIN: some bytes are not cached. Other errors are the blocking read's to
            // report.
            Err(_) => return None,
        }
    }
    IN_PLACE.fetch_add(1, Ordering::Relaxed);
    Some(buf)
}
