//! Value types: the stored type of expression values, and the probe that picks it from every
//! stored value (readers run it during their scan; the SLAF side stores what it decided).

use arrow::datatypes::DataType;

mod probe;
pub use self::probe::{changes_in_f32, warn_narrowed, ValueTypeProbe};

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
