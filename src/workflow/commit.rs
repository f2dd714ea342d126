//! `commit`: check every shard's receipt, adopt staged data files, widen the value type of
//! shards that wrote uint16 where another had to write float32 ([`widen`]), commit each table
//! in one Lance transaction in shard order, write genes, the small tables, the scalar indices
//! when the plan asks for them, `config.json`, and last the completion marker.
//!
//! Safe to repeat, kill and run twice at once ([`state`]): one commit of a dataset runs at a
//! time (a lock file); staged files are linked or copied, never moved, so the same staged
//! directories commit again; every table is written as a new Overwrite version, so a
//! re-run after a kill at any point completes the dataset. On a dataset whose marker names
//! this plan it does nothing; on one whose tables were committed from this plan but whose
//! marker is missing (Snakemake removes outputs before a forced re-run) it re-checks the
//! tables and rewrites the marker only; a dataset of another plan is rebuilt from this
//! plan's shards, and the marker always describes the tables beside it.
//!
//! A plan that appends to a complete dataset is committed by [`append`] instead: Append
//! transactions in a copy beside the dataset, swapped in whole.
//!
//! This is the commit of a local dataset; one in an object store is committed there by
//! [`crate::workflow::remote`], from the same receipts, widening and tables.

pub mod append;
pub(crate) mod receipts;
pub(crate) mod state;
pub(crate) mod widen;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::cells::Axis;
use crate::error::{Error, Result};
use crate::json_file::write_json;
use crate::pipeline::pairwise::{pairwise_table, pairwise_writer};
use crate::slaf::config_json::{
    config_document, write_config, ConfigJson, DatasetSummary, MultiFile, SourceFile, CONFIG_FILE,
    UNS_FILE,
};
use crate::slaf::schema::{
    cells_schema, expression_schema, genes_schema, layers_schema, CellTablesProfile, CELLS_TABLE,
    EXPRESSION_TABLE, GENES_TABLE, LAYERS_TABLE,
};
use crate::slaf::tables::genes_batch;
use crate::slaf::value_stats::ValueStats;
use crate::slaf::writer::TableWriter;
use crate::workflow::manifest::check_output_apart;
use crate::workflow::plan::append::DatasetRecord;
pub use crate::workflow::plan::append::MarkerInput;
use crate::workflow::plan::{Plan, PlannedColumn};
use crate::workflow::shard::Receipt;

pub(crate) use self::receipts::Located;
use self::receipts::{collect, tables_hold};
pub use self::state::COMMITTED_PLAN_FILE;
use self::state::{
    adopt, check_ours, clean_tables, committed_plan, record_committed_plan, remove_stale_parts,
    start_rebuild, CommitLock, ALL_TABLES,
};
pub use self::widen::recorded as recorded_widening;

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
    /// What the dataset holds, for a later append (types, columns, parts, inputs, value
    /// statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetRecord>,
}

/// The completion marker of the dataset `output`, if it has one.
pub fn read_marker(output: &Path) -> Result<Option<CompletionMarker>> {
    let path = output.join(MARKER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::invalid(&path, format!("unreadable marker: {e}")))
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
    if let Some(base) = &plan.append {
        return append::commit(plan, base, sources, started).await;
    }
    let output = &plan.output;
    check_output_apart(output, plan.inputs.iter().map(|i| i.path.as_path()))?;
    check_ours(output)?;
    let _lock = CommitLock::acquire(output).await?;
    if let Some(marker) = read_marker(output)? {
        if marker.plan_hash == plan.plan_hash {
            tracing::info!(event = "commit.done", "already committed: nothing to do");
            return Ok(marker);
        }
        tracing::info!(event = "commit.replan", previous_plan = %marker.plan_hash, "the dataset holds plan {}: rebuilding it from this plan's shards", marker.plan_hash);
    }
    let mut receipts = collect(plan, sources)?;
    let rows: u64 = receipts.iter().map(|r| r.receipt.rows_written).sum();
    if committed_plan(output).as_deref() == Some(plan.plan_hash.as_str())
        && output.join(CONFIG_FILE).exists()
        && tables_hold(output, &receipts).await?
    {
        // This plan's tables, made of these receipts' files, and its config are in place;
        // only the marker is missing. (A shard re-run since then has other files: rebuilt.)
        clean_tables(output, &plan.plan_hash).await?;
        // The types the tables hold (wider than the plan's where a shard widened).
        let plan = &with_profile(plan, widen::dataset_profile(plan, &receipts));
        return write_marker(plan, &receipts, rows, started).await;
    }
    start_rebuild(output)?;
    for r in &receipts {
        if let Some(dir) = &r.staged_dir {
            adopt(dir, output, &r.receipt)?;
        }
    }
    // The dataset's value types: wider than the plan's where a shard met a value the plan's
    // guess could not hold; the other shards' fragments are rewritten to match.
    let profile = widen::dataset_profile(plan, &receipts);
    widen::widen_receipts(plan, &profile, &mut receipts, widen::Records::Local(output)).await?;
    let plan = &with_profile(plan, profile);
    let (cells_schema, genes_schema) = table_schemas(plan)?;
    let written = commit_tables(plan, &receipts, &cells_schema, &genes_schema).await?;
    if plan.indices {
        crate::slaf::indices::create_indices(output).await?;
    }
    let uns_written = match &plan.uns_document {
        Some(uns) if plan.uns => {
            write_json(output, UNS_FILE, uns)?;
            true
        }
        _ => false,
    };
    remove_stale_parts(output, &written, uns_written)?;
    seal(
        plan,
        &receipts,
        (&cells_schema, &genes_schema),
        rows,
        started,
    )
    .await
}

/// The end of every local commit, in this order: each table left with its newest version
/// only, the record of the plan the tables hold, `config.json`, and last the marker
/// (`rows` expression rows in all).
pub(crate) async fn seal(
    plan: &Plan,
    receipts: &[Located],
    (cells_schema, genes_schema): (&Schema, &Schema),
    rows: u64,
    started: Instant,
) -> Result<CompletionMarker> {
    let output = &plan.output;
    clean_tables(output, &plan.plan_hash).await?;
    record_committed_plan(output, &plan.plan_hash)?;
    write_config(
        output,
        &config_for(plan, receipts, cells_schema, genes_schema),
    )?;
    write_marker(plan, receipts, rows, started).await
}

/// `plan` with the dataset's value types `profile` (wider than the plan's where a shard had
/// to widen).
pub(crate) fn with_profile(plan: &Plan, profile: CellTablesProfile) -> Cow<'_, Plan> {
    if profile == plan.profile {
        Cow::Borrowed(plan)
    } else {
        Cow::Owned(Plan {
            profile,
            ..plan.clone()
        })
    }
}

/// The cells and genes schemas, from the plan's columns: they serve the tables and the config.
pub(crate) fn table_schemas(plan: &Plan) -> Result<(SchemaRef, SchemaRef)> {
    Ok((
        cells_schema(
            &PlannedColumn::fields(&plan.obs_columns)?,
            plan.is_multi_file(),
        ),
        genes_schema(&PlannedColumn::fields(&plan.var_columns)?),
    ))
}

/// config.json of the dataset committed from `receipts`, created now.
pub(crate) fn config_for(
    plan: &Plan,
    receipts: &[Located],
    cells_schema: &Schema,
    genes_schema: &Schema,
) -> ConfigJson {
    let summary = dataset_summary(plan, receipts, cells_schema, genes_schema);
    let created_at = chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    config_document(&summary, &created_at)
}

/// One transaction per table over the receipts' fragments, in dataset order; the genes table
/// is written whole from the plan. The table directories written.
pub(crate) async fn commit_tables(
    plan: &Plan,
    receipts: &[Located],
    cells_schema: &SchemaRef,
    genes_schema: &SchemaRef,
) -> Result<Vec<&'static str>> {
    let output = &plan.output;
    let concat = |pick| fragments_of(receipts, pick);
    let p = &plan.profile;
    let mut written = vec![EXPRESSION_TABLE, CELLS_TABLE, GENES_TABLE];
    let expression = TableWriter::new(
        &output.join(EXPRESSION_TABLE),
        expression_schema(p.ids.clone(), p.value_type, p.compression),
    )?;
    let cells = TableWriter::new(&output.join(CELLS_TABLE), cells_schema.clone())?;
    expression.commit(concat(|r| &r.expression)).await?;
    cells.commit(concat(|r| &r.cells)).await?;
    if !plan.parts.layers.is_empty() {
        let layers = TableWriter::new(
            &output.join(LAYERS_TABLE),
            layers_schema(&p.ids, &plan.parts.layers, &p.layer_types, p.compression),
        )?;
        layers.commit(concat(|r| &r.layers)).await?;
        written.push(LAYERS_TABLE);
    }
    let genes = TableWriter::new(&output.join(GENES_TABLE), genes_schema.clone())?;
    let var = plan.var_batch(output)?;
    genes
        .replace_all(genes_batch(genes.schema(), &var, &plan.genes)?)
        .await?;
    for (axis, keys, id_type, pick) in [
        (
            Axis::Cells,
            &plan.parts.obsp,
            &p.ids.cell,
            (|r| &r.cellsxcells) as fn(&Receipt) -> &Vec<Fragment>,
        ),
        (Axis::Genes, &plan.parts.varp, &p.ids.gene, |r| {
            &r.genesxgenes
        }),
    ] {
        if keys.is_empty() {
            continue;
        }
        pairwise_writer(output, axis, keys, id_type)?
            .commit(concat(pick))
            .await?;
        written.push(pairwise_table(axis).0);
    }
    Ok(written)
}

/// One table's fragments of every receipt (`pick`), in receipt (= dataset) order.
pub(crate) fn fragments_of(
    receipts: &[Located],
    pick: fn(&Receipt) -> &Vec<Fragment>,
) -> Vec<Fragment> {
    receipts
        .iter()
        .flat_map(|r| pick(&r.receipt).iter().cloned())
        .collect()
}

/// What config.json says of the committed dataset: counts, the value statistics merged
/// fragment by fragment in dataset order (the same bits however the cells were sharded).
fn dataset_summary(
    plan: &Plan,
    receipts: &[Located],
    cells_schema: &Schema,
    genes_schema: &Schema,
) -> DatasetSummary {
    DatasetSummary {
        n_cells: plan.n_cells,
        n_genes: plan.n_genes,
        stats: dataset_stats(plan, receipts),
        compact_ids: plan.profile.ids.gene == DataType::UInt16,
        empty_obs_strings: empty_table_strings(cells_schema, plan.n_cells),
        empty_var_strings: empty_table_strings(genes_schema, plan.n_genes),
        parts: dataset_parts(plan).clone(),
        multi_file: plan.is_multi_file().then(|| multi_file(plan)),
    }
}

/// The string columns of a table with no rows (see [`DatasetSummary::empty_obs_strings`]).
fn empty_table_strings(schema: &Schema, rows: u64) -> Vec<String> {
    if rows > 0 {
        return Vec::new();
    }
    schema
        .fields()
        .iter()
        .filter(|f| f.data_type() == &DataType::Utf8)
        .map(|f| f.name().clone())
        .collect()
}

/// Write the completion marker of `plan`'s dataset (`rows` expression rows in all), last.
async fn write_marker(
    plan: &Plan,
    receipts: &[Located],
    rows: u64,
    started: Instant,
) -> Result<CompletionMarker> {
    let output = &plan.output;
    let present = ALL_TABLES
        .into_iter()
        .filter(|t| output.join(t).join("_versions").exists());
    let marker = marker_for(plan, receipts, rows, started, present).await?;
    // Last write of a conversion: its presence means complete.
    write_json(output, MARKER_FILE, &marker)?;
    tracing::info!(event = "commit.done", output = %output.display(), n_cells = plan.n_cells, expression_rows = rows, "committed {}", output.display());
    Ok(marker)
}

/// The completion marker of `plan`'s dataset, with the version of each of `tables`.
pub(crate) async fn marker_for(
    plan: &Plan,
    receipts: &[Located],
    rows: u64,
    started: Instant,
    tables: impl Iterator<Item = &'static str>,
) -> Result<CompletionMarker> {
    let mut versions = BTreeMap::new();
    for table in tables {
        let dir = plan.output.join(table);
        let ds = crate::store::lance::open_table(&dir).await?;
        versions.insert(table.to_string(), ds.version().version);
    }
    Ok(CompletionMarker {
        tool: "slaf-convert".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        plan_hash: plan.plan_hash.clone(),
        inputs: (plan.append.iter().flat_map(|b| b.inputs.iter().cloned()))
            .chain(plan.inputs.iter().map(|i| MarkerInput {
                path: i.path.clone(),
                bytes: i.fingerprint.bytes,
                modified: i.fingerprint.modified,
                content: Some(i.fingerprint.content.clone()),
            }))
            .collect(),
        tables: versions,
        n_cells: plan.n_cells,
        n_genes: plan.n_genes,
        expression_rows: rows,
        seconds: started.elapsed().as_secs_f64(),
        dataset: Some(dataset_record(plan, receipts)),
    })
}

/// What the marker records of the dataset committed from `plan` and `receipts`.
fn dataset_record(plan: &Plan, receipts: &[Located]) -> DatasetRecord {
    DatasetRecord {
        chunk_size: plan.chunk_size,
        profile: plan.profile.clone(),
        obs_columns: plan.obs_columns.clone(),
        var_columns: plan.var_columns.clone(),
        parts: dataset_parts(plan).clone(),
        source_file_column: plan.is_multi_file(),
        source_files: multi_file(plan).source_files,
        stats: dataset_stats(plan, receipts),
        indices: plan.indices,
        appended_inputs: match plan.append {
            Some(_) => plan.inputs.len() as u64,
            None => 0,
        },
    }
}

/// The parts the dataset holds: the plan's, or for an append the dataset's own (with the
/// obsp and varp its shards do not write).
fn dataset_parts(plan: &Plan) -> &crate::cells::InputParts {
    plan.append
        .as_ref()
        .map_or(&plan.parts, |b| &b.record.parts)
}

/// The statistics of every stored value: the receipts' fragments merged in dataset order,
/// after the appended dataset's own (the same fold as converting everything at once).
fn dataset_stats(plan: &Plan, receipts: &[Located]) -> ValueStats {
    let mut stats = plan
        .append
        .as_ref()
        .map_or_else(ValueStats::default, |b| b.record.stats);
    for s in receipts.iter().flat_map(|r| &r.receipt.fragment_stats) {
        stats.merge(s);
    }
    stats
}

/// config.json's `multi_file` block for a plan's inputs.
fn multi_file(plan: &Plan) -> MultiFile {
    let source_files: Vec<SourceFile> = (plan.append.iter())
        .flat_map(|b| b.record.source_files.iter().cloned())
        .chain(plan.inputs.iter().map(|i| SourceFile {
            file_path: i.path.display().to_string(),
            file_name: i.source_name.clone(),
            n_cells: i.n_cells,
            cell_offset: i.cell_offset,
        }))
        .collect();
    MultiFile {
        total_files: source_files.len() as u64,
        total_cells_from_files: plan.n_cells,
        source_files,
    }
}
