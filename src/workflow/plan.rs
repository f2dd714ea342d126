//! `plan`: open every input, fix the dataset's schema and split the cells into shards.
//!
//! The plan holds everything a shard needs without looking at other shards: the input and
//! its cell range, the global cell offset and the global expression row of the range's first
//! cell (so `cell_start_index` is global, unlike upstream's per-file restart: defect B2), and
//! the value types (from a sample of each matrix, checked by the shards as they write, or
//! with `--read-all-values` from every value). Shards are whole fragments, never
//! split a cell and never span two inputs. It also holds what commit would otherwise have to
//! read from the inputs (the genes table's var columns, `uns`: [`var_table`]) and, per input,
//! a path relative to the manifest and a fingerprint ([`input_files`]), so each later task
//! reads only what its engine staged. `plan_hash` (blake3 of the plan without the hash) is
//! checked by every later step. How genes, obs columns and names are decided: [`dataset`].

pub mod append;
mod build;
mod dataset;
mod input_files;
mod var_table;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

// Fetched inputs are renamed after planning (workflow::fetch, on the writer side).
#[cfg(feature = "writer")]
pub(crate) use self::dataset::source_names;
pub use self::input_files::{check_planned, locate, Fingerprint};

use crate::error::{Error, Result};

use arrow::datatypes::Field;

use crate::cells::InputParts;
use crate::readers::{ReadOptions, ValueScan};
use crate::slaf::column_type::ColumnType;
use crate::slaf::schema::CellTablesProfile;
use crate::workflow::manifest::Manifest;

/// Version of the plan file layout.
pub const PLAN_FORMAT: u32 = 4;

/// A conversion plan (`plan.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format_version: u32,
    /// blake3 of this plan serialised with an empty hash.
    pub plan_hash: String,
    /// slaf-convert version that planned.
    pub tool_version: String,
    /// The dataset to create.
    pub output: PathBuf,
    /// Cells per chunk (= per fragment).
    pub chunk_size: u64,
    /// Upstream's compact id types were asked for.
    pub compact_ids: bool,
    /// Total cells.
    pub n_cells: u64,
    /// Genes of the dataset.
    pub n_genes: u64,
    /// The dataset's gene ids in `gene_integer_id` order (the first input's order; `union`
    /// appends genes of later inputs in the order they first appear).
    pub genes: Vec<String>,
    /// obs columns of `cells.lance` (before the id columns), in order.
    pub obs_columns: Vec<PlannedColumn>,
    /// var columns of `genes.lance` (before the id columns), in order.
    pub var_columns: Vec<PlannedColumn>,
    /// Value and id types of the per-cell tables.
    pub profile: CellTablesProfile,
    /// The uint16 value types were guessed from a sample, not checked on every value
    /// (unless `plan --read-all-values`). A shard meeting a value that does not fit then
    /// writes that part as float32 (commit widens the other shards); with exact types it is
    /// refused (the input changed since the plan).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub types_guessed: bool,
    /// Layers, obsm/varm, obsp/varp written.
    pub parts: InputParts,
    /// Whether `uns.json` is written.
    pub uns: bool,
    /// Whether commit builds the scalar indices (`slaf::indices`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indices: bool,
    /// The var columns of `genes.lance` in gene order: base64 of an Arrow IPC stream (empty
    /// when there are none). Commit reads no input.
    pub var_table: String,
    /// The first input's `uns` as strict JSON (`uns.json`), when written.
    pub uns_document: Option<serde_json::Value>,
    /// Inputs in cell order.
    pub inputs: Vec<PlannedInput>,
    /// Shards in cell order.
    pub shards: Vec<PlannedShard>,
    /// The dataset this plan appends to (manifest `mode: append`): `inputs` are the new
    /// inputs, whose cells and rows follow its own, and `n_cells`, `genes` and the columns
    /// describe the dataset after the append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<append::AppendBase>,
}

/// A column of the dataset: its name and Arrow type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedColumn {
    /// Output column name.
    pub name: String,
    /// Column type, e.g. `"utf8"`, `"float64"`, `{"float32_vector": {"dim": 2}}`.
    pub data_type: ColumnType,
}

impl PlannedColumn {
    fn of(field: &Field) -> Result<Self> {
        let data_type = ColumnType::of(field.data_type()).ok_or_else(|| {
            Error::Internal(format!(
                "column {}: a reader gave the type {}, which plans cannot carry",
                field.name(),
                field.data_type()
            ))
        })?;
        Ok(PlannedColumn {
            name: field.name().clone(),
            data_type,
        })
    }

    /// The nullable Arrow field.
    pub fn field(&self) -> Result<Field> {
        Ok(Field::new(&self.name, self.data_type.data_type(), true))
    }

    /// Fields of `columns`.
    pub fn fields(columns: &[PlannedColumn]) -> Result<Vec<Field>> {
        columns.iter().map(PlannedColumn::field).collect()
    }
}

/// One input of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedInput {
    /// Absolute path, where the plan found it.
    pub path: PathBuf,
    /// Path relative to the manifest's directory (absolute for an input outside it): a task
    /// given `--inputs DIR` reads `DIR/<relative>`.
    pub relative: PathBuf,
    /// Size and content hash: a different file at the path is refused.
    pub fingerprint: Fingerprint,
    /// Its name in the `source_file` column and the `multi_file` config block.
    pub source_name: String,
    /// Reader options.
    pub read: ReadOptions,
    /// Cells.
    pub n_cells: u64,
    /// Global id of its first cell.
    pub cell_offset: u64,
    /// Expression rows it contributes.
    pub rows: u64,
    /// Its genes are re-mapped to the dataset's order (another order, or union/intersection).
    pub genes_remapped: bool,
    /// Its genes the dataset leaves out (`intersection`).
    pub genes_dropped: u64,
    /// Dataset obs columns it lacks (null for its cells).
    pub obs_missing: Vec<String>,
}

/// One shard: a cell range of one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedShard {
    /// 0-based index.
    pub index: usize,
    /// Index into [`Plan::inputs`].
    pub input: usize,
    /// First cell, local to the input.
    pub start: u64,
    /// One past the last cell, local to the input.
    pub end: u64,
    /// Global expression row of the shard's first cell.
    pub row_offset: u64,
    /// Expression rows the shard must write.
    pub rows: u64,
}

/// How to cut shards (from the manifest or the command line).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardSize {
    /// Cells per shard.
    pub cells_per_shard: Option<u64>,
    /// Number of shards to aim for.
    pub shards: Option<u64>,
    /// Fewest cells a shard should have (each shard pays for opening its input and draining
    /// the writer), whatever `shards` asks.
    pub min_cells_per_shard: Option<u64>,
}

impl Plan {
    /// Open every input of `manifest`, decide the dataset's genes and columns, make one full
    /// pass over each matrix (value types, rows per cell) and cut the shards.
    pub fn build(manifest: &Manifest, size: ShardSize) -> Result<Plan> {
        Self::build_scanning(manifest, size, ValueScan::Full)
    }

    /// [`Plan::build_scanning`] of a manifest that creates a dataset.
    pub fn build_scanning(manifest: &Manifest, size: ShardSize, values: ValueScan) -> Result<Plan> {
        Self::build_onto(manifest, size, values, None)
    }

    /// The var columns of `genes.lance` (see [`Plan::var_table`]); `path` names the plan.
    pub fn var_batch(&self, path: &Path) -> Result<arrow::array::RecordBatch> {
        let fields = PlannedColumn::fields(&self.var_columns)?;
        var_table::decode(
            &self.var_table,
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            self.genes.len(),
            path,
        )
    }

    /// Whether the dataset combines several inputs (`source_file` column, `multi_file` block).
    pub fn is_multi_file(&self) -> bool {
        self.inputs.len() > 1 || self.append.is_some()
    }

    /// Expression rows of the dataset once committed (an append's and the dataset's).
    pub fn total_rows(&self) -> u64 {
        let base = self.append.as_ref().map_or(0, |b| b.expression_rows);
        base + self.inputs.iter().map(|i| i.rows).sum::<u64>()
    }

    /// blake3 of the plan with an empty `plan_hash`.
    pub fn content_hash(&self) -> String {
        let mut copy = self.clone();
        copy.plan_hash = String::new();
        let bytes = serde_json::to_vec(&copy).expect("a plan serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Read `path` and check its hash and format version.
    pub fn load(path: &Path) -> Result<Plan> {
        let text = crate::workflow::manifest::read_text(
            path,
            "plan",
            4 * crate::workflow::manifest::MAX_MANIFEST_BYTES,
        )?;
        let plan: Plan = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not a slaf-convert plan: {e}")))?;
        if plan.format_version != PLAN_FORMAT {
            return Err(Error::invalid(
                path,
                format!(
                    "plan format {} (this slaf-convert reads {PLAN_FORMAT})",
                    plan.format_version
                ),
            ));
        }
        if plan.content_hash() != plan.plan_hash {
            return Err(Error::invalid(
                path,
                "plan_hash does not match the plan's content (edited by hand?)",
            ));
        }
        let paths = std::iter::once(("output", &plan.output, true))
            .chain(plan.inputs.iter().map(|i| ("input", &i.path, true)));
        for (key, p, stores) in paths {
            crate::location::check_path(p, key, stores)
                .map_err(|what| Error::invalid(path, what))?;
        }
        Ok(plan)
    }

    /// Write the plan to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::json_file::write_json_file(path, self)
    }

    /// The shard with 0-based `index`.
    pub fn shard(&self, index: usize) -> Result<&PlannedShard> {
        self.shards.get(index).ok_or_else(|| {
            Error::Usage(format!(
                "shard {index} does not exist: the plan has {} shards (0..{})",
                self.shards.len(),
                self.shards.len()
            ))
        })
    }
}
