//! Building a plan, step by step: open the inputs, decide what the dataset holds (genes,
//! columns, parts), scan every input (value types, rows per cell), cut the shards.

use std::path::Path;

use arrow::datatypes::Field;

use super::append::{AppendBase, Existing};
use super::dataset::{dataset_genes, dataset_obs, kept_row_offsets, source_names, InputMeta};
use super::var_table::{self, InputVar};
use super::{
    input_files, Fingerprint, Plan, PlannedColumn, PlannedInput, PlannedShard, ShardSize,
    PLAN_FORMAT,
};
use crate::cells::{CellRange, GeneMap, InputParts};
use crate::error::{Error, Result};
use crate::readers::{self, ValueScan};
use crate::slaf::schema::{expression_id_types, CellTablesProfile, IdTypes};
use crate::values::ValueType;
use crate::workflow::manifest::{GenesMode, Manifest, ManifestOptions, Sharding};

impl Plan {
    /// [`Plan::build`], reading as much of the values as `values` says: with
    /// [`ValueScan::RowsOnly`] a CSR input's values are not read at all (`convert` reads X
    /// once, when it writes it). With `existing` (manifest `mode: append`) the plan appends
    /// the inputs to that dataset: its genes, columns and types lead, and the new cells and
    /// rows follow its own.
    pub fn build_onto(
        manifest: &Manifest,
        size: ShardSize,
        values: ValueScan,
        existing: Option<&Existing>,
    ) -> Result<Plan> {
        let options = &manifest.options;
        if existing.is_some() && options.genes == GenesMode::Intersection {
            // A manifest says so when loaded; `convert --manifest M --append` gets here.
            return Err(Error::Usage("options.genes: intersection cannot append (it would drop genes from the dataset's expression); use exact or union".into()));
        }
        let multi_file = manifest.inputs.len() > 1 || existing.is_some();
        let mut metas = open_inputs(manifest)?;
        let paths: Vec<&Path> = manifest.inputs.iter().map(|i| i.path.as_path()).collect();
        // An appended dataset leads, as a first input would.
        let lead: Vec<&Path> = existing
            .map(|e| e.base.dataset.as_path())
            .into_iter()
            .collect();
        let all_paths: Vec<&Path> = lead.iter().copied().chain(paths.iter().copied()).collect();
        let existing_obs = existing.map(Existing::obs_fields).transpose()?;
        if let Some(existing) = existing {
            for (path, meta) in paths.iter().zip(&metas) {
                existing.check_not_held(path, &meta.fingerprint)?;
                existing.check_obs(path, meta.obs(), &meta.parts().obsm)?;
                existing.check_layers(path, meta.parts())?;
            }
        }
        let gene_lists: Vec<&[String]> = (existing.map(|e| e.genes.as_slice()).into_iter())
            .chain(metas.iter().map(|m| m.genes.as_slice()))
            .collect();
        let genes = dataset_genes(&all_paths, &gene_lists, options.genes)?;
        // Appending, an input's columns are the dataset's it has (`check_obs` refused others).
        let kept_obs: Vec<Vec<Field>> = metas
            .iter()
            .map(|m| match &existing_obs {
                Some(have) => (m.obs().iter())
                    .filter(|f| have.iter().any(|g| g.name() == f.name()))
                    .cloned()
                    .collect(),
                None => m.obs().to_vec(),
            })
            .collect();
        let obs_lists: Vec<&[Field]> = (existing_obs.as_deref().into_iter())
            .chain(kept_obs.iter().map(Vec::as_slice))
            .collect();
        let obs = dataset_obs(&all_paths, &obs_lists, options.missing_obs_columns)?;
        if existing.is_none() {
            check_combinable(&paths, &metas, &obs, multi_file)?;
        }
        let (parts, obs, var) = match existing {
            None => {
                let parts = selected_parts(&metas, options, &obs, multi_file);
                let (obs, var) = selected_columns(&metas[0], options, obs);
                (parts, obs, var)
            }
            Some(e) => {
                // The dataset's own; obsp and varp stay as they are (new inputs add none).
                let mut parts = e.base.record.parts.clone();
                parts.obsp.clear();
                parts.varp.clear();
                (
                    parts,
                    obs,
                    PlannedColumn::fields(&e.base.record.var_columns)?,
                )
            }
        };
        // Exact types where the dataset stores uint16: a value it cannot hold is refused
        // here, naming its input, before anything is written.
        let narrow = existing.is_some_and(|e| {
            let p = &e.base.record.profile;
            p.value_type == ValueType::UInt16 || p.layer_types.contains(&ValueType::UInt16)
        });
        let values = if narrow { ValueScan::Full } else { values };
        let scanned = scan_inputs(manifest, &paths, &mut metas, &genes, &obs, values, existing)?;
        let n_cells = scanned.n_cells;
        let n_genes = genes.len() as u64;
        if let Some(e) = existing {
            e.check_ids(n_cells, n_genes)?;
        }
        let per_shard = shard_cells(size, &manifest.sharding, n_cells, options.chunk_size);
        let row_base = existing.map_or(0, |e| e.base.expression_rows);
        let shards = cut_shards(&scanned.inputs, &scanned.row_offsets, per_shard, row_base);
        let var_columns: Vec<PlannedColumn> =
            var.iter().map(PlannedColumn::of).collect::<Result<_>>()?;
        let var_inputs: Vec<InputVar> = (existing.map(|e| InputVar {
            path: e.base.dataset.as_path(),
            var: &e.var,
            names: &e.genes,
        }))
        .into_iter()
        .chain(paths.iter().zip(&metas).map(|(&path, meta)| InputVar {
            path,
            var: &meta.var,
            names: &meta.genes,
        }))
        .collect();
        let var_batch =
            var_table::dataset_var(&genes, &PlannedColumn::fields(&var_columns)?, &var_inputs)?;
        let uns = options.uns && !multi_file;
        let uns_document = match uns {
            true => metas[0].reader.uns()?,
            false => None,
        };
        let profile = match existing {
            Some(e) => widened(&e.base, &scanned),
            None => CellTablesProfile {
                value_type: scanned.value_type,
                layer_types: match options.layers {
                    true => scanned.layer_types,
                    false => Vec::new(),
                },
                ids: expression_id_types(options.id_types, n_cells, n_genes),
                compression: options.compression,
                pages: options.pages,
            },
        };
        let mut plan = Plan {
            format_version: PLAN_FORMAT,
            plan_hash: String::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            output: manifest.output.clone(),
            chunk_size: options.chunk_size,
            n_cells,
            n_genes,
            genes,
            obs_columns: obs.iter().map(PlannedColumn::of).collect::<Result<_>>()?,
            var_columns,
            compact_ids: match existing {
                Some(e) => e.base.record.profile.ids.cell == arrow::datatypes::DataType::UInt32,
                None => options.id_types == IdTypes::Compact,
            },
            profile,
            types_guessed: scanned.types_guessed,
            parts,
            uns,
            indices: options.indices || existing.is_some_and(|e| e.base.record.indices),
            var_table: var_table::encode(&var_batch)?,
            uns_document,
            inputs: scanned.inputs,
            shards,
            append: existing.map(|e| e.base.clone()),
        };
        plan.plan_hash = plan.content_hash();
        Ok(plan)
    }
}

/// Open every input and read its genes.
fn open_inputs(manifest: &Manifest) -> Result<Vec<InputMeta>> {
    let mut metas = Vec::with_capacity(manifest.inputs.len());
    for input in &manifest.inputs {
        let mut reader = readers::open(&input.path, &input.read_options())?;
        let fingerprint = Fingerprint::of(&input.path)?;
        let (var, genes) = reader.genes()?;
        metas.push(InputMeta {
            genes,
            var,
            fingerprint,
            reader,
        });
    }
    Ok(metas)
}

/// Refuse inputs whose layers differ, and an obs column that would clash with the
/// `source_file` column of a multi-input dataset.
fn check_combinable(
    paths: &[&Path],
    metas: &[InputMeta],
    obs: &[Field],
    multi_file: bool,
) -> Result<()> {
    let first = &metas[0];
    for (path, meta) in paths.iter().zip(metas).skip(1) {
        if meta.parts().layers != first.parts().layers {
            return Err(Error::IncompatibleInputs {
                path: path.to_path_buf(),
                what: format!(
                    "layers {:?} differ from {}'s {:?}",
                    meta.parts().layers,
                    paths[0].display(),
                    first.parts().layers
                ),
            });
        }
    }
    if multi_file {
        if let Some(f) = obs.iter().find(|f| f.name() == crate::columns::SOURCE_FILE) {
            return Err(Error::IncompatibleInputs {
                path: paths[0].to_path_buf(),
                what: format!(
                    "obs column '{}' clashes with the source_file column of a multi-input dataset (rename it)",
                    f.name()
                ),
            });
        }
    }
    Ok(())
}

/// The parts the dataset takes from the first input: those the options keep (obsp, varp and
/// uns only from a single input), obsm keys only where their column survived; the obs
/// columns renamed in any input.
fn selected_parts(
    metas: &[InputMeta],
    options: &ManifestOptions,
    obs: &[Field],
    multi_file: bool,
) -> InputParts {
    let first = &metas[0];
    let mut parts = first.parts().clone();
    for meta in &metas[1..] {
        for (key, column) in &meta.parts().renamed.obs {
            parts
                .renamed
                .obs
                .entry(key.clone())
                .or_insert(column.clone());
        }
    }
    parts
        .renamed
        .obs
        .retain(|_, column| obs.iter().any(|f| f.name() == column));
    if !options.layers {
        parts.layers.clear();
    }
    if !options.obsm {
        parts.obsm.clear();
    }
    parts
        .obsm
        .retain(|(k, _)| obs.iter().any(|f| f.name() == k));
    if !options.varm {
        parts.varm.clear();
    }
    if !options.obsp || multi_file {
        parts.obsp.clear();
    }
    if !options.varp || multi_file {
        parts.varp.clear();
    }
    if multi_file && (!first.parts().obsp.is_empty() || !first.parts().varp.is_empty()) {
        tracing::warn!(
            event = "input.skipped",
            "obsp/varp/uns are not combined across inputs: left out"
        );
    }
    parts
}

/// The obs and var columns without the obsm/varm vector columns the options leave out.
fn selected_columns(
    first: &InputMeta,
    options: &ManifestOptions,
    obs: Vec<Field>,
) -> (Vec<Field>, Vec<Field>) {
    let is_vector_key =
        |f: &Field, keys: &[(String, usize)]| keys.iter().any(|(k, _)| k == f.name());
    let obs = obs
        .into_iter()
        .filter(|f| options.obsm || !is_vector_key(f, &first.parts().obsm))
        .collect();
    let var = first
        .var()
        .iter()
        .filter(|f| options.varm || !is_vector_key(f, &first.parts().varm))
        .cloned()
        .collect();
    (obs, var)
}

/// What the scan of every input decided.
struct ScannedInputs {
    inputs: Vec<PlannedInput>,
    /// Per input, `n_cells + 1` offsets of its cells' expression rows.
    row_offsets: Vec<Vec<u64>>,
    value_type: ValueType,
    layer_types: Vec<ValueType>,
    types_guessed: bool,
    n_cells: u64,
}

/// One pass over each input's matrix: value types, rows per cell (of the genes kept), and
/// the input's entry in the plan.
fn scan_inputs(
    manifest: &Manifest,
    paths: &[&Path],
    metas: &mut [InputMeta],
    genes: &[String],
    obs: &[Field],
    values: ValueScan,
    existing: Option<&Existing>,
) -> Result<ScannedInputs> {
    let source_names = source_names(paths);
    let mut scanned = ScannedInputs {
        inputs: Vec::new(),
        row_offsets: Vec::new(),
        value_type: ValueType::UInt16,
        layer_types: Vec::new(),
        types_guessed: false,
        n_cells: existing.map_or(0, |e| e.base.n_cells),
    };
    for (i, (input, meta)) in manifest.inputs.iter().zip(metas.iter_mut()).enumerate() {
        let mut read = input.read_options();
        let reader = &mut meta.reader;
        let map = GeneMap::between(&meta.genes, genes)
            .map_err(|what| Error::invalid(&input.path, what))?;
        let mut scan = reader.scan(values)?;
        scanned.types_guessed |= scan.types_guessed;
        read.tenx.cells_sorted = reader.cells_sorted();
        if let Some(map) = map.as_ref().filter(|m| m.dropped() > 0) {
            // Dropped genes change every cell's row count: count what is kept.
            scan.row_offsets = kept_row_offsets(reader.as_mut(), map, manifest.options.chunk_size)?;
        }
        if let Some(e) = existing.filter(|_| !manifest.options.widen_stored_values) {
            e.check_value_types(&input.path, scan.value_type, &scan.layer_types)?;
        }
        tracing::info!(event = "input.scanned", input = %input.path.display(), n_cells = reader.layout().n_cells, expression_rows = scan.total_rows(), "scanned {}: {} cells, {} expression rows", input.path.display(), reader.layout().n_cells, scan.total_rows());
        if i == 0 {
            scanned.layer_types = scan.layer_types.clone();
        } else {
            for (t, s) in scanned.layer_types.iter_mut().zip(&scan.layer_types) {
                *t = widest(*t, *s);
            }
        }
        scanned.value_type = widest(scanned.value_type, scan.value_type);
        let n_cells = reader.layout().n_cells;
        let obs_missing = obs
            .iter()
            .filter(|f| !meta.obs().iter().any(|g| g.name() == f.name()))
            .map(|f| f.name().clone())
            .collect();
        let absolute = std::path::absolute(&input.path).map_err(|e| Error::io(&input.path, e))?;
        let base = match manifest.base.as_os_str().is_empty() {
            true => absolute.parent().unwrap_or(Path::new("/")).to_path_buf(),
            false => manifest.base.clone(),
        };
        scanned.inputs.push(PlannedInput {
            relative: input_files::relative_to(&absolute, &base),
            fingerprint: meta.fingerprint.clone(),
            path: input.path.clone(),
            source_name: source_names[i].clone(),
            read,
            n_cells,
            cell_offset: scanned.n_cells,
            rows: scan.total_rows(),
            genes_remapped: map.is_some(),
            genes_dropped: map.as_ref().map_or(0, |m| m.dropped() as u64),
            obs_missing,
        });
        scanned.n_cells += n_cells;
        scanned.row_offsets.push(scan.row_offsets);
    }
    Ok(scanned)
}

/// Shards of at most `per_shard` cells, never spanning two inputs, their rows numbered from
/// `row_base`; an input without cells still gets one (it writes the varp rows).
fn cut_shards(
    inputs: &[PlannedInput],
    row_offsets: &[Vec<u64>],
    per_shard: u64,
    mut row_base: u64,
) -> Vec<PlannedShard> {
    let mut shards = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let mut ranges: Vec<CellRange> =
            CellRange::new(0, input.n_cells).split(per_shard).collect();
        if ranges.is_empty() {
            ranges.push(CellRange::new(0, 0));
        }
        let offsets = &row_offsets[i];
        for range in ranges {
            shards.push(PlannedShard {
                index: shards.len(),
                input: i,
                start: range.start,
                end: range.end,
                row_offset: row_base + offsets[range.start as usize],
                rows: offsets[range.end as usize] - offsets[range.start as usize],
            });
        }
        row_base += input.rows;
    }
    shards
}

/// The appended dataset's types, widened where the new inputs' values need it (allowed by
/// `options.widen_stored_values`; refused while scanning otherwise).
fn widened(base: &AppendBase, scanned: &ScannedInputs) -> CellTablesProfile {
    let mut profile = base.record.profile.clone();
    profile.value_type = widest(profile.value_type, scanned.value_type);
    for (t, s) in profile.layer_types.iter_mut().zip(&scanned.layer_types) {
        *t = widest(*t, *s);
    }
    if profile != base.record.profile {
        tracing::warn!(event = "append.widened", value_type = ?profile.value_type, "{}: the new inputs hold values its uint16 cannot: its stored values are rewritten as float32 (options.widen_stored_values)", base.dataset.display());
    }
    profile
}

/// The narrower type only when both are narrow.
fn widest(a: ValueType, b: ValueType) -> ValueType {
    if a == ValueType::UInt16 && b == ValueType::UInt16 {
        ValueType::UInt16
    } else {
        ValueType::Float32
    }
}

/// Cells per shard: what the command line or the manifest asks, in whole fragments.
fn shard_cells(size: ShardSize, sharding: &Sharding, n_cells: u64, fragment_cells: u64) -> u64 {
    let cells = size
        .cells_per_shard
        .or(sharding.cells_per_shard)
        .or_else(|| {
            size.shards
                .or(sharding.shards)
                .map(|n| n_cells.div_ceil(n.max(1)))
        })
        .unwrap_or(u64::MAX)
        .max(size.min_cells_per_shard.unwrap_or(1));
    // Whole fragments per shard: a fragment is the same wherever it was written.
    cells
        .max(1)
        .div_ceil(fragment_cells)
        .saturating_mul(fragment_cells)
}
