//! Column names: the ones the SLAF format fixes, and the rule that makes an input's obs and
//! var column names into output names clear of them (readers apply it at open, so every
//! field they report is already an output field).

use std::collections::HashMap;

/// Cell position, in cells.lance and expression.lance.
pub const CELL_INTEGER_ID: &str = "cell_integer_id";
/// Gene position, in genes.lance and expression.lance.
pub const GENE_INTEGER_ID: &str = "gene_integer_id";
/// Expression value.
pub const VALUE: &str = "value";
/// Cell name (obs index).
pub const CELL_ID: &str = "cell_id";
/// Gene name (var index).
pub const GENE_ID: &str = "gene_id";
/// Global expression row of a cell's first entry.
pub const CELL_START_INDEX: &str = "cell_start_index";
/// Input a cell came from (multi-input datasets).
pub const SOURCE_FILE: &str = "source_file";

/// Why a set of column names cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnNameError {
    /// Two source columns map to the same output name after `.` → `_`.
    Collision {
        /// The first source name.
        first: String,
        /// The second source name.
        second: String,
        /// The name both become.
        sanitised: String,
    },
    /// A source column would take the name of a column SLAF writes itself.
    Reserved {
        /// The source name.
        source: String,
        /// The reserved output name.
        sanitised: String,
    },
}

impl std::fmt::Display for ColumnNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnNameError::Collision {
                first,
                second,
                sanitised,
            } => write!(
                f,
                "columns '{first}' and '{second}' both become '{sanitised}' ('.' is replaced by '_' because Lance forbids '.' in column names); rename one of them"
            ),
            ColumnNameError::Reserved { source, sanitised } => write!(
                f,
                "column '{source}' would become '{sanitised}', a column SLAF writes itself; rename it"
            ),
        }
    }
}

/// Replace every `.` by `_` (Lance rejects `.` in top-level names), refusing collisions
/// between source columns and with the columns SLAF adds itself (upstream silently
/// overwrites those: defect B23).
pub fn sanitise_column_names(
    names: &[String],
    reserved: &[&str],
) -> Result<Vec<String>, ColumnNameError> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let sanitised = name.replace('.', "_");
        if reserved.contains(&sanitised.as_str()) {
            return Err(ColumnNameError::Reserved {
                source: name.clone(),
                sanitised,
            });
        }
        if let Some(first) = seen.insert(sanitised.clone(), name) {
            return Err(ColumnNameError::Collision {
                first: first.to_string(),
                second: name.clone(),
                sanitised,
            });
        }
        out.push(sanitised);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn test_sanitise_column_names() {
        let out = sanitise_column_names(&names(&["pct.mt", "n.genes.x", "plain"]), &[]).unwrap();
        assert_eq!(out, names(&["pct_mt", "n_genes_x", "plain"]));
    }

    #[test]
    fn test_sanitise_column_names_collision() {
        let err = sanitise_column_names(&names(&["a.b", "a_b"]), &[]).unwrap_err();
        assert_eq!(
            err,
            ColumnNameError::Collision {
                first: "a.b".into(),
                second: "a_b".into(),
                sanitised: "a_b".into()
            }
        );
        assert!(err.to_string().contains("'a.b' and 'a_b'"));
    }

    #[test]
    fn test_sanitise_column_names_reserved() {
        let err = sanitise_column_names(&names(&["cell.id"]), &["cell_id"]).unwrap_err();
        assert!(matches!(err, ColumnNameError::Reserved { .. }));
    }
}
