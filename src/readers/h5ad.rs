//! AnnData `.h5ad` files: X (CSR, CSC or dense), obs and var.
//!
//! Ids come from the obs/var index (`obs_names`, `var_names`); obs/var columns keep their
//! `column-order`. The whole X is never loaded: chunks are read by cell range.
//! Layout reference: anndata's on-disk spec, summarised in docs/slaf-format.md Appendix C.

mod dataframe;
mod matrix;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};

use self::dataframe::DataFrameReader;
use self::matrix::MatrixSource;
use super::hdf5_util as h5;
use super::{CellChunk, CellRange, InputLayout, InputReader, MatrixScan};
use crate::error::{Error, Result};
use crate::schema::columns;

/// An opened `.h5ad` file.
pub struct H5adReader {
    path: PathBuf,
    // Kept open for the lifetime of the reader; the datasets below borrow its handle.
    _file: hdf5::File,
    layout: InputLayout,
    matrix: MatrixSource,
    obs: DataFrameReader,
    var: DataFrameReader,
}

impl H5adReader {
    /// Open `path` and resolve X, obs and var (no matrix data is read yet).
    pub fn open(path: &Path) -> Result<Self> {
        let file = h5::open_file(path)?;
        let root: &hdf5::Group = &file;
        let (matrix, n_cells, n_genes) = MatrixSource::open(path, root, "X")?;
        let obs = DataFrameReader::open(
            path,
            root,
            "obs",
            &[
                columns::CELL_ID,
                columns::CELL_INTEGER_ID,
                columns::CELL_START_INDEX,
            ],
        )?;
        let var = DataFrameReader::open(
            path,
            root,
            "var",
            &[columns::GENE_ID, columns::GENE_INTEGER_ID],
        )?;
        if obs.n_rows() as u64 != n_cells || var.n_rows() as u64 != n_genes {
            return Err(Error::invalid(
                path,
                format!(
                    "/X has shape ({n_cells}, {n_genes}) but obs has {} rows and var {}",
                    obs.n_rows(),
                    var.n_rows()
                ),
            ));
        }
        Ok(H5adReader {
            path: path.to_path_buf(),
            layout: InputLayout {
                n_cells,
                n_genes,
                matrix_encoding: matrix.encoding().to_string(),
            },
            _file: file,
            matrix,
            obs,
            var,
        })
    }
}

fn batch(
    path: &Path,
    fields: &[Field],
    columns: Vec<arrow::array::ArrayRef>,
    rows: usize,
) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(fields.to_vec()));
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema, columns, &options)
        .map_err(|e| Error::invalid(path, format!("dataframe columns do not line up: {e}")))
}

impl InputReader for H5adReader {
    fn path(&self) -> &Path {
        &self.path
    }

    fn layout(&self) -> &InputLayout {
        &self.layout
    }

    fn obs_fields(&self) -> &[Field] {
        self.obs.fields()
    }

    fn var_fields(&self) -> &[Field] {
        self.var.fields()
    }

    fn scan(&mut self) -> Result<MatrixScan> {
        self.matrix
            .scan(&self.path, self.layout.n_cells, self.layout.n_genes)
    }

    fn genes(&mut self) -> Result<(RecordBatch, Vec<String>)> {
        let n = self.layout.n_genes as usize;
        let columns = self.var.read_columns(0..n)?;
        let names = self.var.read_index(0..n)?;
        Ok((batch(&self.path, self.var.fields(), columns, n)?, names))
    }

    fn chunks<'a>(
        &'a mut self,
        range: CellRange,
        chunk_size: u64,
        scan: &'a MatrixScan,
    ) -> Result<Box<dyn Iterator<Item = Result<CellChunk>> + Send + 'a>> {
        if range.end > self.layout.n_cells {
            return Err(Error::Internal(format!(
                "cell range {}..{} beyond {} cells",
                range.start, range.end, self.layout.n_cells
            )));
        }
        let n_genes = self.layout.n_genes;
        self.matrix
            .prepare(&self.path, range, chunk_size, n_genes)?;
        let H5adReader {
            path, matrix, obs, ..
        } = self;
        let path: &Path = path;
        Ok(Box::new(range.split(chunk_size).map(move |cells| {
            let rows = cells.start as usize..cells.end as usize;
            let entries = matrix.read_cells(path, cells, n_genes, scan)?;
            let obs_columns = obs.read_columns(rows.clone())?;
            let cell_ids = obs.read_index(rows.clone())?;
            Ok(CellChunk {
                cells,
                obs: batch(path, obs.fields(), obs_columns, rows.len())?,
                cell_ids,
                entries,
            })
        })))
    }
}
