//! Strings from datasets: variable- or fixed-length, ASCII or UTF-8, decoded strictly.

use std::ops::Range;
use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::Dataset;

use super::{check_range, descriptor, h5_error, read_hyperslab, read_zeroed, try_zeroed};
use crate::error::{Error, Result};

/// Decode strings as strict UTF-8, as h5py's `asstr()` does for anndata: invalid bytes are an
/// error naming the element, never a lossy replacement (two names could collide) nor an
/// unchecked `str` (the hdf5 crate's `as_str`/`Display` do not check).
pub(super) fn utf8_strings<'a>(
    path: &Path,
    object: &str,
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<String>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            String::from_utf8(bytes.to_vec()).map_err(|e| {
                Error::invalid(
                    path,
                    format!(
                        "{object}: element {i} is not valid UTF-8 (byte {} of {:?})",
                        e.utf8_error().valid_up_to(),
                        String::from_utf8_lossy(bytes)
                    ),
                )
            })
        })
        .collect()
}

/// Fixed-length strings as numpy's `S` dtype gives them to anndata (h5py reads the stored
/// bytes): trailing NULs dropped, everything else kept, spaces and inner NULs included.
pub(super) fn fixed_strings_from_bytes(
    path: &Path,
    object: &str,
    bytes: &[u8],
    width: usize,
) -> Result<Vec<String>> {
    utf8_strings(
        path,
        object,
        bytes.chunks(width.max(1)).map(|c| {
            let end = c.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            &c[..end]
        }),
    )
}

/// Read `range` of a 1-D string dataset (variable- or fixed-length, ASCII or UTF-8).
pub fn read_strings(path: &Path, ds: &Dataset, range: Range<usize>) -> Result<Vec<String>> {
    if range.is_empty() {
        return Ok(Vec::new());
    }
    check_range(path, ds, &range)?;
    let object = ds.name();
    match descriptor(path, ds)? {
        TypeDescriptor::VarLenUnicode => {
            let mem = TypeDescriptor::VarLenUnicode;
            let raw: Vec<VarLenUnicode> = read_zeroed(path, ds, &object, range, mem, 1)?;
            utf8_strings(path, &object, raw.iter().map(|s| s.as_bytes()))
        }
        TypeDescriptor::VarLenAscii => {
            let mem = TypeDescriptor::VarLenAscii;
            let raw: Vec<VarLenAscii> = read_zeroed(path, ds, &object, range, mem, 1)?;
            utf8_strings(path, &object, raw.iter().map(|s| s.as_bytes()))
        }
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            let bytes = read_fixed_bytes(path, ds, range, n)?;
            fixed_strings_from_bytes(path, &ds.name(), &bytes, n)
        }
        other => Err(Error::invalid(
            path,
            format!("{}: expected strings, found {other}", ds.name()),
        )),
    }
}

/// Read fixed-length strings as raw bytes using the file's own type (no per-length Rust type).
fn read_fixed_bytes(
    path: &Path,
    ds: &Dataset,
    range: Range<usize>,
    width: usize,
) -> Result<Vec<u8>> {
    let dtype = ds.dtype().map_err(|e| h5_error(path, &ds.name(), e))?;
    if dtype.size() != width {
        return Err(Error::invalid(
            path,
            format!(
                "{}: string type of {} bytes, expected {width}",
                ds.name(),
                dtype.size()
            ),
        ));
    }
    let mut buf: Vec<u8> = try_zeroed(path, &ds.name(), range.len().saturating_mul(width))?;
    // SAFETY: the callers checked that `ds` is 1-D and holds `range` (check_range); `buf`
    // holds `range.len()` elements of the file's type, `width` bytes each (its size).
    unsafe {
        read_hyperslab(
            path,
            ds,
            &ds.name(),
            range,
            None,
            &dtype,
            buf.as_mut_ptr().cast(),
        )
    }?;
    Ok(buf)
}

/// Read a scalar string dataset (variable- or fixed-length), decoded strictly.
pub fn read_scalar_string(path: &Path, ds: &Dataset) -> Result<String> {
    let object = ds.name();
    let err = |e| h5_error(path, &object, e);
    let one = |bytes: &[u8]| utf8_strings(path, &object, [bytes]).map(|mut v| v.remove(0));
    match descriptor(path, ds)? {
        TypeDescriptor::VarLenAscii => {
            one(ds.read_scalar::<VarLenAscii>().map_err(err)?.as_bytes())
        }
        // Fixed-length strings too: HDF5 converts them to variable length, dropping the padding.
        _ => one(ds.read_scalar::<VarLenUnicode>().map_err(err)?.as_bytes()),
    }
}
