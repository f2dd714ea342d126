//! anndata matrices (`X`): `csr_matrix`, `csc_matrix` and dense `array`, read by cell range.
//!
//! Whatever the storage, [`MatrixSource::read_cells`] returns the entries of a cell range
//! cell-major, genes ascending within a cell. CSC input (genes × entries on disk) is first
//! bucketed by cell range into temporary files, one pass over the matrix, and each bucket is
//! sorted in memory when its cells are asked for: never the whole matrix in memory, and never
//! gene-major rows (upstream defect B9). Memory is bounded by the chunk (dense: by a row block).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use hdf5::{Dataset, Group};

use super::hdf5_direct::StoredArray;
use super::hdf5_util as h5;
use crate::cells::{CellEntries, CellRange};
use crate::error::{Error, Result};
use crate::readers::spill::CellBuckets;
use crate::readers::{MatrixScan, ValueScan};
use crate::values::ValueType;
use crate::values::{changes_in_f32, warn_narrowed, ValueTypeProbe};

/// Values a plan without the full pass samples for the value type.
const SAMPLE: usize = 1 << 16;

/// Elements read per HDF5 call when streaming over a whole array.
const BLOCK: usize = 1 << 20;

/// Where X lives and how it is laid out.
#[derive(Debug)]
pub enum MatrixSource {
    /// Compressed sparse rows: indptr over cells.
    Csr(Compressed),
    /// Compressed sparse columns: indptr over genes, transposed on the fly.
    Csc(Compressed, Option<CellBuckets>),
    /// A dense 2-D dataset, cells × genes.
    Dense(Dataset),
}

/// The three arrays of a compressed sparse matrix.
#[derive(Debug)]
pub struct Compressed {
    data: StoredArray,
    indices: StoredArray,
    indptr: StoredArray,
}

impl Compressed {
    /// The `data`/`indices`/`indptr` datasets of `group`, checked against `major` (the
    /// number of rows of CSR, columns of CSC).
    fn open(path: &Path, group: &Group, major: u64) -> Result<Self> {
        let data = h5::dataset(path, group, "data")?;
        let indices = h5::dataset(path, group, "indices")?;
        let indptr = h5::dataset(path, group, "indptr")?;
        check_numeric(path, &data)?;
        for ds in [&data, &indices, &indptr] {
            h5::check_ndim(path, ds, 1)?;
        }
        // scipy's check_format: one index per stored value.
        if h5::len(&data) != h5::len(&indices) {
            return Err(Error::invalid(
                path,
                format!(
                    "{} holds {} values but {} holds {} indices",
                    data.name(),
                    h5::len(&data),
                    indices.name(),
                    h5::len(&indices)
                ),
            ));
        }
        // The same file opened once more for the direct reads of the three arrays.
        let file = Arc::new(crate::readers::ranged::RandomAccess::open(path)?);
        let c = Compressed {
            data: StoredArray::open(path, &file, data)?,
            indices: StoredArray::open(path, &file, indices)?,
            indptr: StoredArray::open(path, &file, indptr)?,
        };
        let n_ptr = c.indptr.len() as u64;
        if n_ptr != major + 1 {
            return Err(Error::invalid(
                path,
                format!(
                    "{}: has {n_ptr} entries, expected {}",
                    c.indptr.name(),
                    major + 1
                ),
            ));
        }
        Ok(c)
    }
}

impl MatrixSource {
    /// Resolve the matrix `name` (group or dataset) under `root` (X, a layer, an obsp key);
    /// returns the source and its (rows, columns).
    pub fn open(path: &Path, root: &Group, name: &str) -> Result<(Self, u64, u64)> {
        let object = format!("{}/{name}", root.name().trim_end_matches('/'));
        if !root.link_exists(name) {
            return Err(Error::invalid(path, format!("{object}: missing")));
        }
        if !h5::is_group(root, name) {
            let ds = h5::dataset(path, root, name)?;
            let shape = ds.shape();
            if shape.len() != 2 {
                return Err(Error::invalid(
                    path,
                    format!("{object}: dense matrix must be 2-dimensional, found shape {shape:?}"),
                ));
            }
            check_numeric(path, &ds)?;
            return Ok((MatrixSource::Dense(ds), shape[0] as u64, shape[1] as u64));
        }
        let g = h5::group(path, root, name)?;
        let (encoding, shape_attr) = h5::sparse_encoding(path, &g, &object)?;
        // indptr runs over the major axis: cells for CSR, genes for CSC.
        let compressed = |major: u64| Compressed::open(path, &g, major);
        let shape: Vec<i64> = {
            let object = format!("{object}@{shape_attr}");
            let attr = g
                .attr(shape_attr)
                .map_err(|e| h5::h5_error(path, &object, e))?;
            attr.read_raw::<i64>()
                .map_err(|e| h5::h5_error(path, &object, e))?
        };
        if shape.len() != 2 || shape.iter().any(|&d| d < 0) {
            return Err(Error::invalid(
                path,
                format!("{object}@{shape_attr}: expected two non-negative sizes, found {shape:?}"),
            ));
        }
        let (n_cells, n_genes) = (shape[0] as u64, shape[1] as u64);
        let source = match encoding.as_str() {
            "csr_matrix" => MatrixSource::Csr(compressed(n_cells)?),
            "csc_matrix" => MatrixSource::Csc(compressed(n_genes)?, None),
            "" => return Err(Error::invalid(path, format!("{object}: group without an encoding-type"))),
            other => {
                return Err(Error::invalid(
                    path,
                    format!("{object}: unsupported matrix encoding '{other}' (expected csr_matrix, csc_matrix or a dense array)"),
                ))
            }
        };
        Ok((source, n_cells, n_genes))
    }

    /// A CSR matrix stored as plain `data`/`indices`/`indptr` datasets of `group` (Cell
    /// Ranger's CSC genes × cells is exactly this, cells × genes), with `n_rows` rows.
    pub fn csr_in(path: &Path, group: &Group, n_rows: u64) -> Result<Self> {
        Ok(MatrixSource::Csr(Compressed::open(path, group, n_rows)?))
    }

    /// The anndata encoding name, for logs.
    pub fn encoding(&self) -> &'static str {
        match self {
            MatrixSource::Csr(_) => "csr_matrix",
            MatrixSource::Csc(..) => "csc_matrix",
            MatrixSource::Dense(_) => "array",
        }
    }

    /// One pass over the stored values: the narrowest type holding all of them.
    pub fn value_type(&self, path: &Path, n_cells: u64, n_genes: u64) -> Result<ValueType> {
        let mut probe = ValueTypeProbe::default();
        match self {
            MatrixSource::Csr(c) | MatrixSource::Csc(c, _) => {
                probe.observe_fits(c.data.all_f64(path, ValueTypeProbe::fits_u16)?)
            }
            MatrixSource::Dense(ds) => {
                for rows in dense_row_blocks(n_cells, n_genes) {
                    let values = h5::read_rows_f64(path, ds, rows)?;
                    let nonzero: Vec<f64> = values.into_iter().filter(|&v| v != 0.0).collect();
                    probe.observe(&nonzero);
                }
            }
        }
        self.warn_narrowed(path, &probe, ValueScan::Full)?;
        Ok(probe.value_type())
    }

    /// Count (sparse: one more pass, only over float64 and 32/64-bit integer data) and log the
    /// values that float32 changes; dense values were counted by `probe` as they were read.
    /// With [`ValueScan::RowsOnly`] (whose point is not to read every value at plan) the
    /// sparse count covers the sampled values only, and the warning says so.
    fn warn_narrowed(&self, path: &Path, probe: &ValueTypeProbe, values: ValueScan) -> Result<()> {
        match self {
            MatrixSource::Csr(c) | MatrixSource::Csc(c, _) => {
                if let Some(stored) = c.data.wider_than_f32(path)? {
                    if values == ValueScan::Full {
                        let n = c.data.count_f64(path, changes_in_f32)?;
                        warn_narrowed(path, &c.data.name(), &stored, n);
                    } else {
                        // `probe` observed the sample (see `scan`).
                        let sample = c.data.len().min(SAMPLE);
                        let object = format!("{} (first {sample} values)", c.data.name());
                        warn_narrowed(path, &object, &stored, probe.narrowed());
                    }
                }
            }
            MatrixSource::Dense(ds) => {
                let stored = h5::descriptor(path, ds)?.to_string();
                warn_narrowed(path, &ds.name(), &stored, probe.narrowed());
            }
        }
        Ok(())
    }

    /// The value type from a sample of the stored values, for sparse matrices (whose
    /// values can be checked as they are written); `None` for dense ones.
    pub fn guess_value_type(&self, path: &Path) -> Result<Option<ValueType>> {
        match self {
            MatrixSource::Csr(c) | MatrixSource::Csc(c, _) => {
                let mut probe = ValueTypeProbe::default();
                observe_sample(path, c, &mut probe)?;
                Ok(Some(probe.value_type()))
            }
            MatrixSource::Dense(_) => Ok(None),
        }
    }

    /// The row offsets per cell, and the value type: over every stored value, or for CSR
    /// with [`ValueScan::RowsOnly`] from a sample (the row offsets are the indptr).
    pub fn scan(
        &self,
        path: &Path,
        n_cells: u64,
        n_genes: u64,
        values: ValueScan,
    ) -> Result<MatrixScan> {
        let mut probe = ValueTypeProbe::default();
        // Set when the value type is known without the full pass over the values.
        let mut known = None;
        let row_offsets = match self {
            MatrixSource::Csr(c) => {
                let indptr = read_indptr(path, c, n_cells)?;
                if values == ValueScan::RowsOnly {
                    // The sample decides the type; its narrowed values are the warning's.
                    observe_sample(path, c, &mut probe)?;
                    known = Some(probe.value_type());
                }
                if known.is_none() {
                    probe.observe_fits(c.data.all_f64(path, ValueTypeProbe::fits_u16)?);
                }
                let base = indptr[0];
                indptr.iter().map(|p| (p - base) as u64).collect()
            }
            MatrixSource::Csc(c, _) => {
                let _ = read_indptr(path, c, n_genes)?;
                let mut counts: Vec<u64> =
                    h5::try_zeroed(path, &c.indices.name(), n_cells as usize)?;
                let n = c.indices.len();
                let mut start = 0;
                while start < n {
                    let end = (start + BLOCK).min(n);
                    for cell in c.indices.read_i64(path, start..end)? {
                        let slot = usize::try_from(cell)
                            .ok()
                            .and_then(|i| counts.get_mut(i))
                            .ok_or_else(|| {
                                Error::invalid(
                                    path,
                                    format!(
                                        "{}: cell index {cell} outside 0..{n_cells}",
                                        c.indices.name()
                                    ),
                                )
                            })?;
                        *slot += 1;
                    }
                    start = end;
                }
                if values == ValueScan::RowsOnly {
                    // Only for the warning's count: every value is checked just below.
                    observe_sample(path, c, &mut probe)?;
                }
                probe.observe_fits(c.data.all_f64(path, ValueTypeProbe::fits_u16)?);
                prefix_sum(&counts)
            }
            MatrixSource::Dense(ds) => {
                let mut counts: Vec<u64> = Vec::new();
                counts.try_reserve_exact(n_cells as usize).map_err(|_| {
                    Error::invalid(path, format!("{}: {n_cells} rows claimed", ds.name()))
                })?;
                for rows in dense_row_blocks(n_cells, n_genes) {
                    let values = h5::read_rows_f64(path, ds, rows)?;
                    let nonzero: Vec<f64> = values.iter().copied().filter(|&v| v != 0.0).collect();
                    probe.observe(&nonzero);
                    for row in values.chunks(n_genes.max(1) as usize) {
                        counts.push(row.iter().filter(|&&v| v != 0.0).count() as u64);
                    }
                }
                counts.resize(n_cells as usize, 0);
                prefix_sum(&counts)
            }
        };
        self.warn_narrowed(path, &probe, values)?;
        Ok(MatrixScan {
            value_type: known.unwrap_or(probe.value_type()),
            layer_types: Vec::new(),
            row_offsets,
            // A sample holding a value that is not a count settles float32; uint16 is a guess.
            types_guessed: known == Some(ValueType::UInt16),
        })
    }

    /// Prepare to read cells in `range` in chunks of `batch_cells` (CSC: bucket to temp files).
    pub fn prepare(
        &mut self,
        path: &Path,
        range: CellRange,
        batch_cells: u64,
        n_genes: u64,
    ) -> Result<()> {
        if let MatrixSource::Csc(c, transposed) = self {
            *transposed = Some(transpose(path, c, range, batch_cells, n_genes)?);
        }
        Ok(())
    }

    /// The entries of `cells`, cell-major, genes ascending within each cell.
    pub fn read_cells(
        &mut self,
        path: &Path,
        cells: CellRange,
        n_genes: u64,
    ) -> Result<CellEntries> {
        let n = cells.len() as usize;
        match self {
            MatrixSource::Csr(c) => {
                let ptr = c
                    .indptr
                    .read_i64(path, cells.start as usize..cells.end as usize + 1)?;
                let (lo, hi) = (ptr[0], ptr[n]);
                if ptr.windows(2).any(|w| w[1] < w[0]) || lo < 0 {
                    return Err(Error::invalid(
                        path,
                        format!("{}: not a non-decreasing pointer array", c.indptr.name()),
                    ));
                }
                let genes = c.indices.read_u32(path, lo as usize..hi as usize)?;
                let values = c.data.read_f32(path, lo as usize..hi as usize)?;
                let offsets: Vec<u64> = ptr.iter().map(|p| (p - lo) as u64).collect();
                let mut entries = CellEntries {
                    offsets,
                    genes: checked_genes(path, &c.indices, genes, lo as usize, n_genes)?,
                    values,
                };
                entries.sort_within_cells();
                Ok(entries)
            }
            MatrixSource::Csc(_, transposed) => {
                let t = transposed
                    .as_mut()
                    .ok_or_else(|| Error::Internal("CSC read before prepare".into()))?;
                t.read_cells(cells)
            }
            MatrixSource::Dense(ds) => {
                let mut entries = CellEntries::with_capacity(n, 0);
                for rows in dense_row_blocks(cells.len(), n_genes) {
                    let abs = cells.start as usize + rows.start..cells.start as usize + rows.end;
                    let values = h5::read_rows_f64(path, ds, abs)?;
                    for row in values.chunks(n_genes.max(1) as usize) {
                        for (g, &v) in row.iter().enumerate() {
                            if v != 0.0 {
                                entries.genes.push(g as u32);
                                entries.values.push(v as f32);
                            }
                        }
                        entries.offsets.push(entries.genes.len() as u64);
                    }
                }
                // Zero genes: no values were read, but every cell still has an (empty) row.
                entries.offsets.resize(n + 1, 0);
                Ok(entries)
            }
        }
    }
}

fn check_numeric(path: &Path, ds: &Dataset) -> Result<()> {
    use hdf5::types::TypeDescriptor as T;
    match h5::descriptor(path, ds)? {
        T::Integer(_) | T::Unsigned(_) | T::Float(_) | T::Boolean => Ok(()),
        other => Err(Error::invalid(
            path,
            format!(
                "{}: unsupported value type {other} (expected integers or floats)",
                ds.name()
            ),
        )),
    }
}

fn read_indptr(path: &Path, c: &Compressed, major: u64) -> Result<Vec<i64>> {
    let indptr = c.indptr.read_i64(path, 0..major as usize + 1)?;
    let n = c.indices.len() as i64;
    if indptr.windows(2).any(|w| w[1] < w[0]) || indptr[0] < 0 || indptr[major as usize] > n {
        return Err(Error::invalid(
            path,
            format!(
                "{}: not a non-decreasing pointer array within 0..={n}",
                c.indptr.name()
            ),
        ));
    }
    Ok(indptr)
}

/// Gene indices as read by [`StoredArray::read_u32`] (bad ones are `u32::MAX`), checked
/// against `n_genes`; an error quotes the stored value at its position (`first` is the
/// position of `genes[0]`).
fn checked_genes(
    path: &Path,
    indices: &StoredArray,
    genes: Vec<u32>,
    first: usize,
    n_genes: u64,
) -> Result<Vec<u32>> {
    let Some(bad) = genes.iter().position(|&g| g as u64 >= n_genes) else {
        return Ok(genes);
    };
    let at = first + bad;
    let stored = indices.read_i64(path, at..at + 1)?;
    Err(Error::invalid(
        path,
        format!(
            "{}: gene index {} outside 0..{n_genes}",
            indices.name(),
            stored[0]
        ),
    ))
}

fn prefix_sum(counts: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(counts.len() + 1);
    let mut acc = 0;
    out.push(0);
    for c in counts {
        acc += c;
        out.push(acc);
    }
    out
}

/// Row blocks of a dense matrix small enough to hold about `BLOCK` values.
fn dense_row_blocks(n_rows: u64, n_cols: u64) -> impl Iterator<Item = Range<usize>> {
    let per = (BLOCK as u64 / n_cols.max(1)).max(1);
    let n_rows = if n_cols == 0 { 0 } else { n_rows };
    (0..n_rows.div_ceil(per)).map(move |i| (i * per) as usize..((i + 1) * per).min(n_rows) as usize)
}

/// Bucket a CSC matrix's entries of `range` by cell (one pass over the matrix).
fn transpose(
    path: &Path,
    c: &Compressed,
    range: CellRange,
    batch_cells: u64,
    n_genes: u64,
) -> Result<CellBuckets> {
    let mut buckets = CellBuckets::new(range, batch_cells)?;
    let indptr = read_indptr(path, c, n_genes)?;
    let total = indptr[n_genes as usize] as usize;
    let mut gene = 0usize;
    let mut start = indptr[0] as usize;
    while start < total {
        let end = (start + BLOCK).min(total);
        let cells = c.indices.read_i64(path, start..end)?;
        let values = c.data.read_f32(path, start..end)?;
        for (k, (&cell, &value)) in cells.iter().zip(&values).enumerate() {
            let pos = (start + k) as i64;
            while indptr[gene + 1] <= pos {
                gene += 1;
            }
            if cell < 0 {
                return Err(Error::invalid(
                    path,
                    format!("{}: negative cell index {cell}", c.indices.name()),
                ));
            }
            buckets.push(cell as u64, gene as u32, value)?;
        }
        start = end;
    }
    buckets.finish()?;
    Ok(buckets)
}
/// Observe the first [`SAMPLE`] stored values of `c` (the sample a
/// [`ValueScan::RowsOnly`] plan decides by and counts narrowed values in).
fn observe_sample(path: &Path, c: &Compressed, probe: &mut ValueTypeProbe) -> Result<()> {
    let sample = c.data.read_f64(path, 0..c.data.len().min(SAMPLE))?;
    probe.observe(&sample);
    Ok(())
}
