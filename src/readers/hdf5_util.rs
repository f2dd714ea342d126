//! Small typed reads over the `hdf5` crate shared by the HDF5-based readers.
//!
//! Every function takes the input path so that an HDF5 failure becomes one
//! [`Error::InvalidInput`] naming the file and the object inside it; this is the one place
//! where `hdf5::Error` is translated. A file standing in for an object in a store is opened
//! through the driver in `ranged_driver`.

use std::ops::Range;
use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Dataset, Group, Location};

use crate::error::{Error, Result};

mod compound;
mod encoding;
mod limits;
mod ranged_driver;

pub(crate) use ranged_driver::as_chunk_data;
mod strings;
pub use compound::{compound_fields, read_field, read_field_bools, read_field_strings};
pub use encoding::{encoding_type, sparse_encoding};
pub use limits::{check_stored, try_zeroed};
use strings::{fixed_strings_from_bytes, utf8_strings};
pub use strings::{read_scalar_string, read_strings};

/// Translate an HDF5 error about `object` in `path`.
pub fn h5_error(path: &Path, object: &str, err: hdf5::Error) -> Error {
    with_stack(Error::invalid(path, format!("{object}: {err}")), &err)
}

/// Attach HDF5's error stack (every frame, outermost first) as the error's causes.
fn with_stack(mut error: Error, err: &hdf5::Error) -> Error {
    if let (Error::InvalidInput { causes, .. }, Some(stack)) = (&mut error, err.stack()) {
        causes.extend(stack.iter().map(|frame| frame.description().to_string()));
    }
    error
}

/// An HDF5 input open for reading: while it is, a crash of the library is reported as a
/// crash on this file (see [`crate::crash_report`]).
#[derive(Debug)]
pub struct InputFile {
    file: hdf5::File,
    _reading: crate::crash_report::ReadingGuard,
}

impl std::ops::Deref for InputFile {
    type Target = hdf5::File;

    fn deref(&self) -> &hdf5::File {
        &self.file
    }
}

/// Open the HDF5 file at `path` read-only; non-HDF5 and truncated files become one clear error.
pub fn open_file(path: &Path) -> Result<InputFile> {
    if !path.exists() {
        return Err(Error::InputMissing {
            path: path.to_path_buf(),
            what: "no such file".into(),
        });
    }
    // HDF5 prints its own error stack to stderr; our message replaces it.
    hdf5::silence_errors(true);
    let reading = crate::crash_report::reading_hdf5(path);
    let opened = match crate::readers::ranged::source(path) {
        Some(_) => ranged_driver::open(path),
        None => hdf5::File::open(path),
    };
    let file = opened.map_err(|e| {
        let text = e.to_string();
        let what = if text.contains("signature") || text.contains("not an HDF5") {
            "not an HDF5 file (or truncated): cannot open".to_string()
        } else if text.contains("unable to lock file") {
            "HDF5 file is locked by another process (still being written?); set HDF5_USE_FILE_LOCKING=FALSE to read it anyway".to_string()
        } else {
            format!("cannot open as HDF5 (truncated or corrupt?): {e}")
        };
        with_stack(Error::invalid(path, what), &e)
    })?;
    Ok(InputFile {
        file,
        _reading: reading,
    })
}

/// Whether `loc` has the attribute `name` (an unreadable attribute list counts as none).
pub fn has_attr(loc: &Location, name: &str) -> bool {
    loc.attr_names()
        .is_ok_and(|names| names.iter().any(|n| n == name))
}

/// Open attribute `name` of `loc` with its display name (`/obs@column-order`), `None` if absent.
fn open_attr(path: &Path, loc: &Location, name: &str) -> Result<Option<(Attribute, String)>> {
    let names = loc
        .attr_names()
        .map_err(|e| h5_error(path, &loc.name(), e))?;
    if !names.iter().any(|n| n == name) {
        return Ok(None);
    }
    let object = format!("{}@{}", loc.name(), name);
    let attr = loc.attr(name).map_err(|e| h5_error(path, &object, e))?;
    Ok(Some((attr, object)))
}

/// Read a scalar string attribute, `None` if the attribute is absent.
pub fn str_attr(path: &Path, loc: &Location, name: &str) -> Result<Option<String>> {
    let Some((attr, object)) = open_attr(path, loc, name)? else {
        return Ok(None);
    };
    let mut values = attr_strings(path, &object, &attr)?;
    match values.len() {
        1 => Ok(values.pop()),
        n => Err(Error::invalid(
            path,
            format!("{object}: expected one string, found {n}"),
        )),
    }
}

/// Read a string or string-array attribute (empty numeric arrays, as h5py writes an empty
/// list, read as no strings).
pub fn str_array_attr(path: &Path, loc: &Location, name: &str) -> Result<Option<Vec<String>>> {
    match open_attr(path, loc, name)? {
        Some((attr, object)) => attr_strings(path, &object, &attr).map(Some),
        None => Ok(None),
    }
}

fn attr_strings(path: &Path, object: &str, attr: &Attribute) -> Result<Vec<String>> {
    let err = |e| h5_error(path, object, e);
    let desc = attr.dtype().and_then(|t| t.to_descriptor()).map_err(err)?;
    if attr.size() == 0 {
        return Ok(Vec::new());
    }
    // read_raw reads a scalar attribute as one element, an array attribute whole.
    match desc {
        TypeDescriptor::VarLenUnicode => {
            let raw = attr.read_raw::<VarLenUnicode>().map_err(err)?;
            utf8_strings(path, object, raw.iter().map(|s| s.as_bytes()))
        }
        TypeDescriptor::VarLenAscii => {
            let raw = attr.read_raw::<VarLenAscii>().map_err(err)?;
            utf8_strings(path, object, raw.iter().map(|s| s.as_bytes()))
        }
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            fixed_strings_from_bytes(path, object, &read_attr_bytes(path, object, attr, n)?, n)
        }
        other => Err(Error::invalid(
            path,
            format!("{object}: expected a string attribute, found {other}"),
        )),
    }
}

fn read_attr_bytes(path: &Path, object: &str, attr: &Attribute, width: usize) -> Result<Vec<u8>> {
    use hdf5_sys::h5a::H5Aread;
    let dtype = attr.dtype().map_err(|e| h5_error(path, object, e))?;
    if dtype.size() != width {
        return Err(Error::invalid(
            path,
            format!(
                "{object}: string type of {} bytes, expected {width}",
                dtype.size()
            ),
        ));
    }
    let mut buf: Vec<u8> = try_zeroed(path, object, attr.size().saturating_mul(width))?;
    // SAFETY: the buffer holds size * width bytes (width checked against the type's size
    // above), exactly what reading all elements with the file's own type writes.
    let status =
        hdf5::sync::sync(|| unsafe { H5Aread(attr.id(), dtype.id(), buf.as_mut_ptr().cast()) });
    if status < 0 {
        return Err(Error::invalid(
            path,
            format!("{object}: cannot read fixed-length strings"),
        ));
    }
    Ok(buf)
}

/// Open a member group, with an error naming it.
pub fn group(path: &Path, parent: &Group, name: &str) -> Result<Group> {
    parent.group(name).map_err(|e| {
        h5_error(
            path,
            &format!("{}/{}", parent.name().trim_end_matches('/'), name),
            e,
        )
    })
}

/// Open a member dataset, with an error naming it.
pub fn dataset(path: &Path, parent: &Group, name: &str) -> Result<Dataset> {
    parent.dataset(name).map_err(|e| {
        h5_error(
            path,
            &format!("{}/{}", parent.name().trim_end_matches('/'), name),
            e,
        )
    })
}

/// Whether `name` is a group (as opposed to a dataset) inside `parent`.
pub fn is_group(parent: &Group, name: &str) -> bool {
    hdf5::silence_errors(true);
    parent.group(name).is_ok()
}

/// The dataset's element type.
pub fn descriptor(path: &Path, ds: &Dataset) -> Result<TypeDescriptor> {
    ds.dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5_error(path, &ds.name(), e))
}

/// Length of a 1-D dataset (first dimension otherwise).
pub fn len(ds: &Dataset) -> usize {
    ds.shape().first().copied().unwrap_or(0)
}

/// Read `range` of a 1-D numeric dataset as `f64` (HDF5 converts any integer or float type).
pub fn read_f64(path: &Path, ds: &Dataset, range: Range<usize>) -> Result<Vec<f64>> {
    read_numeric::<f64>(path, ds, range)
}

/// Read `range` of a 1-D integer dataset as `i64`.
pub fn read_i64(path: &Path, ds: &Dataset, range: Range<usize>) -> Result<Vec<i64>> {
    read_numeric::<i64>(path, ds, range)
}

/// Read `range` of a 1-D dataset in type `T`, letting HDF5 convert.
pub fn read_numeric<T: ZeroIsValid>(
    path: &Path,
    ds: &Dataset,
    range: Range<usize>,
) -> Result<Vec<T>> {
    read_zeroed(path, ds, &ds.name(), range, T::type_descriptor(), 1)
}

/// Types whose all-zero bytes are a valid value: the buffers HDF5 reads into start zeroed.
///
/// # Safety
/// An implementing type must be valid when every byte is 0.
pub unsafe trait ZeroIsValid: hdf5::H5Type {}

// SAFETY: zero is a valid number of each; a null pointer is the string types' empty string
// (their `as_bytes`, `len` and `drop` check for it).
unsafe impl ZeroIsValid for i8 {}
unsafe impl ZeroIsValid for i16 {}
unsafe impl ZeroIsValid for i32 {}
unsafe impl ZeroIsValid for i64 {}
unsafe impl ZeroIsValid for u8 {}
unsafe impl ZeroIsValid for u16 {}
unsafe impl ZeroIsValid for u32 {}
unsafe impl ZeroIsValid for u64 {}
unsafe impl ZeroIsValid for f32 {}
unsafe impl ZeroIsValid for f64 {}
unsafe impl ZeroIsValid for VarLenUnicode {}
unsafe impl ZeroIsValid for VarLenAscii {}

/// Read `range` of the 1-D dataset `ds` (named `object` in errors) as `mem`, `per_row`
/// values of `T` an element, into a zeroed buffer: HDF5 leaves an element it has no stored
/// value for untouched (storage never allocated with fill time "never", a missing chunk), and
/// such an element reads as zeros, never as uninitialised memory.
fn read_zeroed<T: ZeroIsValid>(
    path: &Path,
    ds: &Dataset,
    object: &str,
    range: Range<usize>,
    mem: TypeDescriptor,
    per_row: usize,
) -> Result<Vec<T>> {
    if range.is_empty() {
        return Ok(Vec::new());
    }
    check_range(path, ds, &range)?;
    if per_row == 0 {
        return Err(Error::invalid(
            path,
            format!("{object}: a fixed array of length 0"),
        ));
    }
    let size = mem.size();
    if size != std::mem::size_of::<T>().saturating_mul(per_row) {
        return Err(Error::Internal(format!(
            "{object}: a {size}-byte element read as {per_row} values of {} bytes",
            std::mem::size_of::<T>()
        )));
    }
    let mem_type = hdf5::Datatype::from_descriptor(&mem).map_err(|e| h5_error(path, object, e))?;
    let n = range.len().saturating_mul(per_row);
    let mut values: Vec<T> = limits::reserve(path, object, n)?;
    // SAFETY: `values` has room for `n` values (reserved above); zero bytes are a valid `T`
    // (ZeroIsValid), so the vector holds `n` initialised values before HDF5 writes any.
    unsafe {
        std::ptr::write_bytes(values.as_mut_ptr(), 0, n);
        values.set_len(n);
    }
    // SAFETY: `ds` is 1-D and holds `range` (check_range); the buffer holds `range.len()`
    // elements of `mem`'s `size` bytes (checked above: `n` values of `T`).
    unsafe {
        read_hyperslab(
            path,
            ds,
            object,
            range,
            None,
            &mem_type,
            values.as_mut_ptr().cast(),
        )
    }?;
    Ok(values)
}

/// Check that `ds` is 1-D and holds `range`: every 1-D read (and the hyperslab of
/// [`read_fixed_bytes`], whose start/count arrays have one element) relies on it.
fn check_range(path: &Path, ds: &Dataset, range: &Range<usize>) -> Result<()> {
    check_ndim(path, ds, 1)?;
    check_first_dim(path, ds, range, "elements")?;
    check_stored(path, ds, range.len())
}

/// Check that the first dimension of `ds` holds `range` (of `unit`: elements, rows).
fn check_first_dim(path: &Path, ds: &Dataset, range: &Range<usize>, unit: &str) -> Result<()> {
    let n = len(ds);
    if range.end > n {
        return Err(Error::invalid(
            path,
            format!(
                "{}: needs {unit} {}..{} but holds only {n}",
                ds.name(),
                range.start,
                range.end
            ),
        ));
    }
    Ok(())
}

/// Refuse a dataset that does not have `ndim` dimensions.
pub fn check_ndim(path: &Path, ds: &Dataset, ndim: usize) -> Result<()> {
    let shape = ds.shape();
    if shape.len() != ndim {
        return Err(Error::invalid(
            path,
            format!(
                "{}: expected a {ndim}-D dataset, found shape {shape:?}",
                ds.name()
            ),
        ));
    }
    Ok(())
}

/// Read `rows` of a 2-D numeric dataset as row-major `f64`.
pub fn read_rows_f64(path: &Path, ds: &Dataset, rows: Range<usize>) -> Result<Vec<f64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    check_ndim(path, ds, 2)?;
    check_first_dim(path, ds, &rows, "rows")?;
    let cols = ds.shape().get(1).copied().unwrap_or(0);
    let object = ds.name();
    let n = rows.len().saturating_mul(cols);
    // A lying column count must not size (and zero) the buffer.
    check_stored(path, ds, n)?;
    let mut values: Vec<f64> = try_zeroed(path, &object, n)?;
    if values.is_empty() {
        return Ok(values);
    }
    let mem_type = hdf5::Datatype::from_type::<f64>().map_err(|e| h5_error(path, &object, e))?;
    // SAFETY: `ds` is 2-D with `cols` columns and holds `rows` (checked above); `values` holds
    // `rows.len() * cols` zeroed f64s, the selection's size in the memory type.
    unsafe {
        read_hyperslab(
            path,
            ds,
            &object,
            rows,
            Some(cols),
            &mem_type,
            values.as_mut_ptr().cast(),
        )
    }?;
    Ok(values)
}

/// Read the elements `range` of the 1-D dataset `ds` (with `cols: Some(c)`, the rows `range`
/// of the 2-D dataset, all `c` columns) into `buf` as `mem_type`, which HDF5 converts to (for
/// a compound `mem_type`, only the members it names, matched by name); a failure names
/// `object`.
///
/// # Safety
/// `ds` must be 1-D (2-D with `c` columns when `cols` is `Some(c)`) and hold `range`, and
/// `buf` must have room for `range.len()` (times `c`) elements of `mem_type`'s size.
unsafe fn read_hyperslab(
    path: &Path,
    ds: &Dataset,
    object: &str,
    range: Range<usize>,
    cols: Option<usize>,
    mem_type: &hdf5::Datatype,
    buf: *mut std::ffi::c_void,
) -> Result<()> {
    use hdf5_sys::h5d::H5Dread;
    use hdf5_sys::h5p::H5P_DEFAULT;
    use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Scopy, H5Screate_simple, H5Sselect_hyperslab};
    let fspace = ds.space().map_err(|e| h5_error(path, &ds.name(), e))?;
    let (start, count, rank) = match cols {
        None => ([range.start as u64, 0], [range.len() as u64, 1], 1),
        Some(c) => ([range.start as u64, 0], [range.len() as u64, c as u64], 2),
    };
    // H5Sselect_hyperslab reads `rank` elements of start/count, the dataset's rank (the
    // caller's guarantee); the memory space has the selection's shape, which `buf` holds.
    let status = hdf5::sync::sync(|| unsafe {
        let fs = H5Scopy(fspace.id());
        if fs < 0 {
            return -1;
        }
        let sel = H5Sselect_hyperslab(
            fs,
            H5S_seloper_t::H5S_SELECT_SET,
            start.as_ptr(),
            std::ptr::null(),
            count.as_ptr(),
            std::ptr::null(),
        );
        let ms = H5Screate_simple(rank, count.as_ptr(), std::ptr::null());
        let status = if sel < 0 || ms < 0 {
            -1
        } else {
            H5Dread(ds.id(), mem_type.id(), ms, fs, H5P_DEFAULT, buf)
        };
        if ms >= 0 {
            H5Sclose(ms);
        }
        H5Sclose(fs);
        status
    });
    if status < 0 {
        return Err(Error::invalid(
            path,
            format!(
                "{object}: cannot read elements {}..{}",
                range.start, range.end
            ),
        ));
    }
    Ok(())
}

/// Read `range` of a 1-D boolean dataset (h5py's enum bool, or any integer type).
pub fn read_bools(path: &Path, ds: &Dataset, range: Range<usize>) -> Result<Vec<bool>> {
    if range.is_empty() {
        return Ok(Vec::new());
    }
    check_range(path, ds, &range)?;
    match descriptor(path, ds)? {
        // Bytes, not Rust bools: an enum value HDF5 cannot map must not become an invalid bool.
        TypeDescriptor::Boolean => {
            Ok(
                read_zeroed::<i8>(path, ds, &ds.name(), range, TypeDescriptor::Boolean, 1)?
                    .into_iter()
                    .map(|b| b != 0)
                    .collect(),
            )
        }
        _ => Ok(read_i64(path, ds, range)?
            .into_iter()
            .map(|v| v != 0)
            .collect()),
    }
}
