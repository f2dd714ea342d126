//! An object read as a stream, start to end, by a reader that may run on any thread (a
//! blocking task, or the plan's scan on the runtime's own thread): a thread of its own, with
//! its own runtime and client, fetches the object in order and hands its chunks over a
//! bounded channel ([`CHUNKS_AHEAD`] chunks, so memory stays small whatever the object's
//! size). Every [`StreamSource::open`] is a new GET from the start.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{store_error, Store};
use crate::error::Error;
use crate::readers::streamed::StreamSource;

/// Chunks fetched ahead of the reader.
const CHUNKS_AHEAD: usize = 4;

/// The object at a URI, streamed (see the module's doc).
pub(crate) struct ObjectStream {
    /// The object's URI (credentials never in it: `Store::open` refuses them).
    pub uri: String,
    /// Its size, to tell a stream cut short from the end.
    pub size: u64,
}

impl StreamSource for ObjectStream {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        let (sender, receiver) = sync_channel(CHUNKS_AHEAD);
        let uri = self.uri.clone();
        std::thread::Builder::new()
            .name("slaf-convert-stream".into())
            .spawn(move || fetch_in_order(&uri, &sender))?;
        Ok(Box::new(ChunksRead {
            receiver,
            chunk: Vec::new(),
            at: 0,
            read: 0,
            size: self.size,
            uri: self.uri.clone(),
        }))
    }
}

/// Send the object's chunks in order, then end (the sender dropped); a failure is sent as
/// the last item. Stops early once the reader is gone.
fn fetch_in_order(uri: &str, sender: &SyncSender<std::io::Result<Vec<u8>>>) {
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
        let got = store
            .client
            .get(&store.root)
            .await
            .map_err(|e| store_error(&store.shown, &e))?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| store_error(&store.shown, &e))?;
            if sender.send(Ok(Vec::from(chunk))).is_err() {
                break; // the reader stopped reading
            }
        }
        Ok(())
    });
    if let Err(e) = fetched {
        let _ = sender.send(Err(as_io(e)));
    }
}

/// A store's error as the reader's I/O error: timed out where a retry can succeed (exit 75).
fn as_io(e: Error) -> std::io::Error {
    let kind = match e {
        Error::Store {
            transient: true, ..
        } => std::io::ErrorKind::TimedOut,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}

/// The reader's side: the chunks as one byte stream.
struct ChunksRead {
    receiver: Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    read: u64,
    size: u64,
    uri: String,
}

impl Read for ChunksRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.recv() {
                Ok(chunk) => (self.chunk, self.at) = (chunk?, 0),
                Err(_) if self.read == self.size => return Ok(0),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the stream ended after {} of {} bytes",
                            self.uri, self.read, self.size
                        ),
                    ))
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
