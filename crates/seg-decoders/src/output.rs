//! Writers for predicted masks and overlay images a person can look at.

use std::path::Path;

use candle_core::{DType, Tensor};
use image::{GrayImage, Luma, Rgb, RgbImage};

use crate::{Error, Result};

/// Colours of the classes in overlays (cycled).
pub const PALETTE: [[u8; 3]; 6] = [
    [255, 64, 64],
    [64, 200, 255],
    [80, 255, 80],
    [255, 200, 0],
    [220, 80, 255],
    [255, 140, 40],
];

fn plane(t: &Tensor, name: &str) -> Result<(usize, usize, Vec<f32>)> {
    let t = match t.rank() {
        2 => t.clone(),
        3 if t.dim(0)? == 1 => t.squeeze(0)?,
        _ => return Err(Error::bad_input(name, "[H, W] or [1, H, W]", t.dims())),
    };
    let (h, w) = t.dims2()?;
    Ok((h, w, t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
}

fn save(img: impl Into<image::DynamicImage>, path: &Path) -> Result<()> {
    img.into().save(path).map_err(|error| Error::Image {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes a binary mask `[H, W]` (values > 0.5 are foreground) as an 8-bit PNG of 0/255.
pub fn write_mask_png(mask: &Tensor, path: &Path) -> Result<()> {
    let (h, w, v) = plane(mask, "mask")?;
    let img = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        Luma([if v[y as usize * w + x as usize] > 0.5 {
            255
        } else {
            0
        }])
    });
    save(img, path)
}

/// Writes `image` (`[H, W]`, `[1, H, W]` or `[3, H, W]`; shown in gray after min–max
/// scaling, so preprocessed pixels work) with every mask of `masks` (`[K, H, W]`) drawn as a
/// translucent fill (`alpha`) and an opaque one-pixel contour in its palette colour.
pub fn write_overlay_png(image: &Tensor, masks: &Tensor, alpha: f32, path: &Path) -> Result<()> {
    let gray = match image.rank() {
        3 if image.dim(0)? == 3 => image.mean(0)?,
        _ => image.clone(),
    };
    let (h, w, px) = plane(&gray, "image")?;
    let (lo, hi) = px
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let g = ((px[y as usize * w + x as usize] - lo) / span * 255.0) as u8;
        Rgb([g, g, g])
    });
    let (k, mh, mw) = masks
        .dims3()
        .map_err(|_| Error::bad_input("masks", format!("[K, {h}, {w}]"), masks.dims()))?;
    if (mh, mw) != (h, w) {
        return Err(Error::bad_input(
            "masks",
            format!("[K, {h}, {w}]"),
            masks.dims(),
        ));
    }
    let all: Vec<f32> = masks.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    for c in 0..k {
        let m = &all[c * h * w..(c + 1) * h * w];
        let on = |y: isize, x: isize| {
            y >= 0
                && x >= 0
                && (y as usize) < h
                && (x as usize) < w
                && m[y as usize * w + x as usize] > 0.5
        };
        let colour = PALETTE[c % PALETTE.len()];
        for y in 0..h as isize {
            for x in 0..w as isize {
                if !on(y, x) {
                    continue;
                }
                let edge = !(on(y - 1, x) && on(y + 1, x) && on(y, x - 1) && on(y, x + 1));
                let a = if edge { 1.0 } else { alpha };
                let p = img.get_pixel_mut(x as u32, y as u32);
                for (ch, &col) in p.0.iter_mut().zip(&colour) {
                    *ch = (*ch as f32 * (1.0 - a) + col as f32 * a).round() as u8;
                }
            }
        }
    }
    save(img, path)
}
