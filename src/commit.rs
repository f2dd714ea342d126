//! `commit`: check every shard's receipt, adopt staged data files, commit each table in one
//! Lance transaction in shard order, write genes, the small tables, `config.json`, and last
//! the completion marker.
//!
//! Idempotent: on a dataset whose marker names this plan it does nothing; on a committed
//! dataset whose marker was deleted (Snakemake removes outputs before a forced re-run) it
//! re-checks the tables against the receipts and rewrites the marker only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, FieldRef, Schema};
use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config_json::{
    config_document, write_config, write_json, DatasetSummary, MultiFile, ValueStats,
    CELLSXCELLS_TABLE, CONFIG_FILE, GENESXGENES_TABLE, LAYERS_TABLE, UNS_FILE,
};
use crate::error::{Error, Result};
use crate::pipeline::{blocking, CELLS_TABLE, EXPRESSION_TABLE, GENES_TABLE};
use crate::plan::{Plan, PlannedColumn};
use crate::readers::{self, Axis, CellRange, InputReader};
use crate::schema::{
    cells_schema, expression_schema, genes_schema, layers_schema, pairwise_schema,
};
use crate::shard::{Placement, Receipt, RECEIPT_FILE, SHARED_RECEIPTS_DIR};
use crate::tables::{genes_batch, pairwise_batch, project_columns};
use crate::writer::TableWriter;

/// The completion marker's file name: its presence means the dataset is complete.
pub const MARKER_FILE: &str = "_SLAF_COMPLETE.json";

/// The completion marker.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompletionMarker {
    /// "slaf-convert".
    pub tool: String,
    /// Its version.
    pub tool_version: String,
    /// The plan committed.
    pub plan_hash: String,
    /// Inputs with their sizes and modification times (seconds since the epoch).
    pub inputs: Vec<MarkerInput>,
    /// Lance version of each committed table.
    pub tables: BTreeMap<String, u64>,
    /// Cells.
    pub n_cells: u64,
    /// Genes.
    pub n_genes: u64,
    /// Expression rows.
    pub expression_rows: u64,
    /// Seconds the commit took.
    pub seconds: f64,
}

/// An input as the marker records it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MarkerInput {
    /// Path.
    pub path: PathBuf,
    /// Size in bytes (a directory: the sum of its files).
    pub bytes: u64,
    /// Modification time, seconds since the epoch.
    pub modified: u64,
}

/// A receipt and the directory its staged files are in now.
struct Located {
    receipt: Receipt,
    staged_dir: Option<PathBuf>,
}

/// Commit `plan` from the receipts found in `sources` (staged shard directories or receipt
/// files; none: the shared-target receipts under the output).
pub async fn commit(plan: &Plan, sources: &[PathBuf]) -> Result<CompletionMarker> {
    // Every line the commit logs carries the plan hash.
    let span = tracing::info_span!("commit", plan_hash = %plan.plan_hash);
    commit_in_span(plan, sources).instrument(span).await
}

async fn commit_in_span(plan: &Plan, sources: &[PathBuf]) -> Result<CompletionMarker> {
    let started = Instant::now();
    let output = &plan.output;
    let marker_path = output.join(MARKER_FILE);
    if marker_path.exists() {
        let text = std::fs::read_to_string(&marker_path).map_err(|e| Error::io(&marker_path, e))?;
        let marker: CompletionMarker = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(&marker_path, format!("unreadable marker: {e}")))?;
        if marker.plan_hash == plan.plan_hash {
            tracing::info!(event = "commit.done", "already committed: nothing to do");
            return Ok(marker);
        }
        return Err(Error::OutputExists {
            path: output.clone(),
        });
    }
    let receipts = collect(plan, sources)?;
    let rows: u64 = receipts.iter().map(|r| r.receipt.rows_written).sum();
    if output.join(CONFIG_FILE).exists() {
        // Committed before; only the marker is missing. Check, then rewrite it.
        let counted = count_rows(&output.join(EXPRESSION_TABLE)).await?;
        if counted != rows {
            return Err(Error::Receipts {
                path: output.clone(),
                what: format!("expression.lance has {counted} rows but the receipts say {rows}"),
            });
        }
        // A shard re-run after the commit (its receipt was deleted) left files nothing uses.
        remove_orphans(output).await?;
        return write_marker(plan, rows, started).await;
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    for r in &receipts {
        if let Some(dir) = &r.staged_dir {
            adopt(dir, output, &r.receipt)?;
        }
    }
    let concat = |pick: fn(&Receipt) -> &Vec<Fragment>| -> Vec<Fragment> {
        receipts
            .iter()
            .flat_map(|r| pick(&r.receipt).iter().cloned())
            .collect()
    };

    let p = &plan.profile;
    let obs_fields = PlannedColumn::fields(&plan.obs_columns)?;
    let var_fields = PlannedColumn::fields(&plan.var_columns)?;
    let expression = TableWriter::new(
        &output.join(EXPRESSION_TABLE),
        expression_schema(p.ids.clone(), p.value_type, p.compression),
    )?;
    let cells = TableWriter::new(
        &output.join(CELLS_TABLE),
        cells_schema(&obs_fields, plan.is_multi_file()),
    )?;
    expression.commit(concat(|r| &r.expression)).await?;
    cells.commit(concat(|r| &r.cells)).await?;
    if !plan.parts.layers.is_empty() {
        let layers = TableWriter::new(
            &output.join(LAYERS_TABLE),
            layers_schema(&p.ids, &plan.parts.layers, &p.layer_types, p.compression),
        )?;
        layers.commit(concat(|r| &r.layers)).await?;
    }
    let genes = TableWriter::new(&output.join(GENES_TABLE), genes_schema(&var_fields))?;
    let genes_plan = plan.clone();
    let (reader, var) = blocking(move || dataset_var(&genes_plan)).await?;
    genes
        .write_all(vec![genes_batch(genes.schema(), &var, &plan.genes)?])
        .await?;
    let parts = plan.parts.clone();
    let reader = write_pairwise(
        output,
        reader,
        Axis::Cells,
        &parts.obsp,
        &p.ids.cell,
        plan.chunk_size,
    )
    .await?;
    let mut reader = write_pairwise(
        output,
        reader,
        Axis::Genes,
        &parts.varp,
        &p.ids.gene,
        plan.chunk_size,
    )
    .await?;
    if plan.uns {
        if let Some(uns) = blocking(move || reader.uns()).await? {
            write_json(output, UNS_FILE, &uns)?;
        }
    }
    remove_orphans(output).await?;

    let mut stats = ValueStats::default();
    for r in &receipts {
        if let Some(s) = &r.receipt.stats {
            stats.merge(s);
        }
    }
    let strings = |fields: &[arrow::datatypes::Field],
                   rows: u64,
                   schema: &dyn Fn(&[arrow::datatypes::Field]) -> arrow::datatypes::SchemaRef|
     -> Vec<String> {
        if rows > 0 {
            return Vec::new();
        }
        schema(fields)
            .fields()
            .iter()
            .filter(|f| f.data_type() == &arrow::datatypes::DataType::Utf8)
            .map(|f| f.name().clone())
            .collect()
    };
    let summary = DatasetSummary {
        n_cells: plan.n_cells,
        n_genes: plan.n_genes,
        stats,
        compact_ids: p.ids.gene == arrow::datatypes::DataType::UInt16,
        empty_obs_strings: strings(&obs_fields, plan.n_cells, &|f| {
            cells_schema(f, plan.is_multi_file())
        }),
        empty_var_strings: strings(&var_fields, plan.n_genes, &genes_schema),
        parts,
        multi_file: plan.is_multi_file().then(|| MultiFile::of(plan)),
    };
    let created_at = chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    write_config(output, &config_document(&summary, &created_at))?;
    write_marker(plan, rows, started).await
}

/// The first input's reader (for obsp/varp/uns) and the var columns of the dataset's genes:
/// each gene's row from the first input that has it, in dataset order.
fn dataset_var(plan: &Plan) -> Result<(Box<dyn InputReader>, RecordBatch)> {
    let var_fields: Vec<FieldRef> = PlannedColumn::fields(&plan.var_columns)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let schema = Arc::new(Schema::new(var_fields.clone()));
    let mut first: Option<Box<dyn InputReader>> = None;
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows: Vec<Option<(usize, usize)>> = vec![None; plan.genes.len()];
    let index: HashMap<&str, usize> = plan
        .genes
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let mut missing = plan.genes.len();
    for input in &plan.inputs {
        if missing == 0 {
            break;
        }
        let mut reader = readers::open(&input.path, &input.read)?;
        let (var, names) = reader.genes()?;
        let columns = project_columns(&var, &var_fields)
            .map_err(|e| Error::invalid(&input.path, e.to_string()))?;
        let projected = RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(var.num_rows())),
        )
        .map_err(|e| Error::Internal(format!("var batch: {e}")))?;
        // Positions first: the first input's genes lead the dataset's, duplicates included
        // (10x gene symbols repeat); other inputs are matched by (unique) name.
        let positional = plan.genes.starts_with(&names);
        for (local, name) in names.iter().enumerate() {
            let g = if positional {
                Some(local)
            } else {
                index.get(name.as_str()).copied()
            };
            if let Some(g) = g.filter(|&g| rows[g].is_none()) {
                rows[g] = Some((batches.len(), local));
                missing -= 1;
            }
        }
        batches.push(projected);
        if first.is_none() {
            first = Some(reader);
        }
    }
    let first = first.ok_or_else(|| Error::Internal("plan without inputs".into()))?;
    let picks: Vec<(usize, usize)> = rows
        .into_iter()
        .enumerate()
        .map(|(g, r)| {
            r.ok_or_else(|| Error::Internal(format!("gene '{}' is in no input", plan.genes[g])))
        })
        .collect::<Result<_>>()?;
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrow::compute::interleave(&arrays, &picks)
                .map_err(|e| Error::Internal(format!("var column: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let var = RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(picks.len())),
    )
    .map_err(|e| Error::Internal(format!("var batch: {e}")))?;
    Ok((first, var))
}

/// Find, load and check every shard's receipt.
fn collect(plan: &Plan, sources: &[PathBuf]) -> Result<Vec<Located>> {
    let mut files: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if sources.is_empty() {
        let dir = plan.output.join(SHARED_RECEIPTS_DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    files.push((e.path(), None));
                }
            }
        }
    }
    for s in sources {
        if s.is_dir() {
            files.push((s.join(RECEIPT_FILE), Some(s.clone())));
        } else {
            files.push((s.clone(), s.parent().map(Path::to_path_buf)));
        }
    }
    let mut by_index: BTreeMap<usize, Located> = BTreeMap::new();
    for (file, dir) in files {
        let receipt = Receipt::load(&file)?;
        if receipt.plan_hash != plan.plan_hash {
            return Err(Error::Receipts {
                path: file,
                what: format!(
                    "belongs to plan {}, not {}",
                    receipt.plan_hash, plan.plan_hash
                ),
            });
        }
        let shard = plan
            .shards
            .get(receipt.shard)
            .ok_or_else(|| Error::Receipts {
                path: file.clone(),
                what: format!("shard {} is not in the plan", receipt.shard),
            })?;
        if receipt.rows_written != shard.rows {
            return Err(Error::Receipts {
                path: file,
                what: format!(
                    "shard {} wrote {} rows, the plan expects {}",
                    receipt.shard, receipt.rows_written, shard.rows
                ),
            });
        }
        let staged_dir = match receipt.placement {
            Placement::Staged { .. } => dir,
            Placement::SharedTarget | Placement::Discard => None,
        };
        if by_index
            .insert(
                receipt.shard,
                Located {
                    receipt,
                    staged_dir,
                },
            )
            .is_some()
        {
            return Err(Error::Receipts {
                path: file,
                what: "two receipts for the same shard".into(),
            });
        }
    }
    let missing: Vec<usize> = (0..plan.shards.len())
        .filter(|i| !by_index.contains_key(i))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Receipts {
            path: plan.output.clone(),
            what: format!(
                "missing receipts for shards {missing:?} of {}",
                plan.shards.len()
            ),
        });
    }
    Ok(by_index.into_values().collect())
}

/// Move (or link, or copy) a staged shard's data files into the output's tables.
fn adopt(dir: &Path, output: &Path, receipt: &Receipt) -> Result<()> {
    for (table, fragments) in [
        (EXPRESSION_TABLE, &receipt.expression),
        (CELLS_TABLE, &receipt.cells),
        (LAYERS_TABLE, &receipt.layers),
    ] {
        if fragments.is_empty() {
            continue;
        }
        let target = output.join(table).join("data");
        std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        for file in fragments.iter().flat_map(|f| &f.files) {
            let src = dir.join(table).join("data").join(&file.path);
            let dst = target.join(&file.path);
            if dst.exists() {
                continue; // adopted by an earlier, interrupted commit
            }
            if std::fs::rename(&src, &dst).is_err() && std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).map_err(|e| Error::Receipts {
                    path: src.clone(),
                    what: format!("cannot adopt staged data file: {e}"),
                })?;
            }
        }
    }
    Ok(())
}

/// Delete data files no committed fragment references (left by killed shard attempts).
async fn remove_orphans(output: &Path) -> Result<()> {
    for table in [EXPRESSION_TABLE, CELLS_TABLE, LAYERS_TABLE] {
        let dir = output.join(table);
        if !dir.join("_versions").exists() {
            continue;
        }
        let ds = lance::Dataset::open(&dir.to_string_lossy())
            .await
            .map_err(|e| Error::lance(&dir, e))?;
        let used: HashSet<String> = ds
            .get_fragments()
            .iter()
            .flat_map(|f| f.metadata().files.iter().map(|d| d.path.clone()))
            .collect();
        let data = dir.join("data");
        if !data.exists() {
            continue;
        }
        for e in std::fs::read_dir(&data)
            .map_err(|e| Error::io(&data, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if !used.contains(&name) {
                tracing::info!(event = "commit.orphan_removed", file = %e.path().display(), "removing unreferenced data file");
                std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            }
        }
    }
    Ok(())
}

async fn count_rows(dir: &Path) -> Result<u64> {
    let ds = lance::Dataset::open(&dir.to_string_lossy())
        .await
        .map_err(|e| Error::lance(dir, e))?;
    Ok(ds
        .count_rows(None)
        .await
        .map_err(|e| Error::lance(dir, e))? as u64)
}

async fn write_marker(plan: &Plan, rows: u64, started: Instant) -> Result<CompletionMarker> {
    let output = &plan.output;
    let mut tables = BTreeMap::new();
    for table in [EXPRESSION_TABLE, CELLS_TABLE, GENES_TABLE, LAYERS_TABLE] {
        let dir = output.join(table);
        if dir.join("_versions").exists() {
            let ds = lance::Dataset::open(&dir.to_string_lossy())
                .await
                .map_err(|e| Error::lance(&dir, e))?;
            tables.insert(table.to_string(), ds.version().version);
        }
    }
    let marker = CompletionMarker {
        tool: "slaf-convert".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        plan_hash: plan.plan_hash.clone(),
        inputs: plan
            .inputs
            .iter()
            .map(|i| describe_input(&i.path))
            .collect(),
        tables,
        n_cells: plan.n_cells,
        n_genes: plan.n_genes,
        expression_rows: rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    // Last write of a conversion: its presence means complete.
    write_json(output, MARKER_FILE, &marker)?;
    tracing::info!(event = "commit.done", output = %output.display(), n_cells = plan.n_cells, expression_rows = rows, "committed {}", output.display());
    Ok(marker)
}

fn describe_input(path: &Path) -> MarkerInput {
    let meta = |p: &Path| std::fs::metadata(p).ok();
    let modified = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    };
    let (bytes, mtime) = match meta(path) {
        Some(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .fold((0, 0), |(b, t), m| (b + m.len(), t.max(modified(&m))))
            })
            .unwrap_or((0, 0)),
        Some(m) => (m.len(), modified(&m)),
        None => (0, 0),
    };
    MarkerInput {
        path: path.to_path_buf(),
        bytes,
        modified: mtime,
    }
}

/// Write `cellsxcells.lance` or `genesxgenes.lance` from the pairwise keys of `axis`, a block
/// of `chunk_size` rows per fragment; returns the reader.
async fn write_pairwise(
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
