//! [`StoredArray`]: one 1-D numeric dataset, read by [`DirectArray`] where its storage
//! allows and through the HDF5 library otherwise.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use hdf5::types::TypeDescriptor;
use hdf5::Dataset;

use super::super::hdf5_util as h5;
use super::DirectArray;
use crate::error::Result;
use crate::readers::ranged::RandomAccess;

/// A 1-D numeric dataset, read directly where its storage allows and through the HDF5
/// library otherwise.
#[derive(Debug)]
pub enum StoredArray {
    /// Read without the library.
    Direct(DirectArray, Dataset),
    /// Read through the library (serialised behind its lock).
    Library(Dataset),
}

impl StoredArray {
    /// Open `ds` of the file at `path` (`file`: the same file opened for positioned reads).
    /// A storage the direct reader does not handle is logged once and read by the library.
    pub fn open(path: &Path, file: &Arc<RandomAccess>, ds: Dataset) -> Result<Self> {
        Ok(match DirectArray::open(path, file, &ds)? {
            Ok(direct) => StoredArray::Direct(direct, ds),
            Err(reason) => {
                tracing::info!(
                    event = "read.library",
                    input = %path.display(),
                    dataset = %ds.name(),
                    reason = %reason,
                    "{}: read through the HDF5 library on one thread ({reason})",
                    ds.name()
                );
                StoredArray::Library(ds)
            }
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        match self {
            StoredArray::Direct(_, ds) | StoredArray::Library(ds) => ds,
        }
    }

    /// Its path inside the file.
    pub fn name(&self) -> String {
        self.dataset().name()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            StoredArray::Direct(d, _) => d.len,
            StoredArray::Library(ds) => h5::len(ds),
        }
    }

    /// Elements `range` as f32.
    pub fn read_f32(&self, path: &Path, range: Range<usize>) -> Result<Vec<f32>> {
        match self {
            StoredArray::Direct(d, _) => d.read(range),
            StoredArray::Library(ds) => h5::read_numeric::<f32>(path, ds, range),
        }
    }

    /// Elements `range` as f64.
    pub fn read_f64(&self, path: &Path, range: Range<usize>) -> Result<Vec<f64>> {
        match self {
            StoredArray::Direct(d, _) => d.read(range),
            StoredArray::Library(ds) => h5::read_f64(path, ds, range),
        }
    }

    /// Elements `range` as i64.
    pub fn read_i64(&self, path: &Path, range: Range<usize>) -> Result<Vec<i64>> {
        match self {
            StoredArray::Direct(d, _) => d.read(range),
            StoredArray::Library(ds) => h5::read_i64(path, ds, range),
        }
    }

    /// Elements `range` as u32 indices; anything else (negative, fractional, too large)
    /// becomes `u32::MAX`.
    pub fn read_u32(&self, path: &Path, range: Range<usize>) -> Result<Vec<u32>> {
        match self {
            StoredArray::Direct(d, _) => d.read(range),
            StoredArray::Library(ds) => Ok(h5::read_i64(path, ds, range)?
                .into_iter()
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                .collect()),
        }
    }

    /// The stored element type when float32 may not hold its values exactly (float64, 32- and
    /// 64-bit integers), `None` otherwise.
    pub fn wider_than_f32(&self, path: &Path) -> Result<Option<String>> {
        use hdf5::types::{FloatSize, IntSize};
        let d = h5::descriptor(path, self.dataset())?;
        let wide = matches!(
            d,
            TypeDescriptor::Float(FloatSize::U8)
                | TypeDescriptor::Integer(IntSize::U4 | IntSize::U8)
                | TypeDescriptor::Unsigned(IntSize::U4 | IntSize::U8)
        );
        Ok(wide.then(|| d.to_string()))
    }

    /// How many elements, read as f64, `pred` holds for.
    pub fn count_f64(&self, path: &Path, pred: impl Fn(f64) -> bool + Sync + Send) -> Result<u64> {
        match self {
            StoredArray::Direct(d, _) => d.count(pred),
            StoredArray::Library(ds) => {
                const BLOCK: usize = 1 << 20;
                let (n, mut start, mut count) = (h5::len(ds), 0, 0);
                while start < n {
                    let end = (start + BLOCK).min(n);
                    count += h5::read_f64(path, ds, start..end)?
                        .into_iter()
                        .filter(|&v| pred(v))
                        .count() as u64;
                    start = end;
                }
                Ok(count)
            }
        }
    }

    /// Whether `pred` holds for every element read as f64.
    pub fn all_f64(&self, path: &Path, pred: impl Fn(f64) -> bool + Sync + Send) -> Result<bool> {
        match self {
            StoredArray::Direct(d, _) => d.all(pred),
            StoredArray::Library(ds) => {
                const BLOCK: usize = 1 << 20;
                let n = h5::len(ds);
                let mut start = 0;
                while start < n {
                    let end = (start + BLOCK).min(n);
                    if !h5::read_f64(path, ds, start..end)?.into_iter().all(&pred) {
                        return Ok(false);
                    }
                    start = end;
                }
                Ok(true)
            }
        }
    }
}
