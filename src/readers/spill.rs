//! Entries arriving in any cell order, bucketed by cell range into temporary files and
//! handed back cell-major.
//!
//! Used where the source is not cell-major: CSC matrices (gene-major on disk) and MTX files
//! whose entries are not sorted by cell. One pass pushes every entry; each bucket (at most
//! [`MAX_BUCKETS`], each a whole number of chunks) is sorted in memory only when its cells are
//! asked for, so memory is one bucket, never the matrix. Files live under `$TMPDIR` and are
//! removed on drop.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::cells::{CellEntries, CellRange};
use crate::error::{Error, Result};

/// Upper bound on the temporary bucket files.
pub const MAX_BUCKETS: u64 = 256;
const RECORD_BYTES: usize = 12;

/// One spilled entry: cell offset within the range, gene, value.
#[derive(Debug, Clone, Copy)]
struct Record {
    cell: u32,
    gene: u32,
    value: f32,
}

/// Entries of a cell range, bucketed on disk.
#[derive(Debug)]
pub struct CellBuckets {
    dir: tempfile::TempDir,
    range: CellRange,
    cells_per_bucket: u64,
    writers: Vec<BufWriter<File>>,
    /// The bucket currently in memory: its index and its entries sorted by (cell, gene).
    loaded: Option<(u64, Vec<Record>)>,
}

impl CellBuckets {
    /// Buckets for `range`, read back later in chunks of `batch_cells` cells.
    pub fn new(range: CellRange, batch_cells: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("slaf-convert-spill-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let n_chunks = range.len().div_ceil(batch_cells.max(1)).max(1);
        let cells_per_bucket = batch_cells.max(1) * n_chunks.div_ceil(MAX_BUCKETS);
        let n_buckets = range.len().div_ceil(cells_per_bucket).max(1);
        let writers = (0..n_buckets)
            .map(|b| {
                let p = bucket_path(dir.path(), b);
                File::create(&p)
                    .map(|f| BufWriter::with_capacity(64 * 1024, f))
                    .map_err(|e| Error::io(p, e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CellBuckets {
            dir,
            range,
            cells_per_bucket,
            writers,
            loaded: None,
        })
    }

    /// Add one entry; cells outside the range are ignored.
    pub fn push(&mut self, cell: u64, gene: u32, value: f32) -> Result<()> {
        if cell < self.range.start || cell >= self.range.end {
            return Ok(());
        }
        let offset = cell - self.range.start;
        let b = (offset / self.cells_per_bucket) as usize;
        let mut rec = [0u8; RECORD_BYTES];
        rec[0..4].copy_from_slice(&(offset as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&gene.to_le_bytes());
        rec[8..12].copy_from_slice(&value.to_le_bytes());
        self.writers[b]
            .write_all(&rec)
            .map_err(|e| Error::io(bucket_path(self.dir.path(), b as u64), e))
    }

    /// Flush every bucket; call once after the last push.
    pub fn finish(&mut self) -> Result<()> {
        for (b, w) in self.writers.iter_mut().enumerate() {
            w.flush()
                .map_err(|e| Error::io(bucket_path(self.dir.path(), b as u64), e))?;
        }
        self.writers.clear();
        Ok(())
    }

    /// The entries of `cells` (within the range), cell-major, genes ascending.
    pub fn read_cells(&mut self, cells: CellRange) -> Result<CellEntries> {
        let lo = cells.start - self.range.start;
        let hi = cells.end - self.range.start;
        let per = self.cells_per_bucket;
        let mut entries = CellEntries::with_capacity(cells.len() as usize, 0);
        let mut cell = lo;
        while cell < hi {
            let bucket = cell / per;
            let bucket_end = ((bucket + 1) * per).min(hi);
            let records = self.load(bucket)?;
            let mut i = records.partition_point(|r| (r.cell as u64) < cell);
            for c in cell..bucket_end {
                while i < records.len() && records[i].cell as u64 == c {
                    entries.genes.push(records[i].gene);
                    entries.values.push(records[i].value);
                    i += 1;
                }
                entries.offsets.push(entries.genes.len() as u64);
            }
            cell = bucket_end;
        }
        Ok(entries)
    }

    fn load(&mut self, bucket: u64) -> Result<&[Record]> {
        if self.loaded.as_ref().map(|(b, _)| *b) != Some(bucket) {
            self.loaded = None;
            let p = bucket_path(self.dir.path(), bucket);
            let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
            let len = f.metadata().map_err(|e| Error::io(&p, e))?.len() as usize;
            let mut reader = BufReader::with_capacity(1 << 20, f);
            let mut records = Vec::with_capacity(len / RECORD_BYTES);
            let mut rec = [0u8; RECORD_BYTES];
            for _ in 0..len / RECORD_BYTES {
                reader.read_exact(&mut rec).map_err(|e| Error::io(&p, e))?;
                records.push(Record {
                    cell: u32::from_le_bytes(rec[0..4].try_into().expect("4 bytes")),
                    gene: u32::from_le_bytes(rec[4..8].try_into().expect("4 bytes")),
                    value: f32::from_le_bytes(rec[8..12].try_into().expect("4 bytes")),
                });
            }
            // Genes ascend within a cell; the stable sort keeps duplicate entries in input order.
            records.sort_by_key(|r| (r.cell, r.gene));
            self.loaded = Some((bucket, records));
        }
        Ok(&self.loaded.as_ref().expect("just loaded").1)
    }
}

fn bucket_path(dir: &Path, bucket: u64) -> PathBuf {
    dir.join(format!("bucket-{bucket:05}.bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cell_buckets() {
        let mut b = CellBuckets::new(CellRange::new(10, 20), 3).unwrap();
        for (cell, gene, v) in [
            (15, 2, 1.0),
            (11, 5, 2.0),
            (15, 0, 3.0),
            (30, 1, 9.0),
            (19, 4, 4.0),
        ] {
            b.push(cell, gene, v).unwrap();
        }
        b.finish().unwrap();
        let e = b.read_cells(CellRange::new(13, 16)).unwrap();
        assert_eq!(e.offsets, vec![0, 0, 0, 2]);
        assert_eq!(e.genes, vec![0, 2]);
        assert_eq!(e.values, vec![3.0, 1.0]);
        let e = b.read_cells(CellRange::new(19, 20)).unwrap();
        assert_eq!((e.genes, e.values), (vec![4], vec![4.0]));
    }
}
