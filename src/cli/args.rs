//! Command-line arguments as typed (clap derive): plain data, validated only for syntax.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::value_enums::Choice;
use slaf_convert::logging::LogFormat;
use slaf_convert::readers::tenx::VarNames;
use slaf_convert::readers::{InputFormat, RawMode};
use slaf_convert::slaf::schema::{Compression, IdTypes, Pages};

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  2   bad command-line arguments
  64  invalid manifest (names the key and its line)
  65  invalid, corrupt or unsupported input (names the file and the object)
  66  input file missing or unreadable
  67  inputs that cannot be combined (genes, obs column types, layers differ), or appended
      (values the dataset's uint16 cannot hold, an input it already holds)
  68  shard receipts missing or not matching the plan (lists the shard indices)
  69  a library the input needs is not there (libtiledb, for a TileDB-SOMA experiment)
  70  internal error (a bug: please report it)
  73  output exists (pass --overwrite), or is a path slaf-convert will not write to (an
      input, inside an input, or a shard directory that holds something else)
  74  I/O error writing the output, or an object store refused a request (credentials,
      permissions, missing bucket)
  75  transient storage failure (commit conflict, timeout, an object store's 5xx, throttling
      or lost connection after its retries): retry the same command; also an append whose
      dataset changed after it was planned (plan again)
None of these is 104, 130-145 or 175, which nf-core's base config retries.

Object stores: convert's INPUT and OUTPUT and commit's --dataset may be s3://bucket/path,
gs://bucket/path or az://container/path. Credentials and endpoints come only from the
environment, as each cloud's tools read them: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP; AZURE_STORAGE_ACCOUNT_NAME,
AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_USE_EMULATOR;
GOOGLE_SERVICE_ACCOUNT, GOOGLE_SERVICE_ACCOUNT_KEY, GOOGLE_APPLICATION_CREDENTIALS. A URI
holding credentials is refused. Failed requests are retried with backoff for up to
SLAF_CONVERT_STORE_RETRY_SECONDS (default 180).

Logs go to stderr: JSON lines when stderr is not a terminal (one object per line with a
stable \"event\" field), human lines otherwise. Set SLAF_CONVERT_LOG to a tracing filter to
see more, e.g. SLAF_CONVERT_LOG=debug.";

/// Convert single-cell expression data into SLAF datasets (Lance tables + config.json)
/// that the upstream Python reader `slaf.SLAFArray` opens and reads back exactly.
#[derive(Debug, Parser)]
#[command(name = "slaf-convert", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = Choice(LogFormat::Auto))]
    pub log_format: Choice<LogFormat>,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads (default: the CPUs available). Workflow engines pass their task's cpus.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Seconds one call into the HDF5 library may take before the run stops with exit 65
    /// (0: no limit). Some corrupt files make the library loop for ever inside one call; an
    /// honest call takes seconds. Raise it only for a file system that stalls that long.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 600)]
    pub hdf5_timeout: u64,
    /// The TileDB library file that TileDB-SOMA inputs are read with (libtiledb 2.26 or
    /// later; `pip install tiledbsoma` ships one as
    /// site-packages/tiledbsoma.libs/libtiledb-*.so.2.30). Default: libtiledb.so wherever the
    /// system's loader finds it. Only SOMA inputs need it.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SLAF_CONVERT_LIBTILEDB"
    )]
    pub libtiledb: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert one input into a .slaf dataset, all in this process.
    ///
    /// Example:
    ///   slaf-convert convert pbmc.h5ad pbmc.slaf
    ///
    /// The matrix is read a batch of cells at a time, so memory is bounded by the batch, not
    /// by the file. The completion marker _SLAF_COMPLETE.json is written last: a directory
    /// without it is not a finished dataset. Killed, the same command resumes, keeping the
    /// shards that finished; on an error the output this run created is removed.
    #[command(verbatim_doc_comment)]
    Convert(ConvertArgs),
    /// Show what a .slaf dataset holds: config summary, each table's schema, row and
    /// fragment counts, and its first rows.
    ///
    /// Example:
    ///   slaf-convert inspect pbmc.slaf --rows 3
    #[command(verbatim_doc_comment)]
    Inspect(InspectArgs),
    /// Check a finished .slaf dataset's invariants and report every violation: the tables
    /// config.json names exist; cell and gene ids run 0..n-1 and names are unique;
    /// expression is grouped by cell with genes ascending and no cell split across
    /// fragments; cell_start_index is each cell's first row (upstream's multi-file
    /// conversions restart it per file, defect B2); config.json's counts, statistics and
    /// multi_file block equal the data; the completion marker describes these tables and the
    /// plan they hold. Exit 0 when valid, 65 with violations. Works on upstream's datasets.
    ///
    /// Example:
    ///   slaf-convert validate pbmc.slaf --json
    #[command(verbatim_doc_comment)]
    Validate(ValidateArgs),
    /// Compact a finished dataset's tables into fewer, larger fragments: adjacent whole
    /// fragments are joined up to --target-rows rows, so no cell is split across fragments
    /// and row order is kept; scalar indices are remapped in the same commit. The marker is
    /// rewritten with the new table versions. The versions before stay readable unless
    /// --remove-old-versions. Safe to kill and re-run.
    ///
    /// Example:
    ///   slaf-convert compact atlas.slaf --target-rows 20000000 --remove-old-versions
    #[command(verbatim_doc_comment)]
    Compact(CompactArgs),
    /// Plan a sharded conversion from a YAML manifest: open every input, fix the schema, cut
    /// the cells into shards, write plan.json. With `mode: append` in the manifest, plan
    /// adding the inputs to the complete dataset at its `output` (shards then staged with -o;
    /// commit checks the dataset has not changed since).
    ///
    /// Example:
    ///   slaf-convert plan manifest.yaml -o plan.json --cells-per-shard 100000 --print-shards
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
    /// Convert one shard of a plan into uncommitted fragments plus a receipt.
    ///
    /// Examples:
    ///   slaf-convert shard plan.json --index 0 -o shard-0/          (staged)
    ///   slaf-convert shard plan.json --shard 1-of-4 --shared-target (into the output,
    ///                                                                 a directory or a URI)
    #[command(verbatim_doc_comment)]
    Shard(ShardArgs),
    /// Commit every shard of a plan: one transaction per table, config.json, then the
    /// completion marker (_SLAF_COMPLETE.json). Safe to run again.
    ///
    /// Examples:
    ///   slaf-convert commit plan.json shard-*/      (staged shard directories)
    ///   slaf-convert commit plan.json               (shared target: receipts under the output)
    #[command(verbatim_doc_comment)]
    Commit(CommitArgs),
    /// Print a JSON Schema: manifest, plan, receipt, completion-marker or log-event.
    Schema {
        /// Which schema.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(slaf_convert::workflow::schemas::NAMES))]
        name: String,
    },
}

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The YAML manifest. Its inputs may be object store URIs (s3://, gs://, az://): an HDF5
    /// file is read where it is (fetched to $TMPDIR with --read-all-values), a 10x directory's
    /// TSVs are fetched and its matrix streamed; the plan names each input by its URI, and each
    /// shard reads its own the same way.
    pub manifest: PathBuf,
    /// Where to write the plan.
    #[arg(short, long, default_value = "plan.json")]
    pub output: PathBuf,
    /// Number of shards to aim for (overrides the manifest).
    #[arg(long, conflicts_with = "cells_per_shard")]
    pub shards: Option<u64>,
    /// Cells per shard, rounded up to whole chunks (overrides the manifest).
    #[arg(long)]
    pub cells_per_shard: Option<u64>,
    /// Print the shard count on stdout (for workflow engines).
    #[arg(long)]
    pub print_shards: bool,
    /// The dataset to create (or, with `mode: append`, to append to), instead of the
    /// manifest's `output` (workflow engines name it). May be an object store URI (s3://,
    /// gs://, az://), as the manifest's `output` may, except for an append.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Read every stored value to decide between uint16 and float32 values. By default a
    /// CSR matrix's type is guessed from its first 65,536 values, which spares the plan a
    /// pass over every value: a shard meeting a value that is not a count then writes it as
    /// float32, and commit rewrites the shards that wrote uint16 (the same dataset, more work).
    #[arg(long)]
    pub read_all_values: bool,
}

/// Arguments of `shard`.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// The plan.
    pub plan: PathBuf,
    /// 0-based shard index.
    #[arg(long, conflicts_with = "shard", required_unless_present = "shard")]
    pub index: Option<usize>,
    /// Shard as I-of-N, 1-based (Snakemake's scatter form).
    #[arg(long)]
    pub shard: Option<String>,
    /// Staged placement: write data files and the receipt into this directory. It must be new,
    /// empty, or an earlier attempt of a shard (which is replaced); anything else is refused.
    #[arg(
        short,
        long,
        conflicts_with = "shared_target",
        required_unless_present = "shared_target"
    )]
    pub output: Option<PathBuf>,
    /// Shared-target placement: write data files straight into the plan's output. An output
    /// at an object store URI is written by Lance in the store itself, the receipt beside it
    /// (or at --receipt); `commit plan.json` then commits there.
    #[arg(long)]
    pub shared_target: bool,
    /// Where to write the receipt (default: in the shard directory, or under the output).
    #[arg(long)]
    pub receipt: Option<PathBuf>,
    /// Where the workflow engine staged the inputs: each is read as DIR/<its path relative
    /// to the manifest's directory> instead of the path the plan saw. Either way its size and
    /// content hash must match the plan's.
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,
}

/// Arguments of `commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The plan.
    pub plan: PathBuf,
    /// Staged shard directories or receipt files (none: the shared-target receipts).
    pub shards: Vec<PathBuf>,
    /// Build the dataset here instead of the plan's output (Nextflow commits inside its own
    /// task directory). May be an object store URI (s3://bucket/x.slaf): staged shard
    /// directories are committed in --temp-dir, then uploaded, the completion marker last;
    /// shards that wrote into the store (--shared-target) are committed there, from the
    /// receipt files given or, given none, those under the dataset.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Where a dataset bound for an object store is built before its upload (default: the
    /// system's temporary directory, $TMPDIR). Needs room for the whole dataset; removed
    /// afterwards, on failure too.
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .slaf directory, or an s3://, gs:// or az:// URI of one.
    pub dataset: PathBuf,
    /// Rows to show per table.
    #[arg(long, default_value_t = 5)]
    pub rows: usize,
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A local .slaf directory.
    pub dataset: PathBuf,
    /// Print the report as one JSON object ({dataset, ok, violations: [{code, place,
    /// message, count, examples}], warnings: [...]}) instead of a line per kind of
    /// violation or warning.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// A local .slaf directory, complete (with its _SLAF_COMPLETE.json).
    pub dataset: PathBuf,
    /// Rows a compacted fragment may hold at most (a fragment already larger stays as it is).
    #[arg(long, default_value_t = slaf_convert::compact::DEFAULT_TARGET_ROWS)]
    pub target_rows: u64,
    /// Delete the tables' versions from before the compaction (and the files only they use).
    #[arg(long)]
    pub remove_old_versions: bool,
}

/// Arguments of `convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Input: an AnnData .h5ad (X as CSR, CSC or dense; layers, obsm, varm, obsp, varp and uns
    /// are converted too), a 10x MTX directory, a Cell Ranger .h5 (v2 or v3), or a TileDB-SOMA
    /// experiment directory (one measurement; needs libtiledb, see --libtiledb). The format is
    /// detected from the content. An object store URI (s3://bucket/pbmc.h5ad, or the prefix
    /// of a 10x directory) is fetched to --temp-dir first.
    #[arg(required_unless_present = "manifest")]
    pub input: Option<PathBuf>,
    /// Output directory to create, e.g. out.slaf. Must not be, contain or lie inside INPUT.
    /// An object store URI (s3://bucket/pbmc.slaf) is written there by Lance, its completion
    /// marker last (with --overwrite over a complete dataset: built in --temp-dir, then
    /// uploaded, so the old one stays whole until then).
    #[arg(required_unless_present_any = ["manifest", "read_only"])]
    pub output: Option<PathBuf>,
    /// Where an input fetched from an object store (and a dataset replacing one there with
    /// --overwrite) is kept while converting (default: the system's temporary directory,
    /// $TMPDIR). Needs room for the input (and that dataset); removed afterwards, on failure
    /// too.
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Convert every input of a YAML manifest instead (plan + every shard + commit, in this
    /// process); the other conversion options come from the manifest.
    #[arg(long, conflicts_with_all = ["input", "output"])]
    pub manifest: Option<PathBuf>,
    /// Cells per chunk; each chunk becomes one Lance fragment (upstream's default is also
    /// 5,000). The matrix streams through in batches of at most 500 cells whatever this is;
    /// memory grows with it only for obsp/varp (a chunk's rows are read at once) and with
    /// --pages one-per-fragment (a fragment's columns are buffered, up to 32 MiB each). Keep
    /// 16 fragments or more: upstream's training dataloader (slaf.ml) shuffles by drawing from
    /// up to 16 fragments at once.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
    /// Replace OUTPUT if it exists: the new dataset is built beside it and swapped in only
    /// once complete, so a failure leaves the old one as it was. (Without this flag, an
    /// OUTPUT left by a killed conversion is resumed, keeping the shards that finished.)
    #[arg(long)]
    pub overwrite: bool,
    /// Add INPUT's cells (or the manifest's inputs') to the complete dataset OUTPUT instead of
    /// creating one: new cell ids and start indices follow the dataset's, genes are matched
    /// by name (the dataset's must be the input's; a manifest's `options.genes: union` adds
    /// new ones at the end), and the dataset's value and id types, compression and parts are
    /// kept; its expression is never rewritten. Readers see the dataset as it was until the
    /// append is complete (built in OUTPUT.slaf-convert-append, then swapped in); a killed
    /// append is resumed by the same command, and one that already finished does nothing.
    #[arg(long, conflicts_with_all = ["overwrite", "read_only"])]
    pub append: bool,
    /// With --append: where the dataset stores counts as uint16 and the input holds other
    /// values (fractions), rewrite the dataset's stored values as float32 (every one, once)
    /// instead of refusing the input (exit 67).
    #[arg(long, requires = "append")]
    pub widen_stored_values: bool,
    /// Read and decode every value and build every record batch exactly as a conversion
    /// does, then drop them: nothing is written and OUTPUT is not needed. bench/ measures
    /// conversions against this floor.
    #[arg(long)]
    pub read_only: bool,
    /// Integer types of expression.lance's id columns.
    #[arg(long, value_enum, default_value_t = Choice(IdTypes::Int32))]
    pub id_types: Choice<IdTypes>,
    /// Compression of the gene ids and values (expression and layers) on top of Lance's
    /// bit-packing; bench/RESULTS.md compares size, speed and query time.
    #[arg(long, value_enum, default_value_t = Choice(Compression::default()))]
    pub compression: Choice<Compression>,
    /// Pages per fragment column of expression.lance: Lance's 8 MiB page buffer gives 2-3;
    /// one-per-fragment writes one, as upstream does: a full pass over the data then takes
    /// 2.6 % fewer instructions, and the write 7-13 % more time (bench/RESULTS.md).
    #[arg(long, value_enum, default_value_t = Choice(Pages::default()))]
    pub pages: Choice<Pages>,
    /// Build scalar indices once the tables are committed: a BTREE on expression's gene ids
    /// makes get_gene_expression about ten times faster, for an index about 2.4 times the
    /// size of those ids (on the benchmark's 100,000 cells: 23 s and 250-380 MiB of memory to
    /// build); also BTREEs on the cell and gene id columns and a zone map on expression's
    /// sorted cell ids.
    #[arg(long)]
    pub create_indices: bool,
    /// What to do with AnnData's `raw` (its own X and var).
    #[arg(long, value_enum, default_value_t = Choice(RawMode::Ignore))]
    pub raw: Choice<RawMode>,
    /// Input format, when detection from the content should not decide.
    #[arg(long, value_enum)]
    pub format: Option<Choice<InputFormat>>,
    /// 10x: which feature column names the genes (gene_id in genes.lance); the other one is
    /// kept as a column (gene_ids or gene_symbols).
    #[arg(long, value_enum, default_value_t = Choice(VarNames::Symbols))]
    pub var_names: Choice<VarNames>,
    /// 10x: make duplicate gene names unique the way scanpy does (second "X" becomes "X-1").
    #[arg(long)]
    pub make_unique: bool,
    /// 10x: keep only features of this type (repeatable), e.g. --feature-types "Gene Expression"
    /// (scanpy's gex_only). Default: keep every feature.
    #[arg(long = "feature-types", value_name = "TYPE")]
    pub feature_types: Vec<String>,
    /// Cell Ranger v2 .h5 with several genomes: the genome group to read.
    #[arg(long)]
    pub genome: Option<String>,
    /// TileDB-SOMA: the measurement to read (ms/<NAME>; default RNA).
    #[arg(long, value_name = "NAME")]
    pub measurement: Option<String>,
    /// TileDB-SOMA: the X layer stored as the expression (default data); the measurement's
    /// other X layers become layers.
    #[arg(long, value_name = "NAME")]
    pub x_layer: Option<String>,
    /// TileDB-SOMA: the obs column naming the cells (cell_id; default obs_id).
    #[arg(long, value_name = "COLUMN")]
    pub obs_id_column: Option<String>,
    /// TileDB-SOMA: the var column naming the genes (gene_id; default var_id).
    #[arg(long, value_name = "COLUMN")]
    pub var_id_column: Option<String>,
}
