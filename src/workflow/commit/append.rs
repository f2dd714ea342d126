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
//! Expression and layers are only appended to, unless `options.widen_stored_values` lets
//! new values turn their uint16 into float32 (then rewritten once). `cells.lance` is
//! rewritten once, when a single-input dataset gets its `source_file` column;
//! `genes.lance` (small) when `genes: union` adds genes.

mod work;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Schema, SchemaRef};
use futures::TryStreamExt;
use lance::table::format::Fragment;

pub use self::work::{abandon, staged_shard_dir, work_dir, WORK_SUFFIX};
pub(crate) use self::work::{make_copy, make_work_dir, release_work_dir};
use super::state::{adopt, exchange_at_once, CommitLock};
use crate::columns;
use crate::error::{Error, Result};
use crate::slaf::schema::{
    expression_schema, layers_schema, Pages, CELLS_TABLE, EXPRESSION_TABLE, GENES_TABLE,
    LAYERS_TABLE,
};
use crate::slaf::tables::genes_batch;
use crate::slaf::writer::TableWriter;
use crate::workflow::commit::receipts::collect as collect_receipts;
use crate::workflow::commit::widen::rewrite_table;
use crate::workflow::commit::{
    fragments_of, read_marker, seal, table_schemas, CompletionMarker, Located,
};
use crate::workflow::manifest::check_output_apart;
use crate::workflow::plan::append::{AppendBase, Existing};
use crate::workflow::plan::{Fingerprint, Plan, PlannedColumn};

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
    let all = crate::store::lance::open_table(&dir)
        .await?
        .scan()
        .try_into_batch()
        .await
        .map_err(|e| Error::lance(&dir, e))?;
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
    // The directory itself, not a link to it: the swap replaces what the path names.
    let dataset = dataset.canonicalize().map_err(|e| Error::io(dataset, e))?;
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
    if !live.is_dir() {
        return Err(Error::InputMissing {
            path: live.clone(),
            what: "the dataset to append to is gone".into(),
        });
    }
    let _lock = CommitLock::acquire(live).await?;
    let work = work_dir(live);
    match read_marker(live)? {
        Some(m) if m.plan_hash == plan.plan_hash => {
            // Appended; a kill after the swap may have left the replaced dataset beside it.
            release_work_dir(&work, &plan.plan_hash)?;
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
                "holds values that {} stores as uint16 and this plan did not widen: plan the append again",
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
    check_versions(&building, base).await?;
    let plan_there = Plan {
        output: building.clone(),
        ..plan.clone()
    };
    let (cells_schema, genes_schema) = table_schemas(&plan_there)?;
    append_tables(&plan_there, base, &receipts, &cells_schema, &genes_schema).await?;
    if plan.indices {
        crate::slaf::indices::create_indices(&building).await?;
    }
    let new_rows: u64 = receipts.iter().map(|r| r.receipt.rows_written).sum();
    let marker = seal(
        &plan_there,
        &receipts,
        (&cells_schema, &genes_schema),
        base.expression_rows + new_rows,
        started,
    )
    .await?;
    // The copy's lock file becomes the dataset's: held from before the swap until the
    // working directory is cleaned, so no commit starts in between.
    let _swapped_lock = CommitLock::acquire(&building).await?;
    // The one step readers see: the dataset with the new cells replaces the old. Two renames
    // would leave a moment without a dataset, which a kill could make permanent: refused
    // (make_copy checked the filesystem can).
    exchange_at_once(&building, live).map_err(|e| Error::OutputNotOurs {
        path: live.clone(),
        what: format!(
            "cannot swap in the appended dataset in one step ({e}): nothing was appended"
        ),
    })?;
    if let Err(e) = release_work_dir(&work, &plan.plan_hash) {
        tracing::warn!(event = "convert.cleanup_failed", output = %work.display(), error = %e, "appended; could not remove {}: {e}", work.display());
    }
    tracing::info!(event = "append.done", output = %live.display(), n_cells = plan.n_cells, added_cells = plan.n_cells - base.n_cells, "appended {} cells to {}", plan.n_cells - base.n_cells, live.display());
    Ok(marker)
}

/// Refuse a dataset whose tables moved past the versions its marker names (a Lance write
/// that left the marker alone): the append was planned against those versions.
async fn check_versions(copy: &Path, base: &AppendBase) -> Result<()> {
    for (table, &planned) in &base.tables {
        let dir = copy.join(table);
        let now = crate::store::lance::open_table(&dir)
            .await?
            .version()
            .version;
        if now != planned {
            return Err(Error::DatasetMoved {
                path: base.dataset.join(table),
                what: format!("at version {now}, where the append was planned against version {planned} (its marker's): plan the append again"),
            });
        }
    }
    Ok(())
}

/// Add the receipts' fragments to the tables of the working copy `plan.output`, whose
/// versions [`check_versions`] found the planned ones.
async fn append_tables(
    plan: &Plan,
    base: &AppendBase,
    receipts: &[Located],
    cells_schema: &SchemaRef,
    genes_schema: &SchemaRef,
) -> Result<()> {
    let output = &plan.output;
    let concat = |pick| fragments_of(receipts, pick);
    let p = &plan.profile;
    let stored = &base.record.profile;
    add_fragments(
        TableWriter::new(
            &output.join(EXPRESSION_TABLE),
            expression_schema(p.ids.clone(), p.value_type, p.compression),
        )?,
        concat(|r| &r.expression),
        (p.value_type != stored.value_type, p.pages),
    )
    .await?;
    if !plan.parts.layers.is_empty() {
        add_fragments(
            TableWriter::new(
                &output.join(LAYERS_TABLE),
                layers_schema(&p.ids, &plan.parts.layers, &p.layer_types, p.compression),
            )?,
            concat(|r| &r.layers),
            (p.layer_types != stored.layer_types, Pages::Lance),
        )
        .await?;
    }
    let cells = TableWriter::new(&output.join(CELLS_TABLE), cells_schema.clone())?;
    if base.record.source_file_column {
        cells.append(concat(|r| &r.cells)).await?;
    } else {
        // A single input's cells get its name, as a conversion of several inputs gives them.
        let name =
            (base.record.source_files.first()).map_or(String::new(), |s| s.file_name.clone());
        let mut fragments = with_source_file(&cells, &name, base.record.chunk_size).await?;
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

/// Add `fragments` to `table`: appended, or (`widen`: the table's stored
/// values are narrower than `table`'s schema, as `options.widen_stored_values` allows) after
/// the table's own fragments rewritten in its schema (`pages`), as one Overwrite.
async fn add_fragments(
    table: TableWriter,
    fragments: Vec<Fragment>,
    (widen, pages): (bool, Pages),
) -> Result<()> {
    if !widen {
        return table.append(fragments).await;
    }
    tracing::info!(event = "append.widened", table = %table.dir().display(), "rewriting {}'s stored values as float32", table.dir().display());
    let mut all = rewrite_table(table.dir(), table.schema(), pages).await?;
    all.extend(fragments);
    table.commit(all).await
}

/// The rows of the cells table `cells` (which has no `source_file` column) rewritten as
/// uncommitted fragments of at most `chunk_size` rows with `source_file` = `name`.
async fn with_source_file(
    cells: &TableWriter,
    name: &str,
    chunk_size: u64,
) -> Result<Vec<Fragment>> {
    let dir = cells.dir().to_path_buf();
    let table = crate::store::lance::open_table(&dir).await?;
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

/// Whether `inputs` (paths and fingerprints, in order) are the ones the dataset's last append
/// added, in the same order: the append they ask for is done (a retry after the swap).
/// Inputs a conversion took are not: appending them again is refused when planning.
pub fn already_appended(existing: &Existing, inputs: &[(PathBuf, Fingerprint)]) -> bool {
    let held = &existing.base.inputs;
    let added = existing.base.record.appended_inputs as usize;
    // An input in an object store is recorded by its URI and read here from a fetched copy:
    // its size and content fingerprint name it.
    let same_path = |a: &Path, b: &Path| {
        a == b
            || std::path::absolute(a).ok() == std::path::absolute(b).ok()
            || crate::location::store_uri(a.as_os_str()).is_some()
    };
    added == inputs.len()
        && added <= held.len()
        && held[held.len() - added..]
            .iter()
            .zip(inputs)
            .all(|(h, (path, f))| {
                same_path(&h.path, path)
                    && h.bytes == f.bytes
                    && h.content.as_deref() == Some(f.content.as_str())
            })
}
