//! Arrow data types as plan.json stores them (obs/var columns, and the id columns in the
//! cell-tables profile): a small tagged representation
//! of our own through serde, not Arrow's `Display` text parsed back (which is not promised to
//! stay the same between Arrow releases). It covers every type a reader gives an obs or var
//! column and the id column types; any other type is refused when a plan is written.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use serde::{Deserialize, Serialize};

/// The type of a planned column, e.g. `"utf8"`, `"float64"`, `{"float32_vector": {"dim": 50}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Arrow `Boolean`.
    Boolean,
    /// Arrow `Int8`.
    Int8,
    /// Arrow `Int16`.
    Int16,
    /// Arrow `Int32`.
    Int32,
    /// Arrow `Int64`.
    Int64,
    /// Arrow `UInt8`.
    UInt8,
    /// Arrow `UInt16`.
    UInt16,
    /// Arrow `UInt32`.
    UInt32,
    /// Arrow `UInt64`.
    UInt64,
    /// Arrow `Float16`.
    Float16,
    /// Arrow `Float32`.
    Float32,
    /// Arrow `Float64`.
    Float64,
    /// Arrow `Utf8`.
    Utf8,
    /// An obsm/varm vector: Arrow `FixedSizeList` of `dim` nullable float32 items named
    /// "item" (what upstream writes).
    #[serde(rename = "float32_vector")]
    Float32Vector {
        /// Items per row.
        dim: i32,
    },
}

impl ColumnType {
    /// The representation of `data_type`, or `None` for a type plans do not carry.
    pub fn of(data_type: &DataType) -> Option<ColumnType> {
        Some(match data_type {
            DataType::Boolean => ColumnType::Boolean,
            DataType::Int8 => ColumnType::Int8,
            DataType::Int16 => ColumnType::Int16,
            DataType::Int32 => ColumnType::Int32,
            DataType::Int64 => ColumnType::Int64,
            DataType::UInt8 => ColumnType::UInt8,
            DataType::UInt16 => ColumnType::UInt16,
            DataType::UInt32 => ColumnType::UInt32,
            DataType::UInt64 => ColumnType::UInt64,
            DataType::Float16 => ColumnType::Float16,
            DataType::Float32 => ColumnType::Float32,
            DataType::Float64 => ColumnType::Float64,
            DataType::Utf8 => ColumnType::Utf8,
            DataType::FixedSizeList(item, dim) if item.as_ref() == &vector_item() => {
                ColumnType::Float32Vector { dim: *dim }
            }
            _ => return None,
        })
    }

    /// The Arrow type.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int8 => DataType::Int8,
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::UInt8 => DataType::UInt8,
            ColumnType::UInt16 => DataType::UInt16,
            ColumnType::UInt32 => DataType::UInt32,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Float16 => DataType::Float16,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Float32Vector { dim } => {
                DataType::FixedSizeList(Arc::new(vector_item()), dim)
            }
        }
    }
}

/// The item field of an obsm/varm vector column.
fn vector_item() -> Field {
    Field::new("item", DataType::Float32, true)
}

/// `#[serde(with = "...")]` for a `DataType` field stored as a [`ColumnType`].
pub mod as_column_type {
    use arrow::datatypes::DataType;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ColumnType;

    /// Serialise `data_type` as its [`ColumnType`]; a type without one is an error.
    pub fn serialize<S: Serializer>(data_type: &DataType, s: S) -> Result<S::Ok, S::Error> {
        ColumnType::of(data_type)
            .ok_or_else(|| serde::ser::Error::custom(format!("no stored form for {data_type}")))?
            .serialize(s)
    }

    /// Read a [`ColumnType`] back as its Arrow type.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DataType, D::Error> {
        ColumnType::deserialize(d).map(ColumnType::data_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_json() {
        let types = [
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float16,
            DataType::Float32,
            DataType::Float64,
            DataType::Utf8,
            ColumnType::Float32Vector { dim: 50 }.data_type(),
        ];
        for t in types {
            let stored = ColumnType::of(&t).unwrap();
            let json = serde_json::to_string(&stored).unwrap();
            let back: ColumnType = serde_json::from_str(&json).unwrap();
            assert_eq!(back.data_type(), t, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&ColumnType::UInt16).unwrap(),
            "\"uint16\""
        );
        assert_eq!(
            serde_json::to_string(&ColumnType::Float32Vector { dim: 2 }).unwrap(),
            r#"{"float32_vector":{"dim":2}}"#
        );
    }

    #[test]
    fn other_types_have_no_stored_form() {
        assert_eq!(ColumnType::of(&DataType::LargeUtf8), None);
        let non_null_items =
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 2);
        assert_eq!(ColumnType::of(&non_null_items), None);
    }
}
