//! The bytes of HDF5 chunks as numbers: stored element types, little-endian decoding into the
//! type a reader wants, and HDF5's shuffle filter undone.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};

/// The stored element type (always little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
}

impl Element {
    /// The element type of `descriptor`, if it is a plain integer or float.
    pub fn of(descriptor: &TypeDescriptor) -> Option<Self> {
        use TypeDescriptor as T;
        Some(match descriptor {
            T::Integer(IntSize::U1) => Element::I8,
            T::Integer(IntSize::U2) => Element::I16,
            T::Integer(IntSize::U4) => Element::I32,
            T::Integer(IntSize::U8) => Element::I64,
            T::Unsigned(IntSize::U1) => Element::U8,
            T::Unsigned(IntSize::U2) => Element::U16,
            T::Unsigned(IntSize::U4) => Element::U32,
            T::Unsigned(IntSize::U8) => Element::U64,
            T::Float(FloatSize::U4) => Element::F32,
            T::Float(FloatSize::U8) => Element::F64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Element::I8 | Element::U8 => 1,
            Element::I16 | Element::U16 => 2,
            Element::I32 | Element::U32 | Element::F32 => 4,
            Element::I64 | Element::U64 | Element::F64 => 8,
        }
    }
}

/// A numeric type elements are decoded into, from the widest type of each kind (every stored
/// integer fits i64 or u64 exactly, every float f64).
pub trait Decode: Copy + Default + Send + Sync + 'static {
    /// From a signed integer.
    fn from_i64(v: i64) -> Self;
    /// From an unsigned integer.
    fn from_u64(v: u64) -> Self;
    /// From a float.
    fn from_f64(v: f64) -> Self;
}

/// Targets that take any value with `as`, as HDF5's own conversion to them does.
macro_rules! decode_as {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    )*};
}
decode_as!(f32, f64, i64);

/// Indices: anything that is not an integer in 0..u32::MAX becomes u32::MAX, which no
/// dimension reaches, so the caller's bounds check refuses it.
impl Decode for u32 {
    fn from_i64(v: i64) -> Self {
        u32::try_from(v).unwrap_or(u32::MAX)
    }
    fn from_u64(v: u64) -> Self {
        u32::try_from(v).unwrap_or(u32::MAX)
    }
    fn from_f64(_: f64) -> Self {
        u32::MAX
    }
}

/// Decode the little-endian `element`s in `bytes` into `out` (as many as `out` holds).
pub fn decode_into<T: Decode>(bytes: &[u8], element: Element, out: &mut [T]) {
    macro_rules! each {
        ($src:ty, $widen:ident, $wide:ty) => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(size_of::<$src>())) {
                let v = <$src>::from_le_bytes(b.try_into().expect("chunks_exact"));
                *o = T::$widen(v as $wide);
            }
        };
    }
    match element {
        Element::I8 => each!(i8, from_i64, i64),
        Element::I16 => each!(i16, from_i64, i64),
        Element::I32 => each!(i32, from_i64, i64),
        Element::I64 => each!(i64, from_i64, i64),
        Element::U8 => each!(u8, from_u64, u64),
        Element::U16 => each!(u16, from_u64, u64),
        Element::U32 => each!(u32, from_u64, u64),
        Element::U64 => each!(u64, from_u64, u64),
        Element::F32 => each!(f32, from_f64, f64),
        Element::F64 => each!(f64, from_f64, f64),
    }
}

/// Undo HDF5's shuffle filter: the first bytes of every element, then the second bytes, ...
pub fn unshuffle(shuffled: &[u8], size: usize, out: &mut Vec<u8>) {
    out.resize(shuffled.len(), 0);
    let n = shuffled.len() / size;
    for b in 0..size {
        let plane = &shuffled[b * n..(b + 1) * n];
        for (i, &byte) in plane.iter().enumerate() {
            out[i * size + b] = byte;
        }
    }
    // Bytes past the last whole element are left as they are.
    let whole = n * size;
    out[whole..].copy_from_slice(&shuffled[whole..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unshuffle() {
        // Two u32 elements 0x04030201, 0x08070605 shuffled by byte plane, plus one stray byte.
        let shuffled = [1, 5, 2, 6, 3, 7, 4, 8, 9];
        let mut out = Vec::new();
        unshuffle(&shuffled, 4, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn test_decode() {
        let bytes: Vec<u8> = [1i32, -2, 70000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut out = [0f32; 3];
        decode_into(&bytes, Element::I32, &mut out);
        assert_eq!(out, [1.0, -2.0, 70000.0]);
        let mut wide = [0i64; 2];
        decode_into(&bytes[4..], Element::I32, &mut wide);
        assert_eq!(wide, [-2, 70000]);
        let mut indices = [0u32; 3];
        decode_into(&bytes, Element::I32, &mut indices);
        assert_eq!(indices, [1, u32::MAX, 70000]);
        let floats: Vec<u8> = [2.0f32].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut index = [0u32; 1];
        decode_into(&floats, Element::F32, &mut index);
        assert_eq!(index, [u32::MAX]);
    }
}
