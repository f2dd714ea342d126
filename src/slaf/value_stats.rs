//! Exact statistics of stored expression values, mergeable across batches, shards and inputs.
//!
//! Accumulated in f64 over every stored value as written (after the cast to the value type),
//! batch by batch, and merged with Chan's parallel formula, so a shard can summarise its own
//! values and a commit can reduce the summaries exactly. Upstream squares uint16 values before
//! widening and gets std wrong (defect B17).
//!
//! anndata stores NaN and ±Inf like any other value, and so do we; but a mean over them is
//! meaningless and JSON cannot hold them. So `min`/`max`/`mean`/`m2` cover the finite values
//! only, and the others are counted by kind: every field stays finite and every receipt and
//! `config.json` valid JSON.

use serde::{Deserialize, Serialize};

/// Count of every value; min, max, mean and sum of squared deviations of the finite ones;
/// counts of NaN, +Inf and −Inf.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ValueStats {
    /// Number of values, finite or not.
    pub count: u64,
    /// Smallest finite value (0 when there are none).
    pub min: f64,
    /// Largest finite value (0 when there are none).
    pub max: f64,
    /// Mean of the finite values.
    pub mean: f64,
    /// Sum of squared deviations of the finite values from their mean.
    pub m2: f64,
    /// NaN values.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nan: u64,
    /// +Inf values.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pos_inf: u64,
    /// −Inf values.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub neg_inf: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Running sums [`ValueStats::of_f32`] keeps per pass (two AVX registers of f64).
const LANES: usize = 8;

impl ValueStats {
    /// Statistics of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        // Welford's update: one pass, exact enough in f64.
        let mut s = ValueStats::default();
        for v in values {
            s.count += 1;
            if !s.count_non_finite(v) {
                s.add_finite(v);
            }
        }
        s
    }

    /// The statistics of a chunk's values: two tight passes (sum, then squared deviations
    /// from the mean) instead of Welford's division per value; as exact for one chunk. Each
    /// pass keeps [`LANES`] running sums, added up in a fixed order at the end: one sum would
    /// chain every addition to the one before (a sixth of the floor's CPU went here), and the
    /// fixed order keeps the result the same bits on every run and every sharding.
    pub fn of_f32(values: &[f32]) -> Self {
        if values.is_empty() {
            return ValueStats::default();
        }
        // min/max in f32 (exact: the values are f32) so the loop vectorises.
        let (mut min, mut max) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
        let mut sums = [0.0f64; LANES];
        let chunks = values.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for i in 0..LANES {
                min[i] = min[i].min(chunk[i]);
                max[i] = max[i].max(chunk[i]);
                sums[i] += chunk[i] as f64;
            }
        }
        for (i, &v) in rest.iter().enumerate() {
            min[i] = min[i].min(v);
            max[i] = max[i].max(v);
            sums[i] += v as f64;
        }
        let sum: f64 = sums.iter().sum();
        let min = min.iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let max = max.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        if !sum.is_finite() {
            // A NaN or an infinity is among them (f32 values cannot overflow an f64 sum).
            return Self::of(values.iter().map(|&v| v as f64));
        }
        let count = values.len() as u64;
        let mean = sum / count as f64;
        let mut squares = [0.0f64; LANES];
        let chunks = values.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for i in 0..LANES {
                let d = chunk[i] as f64 - mean;
                squares[i] += d * d;
            }
        }
        for (i, &v) in rest.iter().enumerate() {
            let d = v as f64 - mean;
            squares[i] += d * d;
        }
        let m2 = squares.iter().sum();
        ValueStats {
            count,
            min: min as f64,
            max: max as f64,
            mean,
            m2,
            ..ValueStats::default()
        }
    }

    /// Values that are finite.
    pub fn finite(&self) -> u64 {
        self.count - self.non_finite()
    }

    /// Values that are NaN or infinite.
    pub fn non_finite(&self) -> u64 {
        self.nan + self.pos_inf + self.neg_inf
    }

    fn count_non_finite(&mut self, v: f64) -> bool {
        if v.is_nan() {
            self.nan += 1;
        } else if v == f64::INFINITY {
            self.pos_inf += 1;
        } else if v == f64::NEG_INFINITY {
            self.neg_inf += 1;
        } else {
            return false;
        }
        true
    }

    fn add_finite(&mut self, v: f64) {
        let n = self.finite();
        if n == 1 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        let delta = v - self.mean;
        self.mean += delta / n as f64;
        self.m2 += delta * (v - self.mean);
    }

    /// Combine with the statistics of a disjoint set of values.
    pub fn merge(&mut self, other: &ValueStats) {
        let (a, b) = (self.finite(), other.finite());
        if b > 0 {
            if a == 0 {
                (self.min, self.max, self.mean, self.m2) =
                    (other.min, other.max, other.mean, other.m2);
            } else {
                let n = (a + b) as f64;
                let delta = other.mean - self.mean;
                self.mean += delta * b as f64 / n;
                self.m2 += other.m2 + delta * delta * a as f64 * b as f64 / n;
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
            }
        }
        self.count += other.count;
        self.nan += other.nan;
        self.pos_inf += other.pos_inf;
        self.neg_inf += other.neg_inf;
    }

    /// Sample standard deviation (n − 1) of the finite values, as upstream reports it; 0 for
    /// fewer than 2.
    pub fn std(&self) -> f64 {
        let n = self.finite();
        if n < 2 {
            0.0
        } else {
            (self.m2 / (n - 1) as f64).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_value_stats_merge_equals_whole() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let whole = ValueStats::of(values.iter().copied());
        let mut merged = ValueStats::of(values[..333].iter().copied());
        merged.merge(&ValueStats::of(values[333..].iter().copied()));
        assert_eq!(merged.count, 1000);
        assert!((merged.mean - whole.mean).abs() < 1e-12);
        assert!((merged.std() - whole.std()).abs() < 1e-12);
        assert_eq!((merged.min, merged.max), (0.0, 50.0));
    }

    #[test]
    fn test_value_stats_std_large_u16() {
        // Upstream squares in uint16 and wraps past 255 (B17); ours must not.
        let s = ValueStats::of([1000.0, 3000.0]);
        assert!((s.std() - 1414.213562373095).abs() < 1e-9);
    }

    #[test]
    fn test_value_stats_non_finite_counted_apart_and_json_safe() {
        let values = [
            1.0f32,
            f32::NAN,
            3.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let s = ValueStats::of_f32(&values);
        assert_eq!((s.count, s.nan, s.pos_inf, s.neg_inf), (6, 2, 1, 1));
        assert_eq!((s.min, s.max, s.mean), (1.0, 3.0, 2.0));
        let mut merged = ValueStats::of_f32(&values[..2]);
        merged.merge(&ValueStats::of_f32(&values[2..]));
        assert_eq!(merged, s);
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("null"), "{text}");
        assert_eq!(serde_json::from_str::<ValueStats>(&text).unwrap(), s);
        let only_nan = ValueStats::of_f32(&[f32::NAN]);
        assert_eq!(
            (only_nan.min, only_nan.max, only_nan.std()),
            (0.0, 0.0, 0.0)
        );
    }
}
