//! `config.json`: its model, the exact value statistics behind it, and the atomic write.
//!
//! Statistics are accumulated in f64 over every stored value as written (after the cast to
//! the value type), chunk by chunk, and merged with Chan's parallel formula, so a shard can
//! summarise its own values and a commit can reduce the summaries exactly. Upstream squares
//! uint16 values before widening and gets std wrong (defect B17).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// SLAF format version written into `config.json`.
pub const FORMAT_VERSION: &str = "0.5";
/// File name of the config inside a dataset.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the uns document inside a dataset.
pub const UNS_FILE: &str = "uns.json";
/// Table directory of the layers.
pub const LAYERS_TABLE: &str = "layers.lance";
/// Table directory of obsp.
pub const CELLSXCELLS_TABLE: &str = "cellsxcells.lance";
/// Table directory of varp.
pub const GENESXGENES_TABLE: &str = "genesxgenes.lance";

/// Count, min, max, mean and sum of squared deviations of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ValueStats {
    /// Number of values.
    pub count: u64,
    /// Smallest value (`+inf` when empty).
    pub min: f64,
    /// Largest value (`-inf` when empty).
    pub max: f64,
    /// Running mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Default for ValueStats {
    fn default() -> Self {
        ValueStats {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
        }
    }
}

impl ValueStats {
    /// Statistics of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        // Two passes would need the values twice; Welford's update is exact enough in f64.
        let mut s = ValueStats::default();
        for v in values {
            s.count += 1;
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            let delta = v - s.mean;
            s.mean += delta / s.count as f64;
            s.m2 += delta * (v - s.mean);
        }
        s
    }

    /// The statistics of a chunk's values: two tight passes (sum, then squared deviations
    /// from the mean) instead of Welford's division per value; as exact for one chunk.
    pub fn of_f32(values: &[f32]) -> Self {
        if values.is_empty() {
            return ValueStats::default();
        }
        // min/max in f32 (exact: the values are f32) so the loop vectorises.
        let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64);
        for &v in values {
            min = min.min(v);
            max = max.max(v);
            sum += v as f64;
        }
        let (min, max) = (min as f64, max as f64);
        let count = values.len() as u64;
        let mean = sum / count as f64;
        let m2 = values
            .iter()
            .map(|&v| {
                let d = v as f64 - mean;
                d * d
            })
            .sum();
        ValueStats {
            count,
            min,
            max,
            mean,
            m2,
        }
    }

    /// Combine with the statistics of a disjoint set of values.
    pub fn merge(&mut self, other: &ValueStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Sample standard deviation (n − 1), as upstream reports it; 0 for fewer than 2 values.
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }
}

/// Everything `config.json` says about a dataset.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    /// Cells.
    pub n_cells: u64,
    /// Genes.
    pub n_genes: u64,
    /// Statistics over every expression row.
    pub stats: ValueStats,
    /// Whether expression uses upstream's compact id types.
    pub compact_ids: bool,
    /// String columns of an *empty* cells table. Upstream's reader divides by the row count
    /// of every string column it does not find in `obs_dtypes` (to guess categoricals), so a
    /// zero-cell dataset fails to open unless they are listed; they are listed as "object",
    /// which it maps back to a string cast (a no-op).
    pub empty_obs_strings: Vec<String>,
    /// The same for an empty genes table (`var_dtypes`).
    pub empty_var_strings: Vec<String>,
    /// Layers, obsm/varm, obsp/varp that were written.
    pub parts: crate::readers::InputParts,
    /// The `multi_file` block (several inputs).
    pub multi_file: Option<MultiFile>,
}

/// `config.json` `multi_file` (docs/slaf-format.md §3.2), complete: every input is listed,
/// unlike upstream after a resumed run (defect B14).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MultiFile {
    /// Inputs in cell order.
    pub source_files: Vec<SourceFile>,
    /// Number of inputs.
    pub total_files: u64,
    /// Sum of their cells.
    pub total_cells_from_files: u64,
}

/// One entry of `multi_file.source_files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceFile {
    /// The input's path.
    pub file_path: String,
    /// Its `source_file` value in cells.lance.
    pub file_name: String,
    /// Its cells.
    pub n_cells: u64,
    /// Global id of its first cell.
    pub cell_offset: u64,
}

impl MultiFile {
    /// The block for a plan's inputs.
    pub fn of(plan: &crate::plan::Plan) -> MultiFile {
        MultiFile {
            source_files: plan
                .inputs
                .iter()
                .map(|i| SourceFile {
                    file_path: i.path.display().to_string(),
                    file_name: i.source_name.clone(),
                    n_cells: i.n_cells,
                    cell_offset: i.cell_offset,
                })
                .collect(),
            total_files: plan.inputs.len() as u64,
            total_cells_from_files: plan.n_cells,
        }
    }
}

/// `config.json` as written, fields in upstream's order (docs/slaf-format.md §3.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigJson {
    /// Always [`FORMAT_VERSION`].
    pub format_version: String,
    /// `[n_cells, n_genes]`: what the reader uses for the shape.
    pub array_shape: [u64; 2],
    /// Cells.
    pub n_cells: u64,
    /// Genes.
    pub n_genes: u64,
    /// Table directories relative to the dataset root.
    pub tables: Tables,
    /// Informational flags upstream records.
    pub optimizations: Optimizations,
    /// Counts and value statistics.
    pub metadata: Metadata,
    /// Where the cells came from, for a dataset made of several inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_file: Option<MultiFile>,
    /// Local time of writing, ISO 8601 without zone (as upstream).
    pub created_at: String,
    /// Layers block, when `layers.lance` was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Block>,
    /// obsm keys (vector columns of cells.lance) and their dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obsm: Option<Block>,
    /// varm keys (vector columns of genes.lance) and their dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub varm: Option<Block>,
    /// obsp keys (columns of cellsxcells.lance), dimension n_cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obsp: Option<Block>,
    /// varp keys (columns of genesxgenes.lance), dimension n_genes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub varp: Option<Block>,
    /// Dtype hints for the reader's obs columns (see [`DatasetSummary::empty_obs_strings`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obs_dtypes: Option<serde_json::Map<String, Value>>,
    /// Dtype hints for the reader's var columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var_dtypes: Option<serde_json::Map<String, Value>>,
}

/// `config.json` `tables`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tables {
    /// `expression.lance`.
    pub expression: String,
    /// `cells.lance`.
    pub cells: String,
    /// `genes.lance`.
    pub genes: String,
    /// `layers.lance`, when the input has layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<String>,
    /// `cellsxcells.lance`, when the input has obsp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cellsxcells: Option<String>,
    /// `genesxgenes.lance`, when the input has varp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesxgenes: Option<String>,
}

/// A `layers`/`obsm`/`varm`/`obsp`/`varp` block (docs/slaf-format.md §3.1): what the reader
/// lists, all converted keys immutable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Block {
    /// Keys present.
    pub available: Vec<String>,
    /// Keys the reader must not modify (all converted ones).
    pub immutable: Vec<String>,
    /// Keys added later by the reader (none).
    pub mutable: Vec<String>,
    /// Per key: vector length (obsm/varm) or matrix side (obsp/varp); absent for layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<std::collections::BTreeMap<String, u64>>,
}

impl Block {
    /// A block listing `keys`, `None` when there are none; `dims` gives each key's dimension.
    pub fn of(keys: &[String], dims: Option<&dyn Fn(usize) -> u64>) -> Option<Block> {
        if keys.is_empty() {
            return None;
        }
        Some(Block {
            available: keys.to_vec(),
            immutable: keys.to_vec(),
            mutable: Vec::new(),
            dimensions: dims.map(|d| {
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| (k.clone(), d(i)))
                    .collect()
            }),
        })
    }
}

/// `config.json` `optimizations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Optimizations {
    /// Integer id columns are present (always).
    pub use_integer_keys: bool,
    /// Expression holds only integer ids, no string ids (always).
    pub optimize_storage: bool,
    /// Expression ids are upstream's compact uint32/uint16.
    pub use_optimized_dtypes: bool,
}

/// `config.json` `metadata`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    /// Rows of expression.lance.
    pub expression_count: u64,
    /// 1 − density.
    pub sparsity: f64,
    /// expression_count / (n_cells · n_genes); 0 for an empty shape.
    pub density: f64,
    /// n_cells · n_genes.
    pub total_possible_elements: u64,
    /// Statistics over every stored value.
    pub expression_stats: ExpressionStats,
}

/// `config.json` `metadata.expression_stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpressionStats {
    /// Smallest value (0 when there are none).
    pub min_value: f64,
    /// Largest value.
    pub max_value: f64,
    /// Mean.
    pub mean_value: f64,
    /// Sample standard deviation (n − 1).
    pub std_value: f64,
}

/// Build the `config.json` document (docs/slaf-format.md §3.1, Appendix A item 1).
pub fn config_document(summary: &DatasetSummary, created_at: &str) -> ConfigJson {
    let DatasetSummary {
        n_cells,
        n_genes,
        stats,
        parts,
        ..
    } = summary;
    let names = |keys: &[(String, usize)]| keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let total_possible = n_cells.saturating_mul(*n_genes);
    let count = stats.count;
    // An empty shape has nothing to be sparse about: report density 0, never NaN.
    let density = if total_possible > 0 {
        count as f64 / total_possible as f64
    } else {
        0.0
    };
    let (min, max, mean, std) = if count == 0 {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (stats.min, stats.max, stats.mean, stats.std())
    };
    let hints = |columns: &Vec<String>| {
        (!columns.is_empty()).then(|| {
            columns
                .iter()
                .map(|c| (c.clone(), json!({"dtype": "object"})))
                .collect()
        })
    };
    ConfigJson {
        format_version: FORMAT_VERSION.to_string(),
        array_shape: [*n_cells, *n_genes],
        n_cells: *n_cells,
        n_genes: *n_genes,
        tables: Tables {
            expression: "expression.lance".into(),
            cells: "cells.lance".into(),
            genes: "genes.lance".into(),
            layers: (!parts.layers.is_empty()).then(|| LAYERS_TABLE.into()),
            cellsxcells: (!parts.obsp.is_empty()).then(|| CELLSXCELLS_TABLE.into()),
            genesxgenes: (!parts.varp.is_empty()).then(|| GENESXGENES_TABLE.into()),
        },
        optimizations: Optimizations {
            use_integer_keys: true,
            optimize_storage: true,
            use_optimized_dtypes: summary.compact_ids,
        },
        metadata: Metadata {
            expression_count: count,
            sparsity: 1.0 - density,
            density,
            total_possible_elements: total_possible,
            expression_stats: ExpressionStats {
                min_value: min,
                max_value: max,
                mean_value: mean,
                std_value: std,
            },
        },
        multi_file: summary.multi_file.clone(),
        created_at: created_at.to_string(),
        layers: Block::of(&parts.layers, None),
        obsm: Block::of(&names(&parts.obsm), Some(&|i| parts.obsm[i].1 as u64)),
        varm: Block::of(&names(&parts.varm), Some(&|i| parts.varm[i].1 as u64)),
        obsp: Block::of(&parts.obsp, Some(&|_| *n_cells)),
        varp: Block::of(&parts.varp, Some(&|_| *n_genes)),
        obs_dtypes: hints(&summary.empty_obs_strings),
        var_dtypes: hints(&summary.empty_var_strings),
    }
}

/// Write `doc` to `dir/config.json` atomically: a temporary file in `dir`, synced, renamed.
pub fn write_config(dir: &Path, doc: &ConfigJson) -> Result<()> {
    write_json(dir, CONFIG_FILE, doc)
}

/// Write `doc` as pretty JSON to the file `path` atomically, creating its directory.
pub fn write_json_file(path: &Path, doc: &impl Serialize) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("{}: not a file name", path.display())))?;
    write_json(dir, name, doc)
}

/// Write `doc` as pretty JSON to `dir/name` atomically (temporary file, fsync, rename).
pub fn write_json(dir: &Path, name: &str, doc: &impl Serialize) -> Result<()> {
    let target = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let text = serde_json::to_string_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.write_all(b"\n"))
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(&target)
        .map_err(|e| Error::io(&target, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_value_stats_merge_equals_whole() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let whole = ValueStats::of(values.iter().copied());
        let mut merged = ValueStats::of(values[..333].iter().copied());
        merged.merge(&ValueStats::of(values[333..].iter().copied()));
        assert_eq!(merged.count, 1000);
        assert!((merged.mean - whole.mean).abs() < 1e-12);
        assert!((merged.std() - whole.std()).abs() < 1e-12);
        assert_eq!((merged.min, merged.max), (0.0, 50.0));
    }

    #[test]
    fn test_value_stats_std_large_u16() {
        // Upstream squares in uint16 and wraps past 255 (B17); ours must not.
        let s = ValueStats::of([1000.0, 3000.0]);
        assert!((s.std() - 1414.213562373095).abs() < 1e-9);
    }

    #[test]
    fn test_config_document_empty() {
        let doc = config_document(
            &DatasetSummary {
                n_cells: 0,
                n_genes: 5,
                stats: ValueStats::default(),
                compact_ids: false,
                empty_obs_strings: vec!["cell_id".into()],
                empty_var_strings: vec![],
                parts: Default::default(),
                multi_file: None,
            },
            "2026-01-01T00:00:00",
        );
        // Field order is upstream's: a struct serialises in declaration order.
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.find("format_version") < text.find("array_shape"));
        let doc = serde_json::to_value(&doc).unwrap();
        assert_eq!(doc["metadata"]["expression_count"], 0);
        assert_eq!(doc["metadata"]["expression_stats"]["std_value"], 0.0);
        assert_eq!(doc["metadata"]["density"], 0.0);
        assert_eq!(doc["array_shape"], json!([0, 5]));
        assert_eq!(doc["obs_dtypes"]["cell_id"]["dtype"], "object");
        assert!(doc.get("var_dtypes").is_none());
        assert!(doc.get("layers").is_none() && doc["tables"].get("layers").is_none());
    }
}
