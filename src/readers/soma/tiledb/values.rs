//! Cells of a fixed-size type copied out of TileDB's buffers as typed vectors, and the
//! strings of a variable-length column, checked as UTF-8.

use std::path::Path;

use super::schema::Datatype;
use crate::error::{Error, Result};

/// Cells of one type, copied out of a buffer.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Values {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
}

macro_rules! decode {
    ($bytes:expr, $t:ty) => {
        $bytes
            .chunks_exact(std::mem::size_of::<$t>())
            .map(|c| <$t>::from_ne_bytes(c.try_into().expect("chunk of the type's size")))
            .collect()
    };
}

macro_rules! each {
    ($values:expr, $v:ident => $body:expr) => {
        match $values {
            Values::I8($v) => $body,
            Values::I16($v) => $body,
            Values::I32($v) => $body,
            Values::I64($v) => $body,
            Values::U8($v) => $body,
            Values::U16($v) => $body,
            Values::U32($v) => $body,
            Values::U64($v) => $body,
            Values::F32($v) => $body,
            Values::F64($v) => $body,
            Values::Bool($v) => $body,
        }
    };
}

impl Values {
    /// `bytes` as cells of `datatype` (`None` for types that are not numbers or booleans).
    pub fn decode(datatype: Datatype, bytes: &[u8]) -> Option<Values> {
        Some(match datatype {
            Datatype::Int8 => Values::I8(decode!(bytes, i8)),
            Datatype::Int16 => Values::I16(decode!(bytes, i16)),
            Datatype::Int32 => Values::I32(decode!(bytes, i32)),
            Datatype::Int64 => Values::I64(decode!(bytes, i64)),
            Datatype::UInt8 => Values::U8(bytes.to_vec()),
            Datatype::UInt16 => Values::U16(decode!(bytes, u16)),
            Datatype::UInt32 => Values::U32(decode!(bytes, u32)),
            Datatype::UInt64 => Values::U64(decode!(bytes, u64)),
            Datatype::Float32 => Values::F32(decode!(bytes, f32)),
            Datatype::Float64 => Values::F64(decode!(bytes, f64)),
            Datatype::Bool => Values::Bool(bytes.iter().map(|&b| b != 0).collect()),
            Datatype::String | Datatype::Other(_) => return None,
        })
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cell `i` as text (a category's label).
    pub fn text(&self, i: usize) -> String {
        each!(self, v => v[i].to_string())
    }

    /// Cell `i` as an index (a category code); `None` if negative or not an integer.
    pub fn index(&self, i: usize) -> Option<usize> {
        match self {
            Values::I8(v) => usize::try_from(v[i]).ok(),
            Values::I16(v) => usize::try_from(v[i]).ok(),
            Values::I32(v) => usize::try_from(v[i]).ok(),
            Values::I64(v) => usize::try_from(v[i]).ok(),
            Values::U8(v) => Some(v[i] as usize),
            Values::U16(v) => Some(v[i] as usize),
            Values::U32(v) => usize::try_from(v[i]).ok(),
            Values::U64(v) => usize::try_from(v[i]).ok(),
            Values::F32(_) | Values::F64(_) | Values::Bool(_) => None,
        }
    }

    /// Every cell as f32, appended to `out` (what SLAF stores: the value type was decided
    /// from the exact values by [`Self::to_f64`]).
    pub fn push_f32(&self, out: &mut Vec<f32>) {
        match self {
            Values::Bool(v) => out.extend(v.iter().map(|&b| f32::from(u8::from(b)))),
            Values::I8(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::I16(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::I32(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::I64(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::U8(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::U16(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::U32(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::U64(v) => out.extend(v.iter().map(|&x| x as f32)),
            Values::F32(v) => out.extend_from_slice(v),
            Values::F64(v) => out.extend(v.iter().map(|&x| x as f32)),
        }
    }

    /// Every cell as f64 (exact for every type but 64-bit integers beyond 2^53).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Values::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Values::U64(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Values::F64(v) => v.clone(),
        }
    }
}

/// The strings of `bytes` starting at `starts` (each ends where the next starts), as UTF-8.
pub fn split_strings(
    bytes: &[u8],
    starts: &[u64],
    input: &Path,
    object: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(bytes.len() as u64);
        let slice = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| {
                Error::invalid(input, format!("{object}: string offsets out of order"))
            })?;
        let text = std::str::from_utf8(slice)
            .map_err(|_| Error::invalid(input, format!("{object}: string {i} is not UTF-8")))?;
        out.push(text.to_string());
    }
    Ok(out)
}
