//! Fields of compound (structured) datasets. anndata before 0.7 stored obs, var, obsm and
//! varm as one compound dataset each, a field per column or key; uns could hold numpy record
//! arrays. A field is read by itself, a row range at a time: the memory type is a compound
//! of that one member, and HDF5 converts the members it names, matched by name.

use std::ops::Range;
use std::path::Path;

use hdf5::types::{CompoundField, CompoundType, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, H5Type};

use super::strings::{fixed_strings_from_bytes, utf8_strings};

use super::{descriptor, read_zeroed, ZeroIsValid};
use crate::error::{Error, Result};

/// The fields of `ds` when its element type is compound, in stored order; `None` otherwise.
pub fn compound_fields(path: &Path, ds: &Dataset) -> Result<Option<Vec<CompoundField>>> {
    let TypeDescriptor::Compound(c) = descriptor(path, ds)? else {
        return Ok(None);
    };
    let mut fields = c.fields;
    fields.sort_by_key(|f| f.index);
    // The hdf5 crate does not check member names: they become column names and JSON keys.
    if let Some(f) = fields
        .iter()
        .find(|f| std::str::from_utf8(f.name.as_bytes()).is_err())
    {
        return Err(Error::invalid(
            path,
            format!(
                "{}: a field name that is not valid UTF-8 ({:?})",
                ds.name(),
                String::from_utf8_lossy(f.name.as_bytes())
            ),
        ));
    }
    Ok(Some(fields))
}

/// Read `range` of the field `field` of the 1-D compound dataset `ds` as `mem`, `per_row`
/// values of `T` a row (a fixed array or fixed string is several; a number one).
pub fn read_field<T: ZeroIsValid>(
    path: &Path,
    ds: &Dataset,
    field: &str,
    mem: TypeDescriptor,
    per_row: usize,
    range: Range<usize>,
) -> Result<Vec<T>> {
    let object = format!("{} field '{field}'", ds.name());
    let size = mem.size();
    let one_member = TypeDescriptor::Compound(CompoundType {
        fields: vec![CompoundField::new(field, mem, 0, 0)],
        size,
    });
    read_zeroed(path, ds, &object, range, one_member, per_row)
}

/// Read `range` of a string field (fixed- or variable-length, ASCII or UTF-8).
pub fn read_field_strings(
    path: &Path,
    ds: &Dataset,
    field: &CompoundField,
    range: Range<usize>,
) -> Result<Vec<String>> {
    let object = format!("{} field '{}'", ds.name(), field.name);
    match &field.ty {
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            let bytes: Vec<u8> = read_field(path, ds, &field.name, field.ty.clone(), *n, range)?;
            fixed_strings_from_bytes(path, &object, &bytes, *n)
        }
        TypeDescriptor::VarLenUnicode => {
            let mem = VarLenUnicode::type_descriptor();
            let raw: Vec<VarLenUnicode> = read_field(path, ds, &field.name, mem, 1, range)?;
            utf8_strings(path, &object, raw.iter().map(|s| s.as_bytes()))
        }
        TypeDescriptor::VarLenAscii => {
            let mem = VarLenAscii::type_descriptor();
            let raw: Vec<VarLenAscii> = read_field(path, ds, &field.name, mem, 1, range)?;
            utf8_strings(path, &object, raw.iter().map(|s| s.as_bytes()))
        }
        other => Err(Error::invalid(
            path,
            format!("{object}: expected strings, found {other}"),
        )),
    }
}

/// Read `range` of a boolean field (h5py's enum bool, or any integer type) as bools.
pub fn read_field_bools(
    path: &Path,
    ds: &Dataset,
    field: &CompoundField,
    range: Range<usize>,
) -> Result<Vec<bool>> {
    // Bytes, not Rust bools: an enum value HDF5 cannot map must not become an invalid bool.
    let bytes: Vec<i8> = match field.ty {
        TypeDescriptor::Boolean => {
            read_field(path, ds, &field.name, TypeDescriptor::Boolean, 1, range)?
        }
        _ => {
            let wide: Vec<i64> =
                read_field(path, ds, &field.name, i64::type_descriptor(), 1, range)?;
            wide.into_iter().map(|v| i8::from(v != 0)).collect()
        }
    };
    Ok(bytes.into_iter().map(|b| b != 0).collect())
}
