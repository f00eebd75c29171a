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
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::{Errno, ReadWriteFlags};

/// Reads served from the page cache in place, and reads that went to a blocking thread.
static IN_PLACE: AtomicU64 = AtomicU64::new(0);
static WAITED: AtomicU64 = AtomicU64::new(0);

/// How this process's reads of cached bodies' files went since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileReads {
    /// Read from the page cache, without a thread switch.
    pub in_place: u64,
    /// Handed to a blocking thread: not all in the page cache, or no way to tell (a file
    /// system that cannot read without waiting), or a read that fails.
    pub waited: u64,
}

/// The counts so far.
pub fn file_reads() -> FileReads {
    FileReads {
        in_place: IN_PLACE.load(Ordering::Relaxed),
        waited: WAITED.load(Ordering::Relaxed),
    }
}

/// Counts a read served from the page cache in place.
pub(crate) fn note_in_place() {
    IN_PLACE.fetch_add(1, Ordering::Relaxed);
}

/// Counts a read that went to a blocking thread.
pub(crate) fn note_waited() {
    WAITED.fetch_add(1, Ordering::Relaxed);
}

/// What an in-place read found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InPlace {
    /// All the bytes, from the page cache.
    Read(Vec<u8>),
    /// Not all cached, or past the end: the blocking read does it (and reports errors).
    Wait,
    /// This file's file system or kernel cannot read without waiting: do not ask again.
    Unsupported,
}

/// `len` bytes at `offset` of `file`, if all are in the page cache.
pub(crate) fn read(file: &File, offset: u64, len: u64) -> InPlace {
    let Ok(len) = usize::try_from(len) else {
        return InPlace::Wait;
    };
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match rustix::io::preadv2(
            file,
            &mut [IoSliceMut::new(&mut buf[done..])],
            at,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => return InPlace::Wait,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => return InPlace::Unsupported,
            // EAGAIN: some bytes are not cached (a partial read is thrown away).
            Err(_) => return InPlace::Wait,
        }
    }
    InPlace::Read(buf)
}

/// Opens `path` for reading without updating its access time, if this process may (it
/// owns the file): with `relatime`, the first read after a write would otherwise dirty the
/// inode, and an in-place read could wait for the file system's journal on a worker.
pub(crate) fn open_noatime(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NOATIME)
        .open(path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => File::open(path),
            _ => Err(e),
        })
}

/// `O_NOATIME`, for [`std::os::unix::fs::OpenOptionsExt::custom_flags`].
#[allow(clippy::cast_possible_wrap)] // a flag bit, far below i32::MAX
pub(crate) const NOATIME: i32 = rustix::fs::OFlags::NOATIME.bits() as i32;
