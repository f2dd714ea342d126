//! The on-disk layouts of older anndata versions that `anndata.read_h5ad` still reads, where
//! they differ from today's: anndata 0.7's categorical columns (codes with their labels in
//! `__categories`). The h5sparse matrix attributes are read in
//! `hdf5_util::sparse_encoding`; the layout before 0.7 (compound-dataset dataframes) is
//! refused with a message that says so.

use std::path::Path;

use hdf5::{Dataset, Group};

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
    let has_attr = data
        .attr_names()
        .map(|names| names.iter().any(|n| n == "categories"))
        .unwrap_or(false);
    if !has_attr {
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
    super::dataframe::read_as_strings(path, &categories).map(Some)
}
