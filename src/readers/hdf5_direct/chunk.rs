//! One stored chunk of a dataset: where it lies and which filters apply to it (asked of the
//! library, under its lock), and the per-thread buffers its bytes are read and inflated in.

use hdf5::Dataset;

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

/// Where the chunk starting at element `first` lies (a B-tree lookup, under the library's
/// lock); `None` if the library cannot say.
pub(super) fn locate_chunk(
    ds: &Dataset,
    first: usize,
    deflate: Option<usize>,
    shuffle: Option<usize>,
) -> Option<StoredChunk> {
    hdf5::sync::sync(|| {
        let offset = [first as hdf5_sys::h5::hsize_t];
        let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
        // SAFETY: valid dataset id, a one-element offset for a 1-D dataset, out-pointers to
        // locals.
        let status = unsafe {
            hdf5_sys::h5d::H5Dget_chunk_info_by_coord(
                ds.id(),
                offset.as_ptr(),
                &mut mask,
                &mut addr,
                &mut size,
            )
        };
        if status < 0 {
            return None;
        }
        let applies = |position: Option<usize>| position.is_some_and(|p| mask & (1 << p) == 0);
        Some(StoredChunk {
            addr,
            size,
            deflated: applies(deflate),
            shuffled: applies(shuffle),
        })
    })
}
