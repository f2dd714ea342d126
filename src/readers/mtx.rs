//! 10x Genomics MTX directories: `matrix.mtx[.gz]`, `barcodes.tsv[.gz]`, and v2 `genes.tsv`
//! or v3 `features.tsv[.gz]`.
//!
//! MatrixMarket `coordinate` with `integer`, `real` or `pattern` values (pattern = 1), genes ×
//! cells, 1-based. gzip is recognised by content. The file is parsed in a stream, never held:
//! one pass to scan (value type, entries per cell, whether entries come sorted by cell), one
//! to convert. Sorted input (what Cell Ranger writes) streams straight into cell batches; unsorted
//! input goes once through temporary cell buckets. Upstream re-parses the whole file per
//! chunk of cells (defect B31) and never decides the value type (B7).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::Field;

mod gene_run;
mod text;

use self::gene_run::GeneRun;
use self::text::{open_text, read_header, Entries};
use super::spill::CellBuckets;
use super::tenx::{Features, GeneSelection, TenxOptions};
use super::{
    CellBatch, CellEntries, CellRange, InputLayout, InputParts, InputReader, MatrixScan, ValueScan,
};
use crate::error::{Error, Result};
use crate::values::ValueTypeProbe;

/// An opened 10x MTX directory.
pub struct MtxReader {
    dir: PathBuf,
    matrix: PathBuf,
    barcodes: Vec<String>,
    genes: GeneSelection,
    var_fields: Vec<Field>,
    layout: InputLayout,
    parts: InputParts,
    /// Set by scan: whether entries arrive with cells non-decreasing.
    sorted: Option<bool>,
}

/// The first of `names` that exists in `dir`.
fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Read a TSV file's lines split on tabs (gzip or plain).
fn read_tsv(path: &Path) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    for (i, line) in open_text(path)?.lines().enumerate() {
        let line = line.map_err(|e| Error::invalid(path, format!("line {}: {e}", i + 1)))?;
        if line.is_empty() {
            continue;
        }
        rows.push(line.split('\t').map(str::to_string).collect());
    }
    Ok(rows)
}

impl MtxReader {
    /// Open the MTX directory `dir`.
    pub fn open(dir: &Path, options: &TenxOptions) -> Result<Self> {
        let matrix = find(dir, &["matrix.mtx.gz", "matrix.mtx"]).ok_or_else(|| {
            Error::invalid(dir, "no matrix.mtx or matrix.mtx.gz in this directory")
        })?;
        let barcodes_path = find(dir, &["barcodes.tsv.gz", "barcodes.tsv"])
            .ok_or_else(|| Error::invalid(dir, "no barcodes.tsv or barcodes.tsv.gz"))?;
        let features_path = find(
            dir,
            &[
                "features.tsv.gz",
                "features.tsv",
                "genes.tsv.gz",
                "genes.tsv",
            ],
        )
        .ok_or_else(|| Error::invalid(dir, "no features.tsv[.gz] (v3) or genes.tsv[.gz] (v2)"))?;
        let barcodes: Vec<String> = read_tsv(&barcodes_path)?
            .into_iter()
            .map(|mut r| r.swap_remove(0))
            .collect();
        let rows = read_tsv(&features_path)?;
        let mut features = Features::default();
        let has_types = rows.iter().all(|r| r.len() >= 3) && !rows.is_empty();
        let mut types = Vec::new();
        for r in rows {
            features.names.push(r.get(1).unwrap_or(&r[0]).clone());
            if has_types {
                types.push(r[2].clone());
            }
            features.ids.push(r[0].clone());
        }
        features.types = has_types.then_some(types);

        let (_, n_rows, n_cols, _) = read_header(&matrix)?;
        if n_rows != features.ids.len() as u64 || n_cols != barcodes.len() as u64 {
            return Err(Error::invalid(
                &matrix,
                format!(
                    "header says {n_rows} features x {n_cols} barcodes, but {} lists {} features and {} lists {} barcodes",
                    features_path.display(),
                    features.ids.len(),
                    barcodes_path.display(),
                    barcodes.len()
                ),
            ));
        }
        let genes = features.select(&features_path, options)?;
        let var_fields = genes.fields();
        Ok(MtxReader {
            dir: dir.to_path_buf(),
            layout: InputLayout {
                n_cells: barcodes.len() as u64,
                n_genes: genes.n_genes(),
                matrix_encoding: "10x_mtx".into(),
            },
            matrix,
            barcodes,
            genes,
            var_fields,
            parts: InputParts::default(),
            sorted: options.cells_sorted,
        })
    }
}

impl InputReader for MtxReader {
    fn cells_sorted(&self) -> Option<bool> {
        self.sorted
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn layout(&self) -> &InputLayout {
        &self.layout
    }

    fn obs_fields(&self) -> &[Field] {
        &[]
    }

    fn var_fields(&self) -> &[Field] {
        &self.var_fields
    }

    fn parts(&self) -> &InputParts {
        &self.parts
    }

    fn scan(&mut self, _values: ValueScan) -> Result<MatrixScan> {
        // The row counts need every entry anyway: the value type comes exact for free.
        let mut probe = ValueTypeProbe::default();
        let mut counts = vec![0u64; self.layout.n_cells as usize];
        let mut entries = Entries::open(&self.matrix)?;
        let mut sorted = true;
        let mut last_cell = 0u64;
        let mut block = Vec::with_capacity(4096);
        let mut run = GeneRun::new(self.genes.n_genes());
        while let Some((feature, cell, value)) = entries.next_entry()? {
            sorted &= cell >= last_cell;
            last_cell = cell;
            if self.genes.gene_of(feature).is_none() {
                continue;
            }
            run.push(cell, feature, value, &mut counts, &mut block);
            if block.len() >= 4096 {
                probe.observe(&block);
                block.clear();
            }
        }
        run.finish(&mut counts, &mut block);
        probe.observe(&block);
        if run.repeats && !sorted {
            // Repeats are summed per cell when the file is read in cell order; in another
            // order they would be seen only after the plan's row counts were taken.
            return Err(Error::invalid(
                &self.matrix,
                "lists a (cell, gene) entry more than once and is not sorted by cell: sort it by cell (column) to convert it",
            ));
        }
        crate::values::warn_narrowed(&self.matrix, "values", "MatrixMarket", probe.narrowed());
        self.sorted = Some(sorted);
        let mut row_offsets = Vec::with_capacity(counts.len() + 1);
        let mut acc = 0;
        row_offsets.push(0);
        for c in counts {
            acc += c;
            row_offsets.push(acc);
        }
        Ok(MatrixScan {
            value_type: probe.value_type(),
            layer_types: Vec::new(),
            row_offsets,
            types_guessed: false,
        })
    }

    fn genes(&mut self) -> Result<(RecordBatch, Vec<String>)> {
        Ok((self.genes.var.clone(), self.genes.gene_ids.clone()))
    }

    fn batches<'a>(
        &'a mut self,
        range: CellRange,
        batch_cells: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<CellBatch>> + Send + 'a>> {
        let sorted = match self.sorted {
            Some(s) => s,
            None => {
                // Opened for a shard without a scan: one cheap parse tells the order.
                let mut entries = Entries::open(&self.matrix)?;
                let mut last = 0u64;
                let mut sorted = true;
                while let Some((_, cell, _)) = entries.next_entry()? {
                    if cell < last {
                        sorted = false;
                        break;
                    }
                    last = cell;
                }
                self.sorted = Some(sorted);
                sorted
            }
        };
        let mut entries = Entries::open(&self.matrix)?;
        let mut source = if sorted {
            Source::Sorted {
                entries,
                pending: None,
            }
        } else {
            let mut buckets = CellBuckets::new(range, batch_cells)?;
            while let Some((feature, cell, value)) = entries.next_entry()? {
                buckets.push(cell, feature, value as f32)?;
            }
            buckets.finish()?;
            Source::Spilled(buckets)
        };
        let this: &'a MtxReader = self;
        Ok(Box::new(range.split(batch_cells).map(move |cells| {
            let spilled = matches!(source, Source::Spilled(_));
            let mut entries = source.read_cells(cells)?;
            this.genes.apply(&mut entries);
            entries.sort_within_cells();
            if let Some((cell, gene)) = entries.sum_duplicates() {
                if spilled {
                    // The scan counted each run of a cell's entries apart: repeats across runs
                    // of an unsorted file are only seen here, after the plan's row counts.
                    return Err(Error::invalid(
                        &this.matrix,
                        format!(
                            "cell {} lists gene {} more than once, in entries not sorted by cell: sort the file by cell (column) to convert it",
                            cells.start + cell as u64 + 1,
                            gene + 1
                        ),
                    ));
                }
            }
            let obs = super::empty_obs(cells.len() as usize)?;
            Ok(CellBatch {
                cells,
                obs,
                cell_ids: this.barcodes[cells.start as usize..cells.end as usize].to_vec(),
                entries,
                layers: Vec::new(),
            })
        })))
    }
}

/// Where a chunk's entries come from.
enum Source {
    /// Entries sorted by cell: read straight on; `pending` is the first entry of a later chunk.
    Sorted {
        entries: Entries,
        pending: Option<(u32, u64, f64)>,
    },
    /// Unsorted entries, bucketed by cell.
    Spilled(CellBuckets),
}

impl Source {
    fn read_cells(&mut self, cells: CellRange) -> Result<CellEntries> {
        match self {
            Source::Spilled(b) => b.read_cells(cells),
            Source::Sorted { entries, pending } => {
                let mut out = CellEntries::with_capacity(cells.len() as usize, 0);
                let mut current = cells.start;
                loop {
                    let next = match pending.take() {
                        Some(e) => Some(e),
                        None => entries.next_entry()?,
                    };
                    let Some((feature, cell, value)) = next else {
                        break;
                    };
                    if cell < cells.start {
                        continue; // before the range: only in the first batch of a shard
                    }
                    if cell >= cells.end {
                        *pending = Some((feature, cell, value));
                        break;
                    }
                    if cell < current {
                        return Err(Error::changed_since_plan(
                            entries.path(),
                            format_args!(
                                "matrix.mtx: an entry of cell {} follows cell {current}, not sorted by cell as planned",
                                cell + 1
                            ),
                        ));
                    }
                    while current < cell {
                        out.offsets.push(out.genes.len() as u64);
                        current += 1;
                    }
                    out.genes.push(feature);
                    out.values.push(value as f32);
                }
                while current < cells.end {
                    out.offsets.push(out.genes.len() as u64);
                    current += 1;
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_dir(matrix: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("barcodes.tsv"), "c1\nc2\nc3\n").unwrap();
        std::fs::write(dir.path().join("genes.tsv"), "E1\tG1\nE2\tG2\n").unwrap();
        std::fs::write(dir.path().join("matrix.mtx"), matrix).unwrap();
        dir
    }

    fn read_all(dir: &Path) -> Result<(MatrixScan, Vec<CellEntries>)> {
        let mut r = MtxReader::open(dir, &TenxOptions::default())?;
        let scan = r.scan(ValueScan::Full)?;
        let chunks = r
            .batches(CellRange::new(0, 3), 2)?
            .map(|c| c.map(|c| c.entries))
            .collect::<Result<Vec<_>>>()?;
        Ok((scan, chunks))
    }

    #[test]
    fn test_sorted_and_unsorted_agree() {
        let sorted =
            "%%MatrixMarket matrix coordinate integer general\n% c\n2 3 3\n1 1 5\n2 1 6\n1 3 7\n";
        let unsorted =
            "%%MatrixMarket matrix coordinate integer general\n2 3 3\n1 3 7\n2 1 6\n1 1 5\n";
        let a = read_all(write_dir(sorted).path()).unwrap();
        let b = read_all(write_dir(unsorted).path()).unwrap();
        assert_eq!(a.0.row_offsets, vec![0, 2, 2, 3]);
        assert_eq!(a.1, b.1);
        assert_eq!(a.1[0].genes, vec![0, 1]);
        assert_eq!(a.1[1].values, vec![7.0]);
    }

    #[test]
    fn test_planned_order_is_used_and_checked() {
        let sorted =
            "%%MatrixMarket matrix coordinate integer general\n2 3 3\n1 1 5\n2 1 6\n1 3 7\n";
        let unsorted =
            "%%MatrixMarket matrix coordinate integer general\n2 3 3\n1 3 7\n2 1 6\n1 1 5\n";
        let planned = TenxOptions {
            cells_sorted: Some(true),
            ..Default::default()
        };
        let (sorted_dir, unsorted_dir) = (write_dir(sorted), write_dir(unsorted));
        let mut r = MtxReader::open(sorted_dir.path(), &TenxOptions::default()).unwrap();
        r.scan(ValueScan::Full).unwrap();
        assert_eq!(r.cells_sorted(), Some(true));
        assert_eq!(
            MtxReader::open(unsorted_dir.path(), &TenxOptions::default())
                .and_then(|mut r| r.scan(ValueScan::Full).map(|_| r.cells_sorted()))
                .unwrap(),
            Some(false)
        );
        // A shard trusts the plan; an input that changed since is an error, never wrong rows.
        let mut r = MtxReader::open(unsorted_dir.path(), &planned).unwrap();
        let err = r
            .batches(CellRange::new(0, 3), 3)
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap_err();
        assert!(err.to_string().contains("not sorted by cell"), "{err}");
    }

    #[test]
    fn test_pattern_and_real() {
        let pattern = "%%MatrixMarket matrix coordinate pattern general\n2 3 1\n2 2\n";
        let (scan, chunks) = read_all(write_dir(pattern).path()).unwrap();
        assert_eq!(scan.value_type, crate::values::ValueType::UInt16);
        assert_eq!(chunks[0].values, vec![1.0]);
        let real = "%%MatrixMarket matrix coordinate real general\n2 3 1\n2 2 0.5\n";
        let (scan, _) = read_all(write_dir(real).path()).unwrap();
        assert_eq!(scan.value_type, crate::values::ValueType::Float32);
    }

    #[test]
    fn test_errors_name_the_line() {
        let cases = [
            (
                "%%MatrixMarket matrix coordinate integer general\n2 3 2\n1 1 5\n",
                "ends after 1",
            ),
            (
                "%%MatrixMarket matrix coordinate integer general\n2 3 1\n1 1 x\n",
                "line 3: expected an integer value",
            ),
            (
                "%%MatrixMarket matrix coordinate integer general\n2 3 1\n3 1 1\n",
                "index outside",
            ),
            (
                "%%MatrixMarket matrix array real general\n2 3\n",
                "'array' format is not supported",
            ),
            (
                "%%MatrixMarket matrix coordinate integer general\n5 3 1\n1 1 1\n",
                "header says 5 features x 3 barcodes",
            ),
        ];
        for (text, needle) in cases {
            let err = read_all(write_dir(text).path()).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
