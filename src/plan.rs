//! `plan`: open every input, fix the dataset's schema and split the cells into shards.
//!
//! The plan holds everything a shard needs without looking at other shards: the input and
//! its cell range, the global cell offset and the global expression row of the range's first
//! cell (so `cell_start_index` is global, unlike upstream's per-file restart: defect B2), and
//! the value types decided from every value of every input. Shards are whole chunks, never
//! split a cell and never span two inputs. `plan_hash` (blake3 of the plan without the hash)
//! is checked by every later step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{IdTypesName, Manifest};
use crate::pipeline::CellTablesProfile;
use crate::readers::{self, CellRange, InputParts, ReadOptions};
use crate::schema::{expression_id_types, IdTypes, ValueType};

/// Version of the plan file layout.
pub const PLAN_FORMAT: u32 = 1;

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
    /// Genes (the same in every input).
    pub n_genes: u64,
    /// Value and id types of the per-cell tables.
    pub profile: CellTablesProfile,
    /// Layers, obsm/varm, obsp/varp of the inputs.
    pub parts: InputParts,
    /// Inputs in cell order.
    pub inputs: Vec<PlannedInput>,
    /// Shards in cell order.
    pub shards: Vec<PlannedShard>,
}

/// One input of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedInput {
    /// Absolute path.
    pub path: PathBuf,
    /// Reader options.
    pub read: ReadOptions,
    /// Cells.
    pub n_cells: u64,
    /// Global id of its first cell.
    pub cell_offset: u64,
    /// Expression rows it contributes.
    pub rows: u64,
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
}

impl Plan {
    /// Open every input of `manifest` (one full pass over each matrix for the value types and
    /// row counts) and cut the shards.
    pub fn build(manifest: &Manifest, size: ShardSize) -> Result<Plan> {
        let chunk = manifest.options.chunk_size;
        let mut inputs = Vec::new();
        let mut scans = Vec::new();
        let mut first: Option<(
            PathBuf,
            Vec<String>,
            Vec<arrow::datatypes::Field>,
            InputParts,
        )> = None;
        let mut value_type = ValueType::UInt16;
        let mut layer_types: Vec<ValueType> = Vec::new();
        let (mut cell_offset, mut n_genes) = (0u64, 0u64);
        for input in &manifest.inputs {
            let read = input.read_options();
            let mut reader = readers::open(&input.path, &read)?;
            let (_, genes) = reader.genes()?;
            let obs: Vec<_> = reader.obs_fields().to_vec();
            let parts = reader.parts().clone();
            let scan = reader.scan()?;
            tracing::info!(event = "input.scanned", input = %input.path.display(), n_cells = reader.layout().n_cells, expression_rows = scan.total_rows(), "scanned input");
            match &first {
                None => {
                    n_genes = genes.len() as u64;
                    layer_types = scan.layer_types.clone();
                    first = Some((input.path.clone(), genes, obs, parts));
                }
                Some((path0, genes0, obs0, parts0)) => {
                    check_compatible(
                        path0,
                        &input.path,
                        genes0,
                        &genes,
                        obs0,
                        &obs,
                        parts0,
                        &parts,
                    )?;
                    for (t, s) in layer_types.iter_mut().zip(&scan.layer_types) {
                        *t = widest(*t, *s);
                    }
                }
            }
            value_type = widest(value_type, scan.value_type);
            let n_cells = reader.layout().n_cells;
            inputs.push(PlannedInput {
                path: input.path.clone(),
                read,
                n_cells,
                cell_offset,
                rows: scan.total_rows(),
            });
            cell_offset += n_cells;
            scans.push(scan.row_offsets);
        }
        let n_cells = cell_offset;
        let per_shard = shard_cells(size, &manifest.sharding, n_cells, chunk);
        let mut shards = Vec::new();
        let mut row_base = 0u64;
        for (i, input) in inputs.iter().enumerate() {
            for range in CellRange::new(0, input.n_cells).split(per_shard) {
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
        let id_types = match manifest.options.id_types {
            IdTypesName::Int32 => IdTypes::Int32,
            IdTypesName::Compact => IdTypes::Compact,
        };
        let parts = first.map(|f| f.3).unwrap_or_default();
        let mut plan = Plan {
            format_version: PLAN_FORMAT,
            plan_hash: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            output: manifest.output.clone(),
            chunk_size: chunk,
            compact_ids: id_types == IdTypes::Compact,
            n_cells,
            n_genes,
            profile: CellTablesProfile {
                value_type,
                layer_types,
                ids: expression_id_types(id_types, n_cells, n_genes),
            },
            parts,
            inputs,
            shards,
        };
        plan.plan_hash = plan.content_hash();
        Ok(plan)
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::InputMissing {
            path: path.to_path_buf(),
            what: format!("cannot read plan: {e}"),
        })?;
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
        crate::config_json::write_json_file(path, self)
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
    sharding: &crate::manifest::Sharding,
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
        .unwrap_or(u64::MAX);
    // Whole chunks per shard: a fragment is a chunk wherever it was written.
    cells.max(1).div_ceil(chunk).saturating_mul(chunk)
}

#[allow(clippy::too_many_arguments)]
fn check_compatible(
    path0: &Path,
    path: &Path,
    genes0: &[String],
    genes: &[String],
    obs0: &[arrow::datatypes::Field],
    obs: &[arrow::datatypes::Field],
    parts0: &InputParts,
    parts: &InputParts,
) -> Result<()> {
    let (a, b) = (path0.display(), path.display());
    if genes0 != genes {
        let missing: Vec<&String> = genes0
            .iter()
            .filter(|g| !genes.contains(g))
            .take(3)
            .collect();
        let extra: Vec<&String> = genes
            .iter()
            .filter(|g| !genes0.contains(g))
            .take(3)
            .collect();
        let what = if missing.is_empty() && extra.is_empty() {
            "the same genes in another order (re-mapping is not supported yet: reorder the input)"
                .to_string()
        } else {
            format!(
                "different genes ({} has {} genes, e.g. missing {missing:?}, extra {extra:?})",
                b,
                genes.len()
            )
        };
        return Err(Error::IncompatibleInputs {
            what: format!("{b} and {a}: {what}"),
        });
    }
    for f in obs0 {
        match obs.iter().find(|g| g.name() == f.name()) {
            None => {
                return Err(Error::IncompatibleInputs {
                    what: format!("{b}: obs column '{}' of {a} is missing", f.name()),
                })
            }
            Some(g) if g.data_type() != f.data_type() => {
                return Err(Error::IncompatibleInputs {
                    what: format!(
                        "{b}: obs column '{}' is {} but {} in {a}",
                        f.name(),
                        g.data_type(),
                        f.data_type()
                    ),
                })
            }
            Some(_) => {}
        }
    }
    if obs.len() != obs0.len() {
        let extra: Vec<&str> = obs
            .iter()
            .filter(|g| !obs0.iter().any(|f| f.name() == g.name()))
            .map(|g| g.name().as_str())
            .collect();
        return Err(Error::IncompatibleInputs {
            what: format!("{b}: obs columns {extra:?} are not in {a}"),
        });
    }
    if obs0
        .iter()
        .map(|f| f.name())
        .ne(obs.iter().map(|f| f.name()))
    {
        return Err(Error::IncompatibleInputs {
            what: format!(
                "{b}: the obs columns of {a} in another order (reordering is not supported yet)"
            ),
        });
    }
    if parts0.layers != parts.layers {
        return Err(Error::IncompatibleInputs {
            what: format!(
                "{b}: layers {:?} differ from {a}'s {:?}",
                parts.layers, parts0.layers
            ),
        });
    }
    Ok(())
}
