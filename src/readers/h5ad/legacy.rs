//! What older anndata versions stored differently, read with the meaning `anndata.read_h5ad`
//! (0.12) gives it:
//! - anndata 0.7: a categorical column is its codes, with the labels in `__categories`
//!   ([`categories_07`]).
//! - anndata 0.6: dataframes are compound datasets (read in `dataframe`), whose categorical
//!   columns take their labels from `uns/<column>_categories` ([`UnsCategories`]); obsm/varm
//!   are compound datasets too (read in `annotations`); raw is `raw.X`/`raw.var` at the top
//!   ([`raw_layout`]).
//!
//! The h5sparse matrix attributes of both are read in `hdf5_util::sparse_encoding`.

use std::path::Path;

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Group};

use super::dataframe::{read_as_strings, read_as_strings_in, ColumnData};
use crate::error::{Error, Result};
use crate::readers::hdf5_util as h5;

/// The categories of an anndata 0.7 categorical column: its codes carry a `categories`
/// attribute (an object reference), and the categories are the dataset `__categories/<col>`
/// beside the columns, which is where anndata 0.7 always writes them.
pub(super) fn categories_07(
    path: &Path,
    group: &Group,
    col: &str,
    data: &Dataset,
) -> Result<Option<Vec<String>>> {
    if !h5::has_attr(data, "categories") {
        return Ok(None);
    }
    let holder = "__categories";
    if !h5::is_group(group, holder) {
        return Err(Error::invalid(
            path,
            format!(
                "{}/{col}: a categorical column (anndata 0.7) whose categories are not in {}/{holder}",
                group.name(),
                group.name()
            ),
        ));
    }
    let categories = h5::dataset(path, &h5::group(path, group, holder)?, col)?;
    read_as_strings(path, &categories).map(Some)
}

/// Whether `root` is in the layout of anndata before 0.7: `obs` a dataset, not a group (the
/// test anndata's own reader makes before cleaning `uns`).
pub(super) fn is_layout_06(root: &Group) -> bool {
    root.link_exists("obs") && !h5::is_group(root, "obs")
}

/// The labels anndata 0.6 kept in `uns/<column>_categories`: the keys ending so, by the column
/// their name gives (every `_categories` taken out, as anndata's `_clean_uns` does). Only the
/// names are read at open; labels are read for the columns that take them, and only as many
/// as their codes use. Empty for later layouts.
#[derive(Debug, Default)]
pub struct UnsCategories {
    uns: Option<Group>,
    /// (column, uns key), in anndata's order of the keys (sorted by name, as h5py lists them).
    keys: Vec<(String, String)>,
}

impl UnsCategories {
    /// List the `_categories` arrays of `/uns` when the file has the 0.6 layout.
    pub fn read(path: &Path, root: &Group) -> Result<Self> {
        if !is_layout_06(root) || !h5::is_group(root, "uns") {
            return Ok(UnsCategories::default());
        }
        let uns = h5::group(path, root, "uns")?;
        let mut names = uns
            .member_names()
            .map_err(|e| h5::h5_error(path, &uns.name(), e))?;
        names.sort();
        let keys = names
            .into_iter()
            .filter(|key| key.ends_with("_categories") && !h5::is_group(&uns, key))
            .map(|key| (key.replace("_categories", ""), key))
            .collect();
        Ok(UnsCategories {
            uns: Some(uns),
            keys,
        })
    }

    /// The uns key and labels that make the integer column `column` (stored as `codes`)
    /// categorical: the key whose array is longer than every code, as anndata's `_clean_uns`
    /// decides. `None` when no key fits (the column stays integers); an error when two do
    /// (anndata fails on such a file).
    pub(super) fn labels_for(
        &self,
        path: &Path,
        column: &str,
        codes: &ColumnData,
    ) -> Result<Option<(String, Vec<String>)>> {
        let Some(uns) = &self.uns else {
            return Ok(None);
        };
        let candidates: Vec<&String> = self
            .keys
            .iter()
            .filter(|(c, _)| c == column)
            .map(|(_, key)| key)
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let Some(max_code) = max_code(path, codes)? else {
            return Ok(None);
        };
        let mut chosen: Option<(String, Vec<String>)> = None;
        for key in candidates {
            let ds = h5::dataset(path, uns, key)?;
            // A scalar is one category (anndata wraps it in a list).
            let n = if ds.is_scalar() { 1 } else { h5::len(&ds) };
            if max_code >= n as i64 || ds.ndim() > 1 {
                continue;
            }
            if let Some((first, _)) = &chosen {
                return Err(Error::invalid(
                    path,
                    format!("{}: both uns/{first} and uns/{key} hold categories that fit column '{column}' (anndata cannot read such a file either)", codes.name()),
                ));
            }
            let used = usize::try_from(max_code + 1).unwrap_or(0);
            let labels = match (ds.is_scalar(), used) {
                (_, 0) => Vec::new(),
                (true, _) => vec![h5::read_scalar_string(path, &ds)?],
                (false, _) => read_as_strings_in(path, &ds, 0..used)?,
            };
            chosen = Some((key.clone(), labels));
        }
        Ok(chosen)
    }
}

/// Rows read at a time when scanning codes.
const CODE_BLOCK: usize = 1 << 20;

/// The largest code of the integer column `codes` (-1 when empty); `None` when the column is
/// not integers (anndata then never makes it categorical).
fn max_code(path: &Path, codes: &ColumnData) -> Result<Option<i64>> {
    if !matches!(
        codes.descriptor(path)?,
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)
    ) {
        return Ok(None);
    }
    let rows = codes.len();
    // A header claiming rows the file never stored would be read block by block for ever.
    codes.check_stored(path)?;
    let mut max = -1;
    let mut start = 0;
    while start < rows {
        let end = (start + CODE_BLOCK).min(rows);
        max = codes
            .read_i64(path, start..end)?
            .into_iter()
            .fold(max, i64::max);
        start = end;
    }
    Ok(Some(max))
}

/// Where raw's parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawLayout {
    /// The group `raw` with `X`, `var`, `varm` (anndata 0.7 and later).
    Group,
    /// `raw.X`, `raw.var`, `raw.varm` at the top (before 0.7).
    TopLevel,
}

/// Where raw's parts are, as anndata 0.12 looks for them: the group `raw` when it holds X,
/// var or varm; otherwise `raw.X` at the top (with `raw.var`), which is read only when `raw.X`
/// exists. `None` without raw. A file with a current raw and any `raw.*` at the top is
/// refused, as anndata refuses it.
pub(super) fn raw_layout(path: &Path, root: &Group) -> Result<Option<RawLayout>> {
    let current = h5::is_group(root, "raw") && {
        let raw = h5::group(path, root, "raw")?;
        ["X", "var", "varm"]
            .iter()
            .any(|name| raw.link_exists(name))
    };
    let mut names = root
        .member_names()
        .map_err(|e| h5::h5_error(path, "/", e))?;
    names.retain(|name| name.starts_with("raw."));
    match (current, names.first()) {
        (true, Some(name)) => Err(Error::invalid(
            path,
            format!("/raw: the file has both raw (X, var or varm) and /{name}, the current and the pre-0.7 layout of raw; anndata refuses it too"),
        )),
        (true, None) => Ok(Some(RawLayout::Group)),
        (false, _) if root.link_exists("raw.X") => Ok(Some(RawLayout::TopLevel)),
        (false, _) => Ok(None),
    }
}
