//! The SLAF table schemas and how their columns are stored: table directory names, id widths,
//! the Arrow schema of each table, and Lance's encoding choices (compression, bit-packing).
//!
//! Every output type is fixed before the first batch is written (as arrow-rs readers fix a
//! schema before decoding): id widths from the matrix shape, the value type from the plan's
//! scan (every stored value, or a sample the writer then checks every value against).
//! Format reference: `docs/slaf-format.md` §2 and Appendix A.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::columns;
use crate::values::ValueType;

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
    /// Pages per fragment column of expression.lance. Left out when `lance`, so plans and
    /// receipts written before the field existed keep their hashes.
    #[serde(default, skip_serializing_if = "Pages::is_lance")]
    pub pages: Pages,
}

/// How the columns of a fragment of `expression.lance` are cut into pages (layers.lance keeps
/// Lance's: one page a column there would buffer 32 MiB for each layer as well). Lance
/// encodes a page once its column data is buffered, so fewer pages means more buffered
/// (bench/RESULTS.md, "What bounds the missed targets").
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
pub enum Pages {
    /// Lance's page buffer of 8 MiB a column: 2-3 pages a fragment column, the next fragment
    /// written while the last one closes. The fastest write, within 256 MiB of memory.
    #[default]
    Lance,
    /// One page a fragment column, as upstream writes (columns up to 32 MiB a fragment; past
    /// that, pages of 32 MiB): a full pass takes 2.6 % fewer instructions than on the
    /// default's pages; 7-13 % more write time, as fragments are then written one at a time to
    /// stay within 256 MiB (bench/RESULTS.md).
    OnePerFragment,
}

impl Pages {
    /// Lance's default (serde leaves it out).
    pub fn is_lance(&self) -> bool {
        *self == Pages::Lance
    }

    /// Column data of a fragment that one page may hold with `OnePerFragment`.
    pub const ONE_PAGE_COLUMN_BYTES: u64 = 32 << 20;

    /// What Lance may buffer of a table of `columns` columns before it cuts pages (`None`:
    /// Lance's default).
    pub fn page_buffer(self, columns: usize) -> Option<u64> {
        match self {
            Pages::Lance => None,
            Pages::OnePerFragment => Some(Self::ONE_PAGE_COLUMN_BYTES * columns as u64),
        }
    }

    /// Fragments whose files may still be closing while the next one is written.
    pub fn fragments_closing(self) -> usize {
        match self {
            Pages::Lance => 1,
            Pages::OnePerFragment => 0,
        }
    }
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

/// The Arrow types of the two id columns of `expression.lance`.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct ExpressionIdTypes {
    /// Type of `cell_integer_id`.
    #[serde(with = "crate::slaf::column_type::as_column_type")]
    #[schemars(with = "crate::slaf::column_type::ColumnType")]
    pub cell: DataType,
    /// Type of `gene_integer_id`.
    #[serde(with = "crate::slaf::column_type::as_column_type")]
    #[schemars(with = "crate::slaf::column_type::ColumnType")]
    pub gene: DataType,
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
    /// Bit-packing only: the fastest to write and to query, the size of upstream's output.
    #[default]
    None,
    /// LZ4 on top of the gene ids: about a quarter smaller, but full passes (what the
    /// dataloaders do) take 1.6-1.9x as long.
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A profile with Lance's pages serialises as before the field existed, so plans and
    /// receipts written then keep their hashes; the other value round-trips.
    #[test]
    fn test_pages_left_out_when_default() {
        let mut profile = CellTablesProfile {
            value_type: crate::values::ValueType::Float32,
            layer_types: Vec::new(),
            ids: expression_id_types(IdTypes::Int32, 10, 10),
            compression: Compression::None,
            pages: Pages::Lance,
        };
        let text = serde_json::to_string(&profile).unwrap();
        assert!(!text.contains("pages"), "{text}");
        profile.pages = Pages::OnePerFragment;
        let text = serde_json::to_string(&profile).unwrap();
        assert!(text.contains(r#""pages":"one-per-fragment""#), "{text}");
        assert_eq!(
            serde_json::from_str::<CellTablesProfile>(&text).unwrap(),
            profile
        );
    }
}
