//! The YAML manifest a workflow hands to `plan`: output, inputs, options, sharding.
//!
//! Unknown keys are errors that name the key and its line (serde's `deny_unknown_fields`
//! through serde_yaml, which reports positions). Relative input paths resolve against the
//! manifest's own directory, so a manifest can travel with its data.
//!
//! ```yaml
//! output: atlas.slaf
//! mode: create              # or append: add the inputs' cells to the dataset at output
//! inputs:
//!   - path: batch1.h5ad
//!   - path: filtered_feature_bc_matrix/
//!     format: 10x-mtx
//!     feature_types: ["Gene Expression"]
//!   - path: census_subset/      # a TileDB-SOMA experiment (needs libtiledb)
//!     measurement: RNA
//!     x_layer: raw
//! options:
//!   chunk_size: 5000
//!   id_types: int32
//!   genes: exact            # or union / intersection
//!   missing_obs_columns: error   # or null
//!   layers: true            # also obsm, varm, obsp, varp, uns
//!   compression: none       # or lz4 / zstd (gene ids and values)
//!   indices: false          # true: scalar indices, built at commit
//!   widen_stored_values: false  # append: rewrite a uint16 dataset as float32 if needed
//! sharding:
//!   cells_per_shard: 100000
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::readers::tenx::{TenxOptions, VarNames};
use crate::readers::{InputFormat, RawMode, ReadOptions, SomaOptions};
use crate::slaf::schema::{Compression, IdTypes, Pages};

/// A conversion manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The dataset to create, or to append to (a directory path; relative to the manifest).
    pub output: PathBuf,
    /// `create` (default) a dataset, or `append` the inputs' cells to the complete dataset
    /// at `output`.
    #[serde(default)]
    pub mode: Mode,
    /// Inputs, in the order their cells are numbered.
    pub inputs: Vec<ManifestInput>,
    /// Conversion options.
    #[serde(default)]
    pub options: ManifestOptions,
    /// How the cells are split into shards.
    #[serde(default)]
    pub sharding: Sharding,
    /// The manifest's directory (input paths in a plan are kept relative to it); empty for a
    /// manifest built in code, where each input's own directory is used.
    #[serde(skip)]
    pub base: PathBuf,
}

/// One input of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestInput {
    /// File or directory (relative to the manifest).
    pub path: PathBuf,
    /// `h5ad`, `10x-mtx`, `10x-h5` or `tiledb-soma`; detected from the content when absent.
    #[serde(default)]
    pub format: Option<InputFormat>,
    /// AnnData raw: `ignore` (default) or `as-layer`.
    #[serde(default)]
    pub raw: RawMode,
    /// 10x: `gene-symbols` (default) or `gene-ids`.
    #[serde(default)]
    pub var_names: VarNames,
    /// 10x: make duplicate gene names unique.
    #[serde(default)]
    pub make_unique: bool,
    /// 10x: keep only these feature types.
    #[serde(default)]
    pub feature_types: Vec<String>,
    /// Cell Ranger v2: the genome group.
    #[serde(default)]
    pub genome: Option<String>,
    /// TileDB-SOMA: the measurement (default `RNA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// TileDB-SOMA: the X layer stored as the expression (default `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_layer: Option<String>,
    /// TileDB-SOMA: the obs column naming the cells (default `obs_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obs_id_column: Option<String>,
    /// TileDB-SOMA: the var column naming the genes (default `var_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var_id_column: Option<String>,
}

impl ManifestInput {
    /// The input `path` read with `read` (what `convert INPUT OUTPUT` stands for); the
    /// inverse of [`ManifestInput::read_options`].
    pub fn reading(path: &Path, read: &ReadOptions) -> ManifestInput {
        ManifestInput {
            path: path.to_path_buf(),
            format: read.format,
            raw: read.raw,
            var_names: read.tenx.var_names,
            make_unique: read.tenx.make_unique,
            feature_types: read.tenx.feature_types.clone(),
            genome: read.tenx.genome.clone(),
            measurement: read.soma.measurement.clone(),
            x_layer: read.soma.x_layer.clone(),
            obs_id_column: read.soma.obs_id_column.clone(),
            var_id_column: read.soma.var_id_column.clone(),
        }
    }

    /// The reader options this input asks for.
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            format: self.format,
            raw: self.raw,
            tenx: TenxOptions {
                var_names: self.var_names,
                make_unique: self.make_unique,
                feature_types: self.feature_types.clone(),
                genome: self.genome.clone(),
                cells_sorted: None,
            },
            soma: SomaOptions {
                measurement: self.measurement.clone(),
                x_layer: self.x_layer.clone(),
                obs_id_column: self.obs_id_column.clone(),
                var_id_column: self.var_id_column.clone(),
            },
        }
    }
}

/// Conversion options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestOptions {
    /// Cells per chunk (= per Lance fragment).
    pub chunk_size: u64,
    /// `int32` (default) or `compact` id columns.
    pub id_types: IdTypes,
    /// How inputs with different genes combine: `exact` (default: the same genes, any order;
    /// re-mapped to the first input's order), `union` or `intersection`.
    pub genes: GenesMode,
    /// An obs column that only some inputs have: `error` (default) or `null` (the column is
    /// kept and is null for the cells of inputs without it).
    pub missing_obs_columns: MissingObsColumns,
    /// Write AnnData layers (`layers.lance`).
    pub layers: bool,
    /// Write obsm as columns of `cells.lance`.
    pub obsm: bool,
    /// Write varm as columns of `genes.lance`.
    pub varm: bool,
    /// Write obsp (`cellsxcells.lance`; single input only).
    pub obsp: bool,
    /// Write varp (`genesxgenes.lance`; single input only).
    pub varp: bool,
    /// Write `uns.json` (single input only).
    pub uns: bool,
    /// Compression of expression's and layers' gene ids and values on top of Lance's
    /// bit-packing: `none` (default: fastest to read), `lz4` (about a quarter smaller, slower
    /// full passes) or `zstd` (smallest, slowest to query).
    pub compression: Compression,
    /// Pages per fragment column of expression.lance: `lance` (default: Lance's 8 MiB
    /// page buffer, 2-3 pages) or `one-per-fragment` (one, as upstream's: fewer, larger reads
    /// per column; writes about 13 % slower).
    pub pages: Pages,
    /// Build scalar indices at commit (`slaf::indices`): gene queries about ten times
    /// faster, for an index about 2.4 times the size of expression's gene ids.
    pub indices: bool,
    /// `mode: append` only: where the dataset stores values as uint16 and an input holds
    /// others (fractions), rewrite the dataset's expression (or that layer) as float32
    /// instead of refusing the input. Rewrites every stored value once.
    pub widen_stored_values: bool,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions {
            chunk_size: 5000,
            id_types: IdTypes::Int32,
            genes: GenesMode::Exact,
            missing_obs_columns: MissingObsColumns::Error,
            layers: true,
            obsm: true,
            varm: true,
            obsp: true,
            varp: true,
            uns: true,
            compression: Compression::default(),
            pages: Pages::default(),
            indices: false,
            widen_stored_values: false,
        }
    }
}

/// `mode`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Create the dataset (or replace it, with `convert --overwrite`).
    #[default]
    Create,
    /// Add the inputs' cells after the dataset's own: new ids, global start indices, the
    /// dataset's genes (with `options.genes: union`, new genes get new ids at the end) and
    /// stored value types. Readers see the dataset as it was until the append commits.
    Append,
}

/// `options.genes`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum GenesMode {
    /// Every input has the same genes (order may differ).
    #[default]
    Exact,
    /// Every gene of any input; an input without a gene has no entries for it.
    Union,
    /// Only genes every input has; the others are dropped (and reported).
    Intersection,
}

/// `options.missing_obs_columns`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MissingObsColumns {
    /// Refuse inputs whose obs columns differ.
    #[default]
    Error,
    /// Keep every column; null where an input lacks it.
    Null,
}

/// `sharding`: at most one of the two; neither means one shard per input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Sharding {
    /// Cells per shard (rounded up to whole chunks).
    pub cells_per_shard: Option<u64>,
    /// Number of shards to aim for (across all inputs).
    pub shards: Option<u64>,
}

/// Refuse an `output` that is one of `inputs`, contains one or lies inside one (inputs that
/// are not there are not compared).
pub fn check_output_apart<'a>(output: &Path, inputs: impl Iterator<Item = &'a Path>) -> Result<()> {
    let real_output = real_path(output);
    for input in inputs {
        let Ok(input_path) = input.canonicalize() else {
            continue; // a missing input is reported when it is opened
        };
        let how = if real_output == input_path {
            "is the input"
        } else if real_output.starts_with(&input_path) {
            "lies inside the input"
        } else if input_path.starts_with(&real_output) {
            "contains the input"
        } else {
            continue;
        };
        return Err(Error::OutputNotOurs {
            path: output.to_path_buf(),
            what: format!(
                "the output {how} {}: choose another output",
                input.display()
            ),
        });
    }
    Ok(())
}

/// `path` with symbolic links and `..` resolved as far as it exists (the rest appended).
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Larger manifests are refused before they are read: a million inputs take ~50 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Read a small text file (manifest, plan) the user named: a FIFO, an oversized file or one
/// that is not UTF-8 is refused with one line naming it. Not UTF-8 is a [`Error::Manifest`]
/// for a manifest and an invalid input otherwise.
pub fn read_text(path: &Path, what: &str, max_bytes: u64) -> Result<String> {
    crate::readers::format::check_kind(path).map_err(|e| match e {
        Error::InputMissing { path, what: why } => Error::InputMissing {
            path,
            what: format!("cannot read {what}: {why}"),
        },
        other => other,
    })?;
    let bad = |why: String| {
        if what == "manifest" {
            Error::Manifest {
                path: path.to_path_buf(),
                what: why,
            }
        } else {
            Error::invalid(path, why)
        }
    };
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > max_bytes {
        return Err(bad(format!(
            "{len} bytes: larger than any {what} this tool writes or reads ({max_bytes} bytes at most)"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

impl Manifest {
    /// Read and validate `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_text(path, "manifest", MAX_MANIFEST_BYTES)?;
        let mut manifest: Manifest = serde_yaml::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
        // Inputs may be object store URIs (fetched by each task), and so may the output
        // (shards with the shared target write into it). A URI is no relative path to resolve
        // against the manifest's directory.
        let paths = std::iter::once(("output".to_string(), &manifest.output, true)).chain(
            (manifest.inputs.iter().enumerate())
                .map(|(i, input)| (format!("inputs[{i}].path"), &input.path, true)),
        );
        for (key, p, stores) in paths {
            crate::location::check_path(p, &key, stores).map_err(|what| Error::Manifest {
                path: path.to_path_buf(),
                what,
            })?;
        }
        // Absolute, so a plan written from this manifest works from any directory.
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = std::path::absolute(parent.unwrap_or(Path::new(".")))
            .map_err(|e| Error::io(path, e))?;
        let resolve = |p: &Path| {
            if p.is_relative() && crate::location::store_uri(p.as_os_str()).is_none() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        manifest.output = resolve(&manifest.output);
        manifest.base = base.clone();
        for input in &mut manifest.inputs {
            input.path = resolve(&input.path);
        }
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Refuse an output that is an input, contains one or lies inside one: writing there
    /// would change or (with `--overwrite`) delete what the user handed over.
    pub fn check_output_apart(&self) -> Result<()> {
        check_output_apart(&self.output, self.inputs.iter().map(|i| i.path.as_path()))
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |what: &str| Error::Manifest {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if self.inputs.is_empty() {
            return Err(bad("inputs: at least one input is needed"));
        }
        if self.mode == Mode::Append {
            if self.options.genes == GenesMode::Intersection {
                return Err(bad("options.genes: intersection cannot append (it would drop genes from the dataset's expression, which an append never rewrites); use exact or union"));
            }
            if crate::location::store_uri(self.output.as_os_str()).is_some() {
                return Err(bad("mode: append works on a local dataset, not an object store URI: append locally, then upload"));
            }
        }
        if self.options.chunk_size == 0 {
            return Err(bad("options.chunk_size: must be at least 1"));
        }
        if self.sharding.cells_per_shard.is_some() && self.sharding.shards.is_some() {
            return Err(bad("sharding: give cells_per_shard or shards, not both"));
        }
        if self.sharding.cells_per_shard == Some(0) || self.sharding.shards == Some(0) {
            return Err(bad("sharding: must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Manifest> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(&p, text).unwrap();
        Manifest::load(&p)
    }

    #[test]
    fn test_load_resolves_paths() {
        let m = load("output: out.slaf\ninputs:\n  - path: a.h5ad\n    raw: as-layer\nsharding:\n  shards: 3\n").unwrap();
        assert!(m.output.is_absolute() && m.output.ends_with("out.slaf"));
        assert_eq!(m.inputs[0].raw, RawMode::AsLayer);
        assert_eq!(m.sharding.shards, Some(3));
        assert_eq!(m.options.chunk_size, 5000);
    }

    #[test]
    fn test_unknown_key_names_key_and_line() {
        let err = load("output: o.slaf\ninputs:\n  - path: a.h5ad\n    colour: red\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour") && err.contains("line 4"), "{err}");
    }
}
