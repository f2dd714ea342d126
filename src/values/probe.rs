//! Deciding the value type from the stored values, and saying what float32 changes.

use super::ValueType;

/// Running check of whether every value seen so far fits `uint16` exactly.
///
/// Fed every stored value of the matrix (not a sample, unlike upstream: defect B7).
#[derive(Debug, Clone, Copy)]
pub struct ValueTypeProbe {
    fits_u16: bool,
    narrowed: u64,
}

impl Default for ValueTypeProbe {
    fn default() -> Self {
        ValueTypeProbe {
            fits_u16: true,
            narrowed: 0,
        }
    }
}

impl ValueTypeProbe {
    /// Look at a block of values.
    pub fn observe(&mut self, values: &[f64]) {
        if self.fits_u16 {
            self.fits_u16 = values.iter().all(|&v| Self::fits_u16(v));
        }
        self.narrowed += values.iter().filter(|&&v| changes_in_f32(v)).count() as u64;
    }

    /// Values observed that float32 does not hold exactly (see [`changes_in_f32`]).
    pub fn narrowed(&self) -> u64 {
        self.narrowed
    }

    /// Whether `v` is stored exactly as a uint16 value.
    pub fn fits_u16(v: f64) -> bool {
        (0.0..=65535.0).contains(&v) && v.fract() == 0.0
    }

    /// Record the outcome of checking a block elsewhere with [`ValueTypeProbe::fits_u16`].
    pub fn observe_fits(&mut self, all_fit: bool) {
        self.fits_u16 &= all_fit;
    }

    /// The value type that represents every observed value exactly (or as upstream would).
    pub fn value_type(&self) -> ValueType {
        if self.fits_u16 {
            ValueType::UInt16
        } else {
            ValueType::Float32
        }
    }
}

/// Whether storing `v` as float32 (SLAF's wide value type) changes it: float64 precision,
/// integers above 2^24, magnitudes beyond float32's range. NaN stays NaN.
pub fn changes_in_f32(v: f64) -> bool {
    !v.is_nan() && (v as f32) as f64 != v
}

/// Say once per input and object how many values float32 changes: never silent.
pub fn warn_narrowed(path: &std::path::Path, object: &str, stored: &str, values: u64) {
    if values > 0 {
        tracing::warn!(
            event = "input.narrowed",
            input = %path.display(),
            object = %object,
            stored = %stored,
            values,
            "{}: {object}: {values} {stored} values change when stored as float32 (SLAF stores uint16 or float32: float64 precision and integers above 2^24 are rounded)",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::ValueType;

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
}
