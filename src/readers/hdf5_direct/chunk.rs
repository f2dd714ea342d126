//! The stored chunks of a dataset: where each lies and which filters apply to it (listed by
//! the library, under its lock, in one walk; or, for a file in a store, each chunk looked up
//! and read by the library on its own), and the per-thread buffers their bytes are read and
//! inflated in.

use std::ffi::{c_int, c_uint, c_void};

use hdf5::Dataset;
use hdf5_sys::h5::{haddr_t, hsize_t, HADDR_UNDEF};
use hdf5_sys::h5d::{H5Dchunk_iter, H5Dread_chunk2};
use hdf5_sys::h5p::H5P_DEFAULT;

use super::{Storage, LOOKED_UP};
use crate::error::Error;
use crate::readers::ranged::RandomAccess;

#[derive(Debug, Clone, Copy)]
pub(super) struct StoredChunk {
    /// File offset; `HADDR_UNDEF` for a chunk never written (it reads as zeros).
    pub(super) addr: u64,
    /// Bytes stored.
    pub(super) size: u64,
    /// Deflate applies to this chunk (not skipped through the chunk's filter mask).
    pub(super) deflated: bool,
    /// Shuffle applies to this chunk.
    pub(super) shuffled: bool,
}

/// Per-thread buffers of chunk reads.
pub(super) struct ChunkBuffers {
    pub(super) raw: Vec<u8>,
    pub(super) inflated: Vec<u8>,
    pub(super) unshuffled: Vec<u8>,
    pub(super) inflater: libdeflater::Decompressor,
}

impl ChunkBuffers {
    pub(super) fn new() -> Self {
        ChunkBuffers {
            raw: Vec::new(),
            inflated: Vec::new(),
            unshuffled: Vec::new(),
            inflater: libdeflater::Decompressor::new(),
        }
    }
}

/// Where every chunk of a 1-D dataset of `n_chunks` chunks of `chunk_len` elements lies, in
/// element order, from one walk of the chunk index under the library's lock. Chunks never
/// written come back at `HADDR_UNDEF`. One walk, because asking chunk by chunk
/// (`H5Dget_chunk_info_by_coord`) walks the index each time: 16,384 chunks took seconds,
/// serial under the lock.
pub(super) fn list_chunks(
    ds: &Dataset,
    chunk_len: usize,
    n_chunks: usize,
    deflate: Option<usize>,
    shuffle: Option<usize>,
) -> Result<Vec<StoredChunk>, String> {
    struct Walk {
        chunk_len: u64,
        chunks: Vec<StoredChunk>,
        seen: Vec<bool>,
        deflate: Option<usize>,
        shuffle: Option<usize>,
        problem: Option<String>,
    }
    unsafe extern "C" fn visit(
        offset: *const hsize_t,
        filter_mask: c_uint,
        addr: haddr_t,
        size: hsize_t,
        op_data: *mut c_void,
    ) -> c_int {
        // SAFETY: `op_data` is the `Walk` passed to H5Dchunk_iter below, alive and not
        // otherwise borrowed during the call; `offset` holds one coordinate (1-D dataset).
        // Nothing here may panic: unwinding out of a C callback aborts the process.
        let walk = unsafe { &mut *(op_data as *mut Walk) };
        let first = unsafe { *offset };
        // `chunk_len` is never 0 (`chunked_storage` refuses that shape).
        let c = (first / walk.chunk_len) as usize;
        if c >= walk.chunks.len() && first % walk.chunk_len == 0 {
            // A chunk past the extent (left by a shrink): never read, as for the library.
            return 0;
        }
        if first % walk.chunk_len != 0 || walk.seen[c] {
            walk.problem = Some(format!(
                "the chunk index lists a chunk at element {first} twice or off a chunk boundary"
            ));
            return -1;
        }
        let applies =
            |position: Option<usize>| position.is_some_and(|p| filter_mask & (1 << p) == 0);
        walk.seen[c] = true;
        walk.chunks[c] = StoredChunk {
            addr,
            size,
            deflated: applies(walk.deflate),
            shuffled: applies(walk.shuffle),
        };
        0
    }
    let unwritten = StoredChunk {
        addr: HADDR_UNDEF,
        size: 0,
        deflated: false,
        shuffled: false,
    };
    let mut walk = Walk {
        chunk_len: chunk_len as u64,
        chunks: vec![unwritten; n_chunks],
        seen: vec![false; n_chunks],
        deflate,
        shuffle,
        problem: None,
    };
    let status = hdf5::sync::sync(|| {
        // SAFETY: valid dataset id; `visit` matches H5D_chunk_iter_op_t and only touches the
        // `Walk` it is handed, which outlives the call.
        unsafe {
            H5Dchunk_iter(
                ds.id(),
                H5P_DEFAULT,
                Some(visit),
                &mut walk as *mut Walk as *mut c_void,
            )
        }
    });
    match (status < 0, walk.problem) {
        (_, Some(problem)) => Err(problem),
        (true, None) => Err("the library cannot walk its chunk index".into()),
        (false, None) => Ok(walk.chunks),
    }
}

/// The stored bytes of the chunk that starts at element `first`, read through the library
/// after a lookup of that chunk alone in the index, into `raw`, with whether deflate and
/// shuffle apply to it; `Ok(None)` when the index has no written chunk there (or cannot be
/// looked up so: the caller walks the index instead), an error when the index claims more
/// than `max_bytes` for it.
///
/// For a file read at offsets from a store ([`crate::readers::ranged`]): walking the whole
/// index ([`list_chunks`]) reads every index node of the file, scattered over it, one request
/// each and in turn, where a shard needs only the nodes over its own chunks.
pub(super) fn read_looked_up(
    ds: &Dataset,
    first: u64,
    deflate: Option<usize>,
    shuffle: Option<usize>,
    max_bytes: usize,
    raw: &mut Vec<u8>,
) -> Result<Option<(bool, bool)>, String> {
    let offset: hsize_t = first;
    let mut filters: u32 = 0;
    let read = |raw: &mut Vec<u8>, filters: &mut u32| -> Option<usize> {
        let mut size = raw.len();
        crate::readers::hdf5_util::as_chunk_data(|| {
            hdf5::sync::sync(|| {
                // SAFETY: a valid dataset id, a 1-D offset, and `raw` holding `size` writable
                // bytes; the library writes only when the chunk fits, and reports its size.
                unsafe {
                    H5Dread_chunk2(
                        ds.id(),
                        H5P_DEFAULT,
                        &offset,
                        filters,
                        raw.as_mut_ptr().cast(),
                        &mut size,
                    )
                }
            })
        })
        .ge(&0)
        .then_some(size)
    };
    // Room for the largest plausible chunk, so one call reads it: the library reads only
    // into a buffer it fits, and says the size either way.
    raw.resize(max_bytes, 0);
    let Some(size) = read(raw, &mut filters) else {
        return Ok(None);
    };
    if size > max_bytes {
        return Err(format!(
            "the chunk at element {first} claims {size} stored bytes, more than it can hold"
        ));
    }
    if size == 0 {
        return Ok(None);
    }
    raw.truncate(size);
    let applies = |position: Option<usize>| position.is_some_and(|p| filters & (1 << p) == 0);
    Ok(Some((applies(deflate), applies(shuffle))))
}

impl super::DirectArray {
    /// Chunk `c` of a file read from a store, its stored bytes read into `buf.raw` after a
    /// lookup of it alone ([`read_looked_up`]); `None` for a local file, and for a chunk the
    /// lookup does not find (the whole index is walked then, as for a local file).
    pub(super) fn looked_up(
        &self,
        buf: &mut ChunkBuffers,
        c: usize,
    ) -> crate::error::Result<Option<StoredChunk>> {
        let Storage::Chunked {
            chunk_len,
            deflate,
            shuffle_at,
            ..
        } = &self.storage
        else {
            return Ok(None);
        };
        if !matches!(*self.file, RandomAccess::Ranged(_)) {
            return Ok(None);
        }
        let max_bytes = self.max_stored(*chunk_len).min(self.file_len as usize);
        let first = (c * chunk_len) as u64;
        let looked_up = read_looked_up(
            &self.ds,
            first,
            *deflate,
            *shuffle_at,
            max_bytes,
            &mut buf.raw,
        )
        .map_err(|what| Error::invalid(&self.path, format!("{}: {what}", self.name)))?;
        Ok(looked_up.map(|(deflated, shuffled)| StoredChunk {
            addr: LOOKED_UP,
            size: buf.raw.len() as u64,
            deflated,
            shuffled,
        }))
    }
}
