//! Direct reads of 1-D HDF5 datasets (X's `data`, `indices`, `indptr`), bypassing the library.
//!
//! The HDF5 library serialises every call behind one global lock, decompression included, so
//! reading a gzip'd matrix through it keeps one core busy inflating while the other waits.
//! Here the library is asked only where each chunk lies (under its lock, once per dataset);
//! the chunks' bytes are then read with positioned reads (of the local file, or of the object
//! in a store it stands in for: [`crate::readers::ranged`]) and inflated with libdeflate on
//! rayon's pool, and the little-endian elements are decoded in Rust.
//!
//! Handled: contiguous storage, and chunked storage whose filters are any of deflate and
//! shuffle, for little-endian integers and floats; chunks never written read as zeros (the
//! default fill value). Anything else (lzf, szip, blosc, checksums, big-endian types, user
//! blocks, a user-defined fill value) returns `Err(reason)` from [`DirectArray::open`], and
//! the caller reads through the library.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hdf5::datatype::ByteOrder;
use hdf5::filters::Filter;
use hdf5::Dataset;
use rayon::prelude::*;

mod chunk;
mod decode;
mod stored;

use self::chunk::{list_chunks, ChunkBuffers, StoredChunk};
pub use self::decode::Decode;
use self::decode::{decode_into, unshuffle, Element};
pub use self::stored::StoredArray;
use super::hdf5_util as h5;
use crate::error::{Error, Result};
use crate::readers::ranged::RandomAccess;

/// Where the elements are.
#[derive(Debug)]
enum Storage {
    /// One run of bytes at this file offset.
    Contiguous { addr: u64 },
    /// Fixed-size chunks, in element order, listed on first use (or why they cannot be).
    Chunked {
        chunk_len: usize,
        n_chunks: usize,
        chunks: OnceLock<std::result::Result<Vec<StoredChunk>, String>>,
        /// Positions of the filters in the pipeline (a chunk's mask refers to them).
        deflate: Option<usize>,
        shuffle_at: Option<usize>,
    },
}

/// A 1-D dataset read without the HDF5 library.
#[derive(Debug)]
pub struct DirectArray {
    path: PathBuf,
    name: String,
    file: Arc<RandomAccess>,
    /// The file's size at open: every chunk must lie inside it.
    file_len: u64,
    element: Element,
    len: usize,
    storage: Storage,
    /// The dataset, for locating chunks.
    ds: Dataset,
}

/// Elements in a block of contiguous storage read at once, and about those in a parallel
/// scan's block.
const BLOCK: usize = 1 << 18;

/// Most chunks a dataset may have for its chunk table to be kept here (24 MiB of table).
const MAX_CHUNKS: usize = 1 << 20;

/// The address of a chunk read by a lookup (its bytes are at hand; where they lie is the
/// library's to know).
const LOOKED_UP: u64 = hdf5_sys::h5::HADDR_UNDEF - 1;

/// Largest chunk read directly (anndata writes chunks of a few hundred KiB).
const MAX_CHUNK_BYTES: usize = 64 << 20;

impl DirectArray {
    /// Prepare direct reads of `ds` from the file at `path`; `Ok(Err(reason))` when its storage
    /// needs the library.
    pub fn open(
        path: &Path,
        file: &Arc<RandomAccess>,
        ds: &Dataset,
    ) -> Result<std::result::Result<Self, String>> {
        let name = ds.name();
        let dtype = ds
            .dtype()
            .map_err(|e| Error::invalid(path, format!("{name}: {e}")))?;
        let descriptor = dtype
            .to_descriptor()
            .map_err(|e| Error::invalid(path, format!("{name}: {e}")))?;
        let Some(element) = Element::of(&descriptor) else {
            return Ok(Err(format!("element type {descriptor}")));
        };
        if element.size() > 1 && dtype.byte_order() != ByteOrder::LittleEndian {
            return Ok(Err("big-endian elements".into()));
        }
        if ds.ndim() != 1 {
            return Ok(Err(format!("{} dimensions", ds.ndim())));
        }
        let h5file = ds
            .file()
            .map_err(|e| Error::invalid(path, format!("{name}: {e}")))?;
        if h5file.userblock() != 0 {
            return Ok(Err("file has a user block".into()));
        }
        // Behind an external link the dataset lives in another file, and its byte offsets
        // are offsets in that file, not in `file`: the library follows the link.
        let home = std::fs::canonicalize(h5file.filename()).ok();
        if home.is_none() || home != std::fs::canonicalize(path).ok() {
            return Ok(Err(format!(
                "stored in {} (an external link)",
                h5file.filename()
            )));
        }
        let len = ds.size();
        h5::check_stored(path, ds, len)?;
        let storage = match ds.is_chunked() {
            true => chunked_storage(ds, len, element),
            false => contiguous_storage(ds, len),
        };
        let storage = match storage {
            Ok(storage) => storage,
            Err(reason) => return Ok(Err(reason)),
        };
        let file_len = file.len(path)?;
        Ok(Ok(DirectArray {
            path: path.to_path_buf(),
            name,
            file: file.clone(),
            file_len,
            element,
            len,
            storage,
            ds: ds.clone(),
        }))
    }

    /// Elements `range`, decoded into `T`.
    pub fn read<T: Decode>(&self, range: Range<usize>) -> Result<Vec<T>> {
        let mut out = h5::try_zeroed(&self.path, &self.name, range.len())?;
        self.read_into(range, &mut out)?;
        Ok(out)
    }

    /// Elements `range` decoded into `out` (`out.len() == range.len()`), chunks inflated in
    /// parallel.
    pub fn read_into<T: Decode>(&self, range: Range<usize>, out: &mut [T]) -> Result<()> {
        if range.end > self.len || range.start > range.end {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "{}: elements {}..{} outside 0..{}",
                    self.name, range.start, range.end, self.len
                ),
            ));
        }
        self.pieces(range, out)
            .into_par_iter()
            .try_for_each_init(ChunkBuffers::new, |buf, (at, piece)| {
                self.read_piece(buf, at, piece)
            })
    }

    /// The whole array cut into blocks of about 2^18 elements that end on chunk boundaries,
    /// so that each chunk is inflated once in a parallel pass.
    fn scan_blocks(&self) -> Vec<Range<usize>> {
        let step = match &self.storage {
            Storage::Contiguous { .. } => BLOCK,
            Storage::Chunked { chunk_len, .. } => (*chunk_len).max(1) * (BLOCK / chunk_len).max(1),
        };
        (0..self.len.div_ceil(step))
            .map(|i| i * step..((i + 1) * step).min(self.len))
            .collect()
    }

    /// Whether `pred` holds for every element, checked chunk by chunk in parallel.
    pub fn all<T: Decode>(&self, pred: impl Fn(T) -> bool + Sync + Send) -> Result<bool> {
        let blocks = self.scan_blocks();
        // Blocks are checked in parallel; the first failing block (or error) ends the scan.
        let outcome = blocks
            .into_par_iter()
            .map_init(Vec::<T>::new, |values, block| -> Result<bool> {
                values.resize(block.len(), T::default());
                self.read_single_threaded(block, values)?;
                Ok(values.iter().all(|&v| pred(v)))
            })
            .find_any(|fits| !matches!(fits, Ok(true)));
        match outcome {
            None => Ok(true),
            Some(fits) => fits,
        }
    }

    /// How many elements `pred` holds for, counted chunk by chunk in parallel.
    pub fn count<T: Decode>(&self, pred: impl Fn(T) -> bool + Sync + Send) -> Result<u64> {
        self.scan_blocks()
            .into_par_iter()
            .map_init(Vec::<T>::new, |values, block| -> Result<u64> {
                values.resize(block.len(), T::default());
                self.read_single_threaded(block, values)?;
                Ok(values.iter().filter(|&&v| pred(v)).count() as u64)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b))
    }

    /// Like [`DirectArray::read_into`], without going parallel again (called from the pool).
    fn read_single_threaded<T: Decode>(&self, range: Range<usize>, out: &mut [T]) -> Result<()> {
        let mut buf = ChunkBuffers::new();
        for (at, piece) in self.pieces(range, out) {
            self.read_piece(&mut buf, at, piece)?;
        }
        Ok(())
    }

    /// `out` (elements `range`) cut into pieces that each lie in one chunk (or one block of
    /// contiguous storage), with the position of each piece's first element.
    fn pieces<'a, T>(&self, range: Range<usize>, out: &'a mut [T]) -> Vec<(usize, &'a mut [T])> {
        let mut pieces = Vec::new();
        let (mut at, mut rest) = (range.start, out);
        while !rest.is_empty() {
            let room = match &self.storage {
                Storage::Contiguous { .. } => BLOCK,
                Storage::Chunked { chunk_len, .. } => chunk_len - at % chunk_len,
            };
            let (piece, tail) = rest.split_at_mut(room.min(rest.len()));
            let n = piece.len();
            pieces.push((at, piece));
            at += n;
            rest = tail;
        }
        pieces
    }

    /// Decode the elements from `at` on into `piece`, which lies in one chunk (or block).
    fn read_piece<T: Decode>(
        &self,
        buf: &mut ChunkBuffers,
        at: usize,
        piece: &mut [T],
    ) -> Result<()> {
        let size = self.element.size();
        match &self.storage {
            Storage::Contiguous { addr } => {
                buf.raw.resize(piece.len() * size, 0);
                self.file
                    .read_exact_at(&mut buf.raw, addr + (at * size) as u64)
                    .map_err(|e| self.io_error(e))?;
                decode_into(&buf.raw, self.element, piece);
            }
            Storage::Chunked {
                chunk_len,
                shuffle_at,
                ..
            } => {
                let shuffle = shuffle_at.is_some();
                let c = at / chunk_len;
                let skip = at - c * chunk_len;
                let chunk_bytes = chunk_len * size;
                let chunk = match self.looked_up(buf, c)? {
                    Some(chunk) => chunk,
                    None => {
                        let chunk = self.chunk(c)?;
                        self.read_stored(buf, &chunk)?;
                        chunk
                    }
                };
                let bytes = self.chunk_bytes(buf, &chunk, c * chunk_len, chunk_bytes, shuffle)?;
                decode_into(&bytes[skip * size..], self.element, piece);
            }
        }
        Ok(())
    }

    /// Where chunk `c` lies; the first call lists every chunk (under the library's lock).
    fn chunk(&self, c: usize) -> Result<StoredChunk> {
        let Storage::Chunked {
            chunk_len,
            n_chunks,
            chunks,
            deflate,
            shuffle_at,
        } = &self.storage
        else {
            return Err(Error::Internal("chunk of contiguous storage".into()));
        };
        let listed = chunks
            .get_or_init(|| list_chunks(&self.ds, *chunk_len, *n_chunks, *deflate, *shuffle_at));
        let chunk = match listed {
            Ok(table) => *table.get(c).ok_or_else(|| {
                Error::Internal(format!("{}: chunk {c} of {n_chunks}", self.name))
            })?,
            Err(problem) => {
                return Err(Error::invalid(
                    &self.path,
                    format!("{}: {problem}", self.name),
                ))
            }
        };
        // The index is the file's word: a chunk must lie inside the file before its size
        // sizes a buffer.
        if chunk.addr != hdf5_sys::h5::HADDR_UNDEF
            && chunk
                .addr
                .checked_add(chunk.size)
                .is_none_or(|end| end > self.file_len)
        {
            return Err(Error::invalid(
                    &self.path,
                    format!(
                        "{}: its chunk at element {} claims bytes {}..+{} of a {}-byte file (truncated or corrupt)",
                        self.name,
                        c * chunk_len,
                        chunk.addr,
                        chunk.size,
                        self.file_len
                    ),
                ));
        }
        // A larger claim would size a buffer.
        let plain = chunk_len * self.element.size();
        if chunk.addr != hdf5_sys::h5::HADDR_UNDEF
            && chunk.size > self.max_stored(*chunk_len) as u64
        {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "{}: its chunk at element {} claims {} stored bytes for {plain} bytes of elements",
                    self.name,
                    c * chunk_len,
                    chunk.size
                ),
            ));
        }
        Ok(chunk)
    }

    /// Most bytes a chunk of `chunk_len` elements can store: deflate's worst case adds a
    /// little to the plain bytes.
    fn max_stored(&self, chunk_len: usize) -> usize {
        let plain = chunk_len * self.element.size();
        plain + plain / 64 + 1024
    }

    /// Read the stored bytes of `chunk` (located by the index walk) into `buf.raw`.
    fn read_stored(&self, buf: &mut ChunkBuffers, chunk: &StoredChunk) -> Result<()> {
        if chunk.addr == hdf5_sys::h5::HADDR_UNDEF {
            return Ok(());
        }
        buf.raw.resize(chunk.size as usize, 0);
        self.file
            .read_exact_at(&mut buf.raw, chunk.addr)
            .map_err(|e| self.io_error(e))
    }

    /// The plain bytes of one chunk (its stored bytes in `buf.raw`, inflated, unshuffled),
    /// in `buf`.
    fn chunk_bytes<'b>(
        &self,
        buf: &'b mut ChunkBuffers,
        chunk: &StoredChunk,
        first: usize,
        chunk_bytes: usize,
        shuffle: bool,
    ) -> Result<&'b [u8]> {
        // Named in errors only: formatted when one happens, not for every chunk.
        let place = || match chunk.addr {
            LOOKED_UP => format!("chunk at element {first}"),
            addr => format!("chunk at element {first} (byte {addr})"),
        };
        if chunk.addr == hdf5_sys::h5::HADDR_UNDEF {
            buf.inflated.clear();
            buf.inflated.resize(chunk_bytes, 0);
            return Ok(&buf.inflated);
        }
        let plain: &[u8] = if chunk.deflated {
            buf.inflated.resize(chunk_bytes, 0);
            let n = buf
                .inflater
                .zlib_decompress(&buf.raw, &mut buf.inflated)
                .map_err(|e| {
                    Error::invalid(
                        &self.path,
                        format!("{}: {} does not inflate: {e:?}", self.name, place()),
                    )
                })?;
            if n != chunk_bytes {
                return Err(Error::invalid(
                    &self.path,
                    format!(
                        "{}: {} inflates to {n} bytes, expected {chunk_bytes}",
                        self.name,
                        place()
                    ),
                ));
            }
            &buf.inflated
        } else if buf.raw.len() != chunk_bytes {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "{}: {} holds {} bytes, expected {chunk_bytes}",
                    self.name,
                    place(),
                    buf.raw.len()
                ),
            ));
        } else {
            &buf.raw
        };
        if shuffle && chunk.shuffled && self.element.size() > 1 {
            unshuffle(plain, self.element.size(), &mut buf.unshuffled);
            return Ok(&buf.unshuffled);
        }
        Ok(plain)
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::invalid(
            &self.path,
            format!("{}: reading its stored bytes: {e}", self.name),
        )
    }
}

/// Chunked storage the direct reader handles (deflate and shuffle only, the default fill
/// value, bounded chunk table and chunks), or why the library must read it.
fn chunked_storage(
    ds: &Dataset,
    len: usize,
    element: Element,
) -> std::result::Result<Storage, String> {
    let mut deflate = None;
    let mut shuffle = None;
    for (position, filter) in ds.filters().iter().enumerate() {
        match filter {
            Filter::Deflate(_) if deflate.is_none() => deflate = Some(position),
            // Shuffle is applied before deflate when writing, so undone after it.
            Filter::Shuffle if shuffle.is_none() && deflate.is_none() => shuffle = Some(position),
            other => return Err(format!("filter {other:?}")),
        }
    }
    let chunk_len = match ds.chunk().as_deref() {
        Some([n]) if *n > 0 => *n,
        other => return Err(format!("chunk shape {other:?}")),
    };
    // Chunks never written read as the fill value: zeros unless the file set another.
    let fill = ds.dcpl().map(|p| p.fill_value_defined());
    if matches!(
        fill,
        Ok(hdf5::plist::dataset_create::FillValue::UserDefined)
    ) {
        return Err("user-defined fill value".into());
    }
    // One table slot per chunk: a header claiming billions of chunks (never written: they
    // read as zeros) would otherwise size the table, so such a dataset goes to the library,
    // which only touches the chunks read.
    let n_chunks = len.div_ceil(chunk_len);
    if n_chunks > MAX_CHUNKS {
        return Err(format!("{n_chunks} chunks"));
    }
    // Each reading thread holds a chunk inflated: beyond this the library reads.
    if chunk_len.saturating_mul(element.size()) > MAX_CHUNK_BYTES {
        return Err(format!("chunks of {chunk_len} elements"));
    }
    Ok(Storage::Chunked {
        chunk_len,
        n_chunks,
        chunks: OnceLock::new(),
        deflate,
        shuffle_at: shuffle,
    })
}

/// Contiguous storage at its file offset, or why the library must read it.
fn contiguous_storage(ds: &Dataset, len: usize) -> std::result::Result<Storage, String> {
    // SAFETY: `ds` is an open dataset; H5Dget_offset only reads its layout message.
    let addr = hdf5::sync::sync(|| unsafe { hdf5_sys::h5d::H5Dget_offset(ds.id()) });
    match (addr == hdf5_sys::h5::HADDR_UNDEF, len) {
        (false, _) => Ok(Storage::Contiguous { addr }),
        (true, 0) => Ok(Storage::Contiguous { addr: 0 }),
        (true, _) => Err("contiguous storage not written (or compact)".into()),
    }
}
