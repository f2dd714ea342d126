//! anndata's `encoding-type`/`encoding-version` attributes: which versions this reader takes,
//! and the older h5sparse attributes of a sparse matrix.

use std::path::Path;

use hdf5::Location;

use super::str_attr;
use crate::error::{Error, Result};

/// The encoding versions anndata 0.12 writes and reads, per `encoding-type`.
const ENCODING_VERSIONS: &[(&str, &str)] = &[
    ("anndata", "0.1.0"),
    ("raw", "0.1.0"),
    ("dataframe", "0.2.0"),
    // anndata 0.7's layout, still registered for reading.
    ("dataframe", "0.1.0"),
    ("csr_matrix", "0.1.0"),
    ("csc_matrix", "0.1.0"),
    ("array", "0.2.0"),
    ("dict", "0.1.0"),
    ("string", "0.2.0"),
    ("string-array", "0.2.0"),
    ("numeric-scalar", "0.2.0"),
    ("categorical", "0.2.0"),
    ("nullable-integer", "0.1.0"),
    ("nullable-boolean", "0.1.0"),
    ("nullable-string-array", "0.1.0"),
    ("awkward-array", "0.1.0"),
];

/// The `encoding-type` of `loc`, `None` if it has none. A known type with an
/// `encoding-version` anndata does not read (a newer writer's, or a damaged attribute) is an
/// error naming both, as anndata's own registry refuses it: read as the old version it could
/// mean anything.
pub fn encoding_type(path: &Path, loc: &Location) -> Result<Option<String>> {
    let Some(kind) = str_attr(path, loc, "encoding-type")? else {
        return Ok(None);
    };
    let version = str_attr(path, loc, "encoding-version")?;
    let known: Vec<&str> = ENCODING_VERSIONS
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, v)| *v)
        .collect();
    if let Some(v) = version.filter(|v| !known.is_empty() && !known.contains(&v.as_str())) {
        return Err(Error::invalid(
            path,
            format!(
                "{}: {kind} encoding-version {v} (anndata 0.12 reads {})",
                loc.name(),
                known.join(", ")
            ),
        ));
    }
    Ok(Some(kind))
}

/// A sparse matrix group's encoding and the attribute holding its shape: anndata's
/// `encoding-type` with `shape`, or the older h5sparse layout (anndata before 0.7), whose
/// `h5sparse_format` is `csr` or `csc` and whose shape is `h5sparse_shape`.
pub fn sparse_encoding(
    path: &Path,
    g: &hdf5::Group,
    object: &str,
) -> Result<(String, &'static str)> {
    if let Some(encoding) = encoding_type(path, g)? {
        return Ok((encoding, "shape"));
    }
    match str_attr(path, g, "h5sparse_format")?.as_deref() {
        Some("csr") => Ok(("csr_matrix".into(), "h5sparse_shape")),
        Some("csc") => Ok(("csc_matrix".into(), "h5sparse_shape")),
        Some(other) => Err(Error::invalid(
            path,
            format!("{object}@h5sparse_format: '{other}' (expected csr or csc)"),
        )),
        None => Err(Error::invalid(
            path,
            format!("{object}: group without an encoding-type"),
        )),
    }
}
