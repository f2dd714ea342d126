//! `shard`: convert one planned cell range into uncommitted Lance fragments plus a receipt.
//!
//! Two placements. **Staged**: data files and the receipt go into a task-local directory
//! (what Nextflow mounts); commit links or copies the files and never changes them.
//! **Shared target**: data files go straight under the output dataset's tables (a local
//! directory, or a prefix in an object store that Lance writes into) and only the receipt is
//! the task's output (by default under `_slaf_receipts/<plan hash>/`, so shards of different
//! plans never share a receipt; in a store it is written there whatever `--receipt` says). A re-run replaces an earlier attempt: a staged
//! directory that holds an earlier attempt (its [`ATTEMPT_TAG`]) is cleared first, any other
//! non-empty directory is refused; in a shared target, the files an attempt left behind are
//! unreferenced and commit deletes them. The receipt is written last, atomically: a shard
//! without one did not happen. A value the plan's guessed uint16 cannot hold makes the shard
//! start over writing that part as float32, which its receipt records (`Receipt::profile`;
//! commit widens the other shards to match).

mod staged;

use std::path::{Path, PathBuf};

use lance::table::format::Fragment;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use self::staged::prepare_staged_dir;
use crate::cells::{Axis, CellRange, GeneMap};
use crate::error::{Error, Result};
use crate::json_file::write_json_file;
use crate::pipeline::pairwise::write_pairwise_rows;
use crate::pipeline::{blocking, CellTables, RangeOutput, RangePlacement};
use crate::readers::{self, InputReader};
use crate::slaf::schema::{
    CellTablesProfile, CELLSXCELLS_TABLE, CELLS_TABLE, EXPRESSION_TABLE, GENESXGENES_TABLE,
    LAYERS_TABLE,
};
use crate::slaf::value_stats::ValueStats;
use crate::values::ValueType;
use crate::workflow::fetch::{fetch_for_task, is_store, FetchedInputs, Hdf5Inputs};
use crate::workflow::plan::{
    check_planned, locate, Plan, PlannedColumn, PlannedInput, PlannedShard,
};

/// Version of the receipt layout.
pub const RECEIPT_FORMAT: u32 = 2;
/// Receipt file name inside a staged shard directory.
pub const RECEIPT_FILE: &str = "receipt.json";
/// Directory of the receipts of shared-target shards, inside the output.
pub const SHARED_RECEIPTS_DIR: &str = "_slaf_receipts";
/// Suffix of the file a shared-target shard keeps beside its receipt while it writes (left
/// behind by a killed one).
pub const RUNNING_SUFFIX: &str = ".running";

/// Removes the shard's running mark when the shard returns, done or failed.
struct RunningMark(PathBuf);

impl Drop for RunningMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// File that marks a staged directory as a shard attempt of ours, which a retry may replace.
pub const ATTEMPT_TAG: &str = ".slaf-shard-attempt";

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
    /// Statistics per fragment (cell order), which commit merges in dataset order.
    pub fragment_stats: Vec<ValueStats>,
    /// The value types written, when wider than the plan's: its uint16 was a guess from a
    /// sample that a value of this shard proved wrong, so this shard wrote float32 there, and
    /// commit stores float32 in every shard (`None`: the plan's types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<CellTablesProfile>,
    /// Uncommitted fragments per table, in cell order (Lance's own fragment metadata).
    #[schemars(with = "Vec<serde_json::Value>")]
    pub expression: Vec<Fragment>,
    /// cells.lance fragments.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub cells: Vec<Fragment>,
    /// layers.lance fragments.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub layers: Vec<Fragment>,
    /// cellsxcells.lance fragments: the obsp rows of this shard's cells.
    #[schemars(with = "Vec<serde_json::Value>")]
    pub cellsxcells: Vec<Fragment>,
    /// genesxgenes.lance fragments: every varp row (shard 0 only).
    #[schemars(with = "Vec<serde_json::Value>")]
    pub genesxgenes: Vec<Fragment>,
}

impl Receipt {
    /// The value and id types its expression and layers fragments hold.
    pub fn written_profile<'a>(&'a self, plan: &'a Plan) -> &'a CellTablesProfile {
        self.profile.as_ref().unwrap_or(&plan.profile)
    }

    /// The tables this shard wrote to, with its fragments of each.
    pub fn tables(&self) -> [(&'static str, &Vec<Fragment>); 5] {
        [
            (EXPRESSION_TABLE, &self.expression),
            (CELLS_TABLE, &self.cells),
            (LAYERS_TABLE, &self.layers),
            (CELLSXCELLS_TABLE, &self.cellsxcells),
            (GENESXGENES_TABLE, &self.genesxgenes),
        ]
    }

    /// Every (table, data file name) the receipt names.
    pub fn data_files(&self) -> Vec<(&'static str, &str)> {
        self.tables()
            .into_iter()
            .flat_map(|(table, fragments)| {
                fragments
                    .iter()
                    .flat_map(|f| &f.files)
                    .map(move |d| (table, d.path.as_str()))
            })
            .collect()
    }

    /// The first data file the receipt names that is not under `root` (its staged directory
    /// or the dataset).
    pub fn missing_file(&self, root: &Path) -> Option<PathBuf> {
        self.data_files()
            .into_iter()
            .map(|(table, file)| root.join(table).join("data").join(file))
            .find(|p| !p.is_file())
    }

    /// Read a receipt file.
    pub fn load(path: &Path) -> Result<Receipt> {
        let bytes = std::fs::read(path).map_err(|e| Error::Receipts {
            path: path.to_path_buf(),
            what: format!("cannot read receipt: {e}"),
        })?;
        Receipt::parse(&bytes, path)
    }

    /// A receipt from its bytes (`path`: where they came from, for errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Receipt> {
        serde_json::from_slice(bytes).map_err(|e| Error::Receipts {
            path: path.to_path_buf(),
            what: format!("not a shard receipt: {e}"),
        })
    }
}

/// One shard to run.
#[derive(Debug, Clone)]
pub struct ShardTask<'a> {
    /// 0-based shard index.
    pub index: usize,
    /// Where its data files go.
    pub placement: Placement,
    /// Where its receipt goes (default: the placement's).
    pub receipt: Option<&'a Path>,
    /// Where the engine staged the inputs (`DIR/<path relative to the manifest>`); `None`:
    /// the paths the plan saw.
    pub inputs: Option<&'a Path>,
    /// Inputs in object stores already fetched for this task (`convert`); others are fetched.
    pub fetched: Option<&'a FetchedInputs>,
}

/// Run `task` of `plan`; writes the receipt and returns it with its path.
pub async fn run_shard(plan: &Plan, task: &ShardTask<'_>) -> Result<(Receipt, PathBuf)> {
    // Every line this shard logs carries the plan hash and the shard index.
    let span = tracing::info_span!("shard", plan_hash = %plan.plan_hash, shard = task.index);
    run_shard_in_span(plan, task).instrument(span).await
}

async fn run_shard_in_span(plan: &Plan, task: &ShardTask<'_>) -> Result<(Receipt, PathBuf)> {
    let (index, placement, receipt_path) = (task.index, &task.placement, task.receipt);
    if plan.append.is_some() && *placement == Placement::SharedTarget {
        // Its files would sit in the dataset before the commit, and stay there if killed.
        return Err(Error::Usage(
            "an append's shards are staged (shard -o DIR): the dataset stays as it was until the append commits".into(),
        ));
    }
    let shard = plan.shard(index)?.clone();
    let input = &plan.inputs[shard.input];
    // An input in an object store: this task's own copy, kept until the shard is done.
    let _fetched_here;
    let fetched = task.fetched.and_then(|f| f.copy_of(&input.path));
    let input_path = match (is_store(&input.path), fetched) {
        (true, Some(copy)) => check_planned(input, copy.to_path_buf())?,
        (true, None) => {
            let (dir, copy) = fetch_for_task(&input.path, Hdf5Inputs::InPlace).await?;
            _fetched_here = dir;
            check_planned(input, copy)?
        }
        (false, _) => locate(input, task.inputs)?,
    };
    // Into a store, the caller has checked the prefix and marked the shard as writing
    // ([`crate::workflow::remote::prepare_shared_target`]).
    let in_store = *placement == Placement::SharedTarget && is_store(&plan.output);
    let (root, _running) = match in_store {
        true => (plan.output.clone(), None),
        false => prepare_root(plan, index, placement)?,
    };
    let receipt_path = match (receipt_path, placement) {
        (Some(p), _) => p.to_path_buf(),
        (None, Placement::Staged { dir }) => dir.join(RECEIPT_FILE),
        (None, Placement::SharedTarget | Placement::Discard) => {
            shared_receipt_path(&plan.output, &plan.plan_hash, index)
        }
    };
    let obs_fields = PlannedColumn::fields(&plan.obs_columns)?;
    tracing::info!(
        event = "shard.started",
        cells = shard.end - shard.start,
        "shard {index}: cells {}..{} of {}",
        shard.start,
        shard.end,
        input_path.display()
    );
    let mut profile = plan.profile.clone();
    let (reader, out): (_, RangeOutput) = loop {
        let (reader, gene_map) = open_as_planned(plan, input, &input_path).await?;
        let mut tables = CellTables::new(
            &root,
            &obs_fields,
            &plan.parts,
            profile.clone(),
            plan.is_multi_file(),
        )?;
        if *placement == Placement::Discard {
            tables.discard_batches();
        }
        let placement_in_dataset = RangePlacement {
            cell_offset: input.cell_offset,
            row_base: shard.row_offset,
            source_file: plan.is_multi_file().then(|| input.source_name.clone()),
            gene_map,
        };
        let written = tables
            .write_range(
                reader,
                CellRange::new(shard.start, shard.end),
                plan.chunk_size,
                placement_in_dataset,
            )
            .await;
        match written {
            Err(Error::ValueTypeTooNarrow { value, layer, .. })
                if plan.types_guessed && widen(&mut profile, layer) =>
            {
                let part = match layer {
                    Some(i) => plan.parts.layers.get(i).cloned().unwrap_or_default(),
                    None => "X".to_string(),
                };
                tracing::warn!(event = "shard.widened", part, value = value as f64, "shard {index}: {part} holds {value}, which the plan's guessed uint16 cannot: writing {part} as float32 (commit stores it as float32 in every shard)");
                if let Placement::Staged { dir } = placement {
                    prepare_staged_dir(dir)?; // the attempt's files go
                }
            }
            written => break written?,
        }
    };
    let (cellsxcells, genesxgenes) = match placement {
        Placement::Discard => (Vec::new(), Vec::new()),
        _ => write_pairwise(plan, &shard, &root, reader).await?,
    };
    let stats = out.stats();
    let receipt = Receipt {
        format_version: RECEIPT_FORMAT,
        plan_hash: plan.plan_hash.clone(),
        shard: index,
        placement: placement.clone(),
        rows_expected: shard.rows,
        rows_written: stats.count,
        cells_written: out.cells_written,
        stats: (stats.count > 0).then_some(stats),
        fragment_stats: out.fragment_stats,
        profile: (profile != plan.profile).then_some(profile),
        expression: out.expression,
        cells: out.cells,
        layers: out.layers,
        cellsxcells,
        genesxgenes,
    };
    if receipt.rows_written != receipt.rows_expected {
        return Err(Error::changed_since_plan(
            &input_path,
            format_args!(
                "shard {index} read {} expression rows where the plan counted {} (if the input is unchanged, this is a bug: please report it)",
                receipt.rows_written, receipt.rows_expected
            ),
        ));
    }
    if *placement == Placement::Discard {
        return Ok((receipt, receipt_path));
    }
    if in_store {
        // In a store the receipt also goes under the dataset, whatever --receipt says: it
        // marks the prefix as a dataset in the making (a retry of a shard must find it ours)
        // and lets `commit plan.json` find every shard there.
        let beside = shared_receipt_path(&plan.output, &plan.plan_hash, index);
        if beside != receipt_path {
            save_receipt(&beside, &receipt).await?;
        }
    }
    save_receipt(&receipt_path, &receipt).await?;
    tracing::info!(event = "shard.done", expression_rows = receipt.rows_written, receipt = %receipt_path.display(), "shard {index} done");
    Ok((receipt, receipt_path))
}

/// Write `receipt` to `path`: a local file (atomically), or an object written whole.
async fn save_receipt(path: &Path, receipt: &Receipt) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Usage(format!("{}: not a file name", path.display())));
    };
    match is_store(path) {
        true => {
            let bytes = crate::json_file::json_bytes(receipt)?;
            crate::workflow::fetch::open(dir)?
                .write(&name.to_string_lossy(), bytes)
                .await
        }
        false => write_json_file(path, receipt),
    }
}

/// Widen the value type of X (`layer` `None`) or of a layer to float32; false if it already
/// was (nothing left to widen: the value is refused).
fn widen(profile: &mut CellTablesProfile, layer: Option<usize>) -> bool {
    let slot = match layer {
        None => &mut profile.value_type,
        Some(i) => match profile.layer_types.get_mut(i) {
            Some(t) => t,
            None => return false,
        },
    };
    let narrow = *slot != ValueType::Float32;
    *slot = ValueType::Float32;
    narrow
}

/// Where the shard writes (its staged directory, or the dataset), with the mark that says a
/// shard is writing into a shared target (removed when it is dropped).
fn prepare_root(
    plan: &Plan,
    index: usize,
    placement: &Placement,
) -> Result<(PathBuf, Option<RunningMark>)> {
    match placement {
        Placement::Staged { dir } => {
            prepare_staged_dir(dir)?;
            Ok((dir.clone(), None))
        }
        Placement::SharedTarget => {
            // Marks the output as a dataset in the making (commit refuses foreign directories)
            // and this shard as writing there (a commit of another plan leaves the files of
            // running shards alone).
            let receipts = shared_receipts_dir(&plan.output, &plan.plan_hash);
            std::fs::create_dir_all(&receipts).map_err(|e| Error::io(&receipts, e))?;
            let running = receipts.join(format!("shard-{index:06}{RUNNING_SUFFIX}"));
            std::fs::write(&running, b"").map_err(|e| Error::io(&running, e))?;
            Ok((plan.output.clone(), Some(RunningMark(running))))
        }
        Placement::Discard => Ok((plan.output.clone(), None)),
    }
}

/// Open the shard's input and map its genes; an input whose cells or genes are not what the
/// plan saw is refused.
async fn open_as_planned(
    plan: &Plan,
    input: &PlannedInput,
    input_path: &Path,
) -> Result<(Box<dyn InputReader>, Option<GeneMap>)> {
    let path = input_path.to_path_buf();
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
            input_path,
            "the input changed since it was planned (cells or genes differ): plan again",
        ));
    }
    Ok((reader, gene_map))
}

/// The pairwise rows a shard writes: obsp rows of its own cells, and (shard 0) every varp row.
async fn write_pairwise(
    plan: &Plan,
    shard: &PlannedShard,
    root: &Path,
    reader: Box<dyn InputReader>,
) -> Result<(Vec<Fragment>, Vec<Fragment>)> {
    let ids = &plan.profile.ids;
    let cells = CellRange::new(shard.start, shard.end);
    let (reader, obsp) = write_pairwise_rows(
        root,
        reader,
        Axis::Cells,
        &plan.parts.obsp,
        &ids.cell,
        cells,
        plan.chunk_size,
    )
    .await?;
    let varp_keys: &[String] = if shard.index == 0 {
        &plan.parts.varp
    } else {
        &[]
    };
    let genes = CellRange::new(0, reader.layout().n_genes);
    let (_, varp) = write_pairwise_rows(
        root,
        reader,
        Axis::Genes,
        varp_keys,
        &ids.gene,
        genes,
        plan.chunk_size,
    )
    .await?;
    Ok((obsp, varp))
}

/// Directory of the shared-target receipts of plan `plan_hash` inside `output`.
pub fn shared_receipts_dir(output: &Path, plan_hash: &str) -> PathBuf {
    output.join(SHARED_RECEIPTS_DIR).join(plan_hash)
}

/// Default receipt path of a shared-target shard.
pub fn shared_receipt_path(output: &Path, plan_hash: &str, index: usize) -> PathBuf {
    shared_receipts_dir(output, plan_hash).join(format!("shard-{index:06}.json"))
}
