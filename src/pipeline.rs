//! The cell-range pipeline shared by `convert` and `shard`: reader chunks → record batches →
//! uncommitted Lance fragments of expression, cells and layers.
//!
//! A blocking reader thread feeds a bounded channel; the async side builds each chunk's batches,
//! frees the chunk, and writes one fragment per table. Nothing is committed here: the caller
//! commits (convert) or records the fragments in a receipt (shard).

use std::path::Path;

use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};

use crate::config_json::{ValueStats, LAYERS_TABLE};
use crate::error::{Error, Result};
use crate::readers::{CellChunk, CellRange, GeneMap, InputParts, InputReader};
use crate::schema::{cells_schema, expression_schema, layers_schema, ExpressionIdTypes, ValueType};
use crate::tables::{cells_batch, expression_batch, layers_batch};
use crate::writer::TableWriter;

/// Chunks waiting between the reader thread and the writer. With one more being read and one
/// being written, at most three chunks are alive: memory is bounded by the chunk size.
const CHANNEL_DEPTH: usize = 1;

/// Table names relative to a dataset (or staging) root.
pub const EXPRESSION_TABLE: &str = "expression.lance";
/// cells table.
pub const CELLS_TABLE: &str = "cells.lance";
/// genes table.
pub const GENES_TABLE: &str = "genes.lance";

/// Every output type of the per-cell tables, fixed before the first batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CellTablesProfile {
    /// Expression value type.
    pub value_type: ValueType,
    /// Layer value types, in layer order.
    pub layer_types: Vec<ValueType>,
    /// Expression id types.
    pub ids: ExpressionIdTypes,
}

/// Where a cell range sits in the dataset and how its input maps onto it.
#[derive(Debug, Clone, Default)]
pub struct RangePlacement {
    /// Global id of the input's first cell.
    pub cell_offset: u64,
    /// Global expression row of the range's first cell.
    pub row_base: u64,
    /// The input's `source_file` name (multi-input datasets).
    pub source_file: Option<String>,
    /// Re-mapping of the input's genes to the dataset's (`None`: same genes, same order).
    pub gene_map: Option<GeneMap>,
}

/// Writers of the per-cell tables under one root directory.
pub struct CellTables {
    profile: CellTablesProfile,
    expression: TableWriter,
    cells: TableWriter,
    layers: Option<TableWriter>,
}

/// What writing a cell range produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RangeOutput {
    /// expression.lance fragments, in cell order.
    pub expression: Vec<Fragment>,
    /// cells.lance fragments, in cell order.
    pub cells: Vec<Fragment>,
    /// layers.lance fragments, in cell order.
    pub layers: Vec<Fragment>,
    /// Statistics of the expression values written.
    pub stats: ValueStats,
    /// Cells written.
    pub cells_written: u64,
}

impl CellTables {
    /// Writers rooted at `root` for a dataset with these obs columns and parts;
    /// `source_file` adds that column (multi-input datasets).
    pub fn new(
        root: &Path,
        obs_fields: &[arrow::datatypes::Field],
        parts: &InputParts,
        profile: CellTablesProfile,
        source_file: bool,
    ) -> Result<Self> {
        let expression = TableWriter::new(
            &root.join(EXPRESSION_TABLE),
            expression_schema(profile.ids.clone(), profile.value_type),
        )?;
        let cells = TableWriter::new(
            &root.join(CELLS_TABLE),
            cells_schema(obs_fields, source_file),
        )?;
        let layers = (!parts.layers.is_empty())
            .then(|| {
                TableWriter::new(
                    &root.join(LAYERS_TABLE),
                    layers_schema(&profile.ids, &parts.layers, &profile.layer_types),
                )
            })
            .transpose()?;
        Ok(CellTables {
            profile,
            expression,
            cells,
            layers,
        })
    }

    /// The expression writer (for commits).
    pub fn expression(&self) -> &TableWriter {
        &self.expression
    }

    /// The cells writer.
    pub fn cells(&self) -> &TableWriter {
        &self.cells
    }

    /// The layers writer, if the input has layers.
    pub fn layers(&self) -> Option<&TableWriter> {
        self.layers.as_ref()
    }

    /// Write `range` of `reader` in chunks of `chunk_size` cells, placed in the dataset as
    /// `placement` says. Gives the reader back.
    pub async fn write_range(
        &self,
        reader: Box<dyn InputReader>,
        range: CellRange,
        chunk_size: u64,
        placement: RangePlacement,
    ) -> Result<(Box<dyn InputReader>, RangeOutput)> {
        let RangePlacement {
            cell_offset,
            row_base,
            source_file,
            gene_map,
        } = placement;
        let n_cells = range.end;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<CellChunk>>(CHANNEL_DEPTH);
        let producer = tokio::task::spawn_blocking(move || {
            produce_chunks(reader, range, chunk_size, gene_map.as_ref(), tx)
        });
        let progress = Progress::new(range);
        let mut out = RangeOutput::default();
        let mut rows = row_base;
        let p = &self.profile;
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            let (expr_batch, chunk_stats) = expression_batch(
                self.expression.schema(),
                &p.ids,
                p.value_type,
                cell_offset + chunk.cells.start,
                &chunk.entries,
            )?;
            let cell_batch = cells_batch(
                self.cells.schema(),
                &chunk,
                cell_offset,
                rows,
                source_file.as_deref(),
            )?;
            let layer_batch = match &self.layers {
                Some(l) => Some(layers_batch(
                    l.schema(),
                    &p.ids,
                    &p.layer_types,
                    cell_offset + chunk.cells.start,
                    &chunk.layers,
                )?),
                None => None,
            };
            let cells_range = chunk.cells;
            rows += chunk.entries.genes.len() as u64;
            // The batches hold everything the chunk had: free its entries before encoding.
            drop(chunk);
            let layer_write = async {
                match (&self.layers, layer_batch) {
                    (Some(l), Some(batch)) => l.write_fragment(batch).await,
                    _ => Ok(None),
                }
            };
            let (e, c, l) = tokio::try_join!(
                self.expression.write_fragment(expr_batch),
                self.cells.write_fragment(cell_batch),
                layer_write
            )?;
            out.expression.extend(e);
            out.cells.extend(c);
            out.layers.extend(l);
            out.stats.merge(&chunk_stats);
            out.cells_written += cells_range.len();
            progress.chunk_written(cells_range, n_cells, rows);
        }
        let reader = producer
            .await
            .map_err(|e| Error::Internal(format!("reader thread: {e}")))??;
        if out.cells_written != range.len() {
            return Err(Error::Internal(format!(
                "wrote {} of the {} cells of {}..{}",
                out.cells_written,
                range.len(),
                range.start,
                range.end
            )));
        }
        Ok((reader, out))
    }
}

/// Runs on a blocking thread: read every chunk and hand it to the writer; gives the reader
/// back for the parts written after the cells.
fn produce_chunks(
    mut reader: Box<dyn InputReader>,
    range: CellRange,
    chunk_size: u64,
    gene_map: Option<&GeneMap>,
    tx: tokio::sync::mpsc::Sender<Result<CellChunk>>,
) -> Result<Box<dyn InputReader>> {
    match reader.chunks(range, chunk_size) {
        Ok(chunks) => {
            for mut chunk in chunks {
                if let (Ok(c), Some(map)) = (&mut chunk, gene_map) {
                    map.apply(&mut c.entries);
                    for layer in &mut c.layers {
                        map.apply(layer);
                    }
                }
                let failed = chunk.is_err();
                // A closed channel means the writer already stopped with its own error.
                if tx.blocking_send(chunk).is_err() || failed {
                    break;
                }
            }
        }
        Err(e) => {
            let _ = tx.blocking_send(Err(e));
        }
    }
    Ok(reader)
}

/// Run blocking reader work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("reader thread: {e}")))?
}

/// Progress of one cell range: a `chunk.written` event per chunk with cells done, the total
/// and the rate since the range started.
struct Progress {
    started: std::time::Instant,
    first_cell: u64,
}

impl Progress {
    fn new(range: CellRange) -> Self {
        Progress {
            started: std::time::Instant::now(),
            first_cell: range.start,
        }
    }

    fn chunk_written(&self, cells: CellRange, n_cells: u64, expression_rows: u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        let done = cells.end - self.first_cell;
        let cells_per_second = if seconds > 0.0 {
            (done as f64 / seconds).round()
        } else {
            0.0
        };
        tracing::info!(
            event = "chunk.written",
            cells_done = cells.end,
            n_cells,
            expression_rows,
            cells_per_second,
            "wrote cells {}..{} of {n_cells} ({cells_per_second} cells/s)",
            cells.start,
            cells.end
        );
    }
}
