use crate::{Error, Result};

/// A single-channel image with intensities in `[0, 1]`, row-major.
///
/// Every decoder produces one: 0 is black (least X-ray attenuation shown dark, i.e. the
/// MONOCHROME2 convention) and 1 is white.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height * width` values in `[0, 1]`, row after row.
    pub data: Vec<f32>,
}

impl GrayImage {
    /// Wraps `data`, checking its length.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Self> {
        if width == 0 || height == 0 || data.len() != width * height {
            return Err(Error::Invalid(format!(
                "a {width}x{height} gray image needs {} values, got {}",
                width * height,
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// An 8-bit image, `v / 255`.
    pub fn from_u8(width: usize, height: usize, data: &[u8]) -> Result<Self> {
        Self::new(
            width,
            height,
            data.iter().map(|&v| f32::from(v) / 255.0).collect(),
        )
    }

    /// The value at `(row, col)`.
    pub fn get(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.width + col]
    }

    /// The 8-bit equivalent, `round(x * 255)` clamped to `0..=255`.
    ///
    /// This is the bridge to pipelines defined on 8-bit images (Pillow, HF image processors):
    /// an 8-bit PNG or JPEG comes back exactly as stored; a DICOM or a 16-bit PNG is quantised
    /// after windowing, as a radiologist's 8-bit export would be.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data.iter().map(|&x| to_u8(x)).collect()
    }

    /// Replicates the gray channel into a channels-first `[3, H, W]` buffer, the layout the
    /// encoders' preprocessing starts from (chest X-rays are gray; RGB encoders see R = G = B).
    pub fn to_rgb_planar(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.data.len() * 3);
        for _ in 0..3 {
            out.extend_from_slice(&self.data);
        }
        out
    }
}

/// `round(x * 255)` (half away from zero) clamped to `0..=255` (NaN maps to 0).
pub fn to_u8(x: f32) -> u8 {
    // Written to vectorise (this runs once per pixel of every decoded image): `f32::round`
    // is a libm call on x86-64 without SSE4.1 and float → int casts saturate element-wise.
    // Adding 2^23 rounds a value in [0, 255] to an integer, ties to even, which the low
    // mantissa bits then hold; exact ties that went down get their 1 back.
    const MAGIC: f32 = 8_388_608.0;
    // not `clamp`, which keeps a NaN: `max` drops it, so NaN maps to 0
    #[allow(clippy::manual_clamp)]
    let v = (x * 255.0).max(0.0).min(255.0);
    let m = v + MAGIC;
    let r = m.to_bits().wrapping_sub(MAGIC.to_bits());
    (r + u32::from(v - (m - MAGIC) == 0.5)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u8_round_trip_is_exact() {
        let bytes: Vec<u8> = (0..=255).collect();
        let img = GrayImage::from_u8(16, 16, &bytes).unwrap();
        assert_eq!(img.to_u8(), bytes);
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(2.0), 255);
        assert_eq!(to_u8(-0.5), 0);
        assert_eq!(to_u8(f32::INFINITY), 255);
        // against the plain definition on a dense sweep, halves included
        for i in -1000..=300_000 {
            let x = i as f32 / 255_000.0;
            let want = (x * 255.0).round().clamp(0.0, 255.0) as u8;
            assert_eq!(to_u8(x), want, "{x}");
            let h = (i as f32 + 0.5) / 255.0;
            assert_eq!(to_u8(h), (h * 255.0).round().clamp(0.0, 255.0) as u8, "{h}");
        }
        assert!(GrayImage::new(2, 2, vec![0.0; 3]).is_err());
    }
}
