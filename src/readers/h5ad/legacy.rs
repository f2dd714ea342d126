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

use super::dataframe::read_as_strings;
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

/// The labels anndata 0.6 kept in `uns/<column>_categories`, by column name (the key with
/// every `_categories` taken out, as anndata's `_clean_uns` does). Empty for later layouts.
#[derive(Debug, Default)]
pub struct UnsCategories {
    /// (column, uns key, labels), sorted by uns key: the first key for a column wins.
    entries: Vec<(String, String, Vec<String>)>,
}

impl UnsCategories {
    /// Read the `_categories` arrays of `/uns` when the file has the 0.6 layout.
    pub fn read(path: &Path, root: &Group) -> Result<Self> {
        let mut entries = Vec::new();
        if !is_layout_06(root) || !h5::is_group(root, "uns") {
            return Ok(UnsCategories { entries });
        }
        let uns = h5::group(path, root, "uns")?;
        let mut keys = uns
            .member_names()
            .map_err(|e| h5::h5_error(path, &uns.name(), e))?;
        keys.sort();
        for key in keys {
            if !key.ends_with("_categories") || h5::is_group(&uns, &key) {
                continue;
            }
            let column = key.replace("_categories", "");
            let ds = h5::dataset(path, &uns, &key)?;
            // A scalar is one category (anndata wraps it in a list).
            let labels = if ds.is_scalar() {
                h5::read_scalar_string(path, &ds).map(|s| vec![s])
            } else {
                read_as_strings(path, &ds)
            };
            match labels {
                Ok(labels) if !entries.iter().any(|(c, _, _)| *c == column) => {
                    entries.push((column, key, labels))
                }
                Ok(_) => {}
                // Not labels anndata could use (a table, say): it stays in uns.
                Err(_) => continue,
            }
        }
        Ok(UnsCategories { entries })
    }

    /// The uns key and labels for the column `column`, if uns has them.
    pub fn get(&self, column: &str) -> Option<(&str, &[String])> {
        self.entries
            .iter()
            .find(|(c, _, _)| c == column)
            .map(|(_, key, labels)| (key.as_str(), labels.as_slice()))
    }
}

/// Rows read at a time when checking codes.
const CODE_BLOCK: usize = 1 << 20;

/// Whether the integer column `codes` is codes into `n` categories: anndata 0.6's reader
/// makes a column categorical only when every code is below `n` (its guess at which of obs
/// and var the labels were for). Codes below -1 fit here and are refused when read.
pub(super) fn codes_fit(
    path: &Path,
    codes: &super::dataframe::ColumnData,
    n: usize,
) -> Result<bool> {
    if !matches!(
        codes.descriptor(path)?,
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)
    ) {
        return Ok(false);
    }
    let rows = codes.len();
    // A header claiming rows the file never stored would be read block by block for ever.
    codes.check_stored(path)?;
    let mut start = 0;
    while start < rows {
        let end = (start + CODE_BLOCK).min(rows);
        if codes
            .read_i64(path, start..end)?
            .iter()
            .any(|&c| c >= n as i64)
        {
            return Ok(false);
        }
        start = end;
    }
    Ok(true)
}

/// Where raw's parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawLayout {
    /// The group `raw` with `X`, `var`, `varm` (anndata 0.7 and later).
    Group,
    /// `raw.X`, `raw.var`, `raw.varm` at the top (before 0.7).
    TopLevel,
}

/// Where raw's parts are; `None` without raw. A file with both layouts is refused, as
/// anndata refuses it.
pub(super) fn raw_layout(path: &Path, root: &Group) -> Result<Option<RawLayout>> {
    let top_level = ["raw.X", "raw.var", "raw.varm"]
        .into_iter()
        .any(|name| root.link_exists(name));
    match (root.link_exists("raw"), top_level) {
        (true, true) => Err(Error::invalid(
            path,
            "/raw: the file has both raw and raw.X/raw.var (the current and the pre-0.7 layout of raw); anndata refuses it too",
        )),
        (true, false) => Ok(Some(RawLayout::Group)),
        (false, true) => Ok(Some(RawLayout::TopLevel)),
        (false, false) => Ok(None),
    }
}
