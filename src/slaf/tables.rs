//! Record batches of the SLAF tables, built from what readers hand out.
//!
//! Where a [`CellBatch`] and var columns (the shared vocabulary) meet the table schemas of
//! [`crate::slaf::schema`]: id columns are added, values are cast to the chosen value type, and
//! `cell_start_index` is checked against the rows actually being written.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray, UInt16Array,
    UInt32Array,
};
use arrow::datatypes::{DataType, SchemaRef};

use crate::cells::{CellBatch, CellEntries};
use crate::error::{Error, Result};
use crate::slaf::schema::ExpressionIdTypes;
use crate::slaf::value_stats::ValueStats;
use crate::values::ValueType;

/// The `expression.lance` rows of a cell batch whose first cell is `first_cell`, and the
/// statistics of the values as stored. Takes the entries: their gene ids (and float values)
/// become the batch's buffers without a copy.
pub fn expression_batch(
    input: &Path,
    schema: &SchemaRef,
    ids: &ExpressionIdTypes,
    value_type: ValueType,
    first_cell: u64,
    entries: CellEntries,
) -> Result<(RecordBatch, ValueStats)> {
    let n = entries.genes.len();
    if entries.offsets.last().map_or(0, |&o| o as usize) != n {
        return Err(Error::Internal(format!(
            "batch offsets cover {:?} rows but hold {n} entries",
            entries.offsets.last()
        )));
    }
    let cells = cell_id_array(&ids.cell, first_cell, &entries.offsets)?;
    let stats = ValueStats::of_f32(&entries.values);
    let values = match value_type {
        ValueType::Float32 => Arc::new(Float32Array::from(entries.values)) as ArrayRef,
        ValueType::UInt16 => value_array(value_type, &entries.values)
            .map_err(|value| too_narrow(input, value, first_cell, None))?,
    };
    let genes = gene_id_array(&ids.gene, entries.genes)?;
    let batch = RecordBatch::try_new(schema.clone(), vec![cells, genes, values])
        .map_err(|e| Error::Internal(format!("expression batch: {e}")))?;
    Ok((batch, stats))
}

fn too_narrow(input: &Path, value: f32, first_cell: u64, layer: Option<usize>) -> Error {
    Error::ValueTypeTooNarrow {
        path: input.to_path_buf(),
        value,
        first_cell,
        layer,
    }
}

/// Gene ids in `dtype`. Readers check every id against the gene count, which fits int32, so
/// the u32 buffer is reinterpreted, not copied, for 32-bit ids.
fn gene_id_array(dtype: &DataType, genes: Vec<u32>) -> Result<ArrayRef> {
    let buffer = arrow::buffer::Buffer::from_vec(genes);
    let len = buffer.len() / 4;
    Ok(match dtype {
        DataType::Int32 => Arc::new(Int32Array::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, len),
            None,
        )),
        DataType::UInt32 => Arc::new(UInt32Array::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, len),
            None,
        )),
        other => {
            let genes = arrow::buffer::ScalarBuffer::<u32>::new(buffer, 0, len);
            id_array(other, genes.iter().map(|&g| g as u64))?
        }
    })
}

/// The cell id of every row: cell `first_cell + i` repeated for each of its entries.
fn cell_id_array(dtype: &DataType, first_cell: u64, offsets: &[u64]) -> Result<ArrayRef> {
    fn repeat<T: Copy>(offsets: &[u64], id: impl Fn(u64) -> T) -> Vec<T> {
        let mut out = Vec::with_capacity(offsets.last().map_or(0, |&o| o as usize));
        for (i, w) in offsets.windows(2).enumerate() {
            out.resize(w[1] as usize, id(i as u64));
        }
        out
    }
    Ok(match dtype {
        DataType::Int32 => Arc::new(Int32Array::from(repeat(offsets, |i| {
            (first_cell + i) as i32
        }))),
        DataType::UInt32 => Arc::new(UInt32Array::from(repeat(offsets, |i| {
            (first_cell + i) as u32
        }))),
        DataType::Int64 => Arc::new(Int64Array::from(repeat(offsets, |i| {
            (first_cell + i) as i64
        }))),
        other => return Err(Error::Internal(format!("cell id type {other}"))),
    })
}

/// The union of stored positions of several sparse sources over the same rows, row-major,
/// columns ascending; each source's value at every union position (0 where it stores none).
#[derive(Debug, Default, PartialEq)]
pub struct Union {
    /// Row of each union position (relative to the batch).
    pub rows: Vec<u64>,
    /// Column of each union position.
    pub cols: Vec<u32>,
    /// Per source, its value at each union position.
    pub values: Vec<Vec<f32>>,
}

/// Merge `sources` (same rows, each sorted within a row) into their union.
pub fn union_of(sources: &[CellEntries]) -> Union {
    let mut out = Union {
        values: vec![Vec::new(); sources.len()],
        ..Default::default()
    };
    let n_rows = sources.first().map_or(0, CellEntries::n_cells);
    let mut next: Vec<usize> = vec![0; sources.len()];
    for row in 0..n_rows {
        for (s, src) in sources.iter().enumerate() {
            next[s] = src.offsets[row] as usize;
        }
        loop {
            // The smallest column any source still has in this row.
            let col = sources
                .iter()
                .enumerate()
                .filter(|(s, src)| next[*s] < src.offsets[row + 1] as usize)
                .map(|(s, src)| src.genes[next[s]])
                .min();
            let Some(col) = col else { break };
            out.rows.push(row as u64);
            out.cols.push(col);
            for (s, src) in sources.iter().enumerate() {
                let k = next[s];
                if k < src.offsets[row + 1] as usize && src.genes[k] == col {
                    out.values[s].push(src.values[k]);
                    next[s] += 1;
                } else {
                    out.values[s].push(0.0);
                }
            }
        }
    }
    out
}

/// Integer ids `first + row` of `rows` in the Arrow type `dtype`.
fn id_array(dtype: &DataType, values: impl Iterator<Item = u64>) -> Result<ArrayRef> {
    Ok(match dtype {
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(values.map(|c| c as i32))),
        DataType::UInt32 => Arc::new(UInt32Array::from_iter_values(values.map(|c| c as u32))),
        DataType::Int64 => Arc::new(Int64Array::from_iter_values(values.map(|c| c as i64))),
        DataType::UInt16 => Arc::new(UInt16Array::from_iter_values(values.map(|c| c as u16))),
        other => return Err(Error::Internal(format!("id type {other}"))),
    })
}

/// Values in the stored type. A value uint16 cannot hold exactly is refused (`Err` with
/// it), never truncated: the plan may have guessed the type from a sample.
fn value_array(value_type: ValueType, values: &[f32]) -> std::result::Result<ArrayRef, f32> {
    Ok(match value_type {
        ValueType::UInt16 => {
            let stored: Vec<u16> = values.iter().map(|&v| v as u16).collect();
            // Checked after the cast, in one branch-free pass: a value is exact when it
            // survives the round trip (NaN, fractions, negatives and >65535 do not).
            let inexact = values
                .iter()
                .zip(&stored)
                .fold(false, |bad, (&v, &s)| bad | (s as f32 != v));
            if inexact {
                let (&bad, _) = values
                    .iter()
                    .zip(&stored)
                    .find(|(&v, &s)| s as f32 != v)
                    .expect("an inexact value");
                return Err(bad);
            }
            Arc::new(UInt16Array::from(stored))
        }
        ValueType::Float32 => Arc::new(Float32Array::from(values.to_vec())),
    })
}

/// The `layers.lance` rows of a cell batch: the union of the layers' stored positions, one value
/// column per layer. A layer with no entry at a union position gets 0 (what a sparse layer
/// means there), not null: upstream's reader turns nulls into NaN on its multi-fragment path
/// (docs/slaf-format.md §2.5).
pub fn layers_batch(
    input: &Path,
    schema: &SchemaRef,
    ids: &ExpressionIdTypes,
    layer_types: &[ValueType],
    first_cell: u64,
    layers: &[CellEntries],
) -> Result<RecordBatch> {
    let union = union_of(layers);
    let mut columns = vec![
        id_array(&ids.cell, union.rows.iter().map(|r| first_cell + r))?,
        id_array(&ids.gene, union.cols.iter().map(|&g| g as u64))?,
    ];
    for (layer, (values, &t)) in union.values.iter().zip(layer_types).enumerate() {
        columns.push(
            value_array(t, values).map_err(|v| too_narrow(input, v, first_cell, Some(layer)))?,
        );
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("layers batch: {e}")))
}

/// The `cellsxcells.lance` / `genesxgenes.lance` rows of a block of rows: the union of the
/// keys' stored positions, one float32 column per key, 0 where a key stores nothing.
pub fn pairwise_batch(
    schema: &SchemaRef,
    id_type: &DataType,
    first_row: u64,
    keys: &[CellEntries],
) -> Result<RecordBatch> {
    let union = union_of(keys);
    let mut columns = vec![
        id_array(id_type, union.rows.iter().map(|r| first_row + r))?,
        id_array(id_type, union.cols.iter().map(|&c| c as u64))?,
    ];
    for values in &union.values {
        columns.push(Arc::new(Float32Array::from(values.clone())));
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("pairwise batch: {e}")))
}

/// The `cells.lance` rows of a cell batch of an input whose cells start at global id `cell_offset`;
/// the batch's first expression row is the global row `row_base`, so `cell_start_index` comes
/// from the rows actually written for these cells.
pub fn cells_batch(
    schema: &SchemaRef,
    batch: &CellBatch,
    cell_offset: u64,
    row_base: u64,
    source_file: Option<&str>,
) -> Result<RecordBatch> {
    let n = batch.cells.len() as usize;
    if batch.entries.offsets.len() != n + 1 {
        return Err(Error::Internal(format!(
            "cells {}..{}: {} entry offsets",
            batch.cells.start,
            batch.cells.end,
            batch.entries.offsets.len()
        )));
    }
    let obs_fields = schema.fields().len() - 3 - usize::from(source_file.is_some());
    let mut columns = project_columns(&batch.obs, &schema.fields()[..obs_fields])?;
    columns.push(Arc::new(StringArray::from_iter_values(&batch.cell_ids)));
    columns.push(Arc::new(Int64Array::from_iter_values(
        (batch.cells.start..batch.cells.end).map(|c| (cell_offset + c) as i64),
    )));
    if let Some(name) = source_file {
        columns.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(name, n),
        )));
    }
    columns.push(Arc::new(Int64Array::from_iter_values(
        batch.entries.offsets[..n]
            .iter()
            .map(|&o| (row_base + o) as i64),
    )));
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("cells batch: {e}")))
}

/// The columns of `batch` named by `fields`, in their order; a column the batch lacks is all
/// null (an input without an obs column the dataset has). Types were checked when planning;
/// a mismatch here means the input changed since.
pub fn project_columns(
    batch: &RecordBatch,
    fields: &[arrow::datatypes::FieldRef],
) -> Result<Vec<ArrayRef>> {
    fields
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Err(Error::changed_since_plan(
                "",
                format_args!(
                    "column '{}' is {} but the plan says {}",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                ),
            )),
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect()
}

/// The whole `genes.lance` table.
pub fn genes_batch(
    schema: &SchemaRef,
    var: &RecordBatch,
    gene_ids: &[String],
) -> Result<RecordBatch> {
    let mut columns = project_columns(var, &schema.fields()[..schema.fields().len() - 2])?;
    columns.push(Arc::new(StringArray::from_iter_values(gene_ids)));
    columns.push(Arc::new(Int64Array::from_iter_values(
        0..gene_ids.len() as i64,
    )));
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("genes batch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slaf::schema::{expression_id_types, expression_schema, Compression, IdTypes};
    use arrow::array::AsArray;
    use arrow::datatypes::{Int32Type, UInt16Type};

    #[test]
    fn test_union_of() {
        let a = CellEntries {
            offsets: vec![0, 2, 2],
            genes: vec![1, 3],
            values: vec![10.0, 30.0],
        };
        let b = CellEntries {
            offsets: vec![0, 1, 2],
            genes: vec![3, 0],
            values: vec![3.5, 7.0],
        };
        let u = union_of(&[a, b]);
        assert_eq!(u.rows, vec![0, 0, 1]);
        assert_eq!(u.cols, vec![1, 3, 0]);
        assert_eq!(u.values, vec![vec![10.0, 30.0, 0.0], vec![0.0, 3.5, 7.0]]);
    }

    #[test]
    fn test_expression_batch() {
        let ids = expression_id_types(IdTypes::Int32, 10, 10);
        let schema = expression_schema(ids.clone(), ValueType::UInt16, Compression::None);
        let entries = CellEntries {
            offsets: vec![0, 2, 2, 3],
            genes: vec![1, 4, 0],
            values: vec![3.0, 1.0, 7.0],
        };
        let (batch, stats) = expression_batch(
            Path::new("in.h5ad"),
            &schema,
            &ids,
            ValueType::UInt16,
            5,
            entries,
        )
        .unwrap();
        let cells: Vec<i32> = batch
            .column(0)
            .as_primitive::<Int32Type>()
            .values()
            .to_vec();
        assert_eq!(cells, vec![5, 5, 7]);
        let values: Vec<u16> = batch
            .column(2)
            .as_primitive::<UInt16Type>()
            .values()
            .to_vec();
        assert_eq!(values, vec![3, 1, 7]);
        assert_eq!((stats.count, stats.min, stats.max), (3, 1.0, 7.0));
    }
}
