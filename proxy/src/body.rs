//! A response body shared by everyone who wants it: the fetch appends chunks as they arrive,
//! and each reader follows at its own pace. A slow client never slows the fetch or the other
//! clients: it only falls behind in a list of chunks that are already stored.
//!
//! A body may also live in a file, so that no object is held whole in memory however large
//! it is: a body given a [`Spill`] moves its chunks to a temporary file whenever more than
//! `above` bytes of it are in memory, and a large disk-cache entry is read in place. Readers
//! ([`crate::reader::Reader`]) read such chunks back, from the page cache in place when they
//! are there, else on a blocking thread.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::zerocopy::FileCopy;

/// Why a body ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The upstream connection failed or the body was cut off.
    #[error("upstream body failed: {0}")]
    Upstream(String),
    /// The body exceeded the size cap.
    #[error("body exceeds the size cap of {0} bytes")]
    TooLarge(u64),
    /// The body's file could not be written or read.
    #[error("body file: {0}")]
    File(String),
}

/// One chunk of a body: in memory, or `len` bytes at `offset` of the body's file.
#[derive(Debug, Clone)]
enum Piece {
    Mem(Bytes),
    File { offset: u64, len: u64 },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Mem(b) => b.len() as u64,
            Piece::File { len, .. } => *len,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    pieces: Vec<Piece>,
    len: u64,
    /// Bytes of the pieces in memory.
    in_memory: u64,
    /// Pieces from this index on are in memory, those before it in the file: a spill
    /// moves the whole tail, so memory pieces are always the tail.
    mem_from: usize,
    /// `Some` once the body is complete (Ok) or has failed.
    end: Option<Result<(), BodyError>>,
}

/// Largest body [`SharedBody::stored_copy`] stores as one contiguous buffer.
pub const CONTIGUOUS_UP_TO: u64 = 1 << 20;

/// Where a growing body goes once more than `above` bytes of it are in memory: a file in
/// `dir`, unlinked as soon as it is made (it lives as long as the body does, and a crash
/// leaves nothing behind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spill {
    /// Directory for the files (shared: every fetch's body carries it).
    pub dir: Arc<Path>,
    /// Bytes of one body held in memory at most (one chunk more while it is moved).
    pub above: u64,
}

/// A growing body. Cloning the `Arc` is how readers share it.
#[derive(Debug, Default)]
pub struct SharedBody {
    state: Mutex<State>,
    grew: Notify,
    /// SHA-256 of the complete body, set by whoever completed it: peers are sent it so they
    /// can check what they received.
    digest: OnceLock<[u8; 32]>,
    spill: Option<Spill>,
    /// Set once moving to the file failed: the body then stays in memory.
    spill_failed: std::sync::atomic::AtomicBool,
    /// The file holding the pieces that are not in memory.
    file: OnceLock<Arc<std::fs::File>>,
    /// Set once the file's file system said it cannot read without waiting: every read
    /// of it then goes to a blocking thread (see [`crate::pagecache`]).
    waits_for_disk: std::sync::atomic::AtomicBool,
    /// The complete body, whole in a disk-cache file: plain HTTP/1.1 sends it from there
    /// (see [`crate::zerocopy`]).
    file_copy: OnceLock<Arc<FileCopy>>,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    digest_array(ring::digest::digest(&ring::digest::SHA256, data))
}

/// A SHA-256 digest as the array stored and sent with bodies.
pub(crate) fn digest_array(d: ring::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What a reader finds at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The next chunk.
    Chunk(Bytes),
    /// The next `count` chunks are `len` bytes at `offset` of the body's file.
    InFile {
        /// Where they start in the file.
        offset: u64,
        /// Their total length.
        len: u64,
        /// How many chunks they are.
        count: usize,
    },
    /// The body is complete and the reader has all of it.
    End,
    /// The body failed; the reader must not treat what it has as complete.
    Failed(BodyError),
    /// Nothing yet: wait for [`SharedBody::wait`].
    Pending,
}

/// Most bytes of consecutive file chunks that [`SharedBody::next`] hands out at once (one
/// read, held until the client takes it: a thousand slow clients of a large object hold a
/// thousand of these).
pub const FILE_READ_UP_TO: u64 = 256 << 10;

impl SharedBody {
    /// An empty, growing body.
    pub fn new() -> Arc<Self> {
        Arc::new(SharedBody::default())
    }

    /// An empty, growing body that moves to a file beyond `spill.above` bytes in memory.
    pub fn spilling(spill: Spill) -> Arc<Self> {
        Arc::new(SharedBody {
            spill: Some(spill),
            ..SharedBody::default()
        })
    }

    /// A complete body.
    pub fn complete(data: Bytes) -> Arc<Self> {
        let digest = sha256(&data);
        SharedBody::complete_with(data, digest)
    }

    /// A complete body whose digest is already known.
    pub fn complete_with(data: Bytes, digest: [u8; 32]) -> Arc<Self> {
        let body = SharedBody::new();
        body.push(data);
        body.finish_with_digest(digest);
        body
    }

    /// A complete body of `len` bytes at `offset` of `file` (a disk-cache entry read in
    /// place), whose digest is known.
    pub fn complete_in_file(
        file: std::fs::File,
        offset: u64,
        len: u64,
        digest: [u8; 32],
    ) -> Arc<Self> {
        let body = SharedBody::new();
        let _ = body.file.set(Arc::new(file));
        if let Ok(mut s) = body.state.lock() {
            let mut at = 0;
            // In pieces of the read size, so a range is found without reading what precedes.
            while at < len {
                let n = (len - at).min(FILE_READ_UP_TO);
                s.pieces.push(Piece::File {
                    offset: offset + at,
                    len: n,
                });
                at += n;
            }
            s.len = len;
            s.mem_from = s.pieces.len();
        }
        body.finish_with_digest(digest);
        body
    }

    /// Appends a chunk as a fetch does: then moves what is in memory to the file if more
    /// than the spill limit is (see [`SharedBody::spill_if_needed`]). One writer per body.
    pub async fn append(&self, chunk: Bytes) {
        self.push(chunk);
        self.spill_if_needed().await;
    }

    /// Appends a chunk, in memory whatever its size (complete bodies, tests).
    pub fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if let Ok(mut s) = self.state.lock() {
            if s.end.is_some() {
                return;
            }
            s.len += chunk.len() as u64;
            s.in_memory += chunk.len() as u64;
            s.pieces.push(Piece::Mem(chunk));
        }
        self.grew.notify_waiters();
    }

    /// Moves the body's chunks in memory to its file if more than its spill limit are.
    /// Called by the body's one writer ([`SharedBody::append`]); the writing happens
    /// on a blocking thread. If the file cannot be made or written (a full or missing
    /// directory), the body stays in memory, within the object size cap, rather than fail
    /// every client of it: serving matters more than the bound.
    async fn spill_if_needed(&self) {
        if self.spill_failed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.spill().await {
            tracing::warn!(error = %e, "a large body stays in memory: it could not move to a file");
            self.spill_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn spill(&self) -> Result<(), BodyError> {
        let Some(spill) = &self.spill else {
            return Ok(());
        };
        // The tail in memory, and where it starts in the file (which holds the body as is).
        let (start, moving) = {
            let s = self.state.lock().map_err(|_| poisoned())?;
            if s.in_memory <= spill.above {
                return Ok(());
            }
            let moving: Vec<Piece> = s.pieces[s.mem_from..].to_vec();
            (s.len - s.in_memory, moving)
        };
        let file = match self.file.get() {
            Some(f) => f.clone(),
            None => {
                let dir = spill.dir.clone();
                let made = tokio::task::spawn_blocking(move || temp_file(&dir))
                    .await
                    .map_err(|e| BodyError::File(e.to_string()))?
                    .map_err(|e| BodyError::File(format!("creating a file: {e}")))?;
                self.file.get_or_init(|| Arc::new(made)).clone()
            }
        };
        let count = moving.len();
        tokio::task::spawn_blocking(move || {
            let mut at = start;
            for p in &moving {
                if let Piece::Mem(b) = p {
                    file.write_all_at(b, at)?;
                }
                at += p.len();
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| BodyError::File(e.to_string()))?
        .map_err(|e| BodyError::File(format!("writing: {e}")))?;
        // Only this writer appends or converts pieces, so the tail moved is still there.
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        let (from, mut at) = (s.mem_from, start);
        for p in &mut s.pieces[from..from + count] {
            let len = p.len();
            *p = Piece::File { offset: at, len };
            at += len;
        }
        s.in_memory -= at - start;
        s.mem_from += count;
        Ok(())
    }

    /// Ends the body: complete (`Ok`) or failed. Later pushes are ignored.
    pub fn finish(&self, end: Result<(), BodyError>) {
        if let Ok(mut s) = self.state.lock()
            && s.end.is_none()
        {
            s.end = Some(end);
        }
        self.grew.notify_waiters();
    }

    /// Completes the body with its digest.
    pub fn finish_with_digest(&self, digest: [u8; 32]) {
        let _ = self.digest.set(digest);
        self.finish(Ok(()));
    }

    /// The complete body's SHA-256, once known.
    pub fn digest(&self) -> Option<[u8; 32]> {
        self.digest.get().copied()
    }

    /// The SHA-256 of the complete body: the one recorded while it arrived, else computed
    /// from the body (`None` if it is not complete or cannot be read).
    pub fn digest_or_hash(&self) -> Option<[u8; 32]> {
        self.digest()
            .or_else(|| self.collect().map(|all| sha256(&all)))
    }

    /// Records that the complete body also lies whole in a file. Only the first copy counts.
    pub fn set_file_copy(&self, copy: FileCopy) {
        if matches!(self.end(), Some(Ok(()))) {
            let _ = self.file_copy.set(Arc::new(copy));
        }
    }

    /// The body's copy in a file, if one is known.
    pub fn file_copy(&self) -> Option<&Arc<FileCopy>> {
        self.file_copy.get()
    }

    /// Where `len` bytes at address `ptr` lie in the body, if they lie inside one of its
    /// chunks in memory (a slice of one of them, such as a reader hands out).
    pub fn memory_offset(&self, ptr: usize, len: usize) -> Option<u64> {
        let s = self.state.lock().ok()?;
        let mut at = 0;
        for p in &s.pieces {
            if let Piece::Mem(b) = p {
                let base = b.as_ptr() as usize;
                if ptr >= base && ptr.checked_add(len)? <= base + b.len() {
                    return Some(at + (ptr - base) as u64);
                }
            }
            at += p.len();
        }
        None
    }

    /// Bytes so far.
    pub fn len(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.len)
    }

    /// Whether no bytes have arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of it held in memory.
    pub fn in_memory(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.in_memory)
    }

    /// Whether all of it is in memory. A disk entry read in place is not (the memory tier
    /// does not keep those: the disk tier already holds them); a fetched body that spilled
    /// to its file is kept, weighed at its full size.
    pub fn is_all_in_memory(&self) -> bool {
        self.file.get().is_none()
    }

    /// How the body ended, if it has.
    pub fn end(&self) -> Option<Result<(), BodyError>> {
        self.state.lock().ok().and_then(|s| s.end.clone())
    }

    /// What is at chunk `index`: a chunk in memory, a run of chunks in the file (up to
    /// [`FILE_READ_UP_TO`] bytes), the end, or nothing yet.
    pub fn next(&self, index: usize) -> Next {
        let Ok(s) = self.state.lock() else {
            return Next::Failed(poisoned());
        };
        match s.pieces.get(index) {
            Some(Piece::Mem(c)) => return Next::Chunk(c.clone()),
            Some(&Piece::File { offset, len }) => {
                let (mut total, mut count) = (len, 1);
                while let Some(&Piece::File { offset: o, len: l }) = s.pieces.get(index + count) {
                    if o != offset + total || total + l > FILE_READ_UP_TO {
                        break;
                    }
                    total += l;
                    count += 1;
                }
                return Next::InFile {
                    offset,
                    len: total,
                    count,
                };
            }
            None => {}
        }
        match &s.end {
            Some(Ok(())) => Next::End,
            Some(Err(e)) => Next::Failed(e.clone()),
            None => Next::Pending,
        }
    }

    /// Reads `len` bytes at `offset` of the body's file (blocking).
    pub fn read_file(&self, offset: u64, len: u64) -> Result<Bytes, BodyError> {
        let file = self
            .file
            .get()
            .ok_or_else(|| BodyError::File("no file".into()))?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| BodyError::File(format!("reading: {e}")))?;
        Ok(Bytes::from(buf))
    }

    /// Reads `len` bytes at `offset` of the body's file: from the page cache in place when
    /// they are all there, else on a blocking thread (see [`crate::pagecache`]).
    pub async fn read_file_at(self: &Arc<Self>, offset: u64, len: u64) -> Result<Bytes, BodyError> {
        if let Some(bytes) = self.read_file_cached(offset, len) {
            crate::pagecache::note_in_place();
            return Ok(bytes);
        }
        crate::pagecache::note_waited();
        let body = self.clone();
        tokio::task::spawn_blocking(move || body.read_file(offset, len))
            .await
            .unwrap_or_else(|e| Err(BodyError::File(e.to_string())))
    }

    /// `len` bytes at `offset` of the body's file if they are all in the page cache (read
    /// with `RWF_NOWAIT`); `None` if they are not, or if its file system cannot tell.
    fn read_file_cached(&self, offset: u64, len: u64) -> Option<Bytes> {
        use std::sync::atomic::Ordering::Relaxed;
        let file = self.file.get()?;
        if self.waits_for_disk.load(Relaxed) {
            return None;
        }
        match crate::pagecache::read(file, offset, len) {
            crate::pagecache::InPlace::Read(bytes) => Some(Bytes::from(bytes)),
            crate::pagecache::InPlace::Wait => None,
            crate::pagecache::InPlace::Unsupported => {
                self.waits_for_disk.store(true, Relaxed);
                None
            }
        }
    }

    /// Waits until something is at `index` (a chunk, the end or a failure).
    pub async fn wait(&self, index: usize) {
        let notified = self.grew.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !matches!(self.next(index), Next::Pending) {
            return;
        }
        notified.await;
    }

    /// A complete copy for the cache, with `digest`; `None` unless the body is complete.
    /// Small bodies become one contiguous buffer (a hit is then one write); larger ones share
    /// their chunks, and their file, with this body.
    pub fn stored_copy(&self, digest: [u8; 32]) -> Option<Arc<SharedBody>> {
        let s = self.state.lock().ok()?;
        if !matches!(s.end, Some(Ok(()))) {
            return None;
        }
        let copy = SharedBody::new();
        if let Some(f) = self.file.get() {
            let _ = copy.file.set(f.clone());
        }
        if let Ok(mut c) = copy.state.lock() {
            c.pieces = if s.len > CONTIGUOUS_UP_TO || self.file.get().is_some() {
                s.pieces.clone()
            } else {
                vec![Piece::Mem(concat(&s))]
            };
            c.len = s.len;
            c.in_memory = s.in_memory;
            c.mem_from = s.mem_from;
        }
        copy.finish_with_digest(digest);
        Some(copy)
    }

    /// The complete body as one buffer, if it is complete and all in memory.
    pub fn collect(&self) -> Option<Bytes> {
        let s = self.state.lock().ok()?;
        if !matches!(s.end, Some(Ok(()))) || self.file.get().is_some() {
            return None;
        }
        Some(concat(&s))
    }

    /// Writes the complete body to `out` (blocking), from memory and its file.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> Result<(), BodyError> {
        let pieces = {
            let s = self.state.lock().map_err(|_| poisoned())?;
            if !matches!(s.end, Some(Ok(()))) {
                return Err(BodyError::Upstream("incomplete".into()));
            }
            s.pieces.clone()
        };
        let io = |e: std::io::Error| BodyError::File(format!("copying: {e}"));
        for p in pieces {
            match p {
                Piece::Mem(b) => out.write_all(&b).map_err(io)?,
                Piece::File { offset, len } => {
                    let mut at = 0;
                    while at < len {
                        let n = (len - at).min(FILE_READ_UP_TO);
                        out.write_all(&self.read_file(offset + at, n)?)
                            .map_err(io)?;
                        at += n;
                    }
                }
            }
        }
        Ok(())
    }
}

fn poisoned() -> BodyError {
    BodyError::Upstream("poisoned".into())
}

/// A new file in `dir`, already unlinked.
fn temp_file(dir: &Path) -> std::io::Result<std::fs::File> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".reef-body-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(crate::pagecache::NOATIME)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// The pieces of `s`, all in memory, as one buffer.
fn concat(s: &State) -> Bytes {
    let mut out = Vec::with_capacity(s.len as usize);
    for p in &s.pieces {
        if let Piece::Mem(c) = p {
            out.extend_from_slice(c);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{Read, Reader};
    use std::path::PathBuf;

    async fn read_all(mut reader: Reader) -> Result<Vec<u8>, BodyError> {
        let mut got = Vec::new();
        loop {
            match reader.next().await {
                Read::Data(c) => got.extend_from_slice(&c),
                Read::End => return Ok(got),
                Read::Failed(e) => return Err(e),
            }
        }
    }

    fn spill_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reef-spill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A body of `n` chunks of 10 kB, each chunk's bytes its index.
    fn pattern(n: u8) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i; 10_000])).collect()
    }

    #[tokio::test]
    async fn a_large_body_moves_to_its_file_and_reads_back_whole_from_any_position() {
        let dir = spill_dir("whole");
        let above = 25_000;
        let body = SharedBody::spilling(Spill {
            dir: dir.as_path().into(),
            above,
        });
        // A reader that starts before anything is spilled, and follows as it grows.
        let early = tokio::spawn(read_all(Reader::new(body.clone(), 0)));
        let mut held = 0;
        for chunk in pattern(20) {
            body.append(chunk).await;
            held = held.max(body.in_memory());
            tokio::task::yield_now().await;
        }
        body.finish_with_digest([3; 32]);
        assert!(
            held <= above,
            "at most {above} bytes in memory, held {held}"
        );
        assert!(!body.is_all_in_memory());
        let want: Vec<u8> = pattern(20).concat();
        assert_eq!(early.await.unwrap().unwrap(), want);
        // Late readers, from the start and from inside a chunk, read the file.
        assert_eq!(read_all(Reader::new(body.clone(), 0)).await.unwrap(), want);
        assert_eq!(
            read_all(Reader::new(body.clone(), 123_456)).await.unwrap(),
            want[123_456..]
        );
        // The stored copy shares the file; the whole body can be written out.
        let copy = body.stored_copy([3; 32]).unwrap();
        assert_eq!(read_all(Reader::new(copy.clone(), 0)).await.unwrap(), want);
        let mut out = Vec::new();
        copy.write_to(&mut out).unwrap();
        assert_eq!(out, want);
        assert_eq!(copy.collect(), None, "never gathered whole in memory");
        // The file was unlinked as soon as it was made: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_body_that_cannot_spill_stays_whole_in_memory() {
        let body = SharedBody::spilling(Spill {
            dir: Path::new("/nonexistent/reef/spill").into(),
            above: 10,
        });
        body.append(Bytes::from_static(b"more than ten bytes"))
            .await;
        body.append(Bytes::from_static(b", and more")).await;
        body.finish(Ok(()));
        assert!(body.is_all_in_memory());
        assert_eq!(
            body.collect().as_deref(),
            Some(&b"more than ten bytes, and more"[..])
        );
    }

    #[tokio::test]
    async fn a_body_in_a_file_is_read_in_place() {
        let dir = spill_dir("in-place");
        let path = dir.join("entry");
        let want: Vec<u8> = pattern(250).concat(); // 2.5 MB: three read-sized pieces
        let mut bytes = b"HEADER".to_vec();
        bytes.extend_from_slice(&want);
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let body = SharedBody::complete_in_file(file, 6, want.len() as u64, [9; 32]);
        assert_eq!(body.len(), want.len() as u64);
        assert_eq!(body.in_memory(), 0);
        assert_eq!(read_all(Reader::new(body.clone(), 0)).await.unwrap(), want);
        let from = 2_000_001;
        assert_eq!(
            read_all(Reader::new(body, from)).await.unwrap(),
            want[from as usize..]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_file_in_the_page_cache_is_read_without_a_blocking_thread() {
        let dir = spill_dir("page-cache");
        let path = dir.join("entry");
        let want: Vec<u8> = pattern(250).concat(); // 2.5 MB: ten read-sized pieces
        std::fs::write(&path, &want).unwrap();
        // Just written, so in the page cache.
        let file = std::fs::File::open(&path).unwrap();
        let body = SharedBody::complete_in_file(file, 0, want.len() as u64, [9; 32]);
        let before = crate::pagecache::file_reads();
        assert_eq!(read_all(Reader::new(body.clone(), 0)).await.unwrap(), want);
        let reads = want.len().div_ceil(FILE_READ_UP_TO as usize) as u64;
        // Other tests only add to the process's counts. A file system that cannot read
        // without waiting (tmpfs) is asked once, then left to the blocking reads.
        let in_place = crate::pagecache::file_reads().in_place - before.in_place;
        let unsupported = body
            .waits_for_disk
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            in_place >= reads || (unsupported && in_place == 0),
            "{in_place} of {reads} reads in place"
        );
        // Bytes past the file's end are never made up: the read is left to the blocking
        // one, which reports the short file.
        assert_eq!(body.read_file_cached(want.len() as u64 - 10, 20), None);
        assert!(body.read_file(want.len() as u64 - 10, 20).is_err());
        let some = body.read_file_cached(1_000, 10_000);
        assert!(some.is_none() == unsupported);
        assert!(some.is_none_or(|b| b[..] == want[1_000..11_000]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn readers_follow_at_their_own_pace() {
        let body = SharedBody::new();
        assert_eq!(body.next(0), Next::Pending);
        let reader = tokio::spawn(read_all(Reader::new(body.clone(), 0)));
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
