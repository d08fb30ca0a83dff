use serde::{Deserialize, Serialize};

/// Resampling filter used when resizing, named as Pillow names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Resample {
    /// Pillow `BILINEAR` (2).
    Bilinear,
    /// Pillow `BICUBIC` (3), the cubic with a = -0.5.
    Bicubic,
}

/// The preprocessing an encoder expects, in the terms of a Hugging Face image processor:
/// resize the shortest edge, centre-crop, rescale to [0, 1], normalise per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Target of the shortest edge before cropping (`None`: resize straight to the crop).
    pub shortest_edge: Option<usize>,
    /// `(height, width)` of the centre crop, which is the encoder's input size.
    pub crop: (usize, usize),
    /// Resampling filter.
    pub resample: Resample,
    /// Multiplier that maps stored 8-bit values to [0, 1] (1/255).
    pub rescale_factor: f64,
    /// Per-channel mean subtracted after rescaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// ImageNet statistics, as DINOv2's `BitImageProcessor` preset uses them at 224.
    pub fn imagenet(size: usize) -> Self {
        Self {
            shortest_edge: Some(size * 256 / 224),
            crop: (size, size),
            resample: Resample::Bicubic,
            rescale_factor: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}
