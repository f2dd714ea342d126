//! obsm / varm (per-row vectors) and obsp / varp (square pairwise matrices) of an h5ad file.
//!
//! A vector key becomes one `FixedSizeList<float32>[d]` column read by row range, dense or
//! sparse alike (docs/slaf-format.md §2.6), or a field of the compound dataset anndata before
//! 0.7 wrote for obsm/varm. A pairwise key is a square matrix read by row range like X, never
//! densified (§2.7). Keys anndata can hold but SLAF cannot (dataframes, awkward arrays) are
//! skipped with a warning naming them.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use arrow::datatypes::{DataType, Field};
use hdf5::Group;

use super::super::hdf5_util as h5;
use crate::cells::{CellEntries, CellRange};
use crate::error::{Error, Result};
use crate::readers::hdf5_matrix::MatrixSource;

/// One obsm/varm key.
#[derive(Debug)]
pub struct VectorColumn {
    /// The key as stored.
    pub key: String,
    /// Output column name (sanitised key).
    pub name: String,
    /// Vector length.
    pub dim: usize,
    source: VectorSource,
}

#[derive(Debug)]
enum VectorSource {
    /// A 1-D (dim 1) or 2-D dataset.
    Dense(hdf5::Dataset),
    /// A sparse matrix of shape (rows, dim) (boxed: it holds the direct readers' state).
    Sparse(Box<MatrixSource>),
    /// A field of a 1-D compound dataset (anndata before 0.7): a number or a fixed array.
    Field {
        ds: hdf5::Dataset,
        field: String,
        array: bool,
    },
}

/// One obsp/varp key: a square sparse or dense matrix.
#[derive(Debug)]
pub struct PairwiseMatrix {
    /// The key as stored.
    pub key: String,
    /// Output column name (sanitised key).
    pub name: String,
    source: MatrixSource,
}

/// An optional group (`obsm`, `layers`, ...) and its member names, sorted; `None` if absent.
pub fn members(path: &Path, root: &Group, group: &str) -> Result<Option<(Group, Vec<String>)>> {
    if !root.link_exists(group) {
        return Ok(None);
    }
    let g = h5::group(path, root, group)?;
    let mut names = g
        .member_names()
        .map_err(|e| h5::h5_error(path, &g.name(), e))?;
    names.sort();
    Ok(Some((g, names)))
}

/// Resolve the vector keys of `group` ("obsm"/"varm"), each with `n_rows` rows.
pub fn open_vectors(
    path: &Path,
    root: &Group,
    group: &str,
    n_rows: u64,
) -> Result<Vec<VectorColumn>> {
    let mut out = Vec::new();
    if root.link_exists(group) && !h5::is_group(root, group) {
        return open_compound_vectors(path, &h5::dataset(path, root, group)?, n_rows);
    }
    let Some((g, keys)) = members(path, root, group)? else {
        return Ok(out);
    };
    for key in keys {
        let object = format!("/{group}/{key}");
        let name = key.replace('.', "_");
        if h5::is_group(&g, &key) {
            let sub = h5::group(path, &g, &key)?;
            let encoding = h5::encoding_type(path, &sub)?.unwrap_or_default();
            if encoding != "csr_matrix" && encoding != "csc_matrix" {
                tracing::warn!(event = "input.skipped", object = %object, encoding = %encoding, "skipping {object}: a {encoding} cannot be stored as a vector column");
                continue;
            }
            let (source, rows, dim) = MatrixSource::open(path, &g, &key)?;
            check_rows(path, &object, rows, n_rows)?;
            check_dim(path, &object, dim as usize)?;
            out.push(VectorColumn {
                key,
                name,
                dim: dim as usize,
                source: VectorSource::Sparse(Box::new(source)),
            });
            continue;
        }
        let ds = h5::dataset(path, &g, &key)?;
        let shape = ds.shape();
        let dim = match shape.as_slice() {
            [_] => 1,
            [_, d] => *d,
            _ => {
                tracing::warn!(event = "input.skipped", object = %object, "skipping {object}: shape {shape:?} is not 1- or 2-dimensional");
                continue;
            }
        };
        use hdf5::types::TypeDescriptor as T;
        if !matches!(
            h5::descriptor(path, &ds)?,
            T::Integer(_) | T::Unsigned(_) | T::Float(_) | T::Boolean
        ) {
            tracing::warn!(event = "input.skipped", object = %object, "skipping {object}: not numeric");
            continue;
        }
        check_rows(path, &object, shape[0] as u64, n_rows)?;
        check_dim(path, &object, dim)?;
        out.push(VectorColumn {
            key,
            name,
            dim,
            source: VectorSource::Dense(ds),
        });
    }
    Ok(out)
}

/// The keys of an anndata 0.6 obsm/varm: a 1-D compound dataset, a field per key, each a
/// number (dimension 1) or a fixed array of numbers (as anndata's `convert_to_dict` splits it).
fn open_compound_vectors(
    path: &Path,
    ds: &hdf5::Dataset,
    n_rows: u64,
) -> Result<Vec<VectorColumn>> {
    use hdf5::types::TypeDescriptor as T;
    let object = ds.name();
    h5::check_ndim(path, ds, 1)?;
    let Some(fields) = h5::compound_fields(path, ds)? else {
        return Err(Error::invalid(
            path,
            format!("{object}: a dataset that is not a compound one, where anndata before 0.7 kept one field per key"),
        ));
    };
    check_rows(path, &object, h5::len(ds) as u64, n_rows)?;
    // h5py's booleans are an enum, which HDF5 converts to a float (0 or 1).
    let numeric = |t: &T| matches!(t, T::Integer(_) | T::Unsigned(_) | T::Float(_) | T::Boolean);
    let mut out = Vec::new();
    for f in fields {
        let (dim, array) = match &f.ty {
            T::FixedArray(item, d) if numeric(item) && *d > 0 => (*d, true),
            t if numeric(t) => (1, false),
            other => {
                tracing::warn!(event = "input.skipped", object = %object, field = %f.name, "skipping field '{}' of {object}: {other} is not a vector of numbers", f.name);
                continue;
            }
        };
        check_dim(path, &format!("{object} field '{}'", f.name), dim)?;
        out.push(VectorColumn {
            name: f.name.replace('.', "_"),
            key: f.name.clone(),
            dim,
            source: VectorSource::Field {
                ds: ds.clone(),
                field: f.name,
                array,
            },
        });
    }
    Ok(out)
}

/// Refuse vectors longer than a `FixedSizeList` column holds (its length is an i32).
fn check_dim(path: &Path, object: &str, dim: usize) -> Result<()> {
    if i32::try_from(dim).is_err() {
        return Err(Error::invalid(
            path,
            format!("{object}: vectors of {dim} values, more than a column can hold"),
        ));
    }
    Ok(())
}

fn check_rows(path: &Path, object: &str, rows: u64, n_rows: u64) -> Result<()> {
    if rows != n_rows {
        return Err(Error::invalid(
            path,
            format!("{object}: has {rows} rows, expected {n_rows}"),
        ));
    }
    Ok(())
}

impl VectorColumn {
    /// The Arrow field of this column.
    pub fn field(&self) -> Field {
        Field::new(&self.name, vector_type(self.dim), true)
    }

    /// Prepare sparse CSC sources for reading `range` in chunks.
    pub fn prepare(&mut self, path: &Path, range: CellRange, batch_cells: u64) -> Result<()> {
        if let VectorSource::Sparse(m) = &mut self.source {
            m.prepare(path, range, batch_cells, self.dim as u64)?;
        }
        Ok(())
    }

    /// The vectors of `rows`.
    pub fn read(&mut self, path: &Path, rows: Range<usize>) -> Result<ArrayRef> {
        let n = rows.len();
        let values: Vec<f32> = match &mut self.source {
            VectorSource::Dense(ds) if ds.ndim() == 1 => h5::read_f64(path, ds, rows)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            VectorSource::Dense(ds) => {
                if self.dim == 0 {
                    Vec::new()
                } else {
                    h5::read_rows_f64(path, ds, rows)?
                        .into_iter()
                        .map(|v| v as f32)
                        .collect()
                }
            }
            VectorSource::Sparse(m) => {
                let cells = CellRange::new(rows.start as u64, rows.end as u64);
                densify(&m.read_cells(path, cells, self.dim as u64)?, self.dim)
            }
            VectorSource::Field { ds, field, array } => {
                let f32_type = hdf5::types::TypeDescriptor::Float(hdf5::types::FloatSize::U4);
                let mem = match array {
                    false => f32_type,
                    true => hdf5::types::TypeDescriptor::FixedArray(Box::new(f32_type), self.dim),
                };
                h5::read_field(path, ds, field, mem, self.dim, rows)?
            }
        };
        if values.len() != n * self.dim {
            return Err(Error::Internal(format!(
                "{}: read {} values for {n} rows",
                self.name,
                values.len()
            )));
        }
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let array = FixedSizeListArray::try_new(
            item,
            self.dim as i32,
            Arc::new(Float32Array::from(values)),
            None,
        )
        .map_err(|e| Error::Internal(format!("{}: {e}", self.name)))?;
        Ok(Arc::new(array))
    }
}

pub use crate::readers::vector_type;

fn densify(entries: &CellEntries, dim: usize) -> Vec<f32> {
    let mut out = vec![0f32; entries.n_cells() * dim];
    for (row, w) in entries.offsets.windows(2).enumerate() {
        for k in w[0] as usize..w[1] as usize {
            out[row * dim + entries.genes[k] as usize] = entries.values[k];
        }
    }
    out
}

/// Resolve the pairwise keys of `group` ("obsp"/"varp"), square of side `n`.
pub fn open_pairwise(
    path: &Path,
    root: &Group,
    group: &str,
    n: u64,
) -> Result<Vec<PairwiseMatrix>> {
    let mut out = Vec::new();
    let Some((g, keys)) = members(path, root, group)? else {
        return Ok(out);
    };
    for key in keys {
        let object = format!("/{group}/{key}");
        let (source, rows, cols) = MatrixSource::open(path, &g, &key)?;
        if rows != n || cols != n {
            return Err(Error::invalid(
                path,
                format!("{object}: shape ({rows}, {cols}), expected ({n}, {n})"),
            ));
        }
        out.push(PairwiseMatrix {
            name: key.replace('.', "_"),
            key,
            source,
        });
    }
    Ok(out)
}

/// The adjacency matrices anndata moves from `uns["neighbors"]` to obsp on reading (its
/// `_move_adj_mtx`, any file version): `distances` and `connectivities` when each is a 2-D
/// matrix (sparse, or a dense array of numbers). Each must be square of side `n`, as obsp
/// requires. Returns them with the uns paths they leave.
pub fn moved_from_uns(
    path: &Path,
    root: &Group,
    n: u64,
) -> Result<(Vec<PairwiseMatrix>, Vec<String>)> {
    use hdf5::types::TypeDescriptor as T;
    let (mut out, mut moved) = (Vec::new(), Vec::new());
    if !h5::is_group(root, "uns") || !h5::is_group(&h5::group(path, root, "uns")?, "neighbors") {
        return Ok((out, moved));
    }
    let neighbors = h5::group(path, root, "uns/neighbors")?;
    for key in ["connectivities", "distances"] {
        let is_matrix = if h5::is_group(&neighbors, key) {
            let g = h5::group(path, &neighbors, key)?;
            let object = g.name();
            matches!(
                h5::sparse_encoding(path, &g, &object)
                    .map(|(e, _)| e)
                    .as_deref(),
                Ok("csr_matrix" | "csc_matrix")
            )
        } else if neighbors.link_exists(key) {
            let ds = h5::dataset(path, &neighbors, key)?;
            ds.ndim() == 2
                && matches!(
                    h5::descriptor(path, &ds)?,
                    T::Integer(_) | T::Unsigned(_) | T::Float(_)
                )
        } else {
            false
        };
        if !is_matrix {
            continue;
        }
        let object = format!("/uns/neighbors/{key}");
        let (source, rows, cols) = MatrixSource::open(path, &neighbors, key)?;
        if rows != n || cols != n {
            return Err(Error::invalid(
                path,
                format!("{object}: shape ({rows}, {cols}), but anndata moves it to obsp, which needs ({n}, {n})"),
            ));
        }
        out.push(PairwiseMatrix {
            key: key.to_string(),
            name: key.to_string(),
            source,
        });
        moved.push(object);
    }
    Ok((out, moved))
}

impl PairwiseMatrix {
    /// Prepare for reading rows of `range` in chunks.
    pub fn prepare(
        &mut self,
        path: &Path,
        range: CellRange,
        batch_cells: u64,
        n: u64,
    ) -> Result<()> {
        self.source.prepare(path, range, batch_cells, n)
    }

    /// The stored entries of `rows`.
    pub fn read(&mut self, path: &Path, rows: CellRange, n: u64) -> Result<CellEntries> {
        self.source.read_cells(path, rows, n)
    }
}
