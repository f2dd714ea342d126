//! The vocabulary readers and the SLAF side share, owned by neither: cell ranges, a batch of
//! cells as a reader hands it out (obs rows + cell-major entries), the parts of an input, the
//! two axes, and the map of an input's genes onto the dataset's. Readers produce these; the
//! pipeline maps genes and hands them to the table builders.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;

use crate::error::Result;

/// A half-open range of global cell positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellRange {
    /// First cell.
    pub start: u64,
    /// One past the last cell.
    pub end: u64,
}

impl CellRange {
    /// `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        CellRange { start, end }
    }

    /// Number of cells.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no cell.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Consecutive sub-ranges of at most `size` cells covering this range.
    pub fn split(&self, size: u64) -> impl Iterator<Item = CellRange> {
        let (start, end, size) = (self.start, self.end, size.max(1));
        (0..self.len().div_ceil(size))
            .map(move |i| CellRange::new(start + i * size, (start + (i + 1) * size).min(end)))
    }
}

/// The parts of an input beyond X, obs and var, as output names.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct InputParts {
    /// Layer names, in output column order.
    pub layers: Vec<String>,
    /// obsm keys and their dimensions (also part of `InputReader::obs_fields`).
    pub obsm: Vec<(String, usize)>,
    /// varm keys and their dimensions (also part of `InputReader::var_fields`).
    pub varm: Vec<(String, usize)>,
    /// obsp keys (square cells × cells matrices).
    pub obsp: Vec<String>,
    /// varp keys (square genes × genes matrices).
    pub varp: Vec<String>,
    /// The keys that had to be renamed to become column names, with their columns.
    #[serde(default, skip_serializing_if = "RenamedKeys::is_empty")]
    pub renamed: RenamedKeys,
}

/// Per part, each key whose column name differs from it ('.' becomes '_': Lance forbids '.'
/// in column names) mapped to that column; keys kept as they are are not listed.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct RenamedKeys {
    /// obs columns: column name in the input → column of cells.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub obs: BTreeMap<String, String>,
    /// var columns: column name in the input → column of genes.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub var: BTreeMap<String, String>,
    /// Layers: key → column of layers.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, String>,
    /// obsm: key → column of cells.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub obsm: BTreeMap<String, String>,
    /// varm: key → column of genes.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub varm: BTreeMap<String, String>,
    /// obsp: key → column of cellsxcells.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub obsp: BTreeMap<String, String>,
    /// varp: key → column of genesxgenes.lance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub varp: BTreeMap<String, String>,
}

impl RenamedKeys {
    /// Whether no key was renamed.
    pub fn is_empty(&self) -> bool {
        [
            &self.obs,
            &self.var,
            &self.layers,
            &self.obsm,
            &self.varm,
            &self.obsp,
            &self.varp,
        ]
        .iter()
        .all(|m| m.is_empty())
    }

    /// The (key, column) pairs that differ.
    pub fn differing<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> BTreeMap<String, String> {
        pairs
            .into_iter()
            .filter(|(key, column)| key != column)
            .map(|(key, column)| (key.to_string(), column.to_string()))
            .collect()
    }
}

/// Which side of the matrix a pairwise annotation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// obsp: cells × cells.
    Cells,
    /// varp: genes × genes.
    Genes,
}

/// The stored entries of a run of cells, CSR-like: cell `i` (relative to the batch) owns
/// `genes[offsets[i]..offsets[i+1]]` and the same range of `values`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellEntries {
    /// `cells + 1` offsets into `genes`/`values`, starting at 0.
    pub offsets: Vec<u64>,
    /// Gene positions, ascending within each cell.
    pub genes: Vec<u32>,
    /// Values as f32: exact for every value that will be stored as uint16, and what a float
    /// value is stored as anyway (the full-precision pass that picks the type is
    /// a reader's scan). Half the memory of f64 per entry.
    pub values: Vec<f32>,
}

impl CellEntries {
    /// Empty entries with room for `cells` cells and `entries` values.
    pub fn with_capacity(cells: usize, entries: usize) -> Self {
        let mut offsets = Vec::with_capacity(cells + 1);
        offsets.push(0);
        CellEntries {
            offsets,
            genes: Vec::with_capacity(entries),
            values: Vec::with_capacity(entries),
        }
    }

    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Sort each cell's entries by gene (anndata does not promise sorted indices).
    pub fn sort_within_cells(&mut self) {
        for w in self.offsets.windows(2) {
            let (lo, hi) = (w[0] as usize, w[1] as usize);
            // Without a short circuit the check vectorises; sorted cells are the rule.
            let descents = self.genes[lo..hi]
                .windows(2)
                .fold(0u32, |n, p| n + u32::from(p[0] > p[1]));
            if descents == 0 {
                continue;
            }
            let mut pairs: Vec<(u32, f32)> = self.genes[lo..hi]
                .iter()
                .copied()
                .zip(self.values[lo..hi].iter().copied())
                .collect();
            pairs.sort_by_key(|p| p.0);
            for (k, (g, v)) in pairs.into_iter().enumerate() {
                self.genes[lo + k] = g;
                self.values[lo + k] = v;
            }
        }
    }

    /// Sum entries of one cell with the same gene (cells sorted by gene first), as scipy does
    /// turning MatrixMarket coordinates into CSR; the first merged (cell offset, gene) if any.
    pub fn sum_duplicates(&mut self) -> Option<(usize, u32)> {
        let has_duplicates = self.offsets.windows(2).any(|w| {
            self.genes[w[0] as usize..w[1] as usize]
                .windows(2)
                .any(|p| p[0] == p[1])
        });
        if !has_duplicates {
            return None;
        }
        let mut first = None;
        // Compacted in place: `write` trails the read position `k`; a cell's original end is
        // read before its offset is overwritten.
        let (mut write, mut start) = (0usize, self.offsets[0] as usize);
        for cell in 0..self.offsets.len() - 1 {
            let end = self.offsets[cell + 1] as usize;
            let cell_start = write;
            for k in start..end {
                if write > cell_start && self.genes[write - 1] == self.genes[k] {
                    first.get_or_insert((cell, self.genes[k]));
                    self.values[write - 1] += self.values[k];
                } else {
                    self.genes[write] = self.genes[k];
                    self.values[write] = self.values[k];
                    write += 1;
                }
            }
            start = end;
            self.offsets[cell + 1] = write as u64;
        }
        self.genes.truncate(write);
        self.values.truncate(write);
        first
    }
}

/// Where each of an input's genes goes in the dataset: `Some(position)` or `None` (dropped).
///
/// Built from gene names, so an input with the same genes in another order is re-mapped to
/// the dataset's order instead of keeping its own positions (upstream's defect B16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneMap {
    targets: Vec<Option<u32>>,
}

impl GeneMap {
    /// Map `local` gene names onto `dataset` names; `None` when they are equal (identity).
    /// Names must be unique on both sides for a re-mapping to mean anything.
    pub fn between(local: &[String], dataset: &[String]) -> Result<Option<GeneMap>, String> {
        if local == dataset {
            return Ok(None);
        }
        let index = unique_index(dataset).map_err(|g| format!("gene '{g}' is listed twice in the dataset's genes, so genes cannot be matched by name"))?;
        unique_index(local).map_err(|g| {
            format!("gene '{g}' is listed twice, so its genes cannot be matched to the dataset's by name (make var names unique)")
        })?;
        let targets = local
            .iter()
            .map(|g| index.get(g.as_str()).map(|&i| i as u32))
            .collect();
        Ok(Some(GeneMap { targets }))
    }

    /// Local genes that have no place in the dataset.
    pub fn dropped(&self) -> usize {
        self.targets.iter().filter(|t| t.is_none()).count()
    }

    /// Rewrite `entries` to dataset positions: drop unmapped genes, re-sort each cell.
    pub fn apply(&self, entries: &mut CellEntries) {
        let mut write = 0usize;
        let mut start = 0usize;
        for c in 0..entries.n_cells() {
            let end = entries.offsets[c + 1] as usize;
            for k in start..end {
                if let Some(t) = self
                    .targets
                    .get(entries.genes[k] as usize)
                    .copied()
                    .flatten()
                {
                    entries.genes[write] = t;
                    entries.values[write] = entries.values[k];
                    write += 1;
                }
            }
            start = end;
            entries.offsets[c + 1] = write as u64;
        }
        entries.genes.truncate(write);
        entries.values.truncate(write);
        entries.sort_within_cells();
    }
}

/// Name → position, or the first name seen twice.
fn unique_index(names: &[String]) -> Result<std::collections::HashMap<&str, usize>, String> {
    let mut index = std::collections::HashMap::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if index.insert(n.as_str(), i).is_some() {
            return Err(n.clone());
        }
    }
    Ok(index)
}

/// A batch of consecutive cells as a reader hands it out: their obs rows and their
/// expression entries (a cell is never split across batches).
#[derive(Debug, Clone)]
pub struct CellBatch {
    /// The global cells of this batch.
    pub cells: CellRange,
    /// The obs columns (reader's obs fields) of these cells.
    pub obs: RecordBatch,
    /// The cells' names (obs index).
    pub cell_ids: Vec<String>,
    /// The cells' expression entries.
    pub entries: CellEntries,
    /// The cells' entries of each layer, in [`InputParts::layers`] order.
    pub layers: Vec<CellEntries>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_split() {
        let parts: Vec<_> = CellRange::new(3, 10).split(3).collect();
        assert_eq!(
            parts,
            vec![
                CellRange::new(3, 6),
                CellRange::new(6, 9),
                CellRange::new(9, 10)
            ]
        );
        assert_eq!(CellRange::new(0, 0).split(5).count(), 0);
    }

    #[test]
    fn test_sum_duplicates() {
        let mut e = CellEntries {
            offsets: vec![0, 3, 3, 5],
            genes: vec![1, 1, 4, 2, 2],
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        assert_eq!(e.sum_duplicates(), Some((0, 1)));
        assert_eq!(e.offsets, vec![0, 2, 2, 3]);
        assert_eq!((e.genes, e.values), (vec![1, 4, 2], vec![3.0, 3.0, 9.0]));
    }

    #[test]
    fn test_sort_within_cells() {
        let mut e = CellEntries {
            offsets: vec![0, 3, 4],
            genes: vec![5, 1, 3, 0],
            values: vec![50.0, 10.0, 30.0, 1.0],
        };
        e.sort_within_cells();
        assert_eq!(e.genes, vec![1, 3, 5, 0]);
        assert_eq!(e.values, vec![10.0, 30.0, 50.0, 1.0]);
    }

    #[test]
    fn test_gene_map_reorders_and_drops() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let dataset = names(&["a", "b", "c"]);
        assert_eq!(GeneMap::between(&dataset, &dataset).unwrap(), None);
        // Local order c, x, a: c → 2, x dropped, a → 0.
        let map = GeneMap::between(&names(&["c", "x", "a"]), &dataset)
            .unwrap()
            .unwrap();
        assert_eq!(map.dropped(), 1);
        let mut e = CellEntries {
            offsets: vec![0, 3, 3, 5],
            genes: vec![0, 1, 2, 1, 0],
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0],
        };
        map.apply(&mut e);
        assert_eq!(e.offsets, vec![0, 2, 2, 3]);
        assert_eq!(e.genes, vec![0, 2, 2]);
        assert_eq!(e.values, vec![3.0, 1.0, 5.0]);
        let dup = GeneMap::between(&names(&["a", "a", "b"]), &dataset).unwrap_err();
        assert!(dup.contains("'a'"), "{dup}");
    }
}
