//! obsp/varp rows → uncommitted fragments of `cellsxcells.lance` / `genesxgenes.lance`.
//!
//! Written by shards, like the per-cell tables: each shard of the (single) input writes the
//! obsp rows of its own cells, and shard 0 writes every varp row, one fragment per `fragment_rows`
//! rows; commit only concatenates them. Fragments start at multiples of `fragment_rows`, so the
//! tables are the same however the cells were sharded.

use std::path::Path;

use arrow::datatypes::DataType;
use lance::table::format::Fragment;

use crate::cells::{Axis, CellRange};
use crate::error::Result;
use crate::pipeline::blocking;
use crate::readers::InputReader;
use crate::slaf::schema::{pairwise_schema, CELLSXCELLS_TABLE, GENESXGENES_TABLE};
use crate::slaf::tables::pairwise_batch;
use crate::slaf::writer::TableWriter;

/// The table of `axis`'s pairwise matrices and its id column prefix.
pub fn pairwise_table(axis: Axis) -> (&'static str, &'static str) {
    match axis {
        Axis::Cells => (CELLSXCELLS_TABLE, "cell_integer_id"),
        Axis::Genes => (GENESXGENES_TABLE, "gene_integer_id"),
    }
}

/// The writer of `axis`'s pairwise table under `root` with keys `keys`.
pub fn pairwise_writer(
    root: &Path,
    axis: Axis,
    keys: &[String],
    id_type: &DataType,
) -> Result<TableWriter> {
    let (table, prefix) = pairwise_table(axis);
    TableWriter::new(&root.join(table), pairwise_schema(prefix, id_type, keys))
}

/// Write rows `rows` of every pairwise key of `axis` as uncommitted fragments of
/// `fragment_rows` rows under `root`; gives the reader back with the fragments, in row order.
pub async fn write_pairwise_rows(
    root: &Path,
    reader: Box<dyn InputReader>,
    axis: Axis,
    keys: &[String],
    id_type: &DataType,
    rows: CellRange,
    fragment_rows: u64,
) -> Result<(Box<dyn InputReader>, Vec<Fragment>)> {
    if keys.is_empty() || rows.is_empty() {
        return Ok((reader, Vec::new()));
    }
    let writer = pairwise_writer(root, axis, keys, id_type)?;
    let mut reader = blocking(move || {
        let mut reader = reader;
        reader.prepare_pairwise(axis, rows, fragment_rows)?;
        Ok(reader)
    })
    .await?;
    let mut fragments = Vec::new();
    for block in rows.split(fragment_rows) {
        let (back, entries) = blocking(move || {
            let mut reader = reader;
            let entries = reader.read_pairwise(axis, block)?;
            Ok((reader, entries))
        })
        .await?;
        reader = back;
        let batch = pairwise_batch(writer.schema(), id_type, block.start, &entries)?;
        fragments.extend(writer.write_fragment(batch).await?);
    }
    tracing::info!(
        event = "pairwise.written",
        table = pairwise_table(axis).0,
        keys = keys.len(),
        rows_from = rows.start,
        rows_to = rows.end,
        "wrote {} rows {}..{}",
        pairwise_table(axis).0,
        rows.start,
        rows.end
    );
    Ok((reader, fragments))
}
