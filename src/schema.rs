//! The SLAF table schemas: column names, id widths, value type, column-name sanitising.
//!
//! Every output type is fixed here before the first batch is written (as arrow-rs readers fix
//! a schema before decoding): id widths from the matrix shape, the value type from a full pass
//! over every stored value. Readers and the writer both meet in these types.
//! Format reference: `docs/slaf-format.md` §2 and Appendix A.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

mod value_probe;
pub use self::value_probe::{changes_in_f32, warn_narrowed, ValueTypeProbe};

/// Table directories relative to a dataset (or staging) root: expression.
pub const EXPRESSION_TABLE: &str = "expression.lance";
/// cells table.
pub const CELLS_TABLE: &str = "cells.lance";
/// genes table.
pub const GENES_TABLE: &str = "genes.lance";

/// Table directory of the layers.
pub const LAYERS_TABLE: &str = "layers.lance";
/// Table directory of obsp.
pub const CELLSXCELLS_TABLE: &str = "cellsxcells.lance";
/// Table directory of varp.
pub const GENESXGENES_TABLE: &str = "genesxgenes.lance";

/// Every output type of the per-cell tables, fixed before the first batch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct CellTablesProfile {
    /// Expression value type.
    pub value_type: ValueType,
    /// Layer value types, in layer order.
    pub layer_types: Vec<ValueType>,
    /// Expression id types.
    pub ids: ExpressionIdTypes,
    /// Compression of the gene id and value columns.
    #[serde(default)]
    pub compression: Compression,
}

/// Column names fixed by the SLAF format.
pub mod columns {
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
}

/// Which integer types the id columns of `expression.lance` use.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum IdTypes {
    /// `int32` cell and gene ids (`int64` cell ids past 2^31 cells). Every query path of the
    /// upstream reader works with these; upstream's compact types break `get_gene_expression`
    /// (docs/slaf-format.md §0 point 3).
    #[default]
    Int32,
    /// Upstream's default `uint32` cell / `uint16` gene ids, smaller on disk. Widened to
    /// `int32`/`int32` above 65,535 genes, never wrapped (defect B1).
    Compact,
}

/// The stored type of `expression.value`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum ValueType {
    /// Every stored value is integral and within [0, 65535].
    UInt16,
    /// Anything else.
    Float32,
}

impl ValueType {
    /// The Arrow type of the value column.
    pub fn data_type(self) -> DataType {
        match self {
            ValueType::UInt16 => DataType::UInt16,
            ValueType::Float32 => DataType::Float32,
        }
    }
}

/// The Arrow types of the two id columns of `expression.lance`.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ExpressionIdTypes {
    /// Type of `cell_integer_id`.
    #[serde(with = "id_type_name")]
    #[schemars(with = "String")]
    pub cell: DataType,
    /// Type of `gene_integer_id`.
    #[serde(with = "id_type_name")]
    #[schemars(with = "String")]
    pub gene: DataType,
}

/// Id column types as their Arrow names ("Int32", "UInt16", ...) in plans and receipts.
mod id_type_name {
    use arrow::datatypes::DataType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "Int32" => DataType::Int32,
            "Int64" => DataType::Int64,
            "UInt32" => DataType::UInt32,
            "UInt16" => DataType::UInt16,
            other => return Err(serde::de::Error::custom(format!("unknown id type {other}"))),
        })
    }
}

/// Resolve the id column types for a matrix of the given shape.
pub fn expression_id_types(id_types: IdTypes, n_cells: u64, n_genes: u64) -> ExpressionIdTypes {
    let wide_cells = n_cells > i32::MAX as u64;
    match id_types {
        IdTypes::Compact if n_genes <= 65_536 && n_cells <= u32::MAX as u64 + 1 => {
            ExpressionIdTypes {
                cell: DataType::UInt32,
                gene: DataType::UInt16,
            }
        }
        _ => ExpressionIdTypes {
            cell: if wide_cells {
                DataType::Int64
            } else {
                DataType::Int32
            },
            gene: DataType::Int32,
        },
    }
}

/// The full schema of all three required tables, fixed before writing.
#[derive(Debug, Clone)]
pub struct SlafSchemas {
    /// `expression.lance`.
    pub expression: SchemaRef,
    /// `cells.lance`: obs columns then `cell_id`, `cell_integer_id`, `cell_start_index`.
    pub cells: SchemaRef,
    /// `genes.lance`: var columns then `gene_id`, `gene_integer_id`.
    pub genes: SchemaRef,
    /// The value type chosen for expression.
    pub value_type: ValueType,
    /// The id types chosen for expression.
    pub id_types: ExpressionIdTypes,
}

/// General-purpose compression of the gene id and value columns of `expression.lance` and
/// `layers.lance`, on top of Lance's bit-packing (chosen in bench/RESULTS.md).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Bit-packing only: the fastest to write and to query.
    None,
    /// LZ4 on top: smaller, about as fast to query.
    #[default]
    Lz4,
    /// Zstandard on top: the smallest output, slower to write and to query.
    Zstd,
}

impl Compression {
    /// Lance's name of the scheme.
    fn lance_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// A gene id or value column: its values seldom repeat back to back, so Lance is told not to
/// try run-length encoding on them (measuring runs on every page cost a third of a
/// conversion's CPU and never won; cell ids, which do run, keep the default), and it gets
/// the chosen compression.
fn scattered_column(field: Field, compression: Compression) -> Field {
    let mut hints = std::collections::HashMap::from([(
        "lance-encoding:rle-threshold".to_string(),
        "0.1".to_string(),
    )]);
    if compression != Compression::None {
        hints.insert(
            "lance-encoding:compression".to_string(),
            compression.lance_name().to_string(),
        );
    }
    field.with_metadata(hints)
}

/// Schema of `expression.lance`.
pub fn expression_schema(
    ids: ExpressionIdTypes,
    value: ValueType,
    compression: Compression,
) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::CELL_INTEGER_ID, ids.cell, true),
        scattered_column(
            Field::new(columns::GENE_INTEGER_ID, ids.gene, true),
            compression,
        ),
        scattered_column(
            Field::new(columns::VALUE, value.data_type(), true),
            compression,
        ),
    ]))
}

/// Schema of `layers.lance`: expression's id columns, then one value column per layer.
pub fn layers_schema(
    ids: &ExpressionIdTypes,
    layers: &[String],
    types: &[ValueType],
    compression: Compression,
) -> SchemaRef {
    let mut fields = vec![
        Field::new(columns::CELL_INTEGER_ID, ids.cell.clone(), true),
        scattered_column(
            Field::new(columns::GENE_INTEGER_ID, ids.gene.clone(), true),
            compression,
        ),
    ];
    fields.extend(
        layers
            .iter()
            .zip(types)
            .map(|(name, t)| scattered_column(Field::new(name, t.data_type(), true), compression)),
    );
    Arc::new(Schema::new(fields))
}

/// Schema of `cellsxcells.lance` (`prefix` "cell_integer_id") or `genesxgenes.lance`
/// ("gene_integer_id"): `<prefix>_i`, `<prefix>_j`, one float32 column per key.
pub fn pairwise_schema(prefix: &str, id_type: &DataType, keys: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new(format!("{prefix}_i"), id_type.clone(), true),
        Field::new(format!("{prefix}_j"), id_type.clone(), true),
    ];
    fields.extend(keys.iter().map(|k| Field::new(k, DataType::Float32, true)));
    Arc::new(Schema::new(fields))
}

/// Schema of `cells.lance` given the (already sanitised) obs columns; multi-input datasets
/// have `source_file` before `cell_start_index`, as upstream writes it.
pub fn cells_schema(obs: &[Field], source_file: bool) -> SchemaRef {
    let mut fields: Vec<Field> = obs.to_vec();
    fields.push(Field::new(columns::CELL_ID, DataType::Utf8, true));
    fields.push(Field::new(columns::CELL_INTEGER_ID, DataType::Int64, true));
    if source_file {
        fields.push(Field::new(columns::SOURCE_FILE, DataType::Utf8, true));
    }
    fields.push(Field::new(columns::CELL_START_INDEX, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Schema of `genes.lance` given the (already sanitised) var columns.
pub fn genes_schema(var: &[Field]) -> SchemaRef {
    let mut fields: Vec<Field> = var.to_vec();
    fields.push(Field::new(columns::GENE_ID, DataType::Utf8, true));
    fields.push(Field::new(columns::GENE_INTEGER_ID, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

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

    #[test]
    fn test_value_type_probe() {
        let mut p = ValueTypeProbe::default();
        p.observe(&[0.0, 1.0, 65535.0]);
        assert_eq!(p.value_type(), ValueType::UInt16);
        p.observe(&[2.0, 0.5]);
        assert_eq!(p.value_type(), ValueType::Float32);

        let mut neg = ValueTypeProbe::default();
        neg.observe(&[-1.0]);
        assert_eq!(neg.value_type(), ValueType::Float32);
        let mut big = ValueTypeProbe::default();
        big.observe(&[65536.0]);
        assert_eq!(big.value_type(), ValueType::Float32);
        let mut nan = ValueTypeProbe::default();
        nan.observe(&[f64::NAN]);
        assert_eq!(nan.value_type(), ValueType::Float32);
    }

    #[test]
    fn test_expression_id_types() {
        let default = expression_id_types(IdTypes::Int32, 10, 10);
        assert_eq!(
            (default.cell, default.gene),
            (DataType::Int32, DataType::Int32)
        );
        let compact = expression_id_types(IdTypes::Compact, 10, 65_536);
        assert_eq!(
            (compact.cell, compact.gene),
            (DataType::UInt32, DataType::UInt16)
        );
        // Past 65,535 genes a uint16 would wrap (B1): widen instead.
        let widened = expression_id_types(IdTypes::Compact, 10, 70_000);
        assert_eq!(
            (widened.cell, widened.gene),
            (DataType::Int32, DataType::Int32)
        );
        let many_cells = expression_id_types(IdTypes::Int32, 3_000_000_000, 10);
        assert_eq!(many_cells.cell, DataType::Int64);
    }
}
