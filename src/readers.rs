//! Input readers: one module per format behind [`InputReader`].
//!
//! A reader answers cheap questions at open (shape, obs/var column types), makes one full pass
//! over the matrix when asked ([`InputReader::scan`]: value type from every stored value, row
//! counts per cell), and then hands out [`CellBatch`]s for a cell range: cell-major, cells
//! ascending, genes ascending within a cell, a cell never split across batches. Readers know
//! nothing of Lance or of SLAF's tables: what they hand out is the shared vocabulary of
//! [`crate::cells`] and [`crate::values`], with obs/var fields named by [`crate::columns`].
//! A file an input's fetcher left in an object store is read through [`streamed`] (read in
//! order) or [`ranged`] (read at offsets).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::Field;

use crate::cells::{Axis, CellBatch, CellEntries, CellRange, InputParts};
use crate::error::{Error, Result};
use crate::values::ValueType;

pub mod cellranger_h5;
pub mod format;
mod h5ad;
mod hdf5_direct;
mod hdf5_matrix;
pub(crate) mod hdf5_util;
mod mtx;
pub mod ranged;
pub mod soma;
mod spill;
pub mod streamed;
pub mod tenx;

pub use cellranger_h5::CellRangerReader;
pub use format::InputFormat;
pub use h5ad::H5adReader;
pub use mtx::MtxReader;
pub use soma::{SomaOptions, SomaReader};

/// What an opened input holds.
#[derive(Debug, Clone)]
pub struct InputLayout {
    /// Number of cells (obs rows).
    pub n_cells: u64,
    /// Number of genes (var rows).
    pub n_genes: u64,
    /// How the matrix is stored, for logs ("csr_matrix", "csc_matrix", "array").
    pub matrix_encoding: String,
}

/// What to do with AnnData's `raw` (its own X and var).
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
pub enum RawMode {
    /// Leave it out (logged).
    #[default]
    Ignore,
    /// Store raw.X as the layer "raw"; raw.var must list the same genes as var.
    AsLayer,
}

/// Options readers take at open.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    /// The input format; detected from the content when `None`.
    pub format: Option<InputFormat>,
    /// What to do with `raw` (h5ad).
    pub raw: RawMode,
    /// Gene naming and feature selection (10x inputs).
    pub tenx: tenx::TenxOptions,
    /// Measurement, X layer and id columns (TileDB-SOMA inputs).
    #[serde(skip_serializing_if = "SomaOptions::is_default")]
    pub soma: SomaOptions,
}

/// How much of the stored values [`InputReader::scan`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueScan {
    /// Every stored value: the value types are exact.
    Full,
    /// Only what the row counts need. Where those come from an index (CSR `indptr`), the
    /// values are not read: their types are guessed from a sample
    /// ([`MatrixScan::types_guessed`]) and the writer checks every value against the guess.
    /// `convert` uses this to read X once instead of twice.
    RowsOnly,
}

/// The result of one full pass over the matrix.
#[derive(Debug, Clone)]
pub struct MatrixScan {
    /// The narrowest value type that holds every stored value exactly.
    pub value_type: ValueType,
    /// The same for each layer, in [`InputParts::layers`] order.
    pub layer_types: Vec<ValueType>,
    /// `n_cells + 1` offsets: cell `i`'s expression rows are `row_offsets[i]..row_offsets[i+1]`.
    pub row_offsets: Vec<u64>,
    /// The value types come from a sample, not from every value ([`ValueScan::RowsOnly`]).
    pub types_guessed: bool,
}

impl MatrixScan {
    /// Total stored entries.
    pub fn total_rows(&self) -> u64 {
        self.row_offsets.last().copied().unwrap_or(0)
    }
}

/// The type of an obsm/varm vector column: `FixedSizeList<float32>[dim]`, what upstream writes.
pub fn vector_type(dim: usize) -> arrow::datatypes::DataType {
    use arrow::datatypes::DataType;
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dim as i32,
    )
}

/// An obs batch with no columns and `rows` rows, for inputs whose cells have only a name.
pub fn empty_obs(rows: usize) -> Result<RecordBatch> {
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
    RecordBatch::try_new_with_options(schema, vec![], &options)
        .map_err(|e| Error::Internal(e.to_string()))
}

/// An opened input file, of any format.
pub trait InputReader: Send {
    /// The input's path, for messages.
    fn path(&self) -> &Path;
    /// Shape and storage of the input.
    fn layout(&self) -> &InputLayout;
    /// Output fields of the obs columns, sanitised, in source order.
    fn obs_fields(&self) -> &[Field];
    /// Output fields of the var columns, sanitised, in source order.
    fn var_fields(&self) -> &[Field];
    /// The per-cell row offsets and value types; `values` says whether every value must be
    /// read for the types.
    fn scan(&mut self, values: ValueScan) -> Result<MatrixScan>;
    /// The var columns of all genes, and their names.
    fn genes(&mut self) -> Result<(RecordBatch, Vec<String>)>;
    /// Batches of at most `batch_cells` cells covering `range`, ascending.
    fn batches<'a>(
        &'a mut self,
        range: CellRange,
        batch_cells: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<CellBatch>> + Send + 'a>>;
    /// Layers, obsm/varm, obsp/varp the input holds (none by default).
    fn parts(&self) -> &InputParts;
    /// Prepare to read rows `rows` of `axis`'s pairwise matrices in batches of `batch_cells`.
    fn prepare_pairwise(&mut self, _axis: Axis, _rows: CellRange, _chunk_size: u64) -> Result<()> {
        Ok(())
    }
    /// Entries of rows `rows` of every pairwise key of `axis`, in [`InputParts`] order.
    fn read_pairwise(&mut self, _axis: Axis, _rows: CellRange) -> Result<Vec<CellEntries>> {
        Ok(Vec::new())
    }
    /// Whether entries are stored by ascending cell, when the reader had to find out (10x
    /// MTX, after [`InputReader::scan`]); planning records it for the shards.
    fn cells_sorted(&self) -> Option<bool> {
        None
    }
    /// Unstructured annotations as strict JSON, if any.
    fn uns(&mut self) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
}

/// The local stand-ins of objects left in a store, each with the source its reader reads
/// instead ([`streamed`], [`ranged`]). An entry lives as long as the process: a stand-in's
/// path lies in a temporary directory of its own, never reused.
pub struct StandIns<S: ?Sized>(Mutex<BTreeMap<PathBuf, Arc<S>>>);

impl<S: ?Sized> StandIns<S> {
    /// No stand-ins.
    pub const fn new() -> Self {
        StandIns(Mutex::new(BTreeMap::new()))
    }

    /// Read `path` from `source` instead of from local disk.
    pub fn insert(&self, path: PathBuf, source: Arc<S>) {
        let mut sources = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sources.insert(path, source);
    }

    /// The source registered for `path`, if any.
    pub fn get(&self, path: &Path) -> Option<Arc<S>> {
        let sources = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sources.get(path).cloned()
    }
}

impl<S: ?Sized> Default for StandIns<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// Open `path` with the reader for its format (given, or detected from the content).
pub fn open(path: &Path, options: &ReadOptions) -> Result<Box<dyn InputReader>> {
    let opened = open_format(path, options);
    match ranged::source(path) {
        Some(source) => ranged::opened(opened, source),
        None => opened,
    }
}

fn open_format(path: &Path, options: &ReadOptions) -> Result<Box<dyn InputReader>> {
    format::check_kind(path)?;
    let format = match options.format {
        Some(f) => f,
        None => format::detect(path)?,
    };
    if !path.exists() {
        return Err(Error::InputMissing {
            path: path.to_path_buf(),
            what: "no such file or directory".into(),
        });
    }
    Ok(match format {
        InputFormat::H5ad => Box::new(H5adReader::open(path, options)?),
        InputFormat::TenxMtx => Box::new(MtxReader::open(path, &options.tenx)?),
        InputFormat::TenxH5 => Box::new(CellRangerReader::open(path, &options.tenx)?),
        InputFormat::Soma => Box::new(SomaReader::open(path, &options.soma)?),
    })
}
