//! AnnData `.h5ad` files: X (CSR, CSC or dense), obs, var, layers, obsm, varm, obsp, varp,
//! uns, and optionally raw.
//!
//! Ids come from the obs/var index (`obs_names`, `var_names`); obs/var columns keep their
//! `column-order`; obsm/varm keys follow as vector columns. Nothing large is loaded whole: X,
//! layers, obsm and obsp are read by cell range. Files of anndata 0.6 and 0.7 are read with
//! the meaning anndata gives them (see `legacy`).
//! Layout reference: anndata's on-disk spec, summarised in docs/slaf-format.md Appendix C.

mod annotations;
mod dataframe;
mod legacy;

mod uns;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};

use self::annotations::{open_pairwise, open_vectors, PairwiseMatrix, VectorColumn};
use self::dataframe::DataFrameReader;
use self::legacy::UnsCategories;
use super::hdf5_matrix::MatrixSource;
use super::hdf5_util as h5;
use super::{
    Axis, CellBatch, CellEntries, CellRange, InputLayout, InputParts, InputReader, MatrixScan,
    RawMode, ReadOptions, ValueScan,
};
use crate::cells::RenamedKeys;
use crate::columns;
use crate::columns::sanitise_column_names;
use crate::error::{Error, Result};

/// An opened `.h5ad` file.
pub struct H5adReader {
    path: PathBuf,
    file: h5::InputFile,
    layout: InputLayout,
    matrix: MatrixSource,
    obs: DataFrameReader,
    var: DataFrameReader,
    layers: Vec<(String, MatrixSource)>,
    obsm: Vec<VectorColumn>,
    varm: Vec<VectorColumn>,
    obsp: Vec<PairwiseMatrix>,
    varp: Vec<PairwiseMatrix>,
    obs_fields: Vec<Field>,
    var_fields: Vec<Field>,
    parts: InputParts,
    /// uns elements anndata takes out on reading (0.6 categories that became column labels,
    /// adjacency matrices moved to obsp), as HDF5 paths.
    uns_dropped: Vec<String>,
}

impl H5adReader {
    /// Open `path` and resolve every part (no matrix data is read yet).
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Self> {
        let file = h5::open_file(path)?;
        let root: &hdf5::Group = &file;
        if !root.link_exists("X") {
            return Err(Error::invalid(
                path,
                "/X: missing (the file has no expression matrix)",
            ));
        }
        let (matrix, n_cells, n_genes) = MatrixSource::open(path, root, "X")?;
        let obs_reserved = [
            columns::CELL_ID,
            columns::CELL_INTEGER_ID,
            columns::CELL_START_INDEX,
        ];
        let var_reserved = [columns::GENE_ID, columns::GENE_INTEGER_ID];
        let categories = UnsCategories::read(path, root)?;
        let obs = DataFrameReader::open(path, root, "obs", &obs_reserved, &categories)?;
        let var = DataFrameReader::open(path, root, "var", &var_reserved, &categories)?;
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
        let layers = open_layers(path, root, options.raw, &var, (n_cells, n_genes))?;
        let layer_names: Vec<String> = layers.iter().map(|(k, _)| k.clone()).collect();
        let sanitised_layers = sanitise_column_names(
            &layer_names,
            &[columns::CELL_INTEGER_ID, columns::GENE_INTEGER_ID],
        )
        .map_err(|e| Error::invalid(path, format!("/layers: {e}")))?;

        let obsm = open_vectors(path, root, "obsm", n_cells)?;
        let varm = open_vectors(path, root, "varm", n_genes)?;
        let obs_fields = with_vectors(path, "obsm", obs.fields(), &obsm, &obs_reserved)?;
        let var_fields = with_vectors(path, "varm", var.fields(), &varm, &var_reserved)?;
        let mut obsp = open_pairwise(path, root, "obsp", n_cells)?;
        let (moved, moved_from) = annotations::moved_from_uns(path, root, n_cells)?;
        // anndata's move replaces an obsp key of the same name.
        obsp.retain(|p| !moved.iter().any(|m| m.key == p.key));
        obsp.extend(moved);
        obsp.sort_by(|a, b| a.key.cmp(&b.key));
        let varp = open_pairwise(path, root, "varp", n_genes)?;
        let vector_names = |v: &[VectorColumn]| {
            RenamedKeys::differing(v.iter().map(|v| (v.key.as_str(), v.name.as_str())))
        };
        let pairwise_names = |p: &[PairwiseMatrix]| {
            RenamedKeys::differing(p.iter().map(|p| (p.key.as_str(), p.name.as_str())))
        };
        let column_names = |df: &DataFrameReader| {
            RenamedKeys::differing(
                df.source_names()
                    .iter()
                    .zip(df.fields())
                    .map(|(k, f)| (k.as_str(), f.name().as_str())),
            )
        };
        let renamed = RenamedKeys {
            obs: column_names(&obs),
            var: column_names(&var),
            layers: RenamedKeys::differing(
                layer_names
                    .iter()
                    .zip(&sanitised_layers)
                    .map(|(k, c)| (k.as_str(), c.as_str())),
            ),
            obsm: vector_names(&obsm),
            varm: vector_names(&varm),
            obsp: pairwise_names(&obsp),
            varp: pairwise_names(&varp),
        };
        let parts = InputParts {
            layers: sanitised_layers,
            obsm: obsm.iter().map(|v| (v.name.clone(), v.dim)).collect(),
            varm: varm.iter().map(|v| (v.name.clone(), v.dim)).collect(),
            obsp: obsp.iter().map(|p| p.name.clone()).collect(),
            varp: varp.iter().map(|p| p.name.clone()).collect(),
            renamed,
        };
        let mut uns_dropped: Vec<String> = [obs.uns_categories_used(), var.uns_categories_used()]
            .concat()
            .iter()
            .map(|key| format!("/uns/{key}"))
            .collect();
        uns_dropped.extend(moved_from);
        Ok(H5adReader {
            path: path.to_path_buf(),
            layout: InputLayout {
                n_cells,
                n_genes,
                matrix_encoding: matrix.encoding().to_string(),
            },
            file,
            matrix,
            obs,
            var,
            layers,
            obsm,
            varm,
            obsp,
            varp,
            obs_fields,
            var_fields,
            parts,
            uns_dropped,
        })
    }
}

/// The layers, X's shape each, and raw.X as the layer "raw" when `raw` asks for it.
fn open_layers(
    path: &Path,
    root: &hdf5::Group,
    raw: RawMode,
    var: &DataFrameReader,
    (n_cells, n_genes): (u64, u64),
) -> Result<Vec<(String, MatrixSource)>> {
    let mut layers = Vec::new();
    if let Some((group, keys)) = annotations::members(path, root, "layers")? {
        for key in keys {
            let (source, rows, cols) = MatrixSource::open(path, &group, &key)?;
            if (rows, cols) != (n_cells, n_genes) {
                return Err(Error::invalid(
                    path,
                    format!("/layers/{key}: shape ({rows}, {cols}) differs from X's ({n_cells}, {n_genes})"),
                ));
            }
            layers.push((key, source));
        }
    }
    if let Some(layout) = legacy::raw_layout(path, root)? {
        match raw {
            RawMode::Ignore => tracing::info!(
                event = "input.skipped",
                object = "/raw",
                "ignoring /raw (pass --raw as-layer to keep raw.X as the layer 'raw')"
            ),
            RawMode::AsLayer => {
                let source = open_raw(path, root, layout, var, n_cells, n_genes)?;
                layers.push(("raw".into(), source))
            }
        }
    }
    Ok(layers)
}

/// `raw.X` as a layer: only when raw.var lists exactly var's genes, in order. Under the group
/// `raw`, or (anndata before 0.7) `raw.X` and `raw.var` at the top.
fn open_raw(
    path: &Path,
    root: &hdf5::Group,
    layout: legacy::RawLayout,
    var: &DataFrameReader,
    n_cells: u64,
    n_genes: u64,
) -> Result<MatrixSource> {
    let (parent, x, var_name) = match layout {
        legacy::RawLayout::TopLevel => (root.clone(), "raw.X", "raw.var"),
        legacy::RawLayout::Group => (h5::group(path, root, "raw")?, "X", "var"),
    };
    let no_categories = UnsCategories::default();
    let (source, rows, cols) = MatrixSource::open(path, &parent, x)?;
    let raw_var = DataFrameReader::open(path, &parent, var_name, &[], &no_categories)?;
    let same_genes = (rows, cols) == (n_cells, n_genes)
        && raw_var.read_index(0..raw_var.n_rows())? == var.read_index(0..var.n_rows())?;
    if !same_genes {
        return Err(Error::invalid(
            path,
            format!(
                "/raw: raw.X is ({rows}, {cols}) over other genes than X ({n_cells}, {n_genes}); --raw as-layer needs the same genes (use --raw ignore)"
            ),
        ));
    }
    Ok(source)
}

/// Data fields followed by one vector field per key, refusing name clashes.
fn with_vectors(
    path: &Path,
    group: &str,
    fields: &[Field],
    vectors: &[VectorColumn],
    reserved: &[&str],
) -> Result<Vec<Field>> {
    let mut all: Vec<Field> = fields.to_vec();
    all.extend(vectors.iter().map(VectorColumn::field));
    let names: Vec<String> = all.iter().map(|f| f.name().clone()).collect();
    sanitise_column_names(&names, reserved)
        .map_err(|e| Error::invalid(path, format!("/{group}: {e}")))?;
    Ok(all)
}

fn batch(
    path: &Path,
    fields: &[Field],
    columns: Vec<ArrayRef>,
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
        &self.obs_fields
    }

    fn var_fields(&self) -> &[Field] {
        &self.var_fields
    }

    fn parts(&self) -> &InputParts {
        &self.parts
    }

    fn scan(&mut self, values: ValueScan) -> Result<MatrixScan> {
        let (n_cells, n_genes) = (self.layout.n_cells, self.layout.n_genes);
        let mut scan = self.matrix.scan(&self.path, n_cells, n_genes, values)?;
        for (_, layer) in &self.layers {
            let guess = match values {
                ValueScan::RowsOnly => layer.guess_value_type(&self.path)?,
                ValueScan::Full => None,
            };
            scan.types_guessed |= guess.is_some();
            let value_type = match guess {
                Some(t) => t,
                None => layer.value_type(&self.path, n_cells, n_genes)?,
            };
            scan.layer_types.push(value_type);
        }
        Ok(scan)
    }

    fn genes(&mut self) -> Result<(RecordBatch, Vec<String>)> {
        let n = self.layout.n_genes as usize;
        let mut columns = self.var.read_columns(0..n)?;
        for v in &mut self.varm {
            v.prepare(&self.path, CellRange::new(0, n as u64), n.max(1) as u64)?;
            columns.push(v.read(&self.path, 0..n)?);
        }
        let names = self.var.read_index(0..n)?;
        Ok((batch(&self.path, &self.var_fields, columns, n)?, names))
    }

    fn batches<'a>(
        &'a mut self,
        range: CellRange,
        batch_cells: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<CellBatch>> + Send + 'a>> {
        if range.end > self.layout.n_cells {
            return Err(Error::Internal(format!(
                "cell range {}..{} beyond {} cells",
                range.start, range.end, self.layout.n_cells
            )));
        }
        let n_genes = self.layout.n_genes;
        self.matrix
            .prepare(&self.path, range, batch_cells, n_genes)?;
        for (_, layer) in &mut self.layers {
            layer.prepare(&self.path, range, batch_cells, n_genes)?;
        }
        for v in &mut self.obsm {
            v.prepare(&self.path, range, batch_cells)?;
        }
        let H5adReader {
            path,
            matrix,
            obs,
            layers,
            obsm,
            obs_fields,
            ..
        } = self;
        let path: &Path = path;
        Ok(Box::new(range.split(batch_cells).map(move |cells| {
            let rows = cells.start as usize..cells.end as usize;
            let entries = matrix.read_cells(path, cells, n_genes)?;
            let layer_entries = layers
                .iter_mut()
                .map(|(_, l)| l.read_cells(path, cells, n_genes))
                .collect::<Result<Vec<_>>>()?;
            let mut obs_columns = obs.read_columns(rows.clone())?;
            for v in obsm.iter_mut() {
                obs_columns.push(v.read(path, rows.clone())?);
            }
            let cell_ids = obs.read_index(rows.clone())?;
            Ok(CellBatch {
                cells,
                obs: batch(path, obs_fields, obs_columns, rows.len())?,
                cell_ids,
                entries,
                layers: layer_entries,
            })
        })))
    }

    fn prepare_pairwise(&mut self, axis: Axis, rows: CellRange, batch_cells: u64) -> Result<()> {
        let n = self.axis_len(axis);
        if rows.end > n {
            return Err(Error::Internal(format!(
                "pairwise rows {}..{} of {n}",
                rows.start, rows.end
            )));
        }
        let path = self.path.clone();
        for p in self.pairwise_mut(axis) {
            p.prepare(&path, rows, batch_cells, n)?;
        }
        Ok(())
    }

    fn read_pairwise(&mut self, axis: Axis, rows: CellRange) -> Result<Vec<CellEntries>> {
        let n = self.axis_len(axis);
        let path = self.path.clone();
        self.pairwise_mut(axis)
            .iter_mut()
            .map(|p| p.read(&path, rows, n))
            .collect()
    }

    fn uns(&mut self) -> Result<Option<serde_json::Value>> {
        uns::read_uns(&self.path, &self.file, &self.uns_dropped)
    }
}

impl H5adReader {
    fn axis_len(&self, axis: Axis) -> u64 {
        match axis {
            Axis::Cells => self.layout.n_cells,
            Axis::Genes => self.layout.n_genes,
        }
    }

    fn pairwise_mut(&mut self, axis: Axis) -> &mut Vec<PairwiseMatrix> {
        match axis {
            Axis::Cells => &mut self.obsp,
            Axis::Genes => &mut self.varp,
        }
    }
}
