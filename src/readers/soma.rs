//! TileDB-SOMA experiments: obs, one measurement's var, one X layer as the expression (the
//! others as layers), obsm/varm as vector columns, obsp/varp as pairwise matrices, read
//! through libtiledb itself ([`tiledb`], loaded at run time).
//!
//! Cells and genes are numbered by ascending `soma_joinid` ([`frame::JoinIds`]) and named by
//! the dataframes' id columns (`obs_id` / `var_id` unless told otherwise), not by row
//! numbers as upstream does. Cell ranges are half-open, so no cell is read twice (upstream
//! reads the boundary cell into both chunks: defect B10). The value type comes from every
//! stored value. Layout reference: the SOMA specification as tiledbsoma 2.x writes it.

mod frame;
mod sparse;
pub mod tiledb;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};

use self::frame::Frame;
use self::sparse::SparseArray;
use self::tiledb::array::{object_kind, Group};
use self::tiledb::Context;
use super::{
    Axis, CellBatch, CellEntries, CellRange, InputLayout, InputParts, InputReader, MatrixScan,
    ValueScan,
};
use crate::cells::RenamedKeys;
use crate::columns::{self, sanitise_column_names};
use crate::error::{Error, Result};
use crate::values::{warn_narrowed, ValueTypeProbe};

/// Which parts of an experiment to read.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct SomaOptions {
    /// The measurement (`ms/<name>`); `RNA` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// The X layer stored as the expression; `data` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_layer: Option<String>,
    /// The obs column naming the cells; `obs_id` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obs_id_column: Option<String>,
    /// The var column naming the genes; `var_id` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub var_id_column: Option<String>,
}

impl SomaOptions {
    /// Whether every option is left to its default (how plans leave it out).
    pub fn is_default(&self) -> bool {
        *self == SomaOptions::default()
    }
}

/// Whether `path` looks like a TileDB group (a SOMA experiment is one), without libtiledb.
pub fn is_tiledb_group(path: &Path) -> bool {
    path.is_dir() && (path.join("__tiledb_group.tdb").is_file() || path.join("__group").is_dir())
}

/// A vector (obsm/varm) key.
struct Vectors {
    array: SparseArray,
    dim: usize,
}

/// An opened SOMA experiment.
pub struct SomaReader {
    path: PathBuf,
    layout: InputLayout,
    obs: Frame,
    var: Frame,
    x: SparseArray,
    layers: Vec<SparseArray>,
    obsm: Vec<Vectors>,
    varm: Vec<Vectors>,
    obsp: Vec<SparseArray>,
    varp: Vec<SparseArray>,
    obs_fields: Vec<Field>,
    var_fields: Vec<Field>,
    parts: InputParts,
}

/// The group member `name` of `group`, or an error listing the members there are.
fn required<'g>(
    path: &Path,
    group: &'g Group,
    name: &str,
    object: &str,
    option: &str,
) -> Result<&'g tiledb::array::Member> {
    group.member(name).ok_or_else(|| {
        let names: Vec<&str> = group.members.iter().map(|m| m.name.as_str()).collect();
        Error::invalid(
            path,
            format!(
                "{object}: no '{name}' (it holds: {}){option}",
                names.join(", ")
            ),
        )
    })
}

/// The arrays of an optional collection (`obsm`, `X`, ...), sorted by key.
fn collection(
    ctx: &Arc<Context>,
    ms: &Group,
    key: &str,
    object: &str,
) -> Result<Vec<(String, String)>> {
    let Some(member) = ms.member(key).filter(|m| m.is_group) else {
        return Ok(Vec::new());
    };
    let group = Group::open(ctx, &member.uri, &format!("{object}/{key}"))?;
    let mut arrays: Vec<(String, String)> = group
        .members
        .iter()
        .filter(|m| !m.is_group)
        .map(|m| (m.name.clone(), m.uri.clone()))
        .collect();
    arrays.sort();
    Ok(arrays)
}

impl SomaReader {
    /// Open the experiment at `path`: its schema, ids and shapes (no matrix data is read).
    pub fn open(path: &Path, options: &SomaOptions) -> Result<SomaReader> {
        let ctx = Arc::new(Context::new(path)?);
        let uri = path
            .to_str()
            .ok_or_else(|| Error::invalid(path, "the path is not UTF-8"))?;
        if object_kind(&ctx, uri)? != Some(true) {
            return Err(Error::invalid(
                path,
                "not a TileDB group (a SOMA experiment is one)",
            ));
        }
        let experiment = Group::open(&ctx, uri, "experiment")?;
        if let Some(kind) = experiment
            .soma_type
            .as_deref()
            .filter(|k| *k != "SOMAExperiment")
        {
            return Err(Error::invalid(
                path,
                format!("a {kind}, not a SOMAExperiment"),
            ));
        }
        tracing::info!(event = "input.tiledb", input = %path.display(), tiledb_version = %ctx.version(), "reading {} with libtiledb {}", path.display(), ctx.version());
        let obs_id = options.obs_id_column.as_deref().unwrap_or("obs_id");
        let var_id = options.var_id_column.as_deref().unwrap_or("var_id");
        let obs_reserved = [
            columns::CELL_ID,
            columns::CELL_INTEGER_ID,
            columns::CELL_START_INDEX,
        ];
        let var_reserved = [columns::GENE_ID, columns::GENE_INTEGER_ID];
        let obs = Frame::open(
            &ctx,
            &required(path, &experiment, "obs", "experiment", "")?.uri,
            "obs",
            obs_id,
            &obs_reserved,
        )?;
        let ms_group = Group::open(
            &ctx,
            &required(path, &experiment, "ms", "experiment", "")?.uri,
            "ms",
        )?;
        let measurement = options.measurement.as_deref().unwrap_or("RNA");
        let ms_object = format!("ms/{measurement}");
        let ms = Group::open(
            &ctx,
            &required(
                path,
                &ms_group,
                measurement,
                "ms",
                "; pick one with --measurement",
            )?
            .uri,
            &ms_object,
        )?;
        let var = Frame::open(
            &ctx,
            &required(path, &ms, "var", &ms_object, "")?.uri,
            &format!("{ms_object}/var"),
            var_id,
            &var_reserved,
        )?;

        let x_name = options.x_layer.as_deref().unwrap_or("data");
        let x_layers = collection(&ctx, &ms, "X", &ms_object)?;
        let Some((_, x_uri)) = x_layers.iter().find(|(k, _)| k == x_name) else {
            let names: Vec<&str> = x_layers.iter().map(|(k, _)| k.as_str()).collect();
            return Err(Error::invalid(
                path,
                format!(
                    "{ms_object}/X: no layer '{x_name}' (it holds: {}); pick one with --x-layer",
                    names.join(", ")
                ),
            ));
        };
        let x = SparseArray::open(&ctx, x_uri, &format!("{ms_object}/X/{x_name}"))?;
        let (n_cells, n_genes) = (obs.ids.len(), var.ids.len());
        let mut layer_names = Vec::new();
        let mut layers = Vec::new();
        for (key, uri) in x_layers.iter().filter(|(k, _)| k != x_name) {
            let object = format!("{ms_object}/X/{key}");
            if let Some(layer) = SparseArray::open_or_skip(&ctx, uri, &object)? {
                layers.push(layer);
                layer_names.push(key.clone());
            }
        }
        let sanitised_layers = sanitise_column_names(
            &layer_names,
            &[columns::CELL_INTEGER_ID, columns::GENE_INTEGER_ID],
        )
        .map_err(|e| Error::invalid(path, format!("{ms_object}/X: {e}")))?;
        let vectors = |key: &str| -> Result<Vec<(String, Vectors)>> {
            let mut out = Vec::new();
            for (name, uri) in collection(&ctx, &ms, key, &ms_object)? {
                let object = format!("{ms_object}/{key}/{name}");
                let Some(array) = SparseArray::open_or_skip(&ctx, &uri, &object)? else {
                    continue;
                };
                let dim = usize::try_from(array.n_cols)
                    .ok()
                    .filter(|&d| (1..=i32::MAX as usize).contains(&d))
                    .ok_or_else(|| {
                        Error::invalid(
                            path,
                            format!(
                                "{ms_object}/{key}/{name}: {} columns cannot be a vector column",
                                array.n_cols
                            ),
                        )
                    })?;
                out.push((name, Vectors { array, dim }));
            }
            Ok(out)
        };
        let (obsm, varm) = (vectors("obsm")?, vectors("varm")?);
        let pairwise = |key: &str| -> Result<Vec<(String, SparseArray)>> {
            let mut out = Vec::new();
            for (name, uri) in collection(&ctx, &ms, key, &ms_object)? {
                let object = format!("{ms_object}/{key}/{name}");
                if let Some(array) = SparseArray::open_or_skip(&ctx, &uri, &object)? {
                    out.push((name, array));
                }
            }
            Ok(out)
        };
        let (obsp, varp) = (pairwise("obsp")?, pairwise("varp")?);
        for skipped in ["uns", "raw"]
            .iter()
            .filter(|k| experiment.member(k).is_some() || ms.member(k).is_some())
        {
            tracing::info!(event = "input.skipped", object = %skipped, "skipping {skipped}: SOMA experiments' {skipped} is not converted");
        }

        let with_vectors = |fields: &[Field],
                            v: &[(String, Vectors)],
                            reserved: &[&str],
                            key: &str|
         -> Result<Vec<Field>> {
            let mut all = fields.to_vec();
            all.extend(v.iter().map(|(name, v)| {
                Field::new(name.replace('.', "_"), super::vector_type(v.dim), true)
            }));
            let names: Vec<String> = all.iter().map(|f| f.name().clone()).collect();
            sanitise_column_names(&names, reserved)
                .map_err(|e| Error::invalid(path, format!("{ms_object}/{key}: {e}")))?;
            Ok(all)
        };
        let obs_fields = with_vectors(&obs.fields, &obsm, &obs_reserved, "obsm")?;
        let var_fields = with_vectors(&var.fields, &varm, &var_reserved, "varm")?;
        let keys = |pairs: Vec<(String, String)>| {
            RenamedKeys::differing(pairs.iter().map(|(k, c)| (k.as_str(), c.as_str())))
        };
        let renamed_of = |names: Vec<String>| {
            keys(
                names
                    .iter()
                    .map(|k| (k.clone(), k.replace('.', "_")))
                    .collect(),
            )
        };
        let renamed = RenamedKeys {
            obs: keys(
                obs.source_names()
                    .into_iter()
                    .zip(obs.fields.iter().map(|f| f.name().clone()))
                    .collect(),
            ),
            var: keys(
                var.source_names()
                    .into_iter()
                    .zip(var.fields.iter().map(|f| f.name().clone()))
                    .collect(),
            ),
            layers: keys(
                layer_names
                    .iter()
                    .cloned()
                    .zip(sanitised_layers.iter().cloned())
                    .collect(),
            ),
            obsm: renamed_of(obsm.iter().map(|(k, _)| k.clone()).collect()),
            varm: renamed_of(varm.iter().map(|(k, _)| k.clone()).collect()),
            obsp: renamed_of(obsp.iter().map(|(k, _)| k.clone()).collect()),
            varp: renamed_of(varp.iter().map(|(k, _)| k.clone()).collect()),
        };
        let parts = InputParts {
            layers: sanitised_layers,
            obsm: obsm
                .iter()
                .map(|(k, v)| (k.replace('.', "_"), v.dim))
                .collect(),
            varm: varm
                .iter()
                .map(|(k, v)| (k.replace('.', "_"), v.dim))
                .collect(),
            obsp: obsp.iter().map(|(k, _)| k.replace('.', "_")).collect(),
            varp: varp.iter().map(|(k, _)| k.replace('.', "_")).collect(),
            renamed,
        };
        Ok(SomaReader {
            path: path.to_path_buf(),
            layout: InputLayout {
                n_cells,
                n_genes,
                matrix_encoding: "soma_sparse_nd_array".into(),
            },
            obs,
            var,
            x,
            layers,
            obsm: obsm.into_iter().map(|(_, v)| v).collect(),
            varm: varm.into_iter().map(|(_, v)| v).collect(),
            obsp: obsp.into_iter().map(|(_, p)| p).collect(),
            varp: varp.into_iter().map(|(_, p)| p).collect(),
            obs_fields,
            var_fields,
            parts,
        })
    }

    fn batch(&self, cells: CellRange) -> Result<CellBatch> {
        let (obs, ids) = (&self.obs.ids, &self.var.ids);
        let entries = self.x.read_rows(cells, obs, ids)?;
        let layers = self
            .layers
            .iter()
            .map(|l| l.read_rows(cells, obs, ids))
            .collect::<Result<Vec<_>>>()?;
        let (frame, cell_ids) = self.obs.rows(cells)?;
        let mut columns = frame.columns().to_vec();
        for v in &self.obsm {
            columns.push(v.array.read_vectors(cells, obs, v.dim)?);
        }
        let schema = Arc::new(Schema::new(self.obs_fields.clone()));
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(cells.len() as usize));
        let obs = RecordBatch::try_new_with_options(schema, columns, &options)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(CellBatch {
            cells,
            obs,
            cell_ids,
            entries,
            layers,
        })
    }
}

impl InputReader for SomaReader {
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

    /// Always reads every value: a sparse array has no row index to count from.
    fn scan(&mut self, _values: ValueScan) -> Result<MatrixScan> {
        let obs = &self.obs.ids;
        let mut counts = vec![0u64; self.layout.n_cells as usize];
        let mut probe = ValueTypeProbe::default();
        self.x.scan(obs, Some(&mut counts), &mut probe)?;
        warn_narrowed(&self.path, self.x.object(), "stored", probe.narrowed());
        let mut row_offsets = Vec::with_capacity(counts.len() + 1);
        row_offsets.push(0u64);
        let mut total = 0u64;
        for c in counts {
            total += c;
            row_offsets.push(total);
        }
        let mut layer_types = Vec::new();
        for layer in &self.layers {
            let mut probe = ValueTypeProbe::default();
            layer.scan(obs, None, &mut probe)?;
            warn_narrowed(&self.path, layer.object(), "stored", probe.narrowed());
            layer_types.push(probe.value_type());
        }
        Ok(MatrixScan {
            value_type: probe.value_type(),
            layer_types,
            row_offsets,
            types_guessed: false,
        })
    }

    fn genes(&mut self) -> Result<(RecordBatch, Vec<String>)> {
        let all = CellRange::new(0, self.layout.n_genes);
        let (frame, names) = self.var.rows(all)?;
        let mut columns = frame.columns().to_vec();
        for v in &self.varm {
            columns.push(v.array.read_vectors(all, &self.var.ids, v.dim)?);
        }
        let schema = Arc::new(Schema::new(self.var_fields.clone()));
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(all.len() as usize));
        let batch = RecordBatch::try_new_with_options(schema, columns, &options)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok((batch, names))
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
        let this: &'a mut SomaReader = self;
        Ok(Box::new(
            range.split(batch_cells).map(move |cells| this.batch(cells)),
        ))
    }

    fn read_pairwise(&mut self, axis: Axis, rows: CellRange) -> Result<Vec<CellEntries>> {
        let (matrices, ids) = match axis {
            Axis::Cells => (&self.obsp, &self.obs.ids),
            Axis::Genes => (&self.varp, &self.var.ids),
        };
        matrices
            .iter()
            .map(|m| m.read_rows(rows, ids, ids))
            .collect()
    }
}
