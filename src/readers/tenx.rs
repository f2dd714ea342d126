//! What the two 10x Genomics readers share: the feature table and how genes are named,
//! filtered and made unique.
//!
//! Defaults keep every feature under its symbol, as upstream's chunked reader does; the options
//! mirror scanpy's `read_10x_*` (`var_names`, `make_unique`, `gex_only` as
//! `--feature-types "Gene Expression"`), so a user can match either.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::cells::CellEntries;
use crate::error::{Error, Result};

/// Which feature column names the genes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum VarNames {
    /// Gene symbols (`features.tsv` column 2, `features/name`): scanpy's default.
    #[default]
    #[serde(rename = "gene-symbols")]
    Symbols,
    /// Feature ids (Ensembl ids: column 1, `features/id`).
    GeneIds,
}

/// Options of the 10x readers.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct TenxOptions {
    /// Which column names the genes.
    pub var_names: VarNames,
    /// Make duplicate names unique with scanpy's `-1`, `-2` suffixes.
    pub make_unique: bool,
    /// Keep only features of these types (empty: keep all).
    pub feature_types: Vec<String>,
    /// Cell Ranger v2 `.h5`: which genome group to read.
    pub genome: Option<String>,
    /// What planning found out: `matrix.mtx` lists its entries by ascending cell. Saves each
    /// shard a parse of the whole file to find out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells_sorted: Option<bool>,
}

/// The feature table of a 10x input, as stored.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Feature ids (column 1).
    pub ids: Vec<String>,
    /// Feature names / symbols (column 2).
    pub names: Vec<String>,
    /// Feature types (v3 only).
    pub types: Option<Vec<String>>,
    /// Genome per feature (Cell Ranger v3 `.h5` only).
    pub genomes: Option<Vec<String>>,
}

/// The genes a 10x input contributes after naming and filtering.
#[derive(Debug, Clone)]
pub struct GeneSelection {
    /// var columns (`gene_ids` or `gene_symbols`, `feature_types`, `genome`).
    pub var: RecordBatch,
    /// Gene names (`gene_id` of genes.lance).
    pub gene_ids: Vec<String>,
    /// Source feature index → output gene index; `None` when every feature is kept as is.
    pub remap: Option<Vec<Option<u32>>>,
}

impl GeneSelection {
    /// Number of output genes.
    pub fn n_genes(&self) -> u64 {
        self.gene_ids.len() as u64
    }

    /// The var fields.
    pub fn fields(&self) -> Vec<Field> {
        self.var
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect()
    }

    /// Output gene of source feature `feature`, `None` if filtered out.
    pub fn gene_of(&self, feature: u32) -> Option<u32> {
        match &self.remap {
            None => Some(feature),
            Some(map) => map.get(feature as usize).copied().flatten(),
        }
    }

    /// Drop filtered-out features from `entries` and renumber the rest.
    pub fn apply(&self, entries: &mut CellEntries) {
        let Some(map) = &self.remap else { return };
        let mut out = CellEntries::with_capacity(entries.n_cells(), entries.genes.len());
        for w in entries.offsets.windows(2) {
            for k in w[0] as usize..w[1] as usize {
                if let Some(g) = map[entries.genes[k] as usize] {
                    out.genes.push(g);
                    out.values.push(entries.values[k]);
                }
            }
            out.offsets.push(out.genes.len() as u64);
        }
        *entries = out;
    }
}

impl Features {
    /// Check that every column lists one entry per feature id: a short one would otherwise be
    /// indexed past its end. `group` is where the columns are (e.g. `/matrix/features`),
    /// `names_column` the dataset of the names (`name`; Cell Ranger v2: `gene_names`).
    pub fn check_lengths(&self, path: &Path, group: &str, names_column: &str) -> Result<()> {
        let n = self.ids.len();
        let columns = [
            (names_column, Some(&self.names)),
            ("feature_type", self.types.as_ref()),
            ("genome", self.genomes.as_ref()),
        ];
        for (name, values) in columns {
            if let Some(v) = values.filter(|v| v.len() != n) {
                return Err(Error::invalid(
                    path,
                    format!(
                        "{group}/{name} lists {} entries but there are {n} feature ids",
                        v.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Name, filter and describe the genes as `options` ask. A `--feature-types` filter on
    /// an input without types (v2), or one that keeps no feature, is an error naming the
    /// types present: never a dataset with zero genes.
    pub fn select(&self, path: &Path, options: &TenxOptions) -> Result<GeneSelection> {
        let n = self.ids.len();
        if !options.feature_types.is_empty() {
            let Some(types) = &self.types else {
                return Err(Error::invalid(
                    path,
                    format!(
                        "--feature-types {:?}: this input lists no feature types (a v2 layout); leave the option out",
                        options.feature_types
                    ),
                ));
            };
            if !types.iter().any(|t| options.feature_types.contains(t)) {
                let mut present: Vec<&String> = types.iter().collect();
                present.sort();
                present.dedup();
                return Err(Error::invalid(
                    path,
                    format!(
                        "--feature-types {:?} keeps no feature; the types present are {present:?}",
                        options.feature_types
                    ),
                ));
            }
        }
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                options.feature_types.is_empty()
                    || self
                        .types
                        .as_ref()
                        .is_some_and(|t| options.feature_types.contains(&t[i]))
            })
            .collect();
        let remap = (keep.len() != n).then(|| {
            let mut map = vec![None; n];
            for (new, &old) in keep.iter().enumerate() {
                map[old] = Some(new as u32);
            }
            map
        });
        let pick = |v: &Vec<String>| keep.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        let (names, other, other_name) = match options.var_names {
            VarNames::Symbols => (pick(&self.names), pick(&self.ids), "gene_ids"),
            VarNames::GeneIds => (pick(&self.ids), pick(&self.names), "gene_symbols"),
        };
        let mut fields = vec![Field::new(other_name, DataType::Utf8, true)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(other))];
        for (name, values) in [("feature_types", &self.types), ("genome", &self.genomes)] {
            if let Some(v) = values {
                fields.push(Field::new(name, DataType::Utf8, true));
                columns.push(Arc::new(StringArray::from(pick(v))));
            }
        }
        let gene_ids = if options.make_unique {
            make_unique(&names)
        } else {
            names
        };
        // Every column has keep.len() rows: picked by the same indices (lengths checked by
        // `check_lengths` where the features were read).
        let var = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("var columns share one length");
        Ok(GeneSelection {
            var,
            gene_ids,
            remap,
        })
    }
}

/// anndata's `make_index_unique`: the first occurrence keeps its name, later ones get `-1`,
/// `-2`, ... skipping names already taken.
pub fn make_unique(names: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    let duplicate: Vec<bool> = names.iter().map(|n| !seen.insert(n.as_str())).collect();
    if !duplicate.contains(&true) {
        return names.to_vec();
    }
    let mut taken: HashSet<String> = names.iter().cloned().collect();
    let mut counter: HashMap<&str, u64> = HashMap::new();
    names
        .iter()
        .zip(duplicate)
        .map(|(name, dup)| {
            if !dup {
                return name.clone();
            }
            loop {
                let c = counter.entry(name).or_insert(0);
                *c += 1;
                let candidate = format!("{name}-{c}");
                if taken.insert(candidate.clone()) {
                    return candidate;
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn test_make_unique() {
        assert_eq!(
            make_unique(&s(&["A", "B", "A", "A", "A-1"])),
            s(&["A", "B", "A-2", "A-3", "A-1"])
        );
        assert_eq!(make_unique(&s(&["x", "y"])), s(&["x", "y"]));
    }

    #[test]
    fn test_select_feature_types() {
        let f = Features {
            ids: s(&["E1", "E2", "AB"]),
            names: s(&["G1", "G2", "CD3"]),
            types: Some(s(&[
                "Gene Expression",
                "Gene Expression",
                "Antibody Capture",
            ])),
            genomes: None,
        };
        let opts = |t: &[&str]| TenxOptions {
            feature_types: s(t),
            ..Default::default()
        };
        let path = Path::new("f");
        let err = f.select(path, &opts(&["Gene Expresion"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"Antibody Capture\", \"Gene Expression\""),
            "{err}"
        );
        let v2 = Features {
            types: None,
            ..f.clone()
        };
        assert!(v2.select(path, &opts(&["Gene Expression"])).is_err());
        let sel = f.select(path, &opts(&["Gene Expression"])).unwrap();
        assert_eq!(sel.gene_ids, s(&["G1", "G2"]));
        assert_eq!(sel.gene_of(2), None);
        let mut e = CellEntries {
            offsets: vec![0, 3],
            genes: vec![0, 1, 2],
            values: vec![1.0, 2.0, 3.0],
        };
        sel.apply(&mut e);
        assert_eq!((e.offsets, e.genes), (vec![0, 2], vec![0, 1]));
    }
}
