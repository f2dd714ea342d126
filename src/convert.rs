//! `convert`: one input to one `.slaf` dataset in one process.
//!
//! Order of work, chosen so that nothing half-written ever looks complete:
//! 1. refuse (or, with `--overwrite`, move aside and delete) an existing output;
//! 2. open the input and scan the matrix once (value type from every value, rows per cell);
//! 3. write `genes.lance`; stream cell chunks from a blocking reader thread through a bounded
//!    channel into uncommitted Lance fragments of `expression.lance` and `cells.lance`;
//! 4. commit each table's fragments in cell order in one transaction;
//! 5. write `config.json` atomically, last: without it the upstream reader refuses the
//!    directory, so a killed run never passes for a dataset.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::datatypes::DataType;

use crate::config_json::{
    config_document, write_config, write_json, DatasetSummary, ValueStats, CELLSXCELLS_TABLE,
    GENESXGENES_TABLE, UNS_FILE,
};
use crate::error::{Error, Result};
use crate::pipeline::{CellTables, CellTablesProfile, GENES_TABLE};
use crate::readers::{self, Axis, CellRange, InputReader, MatrixScan, ReadOptions};
use crate::schema::{
    cells_schema, expression_id_types, genes_schema, pairwise_schema, ExpressionIdTypes, IdTypes,
    ValueType,
};
use crate::tables::{genes_batch, pairwise_batch};
use crate::writer::TableWriter;

/// Options of one conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Cells per chunk, and so per Lance fragment.
    pub chunk_size: u64,
    /// Replace an existing output.
    pub overwrite: bool,
    /// Id column types of expression.lance.
    pub id_types: IdTypes,
    /// How readers open the input (what to do with AnnData's raw).
    pub read: ReadOptions,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            chunk_size: 5000,
            overwrite: false,
            id_types: IdTypes::Int32,
            read: ReadOptions::default(),
        }
    }
}

/// What a finished conversion wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The output directory.
    pub output: PathBuf,
    /// Cells, genes and value statistics.
    pub summary: DatasetSummary,
    /// Expression value type chosen.
    pub value_type: ValueType,
    /// Fragments written to expression.lance.
    pub expression_fragments: usize,
}

/// Convert `input` into the SLAF dataset `output`.
pub async fn convert(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    if options.chunk_size == 0 {
        return Err(Error::Usage("--chunk-size must be at least 1".into()));
    }
    let started = Instant::now();
    check_output(output, options.overwrite)?;

    let input_owned = input.to_path_buf();
    let read_options = options.read.clone();
    let (reader, scan) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut reader = readers::open(&input_owned, &read_options)?;
        let layout = reader.layout().clone();
        tracing::info!(
            event = "input.opened",
            input = %input_owned.display(),
            n_cells = layout.n_cells,
            n_genes = layout.n_genes,
            matrix = %layout.matrix_encoding,
            "opened input"
        );
        let scan = reader.scan()?;
        Ok((reader, scan))
    })
    .await
    .map_err(|e| Error::Internal(format!("reader thread: {e}")))??;

    let layout = reader.layout().clone();
    let ids = expression_id_types(options.id_types, layout.n_cells, layout.n_genes);
    tracing::info!(
        event = "input.scanned",
        expression_rows = scan.total_rows(),
        value_type = ?scan.value_type,
        cell_id_type = %ids.cell,
        gene_id_type = %ids.gene,
        "scanned matrix"
    );

    let value_type = scan.value_type;
    replace_output(output, options.overwrite)?;
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let string_columns = |schema: arrow::datatypes::SchemaRef, rows: u64| -> Vec<String> {
        if rows > 0 {
            return Vec::new();
        }
        schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &arrow::datatypes::DataType::Utf8)
            .map(|f| f.name().clone())
            .collect()
    };
    let empty_obs_strings = string_columns(cells_schema(reader.obs_fields()), layout.n_cells);
    let empty_var_strings = string_columns(genes_schema(reader.var_fields()), layout.n_genes);
    let parts = reader.parts().clone();
    let (stats, fragments) = match write_tables(output, reader, scan, &ids, options.chunk_size)
        .await
    {
        Ok(done) => done,
        Err(e) => {
            // We created this directory and it has no config.json: remove it so a rerun
            // starts clean instead of tripping over "output exists".
            if let Err(cleanup) = std::fs::remove_dir_all(output) {
                tracing::warn!(event = "convert.cleanup_failed", output = %output.display(), error = %cleanup, "could not remove partial output");
            }
            return Err(e);
        }
    };

    let summary = DatasetSummary {
        n_cells: layout.n_cells,
        n_genes: layout.n_genes,
        stats,
        compact_ids: ids.gene == arrow::datatypes::DataType::UInt16,
        empty_obs_strings,
        empty_var_strings,
        parts,
    };
    let created_at = chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    write_config(output, &config_document(&summary, &created_at))?;
    tracing::info!(
        event = "convert.done",
        output = %output.display(),
        n_cells = summary.n_cells,
        n_genes = summary.n_genes,
        expression_rows = summary.stats.count,
        fragments,
        seconds = started.elapsed().as_secs_f64(),
        "conversion finished"
    );
    Ok(ConvertReport {
        output: output.to_path_buf(),
        summary,
        value_type,
        expression_fragments: fragments,
    })
}

/// Steps 3 and 4: write and commit every table (and uns.json); returns the value statistics
/// and the number of expression fragments.
async fn write_tables(
    output: &Path,
    reader: Box<dyn InputReader>,
    scan: MatrixScan,
    ids: &ExpressionIdTypes,
    chunk_size: u64,
) -> Result<(ValueStats, usize)> {
    let n_cells = reader.layout().n_cells;
    let parts = reader.parts().clone();
    let tables = CellTables::new(
        output,
        reader.obs_fields(),
        &parts,
        CellTablesProfile {
            value_type: scan.value_type,
            layer_types: scan.layer_types.clone(),
            ids: ids.clone(),
        },
    )?;
    let genes = TableWriter::new(&output.join(GENES_TABLE), genes_schema(reader.var_fields()))?;
    let (reader, var_batch, gene_ids) = blocking(move || {
        let mut reader = reader;
        let (var, names) = reader.genes()?;
        Ok((reader, var, names))
    })
    .await?;
    genes
        .write_all(vec![genes_batch(genes.schema(), &var_batch, &gene_ids)?])
        .await?;

    let (reader, written) = tables
        .write_range(reader, CellRange::new(0, n_cells), chunk_size, 0, 0)
        .await?;
    if written.stats.count != scan.total_rows() {
        return Err(Error::Internal(format!(
            "wrote {} expression rows, the scan counted {}",
            written.stats.count,
            scan.total_rows()
        )));
    }
    let fragments = written.expression.len();
    tables.expression().commit(written.expression).await?;
    tables.cells().commit(written.cells).await?;
    if let Some(l) = tables.layers() {
        l.commit(written.layers).await?;
    }

    let reader = write_pairwise(
        output,
        reader,
        Axis::Cells,
        &parts.obsp,
        &ids.cell,
        chunk_size,
    )
    .await?;
    let mut reader = write_pairwise(
        output,
        reader,
        Axis::Genes,
        &parts.varp,
        &ids.gene,
        chunk_size,
    )
    .await?;
    if let Some(uns) = blocking(move || reader.uns()).await? {
        write_json(output, UNS_FILE, &uns)?;
    }
    Ok((written.stats, fragments))
}

/// Run blocking reader work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("reader thread: {e}")))?
}

/// Write `cellsxcells.lance` or `genesxgenes.lance` from the pairwise keys of `axis`, a block
/// of `chunk_size` rows per fragment; returns the reader.
pub(crate) async fn write_pairwise(
    output: &Path,
    reader: Box<dyn InputReader>,
    axis: Axis,
    keys: &[String],
    id_type: &DataType,
    chunk_size: u64,
) -> Result<Box<dyn InputReader>> {
    if keys.is_empty() {
        return Ok(reader);
    }
    let (table, prefix, n) = match axis {
        Axis::Cells => (
            CELLSXCELLS_TABLE,
            "cell_integer_id",
            reader.layout().n_cells,
        ),
        Axis::Genes => (
            GENESXGENES_TABLE,
            "gene_integer_id",
            reader.layout().n_genes,
        ),
    };
    let writer = TableWriter::new(&output.join(table), pairwise_schema(prefix, id_type, keys))?;
    let mut reader = blocking(move || {
        let mut reader = reader;
        reader.prepare_pairwise(axis, chunk_size)?;
        Ok(reader)
    })
    .await?;
    let mut fragments = Vec::new();
    for rows in CellRange::new(0, n).split(chunk_size) {
        let (back, entries) = blocking(move || {
            let mut reader = reader;
            let entries = reader.read_pairwise(axis, rows)?;
            Ok((reader, entries))
        })
        .await?;
        reader = back;
        let batch = pairwise_batch(writer.schema(), id_type, rows.start, &entries)?;
        fragments.extend(writer.write_fragment(batch).await?);
    }
    writer.commit(fragments).await?;
    tracing::info!(
        event = "pairwise.written",
        table,
        keys = keys.len(),
        "wrote {table}"
    );
    Ok(reader)
}

fn check_output(output: &Path, overwrite: bool) -> Result<()> {
    if output.exists() && !overwrite {
        return Err(Error::OutputExists {
            path: output.to_path_buf(),
        });
    }
    Ok(())
}

/// With `--overwrite`, move the old output aside before deleting it, so a half-deleted tree
/// never sits under the output name looking valid.
fn replace_output(output: &Path, overwrite: bool) -> Result<()> {
    if !output.exists() {
        return Ok(());
    }
    check_output(output, overwrite)?;
    let mut doomed = output.as_os_str().to_owned();
    doomed.push(format!(".DELETING-{}", std::process::id()));
    let doomed = PathBuf::from(doomed);
    std::fs::rename(output, &doomed).map_err(|e| Error::io(output, e))?;
    let removed = if doomed.is_dir() {
        std::fs::remove_dir_all(&doomed)
    } else {
        std::fs::remove_file(&doomed)
    };
    removed.map_err(|e| Error::io(&doomed, e))
}
