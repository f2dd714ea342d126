//! The cell-range pipeline shared by `convert` and `shard`: reader batches → record batches →
//! uncommitted Lance fragments of expression, cells and layers.
//!
//! A blocking reader thread feeds a bounded channel; the async side builds each cell batch's
//! record batches, frees the cell batch, and writes one fragment per table. Nothing is committed here: the shard
//! records the fragments in its receipt, and commit makes them visible. On an error every
//! writer task is stopped before the error is returned.

use std::path::Path;

use arrow::array::RecordBatch;
use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};

use crate::logging::progress::CellProgress;

mod fragments;
pub mod pairwise;

use crate::cells::{CellBatch, CellRange, GeneMap, InputParts};
use crate::error::{Error, Result};
use crate::readers::InputReader;
use crate::slaf::schema::{
    cells_schema, expression_schema, layers_schema, CellTablesProfile, CELLS_TABLE,
    EXPRESSION_TABLE, LAYERS_TABLE,
};
use crate::slaf::tables::{cells_batch, expression_batch, layers_batch};
use crate::slaf::value_stats::ValueStats;
use crate::slaf::writer::TableWriter;

use self::fragments::{ClosingFragment, OpenFragment, StreamingFragment};

/// Batches waiting between the reader thread and the writer. With one more being read and one
/// being encoded, at most three batches of cells are alive.
const CHANNEL_DEPTH: usize = 1;

/// Upper bound on the cells read and encoded at once (see [`read_batch_cells`]). A fragment
/// (`--chunk-size` cells) streams into Lance in batches of this many cells, so memory follows
/// this, not the fragment size: about 1,200 stored values per cell make a batch of ~5 MB.
/// Batches of 1,000 cells took an uncompressed 100k-cell file's peak to 270 MiB (the reader
/// outruns the writer, so every slot holds a full batch); 500 take it to 205-225 MiB at the
/// same speed (bench/RESULTS.md).
pub const BATCH_CELLS: u64 = 500;

/// What Lance buffers of a range's cells fragment before it cuts pages, all columns together:
/// 100,000 cells of a dozen obs columns stay one page a column.
const CELLS_PAGE_BUFFER: u64 = 32 << 20;

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
    /// Build every batch but write none (the benchmark's read-only floor).
    discard: bool,
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
    /// Statistics of the expression values written, per fragment in cell order (empty
    /// fragments left out): merged one after another by commit, they give the same bits
    /// however the cells were sharded.
    pub fragment_stats: Vec<ValueStats>,
    /// Cells written.
    pub cells_written: u64,
}

impl RangeOutput {
    /// Statistics of every expression value written.
    pub fn stats(&self) -> ValueStats {
        let mut all = ValueStats::default();
        for s in &self.fragment_stats {
            all.merge(s);
        }
        all
    }
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
        // Lance's default page buffer (8 MiB a column): a fragment's columns in 2-3 pages.
        // One page each, as upstream's (`Pages::OnePerFragment`), means buffering the whole
        // fragment: 60 MiB more peak (uncompressed input past 256 MiB), or 7-13 % of the gzip
        // write if fragments are written one at a time; its full pass costs 2.6 % fewer
        // instructions than the default's (bench/RESULTS.md, "What bounds ...").
        let expression = TableWriter::new(
            &root.join(EXPRESSION_TABLE),
            expression_schema(profile.ids.clone(), profile.value_type, profile.compression),
        )?
        .with_pages(profile.pages);
        // One cells fragment spans a range (see `write_range`): what Lance buffers of it is
        // bounded in all, however many obs columns there are.
        let cells = TableWriter::new(
            &root.join(CELLS_TABLE),
            cells_schema(obs_fields, source_file),
        )?
        .with_page_buffer(CELLS_PAGE_BUFFER);
        let layers = (!parts.layers.is_empty())
            .then(|| {
                TableWriter::new(
                    &root.join(LAYERS_TABLE),
                    layers_schema(
                        &profile.ids,
                        &parts.layers,
                        &profile.layer_types,
                        profile.compression,
                    ),
                )
            })
            .transpose()?;
        Ok(CellTables {
            profile,
            expression,
            cells,
            layers,
            discard: false,
        })
    }

    /// Build every batch from now on but write none: fragments come back empty.
    pub fn discard_batches(&mut self) {
        self.discard = true;
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

    /// Write `range` of `reader` as fragments of `fragment_cells` cells, placed in the dataset as
    /// `placement` says. Gives the reader back.
    ///
    /// The reader hands out batches of at most [`BATCH_CELLS`] cells that tile the fragments
    /// ([`read_batch_cells`]); each batch's record batches stream into the open fragments'
    /// Lance writers, so memory follows the batch, not the fragment.
    pub async fn write_range(
        &self,
        reader: Box<dyn InputReader>,
        range: CellRange,
        fragment_cells: u64,
        placement: RangePlacement,
    ) -> Result<(Box<dyn InputReader>, RangeOutput)> {
        let RangePlacement {
            cell_offset,
            row_base,
            source_file,
            gene_map,
        } = placement;
        let n_cells = range.end;
        let input = reader.path().to_path_buf();
        let batch_cells = read_batch_cells(fragment_cells);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<CellBatch>>(CHANNEL_DEPTH);
        let producer = tokio::task::spawn_blocking(move || {
            produce_batches(reader, range, batch_cells, gene_map.as_ref(), tx)
        });
        let progress = Progress::new(range);
        let mut out = RangeOutput::default();
        let mut rows = row_base;
        let mut open: Option<OpenFragment> = None;
        // cells.lance gets one fragment for the whole range: its rows are small, and a
        // fragment per chunk cost upstream's reader nothing but the output 8 kB per 100k cells.
        let mut cells_fragment = StreamingFragment::new(&self.cells, self.discard);
        // Fragments whose streams are closed while Lance finishes their files, oldest first.
        let mut closing: std::collections::VecDeque<ClosingFragment> = Default::default();
        let written: Result<()> = async {
            while let Some(batch) = rx.recv().await {
                let batch = batch?;
                let fragment = match &mut open {
                    Some(f) => f,
                    None => open.insert(OpenFragment::new(
                        self,
                        CellRange::new(
                            batch.cells.start,
                            fragment_end(range, fragment_cells, batch.cells.start),
                        ),
                    )),
                };
                let cells_range = batch.cells;
                let first_row = rows;
                rows += batch.entries.genes.len() as u64;
                let (expr_batch, cell_batch, layer_batch, batch_stats) = self.table_batches(
                    &input,
                    batch,
                    cell_offset,
                    first_row,
                    source_file.as_deref(),
                )?;
                fragment.send(expr_batch, layer_batch).await?;
                cells_fragment.send(cell_batch).await?;
                fragment.stats.merge(&batch_stats);
                out.cells_written += cells_range.len();
                if cells_range.end >= fragment.cells.end {
                    let fragment = open.take().expect("a fragment is open");
                    closing.push_back(fragment.close(rows));
                    // Reading goes on while Lance finishes the last fragment's file (with
                    // Lance's pages; one page a fragment column buffers a whole fragment, so
                    // then each is finished first): at most two fragments are in the writer.
                    while closing.len() > self.profile.pages.fragments_closing() {
                        let done = closing.pop_front().expect("not empty");
                        done.join(&mut out, &progress, n_cells).await?;
                    }
                }
            }
            while let Some(done) = closing.pop_front() {
                done.join(&mut out, &progress, n_cells).await?;
            }
            Ok(())
        }
        .await;
        let written = match written {
            Ok(()) => cells_fragment.finish().await.map(|f| out.cells.extend(f)),
            Err(e) => {
                cells_fragment.abort().await;
                Err(e)
            }
        };
        if let Err(e) = written {
            // No Lance writer may outlive the error: the caller's cleanup removes the files
            // they would still be writing.
            if let Some(fragment) = open.take() {
                fragment.abort().await;
            }
            for fragment in closing {
                fragment.abort().await;
            }
            drop(rx);
            let _ = producer.await;
            return Err(e);
        }
        let reader = producer
            .await
            .map_err(|e| Error::Internal(format!("reader thread: {e}")))??;
        if open.is_some() || out.cells_written != range.len() {
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

    /// The expression, cells and layers record batches of one cell batch, and its value
    /// statistics. The expression batch takes over the entries' buffers; the rest of the cell
    /// batch is freed before encoding.
    fn table_batches(
        &self,
        input: &Path,
        batch: CellBatch,
        cell_offset: u64,
        first_row: u64,
        source_file: Option<&str>,
    ) -> Result<(RecordBatch, RecordBatch, Option<RecordBatch>, ValueStats)> {
        let p = &self.profile;
        let cell_batch = cells_batch(
            self.cells.schema(),
            &batch,
            cell_offset,
            first_row,
            source_file,
        )
        .map_err(|e| e.about_input(input))?;
        let layer_batch = match &self.layers {
            Some(l) => Some(layers_batch(
                input,
                l.schema(),
                &p.ids,
                &p.layer_types,
                cell_offset + batch.cells.start,
                &batch.layers,
            )?),
            None => None,
        };
        let (expr_batch, stats) = expression_batch(
            input,
            self.expression.schema(),
            &p.ids,
            p.value_type,
            cell_offset + batch.cells.start,
            batch.entries,
        )?;
        Ok((expr_batch, cell_batch, layer_batch, stats))
    }
}

/// Cells the reader hands out at once: the largest whole fraction of `fragment_cells` (a
/// fragment) of at most [`BATCH_CELLS`] cells, so batches tile fragments exactly; the whole
/// fragment when no fraction of at least a quarter of that exists (a prime --chunk-size).
pub fn read_batch_cells(fragment_cells: u64) -> u64 {
    let fragment_cells = fragment_cells.max(1);
    if fragment_cells <= BATCH_CELLS {
        return fragment_cells;
    }
    (fragment_cells.div_ceil(BATCH_CELLS)..=fragment_cells.div_ceil(BATCH_CELLS / 4))
        .find(|&k| fragment_cells.is_multiple_of(k))
        .map_or(fragment_cells, |k| fragment_cells / k)
}

/// One past the last cell of the fragment holding `cell` (fragments are `fragment_cells` cells
/// from the range's start).
fn fragment_end(range: CellRange, fragment_cells: u64, cell: u64) -> u64 {
    let fragment_cells = fragment_cells.max(1);
    (range.start + ((cell - range.start) / fragment_cells + 1) * fragment_cells).min(range.end)
}

/// Runs on a blocking thread: read every cell batch and hand it to the writer; gives the reader
/// back for the parts written after the cells.
fn produce_batches(
    mut reader: Box<dyn InputReader>,
    range: CellRange,
    fragment_cells: u64,
    gene_map: Option<&GeneMap>,
    tx: tokio::sync::mpsc::Sender<Result<CellBatch>>,
) -> Result<Box<dyn InputReader>> {
    match reader.batches(range, fragment_cells) {
        Ok(batches) => {
            for mut batch in batches {
                if let (Ok(c), Some(map)) = (&mut batch, gene_map) {
                    map.apply(&mut c.entries);
                    for layer in &mut c.layers {
                        map.apply(layer);
                    }
                }
                let failed = batch.is_err();
                // A closed channel means the writer already stopped with its own error.
                if tx.blocking_send(batch).is_err() || failed {
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

/// Progress of one cell range: a bar on a terminal, otherwise a `fragment.written` event per
/// fragment with cells done, the total and the rate since the range started.
struct Progress {
    started: std::time::Instant,
    first_cell: u64,
    display: CellProgress,
}

impl Progress {
    fn new(range: CellRange) -> Self {
        Progress {
            started: std::time::Instant::now(),
            first_cell: range.start,
            display: CellProgress::start(
                format!("cells {}..{}", range.start, range.end),
                range.len(),
            ),
        }
    }

    fn fragment_written(&self, cells: CellRange, n_cells: u64, expression_rows: u64) {
        let seconds = self.started.elapsed().as_secs_f64();
        let done = cells.end - self.first_cell;
        self.display.set(done);
        if self.display.is_shown() {
            return;
        }
        let cells_per_second = if seconds > 0.0 {
            (done as f64 / seconds).round()
        } else {
            0.0
        };
        tracing::info!(
            event = "fragment.written",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read_batch_cells_tile_fragments() {
        assert_eq!(read_batch_cells(5), 5);
        assert_eq!(read_batch_cells(500), 500);
        assert_eq!(read_batch_cells(5000), 500);
        // 1,250 cells in 3 batches would not tile: 5 of 250.
        assert_eq!(read_batch_cells(1250), 250);
        assert_eq!(read_batch_cells(100_000), 500);
        // A prime has no useful fraction: the whole fragment at once.
        assert_eq!(read_batch_cells(5003), 5003);
        for fragment in [1, 7, 999, 1001, 2500, 4096, 5000, 12_345] {
            let batch = read_batch_cells(fragment);
            assert_eq!(fragment % batch, 0, "{fragment}: batches tile the fragment");
            assert!(batch <= BATCH_CELLS.max(1) || batch == fragment);
        }
    }

    #[test]
    fn test_fragment_end() {
        let range = CellRange::new(10, 33);
        assert_eq!(fragment_end(range, 10, 10), 20);
        assert_eq!(fragment_end(range, 10, 19), 20);
        assert_eq!(fragment_end(range, 10, 20), 30);
        assert_eq!(fragment_end(range, 10, 30), 33);
    }
}
