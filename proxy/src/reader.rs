//! Reading a [`SharedBody`] from a byte position, at the reader's own pace: chunks in memory
//! are handed out as they are, chunks in the body's file are read from the page cache in
//! place or else on a blocking thread (see [`crate::pagecache`]), and chunks before the
//! position are skipped without being read.

use std::sync::Arc;

use bytes::Bytes;

use crate::body::{BodyError, Next, SharedBody};

/// What a reader gets next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The next bytes.
    Data(Bytes),
    /// The body is complete and the reader has all of it.
    End,
    /// The body failed; what the reader has is not the whole object.
    Failed(BodyError),
}

/// A position in a shared body.
#[derive(Debug)]
pub struct Reader {
    body: Arc<SharedBody>,
    /// The chunk to read next.
    index: usize,
    /// Bytes still to skip from there.
    skip: u64,
}

impl Reader {
    /// A reader of `body` from byte `from`.
    pub fn new(body: Arc<SharedBody>, from: u64) -> Reader {
        Reader {
            body,
            index: 0,
            skip: from,
        }
    }

    /// The body read.
    pub fn body(&self) -> &Arc<SharedBody> {
        &self.body
    }

    /// The next bytes, waiting for them if they have not arrived.
    pub async fn next(&mut self) -> Read {
        loop {
            match self.body.next(self.index) {
                Next::Chunk(c) => {
                    self.index += 1;
                    // Chunks wholly before the start are skipped without being read.
                    if self.skip >= c.len() as u64 {
                        self.skip -= c.len() as u64;
                        continue;
                    }
                    let from = std::mem::take(&mut self.skip) as usize;
                    return Read::Data(c.slice(from..));
                }
                Next::InFile { offset, len, count } => {
                    if self.skip >= len {
                        self.skip -= len;
                        self.index += count;
                        continue;
                    }
                    let from = std::mem::take(&mut self.skip);
                    let read = self.body.read_file_at(offset + from, len - from).await;
                    self.index += count;
                    // Not empty: the skip is shorter than the run.
                    return match read {
                        Ok(b) => Read::Data(b),
                        Err(e) => Read::Failed(e),
                    };
                }
                Next::End => return Read::End,
                Next::Failed(e) => return Read::Failed(e),
                Next::Pending => self.body.wait(self.index).await,
            }
        }
    }
}
