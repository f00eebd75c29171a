//! The disk tier: complete responses in files, under a byte budget, kept across restarts.
//!
//! One file per URL, named by the SHA-256 of its cache key (so no key can name a path), in
//! `objects/`. A file is written in `tmp/` and renamed into place when complete, so a crash
//! leaves either the old entry or the new one, never half of one; leftovers in `tmp/` are
//! removed at start. Every entry carries the SHA-256 of its body, checked when it is read:
//! a damaged file is deleted and counts as a miss. The index (key, size, last use) lives in
//! memory and is rebuilt at start from the entries' headers.
//!
//! ```text
//! entry = "REEFOBJ1"  meta_len:u32-be  postcard(Meta)  body[meta.body_len]
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::body::{CONTIGUOUS_UP_TO, SharedBody, sha256};
use crate::cache::freshness::Received;
use crate::store::Stored;
use crate::zerocopy::{
    DEFAULT_OPEN_FILES, FileCopy, MAX_SEND_FROM_FILE, MIN_SEND_FROM_FILE, OpenFiles,
};

const MAGIC: &[u8; 8] = b"REEFOBJ1";
/// Largest metadata block (a URL and its headers).
pub const MAX_META: usize = 1 << 20;

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Not an entry (wrong magic, truncated, oversized metadata).
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    /// The body does not hash to the digest recorded with it.
    #[error("body does not match its SHA-256")]
    Corrupt,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    request_time_ms: u64,
    response_time_ms: u64,
    date_ms: Option<u64>,
    age_secs: u64,
    lifetime_ms: u64,
    vary: Vec<(String, Option<Vec<u8>>)>,
    body_len: u64,
    sha256: [u8; 32],
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The start of an entry, up to its body of `body_len` bytes hashing to `digest`.
fn entry_head(key: &str, stored: &Stored, body_len: u64, digest: [u8; 32]) -> Vec<u8> {
    let meta = Meta {
        key: key.to_string(),
        status: stored.status.as_u16(),
        headers: stored
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        request_time_ms: millis(stored.received.request_time),
        response_time_ms: millis(stored.received.response_time),
        date_ms: stored.received.date.map(millis),
        age_secs: stored.received.age.as_secs(),
        lifetime_ms: stored.lifetime.as_millis() as u64,
        vary: stored
            .vary
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    v.as_ref().map(|v| v.as_bytes().to_vec()),
                )
            })
            .collect(),
        body_len,
        sha256: digest,
    };
    let meta = postcard::to_stdvec(&meta).unwrap_or_default();
    let mut out = Vec::with_capacity(12 + meta.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out
}

/// The metadata at the start of an entry, and where its body starts.
fn decode_meta(head: &[u8]) -> Result<(Meta, usize), EntryError> {
    let magic = head.get(..8).ok_or(EntryError::Malformed("truncated"))?;
    if magic != MAGIC {
        return Err(EntryError::Malformed("not a reef entry"));
    }
    let len: [u8; 4] = head
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .ok_or(EntryError::Malformed("truncated"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_META {
        return Err(EntryError::Malformed("metadata too large"));
    }
    let raw = head
        .get(12..12 + len)
        .ok_or(EntryError::Malformed("truncated metadata"))?;
    let meta: Meta = postcard::from_bytes(raw).map_err(|_| EntryError::Malformed("metadata"))?;
    Ok((meta, 12 + len))
}

/// The stored response of `meta`, with `body`.
fn stored_from(meta: &Meta, body: Arc<SharedBody>) -> Result<Stored, EntryError> {
    let mut headers = HeaderMap::new();
    for (n, v) in &meta.headers {
        let name = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| EntryError::Malformed("header name"))?;
        let value =
            HeaderValue::from_bytes(v).map_err(|_| EntryError::Malformed("header value"))?;
        headers.append(name, value);
    }
    let mut vary = Vec::new();
    for (n, v) in &meta.vary {
        let name =
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| EntryError::Malformed("vary name"))?;
        let value = match v {
            Some(v) => {
                Some(HeaderValue::from_bytes(v).map_err(|_| EntryError::Malformed("vary value"))?)
            }
            None => None,
        };
        vary.push((name, value));
    }
    let status = StatusCode::from_u16(meta.status).map_err(|_| EntryError::Malformed("status"))?;
    Ok(Stored {
        status,
        headers,
        received: Received {
            request_time: time(meta.request_time_ms),
            response_time: time(meta.response_time_ms),
            date: meta.date_ms.map(time),
            age: Duration::from_secs(meta.age_secs),
        },
        lifetime: Duration::from_millis(meta.lifetime_ms),
        vary,
        body,
    })
}

#[derive(Debug)]
struct Entry {
    /// The cache key (for purges of a prefix).
    key: String,
    size: u64,
    used: u64,
    /// Whether its body was checked against its digest in this run (written by it, or read
    /// whole once): a large entry is read in place and is not hashed again at every hit.
    verified: bool,
}

#[derive(Debug, Default)]
struct Index {
    /// By file name (the key's hash).
    entries: HashMap<String, Entry>,
    /// The latest write reserved per file name, with its key (see [`DiskTier::reserve`]).
    writes: HashMap<String, (u64, String)>,
    bytes: u64,
    tick: u64,
}

/// Responses on disk under a byte budget.
#[derive(Debug)]
pub struct DiskTier {
    root: PathBuf,
    budget: u64,
    index: Mutex<Index>,
    next_tmp: AtomicU64,
    /// Held while a large entry's digest is checked: a crowd's first hits after a restart
    /// read it through once, not once each.
    verifying: Mutex<()>,
    /// Bounds the entry files kept open for sending bodies that are also in memory.
    open_files: OpenFiles,
}

/// The file name of `key`: its SHA-256 in hex.
fn file_name(key: &str) -> String {
    sha256(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DiskTier {
    /// Opens (creating) the tier in `root`, indexing what a previous run left there.
    pub fn open(root: &Path, budget: u64) -> std::io::Result<DiskTier> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&objects)?;
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&objects)?.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            match read_head(&path) {
                Ok((m, start))
                    if m.body_len.checked_add(start as u64) == Some(meta.len())
                        && name == file_name(&m.key) =>
                {
                    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
                    found.push((mtime, name, meta.len(), m.key));
                }
                _ => {
                    tracing::warn!(path = %path.display(), "removing a damaged disk-cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, name, size, key) in found {
            index.tick += 1;
            index.bytes += size;
            let used = index.tick;
            let verified = false;
            index.entries.insert(
                name,
                Entry {
                    key,
                    size,
                    used,
                    verified,
                },
            );
        }
        let tier = DiskTier {
            root: root.to_path_buf(),
            budget,
            index: Mutex::new(index),
            next_tmp: AtomicU64::new(0),
            verifying: Mutex::new(()),
            open_files: OpenFiles::new(DEFAULT_OPEN_FILES),
        };
        tier.evict();
        Ok(tier)
    }

    /// Keeps at most `max` entry files open for sending bodies from them (0: none; see
    /// [`crate::zerocopy`]).
    pub fn with_open_files(mut self, max: usize) -> DiskTier {
        self.open_files = OpenFiles::new(max);
        self
    }

    /// Entry files open for sending bodies from them.
    pub fn open_files(&self) -> usize {
        self.open_files.open()
    }

    /// Entry files that may be open at once for that (see [`DiskTier::with_open_files`]).
    pub fn open_files_max(&self) -> usize {
        self.open_files.max()
    }

    /// Its directory for files being written (bodies too large for memory go there).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join("objects").join(name)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.index.lock().map_or(0, |i| i.entries.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.index.lock().map_or(0, |i| i.bytes)
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: &str) -> bool {
        self.index
            .lock()
            .is_ok_and(|i| i.entries.contains_key(&file_name(key)))
    }

    /// Reserves the next write of `key`: only the latest reservation may land, and a
    /// `remove` cancels those made before it (so a slow write cannot bring back an entry that
    /// was invalidated meanwhile, or replace a newer one).
    pub fn reserve(&self, key: &str) -> u64 {
        let ticket = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut i) = self.index.lock() {
            i.writes.insert(file_name(key), (ticket, key.to_string()));
        }
        ticket
    }

    /// Writes `stored` for `key` under `ticket` from [`DiskTier::reserve`] (blocking: call
    /// from a blocking thread).
    pub fn write(&self, key: &str, stored: &Stored, ticket: u64) -> std::io::Result<()> {
        let name = file_name(key);
        if !matches!(stored.body.end(), Some(Ok(()))) {
            return Ok(()); // only complete bodies are stored
        }
        let len = stored.body.len();
        let Some(digest) = stored.body.digest_or_hash() else {
            return Ok(());
        };
        let head = entry_head(key, stored, len, digest);
        let size = head.len() as u64 + len;
        if size > self.budget {
            self.remove(key); // the older copy is not this response
            return Ok(());
        }
        let tmp = self.tmp_dir().join(format!("{name}.{ticket}"));
        let written = (|| {
            // Readable too: the body is sent from this file while it is in memory.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut f = std::io::BufWriter::with_capacity(1 << 16, file);
            f.write_all(&head)?;
            // From memory and from the body's own file: never gathered whole.
            stored
                .body
                .write_to(&mut f)
                .map_err(std::io::Error::other)?;
            f.into_inner().map_err(|e| e.into_error())
        })();
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                // A full disk must not fill up further with halves of entries.
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        {
            let Ok(mut i) = self.index.lock() else {
                return Ok(());
            };
            if i.writes.get(&name).map(|(t, _)| *t) != Some(ticket) {
                drop(i);
                let _ = std::fs::remove_file(&tmp);
                return Ok(()); // cancelled by a remove, or overtaken by a newer write
            }
            i.writes.remove(&name);
            if let Err(e) = std::fs::rename(&tmp, self.path(&name)) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            i.tick += 1;
            let used = i.tick;
            let entry = Entry {
                key: key.to_string(),
                size,
                used,
                verified: true,
            };
            if let Some(old) = i.entries.insert(name, entry) {
                i.bytes -= old.size;
            }
            i.bytes += size;
        }
        self.keep_copy(&stored.body, file, head.len() as u64);
        self.evict();
        Ok(())
    }

    /// Reads `key`'s entry (blocking). A damaged entry is deleted and reads as `None`. A
    /// body larger than [`CONTIGUOUS_UP_TO`] is not read into memory: it is read from the
    /// file as clients need it (the digest is checked once a run, reading it through).
    pub fn read(&self, key: &str) -> Option<Stored> {
        let name = file_name(key);
        let (mut verified, size) = {
            let mut i = self.index.lock().ok()?;
            i.tick += 1;
            let tick = i.tick;
            let e = i.entries.get_mut(&name)?;
            e.used = tick;
            (e.verified, e.size)
        };
        // One check of a large entry at a time; those who waited find it checked.
        let checking = (!verified && size > CONTIGUOUS_UP_TO)
            .then(|| self.verifying.lock().ok())
            .flatten();
        if checking.is_some() {
            verified = self.index.lock().ok()?.entries.get(&name)?.verified;
        }
        let path = self.path(&name);
        match read_entry(&path, verified) {
            Ok((k, stored, file)) if k == key => {
                if let Some((file, offset)) = file {
                    self.keep_copy(&stored.body, file, offset);
                }
                if !verified
                    && let Ok(mut i) = self.index.lock()
                    && let Some(e) = i.entries.get_mut(&name)
                {
                    e.verified = true;
                }
                Some(stored)
            }
            Ok(_) => None, // a hash collision: never serve another URL's body
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping a damaged disk-cache entry");
                self.remove(key);
                None
            }
        }
    }

    /// Lets `body` be sent from `file` (from `offset` on) while it is in memory, if its size
    /// is one that sendfile serves faster and the bound on open files allows.
    fn keep_copy(&self, body: &SharedBody, file: std::fs::File, offset: u64) {
        let len = body.len();
        if (MIN_SEND_FROM_FILE..=MAX_SEND_FROM_FILE).contains(&len)
            && body.is_all_in_memory()
            && body.file_copy().is_none()
            && let Some(slot) = self.open_files.take()
        {
            body.set_file_copy(FileCopy::new(file, offset, len, slot));
        }
    }

    /// Deletes `key`'s entry.
    pub fn remove(&self, key: &str) {
        let name = file_name(key);
        if let Ok(mut i) = self.index.lock() {
            i.writes.remove(&name);
            if let Some(old) = i.entries.remove(&name) {
                i.bytes -= old.size;
                let _ = std::fs::remove_file(self.path(&name));
            }
        }
    }

    /// Deletes every entry whose key `covered` says, and cancels such writes under way;
    /// returns the keys deleted.
    /// The files are deleted after the index lock is released (on a blocking thread when
    /// called from the runtime): a large purge must not stall other disk lookups.
    pub fn remove_matching(&self, covered: impl Fn(&str) -> bool) -> Vec<String> {
        let mut paths = Vec::new();
        let mut keys = Vec::new();
        {
            let Ok(mut i) = self.index.lock() else {
                return Vec::new();
            };
            i.writes.retain(|_, (_, key)| !covered(key));
            let names: Vec<String> = i
                .entries
                .iter()
                .filter(|(_, e)| covered(&e.key))
                .map(|(n, _)| n.clone())
                .collect();
            for name in names {
                if let Some(old) = i.entries.remove(&name) {
                    i.bytes -= old.size;
                    paths.push(self.path(&name));
                    keys.push(old.key);
                }
            }
        }
        let unlink = move || {
            for p in paths {
                let _ = std::fs::remove_file(p);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(unlink)),
            Err(_) => unlink(),
        }
        keys
    }

    /// Deletes least recently used entries until the tier fits its budget.
    fn evict(&self) {
        let Ok(mut i) = self.index.lock() else { return };
        while i.bytes > self.budget {
            let Some(name) = i
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            if let Some(old) = i.entries.remove(&name) {
                i.bytes -= old.size;
                let _ = std::fs::remove_file(self.path(&name));
            }
        }
    }
}

/// Reads just an entry's metadata.
fn read_head(path: &Path) -> Result<(Meta, usize), EntryError> {
    read_head_from(&mut std::fs::File::open(path)?)
}

fn read_head_from(f: &mut std::fs::File) -> Result<(Meta, usize), EntryError> {
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if len > MAX_META {
        return Err(EntryError::Malformed("metadata too large"));
    }
    let mut all = head.to_vec();
    all.resize(12 + len, 0);
    f.read_exact(&mut all[12..])?;
    decode_meta(&all)
}

/// The key and stored response of an entry, with its file and body offset when the body
/// was read into memory.
type ReadEntry = (String, Stored, Option<(std::fs::File, u64)>);

/// Reads the entry at `path`: a small body into memory, checked; a large one in place,
/// checked by reading it through unless `verified`.
fn read_entry(path: &Path, verified: bool) -> Result<ReadEntry, EntryError> {
    let mut f = crate::pagecache::open_noatime(path)?;
    let (meta, start) = read_head_from(&mut f)?;
    let start = start as u64;
    if meta.body_len.checked_add(start) != Some(f.metadata()?.len()) {
        return Err(EntryError::Malformed("body length"));
    }
    let (body, file) = if meta.body_len <= CONTIGUOUS_UP_TO {
        let mut buf = vec![0u8; meta.body_len as usize];
        f.read_exact_at(&mut buf, start)?;
        if sha256(&buf) != meta.sha256 {
            return Err(EntryError::Corrupt);
        }
        let body = SharedBody::complete_with(Bytes::from(buf), meta.sha256);
        (body, Some((f, start)))
    } else {
        if !verified {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < meta.body_len {
                let n = (meta.body_len - at).min(buf.len() as u64) as usize;
                f.read_exact_at(&mut buf[..n], start + at)?;
                ctx.update(&buf[..n]);
                at += n as u64;
            }
            if ctx.finish().as_ref() != meta.sha256 {
                return Err(EntryError::Corrupt);
            }
        }
        let body = SharedBody::complete_in_file(f, start, meta.body_len, meta.sha256);
        (body, None)
    };
    let stored = stored_from(&meta, body)?;
    Ok((meta.key, stored, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &'static [u8]) -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Stored {
            status: StatusCode::OK,
            received: Received::new(t, t, &headers),
            headers,
            lifetime: Duration::from_secs(60),
            vary: vec![(HeaderName::from_static("accept-encoding"), None)],
            body: SharedBody::complete(Bytes::from_static(body)),
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("reef-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// An entry's bytes for `stored` (whose body must be complete).
    fn encode_entry(key: &str, stored: &Stored, body: &[u8]) -> Vec<u8> {
        let digest = stored.body.digest().unwrap_or_else(|| sha256(body));
        let mut out = entry_head(key, stored, body.len() as u64, digest);
        out.extend_from_slice(body);
        out
    }

    /// Reads `bytes` back as an entry file, the way the tier reads its entries.
    fn decode_entry(bytes: &[u8]) -> Result<(String, Stored), EntryError> {
        let dir = temp("decode");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("entry");
        std::fs::write(&path, bytes)?;
        let read = read_entry(&path, false);
        let _ = std::fs::remove_dir_all(&dir);
        read.map(|(key, stored, _)| (key, stored))
    }

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let s = stored(b"hello");
        let bytes = encode_entry("http://a/b", &s, b"hello");
        let (key, back) = decode_entry(&bytes).expect("decode");
        assert_eq!(key, "http://a/b");
        assert_eq!(back.status, s.status);
        assert_eq!(back.headers, s.headers);
        assert_eq!(back.received, s.received);
        assert_eq!(back.vary, s.vary);
        assert_eq!(back.body.collect().as_deref(), Some(&b"hello"[..]));
        let mut flipped = bytes.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(decode_entry(&flipped), Err(EntryError::Corrupt)));
        assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_entry(b"REEFOBJ1\xff\xff\xff\xff").is_err());
        assert!(decode_entry(b"").is_err());
    }

    #[test]
    fn the_tier_survives_a_reopen_keeps_its_budget_and_drops_damaged_files() {
        let root = temp("tier");
        let tier = DiskTier::open(&root, 10_000).expect("open");
        tier.write("http://a/1", &stored(b"one"), tier.reserve("http://a/1"))
            .expect("write");
        tier.write("http://a/2", &stored(b"two"), tier.reserve("http://a/2"))
            .expect("write");
        assert_eq!(tier.len(), 2);
        drop(tier);
        let tier = DiskTier::open(&root, 10_000).expect("reopen");
        assert_eq!(tier.len(), 2);
        let one = tier.read("http://a/1").expect("read");
        assert_eq!(one.body.collect().as_deref(), Some(&b"one"[..]));
        assert!(tier.read("http://a/3").is_none());
        // Damage a file: it reads as a miss and is gone.
        let path = tier.path(&file_name("http://a/2"));
        let mut bytes = std::fs::read(&path).expect("read file");
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        std::fs::write(&path, bytes).expect("write file");
        assert!(tier.read("http://a/2").is_none());
        assert!(!tier.contains("http://a/2"));
        assert!(!path.exists());
        // A budget smaller than two entries keeps only the most recently used one.
        let size = tier.bytes();
        drop(tier);
        let tier = DiskTier::open(&root, size + 10).expect("reopen");
        tier.write("http://a/4", &stored(b"four"), tier.reserve("http://a/4"))
            .expect("write");
        assert!(tier.bytes() <= size + 10);
        assert!(tier.contains("http://a/4"));
        assert!(!tier.contains("http://a/1"));
        // A write reserved before a remove does not land; of two writes, the later wins.
        let stale = tier.reserve("http://a/5");
        tier.remove("http://a/5");
        tier.write("http://a/5", &stored(b"old"), stale)
            .expect("write");
        assert!(
            !tier.contains("http://a/5"),
            "an invalidated copy never comes back"
        );
        let first = tier.reserve("http://a/6");
        let second = tier.reserve("http://a/6");
        tier.write("http://a/6", &stored(b"new"), second)
            .expect("write");
        tier.write("http://a/6", &stored(b"old"), first)
            .expect("write");
        let six = tier.read("http://a/6").expect("read");
        assert_eq!(six.body.collect().as_deref(), Some(&b"new"[..]));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_large_entry_is_read_in_place_and_checked_once_a_run() {
        let root = temp("large");
        let tier = DiskTier::open(&root, 64 << 20).expect("open");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut s = stored(b"");
        s.body = SharedBody::complete(Bytes::from(data.clone()));
        tier.write("http://a/big", &s, tier.reserve("http://a/big"))
            .expect("write");
        let back = tier.read("http://a/big").expect("read");
        assert_eq!(back.body.in_memory(), 0, "read in place, not into memory");
        let mut out = Vec::new();
        back.body.write_to(&mut out).expect("read through");
        assert!(out == data);
        // Damage on disk, found by the first read of the next run: removed, a miss.
        drop(tier);
        let path = root.join("objects").join(file_name("http://a/big"));
        let mut bytes = std::fs::read(&path).expect("entry");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("damage");
        let tier = DiskTier::open(&root, 64 << 20).expect("reopen");
        assert!(tier.read("http://a/big").is_none());
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
