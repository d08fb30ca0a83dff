//! Dice and IoU per class on binary masks, per image and pooled over images.
//!
//! For one image and class, with prediction mask `A` and target mask `B`:
//! `Dice = 2|A∩B| / (|A| + |B|)`, `IoU = |A∩B| / |A∪B|`.
//! Empty-mask convention: when both masks are empty the class is absent and correctly
//! predicted absent, and both scores are **1.0** (MONAI's `ignore_empty=False` and the
//! common nnU-Net reporting convention); a non-empty mask against an empty one scores 0.
//!
//! Two aggregates over images, both per class:
//! - `mean`: the mean of the per-image scores (each image weighs the same; empty/empty
//!   images count as 1.0);
//! - `global`: the score of the pooled counts, `2 Σ|A∩B| / (Σ|A| + Σ|B|)` (each pixel
//!   weighs the same; 1.0 if every mask of the class is empty).
//!
//! Hausdorff-95 per mask pair: [`crate::hausdorff::hausdorff95`].

use crate::error::{check_len, MetricsError, Result};

/// Pixel counts of one (image, class) pair or their sum over images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overlap {
    /// `|A ∩ B|`.
    pub intersection: u64,
    /// `|A|` (predicted pixels).
    pub predicted: u64,
    /// `|B|` (target pixels).
    pub target: u64,
}

impl Overlap {
    /// Counts of two masks of equal length.
    pub fn of_masks(predicted: &[bool], target: &[bool]) -> Result<Self> {
        check_len("predicted vs target mask", predicted.len(), target.len())?;
        let mut o = Self::default();
        for (&p, &t) in predicted.iter().zip(target) {
            o.intersection += u64::from(p && t);
            o.predicted += u64::from(p);
            o.target += u64::from(t);
        }
        Ok(o)
    }

    /// Dice with the empty/empty = 1.0 convention.
    pub fn dice(&self) -> f64 {
        let den = self.predicted + self.target;
        if den == 0 {
            1.0
        } else {
            2.0 * self.intersection as f64 / den as f64
        }
    }

    /// IoU with the empty/empty = 1.0 convention.
    pub fn iou(&self) -> f64 {
        let union = self.predicted + self.target - self.intersection;
        if union == 0 {
            1.0
        } else {
            self.intersection as f64 / union as f64
        }
    }

    fn add(&mut self, o: Overlap) {
        self.intersection += o.intersection;
        self.predicted += o.predicted;
        self.target += o.target;
    }
}

/// Dice of two binary masks (empty/empty = 1.0).
pub fn dice(predicted: &[bool], target: &[bool]) -> Result<f64> {
    Overlap::of_masks(predicted, target).map(|o| o.dice())
}

/// IoU (Jaccard) of two binary masks (empty/empty = 1.0).
pub fn iou(predicted: &[bool], target: &[bool]) -> Result<f64> {
    Overlap::of_masks(predicted, target).map(|o| o.iou())
}

/// Per-class scores over the images seen.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationScores {
    /// Mean over images of the per-image Dice, per class.
    pub dice_mean: Vec<f64>,
    /// Mean over images of the per-image IoU, per class.
    pub iou_mean: Vec<f64>,
    /// Dice of the pooled counts, per class.
    pub dice_global: Vec<f64>,
    /// IoU of the pooled counts, per class.
    pub iou_global: Vec<f64>,
    /// Number of images.
    pub n_images: usize,
}

/// Accumulates per-class overlap over images (`update` per image or batch).
#[derive(Debug, Clone)]
pub struct SegmentationState {
    n_classes: usize,
    dice_sum: Vec<f64>,
    iou_sum: Vec<f64>,
    pooled: Vec<Overlap>,
    n_images: usize,
}

impl SegmentationState {
    /// An empty state for `n_classes` classes.
    pub fn new(n_classes: usize) -> Result<Self> {
        if n_classes == 0 {
            return Err(MetricsError::InvalidArgument(
                "n_classes must be > 0".into(),
            ));
        }
        Ok(Self {
            n_classes,
            dice_sum: vec![0.0; n_classes],
            iou_sum: vec![0.0; n_classes],
            pooled: vec![Overlap::default(); n_classes],
            n_images: 0,
        })
    }

    /// Adds a batch of binary masks laid out `[batch, n_classes, pixels]` (row-major), the
    /// same `pixels` for prediction and target.
    pub fn update_masks(
        &mut self,
        predicted: &[bool],
        target: &[bool],
        pixels: usize,
    ) -> Result<()> {
        check_len("predicted vs target masks", predicted.len(), target.len())?;
        let per_image = self.n_classes * pixels;
        if pixels == 0 || predicted.len() % per_image != 0 {
            return Err(MetricsError::InvalidArgument(format!(
                "{} mask entries is not a multiple of n_classes * pixels = {} * {pixels}",
                predicted.len(),
                self.n_classes
            )));
        }
        for (p_img, t_img) in predicted.chunks(per_image).zip(target.chunks(per_image)) {
            for (c, (p, t)) in p_img.chunks(pixels).zip(t_img.chunks(pixels)).enumerate() {
                self.add(c, Overlap::of_masks(p, t)?);
            }
            self.n_images += 1;
        }
        Ok(())
    }

    /// Adds a batch of class-index maps `[batch, pixels]`; class `c`'s mask is `map == c`.
    pub fn update_label_maps(
        &mut self,
        predicted: &[u32],
        target: &[u32],
        pixels: usize,
    ) -> Result<()> {
        check_len(
            "predicted vs target label maps",
            predicted.len(),
            target.len(),
        )?;
        if pixels == 0 || predicted.len() % pixels != 0 {
            return Err(MetricsError::InvalidArgument(format!(
                "{} label-map entries is not a multiple of pixels = {pixels}",
                predicted.len()
            )));
        }
        if let Some(&c) = predicted
            .iter()
            .chain(target)
            .find(|&&c| c as usize >= self.n_classes)
        {
            return Err(MetricsError::InvalidArgument(format!(
                "class {c} in a label map is >= n_classes = {}",
                self.n_classes
            )));
        }
        for (p, t) in predicted.chunks(pixels).zip(target.chunks(pixels)) {
            let mut o = vec![Overlap::default(); self.n_classes];
            for (&pc, &tc) in p.iter().zip(t) {
                o[pc as usize].predicted += 1;
                o[tc as usize].target += 1;
                if pc == tc {
                    o[pc as usize].intersection += 1;
                }
            }
            for (c, o) in o.into_iter().enumerate() {
                self.add(c, o);
            }
            self.n_images += 1;
        }
        Ok(())
    }

    fn add(&mut self, class: usize, o: Overlap) {
        self.dice_sum[class] += o.dice();
        self.iou_sum[class] += o.iou();
        self.pooled[class].add(o);
    }

    /// The scores; errors when no image was added.
    pub fn compute(&self) -> Result<SegmentationScores> {
        if self.n_images == 0 {
            return Err(MetricsError::Empty {
                metric: "SegmentationState",
            });
        }
        let n = self.n_images as f64;
        Ok(SegmentationScores {
            dice_mean: self.dice_sum.iter().map(|s| s / n).collect(),
            iou_mean: self.iou_sum.iter().map(|s| s / n).collect(),
            dice_global: self.pooled.iter().map(Overlap::dice).collect(),
            iou_global: self.pooled.iter().map(Overlap::iou).collect(),
            n_images: self.n_images,
        })
    }
}
