//! Multi-crop batches whose content is a pure function of `(seed, step)`.
//!
//! The sample order streams through epochs of a seeded permutation, so the loader position
//! of a checkpoint is just its step; each sample's augmentation comes from its own
//! `(seed, epoch, index)` generator and each batch's iBOT masks from a `(seed, step)`
//! generator. A resumed run therefore sees exactly the batches it would have seen.
//! Which indices an epoch holds is up to an [`IndexSampler`] (default: a seeded permutation
//! of all images), so curation plugs in without the loop knowing.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use cxr_data::augment::{multi_crop, sample_rng, MultiCropConfig};
use cxr_data::masking::{ibot_masks, MaskingGenerator};
use cxr_data::{DecodeOptions, ImageSource, IndexSampler, SeededShuffle};
use dino_loss::DinoV2Config;
use rayon::prelude::*;

use crate::{Error, Result};

/// Marks the generator of the masks apart from the per-sample ones.
const MASK_STREAM: u64 = 0x6962_6f74_6d61_736b;

/// One training batch, crop-major as dinov2's collate builds it.
#[derive(Debug, Clone)]
pub struct MultiCropBatch {
    /// `[2·B, 3, G, G]`: first crop of every image, then the second.
    pub global: Tensor,
    /// `[n_local·B, 3, L, L]`, crop-major; `None` without local crops.
    pub local: Option<Tensor>,
    /// `[2·B, N]` u8 iBOT masks of the global crops (1 = masked).
    pub masks: Tensor,
    /// Dataset indices of the `B` images.
    pub indices: Vec<usize>,
}

/// Images and the multi-crop/masking settings that turn them into batches.
#[derive(Debug, Clone)]
pub struct MultiCropSource {
    images: Arc<dyn ImageSource>,
    crops: MultiCropConfig,
    masking: MaskingGenerator,
    mask_probability: f64,
    mask_ratio: (f64, f64),
    batch_size: usize,
    seed: u64,
    sampler: Arc<dyn IndexSampler>,
}

impl MultiCropSource {
    /// A source over `images` (a `Vec` of files, or a [`cxr_data::ShardIndex`] over tar
    /// shards) with the crops, masks, batch size and seed of `cfg`; crops are normalised with
    /// `mean`/`std` (per channel, after scaling to `[0, 1]`).
    pub fn new(
        images: impl ImageSource + 'static,
        cfg: &DinoV2Config,
        patch_size: usize,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::Invalid("no training images".into()));
        }
        let c = &cfg.crops;
        if patch_size == 0 || c.global_crops_size < patch_size {
            return Err(Error::Invalid(format!(
                "global crops of {} px are smaller than a {patch_size}-px patch",
                c.global_crops_size
            )));
        }
        let crops = MultiCropConfig {
            global_size: c.global_crops_size,
            global_scale: (c.global_crops_scale[0], c.global_crops_scale[1]),
            n_local: c.local_crops_number,
            local_size: c.local_crops_size,
            local_scale: (c.local_crops_scale[0], c.local_crops_scale[1]),
            flip_p: c.horizontal_flip_prob,
            jitter: (c.brightness, c.contrast, c.color_jitter_prob),
            blur_p: c.blur_prob,
            solarize_p: c.solarize_prob,
            mean,
            std,
        };
        let grid = c.global_crops_size / patch_size;
        Ok(Self {
            images: Arc::new(images),
            crops,
            masking: MaskingGenerator::dinov2(grid),
            mask_probability: cfg.ibot.mask_sample_probability,
            mask_ratio: (
                cfg.ibot.mask_ratio_min_max[0],
                cfg.ibot.mask_ratio_min_max[1],
            ),
            batch_size: cfg.train.batch_size_per_gpu,
            seed: cfg.train.seed,
            sampler: Arc::new(SeededShuffle {
                seed: cfg.train.seed,
            }),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True without images (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Images per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The multi-crop settings.
    pub fn crops(&self) -> &MultiCropConfig {
        &self.crops
    }

    /// The same source with epochs drawn by `sampler` (indices into the images given to
    /// [`new`](Self::new)).
    pub fn with_sampler(mut self, sampler: Arc<dyn IndexSampler>) -> Self {
        self.sampler = sampler;
        self
    }

    /// Samples per epoch under the current sampler.
    pub fn epoch_len(&self) -> usize {
        self.sampler.epoch_len(self.images.len()).max(1)
    }

    /// `(epoch, dataset index)` of the samples of `step`.
    pub fn positions(&self, step: u64) -> Vec<(u64, usize)> {
        let n = self.epoch_len() as u64;
        let len = self.images.len();
        let b = self.batch_size as u64;
        let mut cached: Option<(u64, Vec<usize>)> = None;
        (step * b..(step + 1) * b)
            .map(|pos| {
                let epoch = pos / n;
                let order = match &cached {
                    Some((e, o)) if *e == epoch => o,
                    _ => &cached.insert((epoch, self.sampler.indices(epoch, len))).1,
                };
                // a sampler that returns too few indices yields an out-of-range index here,
                // which batch() reports as an error
                let i = order.get((pos % n) as usize).copied().unwrap_or(len);
                (epoch, i)
            })
            .collect()
    }

    /// The batch of `step` (decode and augment in parallel).
    pub fn batch(&self, step: u64, device: &Device) -> Result<MultiCropBatch> {
        let positions = self.positions(step);
        let views = positions
            .par_iter()
            .map(|&(epoch, idx)| -> Result<_> {
                if idx >= self.images.len() {
                    return Err(Error::Invalid(format!(
                        "the sampler gave index {idx} for {} images",
                        self.images.len()
                    )));
                }
                let img = self.images.decode(idx, &DecodeOptions::default())?;
                let mut rng = sample_rng(self.seed, epoch, idx as u64);
                Ok(multi_crop(&img, &self.crops, &mut rng)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let b = views.len();
        let (g, l) = (self.crops.global_size, self.crops.local_size);
        let mut global = Vec::with_capacity(2 * b * 3 * g * g);
        for k in 0..2 {
            for v in &views {
                global.extend_from_slice(&v.global[k].data);
            }
        }
        let global = Tensor::from_vec(global, (2 * b, 3, g, g), device)?;
        let n_local = self.crops.n_local;
        let local = if n_local > 0 {
            let mut local = Vec::with_capacity(n_local * b * 3 * l * l);
            for k in 0..n_local {
                for v in &views {
                    local.extend_from_slice(&v.local[k].data);
                }
            }
            Some(Tensor::from_vec(local, (n_local * b, 3, l, l), device)?)
        } else {
            None
        };
        let mut rng = sample_rng(self.seed ^ MASK_STREAM, step, u64::MAX);
        let (masks, _) = ibot_masks(
            &self.masking,
            2 * b,
            self.mask_probability,
            self.mask_ratio,
            &mut rng,
        )?;
        let n = self.masking.height * self.masking.width;
        let flat: Vec<u8> = masks.iter().flatten().map(|&m| u8::from(m)).collect();
        let masks = Tensor::from_vec(flat, (2 * b, n), device)?;
        Ok(MultiCropBatch {
            global,
            local,
            masks,
            indices: positions.iter().map(|&(_, i)| i).collect(),
        })
    }
}
