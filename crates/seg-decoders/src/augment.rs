//! Paired augmentation: the same random geometric transform applied to an image batch and
//! its mask batch.

use candle_core::{Tensor, D};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::resize::{resize_bilinear, AlignCorners};
use crate::{Error, Result};

/// Random resized crop (torchvision's `RandomResizedCrop` sampling) and optional
/// horizontal flip, drawn per sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedAugment {
    /// Range of the crop's area as a fraction of the image (torchvision: 0.08–1; a gentler
    /// 0.5–1 keeps whole organs in view).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip (0 for chest X-rays when left/right matters).
    pub hflip: f64,
}

impl Default for PairedAugment {
    fn default() -> Self {
        Self {
            scale: (0.5, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.0,
        }
    }
}

/// `(top, left, height, width)` of a crop, as torchvision's `RandomResizedCrop.get_params`
/// draws it: ten tries of area and log-ratio, then a centre crop clamped to the ratio range.
pub fn sample_crop(
    h: usize,
    w: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut dyn rand::RngCore,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = (rng.random_range(lr0..=lr1)).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return (top, left, ch, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        ((w as f64 / ratio.0).round() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, (h as f64 * ratio.1).round() as usize)
    } else {
        (h, w)
    };
    let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

fn flip_w(x: &Tensor) -> Result<Tensor> {
    let w = x.dim(D::Minus1)?;
    let idx: Vec<u32> = (0..w as u32).rev().collect();
    let idx = Tensor::from_vec(idx, w, x.device())?;
    Ok(x.index_select(&idx, 3)?)
}

impl PairedAugment {
    /// Transforms `images` `[B, C, H, W]` and `masks` `[B, K, H, W]` identically, per sample,
    /// keeping their size: crop, resize back (bilinear for images; bilinear then a 0.5
    /// threshold for masks, so they stay binary), flip.
    pub fn apply(
        &self,
        images: &Tensor,
        masks: &Tensor,
        rng: &mut dyn rand::RngCore,
    ) -> Result<(Tensor, Tensor)> {
        let (b, _, h, w) = images
            .dims4()
            .map_err(|_| Error::bad_input("images", "[B, C, H, W]", images.dims()))?;
        match masks.dims() {
            [mb, _, mh, mw] if (*mb, *mh, *mw) == (b, h, w) => {}
            d => {
                return Err(Error::bad_input(
                    "masks",
                    format!("[{b}, K, {h}, {w}] like the images"),
                    d,
                ))
            }
        }
        let mut outs_i = Vec::with_capacity(b);
        let mut outs_m = Vec::with_capacity(b);
        for i in 0..b {
            let (top, left, ch, cw) = sample_crop(h, w, self.scale, self.ratio, rng);
            let crop = |x: &Tensor| -> Result<Tensor> {
                let x = x.narrow(0, i, 1)?.narrow(2, top, ch)?.narrow(3, left, cw)?;
                resize_bilinear(&x.contiguous()?, (h, w), AlignCorners::False)
            };
            let mut img = crop(images)?;
            let mut mask = crop(&masks.to_dtype(images.dtype())?)?
                .ge(0.5)?
                .to_dtype(masks.dtype())?;
            if rng.random::<f64>() < self.hflip {
                img = flip_w(&img)?;
                mask = flip_w(&mask)?;
            }
            outs_i.push(img);
            outs_m.push(mask);
        }
        Ok((Tensor::cat(&outs_i, 0)?, Tensor::cat(&outs_m, 0)?))
    }
}
