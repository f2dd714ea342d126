//! What planning decides from the opened inputs before cutting shards: the dataset's genes
//! (exact, union or intersection), its obs columns, each input's `source_file` name, and the
//! rows per cell when genes are dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow::datatypes::Field;

use crate::cells::{CellRange, GeneMap, InputParts};
use crate::error::{Error, Result};
use crate::readers::InputReader;
use crate::workflow::manifest::{GenesMode, MissingObsColumns};

use super::Fingerprint;

/// What planning needs of an input before any matrix is read.
/// Kept open from the first look to the scan, so no input is opened twice.
pub(super) struct InputMeta {
    pub(super) genes: Vec<String>,
    pub(super) var: arrow::array::RecordBatch,
    pub(super) fingerprint: Fingerprint,
    pub(super) reader: Box<dyn InputReader>,
}

impl InputMeta {
    pub(super) fn obs(&self) -> &[Field] {
        self.reader.obs_fields()
    }

    pub(super) fn var(&self) -> &[Field] {
        self.reader.var_fields()
    }

    pub(super) fn parts(&self) -> &InputParts {
        self.reader.parts()
    }
}

/// The dataset's genes, checked against `mode`.
pub(super) fn dataset_genes(
    paths: &[&Path],
    gene_lists: &[&[String]],
    mode: GenesMode,
) -> Result<Vec<String>> {
    let first = gene_lists[0];
    let metas = gene_lists;
    let mut genes = first.to_vec();
    match mode {
        GenesMode::Exact => {
            let set0: HashSet<&str> = first.iter().map(String::as_str).collect();
            for (path, meta) in paths.iter().zip(metas).skip(1) {
                if *meta == first {
                    continue;
                }
                let set: HashSet<&str> = meta.iter().map(String::as_str).collect();
                let missing: Vec<&str> = first
                    .iter()
                    .map(String::as_str)
                    .filter(|g| !set.contains(g))
                    .take(3)
                    .collect();
                let extra: Vec<&str> = meta
                    .iter()
                    .map(String::as_str)
                    .filter(|g| !set0.contains(g))
                    .take(3)
                    .collect();
                if !missing.is_empty() || !extra.is_empty() || set.len() != set0.len() {
                    return Err(Error::IncompatibleInputs {
                        path: path.to_path_buf(),
                        what: format!(
                            "has different genes than {} ({} vs {} genes; e.g. missing {missing:?}, extra {extra:?}); set options.genes to union or intersection to combine them",
                            paths[0].display(),
                            meta.len(),
                            first.len()
                        ),
                    });
                }
            }
        }
        GenesMode::Union => {
            let mut seen: HashSet<String> = genes.iter().cloned().collect();
            for meta in &metas[1..] {
                for g in meta.iter() {
                    if seen.insert(g.clone()) {
                        genes.push(g.clone());
                    }
                }
            }
        }
        GenesMode::Intersection => {
            for meta in &metas[1..] {
                let set: HashSet<&str> = meta.iter().map(String::as_str).collect();
                genes.retain(|g| set.contains(g.as_str()));
            }
            for (path, meta) in paths.iter().zip(metas) {
                let dropped = meta.len() - genes.len().min(meta.len());
                if dropped > 0 {
                    tracing::warn!(event = "genes.dropped", input = %path.display(), dropped, "{}: {dropped} genes are not in every input and are left out", path.display());
                }
            }
            if genes.is_empty() {
                return Err(Error::IncompatibleInputs {
                    path: paths.last().map_or_else(Default::default, |p| p.to_path_buf()),
                    what: format!(
                        "shares no gene with {} (options.genes is intersection: the dataset would have none)",
                        paths[0].display()
                    ),
                });
            }
        }
    }
    Ok(genes)
}

/// The dataset's obs columns: the first input's, then (with `null`) columns only later
/// inputs have. Types must agree wherever a column appears.
pub(super) fn dataset_obs(
    paths: &[&Path],
    metas: &[&[Field]],
    missing: MissingObsColumns,
) -> Result<Vec<Field>> {
    let mut obs: Vec<Field> = metas[0].to_vec();
    let mut owner: Vec<usize> = vec![0; obs.len()];
    for (i, meta) in metas.iter().enumerate().skip(1) {
        for f in meta.iter() {
            match obs.iter().position(|g| g.name() == f.name()) {
                Some(k) if obs[k].data_type() != f.data_type() => {
                    return Err(Error::IncompatibleInputs {
                        path: paths[i].to_path_buf(),
                        what: format!(
                            "obs column '{}' is {} but {} in {}",
                            f.name(),
                            f.data_type(),
                            obs[k].data_type(),
                            paths[owner[k]].display()
                        ),
                    })
                }
                Some(_) => {}
                None => {
                    obs.push(f.clone());
                    owner.push(i);
                }
            }
        }
    }
    if missing == MissingObsColumns::Error {
        for (i, meta) in metas.iter().enumerate() {
            if let Some(f) = obs
                .iter()
                .find(|f| !meta.iter().any(|g| g.name() == f.name()))
            {
                let k = obs.iter().position(|g| g.name() == f.name()).unwrap_or(0);
                return Err(Error::IncompatibleInputs {
                    path: paths[i].to_path_buf(),
                    what: format!(
                        "has no obs column '{}' (which {} has); set options.missing_obs_columns to null to fill it with nulls",
                        f.name(),
                        paths[owner[k]].display()
                    ),
                });
            }
        }
    }
    Ok(obs)
}

/// `source_file` names: the file name, or the path below the inputs' common directory when
/// two inputs share a file name (10x directories are all `filtered_feature_bc_matrix`).
pub(crate) fn source_names(paths: &[&Path]) -> Vec<String> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let names: Vec<String> = paths.iter().map(|p| name(p)).collect();
    let unique: HashSet<&String> = names.iter().collect();
    if unique.len() == names.len() {
        return names;
    }
    let mut common: PathBuf = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    while !paths.iter().all(|p| p.starts_with(&common)) {
        if !common.pop() {
            break;
        }
    }
    paths
        .iter()
        .map(|p| {
            p.strip_prefix(&common)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| p.display().to_string())
        })
        .collect()
}

/// Rows per cell when `map` drops genes: one extra pass over the matrix.
pub(super) fn kept_row_offsets(
    reader: &mut dyn InputReader,
    map: &GeneMap,
    batch_cells: u64,
) -> Result<Vec<u64>> {
    let n_cells = reader.layout().n_cells;
    let mut offsets = Vec::with_capacity(n_cells as usize + 1);
    offsets.push(0u64);
    for batch in reader.batches(CellRange::new(0, n_cells), batch_cells)? {
        let mut entries = batch?.entries;
        map.apply(&mut entries);
        let base = *offsets.last().unwrap_or(&0);
        offsets.extend(entries.offsets[1..].iter().map(|o| base + o));
    }
    Ok(offsets)
}
