//! `uns` as strict JSON: the whole nested tree, read once, as `anndata.read_h5ad` gives it.
//!
//! Dicts become objects, scalars numbers/strings/bools, arrays nested lists, string arrays
//! lists of strings, categoricals and nullable arrays lists with nulls, dataframes and record
//! arrays (numpy structured arrays) objects of column lists. NaN and ±Inf become null (strict
//! JSON has neither). Elements anndata takes out of uns on reading are left out (the caller
//! names them: 0.6 `<column>_categories` that became column labels, adjacency matrices moved
//! to obsp), and a one-element ASCII byte-string array without an encoding (how anndata before
//! 0.7 wrote a string) is that string.
//!
//! An element that cannot be represented (a sparse matrix, an unknown encoding) is skipped
//! with a warning naming it: `uns` never fails a conversion (upstream raises after writing
//! the tables, defect B22). So are a group that contains itself through a hard link (the walk
//! keeps the addresses of the groups it is inside), nesting deeper than [`MAX_DEPTH`] (the
//! recursion is bounded), elements beyond the first [`MAX_ELEMENTS`] (groups hard-linked
//! twice at every level would otherwise be read an exponential number of times) and an
//! encoding version anndata does not read.

use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use hdf5::types::{CompoundField, TypeDescriptor};
use hdf5::{Dataset, Group};
use serde_json::{Map, Number, Value};

use super::super::hdf5_util as h5;
use super::dataframe::{read_whole_column, DataFrameReader};
use crate::error::Result;

/// Read `/uns` of the file without the elements `dropped` (HDF5 paths); `None` when absent
/// or empty.
pub fn read_uns(path: &Path, root: &Group, dropped: &[String]) -> Result<Option<Value>> {
    if !root.link_exists("uns") {
        return Ok(None);
    }
    let g = h5::group(path, root, "uns")?;
    let mut walk = Walk {
        inside: Vec::new(),
        elements: 0,
        dropped,
    };
    match read_group(path, &g, &mut walk)? {
        Some(Value::Object(m)) if m.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn skip(object: &str, why: &str) -> Option<Value> {
    tracing::warn!(event = "uns.skipped", object = %object, "skipping {object} in uns.json: {why}");
    None
}

/// Deepest nesting of groups read into uns.json (anndata's own recursion gives out in the
/// hundreds); deeper parts are skipped with a warning.
pub const MAX_DEPTH: usize = 64;

/// Most groups and datasets read into uns.json.
pub const MAX_ELEMENTS: usize = 100_000;

/// Where the walk over uns is.
struct Walk<'a> {
    /// The addresses of the groups the walk is in, outermost first.
    inside: Vec<hdf5::LocationToken>,
    /// Groups and datasets read so far.
    elements: usize,
    /// Elements left out (HDF5 paths).
    dropped: &'a [String],
}

fn read_group(path: &Path, g: &Group, walk: &mut Walk) -> Result<Option<Value>> {
    let object = g.name();
    let token = g
        .loc_info()
        .map_err(|e| h5::h5_error(path, &object, e))?
        .token;
    if walk.inside.contains(&token) {
        return Ok(skip(
            &object,
            "it links back to a group it is inside (a cycle)",
        ));
    }
    if walk.inside.len() >= MAX_DEPTH {
        return Ok(skip(
            &object,
            &format!("nested more than {MAX_DEPTH} groups deep"),
        ));
    }
    walk.inside.push(token);
    let value = read_group_inside(path, g, &object, walk);
    walk.inside.pop();
    value
}

fn read_group_inside(
    path: &Path,
    g: &Group,
    object: &str,
    walk: &mut Walk,
) -> Result<Option<Value>> {
    let object = object.to_string();
    let encoding = match h5::encoding_type(path, g) {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => return Ok(skip(&object, &e.to_string())),
    };
    if encoding.is_empty() && h5::has_attr(g, "h5sparse_format") {
        return Ok(skip(&object, "a sparse matrix has no JSON form"));
    }
    match encoding.as_str() {
        "" | "dict" => {
            let mut map = Map::new();
            let mut names = g
                .member_names()
                .map_err(|e| h5::h5_error(path, &object, e))?;
            names.sort();
            names.retain(|name| !walk.dropped.contains(&format!("{object}/{name}")));
            for name in names {
                walk.elements += 1;
                if walk.elements > MAX_ELEMENTS {
                    skip(
                        &format!("{object}/{name}"),
                        &format!(
                            "uns holds more than {MAX_ELEMENTS} elements: the rest is left out"
                        ),
                    );
                    break;
                }
                let value = if h5::is_group(g, &name) {
                    read_group(path, &h5::group(path, g, &name)?, walk)?
                } else {
                    read_dataset(path, &h5::dataset(path, g, &name)?)?
                };
                if let Some(v) = value {
                    map.insert(name, v);
                }
            }
            Ok(Some(Value::Object(map)))
        }
        "dataframe" => {
            let df = DataFrameReader::from_group(path, g, &[])?;
            let columns = df.read_columns(0..df.n_rows())?;
            let mut map = Map::new();
            for (name, array) in df.source_names().iter().zip(&columns) {
                map.insert(name.clone(), Value::Array(array_json(array)));
            }
            Ok(Some(Value::Object(map)))
        }
        "categorical" | "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
            let file = g.file().map_err(|e| h5::h5_error(path, &object, e))?;
            let parent = h5::group(path, &file, &parent_of(&object))?;
            let array = read_whole_column(path, &parent, &base_of(&object))?;
            Ok(Some(Value::Array(array_json(&array))))
        }
        other => Ok(skip(
            &object,
            &format!("encoding '{other}' has no JSON form"),
        )),
    }
}

fn parent_of(object: &str) -> String {
    match object.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => object[..i].to_string(),
    }
}

fn base_of(object: &str) -> String {
    object.rsplit('/').next().unwrap_or(object).to_string()
}

fn read_dataset(path: &Path, ds: &Dataset) -> Result<Option<Value>> {
    let object = ds.name();
    let err = |e| h5::h5_error(path, &object, e);
    let desc = h5::descriptor(path, ds)?;
    let shape = ds.shape();
    let n: usize = shape.iter().product();
    let flat: Vec<Value> = match &desc {
        TypeDescriptor::VarLenUnicode
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::FixedAscii(_)
        | TypeDescriptor::FixedUnicode(_) => {
            if ds.is_scalar() {
                return Ok(Some(Value::String(h5::read_scalar_string(path, ds)?)));
            }
            if shape.len() != 1 {
                return Ok(skip(
                    &object,
                    "multi-dimensional string arrays are not supported",
                ));
            }
            h5::read_strings(path, ds, 0..n)?
                .into_iter()
                .map(Value::String)
                .collect()
        }
        TypeDescriptor::Boolean => {
            let v = ds.read_raw::<bool>().map_err(err)?;
            v.into_iter().map(Value::Bool).collect()
        }
        TypeDescriptor::Integer(_) => ds
            .read_raw::<i64>()
            .map_err(err)?
            .into_iter()
            .map(Value::from)
            .collect(),
        TypeDescriptor::Unsigned(_) => ds
            .read_raw::<u64>()
            .map_err(err)?
            .into_iter()
            .map(Value::from)
            .collect(),
        TypeDescriptor::Float(_) => ds
            .read_raw::<f64>()
            .map_err(err)?
            .into_iter()
            .map(float_json)
            .collect(),
        TypeDescriptor::Compound(_) => return read_records(path, ds),
        other => return Ok(skip(&object, &format!("type {other} has no JSON form"))),
    };
    if ds.is_scalar() || is_legacy_string(ds, &desc, &shape) {
        return Ok(flat.into_iter().next());
    }
    Ok(Some(nest(&flat, &shape)))
}

/// A one-element array of (ASCII) byte strings without an encoding: anndata before 0.7 wrote
/// a string that way, and anndata reads it back as the string. Fixed-length UTF-8 stays an
/// array, as anndata decodes it into one.
fn is_legacy_string(ds: &Dataset, desc: &TypeDescriptor, shape: &[usize]) -> bool {
    matches!(desc, TypeDescriptor::FixedAscii(_))
        && shape == [1]
        && !h5::has_attr(ds, "encoding-type")
}

/// A record array (1-D compound dataset) as an object of its columns (keys sorted, as in every
/// object of uns.json); a field of fixed arrays gives a list per row. A field type with no
/// JSON form, or fixed arrays of length 0, is skipped with a warning.
fn read_records(path: &Path, ds: &Dataset) -> Result<Option<Value>> {
    use TypeDescriptor as T;
    let object = ds.name();
    if ds.ndim() != 1 {
        return Ok(skip(&object, "a record array of more than one dimension"));
    }
    let n = h5::len(ds);
    // The fields as every compound read takes them (names checked as UTF-8: they become keys).
    let fields = match h5::compound_fields(path, ds) {
        Ok(Some(fields)) => fields,
        Ok(None) => return Ok(skip(&object, "not a record array")),
        Err(e) => return Ok(skip(&object, &e.to_string())),
    };
    let mut map = Map::new();
    for f in &fields {
        let (item, per_row) = match &f.ty {
            T::FixedArray(_, 0) => {
                skip(
                    &format!("{object} field '{}'", f.name),
                    "a fixed array of length 0",
                );
                continue;
            }
            T::FixedArray(item, d) => (item.as_ref(), *d),
            t => (t, 1),
        };
        let values: Vec<Value> = match item {
            T::FixedAscii(_) | T::FixedUnicode(_) | T::VarLenAscii | T::VarLenUnicode
                if per_row == 1 =>
            {
                h5::read_field_strings(path, ds, f, 0..n)?
                    .into_iter()
                    .map(Value::String)
                    .collect()
            }
            T::Boolean if per_row == 1 => h5::read_field_bools(path, ds, f, 0..n)?
                .into_iter()
                .map(Value::Bool)
                .collect(),
            T::Integer(_) => field_numbers::<i64>(path, ds, f, per_row, n)?,
            T::Unsigned(_) => field_numbers::<u64>(path, ds, f, per_row, n)?,
            T::Float(_) => field_numbers::<f64>(path, ds, f, per_row, n)?,
            other => {
                skip(
                    &format!("{object} field '{}'", f.name),
                    &format!("type {other} has no JSON form"),
                );
                continue;
            }
        };
        let column = match f.ty {
            T::FixedArray(..) => nest(&values, &[n, per_row]),
            _ => Value::Array(values),
        };
        map.insert(f.name.clone(), column);
    }
    Ok(Some(Value::Object(map)))
}

/// The numbers of a field, `per_row` a row (a fixed array), as JSON (non-finite as null).
fn field_numbers<T>(
    path: &Path,
    ds: &Dataset,
    field: &CompoundField,
    per_row: usize,
    n: usize,
) -> Result<Vec<Value>>
where
    T: h5::ZeroIsValid + Into<JsonNumber>,
{
    let one = T::type_descriptor();
    let mem = match field.ty {
        TypeDescriptor::FixedArray(..) => TypeDescriptor::FixedArray(Box::new(one), per_row),
        _ => one,
    };
    let values: Vec<T> = h5::read_field(path, ds, &field.name, mem, per_row, 0..n)?;
    Ok(values.into_iter().map(|v| v.into().json()).collect())
}

/// A number read from a record array, on its way to JSON.
enum JsonNumber {
    Int(i64),
    Unsigned(u64),
    Float(f64),
}

impl JsonNumber {
    fn json(self) -> Value {
        match self {
            JsonNumber::Int(v) => Value::from(v),
            JsonNumber::Unsigned(v) => Value::from(v),
            JsonNumber::Float(v) => float_json(v),
        }
    }
}

impl From<i64> for JsonNumber {
    fn from(v: i64) -> Self {
        JsonNumber::Int(v)
    }
}

impl From<u64> for JsonNumber {
    fn from(v: u64) -> Self {
        JsonNumber::Unsigned(v)
    }
}

impl From<f64> for JsonNumber {
    fn from(v: f64) -> Self {
        JsonNumber::Float(v)
    }
}

/// Row-major flat values into nested lists of `shape`.
fn nest(flat: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] | [_] => Value::Array(flat.to_vec()),
        [first, rest @ ..] => {
            let step: usize = rest.iter().product();
            Value::Array(
                (0..*first)
                    .map(|i| nest(&flat[i * step..(i + 1) * step], rest))
                    .collect(),
            )
        }
    }
}

/// A float as JSON: NaN and ±Inf (not representable) become null.
fn float_json(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// An Arrow column as JSON values, nulls as null.
pub fn array_json(array: &ArrayRef) -> Vec<Value> {
    let n = array.len();
    let valid = |i: usize| array.is_valid(i);
    match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Value::String(a.value(i).to_string())
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Value::Bool(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let cast = arrow::compute::cast(array, &DataType::Float64).expect("float widening");
            let a = cast.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        float_json(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        DataType::UInt64 => {
            let a = array.as_primitive::<arrow::datatypes::UInt64Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Value::from(a.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect()
        }
        _ => match arrow::compute::cast(array, &DataType::Int64) {
            Ok(cast) => {
                let a = cast.as_primitive::<Int64Type>();
                (0..n)
                    .map(|i| {
                        if valid(i) {
                            Value::from(a.value(i))
                        } else {
                            Value::Null
                        }
                    })
                    .collect()
            }
            Err(_) => vec![Value::Null; n],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_nest() {
        let flat: Vec<Value> = (0..6).map(Value::from).collect();
        assert_eq!(
            nest(&flat, &[2, 3]),
            serde_json::json!([[0, 1, 2], [3, 4, 5]])
        );
        assert_eq!(nest(&flat, &[6]), serde_json::json!([0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn test_float_json() {
        assert_eq!(float_json(f64::NAN), Value::Null);
        assert_eq!(float_json(f64::INFINITY), Value::Null);
        assert_eq!(float_json(0.5), serde_json::json!(0.5));
    }
}
