//! SOMA sparse N-d arrays of two dimensions (X layers, obsm/varm, obsp/varp): a range of
//! rows read as cell-major entries, a full pass for row counts and the value type, and
//! rows read as dense vectors (obsm/varm).
//!
//! Dimension 0 holds the rows' `soma_joinid`s and is mapped to positions through the
//! dataframe's [`JoinIds`]; dimension 1 likewise for X and pairwise matrices, and is the
//! vector component for obsm/varm. An entry whose joinid the dataframe does not hold is
//! refused, never dropped.

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use arrow::datatypes::{DataType, Field};

use super::frame::JoinIds;
use super::tiledb::array::Array;
use super::tiledb::query::{self, ColumnData, Read};
use super::tiledb::values::Values;
use super::tiledb::Context;
use crate::cells::{CellEntries, CellRange};
use crate::error::{Error, Result};
use crate::values::ValueTypeProbe;

const DIM0: &str = "soma_dim_0";
const DIM1: &str = "soma_dim_1";
const DATA: &str = "soma_data";
/// Values of one batch's obsm/varm vectors at most (1 GiB of float32).
const MAX_VECTOR_VALUES: usize = 1 << 28;
/// Entries a read buffer holds (three columns of 8 bytes at most: 24 MiB).
const READ_ENTRIES: usize = 1 << 20;

/// One sparse array.
pub struct SparseArray {
    array: Array,
    /// Its extent along dimension 1 (columns), from its shape.
    pub n_cols: u64,
}

impl SparseArray {
    /// Open the array at `uri`, checking it is a 2-d SOMA sparse array of numbers.
    pub fn open(ctx: &Arc<Context>, uri: &str, object: &str) -> Result<SparseArray> {
        SparseArray::checked(Array::open(ctx, uri, object)?)
    }

    fn checked(array: Array) -> Result<SparseArray> {
        let (input, object) = (&array.ctx.input, array.object.as_str());
        array.check_dims(&[DIM0, DIM1])?;
        match array.attr(DATA) {
            Some(a) if Values::decode(a.datatype, &[]).is_some() && a.categories.is_none() => {}
            _ => {
                return Err(Error::invalid(
                    input,
                    format!("{object}: no numeric {DATA} attribute"),
                ))
            }
        }
        let (lo, hi) = array.extent(1)?;
        let n_cols = u64::try_from(hi.saturating_sub(lo).saturating_add(1)).unwrap_or(0);
        Ok(SparseArray { array, n_cols })
    }

    /// [`Self::open`], but a dense array is skipped with a warning (`None`): for the parts
    /// beyond the expression, which older tiledbsoma wrote dense (obsm) and which SLAF can
    /// do without.
    pub fn open_or_skip(
        ctx: &Arc<Context>,
        uri: &str,
        object: &str,
    ) -> Result<Option<SparseArray>> {
        let array = Array::open(ctx, uri, object)?;
        if !array.sparse {
            tracing::warn!(event = "input.skipped", object = %object, "skipping {object}: a dense array (only sparse ones are read)");
            return Ok(None);
        }
        SparseArray::checked(array).map(Some)
    }

    /// What messages call it.
    pub fn object(&self) -> &str {
        &self.array.object
    }

    fn input(&self) -> &std::path::Path {
        &self.array.ctx.input
    }

    /// Every entry, a buffer at a time, as (row joinids, column joinids, values).
    fn each(
        &self,
        ranges: &[(u32, i64, i64)],
        mut f: impl FnMut(&[i64], &[i64], &Values) -> Result<()>,
    ) -> Result<()> {
        let (input, object) = (self.input(), self.object());
        query::read(
            &self.array,
            &Read {
                columns: &[DIM0, DIM1, DATA],
                ranges,
                cells: READ_ENTRIES,
            },
            |chunk: &[ColumnData]| {
                let (Values::I64(rows), Values::I64(cols)) = (
                    chunk[0].values(input, object)?,
                    chunk[1].values(input, object)?,
                ) else {
                    return Err(Error::invalid(
                        input,
                        format!("{object}: dimensions are not int64"),
                    ));
                };
                f(&rows, &cols, &chunk[2].values(input, object)?)
            },
        )
    }

    /// One full pass: entries per row (`counts`, when given, indexed by row position) and
    /// every value into `probe`. Reads only the row dimension (only the values without
    /// `counts`): columns are checked where rows are read.
    pub fn scan(
        &self,
        rows: &JoinIds,
        mut counts: Option<&mut [u64]>,
        probe: &mut ValueTypeProbe,
    ) -> Result<()> {
        let (input, object) = (self.input(), self.object());
        let columns: &[&str] = if counts.is_some() {
            &[DATA, DIM0]
        } else {
            &[DATA]
        };
        let read = Read {
            columns,
            ranges: &[],
            cells: READ_ENTRIES,
        };
        query::read(&self.array, &read, |chunk: &[ColumnData]| {
            probe.observe(&chunk[0].values(input, object)?.to_f64());
            if let Some(counts) = counts.as_deref_mut() {
                let Values::I64(r) = chunk[1].values(input, object)? else {
                    return Err(Error::invalid(
                        input,
                        format!("{object}: {DIM0} is not int64"),
                    ));
                };
                for &row in &r {
                    counts[self.position(rows, row, "row")? as usize] += 1;
                }
            }
            Ok(())
        })
    }

    fn position(&self, ids: &JoinIds, joinid: i64, what: &str) -> Result<u64> {
        ids.position(joinid).ok_or_else(|| {
            Error::invalid(self.input(), format!("{}: an entry in {what} soma_joinid {joinid}, which the dataframe does not hold", self.object()))
        })
    }

    /// The position of row `joinid` within `range`, which the read asked for.
    fn row_in(&self, rows: &JoinIds, joinid: i64, range: CellRange) -> Result<u64> {
        let pos = self.position(rows, joinid, "row")?;
        if !(range.start..range.end).contains(&pos) {
            return Err(Error::invalid(
                self.input(),
                format!(
                    "{}: the read of rows {}..{} returned row soma_joinid {joinid}",
                    self.object(),
                    range.start,
                    range.end
                ),
            ));
        }
        Ok(pos - range.start)
    }

    /// The entries of rows `range` (positions), cell-major, columns as positions of `cols`
    /// ascending within each row.
    pub fn read_rows(
        &self,
        range: CellRange,
        rows: &JoinIds,
        cols: &JoinIds,
    ) -> Result<CellEntries> {
        let n = range.len() as usize;
        let (mut cells, mut entries) = (Vec::new(), CellEntries::with_capacity(n, 0));
        if n > 0 {
            let (lo, hi) = rows.span(range);
            self.each(&[(0, lo, hi)], |r, c, values| {
                for (&row, &col) in r.iter().zip(c) {
                    cells.push(self.row_in(rows, row, range)? as u32);
                    let col = self.position(cols, col, "column")?;
                    entries.genes.push(u32::try_from(col).map_err(|_| {
                        Error::invalid(
                            self.input(),
                            format!("{}: over 2^32 columns", self.object()),
                        )
                    })?);
                }
                values.push_f32(&mut entries.values);
                Ok(())
            })?;
        }
        Ok(cell_major(n, &cells, entries))
    }

    /// Rows `range` as vectors of `dim` float32 components (absent entries are 0).
    pub fn read_vectors(&self, range: CellRange, rows: &JoinIds, dim: usize) -> Result<ArrayRef> {
        let n = range.len() as usize;
        // The dimension is the array's stated shape: a lying one is refused, not allocated.
        let size = n.checked_mul(dim).filter(|&k| k <= MAX_VECTOR_VALUES).ok_or_else(|| {
            Error::invalid(self.input(), format!("{}: vectors of {dim} values: {n} rows of them would take over 1 GiB (a shape that lies, or lower --chunk-size)", self.object()))
        })?;
        let mut flat = vec![0f32; size];
        if n > 0 {
            let (lo, hi) = rows.span(range);
            self.each(&[(0, lo, hi)], |r, c, values| {
                let values = values.to_f64();
                for ((&row, &col), &v) in r.iter().zip(c).zip(&values) {
                    let pos = self.row_in(rows, row, range)? as usize;
                    let col = usize::try_from(col)
                        .ok()
                        .filter(|&c| c < dim)
                        .ok_or_else(|| {
                            Error::invalid(
                                self.input(),
                                format!(
                                    "{}: an entry in column {col}, beyond its {dim} columns",
                                    self.object()
                                ),
                            )
                        })?;
                    flat[pos * dim + col] = v as f32;
                }
                Ok(())
            })?;
        }
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let list =
            FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(flat)), None)
                .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Arc::new(list))
    }
}

/// `entries` (genes and values in read order, no offsets yet) of `n` rows, `cells[k]`
/// the row of entry `k`, made cell-major: rows ascending, columns ascending within a row.
///
/// Unordered reads come in the array's global order, which is by row for SOMA's row-major
/// tiles: then only the offsets are counted. Otherwise (several fragments) entries are placed
/// by row, a counting sort, and each row is sorted by column.
fn cell_major(n: usize, cells: &[u32], mut entries: CellEntries) -> CellEntries {
    let mut counts = vec![0u64; n];
    for &cell in cells {
        counts[cell as usize] += 1;
    }
    entries.offsets.truncate(1);
    for count in &counts {
        let last = *entries.offsets.last().expect("starts with 0");
        entries.offsets.push(last + count);
    }
    if cells.windows(2).any(|w| w[0] > w[1]) {
        let mut next: Vec<u64> = entries.offsets[..n].to_vec();
        let (mut genes, mut values) = (vec![0u32; cells.len()], vec![0f32; cells.len()]);
        for (k, &cell) in cells.iter().enumerate() {
            let at = next[cell as usize] as usize;
            next[cell as usize] += 1;
            (genes[at], values[at]) = (entries.genes[k], entries.values[k]);
        }
        (entries.genes, entries.values) = (genes, values);
    }
    entries.sort_within_cells();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cell_major_places_rows_read_out_of_order() {
        // Two fragments: rows 0 and 2, then row 1 and more of row 0 (columns unsorted).
        let cells = [0, 2, 2, 1, 0];
        let entries = CellEntries {
            offsets: vec![0],
            genes: vec![5, 1, 3, 4, 2],
            values: vec![50.0, 10.0, 30.0, 40.0, 20.0],
        };
        let out = cell_major(4, &cells, entries);
        assert_eq!(out.offsets, vec![0, 2, 3, 5, 5]);
        assert_eq!(out.genes, vec![2, 5, 4, 1, 3]);
        assert_eq!(out.values, vec![20.0, 50.0, 40.0, 10.0, 30.0]);
    }

    #[test]
    fn test_cell_major_keeps_rows_read_in_order() {
        let entries = CellEntries {
            offsets: vec![0],
            genes: vec![1, 4, 0],
            values: vec![1.0, 4.0, 7.0],
        };
        let out = cell_major(3, &[0, 0, 2], entries);
        assert_eq!(out.offsets, vec![0, 2, 2, 3]);
        assert_eq!(out.genes, vec![1, 4, 0]);
    }
}
