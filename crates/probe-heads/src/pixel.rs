//! A trivial encoder: the mean intensity of each `patch x patch` block. It is the raw-pixel
//! baseline (a low-resolution thumbnail as features) and shows that the probes only need
//! the [`Encoder`] trait.

use candle_core::{Device, Tensor};
use cxr_core::{
    Encoder, FeatureInfo, FeatureRequest, Features, LayerInfo, Preprocessing, Resample,
};

/// Patch-mean "encoder": pooled output is the flattened `grid x grid` thumbnail.
#[derive(Debug, Clone)]
pub struct PatchMeanEncoder {
    /// Input side in pixels.
    pub size: usize,
    /// Patch side in pixels (`size` must be a multiple).
    pub patch: usize,
    device: Device,
}

impl PatchMeanEncoder {
    /// A `size x size` input cut into `patch x patch` blocks, on the CPU.
    pub fn new(size: usize, patch: usize) -> cxr_core::Result<Self> {
        if patch == 0 || size % patch != 0 {
            return Err(cxr_core::Error::BadInput {
                name: "PatchMeanEncoder".into(),
                expected: format!("a size that is a multiple of the patch ({patch})"),
                found: vec![size, patch],
            });
        }
        Ok(Self {
            size,
            patch,
            device: Device::Cpu,
        })
    }
}

impl Encoder for PatchMeanEncoder {
    fn forward_features(&self, pixels: &Tensor, _: &FeatureRequest) -> cxr_core::Result<Features> {
        let (b, _c, h, w) = pixels.dims4()?;
        if h % self.patch != 0 || w % self.patch != 0 {
            return Err(cxr_core::Error::BadInput {
                name: "pixels".into(),
                expected: format!("H and W multiples of {}", self.patch),
                found: vec![h, w],
            });
        }
        let (gh, gw) = (h / self.patch, w / self.patch);
        let gray = pixels.mean(1)?; // [B, H, W]
        let t = gray
            .reshape((b, gh, self.patch, gw, self.patch))?
            .mean(4)?
            .mean(2)?; // [B, gh, gw]
        let pooled = t.reshape((b, gh * gw))?;
        Ok(Features {
            patch_tokens: pooled.unsqueeze(2)?,
            pooled,
            grid: (gh, gw),
            intermediates: Vec::new(),
        })
    }

    fn feature_info(&self) -> FeatureInfo {
        let g = self.size / self.patch;
        FeatureInfo {
            embed_dim: g * g,
            patch_stride: self.patch,
            layers: vec![LayerInfo {
                channels: 1,
                stride: self.patch,
            }],
        }
    }

    fn preprocessing(&self) -> Preprocessing {
        Preprocessing {
            shortest_edge: Some(self.size),
            crop: (self.size, self.size),
            resample: Resample::Bilinear,
            rescale_factor: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
