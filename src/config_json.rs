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

/// Count, min, max, mean and sum of squared deviations of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
}

/// Build the `config.json` document (docs/slaf-format.md §3.1, Appendix A item 1).
pub fn config_document(summary: &DatasetSummary, created_at: &str) -> Value {
    let DatasetSummary {
        n_cells,
        n_genes,
        stats,
        ..
    } = summary;
    let total_possible = n_cells.saturating_mul(*n_genes);
    let total = total_possible as f64;
    let count = stats.count;
    // An empty shape has nothing to be sparse about: report fully sparse, never NaN.
    let density = if total > 0.0 {
        count as f64 / total
    } else {
        0.0
    };
    let (min, max, mean, std) = if count == 0 {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (stats.min, stats.max, stats.mean, stats.std())
    };
    let mut doc = json!({
        "format_version": FORMAT_VERSION,
        "array_shape": [n_cells, n_genes],
        "n_cells": n_cells,
        "n_genes": n_genes,
        "tables": {
            "expression": "expression.lance",
            "cells": "cells.lance",
            "genes": "genes.lance",
        },
        "optimizations": {
            "use_integer_keys": true,
            "optimize_storage": true,
            "use_optimized_dtypes": summary.compact_ids,
        },
        "metadata": {
            "expression_count": count,
            "sparsity": 1.0 - density,
            "density": density,
            "total_possible_elements": total_possible,
            "expression_stats": {
                "min_value": min,
                "max_value": max,
                "mean_value": mean,
                "std_value": std,
            },
        },
        "created_at": created_at,
    });
    for (key, columns) in [
        ("obs_dtypes", &summary.empty_obs_strings),
        ("var_dtypes", &summary.empty_var_strings),
    ] {
        if !columns.is_empty() {
            let hints: serde_json::Map<String, Value> = columns
                .iter()
                .map(|c| (c.clone(), json!({"dtype": "object"})))
                .collect();
            doc[key] = Value::Object(hints);
        }
    }
    doc
}

/// Write `doc` to `dir/config.json` atomically: a temporary file in `dir`, synced, renamed.
pub fn write_config(dir: &Path, doc: &Value) -> Result<()> {
    let target = dir.join(CONFIG_FILE);
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
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
            },
            "2026-01-01T00:00:00",
        );
        assert_eq!(doc["metadata"]["expression_count"], 0);
        assert_eq!(doc["metadata"]["expression_stats"]["std_value"], 0.0);
        assert_eq!(doc["array_shape"], json!([0, 5]));
        assert_eq!(doc["obs_dtypes"]["cell_id"]["dtype"], "object");
        assert!(doc.get("var_dtypes").is_none());
    }
}
