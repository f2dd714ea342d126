//! `plan`: open every input, fix the dataset's schema and split the cells into shards.
//!
//! The plan holds everything a shard needs without looking at other shards: the input and
//! its cell range, the global cell offset and the global expression row of the range's first
//! cell (so `cell_start_index` is global, unlike upstream's per-file restart: defect B2), and
//! the value types decided from every value of every input. Shards are whole chunks, never
//! split a cell and never span two inputs. It also holds what commit would otherwise have to
//! read from the inputs (the genes table's var columns, `uns`: [`var_table`]) and, per input,
//! a path relative to the manifest and a fingerprint ([`input_files`]), so each later task
//! reads only what its engine staged. `plan_hash` (blake3 of the plan without the hash) is
//! checked by every later step. How genes, obs columns and names are decided: [`dataset`].

mod dataset;
mod input_files;
mod var_table;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use self::dataset::{dataset_genes, dataset_obs, kept_row_offsets, source_names, InputMeta};
pub use self::input_files::{locate, Fingerprint};
use self::var_table::InputVar;

use crate::error::{Error, Result};

use arrow::datatypes::Field;

use crate::cells::{CellRange, GeneMap, InputParts};
use crate::readers::{self, ReadOptions, ValueScan};
use crate::slaf::column_type::ColumnType;
use crate::slaf::schema::{expression_id_types, CellTablesProfile, IdTypes};
use crate::values::ValueType;
use crate::workflow::manifest::Manifest;

/// Version of the plan file layout.
pub const PLAN_FORMAT: u32 = 3;

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
    /// (`convert` only; a `plan` file always has exact types). Shards refuse a value that
    /// does not fit either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub types_guessed: bool,
    /// Layers, obsm/varm, obsp/varp written.
    pub parts: InputParts,
    /// Whether `uns.json` is written.
    pub uns: bool,
    /// The var columns of `genes.lance` in gene order: base64 of an Arrow IPC stream (empty
    /// when there are none). Commit reads no input.
    pub var_table: String,
    /// The first input's `uns` as strict JSON (`uns.json`), when written.
    pub uns_document: Option<serde_json::Value>,
    /// Inputs in cell order.
    pub inputs: Vec<PlannedInput>,
    /// Shards in cell order.
    pub shards: Vec<PlannedShard>,
}

/// A column of the dataset: its name and Arrow type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedColumn {
    /// Output column name.
    pub name: String,
    /// Arrow data type, e.g. `"utf8"`, `"float64"`, `{"float32_vector": {"dim": 2}}`.
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

    /// [`Plan::build`], reading as much of the values as `values` says: with
    /// [`ValueScan::RowsOnly`] a CSR input's values are not read at all (`convert` reads X
    /// once, when it writes it).
    pub fn build_scanning(manifest: &Manifest, size: ShardSize, values: ValueScan) -> Result<Plan> {
        let options = &manifest.options;
        let chunk = options.chunk_size;
        let multi_file = manifest.inputs.len() > 1;
        let mut metas = Vec::with_capacity(manifest.inputs.len());
        for input in &manifest.inputs {
            let mut reader = readers::open(&input.path, &input.read_options())?;
            let fingerprint = Fingerprint::of(&input.path)?;
            let (var, genes) = reader.genes()?;
            metas.push(InputMeta {
                genes,
                var,
                fingerprint,
                reader,
            });
        }
        let paths: Vec<&Path> = manifest.inputs.iter().map(|i| i.path.as_path()).collect();
        let genes = dataset_genes(&paths, &metas, options.genes)?;
        let obs = dataset_obs(&paths, &metas, options.missing_obs_columns)?;
        let first = &metas[0];
        for (path, meta) in paths.iter().zip(&metas).skip(1) {
            if meta.parts().layers != first.parts().layers {
                return Err(Error::IncompatibleInputs {
                    path: path.to_path_buf(),
                    what: format!(
                        "layers {:?} differ from {}'s {:?}",
                        meta.parts().layers,
                        paths[0].display(),
                        first.parts().layers
                    ),
                });
            }
        }
        if multi_file {
            if let Some(f) = obs.iter().find(|f| f.name() == crate::columns::SOURCE_FILE) {
                return Err(Error::IncompatibleInputs {
                    path: paths[0].to_path_buf(),
                    what: format!(
                        "obs column '{}' clashes with the source_file column of a multi-input dataset (rename it)",
                        f.name()
                    ),
                });
            }
        }
        let mut parts = first.parts().clone();
        if !options.layers {
            parts.layers.clear();
        }
        if !options.obsm {
            parts.obsm.clear();
        }
        parts
            .obsm
            .retain(|(k, _)| obs.iter().any(|f| f.name() == k));
        if !options.varm {
            parts.varm.clear();
        }
        if !options.obsp || multi_file {
            parts.obsp.clear();
        }
        if !options.varp || multi_file {
            parts.varp.clear();
        }
        if multi_file && (!first.parts().obsp.is_empty() || !first.parts().varp.is_empty()) {
            tracing::warn!(
                event = "input.skipped",
                "obsp/varp/uns are not combined across inputs: left out"
            );
        }
        let is_vector_key =
            |f: &Field, keys: &[(String, usize)]| keys.iter().any(|(k, _)| k == f.name());
        let obs: Vec<Field> = obs
            .into_iter()
            .filter(|f| options.obsm || !is_vector_key(f, &first.parts().obsm))
            .collect();
        let var: Vec<Field> = first
            .var()
            .iter()
            .filter(|f| options.varm || !is_vector_key(f, &first.parts().varm))
            .cloned()
            .collect();
        let source_names = source_names(&paths);

        let mut inputs = Vec::new();
        let mut scans = Vec::new();
        let mut value_type = ValueType::UInt16;
        let mut types_guessed = false;
        let mut layer_types: Vec<ValueType> = Vec::new();
        let mut cell_offset = 0u64;
        for (i, (input, meta)) in manifest.inputs.iter().zip(&mut metas).enumerate() {
            let mut read = input.read_options();
            let reader = &mut meta.reader;
            let map = GeneMap::between(&meta.genes, &genes)
                .map_err(|what| Error::invalid(&input.path, what))?;
            let mut scan = reader.scan(values)?;
            types_guessed |= scan.types_guessed;
            read.tenx.cells_sorted = reader.cells_sorted();
            if let Some(map) = map.as_ref().filter(|m| m.dropped() > 0) {
                // Dropped genes change every cell's row count: count what is kept.
                scan.row_offsets = kept_row_offsets(reader.as_mut(), map, chunk)?;
            }
            tracing::info!(event = "input.scanned", input = %input.path.display(), n_cells = reader.layout().n_cells, expression_rows = scan.total_rows(), "scanned input");
            if i == 0 {
                layer_types = scan.layer_types.clone();
            } else {
                for (t, s) in layer_types.iter_mut().zip(&scan.layer_types) {
                    *t = widest(*t, *s);
                }
            }
            value_type = widest(value_type, scan.value_type);
            let n_cells = reader.layout().n_cells;
            let obs_missing = obs
                .iter()
                .filter(|f| !meta.obs().iter().any(|g| g.name() == f.name()))
                .map(|f| f.name().clone())
                .collect();
            let absolute =
                std::path::absolute(&input.path).map_err(|e| Error::io(&input.path, e))?;
            let base = match manifest.base.as_os_str().is_empty() {
                true => absolute.parent().unwrap_or(Path::new("/")).to_path_buf(),
                false => manifest.base.clone(),
            };
            inputs.push(PlannedInput {
                relative: input_files::relative_to(&absolute, &base),
                fingerprint: meta.fingerprint.clone(),
                path: input.path.clone(),
                source_name: source_names[i].clone(),
                read,
                n_cells,
                cell_offset,
                rows: scan.total_rows(),
                genes_remapped: map.is_some(),
                genes_dropped: map.as_ref().map_or(0, |m| m.dropped() as u64),
                obs_missing,
            });
            cell_offset += n_cells;
            scans.push(scan.row_offsets);
        }
        if !options.layers {
            layer_types.clear();
        }
        let n_cells = cell_offset;
        let n_genes = genes.len() as u64;
        let per_shard = shard_cells(size, &manifest.sharding, n_cells, chunk);
        let mut shards = Vec::new();
        let mut row_base = 0u64;
        for (i, input) in inputs.iter().enumerate() {
            let mut ranges: Vec<CellRange> =
                CellRange::new(0, input.n_cells).split(per_shard).collect();
            if ranges.is_empty() {
                // An input without cells still has a shard: it writes the varp rows.
                ranges.push(CellRange::new(0, 0));
            }
            for range in ranges {
                let offsets = &scans[i];
                shards.push(PlannedShard {
                    index: shards.len(),
                    input: i,
                    start: range.start,
                    end: range.end,
                    row_offset: row_base + offsets[range.start as usize],
                    rows: offsets[range.end as usize] - offsets[range.start as usize],
                });
            }
            row_base += input.rows;
        }
        let id_types = options.id_types;
        let var_columns: Vec<PlannedColumn> =
            var.iter().map(PlannedColumn::of).collect::<Result<_>>()?;
        let var_inputs: Vec<InputVar> = paths
            .iter()
            .zip(&metas)
            .map(|(&path, meta)| InputVar {
                path,
                var: &meta.var,
                names: &meta.genes,
            })
            .collect();
        let var_batch =
            var_table::dataset_var(&genes, &PlannedColumn::fields(&var_columns)?, &var_inputs)?;
        let uns = options.uns && !multi_file;
        let uns_document = match uns {
            true => metas[0].reader.uns()?,
            false => None,
        };
        let mut plan = Plan {
            format_version: PLAN_FORMAT,
            plan_hash: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            output: manifest.output.clone(),
            chunk_size: chunk,
            compact_ids: id_types == IdTypes::Compact,
            n_cells,
            n_genes,
            genes,
            obs_columns: obs.iter().map(PlannedColumn::of).collect::<Result<_>>()?,
            var_columns,
            profile: CellTablesProfile {
                value_type,
                layer_types,
                ids: expression_id_types(id_types, n_cells, n_genes),
                compression: options.compression,
            },
            types_guessed,
            parts,
            uns,
            var_table: var_table::encode(&var_batch)?,
            uns_document,
            inputs,
            shards,
        };
        plan.plan_hash = plan.content_hash();
        Ok(plan)
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
        self.inputs.len() > 1
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

/// The narrower type only when both are narrow.
fn widest(a: ValueType, b: ValueType) -> ValueType {
    if a == ValueType::UInt16 && b == ValueType::UInt16 {
        ValueType::UInt16
    } else {
        ValueType::Float32
    }
}

fn shard_cells(
    size: ShardSize,
    sharding: &crate::workflow::manifest::Sharding,
    n_cells: u64,
    chunk: u64,
) -> u64 {
    let cells = size
        .cells_per_shard
        .or(sharding.cells_per_shard)
        .or_else(|| {
            size.shards
                .or(sharding.shards)
                .map(|n| n_cells.div_ceil(n.max(1)))
        })
        .unwrap_or(u64::MAX)
        .max(size.min_cells_per_shard.unwrap_or(1));
    // Whole chunks per shard: a fragment is a chunk wherever it was written.
    cells.max(1).div_ceil(chunk).saturating_mul(chunk)
}
