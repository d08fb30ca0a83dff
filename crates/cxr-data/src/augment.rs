//! DINOv2/RAD-DINO multi-crop augmentation (`DataAugmentationDINO`) for gray radiographs.
//!
//! Per image: 2 global and `n_local` local random-resized crops (torchvision's
//! `RandomResizedCrop` sampling: area fraction uniform in `scale`, aspect log-uniform in
//! [3/4, 4/3], ten tries then a centre crop), resized with Pillow's bicubic ([`crate::resize`]);
//! optional horizontal flip (off by default: laterality matters on chest X-rays); colour
//! jitter with probability 0.8, of which only brightness and contrast act on gray images
//! (saturation and hue leave R = G = B unchanged, grayscale conversion is a no-op), applied in
//! a random order as torchvision does; Gaussian blur (σ uniform in [0.1, 2]) with
//! probability 1.0 on global crop 1, 0.1 on global crop 2 and 0.5 on local crops; solarisation
//! (`v ≥ 128 → 255 - v`) with probability 0.2 on global crop 2. Then rescale/normalise.
//! Those are [`MultiCropConfig::dinov2`]'s probabilities; each can be changed or set to 0
//! (a probability of 0 draws nothing from the generator).
//!
//! The blur is an exact separable Gaussian (truncated at 3σ) on the 8-bit crop, where Pillow
//! approximates it by repeated box filters; the augmentation follows DINOv2's distribution,
//! not its bit pattern (it is random anyway).
//!
//! Randomness: one ChaCha8 stream per `(seed, epoch, index)` ([`sample_rng`]), so results do
//! not depend on thread count or scheduling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::resize::{resize_u8, Filter};
use crate::{Error, GrayImage, Result};

/// The random generator of one sample in one epoch.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..].copy_from_slice(b"cxr-aug1");
    ChaCha8Rng::from_seed(key)
}

/// Multi-crop settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiCropConfig {
    /// Output side of global crops.
    pub global_size: usize,
    /// Area-fraction range of global crops.
    pub global_scale: (f64, f64),
    /// Number of local crops.
    pub n_local: usize,
    /// Output side of local crops.
    pub local_size: usize,
    /// Area-fraction range of local crops.
    pub local_scale: (f64, f64),
    /// Horizontal flip probability (0 = off).
    pub flip_p: f64,
    /// Brightness and contrast jitter strength (DINOv2: 0.4, 0.4) and its probability (0.8).
    pub jitter: (f64, f64, f64),
    /// Gaussian-blur probability on global crop 1, global crop 2 and each local crop
    /// (DINOv2: 1.0, 0.1, 0.5).
    pub blur_p: [f64; 3],
    /// Solarisation probability on global crop 2 (DINOv2: 0.2; the other crops never).
    pub solarize_p: f64,
    /// Per-channel mean for normalisation.
    pub mean: [f32; 3],
    /// Per-channel std for normalisation.
    pub std: [f32; 3],
}

impl MultiCropConfig {
    /// DINOv2 defaults: global 224 `[0.32, 1]`, 8 local 96 `[0.05, 0.32]`, ImageNet statistics.
    pub fn dinov2() -> Self {
        Self {
            global_size: 224,
            global_scale: (0.32, 1.0),
            n_local: 8,
            local_size: 96,
            local_scale: (0.05, 0.32),
            flip_p: 0.0,
            jitter: (0.4, 0.4, 0.8),
            blur_p: [1.0, 0.1, 0.5],
            solarize_p: 0.2,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// RAD-DINO: global 518, local 196 (scales as DINOv2), RAD-DINO's statistics.
    pub fn rad_dino() -> Self {
        Self {
            global_size: 518,
            local_size: 196,
            mean: [0.5307; 3],
            std: [0.2583; 3],
            ..Self::dinov2()
        }
    }
}

/// One augmented view: `[3, size, size]` normalised values.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    /// Side length.
    pub size: usize,
    /// Channels-first values.
    pub data: Vec<f32>,
}

/// All views of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiCrop {
    /// The two global crops.
    pub global: Vec<Crop>,
    /// The local crops.
    pub local: Vec<Crop>,
}

/// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)`.
pub fn random_resized_crop_params<R: Rng>(
    (h, w): (usize, usize),
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_ratio.0..=log_ratio.1).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let chh = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && chh > 0 && chh <= h {
            let top = rng.random_range(0..=h - chh);
            let left = rng.random_range(0..=w - cw);
            return (top, left, chh, cw);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        (((w as f64) / ratio.0).round() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, ((h as f64) * ratio.1).round() as usize)
    } else {
        (h, w)
    };
    (
        (h - ch.min(h)) / 2,
        (w - cw.min(w)) / 2,
        ch.min(h),
        cw.min(w),
    )
}

struct ViewOps {
    blur_p: f64,
    solarize_p: f64,
}

/// One view; `multi_crop` has checked every probability in `cfg` and `ops` to lie in [0, 1].
fn view<R: Rng>(
    src: &[u8],
    (h, w): (usize, usize),
    size: usize,
    scale: (f64, f64),
    cfg: &MultiCropConfig,
    ops: &ViewOps,
    rng: &mut R,
) -> Result<Crop> {
    let (top, left, ch, cw) = random_resized_crop_params((h, w), scale, (0.75, 4.0 / 3.0), rng);
    let bbox = [
        left as f64,
        top as f64,
        (left + cw) as f64,
        (top + ch) as f64,
    ];
    let mut px = resize_u8(src, (w, h), (size, size), Filter::Bicubic, Some(bbox))?;
    if cfg.flip_p > 0.0 && rng.random_bool(cfg.flip_p) {
        for row in px.chunks_exact_mut(size) {
            row.reverse();
        }
    }
    let (bs, cs, jp) = cfg.jitter;
    if jp > 0.0 && rng.random_bool(jp) {
        let b = rng.random_range((1.0 - bs).max(0.0)..=1.0 + bs);
        let c = rng.random_range((1.0 - cs).max(0.0)..=1.0 + cs);
        let brightness_first = rng.random_bool(0.5);
        let brightness = |px: &mut [u8]| {
            for v in px.iter_mut() {
                *v = (f64::from(*v) * b).round().clamp(0.0, 255.0) as u8;
            }
        };
        let contrast = |px: &mut [u8]| {
            let mean = (px.iter().map(|&v| f64::from(v)).sum::<f64>() / px.len() as f64).round();
            for v in px.iter_mut() {
                *v = (mean + (f64::from(*v) - mean) * c)
                    .round()
                    .clamp(0.0, 255.0) as u8;
            }
        };
        if brightness_first {
            brightness(&mut px);
            contrast(&mut px);
        } else {
            contrast(&mut px);
            brightness(&mut px);
        }
    }
    if ops.blur_p > 0.0 && rng.random_bool(ops.blur_p) {
        let sigma = rng.random_range(0.1..=2.0);
        gaussian_blur(&mut px, size, size, sigma);
    }
    if ops.solarize_p > 0.0 && rng.random_bool(ops.solarize_p) {
        for v in px.iter_mut() {
            if *v >= 128 {
                *v = 255 - *v;
            }
        }
    }
    let n = size * size;
    let mut data = vec![0f32; 3 * n];
    for c in 0..3 {
        for (o, &v) in data[c * n..(c + 1) * n].iter_mut().zip(&px) {
            *o = ((f64::from(v) / 255.0) as f32 - cfg.mean[c]) / cfg.std[c];
        }
    }
    Ok(Crop { size, data })
}

/// Separable Gaussian blur of an 8-bit plane, edges replicated.
fn gaussian_blur(px: &mut [u8], w: usize, h: usize, sigma: f64) {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / s).collect();
    let mut tmp = vec![0f64; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let xx = (x as isize + j as isize - r).clamp(0, w as isize - 1) as usize;
                acc += kv * f64::from(px[y * w + xx]);
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let yy = (y as isize + j as isize - r).clamp(0, h as isize - 1) as usize;
                acc += kv * tmp[yy * w + x];
            }
            px[y * w + x] = acc.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Builds every view of `image` with the generator of its `(seed, epoch, index)`.
pub fn multi_crop<R: Rng>(
    image: &GrayImage,
    cfg: &MultiCropConfig,
    rng: &mut R,
) -> Result<MultiCrop> {
    if cfg.global_size == 0 || cfg.local_size == 0 {
        return Err(Error::Invalid("crop sizes must be positive".into()));
    }
    cxr_core::ranges::probabilities(&[
        ("flip probability", cfg.flip_p),
        ("colour jitter probability", cfg.jitter.2),
        ("global crop 1 blur probability", cfg.blur_p[0]),
        ("global crop 2 blur probability", cfg.blur_p[1]),
        ("local crop blur probability", cfg.blur_p[2]),
        ("solarisation probability", cfg.solarize_p),
    ])
    .map_err(Error::Invalid)?;
    cxr_core::ranges::area_fractions(&[
        ("global crop scale", cfg.global_scale),
        ("local crop scale", cfg.local_scale),
    ])
    .map_err(Error::Invalid)?;
    let (brightness, contrast, _) = cfg.jitter;
    if !(brightness >= 0.0 && contrast >= 0.0 && brightness.is_finite() && contrast.is_finite()) {
        return Err(Error::Invalid(format!(
            "jitter strengths must be finite and ≥ 0, got brightness {brightness}, contrast {contrast}"
        )));
    }
    let src = image.to_u8();
    let hw = (image.height, image.width);
    let g1 = ViewOps {
        blur_p: cfg.blur_p[0],
        solarize_p: 0.0,
    };
    let g2 = ViewOps {
        blur_p: cfg.blur_p[1],
        solarize_p: cfg.solarize_p,
    };
    let loc = ViewOps {
        blur_p: cfg.blur_p[2],
        solarize_p: 0.0,
    };
    let global = vec![
        view(&src, hw, cfg.global_size, cfg.global_scale, cfg, &g1, rng)?,
        view(&src, hw, cfg.global_size, cfg.global_scale, cfg, &g2, rng)?,
    ];
    let local = (0..cfg.n_local)
        .map(|_| view(&src, hw, cfg.local_size, cfg.local_scale, cfg, &loc, rng))
        .collect::<Result<Vec<_>>>()?;
    Ok(MultiCrop { global, local })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_params_stay_inside_and_follow_scale() {
        let mut rng = sample_rng(0, 0, 0);
        for _ in 0..200 {
            let (t, l, h, w) =
                random_resized_crop_params((419, 512), (0.05, 0.32), (0.75, 4.0 / 3.0), &mut rng);
            assert!(t + h <= 419 && l + w <= 512 && h > 0 && w > 0);
            let frac = (h * w) as f64 / (419.0 * 512.0);
            assert!((0.04..=0.34).contains(&frac), "{frac}");
        }
    }

    #[test]
    fn streams_differ_by_index_and_epoch() {
        let a: u64 = sample_rng(1, 0, 0).random();
        assert_eq!(a, sample_rng(1, 0, 0).random::<u64>());
        assert_ne!(a, sample_rng(1, 0, 1).random::<u64>());
        assert_ne!(a, sample_rng(1, 1, 0).random::<u64>());
    }

    fn test_image() -> GrayImage {
        let (w, h) = (40, 30);
        let data = (0..w * h)
            .map(|i| ((i % w) * 7 + (i / w) * 3) as f32 / 400.0)
            .collect();
        GrayImage::new(w, h, data).unwrap()
    }

    fn photometric_off() -> MultiCropConfig {
        MultiCropConfig {
            global_size: 16,
            local_size: 8,
            n_local: 2,
            jitter: (0.4, 0.4, 0.0),
            blur_p: [0.0; 3],
            solarize_p: 0.0,
            ..MultiCropConfig::dinov2()
        }
    }

    /// The crop's normalised values back on the 8-bit scale of channel 0.
    fn levels(crop: &Crop, cfg: &MultiCropConfig) -> Vec<u8> {
        let n = crop.size * crop.size;
        crop.data[..n]
            .iter()
            .map(|v| ((v * cfg.std[0] + cfg.mean[0]) * 255.0).round() as u8)
            .collect()
    }

    #[test]
    fn with_photometric_ops_off_views_are_the_plain_resized_crops() {
        let img = test_image();
        let cfg = photometric_off();
        let got = multi_crop(&img, &cfg, &mut sample_rng(3, 0, 5)).unwrap();
        assert_eq!((got.global.len(), got.local.len()), (2, 2));
        // the same generator, drawing only the crop boxes
        let mut rng = sample_rng(3, 0, 5);
        let src = img.to_u8();
        let sizes = [(16, (0.32, 1.0)); 2]
            .into_iter()
            .chain([(8, (0.05, 0.32)); 2]);
        let views = got.global.iter().chain(&got.local);
        for ((size, scale), crop) in sizes.zip(views) {
            let (t, l, h, w) =
                random_resized_crop_params((30, 40), scale, (0.75, 4.0 / 3.0), &mut rng);
            let bbox = [l as f64, t as f64, (l + w) as f64, (t + h) as f64];
            let want =
                resize_u8(&src, (40, 30), (size, size), Filter::Bicubic, Some(bbox)).unwrap();
            assert_eq!(levels(crop, &cfg), want);
        }
    }

    #[test]
    fn certain_solarisation_inverts_the_bright_half_of_global_crop_2_only() {
        let img = test_image();
        let off = photometric_off();
        let on = MultiCropConfig {
            solarize_p: 1.0,
            ..off.clone()
        };
        let plain = multi_crop(&img, &off, &mut sample_rng(1, 2, 3)).unwrap();
        let solar = multi_crop(&img, &on, &mut sample_rng(1, 2, 3)).unwrap();
        assert_eq!(plain.global[0], solar.global[0]);
        let before = levels(&plain.global[1], &off);
        assert!(
            before.iter().any(|&v| v >= 128),
            "the crop has bright pixels to invert"
        );
        let want: Vec<u8> = before
            .into_iter()
            .map(|v| if v >= 128 { 255 - v } else { v })
            .collect();
        assert_eq!(levels(&solar.global[1], &on), want);
    }

    #[test]
    fn probabilities_outside_the_unit_interval_and_negative_strengths_are_refused() {
        let cfg = MultiCropConfig {
            solarize_p: 1.5,
            ..photometric_off()
        };
        let err = multi_crop(&test_image(), &cfg, &mut sample_rng(0, 0, 0)).unwrap_err();
        assert!(
            err.to_string().contains("solarisation probability 1.5"),
            "{err}"
        );
        let cfg = MultiCropConfig {
            jitter: (-0.4, 0.4, 0.8),
            ..photometric_off()
        };
        let err = multi_crop(&test_image(), &cfg, &mut sample_rng(0, 0, 0)).unwrap_err();
        assert!(err.to_string().contains("brightness -0.4"), "{err}");
        // an empty scale range used to panic in the sampler
        let cfg = MultiCropConfig {
            local_scale: (0.32, 0.05),
            ..photometric_off()
        };
        let err = multi_crop(&test_image(), &cfg, &mut sample_rng(0, 0, 0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument: local crop scale (0.32, 0.05) is not an area-fraction range 0 < \
             min <= max <= 1"
        );
    }

    #[test]
    fn blur_keeps_constant_planes() {
        let mut px = vec![77u8; 100];
        gaussian_blur(&mut px, 10, 10, 1.5);
        assert!(px.iter().all(|&v| v == 77));
    }
}
