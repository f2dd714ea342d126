//! Files of an input that stay where they are (an object in a store) and are read at the
//! offsets a reader asks for: an HDF5 input (`.h5ad`, Cell Ranger `.h5`), whose reader reads
//! metadata here and there and then, for a shard, only the chunks of its cell range. Whoever
//! fetches the rest of the input registers the source under the local path the reader sees
//! (a stand-in of the object's size, holding its first and last bytes); HDF5 reads it through
//! a driver of ours ([`super::hdf5_util`]) and the direct chunk reader through
//! [`RandomAccess`]. The registry lives as long as the process: a stand-in's path lies in a
//! temporary directory of its own, never reused.
//!
//! A read that fails in the store fails in the reader as whatever the reader makes of a
//! short read (the HDF5 library, for one, knows nothing of stores); [`Ranged`] puts the
//! store's own error back in its place, so a transient failure still exits 75.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Field;

use super::{InputLayout, InputReader, MatrixScan, StandIns, ValueScan};
use crate::cells::{Axis, CellBatch, CellEntries, CellRange, InputParts};
use crate::error::{Error, Result};

/// What a read is for: the store side sizes its requests by it (metadata lies scattered in
/// small pieces; data in long runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reading {
    /// File metadata: object headers, B-tree nodes, heaps, the superblock.
    Metadata,
    /// Dataset contents.
    Data,
}

/// Where a ranged file's bytes come from.
pub trait RangeSource: Send + Sync {
    /// The file's size.
    fn size(&self) -> u64;
    /// Fill `buf` from byte `offset` on; an error when the range is not all there.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64, reading: Reading) -> std::io::Result<()>;
    /// The store's failure behind a failed read, if one failed.
    fn failure(&self) -> Option<Error>;
    /// What has been fetched so far.
    fn fetched(&self) -> Fetched;
    /// Drop what is held for later reads (a reader is done with the file).
    fn release(&self);
}

/// What a [`RangeSource`] has fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where from (a URI, credentials never in it).
    pub uri: String,
    /// Bytes fetched.
    pub bytes: u64,
    /// Requests made.
    pub requests: u64,
}

static RANGED: StandIns<dyn RangeSource> = StandIns::new();

/// Read `path` from `source` instead of from local disk.
pub fn read_instead(path: PathBuf, source: Arc<dyn RangeSource>) {
    RANGED.insert(path, source);
}

/// The source registered for `path`, if any.
pub fn source(path: &Path) -> Option<Arc<dyn RangeSource>> {
    RANGED.get(path)
}

/// A file read at offsets: from local disk, or from its registered source.
pub enum RandomAccess {
    /// A local file.
    Local(File),
    /// A file left in a store.
    Ranged(Arc<dyn RangeSource>),
}

impl std::fmt::Debug for RandomAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RandomAccess::Local(file) => f.debug_tuple("Local").field(file).finish(),
            RandomAccess::Ranged(source) => write!(f, "Ranged({} bytes)", source.size()),
        }
    }
}

impl RandomAccess {
    /// Open `path` for positioned reads.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(source) = source(path) {
            return Ok(RandomAccess::Ranged(source));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(RandomAccess::Local(file))
    }

    /// The file's size.
    pub fn len(&self, path: &Path) -> Result<u64> {
        match self {
            RandomAccess::Local(file) => Ok(file.metadata().map_err(|e| Error::io(path, e))?.len()),
            RandomAccess::Ranged(source) => Ok(source.size()),
        }
    }

    /// Fill `buf` with dataset bytes from `offset` on.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        match self {
            RandomAccess::Local(file) => file.read_exact_at(buf, offset),
            RandomAccess::Ranged(source) => source.read_exact_at(buf, offset, Reading::Data),
        }
    }
}

/// A reader of a ranged file whose errors are the store's where the store failed.
pub(super) struct Ranged {
    pub(super) inner: Box<dyn InputReader>,
    pub(super) source: Arc<dyn RangeSource>,
}

impl Drop for Ranged {
    /// What reading the file has fetched, so far in this process (a reader opened again adds
    /// to it): what a shard's cell range cost. The blocks held for it are let go: a plan
    /// reads its inputs one after another.
    fn drop(&mut self) {
        let Fetched {
            uri,
            bytes,
            requests,
        } = self.source.fetched();
        let size = self.source.size();
        tracing::info!(event = "input.ranged", input = %uri, bytes, requests, size, "read {bytes} of {size} bytes of {uri} in {requests} ranged requests");
        self.source.release();
    }
}

impl Ranged {
    fn check<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| self.source.failure().unwrap_or(e))
    }
}

/// `open`'s result for a ranged file, with the store's error in place of a failed read's.
pub(super) fn opened(
    result: Result<Box<dyn InputReader>>,
    source: Arc<dyn RangeSource>,
) -> Result<Box<dyn InputReader>> {
    match result {
        Ok(inner) => Ok(Box::new(Ranged { inner, source })),
        Err(e) => Err(source.failure().unwrap_or(e)),
    }
}

impl InputReader for Ranged {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn layout(&self) -> &InputLayout {
        self.inner.layout()
    }
    fn obs_fields(&self) -> &[Field] {
        self.inner.obs_fields()
    }
    fn var_fields(&self) -> &[Field] {
        self.inner.var_fields()
    }
    fn scan(&mut self, values: ValueScan) -> Result<MatrixScan> {
        let result = self.inner.scan(values);
        self.check(result)
    }
    fn genes(&mut self) -> Result<(RecordBatch, Vec<String>)> {
        let result = self.inner.genes();
        self.check(result)
    }
    fn batches<'a>(
        &'a mut self,
        range: CellRange,
        batch_cells: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<CellBatch>> + Send + 'a>> {
        let source = self.source.clone();
        let batches = self
            .inner
            .batches(range, batch_cells)
            .map_err(|e| source.failure().unwrap_or(e))?;
        Ok(Box::new(batches.map(move |batch| {
            batch.map_err(|e| source.failure().unwrap_or(e))
        })))
    }
    fn parts(&self) -> &InputParts {
        self.inner.parts()
    }
    fn prepare_pairwise(&mut self, axis: Axis, rows: CellRange, chunk_size: u64) -> Result<()> {
        let result = self.inner.prepare_pairwise(axis, rows, chunk_size);
        self.check(result)
    }
    fn read_pairwise(&mut self, axis: Axis, rows: CellRange) -> Result<Vec<CellEntries>> {
        let result = self.inner.read_pairwise(axis, rows);
        self.check(result)
    }
    fn cells_sorted(&self) -> Option<bool> {
        self.inner.cells_sorted()
    }
    fn uns(&mut self) -> Result<Option<serde_json::Value>> {
        let result = self.inner.uns();
        self.check(result)
    }
}
