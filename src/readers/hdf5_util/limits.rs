//! Sizes a file states, checked before they size a buffer: fallible allocation, and reads
//! far larger than what the file stores.

use std::path::Path;

use hdf5::Dataset;

use crate::error::{Error, Result};

/// Reads of more than this are checked against the bytes the file stores.
const PLAUSIBLE_WITHOUT_STORAGE: u64 = 64 << 20;

/// Compression anndata and Cell Ranger files reach is far below this; an element count that
/// needs more is a header claiming elements that were never written (they would read as
/// fill values, gigabytes of them).
const MAX_COMPRESSION: u64 = 4096;

/// Refuse to read `n` elements of `ds` when they would be large and the file stores almost
/// nothing of them (or, for a file in a store, the whole file holds almost nothing of that
/// size): the header lies (or the writer never wrote them).
pub fn check_stored(path: &Path, ds: &Dataset, n: usize) -> Result<()> {
    let element = ds.dtype().map(|t| t.size()).unwrap_or(1).max(1) as u64;
    let bytes = (n as u64).saturating_mul(element);
    if bytes <= PLAUSIBLE_WITHOUT_STORAGE {
        return Ok(());
    }
    // A file in a store is measured by its size: the dataset's own storage size walks its
    // whole chunk index, a request per index node scattered over the file.
    let stored = match crate::readers::ranged::source(path) {
        Some(source) => source.size(),
        None => ds.storage_size(),
    };
    if bytes / MAX_COMPRESSION > stored {
        return Err(Error::invalid(
            path,
            format!(
                "{}: {n} elements ({bytes} bytes) claimed but the file stores {stored} bytes of them",
                ds.name()
            ),
        ));
    }
    Ok(())
}

/// A zeroed buffer of `n` elements sized by something a file claims: allocation failure (an
/// address-space limit, or a size no machine has) is an input error naming the object, never
/// an abort.
pub fn try_zeroed<T: Clone + Default>(path: &Path, object: &str, n: usize) -> Result<Vec<T>> {
    let mut v = reserve(path, object, n)?;
    v.resize(n, T::default());
    Ok(v)
}

/// An empty vector with room for `n` elements, or the error naming `object`.
pub(super) fn reserve<T>(path: &Path, object: &str, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::invalid(
            path,
            format!(
                "{object}: cannot allocate {n} elements of {} bytes (a size the file claims)",
                std::mem::size_of::<T>()
            ),
        )
    })?;
    Ok(v)
}
