//! `convert`: plan + every shard + commit, in one process.
//!
//! Exactly the workflow steps, run in order: `plan` opens and scans the inputs (nothing is
//! written if that fails), every shard writes its fragments straight into the output (shared
//! target) with its receipt in a temporary directory, and `commit` makes them visible in one
//! transaction per table, writes `config.json` and last the completion marker. A failed run
//! removes the output it created; `--overwrite` moves an old output aside before deleting it.
//!
//! Unlike a `plan` command, convert's plan does not read a CSR matrix's values: the row counts
//! come from its indptr and the value type from a sample, so X is read once, while it is
//! written. Every value is checked against the guess as it is written; a value that does not
//! fit (a fraction after a million counts) restarts the conversion from an exact plan.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::commit::{commit, CompletionMarker};
use crate::error::{Error, Result};
use crate::manifest::{IdTypesName, Manifest, ManifestInput, ManifestOptions, Sharding};
use crate::pipeline::blocking;
use crate::plan::{Plan, ShardSize};
use crate::readers::{ReadOptions, ValueScan};
use crate::schema::{Compression, IdTypes, ValueType};
use crate::shard::{run_shard, Placement};

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
    /// Compression of the gene id and value columns.
    pub compression: Compression,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            chunk_size: 5000,
            overwrite: false,
            id_types: IdTypes::Int32,
            read: ReadOptions::default(),
            compression: Compression::default(),
        }
    }
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
    if options.chunk_size == 0 {
        return Err(Error::Usage("--chunk-size must be at least 1".into()));
    }
    let read = &options.read;
    Ok(Manifest {
        output: output.to_path_buf(),
        inputs: vec![ManifestInput {
            path: input.to_path_buf(),
            format: read.format,
            raw: read.raw,
            var_names: read.tenx.var_names,
            make_unique: read.tenx.make_unique,
            feature_types: read.tenx.feature_types.clone(),
            genome: read.tenx.genome.clone(),
        }],
        options: ManifestOptions {
            chunk_size: options.chunk_size,
            id_types: match options.id_types {
                IdTypes::Int32 => IdTypesName::Int32,
                IdTypes::Compact => IdTypesName::Compact,
            },
            compression: options.compression,
            ..ManifestOptions::default()
        },
        sharding: Sharding::default(),
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
/// read), read and decode every chunk, build every record batch, drop it. The floor the
/// benchmark measures a conversion against; nothing is written.
pub async fn read_only(manifest: &Manifest) -> Result<ReadOnlyReport> {
    let plan_manifest = manifest.clone();
    let plan = blocking(move || {
        Plan::build_scanning(&plan_manifest, ShardSize::default(), ValueScan::RowsOnly)
    })
    .await?;
    let mut expression_rows = 0;
    for shard in &plan.shards {
        let (receipt, _) = run_shard(&plan, shard.index, &Placement::Discard, None).await?;
        expression_rows += receipt.rows_written;
    }
    Ok(ReadOnlyReport {
        n_cells: plan.n_cells,
        expression_rows,
    })
}

/// Convert every input of `manifest` into its output: plan, every shard, commit.
pub async fn convert_manifest(manifest: &Manifest, overwrite: bool) -> Result<ConvertReport> {
    let started = Instant::now();
    let output = manifest.output.clone();
    check_output(&output, overwrite)?;
    let plan_manifest = manifest.clone();
    let mut plan = blocking(move || {
        Plan::build_scanning(&plan_manifest, ShardSize::default(), ValueScan::RowsOnly)
    })
    .await?;
    replace_output(&output, overwrite)?;
    std::fs::create_dir_all(&output).map_err(|e| Error::io(&output, e))?;
    let mut written = write_all_shards(&plan).await;
    if let (Err(Error::ValueTypeTooNarrow { value, .. }), true) = (&written, plan.types_guessed) {
        tracing::info!(
            event = "convert.replanned",
            value = *value as f64,
            "the values are not all counts ({value} found): planning again from every value"
        );
        let exact_manifest = manifest.clone();
        written = match blocking(move || Plan::build(&exact_manifest, ShardSize::default())).await {
            Ok(exact) => {
                plan = exact;
                // Start from an empty output: the first attempt's files are not needed.
                std::fs::remove_dir_all(&output)
                    .and_then(|()| std::fs::create_dir_all(&output))
                    .map_err(|e| Error::io(&output, e))?;
                write_all_shards(&plan).await
            }
            Err(e) => Err(e),
        };
    }
    match written {
        Ok(marker) => {
            tracing::info!(
                event = "convert.done",
                output = %output.display(),
                n_cells = marker.n_cells,
                n_genes = marker.n_genes,
                expression_rows = marker.expression_rows,
                fragments = plan.shards.len(),
                seconds = started.elapsed().as_secs_f64(),
                "conversion finished"
            );
            Ok(ConvertReport {
                output,
                marker,
                value_type: plan.profile.value_type,
                shards: plan.shards.len(),
            })
        }
        Err(e) => {
            // We created this directory and it is not complete: remove it so a rerun starts
            // clean instead of tripping over "output exists".
            if let Err(cleanup) = std::fs::remove_dir_all(&output) {
                tracing::warn!(event = "convert.cleanup_failed", output = %output.display(), error = %cleanup, "could not remove partial output");
            }
            Err(e)
        }
    }
}

async fn write_all_shards(plan: &Plan) -> Result<CompletionMarker> {
    let receipts_dir = tempfile::Builder::new()
        .prefix("slaf-convert-receipts-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut receipts = Vec::with_capacity(plan.shards.len());
    for shard in &plan.shards {
        let path = receipts_dir
            .path()
            .join(format!("shard-{:06}.json", shard.index));
        run_shard(plan, shard.index, &Placement::SharedTarget, Some(&path)).await?;
        receipts.push(path);
    }
    commit(plan, &receipts).await
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
