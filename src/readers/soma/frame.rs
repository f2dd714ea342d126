//! SOMA dataframes (obs, var): which attributes become columns and of what Arrow type, the
//! map between `soma_joinid`s and row positions, and a row range read as Arrow arrays.
//!
//! Rows are numbered by ascending `soma_joinid`, whatever its values: joinids need not be
//! 0..n-1 (a filtered or appended experiment), so they are mapped, never taken as positions.
//! Enumerated (categorical) attributes become their labels, as the h5ad reader makes
//! categoricals; missing cells (validity 0, or a code with no label) become nulls.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    Int8Array, RecordBatch, RecordBatchOptions, StringArray, UInt16Array, UInt32Array, UInt64Array,
    UInt8Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema};

use super::tiledb::array::{Array, Attribute, Datatype};
use super::tiledb::query::{self, ColumnData, Read};
use super::tiledb::values::Values;
use super::tiledb::Context;
use crate::cells::CellRange;
use crate::columns::sanitise_column_names;
use crate::error::{Error, Result};

/// The dimension every SOMA dataframe is indexed by.
pub const JOINID: &str = "soma_joinid";
/// Cells a read buffer holds.
const READ_CELLS: usize = 1 << 20;

/// Row position ↔ `soma_joinid`.
#[derive(Debug, Clone)]
pub enum JoinIds {
    /// Joinids `start..start + n`.
    Contiguous {
        /// The first.
        start: i64,
        /// How many.
        n: u64,
    },
    /// Any other set, ascending.
    Sorted(Vec<i64>),
}

impl JoinIds {
    /// From every joinid, in any order; a joinid listed twice is returned as the error.
    pub fn from_unsorted(mut ids: Vec<i64>) -> std::result::Result<JoinIds, i64> {
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(w[0]);
        }
        Ok(match (ids.first(), ids.last()) {
            (Some(&first), Some(&last))
                if i128::from(last) - i128::from(first) + 1 == ids.len() as i128 =>
            {
                JoinIds::Contiguous {
                    start: first,
                    n: ids.len() as u64,
                }
            }
            (None, _) | (_, None) => JoinIds::Contiguous { start: 0, n: 0 },
            _ => JoinIds::Sorted(ids),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> u64 {
        match self {
            JoinIds::Contiguous { n, .. } => *n,
            JoinIds::Sorted(ids) => ids.len() as u64,
        }
    }

    /// The joinid of row `position` (< len).
    pub fn joinid(&self, position: u64) -> i64 {
        match self {
            JoinIds::Contiguous { start, .. } => start + position as i64,
            JoinIds::Sorted(ids) => ids[position as usize],
        }
    }

    /// The row of `joinid`, if there is one.
    pub fn position(&self, joinid: i64) -> Option<u64> {
        match self {
            JoinIds::Contiguous { start, n } => {
                let p = joinid.checked_sub(*start)?;
                (p >= 0 && (p as u64) < *n).then_some(p as u64)
            }
            JoinIds::Sorted(ids) => ids.binary_search(&joinid).ok().map(|p| p as u64),
        }
    }

    /// The inclusive joinid range of rows `range` (not empty).
    pub fn span(&self, range: CellRange) -> (i64, i64) {
        (self.joinid(range.start), self.joinid(range.end - 1))
    }
}

/// An obs or var dataframe.
pub struct Frame {
    array: Array,
    id_column: String,
    /// Attributes that become columns, in schema order.
    columns: Vec<Attribute>,
    /// Their output fields.
    pub fields: Vec<Field>,
    /// Row positions and joinids.
    pub ids: JoinIds,
}

impl Frame {
    /// Open the dataframe at `uri` (`object`: "obs" or "ms/RNA/var"); `id_column` holds the
    /// row names; output names must stay clear of `reserved`.
    pub fn open(
        ctx: &Arc<Context>,
        uri: &str,
        object: &str,
        id_column: &str,
        reserved: &[&str],
    ) -> Result<Frame> {
        let array = Array::open(ctx, uri, object)?;
        let input = &ctx.input;
        array.check_dims(&[JOINID])?;
        match array.attr(id_column) {
            Some(a) if a.datatype == Datatype::String && a.var && a.categories.is_none() => {}
            Some(_) => {
                return Err(Error::invalid(
                    input,
                    format!("{object}/{id_column}: the id column must hold strings"),
                ))
            }
            None => {
                let names: Vec<&str> = array.attrs.iter().map(|a| a.name.as_str()).collect();
                return Err(Error::invalid(input, format!("{object}: no id column '{id_column}' (columns: {}); name it with --{}-id-column", names.join(", "), if object == "obs" { "obs" } else { "var" })));
            }
        }
        let mut columns = Vec::new();
        for attr in &array.attrs {
            if attr.name == id_column {
                continue;
            }
            if arrow_type(attr).is_none() {
                let what = match attr.cell_values {
                    Some(n) if n == u32::MAX => "a variable number of values a cell".to_string(),
                    Some(n) => format!("{n} values a cell"),
                    None => format!("TileDB type {:?}", attr.datatype),
                };
                tracing::warn!(event = "input.skipped", object = %format!("{object}/{}", attr.name), "skipping {object}/{}: {what}, which no SLAF column holds", attr.name);
                continue;
            }
            columns.push(attr.clone());
        }
        let names: Vec<String> = columns.iter().map(|a| a.name.clone()).collect();
        let sanitised = sanitise_column_names(&names, reserved)
            .map_err(|e| Error::invalid(input, format!("{object}: {e}")))?;
        let fields = columns
            .iter()
            .zip(&sanitised)
            .map(|(a, name)| Field::new(name, arrow_type(a).expect("checked above"), true))
            .collect();
        let mut all = Vec::new();
        query::read(
            &array,
            &Read {
                columns: &[JOINID],
                ranges: &[],
                cells: READ_CELLS,
            },
            |chunk| {
                match chunk[0].values(input, object)? {
                    Values::I64(ids) => all.extend(ids),
                    _ => {
                        return Err(Error::invalid(
                            input,
                            format!("{object}/{JOINID}: not int64"),
                        ))
                    }
                }
                Ok(())
            },
        )?;
        Ok(Frame {
            array,
            id_column: id_column.to_string(),
            columns,
            fields,
            ids: JoinIds::from_unsorted(all).map_err(|id| {
                Error::invalid(input, format!("{object}: soma_joinid {id} is listed twice"))
            })?,
        })
    }

    /// The source names of the columns, in field order.
    pub fn source_names(&self) -> Vec<String> {
        self.columns.iter().map(|a| a.name.clone()).collect()
    }

    /// Rows `range`: their columns and their names.
    pub fn rows(&self, range: CellRange) -> Result<(RecordBatch, Vec<String>)> {
        let (input, object) = (&self.array.ctx.input, self.array.object.as_str());
        let schema = Arc::new(Schema::new(self.fields.clone()));
        if range.is_empty() {
            return Ok((RecordBatch::new_empty(schema), Vec::new()));
        }
        let (lo, hi) = self.ids.span(range);
        let mut names: Vec<&str> = vec![JOINID, &self.id_column];
        names.extend(self.columns.iter().map(|a| a.name.as_str()));
        let data = query::read_all(
            &self.array,
            &Read {
                columns: &names,
                ranges: &[(0, lo, hi)],
                cells: (range.len() as usize).clamp(1, READ_CELLS),
            },
        )?;
        let Values::I64(joinids) = data[0].values(input, object)? else {
            return Err(Error::invalid(
                input,
                format!("{object}/{JOINID}: not int64"),
            ));
        };
        if joinids.len() as u64 != range.len() {
            return Err(Error::invalid(
                input,
                format!(
                    "{object}: {} rows between soma_joinid {lo} and {hi}, where {} were listed",
                    joinids.len(),
                    range.len()
                ),
            ));
        }
        // Unordered reads: put the rows in joinid order.
        let mut order: Vec<u32> = (0..joinids.len() as u32).collect();
        order.sort_unstable_by_key(|&i| joinids[i as usize]);
        let order = UInt32Array::from(order);
        let checked = Some(arrow::compute::TakeOptions { check_bounds: true });
        let take = |a: ArrayRef| {
            arrow::compute::take(&a, &order, checked.clone())
                .map_err(|e| Error::invalid(input, format!("{object}: {e}")))
        };
        let ids = data[1].strings(input, &format!("{object}/{}", self.id_column))?;
        let ids = take(Arc::new(StringArray::from(ids)))?;
        let ids = ids
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings")
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect();
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (attr, column) in self.columns.iter().zip(&data[2..]) {
            arrays.push(take(to_arrow(
                attr,
                column,
                input,
                &format!("{object}/{}", attr.name),
            )?)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(range.len() as usize));
        let batch = RecordBatch::try_new_with_options(schema, arrays, &options)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok((batch, ids))
    }
}

/// The Arrow type an attribute's column gets; `None`: not one SLAF stores.
fn arrow_type(attr: &Attribute) -> Option<DataType> {
    if attr.categories.is_some() {
        return Some(DataType::Utf8);
    }
    Some(match attr.datatype {
        Datatype::Int8 => DataType::Int8,
        Datatype::Int16 => DataType::Int16,
        Datatype::Int32 => DataType::Int32,
        Datatype::Int64 => DataType::Int64,
        Datatype::UInt8 => DataType::UInt8,
        Datatype::UInt16 => DataType::UInt16,
        Datatype::UInt32 => DataType::UInt32,
        Datatype::UInt64 => DataType::UInt64,
        Datatype::Float32 => DataType::Float32,
        Datatype::Float64 => DataType::Float64,
        Datatype::Bool => DataType::Boolean,
        Datatype::String if attr.var => DataType::Utf8,
        Datatype::String | Datatype::Other(_) => return None,
    })
}

/// One column's cells as an Arrow array of [`arrow_type`].
fn to_arrow(
    attr: &Attribute,
    column: &ColumnData,
    input: &std::path::Path,
    object: &str,
) -> Result<ArrayRef> {
    let valid = column.valid();
    let nulls = valid.clone().map(NullBuffer::from);
    if let Some(labels) = &attr.categories {
        let codes = column.values(input, object)?;
        let strings: Vec<Option<&str>> = (0..codes.len())
            .map(|i| {
                let is_valid = valid.as_ref().is_none_or(|v| v[i]);
                codes
                    .index(i)
                    .filter(|_| is_valid)
                    .and_then(|c| labels.get(c))
                    .map(String::as_str)
            })
            .collect();
        return Ok(Arc::new(StringArray::from(strings)));
    }
    if attr.datatype == Datatype::String {
        let strings = column.strings(input, object)?;
        let array: StringArray = strings
            .iter()
            .enumerate()
            .map(|(i, s)| valid.as_ref().is_none_or(|v| v[i]).then_some(s.as_str()))
            .collect();
        return Ok(Arc::new(array));
    }
    Ok(match column.values(input, object)? {
        Values::I8(v) => Arc::new(Int8Array::new(v.into(), nulls)),
        Values::I16(v) => Arc::new(Int16Array::new(v.into(), nulls)),
        Values::I32(v) => Arc::new(Int32Array::new(v.into(), nulls)),
        Values::I64(v) => Arc::new(Int64Array::new(v.into(), nulls)),
        Values::U8(v) => Arc::new(UInt8Array::new(v.into(), nulls)),
        Values::U16(v) => Arc::new(UInt16Array::new(v.into(), nulls)),
        Values::U32(v) => Arc::new(UInt32Array::new(v.into(), nulls)),
        Values::U64(v) => Arc::new(UInt64Array::new(v.into(), nulls)),
        Values::F32(v) => Arc::new(Float32Array::new(v.into(), nulls)),
        Values::F64(v) => Arc::new(Float64Array::new(v.into(), nulls)),
        Values::Bool(v) => Arc::new(BooleanArray::new(v.into(), nulls)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_joinids_mapped_whatever_they_are() {
        let ids = JoinIds::from_unsorted(vec![7, 5, 6]).unwrap();
        assert!(matches!(ids, JoinIds::Contiguous { start: 5, n: 3 }));
        assert_eq!(
            (ids.position(6), ids.position(8), ids.joinid(0)),
            (Some(1), None, 5)
        );
        let ids = JoinIds::from_unsorted(vec![40, 3, 12]).unwrap();
        assert_eq!(
            (ids.position(12), ids.position(13), ids.joinid(2)),
            (Some(1), None, 40)
        );
        assert_eq!(ids.span(CellRange::new(1, 3)), (12, 40));
        assert_eq!(JoinIds::from_unsorted(vec![0, 2, 0]).unwrap_err(), 0);
        // Extremes do not overflow.
        let ids = JoinIds::from_unsorted(vec![i64::MIN, i64::MAX]).unwrap();
        assert_eq!(ids.position(i64::MAX), Some(1));
        assert_eq!(JoinIds::from_unsorted(vec![]).unwrap().len(), 0);
    }
}
