//! PNG and JPEG through the `image` crate.

use std::path::Path;

use image::{DynamicImage, ImageFormat};

use crate::{Error, GrayImage, Result};

/// Decodes a PNG or JPEG held in memory to gray `[0, 1]`.
///
/// - 8-bit gray: `v / 255`; 16-bit gray: `v / 65535`.
/// - RGB(A): Pillow's `convert("L")` weights (ITU-R 601-2, `(19595 R + 38470 G + 7471 B + 2^15) >> 16`
///   in 8 bits), so an R = G = B image gives back its channel exactly; alpha is ignored as
///   Pillow ignores it.
pub fn decode_raster(bytes: &[u8], format: ImageFormat, path: &Path) -> Result<GrayImage> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.no_limits();
    let mut limits = image::Limits::default();
    // 1 GiB is far above any radiograph, and stops a forged header from exhausting memory.
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::decode(path, format!("{format:?}: {e}")))?;
    to_gray(img, path)
}

fn to_gray(img: DynamicImage, path: &Path) -> Result<GrayImage> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data: Vec<f32> = match img {
        DynamicImage::ImageLuma8(b) => b.into_raw().iter().map(|&v| f32::from(v) / 255.0).collect(),
        DynamicImage::ImageLumaA8(b) => b
            .into_raw()
            .chunks_exact(2)
            .map(|p| f32::from(p[0]) / 255.0)
            .collect(),
        DynamicImage::ImageLuma16(b) => b
            .into_raw()
            .iter()
            .map(|&v| f32::from(v) / 65535.0)
            .collect(),
        DynamicImage::ImageLumaA16(b) => b
            .into_raw()
            .chunks_exact(2)
            .map(|p| f32::from(p[0]) / 65535.0)
            .collect(),
        DynamicImage::ImageRgb8(b) => b
            .into_raw()
            .chunks_exact(3)
            .map(|p| f32::from(pil_luma(p[0], p[1], p[2])) / 255.0)
            .collect(),
        DynamicImage::ImageRgba8(b) => b
            .into_raw()
            .chunks_exact(4)
            .map(|p| f32::from(pil_luma(p[0], p[1], p[2])) / 255.0)
            .collect(),
        DynamicImage::ImageRgb16(b) => b
            .into_raw()
            .chunks_exact(3)
            .map(|p| luma16(p[0], p[1], p[2]))
            .collect(),
        DynamicImage::ImageRgba16(b) => b
            .into_raw()
            .chunks_exact(4)
            .map(|p| luma16(p[0], p[1], p[2]))
            .collect(),
        other => {
            return Err(Error::unsupported(
                path,
                format!("pixel layout {:?}", other.color()),
            ))
        }
    };
    GrayImage::new(w, h, data).map_err(|e| Error::decode(path, e.to_string()))
}

/// Pillow's RGB → L conversion (`L24` in `Convert.c`).
pub(crate) fn pil_luma(r: u8, g: u8, b: u8) -> u8 {
    let v = u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000;
    (v >> 16) as u8
}

fn luma16(r: u16, g: u16, b: u16) -> f32 {
    ((0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b)) / 65535.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow_on_gray_and_primaries() {
        for v in 0..=255u8 {
            assert_eq!(pil_luma(v, v, v), v);
        }
        // Pillow: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
        assert_eq!(pil_luma(255, 0, 0), 76);
        assert_eq!(pil_luma(0, 255, 0), 150);
        assert_eq!(pil_luma(0, 0, 255), 29);
        assert_eq!(pil_luma(10, 200, 33), 124);
    }
}
