//! `config.json`: its model and how a dataset's summary becomes it (statistics from
//! [`crate::slaf::value_stats`], the atomic write from [`crate::json_file`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Result;
use crate::slaf::schema::{CELLSXCELLS_TABLE, GENESXGENES_TABLE, LAYERS_TABLE};
use crate::slaf::value_stats::ValueStats;

/// SLAF format version written into `config.json`.
pub const FORMAT_VERSION: &str = "0.5";
/// File name of the config inside a dataset.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the uns document inside a dataset.
pub const UNS_FILE: &str = "uns.json";
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
    pub parts: crate::cells::InputParts,
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
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
    /// obs and var columns renamed to become Lance columns ('.' → '_'): `{"obs": {column in
    /// the input: column}, "var": {...}}`, each only when something was renamed. Ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_columns:
        Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
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
    /// The input's keys that were renamed to become these columns ('.' → '_'), key →
    /// column; absent when every key is its column. Ours, not upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed: Option<std::collections::BTreeMap<String, String>>,
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
            renamed: None,
        })
    }

    /// Record the keys of `renamed` (key → column) whose column this block lists.
    fn with_renamed(mut self, renamed: &std::collections::BTreeMap<String, String>) -> Self {
        let listed: std::collections::BTreeMap<String, String> = renamed
            .iter()
            .filter(|(_, column)| self.available.contains(column))
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        self.renamed = (!listed.is_empty()).then_some(listed);
        self
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
    /// Statistics over every stored finite value.
    pub expression_stats: ExpressionStats,
}

/// `config.json` `metadata.expression_stats`: over the finite values (JSON has no NaN or
/// infinity, and a mean over them says nothing); the others are counted in `non_finite`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpressionStats {
    /// Smallest finite value (0 when there are none).
    pub min_value: f64,
    /// Largest finite value.
    pub max_value: f64,
    /// Mean of the finite values.
    pub mean_value: f64,
    /// Sample standard deviation (n − 1) of the finite values.
    pub std_value: f64,
    /// Stored NaN and infinite values, by kind; absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_finite: Option<NonFinite>,
}

/// Counts of the stored values that are not finite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NonFinite {
    /// NaN values.
    pub nan: u64,
    /// +Inf values.
    pub pos_inf: u64,
    /// −Inf values.
    pub neg_inf: u64,
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
    let renamed = &parts.renamed;
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
                non_finite: (stats.non_finite() > 0).then_some(NonFinite {
                    nan: stats.nan,
                    pos_inf: stats.pos_inf,
                    neg_inf: stats.neg_inf,
                }),
            },
        },
        multi_file: summary.multi_file.clone(),
        created_at: created_at.to_string(),
        layers: Block::of(&parts.layers, None).map(|b| b.with_renamed(&renamed.layers)),
        obsm: Block::of(&names(&parts.obsm), Some(&|i| parts.obsm[i].1 as u64))
            .map(|b| b.with_renamed(&renamed.obsm)),
        varm: Block::of(&names(&parts.varm), Some(&|i| parts.varm[i].1 as u64))
            .map(|b| b.with_renamed(&renamed.varm)),
        obsp: Block::of(&parts.obsp, Some(&|_| *n_cells)).map(|b| b.with_renamed(&renamed.obsp)),
        varp: Block::of(&parts.varp, Some(&|_| *n_genes)).map(|b| b.with_renamed(&renamed.varp)),
        renamed_columns: {
            let axes: std::collections::BTreeMap<_, _> =
                [("obs", &renamed.obs), ("var", &renamed.var)]
                    .into_iter()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(axis, m)| (axis.to_string(), m.clone()))
                    .collect();
            (!axes.is_empty()).then_some(axes)
        },
        obs_dtypes: hints(&summary.empty_obs_strings),
        var_dtypes: hints(&summary.empty_var_strings),
    }
}

/// Write `doc` to `dir/config.json` atomically: a temporary file in `dir`, synced, renamed.
pub fn write_config(dir: &Path, doc: &ConfigJson) -> Result<()> {
    crate::json_file::write_json(dir, CONFIG_FILE, doc)
}

#[cfg(test)]
mod tests {
    use super::*;

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
