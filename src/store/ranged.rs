//! An object read at offsets ([`RangeSource`]) by a reader on any thread (rayon's, a blocking
//! task, the runtime's own): a thread of its own, with its own runtime and client, fetches
//! aligned blocks in ranged GETs, each made only if the object is still the version the
//! stand-in was made from (its ETag), into a bounded cache the readers wait on.
//!
//! Metadata (HDF5's object headers, B-tree nodes, heaps) lies scattered in small pieces, so it
//! is fetched in [`METADATA_BLOCK`]s; data runs long, so it is fetched in [`DATA_BLOCK`]s.
//! Once a read's block follows one already asked for, the next few ([`DATA_AHEAD`],
//! [`METADATA_AHEAD`]) are requested ahead of the reader; a read on its own costs its block
//! alone. A reader's wait on a block counts as a wait on the store for the HDF5 watchdog
//! ([`crate::crash_report::store_wait`]): the client's retry limit ends it, as the store's
//! error. The first failure (or the first final one) is the one a run ends with. The cache holds
//! at most [`CACHE_BYTES`], oldest block out first, so memory stays small whatever the
//! object's size; what a shard fetches is what its cell range touches, plus the blocks around.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::Store;
use crate::error::Error;
use crate::readers::ranged::{Fetched, RangeSource, Reading};

/// Bytes of a metadata block.
const METADATA_BLOCK: u64 = 64 << 10;

/// Bytes of a data block.
const DATA_BLOCK: u64 = 1 << 20;

/// Data blocks requested ahead of the one a reader waits for, once it reads in order.
const DATA_AHEAD: u64 = 2;

/// Metadata blocks requested ahead once a reader reads them in order (the global heap of a
/// column of strings).
const METADATA_AHEAD: u64 = 4;

/// Most bytes the cache holds (blocks being fetched not counted).
const CACHE_BYTES: usize = 32 << 20;

type Key = (Reading, u64);

enum Slot {
    Loading,
    Ready(Bytes),
    Failed,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<Key, Slot>,
    /// Ready blocks, oldest first.
    order: VecDeque<Key>,
    held: usize,
}

impl Cache {
    fn insert(&mut self, key: Key, bytes: Bytes) {
        self.held += bytes.len();
        if let Some(Slot::Ready(old)) = self.slots.insert(key, Slot::Ready(bytes)) {
            self.held -= old.len();
        }
        self.order.push_back(key);
        while self.held > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(Slot::Ready(bytes)) = self.slots.get(&old) {
                self.held -= bytes.len();
                self.slots.remove(&old);
            }
        }
    }
}

/// The object at a URI, read at offsets (see the module's doc).
pub(crate) struct ObjectRanges {
    shared: Arc<Shared>,
    requests: UnboundedSender<Key>,
}

struct Shared {
    /// The object's URI (credentials never in it: `Store::open` refuses them).
    uri: String,
    size: u64,
    e_tag: Option<String>,
    cache: Mutex<Cache>,
    arrived: Condvar,
    /// The store's failure behind the last failed block: (what, transient).
    failure: Mutex<Option<(String, bool)>>,
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl ObjectRanges {
    /// Read the object `uri` of `size` bytes at version `e_tag`, its first bytes (`head`,
    /// fetched for the stand-in) already in hand.
    pub(crate) fn new(
        uri: String,
        size: u64,
        e_tag: Option<String>,
        head: Bytes,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            uri,
            size,
            e_tag,
            cache: Mutex::new(Cache::default()),
            arrived: Condvar::new(),
            failure: Mutex::new(None),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        if head.len() as u64 == METADATA_BLOCK.min(size) {
            shared.lock().insert((Reading::Metadata, 0), head);
        }
        let (requests, receiver) = unbounded_channel();
        let fetcher = shared.clone();
        std::thread::Builder::new()
            .name("slaf-convert-ranged".into())
            .spawn(move || fetch_blocks(fetcher, receiver))?;
        Ok(ObjectRanges { shared, requests })
    }

    /// The block `key`, fetched (and the next data blocks asked for) if not at hand.
    fn block(&self, key: Key) -> std::io::Result<Bytes> {
        let mut cache = self.shared.lock();
        if !self.shared.failed() {
            // Read ahead once the reads run in order (the block before this one was read):
            // a read on its own, or the first of a shard's range, costs its block alone.
            let in_order = key.1 > 0 && cache.slots.contains_key(&(key.0, key.1 - 1));
            self.request(&mut cache, key);
            if in_order {
                let (block, ahead) = match key.0 {
                    Reading::Data => (DATA_BLOCK, DATA_AHEAD),
                    Reading::Metadata => (METADATA_BLOCK, METADATA_AHEAD),
                };
                for next in key.1 + 1..=key.1 + ahead {
                    if next * block < self.shared.size {
                        self.request(&mut cache, (key.0, next));
                    }
                }
            }
        }
        loop {
            match cache.slots.get(&key) {
                Some(Slot::Ready(bytes)) => return Ok(bytes.clone()),
                Some(Slot::Loading) => {
                    let _waiting = crate::crash_report::store_wait();
                    cache = self
                        .shared
                        .arrived
                        .wait(cache)
                        .unwrap_or_else(|e| e.into_inner())
                }
                Some(Slot::Failed) => {
                    cache.slots.remove(&key);
                    return Err(self.failed_read());
                }
                // After a failure the task is ending: fail fast rather than wait out the
                // client's retries once per block.
                None if self.shared.failed() => return Err(self.failed_read()),
                None => self.request(&mut cache, key),
            }
        }
    }

    /// A read that failed, carrying the store's error.
    fn failed_read(&self) -> std::io::Error {
        std::io::Error::other(self.failure().unwrap_or_else(|| {
            Error::Internal(format!("{}: a read's failure was lost", self.shared.uri))
        }))
    }

    fn request(&self, cache: &mut MutexGuard<'_, Cache>, key: Key) {
        if cache.slots.contains_key(&key) {
            return;
        }
        cache.slots.insert(key, Slot::Loading);
        if self.requests.send(key).is_err() {
            // The fetcher is gone (it could not start its runtime): fail the waiters.
            cache.slots.insert(key, Slot::Failed);
            self.shared
                .record("the reading thread stopped".into(), false);
        }
    }
}

impl RangeSource for ObjectRanges {
    fn size(&self) -> u64 {
        self.shared.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64, reading: Reading) -> std::io::Result<()> {
        let block = block_size(reading);
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.shared.size)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "bytes {offset}..+{} of a {}-byte object",
                        buf.len(),
                        self.shared.size
                    ),
                )
            })?;
        let mut at = offset;
        while at < end {
            let index = at / block;
            let bytes = self.block((reading, index))?;
            let skip = (at - index * block) as usize;
            let n = (bytes.len().saturating_sub(skip) as u64).min(end - at) as usize;
            if n == 0 {
                // Cut short: a retry can read it whole (or see that it changed).
                let what = format!("shorter than its listed {} bytes", self.shared.size);
                self.shared.record(what, true);
                return Err(self.failed_read());
            }
            let to = (at - offset) as usize;
            buf[to..to + n].copy_from_slice(&bytes[skip..skip + n]);
            at += n as u64;
        }
        Ok(())
    }

    fn failure(&self) -> Option<Error> {
        let failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failure.clone().map(|(what, transient)| Error::Store {
            uri: self.shared.uri.clone(),
            what,
            transient,
        })
    }

    fn release(&self) {
        let mut cache = self.shared.lock();
        cache.slots.retain(|_, slot| matches!(slot, Slot::Loading));
        cache.order.clear();
        cache.held = 0;
    }

    fn fetched(&self) -> Fetched {
        Fetched {
            uri: self.shared.uri.clone(),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            requests: self.shared.requests.load(Ordering::Relaxed),
        }
    }
}

fn block_size(reading: Reading) -> u64 {
    match reading {
        Reading::Metadata => METADATA_BLOCK,
        Reading::Data => DATA_BLOCK,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&self) -> bool {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.is_some()
    }

    /// Keep the failure a run ends with: the first, unless a later one is final where the
    /// first was transient (a changed object stays changed whatever a retry does).
    fn record(&self, what: String, transient: bool) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure
            .as_ref()
            .is_none_or(|(_, first)| *first && !transient)
        {
            *failure = Some((what, transient));
        }
    }

    /// Fetch block `key` and hand it to the waiters (or its failure).
    async fn fetch(&self, store: &Store, key: Key) {
        /// Fails the block if the fetch ends without handing it over (it panicked).
        struct Pending<'a>(&'a Shared, Key, bool);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    self.0.record("a read stopped unfinished".into(), true);
                    self.0.lock().slots.insert(self.1, Slot::Failed);
                    self.0.arrived.notify_all();
                }
            }
        }
        let mut pending = Pending(self, key, false);
        let block = block_size(key.0);
        let start = key.1 * block;
        let end = self.size.min(start + block);
        self.requests.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(input = %self.uri, start, end, metadata = (key.0 == Reading::Metadata), "ranged GET");
        let slot = match store.get_range_of(start..end, self.e_tag.clone()).await {
            Ok(bytes) => {
                self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(bytes)
            }
            Err(Error::Store {
                what, transient, ..
            }) => {
                self.record(what, transient);
                Err(())
            }
            Err(other) => {
                self.record(other.to_string(), false);
                Err(())
            }
        };
        let mut cache = self.lock();
        match slot {
            Ok(bytes) => cache.insert(key, bytes),
            Err(()) => {
                cache.slots.insert(key, Slot::Failed);
            }
        }
        drop(cache);
        pending.2 = true;
        self.arrived.notify_all();
    }
}

/// The fetching thread: each requested block in a task of its own, so the blocks a reader
/// waits for and those asked for ahead are fetched at once.
fn fetch_blocks(shared: Arc<Shared>, mut requests: UnboundedReceiver<Key>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let opened = runtime.map_err(|e| e.to_string()).and_then(|runtime| {
        Ok((
            runtime,
            Store::open(&shared.uri).map_err(|e| e.to_string())?,
        ))
    });
    let (runtime, store) = match opened {
        Ok((runtime, store)) => (runtime, Arc::new(store)),
        Err(why) => {
            shared.record(why, false);
            // Later requests fail as they are sent; fail those already sent here.
            requests.close();
            let mut cache = shared.lock();
            while let Ok(key) = requests.try_recv() {
                cache.slots.insert(key, Slot::Failed);
            }
            drop(cache);
            shared.arrived.notify_all();
            return;
        }
    };
    runtime.block_on(async {
        while let Some(key) = requests.recv().await {
            let (shared, store) = (shared.clone(), store.clone());
            tokio::spawn(async move { shared.fetch(&store, key).await });
        }
    });
}
