//! Where a dataframe column's values are stored: a dataset of its own (anndata 0.7 and
//! later) or one field of the dataframe's compound dataset (anndata before 0.7). Both read a
//! row range the same way.

use std::ops::Range;
use std::path::Path;

use hdf5::types::{CompoundField, TypeDescriptor};
use hdf5::Dataset;

use crate::error::Result;
use crate::readers::hdf5_util as h5;

/// The stored values of one column (or of a dataframe's index).
#[derive(Debug)]
pub enum ColumnData {
    /// A 1-D dataset of its own.
    Dataset(Dataset),
    /// One field of a 1-D compound dataset.
    Field { ds: Dataset, field: CompoundField },
}

impl ColumnData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Dataset(ds) | ColumnData::Field { ds, .. } => h5::len(ds),
        }
    }

    /// The name errors give it: the dataset's path, and the field's name for a field.
    pub fn name(&self) -> String {
        match self {
            ColumnData::Dataset(ds) => ds.name(),
            ColumnData::Field { ds, field } => format!("{} field '{}'", ds.name(), field.name),
        }
    }

    /// Refuse a column far longer than what the file stores of it (see `check_stored`).
    pub fn check_stored(&self, path: &Path) -> Result<()> {
        match self {
            ColumnData::Dataset(ds) | ColumnData::Field { ds, .. } => {
                h5::check_stored(path, ds, h5::len(ds))
            }
        }
    }

    /// The stored element type.
    pub fn descriptor(&self, path: &Path) -> Result<TypeDescriptor> {
        match self {
            ColumnData::Dataset(ds) => h5::descriptor(path, ds),
            ColumnData::Field { field, .. } => Ok(field.ty.clone()),
        }
    }

    /// `rows` in type `T`, HDF5 converting numbers.
    pub fn read_numeric<T: h5::ZeroIsValid>(
        &self,
        path: &Path,
        rows: Range<usize>,
    ) -> Result<Vec<T>> {
        match self {
            ColumnData::Dataset(ds) => h5::read_numeric(path, ds, rows),
            ColumnData::Field { ds, field } => {
                h5::read_field(path, ds, &field.name, T::type_descriptor(), 1, rows)
            }
        }
    }

    /// `rows` of an integer column as `i64`.
    pub fn read_i64(&self, path: &Path, rows: Range<usize>) -> Result<Vec<i64>> {
        self.read_numeric(path, rows)
    }

    /// `rows` of a string column.
    pub fn read_strings(&self, path: &Path, rows: Range<usize>) -> Result<Vec<String>> {
        match self {
            ColumnData::Dataset(ds) => h5::read_strings(path, ds, rows),
            ColumnData::Field { ds, field } => h5::read_field_strings(path, ds, field, rows),
        }
    }

    /// `rows` of a boolean (or integer) column as bools.
    pub fn read_bools(&self, path: &Path, rows: Range<usize>) -> Result<Vec<bool>> {
        match self {
            ColumnData::Dataset(ds) => h5::read_bools(path, ds, rows),
            ColumnData::Field { ds, field } => h5::read_field_bools(path, ds, field, rows),
        }
    }
}
