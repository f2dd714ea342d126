//! `convert`: plan + every shard + commit, in one process.
//!
//! Exactly the workflow steps, run in order: `plan` opens and scans the inputs (nothing is
//! written if that fails), every shard writes its fragments straight into the output (shared
//! target) with its receipt under the output, and `commit` makes them visible in one
//! transaction per table, writes `config.json` and last the completion marker. A run killed
//! part-way is resumed by the same command (finished shards are kept); a run that fails
//! removes the output it created; `--overwrite` builds beside a complete old output and swaps
//! the two only once the new one is complete.
//!
//! Unlike a `plan` command, convert's plan does not read a CSR matrix's values: the row counts
//! come from its indptr and the value type from a sample, so X is read once, while it is
//! written. Every value is checked against the guess as it is written; a value that does not
//! fit (a fraction after a million counts) restarts the conversion from an exact plan.

mod append;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::pipeline::blocking;
use crate::readers::{ReadOptions, ValueScan};
use crate::values::ValueType;
use crate::workflow::commit::state::exchange;
use crate::workflow::commit::{
    commit, read_marker, recorded_widening, CompletionMarker, MARKER_FILE,
};
use crate::workflow::fetch::FetchedInputs;
use crate::workflow::manifest::{Manifest, ManifestInput, ManifestOptions, Mode, Sharding};
use crate::workflow::plan::{Plan, ShardSize};
use crate::workflow::shard::{
    run_shard, shared_receipt_path, Placement, Receipt, ShardTask, SHARED_RECEIPTS_DIR,
};

/// Options of one conversion: the same types a manifest resolves to (the dataset's options,
/// and how the input is read), so `convert INPUT OUTPUT` and a manifest plan alike.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// The dataset's options (chunk size, id types, compression, what to convert).
    pub dataset: ManifestOptions,
    /// How the reader opens the input.
    pub read: ReadOptions,
    /// Replace an existing output.
    pub overwrite: bool,
}

/// What a finished conversion wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The output directory.
    pub output: PathBuf,
    /// The completion marker written last.
    pub marker: CompletionMarker,
    /// Expression value type chosen.
    pub value_type: ValueType,
    /// Shards the cells were written in.
    pub shards: usize,
}

/// Convert `input` into the SLAF dataset `output`.
pub async fn convert(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    convert_manifest(
        &single_input_manifest(input, output, options)?,
        options.overwrite,
    )
    .await
}

/// The manifest `convert INPUT OUTPUT` stands for.
pub fn single_input_manifest(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<Manifest> {
    if options.dataset.chunk_size == 0 {
        return Err(Error::Usage("--chunk-size must be at least 1".into()));
    }
    Ok(Manifest {
        output: output.to_path_buf(),
        mode: Mode::Create,
        inputs: vec![ManifestInput::reading(input, &options.read)],
        options: options.dataset.clone(),
        sharding: Sharding::default(),
        base: PathBuf::new(),
    })
}

/// What a read-only run did.
#[derive(Debug, Clone)]
pub struct ReadOnlyReport {
    /// Cells read.
    pub n_cells: u64,
    /// Expression rows built.
    pub expression_rows: u64,
}

/// Everything `convert` does up to the Lance writer, and nothing after: plan (values not
/// read), read and decode every cell batch, build every record batch, drop it. The floor the
/// benchmark measures a conversion against; nothing is written.
pub async fn read_only(manifest: &Manifest) -> Result<ReadOnlyReport> {
    let plan_manifest = manifest.clone();
    let plan = blocking(move || {
        Plan::build_scanning(&plan_manifest, ShardSize::default(), ValueScan::RowsOnly)
    })
    .await?;
    let mut expression_rows = 0;
    for shard in &plan.shards {
        let task = ShardTask {
            index: shard.index,
            placement: Placement::Discard,
            receipt: None,
            inputs: None,
            fetched: None,
        };
        let (receipt, _) = run_shard(&plan, &task).await?;
        expression_rows += receipt.rows_written;
    }
    Ok(ReadOnlyReport {
        n_cells: plan.n_cells,
        expression_rows,
    })
}

/// Convert every input of `manifest` into its output: plan, every shard, commit.
///
/// Re-running the same command after a kill resumes: the output holds the receipts of the
/// shards that finished, which are kept. With `overwrite`, a complete old output stays
/// readable until the new dataset is complete beside it, then the two are swapped.
pub async fn convert_manifest(manifest: &Manifest, overwrite: bool) -> Result<ConvertReport> {
    convert_fetched(manifest, overwrite, &FetchedInputs::default()).await
}

/// [`convert_manifest`] of a manifest whose inputs in object stores were fetched already:
/// `manifest` names the local copies, `fetched` pairs them with their URIs, which the plan,
/// `config.json` and the marker name instead.
pub async fn convert_fetched(
    manifest: &Manifest,
    overwrite: bool,
    fetched: &FetchedInputs,
) -> Result<ConvertReport> {
    let started = Instant::now();
    let output = manifest.output.clone();
    manifest.check_output_apart()?;
    if manifest.mode == Mode::Append {
        return append::convert_append(manifest, fetched, started).await;
    }
    let target = BuildTarget::choose(&output, overwrite)?;
    let mut build = manifest.clone();
    build.output = target.dir.clone();
    let plan_manifest = build.clone();
    let mut plan = blocking(move || {
        Plan::build_scanning(
            &plan_manifest,
            convert_shards(&plan_manifest),
            ValueScan::RowsOnly,
        )
    })
    .await?;
    fetched.name_in(&mut plan);
    target.check_plan(&plan)?;
    // The receipts directory first: from now on a killed run leaves an output the same
    // command resumes (until then, at most an empty directory).
    let receipts = target.dir.join(SHARED_RECEIPTS_DIR);
    std::fs::create_dir_all(&receipts).map_err(|e| Error::io(&receipts, e))?;
    // A value the plan's guessed uint16 cannot hold makes its shard write float32, and the
    // commit rewrites the shards before it to match (`shard::run_shard`, `commit::widen`).
    let written = write_all_shards(&plan, fetched).await;
    let marker = match written {
        Ok(marker) => marker,
        Err(e) => {
            target.abandon();
            return Err(e);
        }
    };
    let value_type = stored_value_type(&plan);
    target.finish()?;
    Ok(ConvertReport::finished(
        output,
        marker,
        value_type,
        plan.shards.len(),
        started,
    ))
}

impl ConvertReport {
    /// The report of a conversion into `output` that took since `started`, logged as
    /// `convert.done`.
    pub(crate) fn finished(
        output: PathBuf,
        marker: CompletionMarker,
        value_type: ValueType,
        shards: usize,
        started: Instant,
    ) -> ConvertReport {
        tracing::info!(
            event = "convert.done",
            output = %output.display(),
            n_cells = marker.n_cells,
            n_genes = marker.n_genes,
            expression_rows = marker.expression_rows,
            fragments = shards,
            seconds = started.elapsed().as_secs_f64(),
            "conversion finished"
        );
        ConvertReport {
            output,
            marker,
            value_type,
            shards,
        }
    }
}

/// The dataset's value type: the plan's, or float32 where a shard met a value past the
/// plan's sample that uint16 cannot hold (its receipt says so; commit widened the rest).
fn stored_value_type(plan: &Plan) -> ValueType {
    let widened = (0..plan.shards.len()).any(|i| {
        Receipt::load(&shared_receipt_path(&plan.output, &plan.plan_hash, i)).is_ok_and(|r| {
            r.profile
                .is_some_and(|p| p.value_type == ValueType::Float32)
        })
    });
    if widened {
        ValueType::Float32
    } else {
        plan.profile.value_type
    }
}

/// Shards of a one-process conversion, the unit a re-run after a kill keeps: the manifest's
/// sharding, else 8 of at least [`CONVERT_MIN_SHARD_CELLS`] cells (each shard boundary drains
/// the writer: about 50 ms, measured).
pub(crate) fn convert_shards(manifest: &Manifest) -> ShardSize {
    let s = &manifest.sharding;
    if s.cells_per_shard.is_some() || s.shards.is_some() {
        return ShardSize::default();
    }
    ShardSize {
        cells_per_shard: None,
        shards: Some(8),
        min_cells_per_shard: Some(CONVERT_MIN_SHARD_CELLS),
    }
}

/// Fewest cells of a shard of `convert` (a smaller input is redone whole after a kill).
pub const CONVERT_MIN_SHARD_CELLS: u64 = 100_000;

/// Run every shard of `plan` into its output (shared target) that has no receipt there yet,
/// then commit.
async fn write_all_shards(plan: &Plan, fetched: &FetchedInputs) -> Result<CompletionMarker> {
    run_unfinished_shards(plan, fetched, |index| {
        let receipt = shared_receipt_path(&plan.output, &plan.plan_hash, index);
        ShardSlot {
            placement: Placement::SharedTarget,
            files: plan.output.clone(),
            source: receipt.clone(),
            receipt,
        }
    })
    .await
}

/// Where one shard of a one-process run writes.
struct ShardSlot {
    /// Where its data files go.
    placement: Placement,
    /// Its receipt.
    receipt: PathBuf,
    /// The root its receipt's data files lie under.
    files: PathBuf,
    /// What commit is given for it (the receipt, or the staged directory).
    source: PathBuf,
}

/// Run every shard of `plan` that has no finished attempt in its slot (`slot` of its index),
/// keeping the others (a re-run after a kill), then commit them all.
async fn run_unfinished_shards(
    plan: &Plan,
    fetched: &FetchedInputs,
    slot: impl Fn(usize) -> ShardSlot,
) -> Result<CompletionMarker> {
    let mut sources = Vec::with_capacity(plan.shards.len());
    let mut kept = Vec::new();
    for shard in &plan.shards {
        let slot = slot(shard.index);
        let finished = Receipt::load(&slot.receipt).is_ok_and(|r| {
            r.plan_hash == plan.plan_hash
                && r.shard == shard.index
                && r.rows_written == shard.rows
                && (r.missing_file(&slot.files).is_none() || recorded_widening(plan, &r).is_some())
        });
        if finished {
            kept.push(shard.index);
        } else {
            let task = ShardTask {
                index: shard.index,
                placement: slot.placement,
                receipt: Some(&slot.receipt),
                inputs: None,
                fetched: Some(fetched),
            };
            run_shard(plan, &task).await?;
        }
        sources.push(slot.source);
    }
    if !kept.is_empty() {
        tracing::info!(event = "convert.resumed", kept_shards = ?kept, shards = plan.shards.len(), "resumed: kept {} of {} shards an earlier run finished", kept.len(), plan.shards.len());
    }
    commit(plan, &sources).await
}

/// Where a conversion builds its dataset.
struct BuildTarget {
    /// The output the user named.
    output: PathBuf,
    /// Where the dataset is built: the output, or beside it when replacing a complete one.
    dir: PathBuf,
    /// `dir` is ours to remove if the conversion fails.
    created: bool,
}

impl BuildTarget {
    fn choose(output: &Path, overwrite: bool) -> Result<BuildTarget> {
        let in_place = |created| BuildTarget {
            output: output.to_path_buf(),
            dir: output.to_path_buf(),
            created,
        };
        if std::fs::symlink_metadata(output).is_err() {
            return Ok(in_place(true));
        }
        let complete = output.join(MARKER_FILE).exists();
        if !(complete && overwrite) {
            if output.join(SHARED_RECEIPTS_DIR).is_dir() {
                // An earlier run of ours, killed before it finished (perhaps after its marker:
                // then the plan must be this one, checked once planned).
                tracing::info!(event = "convert.resuming", output = %output.display(), "resuming the unfinished conversion in {}", output.display());
                return Ok(in_place(false));
            }
            if is_empty_dir(output) {
                return Ok(in_place(false));
            }
            if !overwrite {
                return Err(Error::OutputExists {
                    path: output.to_path_buf(),
                });
            }
        }
        let mut name = output.as_os_str().to_owned();
        name.push(".slaf-convert-partial");
        let partial = PathBuf::from(name);
        if partial.exists() && !partial.join(SHARED_RECEIPTS_DIR).is_dir() {
            // Our own scratch name, holding no unfinished build: an old swap's leftover.
            std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        }
        Ok(BuildTarget {
            output: output.to_path_buf(),
            dir: partial,
            created: true,
        })
    }

    /// Refuse to finish, in place, an output that an earlier run completed from another plan
    /// (without `--overwrite`, a complete dataset is never replaced).
    fn check_plan(&self, plan: &Plan) -> Result<()> {
        if !self.dir.join(MARKER_FILE).exists() {
            return Ok(());
        }
        // An unreadable marker is no proof of this plan either.
        let same = read_marker(&self.dir)
            .ok()
            .flatten()
            .is_some_and(|m| m.plan_hash == plan.plan_hash);
        match same || self.dir != self.output {
            true => Ok(()),
            false => Err(Error::OutputExists {
                path: self.output.clone(),
            }),
        }
    }

    /// The dataset in `dir` is complete: when replacing, swap it in; then drop the receipts.
    fn finish(self) -> Result<()> {
        if self.dir != self.output {
            // The old output is readable until this one call replaces it; should it fail,
            // the complete new dataset and its receipts stay for the next run to swap in.
            exchange(&self.dir, &self.output)?;
            let old = &self.dir;
            let removed = if old.is_dir() {
                std::fs::remove_dir_all(old)
            } else {
                std::fs::remove_file(old)
            };
            removed.map_err(|e| Error::io(old, e))?;
        }
        let receipts = self.output.join(SHARED_RECEIPTS_DIR);
        if receipts.exists() {
            std::fs::remove_dir_all(&receipts).map_err(|e| Error::io(&receipts, e))?;
        }
        Ok(())
    }

    /// The conversion failed: remove the directory this run created (a new output, or the
    /// build beside an output it replaces, which is never touched); an output it was
    /// resuming in place stays for the next run.
    fn abandon(self) {
        if !self.created {
            return;
        }
        if let Err(cleanup) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(event = "convert.cleanup_failed", output = %self.dir.display(), error = %cleanup, "could not remove the partial output {}: {cleanup}", self.dir.display());
        }
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}
