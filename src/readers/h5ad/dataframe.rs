//! anndata dataframes (obs, var, raw.var) as Arrow columns, read a row range at a time: the
//! `dataframe` groups of anndata 0.7 and later, and the compound datasets of the versions
//! before (their first field is the index, the others the columns).
//!
//! Every column encoding anndata writes is resolved once at open ([`DataFrameReader::open`])
//! into a [`Column`] with a fixed Arrow type; reads then only slice. A missing value
//! (categorical code -1, a set mask bit, a float NaN) becomes an Arrow null, never the text
//! "nan" (upstream defect B23).

mod column;
mod data;

use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow::array::ArrayRef;
use arrow::datatypes::Field;
use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Group};

use self::column::{column_len, plain_column, read_column, resolve_column, Column};
pub(super) use self::column::{read_as_strings, read_as_strings_in};
pub(super) use self::data::ColumnData;
use super::legacy::UnsCategories;
use crate::columns::sanitise_column_names;
use crate::error::{Error, Result};
use crate::readers::hdf5_util as h5;

/// Reads row ranges of one anndata dataframe (`obs` or `var`).
#[derive(Debug)]
pub struct DataFrameReader {
    path: PathBuf,
    index: ColumnData,
    columns: Vec<Column>,
    fields: Vec<Field>,
    source_names: Vec<String>,
    n_rows: usize,
    uns_categories_used: Vec<String>,
}

impl DataFrameReader {
    /// Resolve every column of the dataframe `name` (e.g. "obs") of `root`: a group, or the
    /// compound dataset of anndata before 0.7, whose categorical columns take their labels
    /// from `categories` (`uns/<column>_categories`).
    ///
    /// `reserved` are output column names SLAF writes itself (`cell_id`, ...), which a source
    /// column may not take.
    pub fn open(
        path: &Path,
        root: &Group,
        name: &str,
        reserved: &[&str],
        categories: &UnsCategories,
    ) -> Result<Self> {
        if root.link_exists(name) && !h5::is_group(root, name) {
            let ds = h5::dataset(path, root, name)?;
            return Self::from_compound(path, ds, reserved, categories);
        }
        Self::from_group(path, &h5::group(path, root, name)?, reserved)
    }

    /// Resolve every column of the dataframe `group` itself.
    pub fn from_group(path: &Path, group: &Group, reserved: &[&str]) -> Result<Self> {
        let name = group.name();
        let encoding = h5::encoding_type(path, group)?;
        if encoding.as_deref() != Some("dataframe") {
            return Err(Error::invalid(
                path,
                format!(
                    "{name}: a group with encoding {} where anndata keeps a dataframe (expected 'dataframe')",
                    encoding.map_or("<none>".to_string(), |e| format!("'{e}'"))
                ),
            ));
        }
        let index_name = h5::str_attr(path, group, "_index")?.unwrap_or_else(|| "_index".into());
        let index = ColumnData::Dataset(h5::dataset(path, group, &index_name)?);
        let order = h5::str_array_attr(path, group, "column-order")?.unwrap_or_default();
        let columns = order
            .iter()
            .map(|col| resolve_column(path, group, col))
            .collect::<Result<Vec<_>>>()?;
        Self::new(path, &name, index, order, columns, reserved, Vec::new())
    }

    /// Resolve the columns of an anndata 0.6 dataframe: a 1-D compound dataset whose first
    /// field is the index (as `anndata`'s `read_dataframe_legacy` takes it). An integer
    /// column with labels in `categories` that all its codes fit is categorical, as
    /// anndata's `_clean_uns` makes it (only the labels its codes use are kept).
    fn from_compound(
        path: &Path,
        ds: Dataset,
        reserved: &[&str],
        categories: &UnsCategories,
    ) -> Result<Self> {
        let name = ds.name();
        h5::check_ndim(path, &ds, 1)?;
        let Some(fields) = h5::compound_fields(path, &ds)? else {
            return Err(Error::invalid(
                path,
                format!("{name}: a dataset of {} where anndata keeps a dataframe (a group, or before anndata 0.7 a compound dataset)", h5::descriptor(path, &ds)?),
            ));
        };
        let Some((index, fields)) = fields.split_first() else {
            return Err(Error::invalid(
                path,
                format!("{name}: a compound dataframe without fields (not even an index)"),
            ));
        };
        let field = |f: &hdf5::types::CompoundField| ColumnData::Field {
            ds: ds.clone(),
            field: f.clone(),
        };
        let mut used = Vec::new();
        let mut columns = Vec::with_capacity(fields.len());
        for f in fields {
            let data = field(f);
            let labels = match categories.labels_for(path, &f.name, &data)? {
                Some((key, labels)) => {
                    used.push(key);
                    Some(labels)
                }
                None => None,
            };
            let column = match labels {
                Some(categories) => Column::Categorical {
                    codes: data,
                    categories,
                },
                None => plain_column(data, &f.ty).ok_or_else(|| {
                    Error::invalid(
                        path,
                        format!(
                            "{name} field '{}': unsupported column type {}",
                            f.name, f.ty
                        ),
                    )
                })?,
            };
            columns.push(column);
        }
        let order = fields.iter().map(|f| f.name.clone()).collect();
        Self::new(path, &name, field(index), order, columns, reserved, used)
    }

    /// Check that every column has the index's length and that the names become distinct
    /// output columns.
    fn new(
        path: &Path,
        name: &str,
        index: ColumnData,
        order: Vec<String>,
        columns: Vec<Column>,
        reserved: &[&str],
        uns_categories_used: Vec<String>,
    ) -> Result<Self> {
        let n_rows = index.len();
        for (col, column) in order.iter().zip(&columns) {
            let len = column_len(column);
            if len != n_rows {
                return Err(Error::invalid(
                    path,
                    format!("{name}/{col}: has {len} rows but the index has {n_rows}"),
                ));
            }
        }
        let names = sanitise_column_names(&order, reserved)
            .map_err(|e| Error::invalid(path, format!("{name}: {e}")))?;
        let fields = names
            .into_iter()
            .zip(&columns)
            .map(|(n, c)| Field::new(n, c.data_type(), true))
            .collect();
        Ok(DataFrameReader {
            path: path.to_path_buf(),
            index,
            columns,
            fields,
            source_names: order,
            n_rows,
            uns_categories_used,
        })
    }

    /// The columns' names as stored (before sanitising).
    pub fn source_names(&self) -> &[String] {
        &self.source_names
    }

    /// The `uns` keys (`<column>_categories`, anndata 0.6) that became the labels of
    /// categorical columns: anndata drops them from `uns`.
    pub fn uns_categories_used(&self) -> &[String] {
        &self.uns_categories_used
    }

    /// Number of rows (the index length).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// The output fields of the data columns (sanitised names, in `column-order`).
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The index values (obs_names / var_names) of `rows`.
    pub fn read_index(&self, rows: Range<usize>) -> Result<Vec<String>> {
        match self.index.descriptor(&self.path)? {
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => Ok(self
                .index
                .read_i64(&self.path, rows)?
                .into_iter()
                .map(|v| v.to_string())
                .collect()),
            _ => self.index.read_strings(&self.path, rows),
        }
    }

    /// The data columns of `rows`, in [`Self::fields`] order.
    pub fn read_columns(&self, rows: Range<usize>) -> Result<Vec<ArrayRef>> {
        self.columns
            .iter()
            .map(|c| read_column(&self.path, c, rows.clone()))
            .collect()
    }
}

/// Read the whole column `name` of `parent` (any encoding a dataframe column may have).
pub fn read_whole_column(path: &Path, parent: &Group, name: &str) -> Result<ArrayRef> {
    let column = resolve_column(path, parent, name)?;
    let n = column_len(&column);
    read_column(path, &column, 0..n)
}
