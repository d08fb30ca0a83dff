//! iBOT block-wise patch masking with DINOv2's semantics (`dinov2/data/masking.py` and
//! `collate_data_and_cast`).

use rand::Rng;

use crate::{Error, Result};

/// DINOv2's `MaskingGenerator`: repeatedly drops rectangular blocks of at least
/// `min_num_patches` patches, aspect ratio log-uniform in `[min_aspect, 1/min_aspect]`, until
/// the requested number of patches is masked (or ten tries in a row add nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskingGenerator {
    /// Patch grid rows.
    pub height: usize,
    /// Patch grid columns.
    pub width: usize,
    /// Smallest block, in patches (4).
    pub min_num_patches: f64,
    /// Largest block, in patches (DINOv2: half the patches).
    pub max_num_patches: f64,
    /// `(ln min_aspect, ln max_aspect)`.
    log_aspect: (f64, f64),
}

impl MaskingGenerator {
    /// DINOv2's training configuration for a `grid × grid` patch grid: min 4 patches, aspect
    /// 0.3 to 1/0.3, at most half the patches per block.
    pub fn dinov2(grid: usize) -> Self {
        Self::new(grid, grid, 4.0, 0.5 * (grid * grid) as f64, 0.3)
    }

    /// A generator with explicit limits; `max_aspect` is `1 / min_aspect`.
    pub fn new(
        height: usize,
        width: usize,
        min_num_patches: f64,
        max_num_patches: f64,
        min_aspect: f64,
    ) -> Self {
        Self {
            height,
            width,
            min_num_patches,
            max_num_patches,
            log_aspect: (min_aspect.ln(), (1.0 / min_aspect).ln()),
        }
    }

    fn block<R: Rng>(&self, mask: &mut [bool], max_mask_patches: f64, rng: &mut R) -> usize {
        let mut delta = 0;
        for _ in 0..10 {
            // Python's uniform(a, b) draws between a and b whichever is larger
            let (lo, hi) = (
                self.min_num_patches.min(max_mask_patches),
                self.min_num_patches.max(max_mask_patches),
            );
            let target_area = if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            };
            let aspect = rng
                .random_range(self.log_aspect.0..=self.log_aspect.1)
                .exp();
            let h = (target_area * aspect).sqrt().round() as usize;
            let w = (target_area / aspect).sqrt().round() as usize;
            if w < self.width && h < self.height {
                let top = rng.random_range(0..=self.height - h);
                let left = rng.random_range(0..=self.width - w);
                let masked: usize = (top..top + h)
                    .map(|i| {
                        mask[i * self.width + left..i * self.width + left + w]
                            .iter()
                            .filter(|&&m| m)
                            .count()
                    })
                    .sum();
                let fresh = h * w - masked;
                if fresh > 0 && fresh as f64 <= max_mask_patches {
                    for i in top..top + h {
                        for m in &mut mask[i * self.width + left..i * self.width + left + w] {
                            if !*m {
                                *m = true;
                                delta += 1;
                            }
                        }
                    }
                }
                if delta > 0 {
                    break;
                }
            }
        }
        delta
    }

    /// A row-major `height × width` mask with about `num_masking_patches` patches set.
    pub fn generate<R: Rng>(&self, num_masking_patches: usize, rng: &mut R) -> Vec<bool> {
        let mut mask = vec![false; self.height * self.width];
        let mut count = 0;
        while count < num_masking_patches {
            let max_patches = ((num_masking_patches - count) as f64).min(self.max_num_patches);
            let delta = self.block(&mut mask, max_patches, rng);
            if delta == 0 {
                break;
            }
            count += delta;
        }
        mask
    }
}

/// Masks for a batch of `n_crops` global crops, as DINOv2's collate builds them: the first
/// `int(n_crops * mask_probability)` masks get ratios drawn uniformly inside consecutive
/// intervals of `linspace(ratio_min, ratio_max, n_masked + 1)`; the rest are empty; the list
/// is shuffled. Returns the masks and the `upperbound` (sum of `int(N * prob_max)`).
pub fn ibot_masks<R: Rng>(
    generator: &MaskingGenerator,
    n_crops: usize,
    mask_probability: f64,
    (ratio_min, ratio_max): (f64, f64),
    rng: &mut R,
) -> Result<(Vec<Vec<bool>>, usize)> {
    let ratios_ok = 0.0 <= ratio_min && ratio_min <= ratio_max && ratio_max <= 1.0;
    if !(0.0..=1.0).contains(&mask_probability) || !ratios_ok {
        return Err(Error::Invalid(format!(
            "mask probability {mask_probability}, ratio range ({ratio_min}, {ratio_max})"
        )));
    }
    let n_tokens = (generator.height * generator.width) as f64;
    let n_masked = (n_crops as f64 * mask_probability) as usize;
    let probs: Vec<f64> = (0..=n_masked)
        .map(|i| ratio_min + (ratio_max - ratio_min) * i as f64 / n_masked.max(1) as f64)
        .collect();
    let mut masks = Vec::with_capacity(n_crops);
    let mut upperbound = 0;
    for i in 0..n_masked {
        let (lo, hi) = (probs[i], probs[i + 1]);
        let ratio = if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        };
        masks.push(generator.generate((n_tokens * ratio) as usize, rng));
        upperbound += (n_tokens * hi) as usize;
    }
    for _ in n_masked..n_crops {
        masks.push(vec![false; generator.height * generator.width]);
    }
    // Fisher–Yates, as random.shuffle
    for i in (1..masks.len()).rev() {
        let j = rng.random_range(0..=i);
        masks.swap(i, j);
    }
    Ok((masks, upperbound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn masks_respect_counts_and_are_seeded() {
        let g = MaskingGenerator::dinov2(16);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for target in [0usize, 10, 40, 128] {
            let m = g.generate(target, &mut rng);
            let n = m.iter().filter(|&&x| x).count();
            assert!(n <= target, "{n} > {target}");
            if target > 0 {
                assert!(n >= 4, "at least one block: {n}");
            }
        }
        let a = g.generate(60, &mut ChaCha8Rng::seed_from_u64(5));
        let b = g.generate(60, &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(a, b);
    }

    #[test]
    fn half_the_crops_are_masked_with_spread_ratios() {
        let g = MaskingGenerator::dinov2(37);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (masks, upper) = ibot_masks(&g, 8, 0.5, (0.1, 0.5), &mut rng).unwrap();
        assert_eq!(masks.len(), 8);
        let counts: Vec<usize> = masks
            .iter()
            .map(|m| m.iter().filter(|&&x| x).count())
            .collect();
        assert_eq!(counts.iter().filter(|&&c| c == 0).count(), 4, "{counts:?}");
        let total: usize = counts.iter().sum();
        assert!(total <= upper && total > 0, "{total} vs {upper}");
        let n = 37.0 * 37.0;
        assert_eq!(
            upper,
            [0.2, 0.3, 0.4, 0.5]
                .iter()
                .map(|p| (n * p) as usize)
                .sum::<usize>()
        );
        assert!(ibot_masks(&g, 2, 1.5, (0.1, 0.5), &mut rng).is_err());
    }
}
