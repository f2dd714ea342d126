//! Appending inputs to a complete dataset (manifest `mode: append`, `convert --append`):
//! reading what the dataset is ([`read_existing`]), and the commit that adds the new shards'
//! fragments to it ([`commit`]).
//!
//! Readers see the dataset as it was until the append is complete. The append is built in a
//! working directory beside the dataset (`NAME.slaf-convert-append`, ours by its tag):
//! `dataset/` there is a copy of the dataset (directories and small files copied, immutable
//! data files hard-linked, so it costs no data), made afresh by every commit; Lance's Append
//! transactions add the new fragments to it, `config.json` and the marker are rewritten in
//! it, and one `renameat2(RENAME_EXCHANGE)` swaps it with the dataset. `convert --append`
//! stages its shards in `shards/<plan hash>/` there, so a re-run keeps them. A kill before
//! the swap leaves the dataset as it was; after it, the re-run finds the dataset's marker
//! naming its plan and has nothing to do but remove the working directory.
//!
//! Commit checks, under the dataset's commit lock, that the dataset is still the one the
//! plan extends (its marker's plan and table versions): Lance would rebase one Append on
//! another, so the check is ours; a dataset that moved is exit 75, "plan again".
//! Expression and layers are never rewritten. `cells.lance` is rewritten once, when a
//! single-input dataset gets its `source_file` column; `genes.lance` (small) when
//! `genes: union` adds genes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Schema, SchemaRef};
use futures::TryStreamExt;
use lance::table::format::Fragment;

use super::state::{
    adopt, clean_tables, exchange, record_committed_plan, CommitLock, COMMITTED_PLAN_FILE,
};
use crate::columns;
use crate::error::{Error, Result};
use crate::slaf::config_json::{write_config, CONFIG_FILE};
use crate::slaf::schema::{
    expression_schema, layers_schema, CELLS_TABLE, EXPRESSION_TABLE, GENES_TABLE, LAYERS_TABLE,
};
use crate::slaf::tables::genes_batch;
use crate::slaf::writer::TableWriter;
use crate::workflow::commit::receipts::collect as collect_receipts;
use crate::workflow::commit::{
    config_for, read_marker, table_schemas, write_marker, CompletionMarker, Located, MARKER_FILE,
};
use crate::workflow::manifest::check_output_apart;
use crate::workflow::plan::append::{AppendBase, Existing};
use crate::workflow::plan::{Plan, PlannedColumn};
use crate::workflow::shard::{Receipt, SHARED_RECEIPTS_DIR};

/// Suffix of the working copy an append is built in, beside the dataset.
pub const WORK_SUFFIX: &str = ".slaf-convert-append";
/// File that marks a working directory as ours (removed with it).
const WORK_TAG: &str = ".slaf-convert-append";
/// The copy of the dataset inside the working directory.
const COPY_DIR: &str = "dataset";
/// `convert --append`'s staged shards inside the working directory.
const SHARDS_DIR: &str = "shards";

/// The working copy of `dataset` an append builds in.
pub fn work_dir(dataset: &Path) -> PathBuf {
    let mut name = dataset.as_os_str().to_owned();
    name.push(WORK_SUFFIX);
    PathBuf::from(name)
}

/// Open the complete dataset at `dataset` for appending: its marker's record, and its genes
/// with their var columns.
pub async fn read_existing(dataset: &Path) -> Result<Existing> {
    let not_appendable = |what: &str| Error::OutputNotOurs {
        path: dataset.to_path_buf(),
        what: what.to_string(),
    };
    if !dataset.is_dir() {
        return Err(Error::InputMissing {
            path: dataset.to_path_buf(),
            what: "no dataset here to append to".into(),
        });
    }
    let marker = read_marker(dataset)?.ok_or_else(|| {
        not_appendable("is not a complete dataset of slaf-convert's (no completion marker): nothing to append to; finish the conversion that made it first")
    })?;
    let record = marker.dataset.clone().ok_or_else(|| {
        not_appendable("its marker does not record what an append needs (written by an earlier slaf-convert): convert it again")
    })?;
    let dir = dataset.join(GENES_TABLE);
    let table = crate::store::lance::open_dataset(&dir.to_string_lossy())
        .await
        .map_err(|e| Error::lance(&dir, e))?;
    let batches: Vec<RecordBatch> = table
        .scan()
        .try_into_stream()
        .await
        .map_err(|e| Error::lance(&dir, e))?
        .try_collect()
        .await
        .map_err(|e| Error::lance(&dir, e))?;
    let schema: Schema = table.schema().into();
    let all = arrow::compute::concat_batches(&Arc::new(schema), &batches)
        .map_err(|e| Error::Internal(format!("genes table: {e}")))?;
    let bad = |what: String| Error::invalid(&dir, what);
    let ids = all
        .column_by_name(columns::GENE_ID)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| bad(format!("no utf8 column {}", columns::GENE_ID)))?;
    let genes: Vec<String> = (0..ids.len())
        .map(|i| ids.is_valid(i).then(|| ids.value(i).to_string()))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("a null {}", columns::GENE_ID)))?;
    if genes.len() as u64 != marker.n_genes {
        return Err(bad(format!(
            "{} genes where the marker says {}",
            genes.len(),
            marker.n_genes
        )));
    }
    let var = var_columns(&all, &record.var_columns).map_err(|e| bad(e.to_string()))?;
    let dataset = std::path::absolute(dataset).map_err(|e| Error::io(dataset, e))?;
    Ok(Existing {
        base: AppendBase {
            dataset,
            plan_hash: marker.plan_hash,
            tables: marker.tables,
            n_cells: marker.n_cells,
            n_genes: marker.n_genes,
            expression_rows: marker.expression_rows,
            inputs: marker.inputs,
            record,
        },
        genes,
        var,
    })
}

/// The var columns of the genes table `all`, as the record types them.
fn var_columns(all: &RecordBatch, planned: &[PlannedColumn]) -> Result<RecordBatch> {
    let fields = PlannedColumn::fields(planned)?;
    let mut arrays = Vec::with_capacity(fields.len());
    for f in &fields {
        let column = all
            .column_by_name(f.name())
            .ok_or_else(|| Error::Internal(format!("no var column {}", f.name())))?;
        arrays.push(
            arrow::compute::cast(column, f.data_type())
                .map_err(|e| Error::Internal(format!("var column {}: {e}", f.name())))?,
        );
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(all.num_rows())),
    )
    .map_err(|e| Error::Internal(format!("var columns: {e}")))
}

/// Commit the append `plan` onto `base.dataset`, from the receipts found in `sources`.
pub(crate) async fn commit(
    plan: &Plan,
    base: &AppendBase,
    sources: &[PathBuf],
    started: Instant,
) -> Result<CompletionMarker> {
    let live = &base.dataset;
    check_output_apart(live, plan.inputs.iter().map(|i| i.path.as_path()))?;
    let _lock = CommitLock::acquire(live).await?;
    let work = work_dir(live);
    match read_marker(live)? {
        Some(m) if m.plan_hash == plan.plan_hash => {
            // Appended; a kill after the swap may have left the replaced dataset beside it.
            remove_work_dir(&work)?;
            tracing::info!(event = "commit.done", "already appended: nothing to do");
            return Ok(m);
        }
        Some(m) if m.plan_hash == base.plan_hash && m.tables == base.tables => {}
        found => {
            let now = found.map_or("no completion marker".to_string(), |m| {
                format!("plan {} (tables {:?})", m.plan_hash, m.tables)
            });
            return Err(Error::DatasetMoved {
                path: live.clone(),
                what: format!(
                    "changed since the append was planned: it holds {now}, the append extends plan {} (tables {:?}); plan the append again",
                    base.plan_hash, base.tables
                ),
            });
        }
    }
    let receipts = collect_receipts(plan, sources)?;
    if let Some(r) = receipts.iter().find(|r| r.receipt.profile.is_some()) {
        let input = &plan.inputs[plan.shard(r.receipt.shard)?.input];
        return Err(Error::IncompatibleInputs {
            path: input.path.clone(),
            what: format!(
                "holds values that {} cannot store as uint16 (an append never rewrites stored values)",
                live.display()
            ),
        });
    }
    // A fresh copy every time: one a killed commit left may hold some of its transactions.
    let building = make_copy(live, &work)?;
    for r in &receipts {
        if let Some(dir) = &r.staged_dir {
            adopt(dir, &building, &r.receipt)?;
        }
    }
    let plan_there = Plan {
        output: building.clone(),
        ..plan.clone()
    };
    let (cells_schema, genes_schema) = table_schemas(&plan_there)?;
    append_tables(&plan_there, base, &receipts, &cells_schema, &genes_schema).await?;
    if plan.indices {
        crate::slaf::indices::create_indices(&building).await?;
    }
    clean_tables(&building, &plan.plan_hash).await?;
    record_committed_plan(&building, &plan.plan_hash)?;
    write_config(
        &building,
        &config_for(&plan_there, &receipts, &cells_schema, &genes_schema),
    )?;
    let new_rows: u64 = receipts.iter().map(|r| r.receipt.rows_written).sum();
    let marker = write_marker(
        &plan_there,
        &receipts,
        base.expression_rows + new_rows,
        started,
    )
    .await?;
    // The one step readers see: the dataset with the new cells replaces the old.
    exchange(&building, live)?;
    std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    tracing::info!(event = "append.done", output = %live.display(), n_cells = plan.n_cells, added_cells = plan.n_cells - base.n_cells, "appended {} cells to {}", plan.n_cells - base.n_cells, live.display());
    Ok(marker)
}

/// Add the receipts' fragments to the tables of the working copy `plan.output`.
async fn append_tables(
    plan: &Plan,
    base: &AppendBase,
    receipts: &[Located],
    cells_schema: &SchemaRef,
    genes_schema: &SchemaRef,
) -> Result<()> {
    let output = &plan.output;
    let concat = |pick: fn(&Receipt) -> &Vec<Fragment>| -> Vec<Fragment> {
        receipts
            .iter()
            .flat_map(|r| pick(&r.receipt).iter().cloned())
            .collect()
    };
    let p = &plan.profile;
    TableWriter::new(
        &output.join(EXPRESSION_TABLE),
        expression_schema(p.ids.clone(), p.value_type, p.compression),
    )?
    .append(concat(|r| &r.expression))
    .await?;
    if !plan.parts.layers.is_empty() {
        TableWriter::new(
            &output.join(LAYERS_TABLE),
            layers_schema(&p.ids, &plan.parts.layers, &p.layer_types, p.compression),
        )?
        .append(concat(|r| &r.layers))
        .await?;
    }
    let cells = TableWriter::new(&output.join(CELLS_TABLE), cells_schema.clone())?;
    if base.record.source_file_column {
        cells.append(concat(|r| &r.cells)).await?;
    } else {
        // A single input's cells get its name, as a conversion of several inputs gives them.
        let name =
            (base.record.source_files.first()).map_or(String::new(), |s| s.file_name.clone());
        let mut fragments = with_source_file(&cells, &name, plan.chunk_size).await?;
        fragments.extend(concat(|r| &r.cells));
        cells.commit(fragments).await?;
    }
    if plan.n_genes != base.n_genes {
        let genes = TableWriter::new(&output.join(GENES_TABLE), genes_schema.clone())?;
        let var = plan.var_batch(output)?;
        genes
            .replace_all(genes_batch(genes.schema(), &var, &plan.genes)?)
            .await?;
    }
    Ok(())
}

/// The rows of the cells table `cells` (which has no `source_file` column) rewritten as
/// uncommitted fragments of at most `chunk_size` rows with `source_file` = `name`.
async fn with_source_file(
    cells: &TableWriter,
    name: &str,
    chunk_size: u64,
) -> Result<Vec<Fragment>> {
    let dir = cells.dir().to_path_buf();
    let table = crate::store::lance::open_dataset(&dir.to_string_lossy())
        .await
        .map_err(|e| Error::lance(&dir, e))?;
    let mut scan = table.scan();
    scan.batch_size(chunk_size.clamp(1, 1 << 20) as usize);
    let mut stream = scan
        .try_into_stream()
        .await
        .map_err(|e| Error::lance(&dir, e))?;
    let schema = cells.schema().clone();
    let mut fragments = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(|e| Error::lance(&dir, e))? {
        let rows = batch.num_rows();
        let mut arrays = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let array = match f.name().as_str() {
                columns::SOURCE_FILE => Arc::new(StringArray::from_iter_values(
                    std::iter::repeat_n(name, rows),
                )) as arrow::array::ArrayRef,
                other => {
                    let column = batch
                        .column_by_name(other)
                        .ok_or_else(|| Error::invalid(&dir, format!("no column {other}")))?;
                    arrow::compute::cast(column, f.data_type())
                        .map_err(|e| Error::Internal(format!("cells column {other}: {e}")))?
                }
            };
            arrays.push(array);
        }
        let rewritten = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| Error::Internal(format!("cells with source_file: {e}")))?;
        fragments.extend(cells.write_fragment(rewritten).await?);
    }
    Ok(fragments)
}

/// The working directory `work` (created and tagged if new: ours to remove), with a fresh
/// copy of the dataset `live` in it to append in: directories and small files copied,
/// immutable data files (Lance's `data/`, `_indices/`, `_deletions/`) hard-linked; without
/// its marker, commit record, config and receipts. Returns the copy.
pub(crate) fn make_copy(live: &Path, work: &Path) -> Result<PathBuf> {
    make_work_dir(work)?;
    let copy = work.join(COPY_DIR);
    if copy.exists() {
        std::fs::remove_dir_all(&copy).map_err(|e| Error::io(&copy, e))?;
    }
    std::fs::create_dir(&copy).map_err(|e| Error::io(&copy, e))?;
    // The lock file is copied (empty): the dataset keeps one after the swap, so a later
    // commit that fails leaves no new file behind.
    let skip = [
        MARKER_FILE,
        COMMITTED_PLAN_FILE,
        SHARED_RECEIPTS_DIR,
        CONFIG_FILE,
    ];
    for entry in std::fs::read_dir(live).map_err(|e| Error::io(live, e))? {
        let entry = entry.map_err(|e| Error::io(live, e))?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        copy_tree(&entry.path(), &copy.join(&name), false)?;
    }
    Ok(copy)
}

/// Create the working directory `work` and its tag, or find it ours; anything else there is
/// refused.
pub(crate) fn make_work_dir(work: &Path) -> Result<()> {
    if work.exists() && !work.join(WORK_TAG).is_file() {
        return Err(Error::OutputNotOurs {
            path: work.to_path_buf(),
            what: "an append builds here, and it holds something else: move it away".into(),
        });
    }
    std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
    let tag = work.join(WORK_TAG);
    if !tag.exists() {
        std::fs::write(
            &tag,
            b"slaf-convert append in progress: removed when it ends\n",
        )
        .map_err(|e| Error::io(&tag, e))?;
    }
    Ok(())
}

/// Where `convert --append` stages shard `index` of plan `plan_hash`.
pub fn staged_shard_dir(work: &Path, plan_hash: &str, index: usize) -> PathBuf {
    work.join(SHARDS_DIR)
        .join(plan_hash)
        .join(format!("shard-{index:06}"))
}

/// Copy `from` to `to`: directories recursively, files under an immutable Lance directory
/// (`immutable`) linked, others copied.
fn copy_tree(from: &Path, to: &Path, immutable: bool) -> Result<()> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from, e))?;
    if meta.is_dir() {
        std::fs::create_dir(to).map_err(|e| Error::io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let entry = entry.map_err(|e| Error::io(from, e))?;
            let name = entry.file_name();
            let linked = immutable
                || ["data", "_indices", "_deletions"]
                    .iter()
                    .any(|d| name == *d);
            copy_tree(&entry.path(), &to.join(&name), linked)?;
        }
        return Ok(());
    }
    if immutable && std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    Ok(())
}

/// Remove the working directory `work` if it is ours (tagged).
pub(crate) fn remove_work_dir(work: &Path) -> Result<()> {
    if work.join(WORK_TAG).is_file() {
        std::fs::remove_dir_all(work).map_err(|e| Error::io(work, e))?;
    }
    Ok(())
}

/// Whether `contents` (the inputs' content fingerprints, in order) are the last inputs
/// `existing`'s marker lists, after others: the append they ask for is done (a retry after
/// the swap). Inputs that are the whole dataset were converted, not appended: refused later.
pub fn already_appended(existing: &Existing, contents: &[String]) -> bool {
    let inputs = &existing.base.inputs;
    contents.len() < inputs.len()
        && inputs[inputs.len() - contents.len()..]
            .iter()
            .zip(contents)
            .all(|(i, c)| i.content.as_deref() == Some(c.as_str()))
}
