//! The synthetic classification data set of training and inference tasks, regenerated
//! on every device from the seed: nothing is transferred, and any shard (range of work
//! items) can be built on its own.
//!
//! With `F` features, `C` classes and `S` samples:
//! - Class `c` has mean `μ_c`, with `μ_cf = 2·u − 1` for `u =` [`seed::unit_f32`] of word
//!   `c·F + f` of [`seed::STREAM_CLASS_MEANS`].
//! - Work item `k` is sample `s = k mod S` in epoch `k div S`. Its label is word `s` of
//!   [`seed::STREAM_LABELS`] modulo `C`; its features are `x_f = μ_yf + ε_f`, where
//!   `ε_f` is the sum of the four 16-bit fields of word `k·F + f` (wrapping) of
//!   [`seed::STREAM_NOISE`], each scaled to `[0, 1)`, minus 2: roughly normal, mean 0,
//!   variance 1/3, every step exact in f32. Each epoch thus sees the same samples
//!   with fresh noise (augmentation), and the classes are separable enough to learn.

use super::TrainingError;
use crate::seed;
use std::ops::Range;

/// Most features a model may have.
pub const MAX_FEATURES: usize = 4096;
/// Fewest classes a model may have.
pub const MIN_CLASSES: usize = 2;
/// Most classes a model may have.
pub const MAX_CLASSES: usize = 1024;
/// Variance of the feature noise `ε`: four uniforms on `[0, 1)`, each of variance 1/12.
pub const NOISE_VARIANCE: f32 = 1.0 / 3.0;

/// `2⁻¹⁶`: scale of one 16-bit noise field.
const NOISE_FIELD_STEP: f32 = 1.0 / 65_536.0;

/// Checks a model shape against the limits above.
pub(crate) fn check_shape(features: usize, classes: usize) -> Result<(), TrainingError> {
    if !(1..=MAX_FEATURES).contains(&features) {
        return Err(TrainingError::out_of_range(
            "features", features, "1..=4096",
        ));
    }
    if !(MIN_CLASSES..=MAX_CLASSES).contains(&classes) {
        return Err(TrainingError::out_of_range("classes", classes, "2..=1024"));
    }
    Ok(())
}

/// A task's data set: its shape, size and seed, and the class means derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSet {
    features: usize,
    classes: usize,
    samples: u64,
    seed: u64,
    means: Vec<f32>,
}

impl DataSet {
    /// The data set of `samples` samples with `features` features in `classes` classes.
    pub fn new(
        features: usize,
        classes: usize,
        samples: u64,
        seed: u64,
    ) -> Result<Self, TrainingError> {
        check_shape(features, classes)?;
        if samples == 0 {
            return Err(TrainingError::out_of_range("samples", 0, "1.."));
        }
        let key = seed::stream_key(seed, seed::STREAM_CLASS_MEANS);
        let means = (0..features * classes)
            .map(|i| 2.0 * seed::unit_f32(seed::word(key, i as u64)) - 1.0)
            .collect();
        Ok(Self {
            features,
            classes,
            samples,
            seed,
            means,
        })
    }

    /// Features per sample.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Distinct samples (work items repeat them once per epoch).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The class means, `classes × features`, row-major.
    pub fn means(&self) -> &[f32] {
        &self.means
    }

    /// The label of work item `item`.
    pub fn label(&self, item: u64) -> u32 {
        let key = seed::stream_key(self.seed, seed::STREAM_LABELS);
        // classes <= MAX_CLASSES, so the remainder fits in u32.
        (seed::word(key, item % self.samples) % self.classes as u64) as u32
    }

    /// Bytes a shard of `len` items occupies.
    pub fn shard_bytes(&self, len: u64) -> u128 {
        u128::from(len) * (self.features as u128 + 1) * 4
    }

    /// The work items `items` as a shard. Refuses an empty range and one whose shard
    /// would exceed [`crate::MAX_ALLOC_BYTES`] (naming `items`).
    pub fn shard(&self, items: Range<u64>) -> Result<Shard, TrainingError> {
        let len = items.end.saturating_sub(items.start);
        if len == 0 {
            return Err(TrainingError::out_of_range("items", 0, "1.."));
        }
        let bytes = self.shard_bytes(len);
        if bytes > u128::from(crate::MAX_ALLOC_BYTES) {
            return Err(TrainingError::TooLarge {
                field: "items",
                bytes,
            });
        }
        let f = self.features;
        let noise = seed::stream_key(self.seed, seed::STREAM_NOISE);
        let mut x = Vec::with_capacity(len as usize * f);
        let mut y = Vec::with_capacity(len as usize);
        for k in items.clone() {
            let label = self.label(k);
            let mean = &self.means[label as usize * f..][..f];
            let base = k.wrapping_mul(f as u64);
            x.extend(mean.iter().enumerate().map(|(j, m)| {
                let w = seed::word(noise, base.wrapping_add(j as u64));
                let fields = (0..4).map(|i| ((w >> (16 * i)) & 0xFFFF) as f32 * NOISE_FIELD_STEP);
                // Sums of 16-bit fractions below 4 need 18 bits: exact in f32.
                let eps = fields.fold(0.0, |a, v| a + v) - 2.0;
                m + eps
            }));
            y.push(label);
        }
        Ok(Shard {
            features: f,
            classes: self.classes,
            start: items.start,
            x,
            y,
        })
    }
}

/// A materialized range of work items: features (`len × features`, row-major) and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    pub(crate) features: usize,
    pub(crate) classes: usize,
    pub(crate) start: u64,
    pub(crate) x: Vec<f32>,
    pub(crate) y: Vec<u32>,
}

impl Shard {
    /// Samples in the shard.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the shard has no samples (never, for a shard built by [`DataSet::shard`]).
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The first work item.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Features per sample.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Classes the labels range over.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All features, row-major.
    pub fn x(&self) -> &[f32] {
        &self.x
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.y
    }

    /// Sample `i`'s features and label.
    pub fn sample(&self, i: usize) -> Option<(&[f32], u32)> {
        let label = *self.y.get(i)?;
        Some((&self.x[i * self.features..][..self.features], label))
    }

    /// The largest `|x|` in the shard, for the tolerance of a replay on other hardware.
    pub fn max_abs_feature(&self) -> f32 {
        self.x.iter().fold(0.0, |a, v| a.max(v.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_equals_the_same_items_cut_from_a_larger_shard() {
        let d = DataSet::new(5, 3, 40, 11).unwrap();
        let all = d.shard(0..100).unwrap();
        let part = d.shard(37..52).unwrap();
        assert_eq!(part.x(), &all.x()[37 * 5..52 * 5]);
        assert_eq!(part.labels(), &all.labels()[37..52]);
        assert_eq!(part.start(), 37);
    }

    #[test]
    fn epochs_repeat_labels_with_fresh_noise() {
        let d = DataSet::new(4, 3, 10, 2).unwrap();
        let s = d.shard(0..20).unwrap();
        assert_eq!(&s.labels()[..10], &s.labels()[10..]);
        assert_ne!(&s.x()[..40], &s.x()[40..]);
    }

    #[test]
    fn noise_is_centred_with_the_documented_variance() {
        let d = DataSet::new(8, 2, 4000, 5).unwrap();
        let s = d.shard(0..4000).unwrap();
        let (mut sum, mut sq) = (0.0f64, 0.0f64);
        for i in 0..s.len() {
            let (x, y) = s.sample(i).unwrap();
            for (v, m) in x.iter().zip(&d.means()[y as usize * 8..]) {
                let e = f64::from(v - m);
                sum += e;
                sq += e * e;
            }
        }
        let n = (s.len() * 8) as f64;
        assert!((sum / n).abs() < 0.02, "mean {}", sum / n);
        assert!((sq / n - 1.0 / 3.0).abs() < 0.02, "variance {}", sq / n);
        assert!(s.max_abs_feature() < 3.0);
    }

    #[test]
    fn every_class_occurs() {
        let d = DataSet::new(2, 7, 500, 8).unwrap();
        let s = d.shard(0..500).unwrap();
        for c in 0..7 {
            assert!(s.labels().contains(&c), "class {c}");
        }
    }

    #[test]
    fn bad_shapes_and_sizes_are_errors_naming_the_field() {
        let field = |r: Result<DataSet, TrainingError>| r.unwrap_err().field();
        assert_eq!(field(DataSet::new(0, 3, 1, 0)), "features");
        assert_eq!(field(DataSet::new(4097, 3, 1, 0)), "features");
        assert_eq!(field(DataSet::new(3, 1, 1, 0)), "classes");
        assert_eq!(field(DataSet::new(3, 1025, 1, 0)), "classes");
        assert_eq!(field(DataSet::new(3, 2, 0, 0)), "samples");
        let d = DataSet::new(4096, 2, u64::MAX, 0).unwrap();
        assert_eq!(d.shard(5..5).unwrap_err().field(), "items");
        assert!(matches!(
            d.shard(0..1 << 20),
            Err(TrainingError::TooLarge { field: "items", .. })
        ));
    }
}
