//! Which texts of a batch are positives for which image: UniCL's label-equality targets.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result, TextLabel};

/// A multi-label structured annotation: the set of finding indices present in one image.
/// The empty set means "no finding". Two images with equal sets share one combined label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LabelSet(BTreeSet<u32>);

impl LabelSet {
    /// The set of the given finding indices (duplicates and order do not matter).
    pub fn new(findings: impl IntoIterator<Item = u32>) -> Self {
        Self(findings.into_iter().collect())
    }

    /// The set of the indices whose flag is true, e.g. one row of a 0/1 label table.
    pub fn from_flags(flags: &[bool]) -> Self {
        Self::new(
            flags
                .iter()
                .enumerate()
                .filter(|(_, &f)| f)
                .map(|(i, _)| i as u32),
        )
    }

    /// The finding indices in increasing order.
    pub fn findings(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// Whether finding `index` is present.
    pub fn contains(&self, index: u32) -> bool {
        self.0.contains(&index)
    }

    /// Whether no finding is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many findings are present.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Turns label sets into stable combined label ids (in order of first appearance), so that a
/// data pipeline can store one id per image; equal sets always get the same id.
#[derive(Debug, Clone, Default)]
pub struct CombinedLabelIds {
    ids: HashMap<LabelSet, u64>,
}

impl CombinedLabelIds {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The combined id of `set`, assigning the next free id on first sight.
    pub fn id(&mut self, set: &LabelSet) -> u64 {
        let next = self.ids.len() as u64;
        *self.ids.entry(set.clone()).or_insert(next)
    }

    /// How many distinct sets have been seen.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no set has been seen.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What one batch sample is annotated with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(u64),
    Set(LabelSet),
    Statement(u32, bool),
    Report(usize),
}

/// The per-sample grouping of one batch: sample `i`'s text is a positive for image `j` exactly
/// when both carry the same label. Free-text reports get unique labels, so an all-report batch
/// is CLIP's one-to-one pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTargets {
    groups: Vec<usize>,
    n_groups: usize,
}

impl BatchTargets {
    /// Every sample its own label: the CLIP image–text pairing.
    pub fn unique(n: usize) -> Self {
        Self {
            groups: (0..n).collect(),
            n_groups: n,
        }
    }

    /// One label id per sample (e.g. a class id or a [`CombinedLabelIds`] id).
    pub fn from_label_ids(ids: &[u64]) -> Self {
        let mut b = BatchTargetsBuilder::default();
        for &id in ids {
            b.push_label_id(id);
        }
        b.build()
    }

    /// A builder mixing label ids, label sets and reports in one batch.
    pub fn builder() -> BatchTargetsBuilder {
        BatchTargetsBuilder::default()
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Dense group index of every sample (0-based, in order of first appearance).
    pub fn groups(&self) -> &[usize] {
        &self.groups
    }

    /// Number of distinct labels in the batch.
    pub fn n_groups(&self) -> usize {
        self.n_groups
    }

    /// Whether every sample has its own label (then UniCL equals CLIP's InfoNCE).
    pub fn all_unique(&self) -> bool {
        self.n_groups == self.groups.len()
    }

    /// `|P(i)|`: how many texts of the batch are positives for sample `i` (itself included).
    pub fn n_positives(&self, i: usize) -> Option<usize> {
        let g = *self.groups.get(i)?;
        Some(self.groups.iter().filter(|&&h| h == g).count())
    }

    /// The 0/1 target matrix `T_ij = [y_i == y_j]`, `n × n`, symmetric with a unit diagonal.
    pub fn target_matrix(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        self.matrix(dtype, device, |_, _| 1.0)
    }

    /// `T_ij / |P(i)|`: each row sums to one. Because `T` is symmetric, this one matrix serves
    /// both directions (image→text rows and text→image rows).
    pub fn normalized_target_matrix(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let mut counts = vec![0usize; self.n_groups];
        for &g in &self.groups {
            counts[g] += 1;
        }
        self.matrix(dtype, device, |i, _| 1.0 / counts[self.groups[i]] as f64)
    }

    fn matrix(
        &self,
        dtype: DType,
        device: &Device,
        value: impl Fn(usize, usize) -> f64,
    ) -> Result<Tensor> {
        let n = self.groups.len();
        if n == 0 {
            return Err(Error::Targets("empty batch".into()));
        }
        let mut m = vec![0f64; n * n];
        for (i, gi) in self.groups.iter().enumerate() {
            for (j, gj) in self.groups.iter().enumerate() {
                if gi == gj {
                    m[i * n + j] = value(i, j);
                }
            }
        }
        Ok(Tensor::from_vec(m, (n, n), device)?.to_dtype(dtype)?)
    }
}

/// Builds [`BatchTargets`] sample by sample. Label ids, label sets and reports live in separate
/// namespaces: id `3` and the set `{3}` are different labels, and every report is unique.
#[derive(Debug, Clone, Default)]
pub struct BatchTargetsBuilder {
    keys: Vec<Key>,
}

impl BatchTargetsBuilder {
    /// Appends a sample labelled with a (single or combined) label id.
    pub fn push_label_id(&mut self, id: u64) -> &mut Self {
        self.keys.push(Key::Id(id));
        self
    }

    /// Appends a sample labelled with a multi-label set; equal sets become one combined label.
    pub fn push_label_set(&mut self, set: &LabelSet) -> &mut Self {
        self.keys.push(Key::Set(set.clone()));
        self
    }

    /// Appends a sample labelled by what its sampled text says: a whole set (as
    /// [`Self::push_label_set`]) or one finding statement, equal only to the same statement.
    pub fn push_text_label(&mut self, label: &TextLabel) -> &mut Self {
        self.keys.push(match label {
            TextLabel::Set(s) => Key::Set(s.clone()),
            TextLabel::Statement { finding, present } => Key::Statement(*finding, *present),
        });
        self
    }

    /// Appends an image–report pair: a label no other sample shares.
    pub fn push_report(&mut self) -> &mut Self {
        let k = self.keys.len();
        self.keys.push(Key::Report(k));
        self
    }

    /// The targets of the samples pushed so far.
    pub fn build(&self) -> BatchTargets {
        let mut dense: HashMap<&Key, usize> = HashMap::new();
        let groups = self
            .keys
            .iter()
            .map(|k| {
                let next = dense.len();
                *dense.entry(k).or_insert(next)
            })
            .collect();
        BatchTargets {
            groups,
            n_groups: dense.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn groups_follow_label_equality_and_reports_are_unique() {
        let set = LabelSet::new([4, 1]);
        let t = BatchTargets::builder()
            .push_label_id(7)
            .push_report()
            .push_label_set(&set)
            .push_label_id(7)
            .push_label_set(&LabelSet::new([1, 4, 1]))
            .push_report()
            .push_label_set(&LabelSet::new([1]))
            .build();
        assert_eq!(t.groups(), &[0, 1, 2, 0, 2, 3, 4]);
        assert_eq!(t.n_positives(0), Some(2));
        assert_eq!(t.n_positives(1), Some(1));
        assert!(!t.all_unique());
        let m: Vec<Vec<f32>> = t
            .normalized_target_matrix(DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec2()
            .unwrap();
        for row in &m {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(m[0][3], 0.5);
        assert_eq!(m[1][1], 1.0);
    }

    #[test]
    fn combined_ids_are_stable() {
        let mut ids = CombinedLabelIds::new();
        let a = ids.id(&LabelSet::from_flags(&[false, true, true]));
        let b = ids.id(&LabelSet::new([]));
        assert_eq!(ids.id(&LabelSet::new([2, 1])), a);
        assert_ne!(a, b);
        assert_eq!(ids.len(), 2);
        assert!(BatchTargets::unique(3).all_unique());
        assert!(BatchTargets::unique(0)
            .target_matrix(DType::F32, &Device::Cpu)
            .is_err());
    }
}
