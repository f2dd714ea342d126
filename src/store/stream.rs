//! An object read as a stream, start to end, by a reader that may run on any thread (a
//! blocking task, or the plan's scan on the runtime's own thread): a thread of its own, with
//! its own runtime and client, fetches the object in ranged GETs (growing from
//! [`FIRST_RANGE`] to [`RANGE`] bytes), in order,
//! each a request of its own (so a slow reader never holds one request open past the
//! client's timeout), each made only if the object is still the version the stand-in was
//! made from (its ETag), and hands them over a bounded channel ([`RANGES_AHEAD`] ahead, so
//! memory stays small whatever the object's size). Every [`StreamSource::open`] starts again
//! from the first byte. A store's failure reaches the reader as an I/O error carrying the
//! store's [`Error`], which the reader passes on as it is (exit 75 when transient).

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use object_store::{GetOptions, GetRange};

use super::{store_error, Store};
use crate::error::Error;
use crate::readers::streamed::StreamSource;

/// Bytes the first ranged GET asks for; each next asks for 4 times more, up to [`RANGE`]. A
/// reader that opens the matrix for its header only (and drops it) costs a few hundred KiB,
/// not [`RANGES_AHEAD`] full ranges.
const FIRST_RANGE: u64 = 64 << 10;

/// Bytes a ranged GET asks for at most.
const RANGE: u64 = 4 << 20;

/// Ranges fetched ahead of the reader.
const RANGES_AHEAD: usize = 2;

/// The object at a URI, streamed (see the module's doc).
pub(crate) struct ObjectStream {
    /// The object's URI (credentials never in it: `Store::open` refuses them).
    pub uri: String,
    /// Its size, to tell a stream cut short from the end.
    pub size: u64,
    /// The version the stand-in was made from, when the store gives one.
    pub e_tag: Option<String>,
}

impl StreamSource for ObjectStream {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        let (sender, receiver) = sync_channel(RANGES_AHEAD);
        let (uri, size, e_tag) = (self.uri.clone(), self.size, self.e_tag.clone());
        let fetched = Arc::new(AtomicU64::new(0));
        let counted = fetched.clone();
        std::thread::Builder::new()
            .name("slaf-convert-stream".into())
            .spawn(move || fetch_in_order(&uri, size, e_tag, &sender, &counted))?;
        Ok(Box::new(ChunksRead {
            receiver,
            chunk: Vec::new(),
            at: 0,
            read: 0,
            size: self.size,
            uri: self.uri.clone(),
            fetched,
        }))
    }
}

/// Send the object's ranges in order, then end (the sender dropped); a failure is sent as
/// the last item. Stops early once the reader is gone.
fn fetch_in_order(
    uri: &str,
    size: u64,
    e_tag: Option<String>,
    sender: &SyncSender<std::io::Result<Vec<u8>>>,
    fetched: &AtomicU64,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = sender.send(Err(e));
            return;
        }
    };
    let fetched: crate::error::Result<()> = runtime.block_on(async {
        let store = Store::open(uri)?;
        let (mut start, mut len) = (0, FIRST_RANGE);
        while start < size {
            let end = size.min(start + len);
            len = (len * 4).min(RANGE);
            let bytes = store.get_range_of(start..end, e_tag.clone()).await?;
            if bytes.is_empty() {
                break; // shorter than listed: the reader reports the cut
            }
            start += bytes.len() as u64;
            fetched.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if sender.send(Ok(Vec::from(bytes))).is_err() {
                break; // the reader stopped reading
            }
        }
        Ok(())
    });
    if let Err(e) = fetched {
        let _ = sender.send(Err(as_io(e)));
    }
}

impl Store {
    /// Bytes `range` of the object at the prefix, only if it is still version `e_tag` (when
    /// the store gave one): a stand-in's object read later must be the one it stands in for.
    pub(super) async fn get_range_of(
        &self,
        range: std::ops::Range<u64>,
        e_tag: Option<String>,
    ) -> crate::error::Result<bytes::Bytes> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: e_tag,
            ..Default::default()
        };
        let got = async {
            self.client
                .get_opts(&self.root, options)
                .await?
                .bytes()
                .await
        };
        got.await.map_err(|e| store_error(&self.shown, &e))
    }
}

/// A store's error as the reader's I/O error, carrying it (see the module's doc).
fn as_io(e: Error) -> std::io::Error {
    let kind = match e {
        Error::Store {
            transient: true, ..
        } => std::io::ErrorKind::TimedOut,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}

/// The reader's side: the chunks as one byte stream.
struct ChunksRead {
    receiver: Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    read: u64,
    size: u64,
    uri: String,
    /// Bytes the fetching thread has fetched.
    fetched: Arc<AtomicU64>,
}

impl Drop for ChunksRead {
    /// What this pass over the object cost: a reader that stops early (a shard at the end
    /// of its cells) leaves the rest unfetched, but for the ranges already on their way.
    fn drop(&mut self) {
        let (uri, size, read) = (&self.uri, self.size, self.read);
        let bytes = self.fetched.load(Ordering::Relaxed);
        tracing::info!(event = "input.streamed", input = %uri, bytes, read, size, "streamed {bytes} of {size} bytes of {uri} ({read} read)");
    }
}

impl Read for ChunksRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.recv() {
                Ok(chunk) => (self.chunk, self.at) = (chunk?, 0),
                Err(_) if self.read == self.size => return Ok(0),
                Err(_) => {
                    return Err(as_io(Error::Store {
                        uri: self.uri.clone(),
                        what: format!(
                            "the stream ended after {} of {} bytes: run the same command again",
                            self.read, self.size
                        ),
                        transient: true,
                    }))
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        self.read += n as u64;
        Ok(n)
    }
}
