//! Record batches of the three SLAF tables, built from what readers hand out.
//!
//! The one place where reader output ([`CellChunk`], var columns) meets the table schemas of
//! [`crate::schema`]: id columns are added, values are cast to the chosen value type, and
//! `cell_start_index` is checked against the rows actually being written.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray, UInt16Array,
    UInt32Array,
};
use arrow::datatypes::{DataType, SchemaRef};

use crate::config_json::ValueStats;
use crate::error::{Error, Result};
use crate::readers::{CellChunk, CellEntries};
use crate::schema::{ExpressionIdTypes, ValueType};

/// The `expression.lance` rows of a chunk whose first cell is `first_cell`, and the
/// statistics of the values as stored.
pub fn expression_batch(
    schema: &SchemaRef,
    ids: &ExpressionIdTypes,
    value_type: ValueType,
    first_cell: u64,
    entries: &CellEntries,
) -> Result<(RecordBatch, ValueStats)> {
    let n = entries.genes.len();
    let cell_of_row = || {
        entries
            .offsets
            .windows(2)
            .enumerate()
            .flat_map(move |(i, w)| {
                std::iter::repeat_n(first_cell + i as u64, (w[1] - w[0]) as usize)
            })
    };
    let cells: ArrayRef = match ids.cell {
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(
            cell_of_row().map(|c| c as i32),
        )),
        DataType::UInt32 => Arc::new(UInt32Array::from_iter_values(
            cell_of_row().map(|c| c as u32),
        )),
        DataType::Int64 => Arc::new(Int64Array::from_iter_values(
            cell_of_row().map(|c| c as i64),
        )),
        ref other => return Err(Error::Internal(format!("cell id type {other}"))),
    };
    let genes: ArrayRef = match ids.gene {
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(
            entries.genes.iter().map(|&g| g as i32),
        )),
        DataType::UInt16 => Arc::new(UInt16Array::from_iter_values(
            entries.genes.iter().map(|&g| g as u16),
        )),
        ref other => return Err(Error::Internal(format!("gene id type {other}"))),
    };
    let (values, stats): (ArrayRef, ValueStats) = match value_type {
        ValueType::UInt16 => {
            // The full-pass probe proved every value integral in [0, 65535]: exact.
            let v: Vec<u16> = entries.values.iter().map(|&x| x as u16).collect();
            let stats = ValueStats::of(v.iter().map(|&x| x as f64));
            (Arc::new(UInt16Array::from(v)), stats)
        }
        ValueType::Float32 => {
            let v: Vec<f32> = entries.values.iter().map(|&x| x as f32).collect();
            let stats = ValueStats::of(v.iter().map(|&x| x as f64));
            (Arc::new(Float32Array::from(v)), stats)
        }
    };
    if cells.len() != n {
        return Err(Error::Internal(format!(
            "chunk offsets cover {} rows but hold {n} entries",
            cells.len()
        )));
    }
    let batch = RecordBatch::try_new(schema.clone(), vec![cells, genes, values])
        .map_err(|e| Error::Internal(format!("expression batch: {e}")))?;
    Ok((batch, stats))
}

/// The `cells.lance` rows of a chunk. `row_offsets` are the dataset's global expression row
/// offsets; the chunk's own entry counts must agree with them.
pub fn cells_batch(
    schema: &SchemaRef,
    chunk: &CellChunk,
    row_offsets: &[u64],
) -> Result<RecordBatch> {
    let n = chunk.cells.len() as usize;
    let start = chunk.cells.start as usize;
    let base = row_offsets[start];
    let written: Vec<u64> = chunk.entries.offsets.iter().map(|o| o + base).collect();
    if written.as_slice() != &row_offsets[start..start + n + 1] {
        return Err(Error::Internal(format!(
            "cells {}..{}: entries read differ from the scan's row counts",
            chunk.cells.start, chunk.cells.end
        )));
    }
    let mut columns: Vec<ArrayRef> = chunk.obs.columns().to_vec();
    columns.push(Arc::new(StringArray::from_iter_values(&chunk.cell_ids)));
    columns.push(Arc::new(Int64Array::from_iter_values(
        (chunk.cells.start..chunk.cells.end).map(|c| c as i64),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        written[..n].iter().map(|&o| o as i64),
    )));
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("cells batch: {e}")))
}

/// The whole `genes.lance` table.
pub fn genes_batch(
    schema: &SchemaRef,
    var: &RecordBatch,
    gene_ids: &[String],
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = var.columns().to_vec();
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
    use crate::schema::{expression_id_types, expression_schema, IdTypes};
    use arrow::array::AsArray;
    use arrow::datatypes::{Int32Type, UInt16Type};

    #[test]
    fn test_expression_batch() {
        let ids = expression_id_types(IdTypes::Int32, 10, 10);
        let schema = expression_schema(ids.clone(), ValueType::UInt16);
        let entries = CellEntries {
            offsets: vec![0, 2, 2, 3],
            genes: vec![1, 4, 0],
            values: vec![3.0, 1.0, 7.0],
        };
        let (batch, stats) =
            expression_batch(&schema, &ids, ValueType::UInt16, 5, &entries).unwrap();
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
