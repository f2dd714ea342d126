//! Row counts of a MatrixMarket file as scanned: repeated (cell, gene) entries are one row.

/// The entries of a run of consecutive lines of one cell. A gene listed twice is one row whose
/// value is the sum (as scipy reads it), so the run adds its distinct genes to the cell's
/// count and its summed values to the value type. Memory is about one cell's genes: repeats
/// are merged whenever the run outgrows twice the gene count.
pub(super) struct GeneRun {
    cell: Option<u64>,
    entries: Vec<(u32, f64)>,
    ascending: bool,
    /// Some gene was listed twice in one run.
    pub(super) repeats: bool,
    /// Entries held before merging repeats.
    limit: usize,
}

impl GeneRun {
    pub(super) fn new(n_genes: u64) -> Self {
        GeneRun {
            cell: None,
            entries: Vec::new(),
            ascending: true,
            repeats: false,
            limit: (n_genes as usize).saturating_mul(2).max(1024),
        }
    }

    pub(super) fn push(
        &mut self,
        cell: u64,
        gene: u32,
        value: f64,
        counts: &mut [u64],
        values: &mut Vec<f64>,
    ) {
        if self.cell != Some(cell) {
            self.finish(counts, values);
            self.cell = Some(cell);
            self.ascending = true;
        }
        self.ascending &= self.entries.last().is_none_or(|&(g, _)| g < gene);
        self.entries.push((gene, value));
        if self.entries.len() > self.limit {
            self.merge();
        }
    }

    /// Sort by gene and sum the values of repeated genes.
    fn merge(&mut self) {
        if self.ascending {
            return;
        }
        self.entries.sort_by_key(|&(g, _)| g);
        let before = self.entries.len();
        self.entries.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 += next.1;
            }
            same
        });
        self.repeats |= self.entries.len() != before;
        self.ascending = true;
    }

    pub(super) fn finish(&mut self, counts: &mut [u64], values: &mut Vec<f64>) {
        let Some(cell) = self.cell.take() else { return };
        self.merge();
        counts[cell as usize] += self.entries.len() as u64;
        values.extend(self.entries.drain(..).map(|(_, v)| v));
    }
}
