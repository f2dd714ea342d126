//! One dataframe column: how its encoding is resolved (once, at open) and how a row range of
//! it becomes an Arrow array.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, PrimitiveArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{ArrowPrimitiveType, DataType};
use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, Group};

use super::data::ColumnData;
use crate::error::{Error, Result};
use crate::readers::hdf5_util as h5;

/// One obs/var column: where its data lives and how it decodes.
#[derive(Debug)]
pub enum Column {
    /// A plain numeric dataset or field.
    Numeric { data: ColumnData, dtype: DataType },
    /// A plain boolean dataset or field.
    Bool { data: ColumnData },
    /// `string-array`, or a string field.
    Strings { data: ColumnData },
    /// `categorical`: codes into categories kept in memory (they are few).
    Categorical {
        codes: ColumnData,
        categories: Vec<String>,
    },
    /// `nullable-integer`.
    NullableInt {
        values: Dataset,
        mask: Dataset,
        dtype: DataType,
    },
    /// `nullable-boolean`.
    NullableBool { values: Dataset, mask: Dataset },
    /// `nullable-string-array`.
    NullableStrings { values: Dataset, mask: Dataset },
}

impl Column {
    /// The Arrow type its rows read as.
    pub fn data_type(&self) -> DataType {
        match self {
            Column::Numeric { dtype, .. } | Column::NullableInt { dtype, .. } => dtype.clone(),
            Column::Bool { .. } | Column::NullableBool { .. } => DataType::Boolean,
            Column::Strings { .. }
            | Column::Categorical { .. }
            | Column::NullableStrings { .. } => DataType::Utf8,
        }
    }
}

/// Number of rows of the column.
pub fn column_len(c: &Column) -> usize {
    match c {
        Column::Numeric { data, .. } | Column::Bool { data } | Column::Strings { data } => {
            data.len()
        }
        Column::Categorical { codes, .. } => codes.len(),
        Column::NullableInt { values, .. }
        | Column::NullableBool { values, .. }
        | Column::NullableStrings { values, .. } => h5::len(values),
    }
}

/// The Arrow type of a stored number type; `None` for anything else.
pub fn numeric_type(desc: &TypeDescriptor) -> Option<DataType> {
    Some(match desc {
        TypeDescriptor::Integer(IntSize::U1) => DataType::Int8,
        TypeDescriptor::Integer(IntSize::U2) => DataType::Int16,
        TypeDescriptor::Integer(IntSize::U4) => DataType::Int32,
        TypeDescriptor::Integer(IntSize::U8) => DataType::Int64,
        TypeDescriptor::Unsigned(IntSize::U1) => DataType::UInt8,
        TypeDescriptor::Unsigned(IntSize::U2) => DataType::UInt16,
        TypeDescriptor::Unsigned(IntSize::U4) => DataType::UInt32,
        TypeDescriptor::Unsigned(IntSize::U8) => DataType::UInt64,
        TypeDescriptor::Float(FloatSize::U4) => DataType::Float32,
        TypeDescriptor::Float(FloatSize::U8) => DataType::Float64,
        _ => return None,
    })
}

/// Whether the stored type is a string (fixed or variable length).
pub fn is_string(desc: &TypeDescriptor) -> bool {
    matches!(
        desc,
        TypeDescriptor::VarLenUnicode
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_)
    )
}

/// Resolve the column `col` of the dataframe `group` (any encoding anndata writes).
pub fn resolve_column(path: &Path, group: &Group, col: &str) -> Result<Column> {
    let object = format!("{}/{col}", group.name());
    let unsupported = |what: String| Error::invalid(path, format!("{object}: {what}"));
    if h5::is_group(group, col) {
        let g = h5::group(path, group, col)?;
        let encoding = h5::encoding_type(path, &g)?.unwrap_or_default();
        return match encoding.as_str() {
            "categorical" => {
                let codes = h5::dataset(path, &g, "codes")?;
                let cats = h5::dataset(path, &g, "categories")?;
                Ok(Column::Categorical {
                    codes: ColumnData::Dataset(codes),
                    categories: read_as_strings(path, &cats)?,
                })
            }
            "nullable-integer" => {
                let values = h5::dataset(path, &g, "values")?;
                let mask = h5::dataset(path, &g, "mask")?;
                let desc = h5::descriptor(path, &values)?;
                let dtype = numeric_type(&desc)
                    .filter(|t| t.is_integer())
                    .ok_or_else(|| {
                        unsupported(format!("nullable-integer values of type {desc}"))
                    })?;
                Ok(Column::NullableInt {
                    values,
                    mask,
                    dtype,
                })
            }
            "nullable-boolean" => Ok(Column::NullableBool {
                values: h5::dataset(path, &g, "values")?,
                mask: h5::dataset(path, &g, "mask")?,
            }),
            "nullable-string-array" => Ok(Column::NullableStrings {
                values: h5::dataset(path, &g, "values")?,
                mask: h5::dataset(path, &g, "mask")?,
            }),
            "" => Err(unsupported("group without an encoding-type".into())),
            other => Err(unsupported(format!(
                "unsupported column encoding '{other}'"
            ))),
        };
    }
    let data = h5::dataset(path, group, col)?;
    if data.ndim() != 1 {
        return Err(unsupported(format!(
            "unsupported {}-dimensional column",
            data.ndim()
        )));
    }
    let desc = h5::descriptor(path, &data)?;
    if let Some(categories) = super::super::legacy::categories_07(path, group, col, &data)? {
        // anndata 0.7: the codes are the column, the categories live in `__categories`.
        if numeric_type(&desc).is_none_or(|t| !t.is_integer()) {
            return Err(unsupported(format!("categorical codes of type {desc}")));
        }
        return Ok(Column::Categorical {
            codes: ColumnData::Dataset(data),
            categories,
        });
    }
    plain_column(ColumnData::Dataset(data), &desc)
        .ok_or_else(|| unsupported(format!("unsupported column type {desc}")))
}

/// A column of plain values (strings, bools or numbers) stored as `desc`; `None` for a type
/// no column has.
pub fn plain_column(data: ColumnData, desc: &TypeDescriptor) -> Option<Column> {
    if is_string(desc) {
        return Some(Column::Strings { data });
    }
    if *desc == TypeDescriptor::Boolean {
        return Some(Column::Bool { data });
    }
    numeric_type(desc).map(|dtype| Column::Numeric { data, dtype })
}

/// Categories (or an index) as strings, formatting numbers and booleans as Python's `str` does.
pub fn read_as_strings(path: &Path, ds: &Dataset) -> Result<Vec<String>> {
    read_as_strings_in(path, ds, 0..h5::len(ds))
}

/// [`read_as_strings`] of the elements `rows` only.
pub fn read_as_strings_in(path: &Path, ds: &Dataset, rows: Range<usize>) -> Result<Vec<String>> {
    let n = rows;
    let desc = h5::descriptor(path, ds)?;
    if is_string(&desc) {
        return h5::read_strings(path, ds, n);
    }
    match desc {
        TypeDescriptor::Boolean => Ok(h5::read_bools(path, ds, n)?
            .into_iter()
            .map(|b| if b { "True" } else { "False" }.to_string())
            .collect()),
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => Ok(h5::read_i64(path, ds, n)?
            .into_iter()
            .map(|v| v.to_string())
            .collect()),
        TypeDescriptor::Float(_) => Ok(h5::read_f64(path, ds, n)?
            .into_iter()
            .map(python_float_str)
            .collect()),
        other => Err(Error::invalid(
            path,
            format!("{}: unsupported categories type {other}", ds.name()),
        )),
    }
}

/// `str(float)` as Python prints it for the common cases ("1.0", "0.5", "nan").
fn python_float_str(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Rows `rows` of the column as Arrow (missing values as nulls).
pub fn read_column(path: &Path, column: &Column, rows: Range<usize>) -> Result<ArrayRef> {
    Ok(match column {
        Column::Numeric { data, dtype } => read_primitive(path, data, dtype, rows, None)?,
        Column::Bool { data } => Arc::new(BooleanArray::from(data.read_bools(path, rows)?)),
        Column::Strings { data } => Arc::new(StringArray::from_iter_values(
            data.read_strings(path, rows)?,
        )),
        Column::Categorical { codes, categories } => {
            let codes_v = codes.read_i64(path, rows)?;
            let mut out = Vec::with_capacity(codes_v.len());
            for code in codes_v {
                out.push(match code {
                    -1 => None,
                    c if c >= 0 && (c as usize) < categories.len() => {
                        Some(categories[c as usize].as_str())
                    }
                    c => {
                        return Err(Error::invalid(
                            path,
                            format!(
                                "{}: code {c} is outside the {} categories",
                                codes.name(),
                                categories.len()
                            ),
                        ))
                    }
                });
            }
            Arc::new(StringArray::from(out))
        }
        Column::NullableInt {
            values,
            mask,
            dtype,
        } => {
            let missing = h5::read_bools(path, mask, rows.clone())?;
            let values = ColumnData::Dataset(values.clone());
            read_primitive(path, &values, dtype, rows, Some(missing))?
        }
        Column::NullableBool { values, mask } => {
            let missing = h5::read_bools(path, mask, rows.clone())?;
            let v = h5::read_bools(path, values, rows)?;
            Arc::new(BooleanArray::new(
                v.into(),
                Some(valid_from_missing(&missing)),
            ))
        }
        Column::NullableStrings { values, mask } => {
            let missing = h5::read_bools(path, mask, rows.clone())?;
            let v = h5::read_strings(path, values, rows)?;
            Arc::new(StringArray::from(
                v.iter()
                    .zip(&missing)
                    .map(|(s, &m)| (!m).then_some(s.as_str()))
                    .collect::<Vec<_>>(),
            ))
        }
    })
}

fn valid_from_missing(missing: &[bool]) -> NullBuffer {
    NullBuffer::from(missing.iter().map(|m| !m).collect::<Vec<_>>())
}

fn read_primitive(
    path: &Path,
    ds: &ColumnData,
    dtype: &DataType,
    rows: Range<usize>,
    missing: Option<Vec<bool>>,
) -> Result<ArrayRef> {
    fn build<T>(values: Vec<T::Native>, missing: Option<&[bool]>) -> ArrayRef
    where
        T: ArrowPrimitiveType,
    {
        let nulls = missing.map(valid_from_missing);
        Arc::new(PrimitiveArray::<T>::new(values.into(), nulls))
    }
    fn float_nulls(values: &[f64], missing: Option<Vec<bool>>) -> Option<Vec<bool>> {
        // A float NaN is pandas' missing value: store it as null (as upstream does).
        let mut m = missing.unwrap_or_else(|| vec![false; values.len()]);
        for (i, v) in values.iter().enumerate() {
            m[i] |= v.is_nan();
        }
        Some(m)
    }
    fn typed<T>(
        path: &Path,
        ds: &ColumnData,
        rows: Range<usize>,
        m: Option<&[bool]>,
    ) -> Result<ArrayRef>
    where
        T: ArrowPrimitiveType,
        T::Native: h5::ZeroIsValid,
    {
        Ok(build::<T>(ds.read_numeric(path, rows)?, m))
    }
    use arrow::datatypes as t;
    let m = missing.as_deref();
    Ok(match dtype {
        DataType::Int8 => typed::<t::Int8Type>(path, ds, rows, m)?,
        DataType::Int16 => typed::<t::Int16Type>(path, ds, rows, m)?,
        DataType::Int32 => typed::<t::Int32Type>(path, ds, rows, m)?,
        DataType::Int64 => typed::<t::Int64Type>(path, ds, rows, m)?,
        DataType::UInt8 => typed::<t::UInt8Type>(path, ds, rows, m)?,
        DataType::UInt16 => typed::<t::UInt16Type>(path, ds, rows, m)?,
        DataType::UInt32 => typed::<t::UInt32Type>(path, ds, rows, m)?,
        DataType::UInt64 => typed::<t::UInt64Type>(path, ds, rows, m)?,
        DataType::Float32 => {
            let v: Vec<f32> = ds.read_numeric(path, rows)?;
            let wide: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let nulls = float_nulls(&wide, missing);
            build::<t::Float32Type>(v, nulls.as_deref())
        }
        DataType::Float64 => {
            let v: Vec<f64> = ds.read_numeric(path, rows)?;
            let nulls = float_nulls(&v, missing);
            build::<t::Float64Type>(v, nulls.as_deref())
        }
        other => {
            return Err(Error::Internal(format!(
                "numeric column of unexpected type {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_python_float_str() {
        assert_eq!(python_float_str(1.0), "1.0");
        assert_eq!(python_float_str(0.5), "0.5");
        assert_eq!(python_float_str(f64::NAN), "nan");
        assert_eq!(python_float_str(-3.0), "-3.0");
    }
}
