//! What a plan knows of the dataset it appends to (manifest `mode: append`): the dataset as
//! its completion marker describes it ([`DatasetRecord`], [`AppendBase`]), and the checks
//! that decide whether new inputs can join it without rewriting its expression: the stored
//! value types hold the new values (unless `options.widen_stored_values` lets them be
//! rewritten), the id types number the new cells, no obs column is new, no input is
//! appended twice.
//!
//! Reading the dataset (Lance) and committing the append are the writer's
//! (`workflow::commit::append`); this module is data and rules only, so plans load without
//! Lance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field};
use serde::{Deserialize, Serialize};

use super::{Fingerprint, PlannedColumn};
use crate::cells::InputParts;
use crate::error::{Error, Result};
use crate::slaf::config_json::SourceFile;
use crate::slaf::schema::CellTablesProfile;
use crate::slaf::value_stats::ValueStats;
use crate::values::ValueType;

/// What a complete dataset is, as its completion marker records it: enough to extend it
/// without reading its expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DatasetRecord {
    /// Cells per fragment the dataset was written with.
    pub chunk_size: u64,
    /// Value and id types, compression and pages of expression and layers.
    pub profile: CellTablesProfile,
    /// obs columns of `cells.lance` (before the id columns), in order.
    pub obs_columns: Vec<PlannedColumn>,
    /// var columns of `genes.lance` (before the id columns), in order.
    pub var_columns: Vec<PlannedColumn>,
    /// Layers, obsm/varm, obsp/varp the dataset holds.
    pub parts: InputParts,
    /// Whether `cells.lance` has the `source_file` column (several inputs).
    pub source_file_column: bool,
    /// Every input whose cells the dataset holds, in cell order (config's `multi_file`).
    pub source_files: Vec<SourceFile>,
    /// Statistics of every stored value, merged fragment by fragment in dataset order: an
    /// append continues the same fold, so its config equals a one-run conversion's.
    pub stats: ValueStats,
    /// Whether the dataset has scalar indices (an append rebuilds them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indices: bool,
    /// How many of the marker's inputs (the last ones) the commit that wrote it appended
    /// (0: it converted them): a retried append of those has nothing to do.
    #[serde(default)]
    pub appended_inputs: u64,
}

/// An input as the completion marker records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MarkerInput {
    /// Path.
    pub path: PathBuf,
    /// Size in bytes (a directory: the sum of its files), when planned.
    pub bytes: u64,
    /// Modification time, seconds since the epoch, when planned.
    pub modified: u64,
    /// Content fingerprint (see the plan's `fingerprint.content`): an append refuses an
    /// input the dataset already holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The dataset an append plan extends, as it was when planned. Commit refuses to append
/// when the dataset's marker no longer says this (another append or conversion came first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AppendBase {
    /// The dataset (the manifest's `output`).
    pub dataset: PathBuf,
    /// The plan its marker names.
    pub plan_hash: String,
    /// Lance version of each of its tables.
    pub tables: BTreeMap<String, u64>,
    /// Its cells.
    pub n_cells: u64,
    /// Its genes.
    pub n_genes: u64,
    /// Its expression rows.
    pub expression_rows: u64,
    /// Its inputs, as its marker lists them.
    pub inputs: Vec<MarkerInput>,
    /// What it holds.
    pub record: DatasetRecord,
}

/// A dataset opened for appending: its base, and what planning reads from its genes table.
pub struct Existing {
    /// The dataset as its marker describes it.
    pub base: AppendBase,
    /// Its gene ids in `gene_integer_id` order.
    pub genes: Vec<String>,
    /// Its var columns (`record.var_columns`) in gene order.
    pub var: RecordBatch,
}

impl Existing {
    /// Its obs columns as Arrow fields.
    pub fn obs_fields(&self) -> Result<Vec<Field>> {
        PlannedColumn::fields(&self.base.record.obs_columns)
    }

    /// Refuse new inputs that hold no new cells for it: an input it already holds
    /// (same size and content fingerprint), which a retried append would otherwise add twice.
    pub fn check_not_held(&self, path: &Path, fingerprint: &Fingerprint) -> Result<()> {
        let held = self.base.inputs.iter().find(|i| {
            i.bytes == fingerprint.bytes
                && i.content.as_deref() == Some(fingerprint.content.as_str())
        });
        match held {
            Some(i) => Err(Error::IncompatibleInputs {
                path: path.to_path_buf(),
                what: format!(
                    "is already in {} (appended as {}): an input is appended once",
                    self.base.dataset.display(),
                    i.path.display()
                ),
            }),
            None => Ok(()),
        }
    }

    /// Refuse an input whose obs columns the dataset cannot take without rewriting its cells
    /// table: a column it does not have, or one of another type. An obsm key of the input
    /// (`obsm_keys`) the dataset has no column for is left out, as when it was converted
    /// without obsm.
    pub fn check_obs(
        &self,
        path: &Path,
        obs: &[Field],
        obsm_keys: &[(String, usize)],
    ) -> Result<()> {
        let dataset = self.obs_fields()?;
        for f in obs {
            match dataset.iter().find(|g| g.name() == f.name()) {
                None if obsm_keys.iter().any(|(k, _)| k == f.name()) => {}
                None => {
                    return Err(Error::IncompatibleInputs {
                        path: path.to_path_buf(),
                        what: format!(
                        "has obs column '{}', which {} has not (an append adds cells, not columns)",
                        f.name(),
                        self.base.dataset.display()
                    ),
                    })
                }
                Some(g) if g.data_type() != f.data_type() => {
                    return Err(Error::IncompatibleInputs {
                        path: path.to_path_buf(),
                        what: format!(
                            "obs column '{}' is {} but {} in {}",
                            f.name(),
                            f.data_type(),
                            g.data_type(),
                            self.base.dataset.display()
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Refuse an input whose layers differ from the dataset's (a dataset without layers
    /// takes none of the input's).
    pub fn check_layers(&self, path: &Path, parts: &InputParts) -> Result<()> {
        let have = &self.base.record.parts.layers;
        if &parts.layers == have || have.is_empty() {
            return Ok(());
        }
        Err(Error::IncompatibleInputs {
            path: path.to_path_buf(),
            what: format!(
                "layers {:?} differ from {}'s {:?}",
                parts.layers,
                self.base.dataset.display(),
                have
            ),
        })
    }

    /// Refuse values the dataset's stored types cannot hold (fractional values into uint16),
    /// without `options.widen_stored_values`.
    pub fn check_value_types(
        &self,
        path: &Path,
        value_type: ValueType,
        layer_types: &[ValueType],
    ) -> Result<()> {
        let profile = &self.base.record.profile;
        let too_wide = |have: ValueType, need: ValueType| {
            have == ValueType::UInt16 && need != ValueType::UInt16
        };
        let part = if too_wide(profile.value_type, value_type) {
            Some("X".to_string())
        } else {
            (profile.layer_types.iter().zip(layer_types))
                .position(|(&have, &need)| too_wide(have, need))
                .map(|i| format!("layer '{}'", self.base.record.parts.layers[i]))
        };
        match part {
            Some(part) => Err(Error::IncompatibleInputs {
                path: path.to_path_buf(),
                what: format!(
                    "{part} holds values that are not integers in 0..=65535, but {} stores {part} as uint16: set options.widen_stored_values (convert --widen-stored-values) to rewrite its values as float32",
                    self.base.dataset.display()
                ),
            }),
            None => Ok(()),
        }
    }

    /// Refuse totals the dataset's id types cannot number (compact ids: uint32 cells,
    /// uint16 genes).
    pub fn check_ids(&self, n_cells: u64, n_genes: u64) -> Result<()> {
        let ids = &self.base.record.profile.ids;
        let limit = |t: &DataType| match t {
            DataType::UInt16 => u16::MAX as u64 + 1,
            DataType::UInt32 => u32::MAX as u64 + 1,
            _ => i32::MAX as u64 + 1,
        };
        for (what, n, t) in [("cells", n_cells, &ids.cell), ("genes", n_genes, &ids.gene)] {
            if n > limit(t) {
                return Err(Error::IncompatibleInputs {
                    path: self.base.dataset.clone(),
                    what: format!(
                        "stores {what} ids as {t}, which cannot number the {n} {what} the append would give it"
                    ),
                });
            }
        }
        Ok(())
    }
}
