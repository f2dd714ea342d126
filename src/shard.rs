//! `shard`: convert one planned cell range into uncommitted Lance fragments plus a receipt.
//!
//! Two placements. **Staged**: data files and the receipt go into a task-local directory
//! (what Nextflow mounts); commit adopts the files. **Shared target**: data files go straight
//! under the output dataset's tables and only the receipt is the task's output. A re-run
//! replaces an earlier attempt: a staged directory is cleared first; in a shared target, the
//! files an attempt left behind are unreferenced and commit deletes them. The receipt is
//! written last, atomically: a shard without one did not happen.

use std::path::{Path, PathBuf};

use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config_json::{write_json_file, ValueStats};
use crate::error::{Error, Result};
use crate::pipeline::{blocking, CellTables, RangeOutput, RangePlacement};
use crate::plan::{Plan, PlannedColumn};
use crate::readers::{self, CellRange, GeneMap};

/// Version of the receipt layout.
pub const RECEIPT_FORMAT: u32 = 1;
/// Receipt file name inside a staged shard directory.
pub const RECEIPT_FILE: &str = "receipt.json";
/// Directory of the receipts of shared-target shards, inside the output.
pub const SHARED_RECEIPTS_DIR: &str = "_slaf_receipts";

/// Where a shard writes its data files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Placement {
    /// Into this task-local directory (tables as `<dir>/<table>.lance/data/`).
    Staged {
        /// The shard directory.
        dir: PathBuf,
    },
    /// Straight into the output dataset's tables.
    SharedTarget,
    /// Nowhere: read and build every batch, write nothing, no receipt (`convert --read-only`).
    #[serde(skip)]
    Discard,
}

/// What a finished shard wrote (`receipt.json`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Receipt {
    /// [`RECEIPT_FORMAT`].
    pub format_version: u32,
    /// The plan this shard belongs to.
    pub plan_hash: String,
    /// Shard index.
    pub shard: usize,
    /// Where its data files are.
    pub placement: Placement,
    /// Expression rows the plan expected.
    pub rows_expected: u64,
    /// Expression rows written.
    pub rows_written: u64,
    /// Cells written.
    pub cells_written: u64,
    /// Statistics of the values written (`None` when no row was written).
    pub stats: Option<ValueStats>,
    /// Uncommitted fragments per table, in cell order (Lance's own fragment metadata).
    #[schemars(with = "Vec<serde_json::Value>")]
    pub expression: Vec<Fragment>,
    /// cells.lance fragments.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub cells: Vec<Fragment>,
    /// layers.lance fragments.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub layers: Vec<Fragment>,
}

impl Receipt {
    /// Read a receipt file.
    pub fn load(path: &Path) -> Result<Receipt> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Receipts {
            path: path.to_path_buf(),
            what: format!("cannot read receipt: {e}"),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Receipts {
            path: path.to_path_buf(),
            what: format!("not a shard receipt: {e}"),
        })
    }
}

/// Run shard `index` of `plan` with `placement`; writes the receipt to `receipt_path` (or the
/// placement's default) and returns it.
pub async fn run_shard(
    plan: &Plan,
    index: usize,
    placement: &Placement,
    receipt_path: Option<&Path>,
) -> Result<(Receipt, PathBuf)> {
    // Every line this shard logs carries the plan hash and the shard index.
    let span = tracing::info_span!("shard", plan_hash = %plan.plan_hash, shard = index);
    run_shard_in_span(plan, index, placement, receipt_path)
        .instrument(span)
        .await
}

async fn run_shard_in_span(
    plan: &Plan,
    index: usize,
    placement: &Placement,
    receipt_path: Option<&Path>,
) -> Result<(Receipt, PathBuf)> {
    let shard = plan.shard(index)?.clone();
    let input = &plan.inputs[shard.input];
    let root = match placement {
        Placement::Staged { dir } => {
            if dir.exists() {
                // A retry replaces the earlier attempt entirely.
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            dir.clone()
        }
        Placement::SharedTarget | Placement::Discard => plan.output.clone(),
    };
    let receipt_path = match (receipt_path, placement) {
        (Some(p), _) => p.to_path_buf(),
        (None, Placement::Staged { dir }) => dir.join(RECEIPT_FILE),
        (None, Placement::SharedTarget | Placement::Discard) => {
            shared_receipt_path(&plan.output, index)
        }
    };
    let path = input.path.clone();
    let read = input.read.clone();
    let dataset_genes = plan.genes.clone();
    let (reader, gene_map) = blocking(move || {
        let mut reader = readers::open(&path, &read)?;
        let (_, genes) = reader.genes()?;
        let map =
            GeneMap::between(&genes, &dataset_genes).map_err(|what| Error::invalid(&path, what))?;
        Ok((reader, map))
    })
    .await?;
    if reader.layout().n_cells != input.n_cells || gene_map.is_some() != input.genes_remapped {
        return Err(Error::invalid(
            &input.path,
            "the input changed since it was planned (cells or genes differ): plan again",
        ));
    }
    let obs_fields = PlannedColumn::fields(&plan.obs_columns)?;
    let mut tables = CellTables::new(
        &root,
        &obs_fields,
        &plan.parts,
        plan.profile.clone(),
        plan.is_multi_file(),
    )?;
    if *placement == Placement::Discard {
        tables.discard_batches();
    }
    tracing::info!(
        event = "shard.started",
        cells = shard.end - shard.start,
        "shard {index}: cells {}..{} of {}",
        shard.start,
        shard.end,
        input.path.display()
    );
    let placement_in_dataset = RangePlacement {
        cell_offset: input.cell_offset,
        row_base: shard.row_offset,
        source_file: plan.is_multi_file().then(|| input.source_name.clone()),
        gene_map,
    };
    let (_, out): (_, RangeOutput) = tables
        .write_range(
            reader,
            CellRange::new(shard.start, shard.end),
            plan.chunk_size,
            placement_in_dataset,
        )
        .await?;
    let receipt = Receipt {
        format_version: RECEIPT_FORMAT,
        plan_hash: plan.plan_hash.clone(),
        shard: index,
        placement: placement.clone(),
        rows_expected: shard.rows,
        rows_written: out.stats.count,
        cells_written: out.cells_written,
        stats: (out.stats.count > 0).then_some(out.stats),
        expression: out.expression,
        cells: out.cells,
        layers: out.layers,
    };
    if receipt.rows_written != receipt.rows_expected {
        return Err(Error::Internal(format!(
            "shard {index}: wrote {} rows, the plan expects {}",
            receipt.rows_written, receipt.rows_expected
        )));
    }
    if *placement == Placement::Discard {
        return Ok((receipt, receipt_path));
    }
    write_json_file(&receipt_path, &receipt)?;
    tracing::info!(event = "shard.done", expression_rows = receipt.rows_written, receipt = %receipt_path.display(), "shard {index} done");
    Ok((receipt, receipt_path))
}

/// Default receipt path of a shared-target shard.
pub fn shared_receipt_path(output: &Path, index: usize) -> PathBuf {
    output
        .join(SHARED_RECEIPTS_DIR)
        .join(format!("shard-{index:06}.json"))
}
