//! The linear head: a 1×1 conv over the final patch tokens, upsampled bilinearly.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use cxr_core::{FeatureInfo, Features};
use serde::{Deserialize, Serialize};

use super::{check_classes, final_map, SegmentationHead};
use crate::layers::{classifier, Mode};
use crate::resize::{resize_bilinear, AlignCorners};
use crate::Result;

/// Settings of [`LinearHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearConfig {
    /// Width `D` of the final patch tokens.
    pub in_channels: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Alignment of the final upsampling.
    pub align_corners: AlignCorners,
}

impl LinearConfig {
    /// A linear head on an encoder's final tokens.
    pub fn for_encoder(info: &FeatureInfo, num_classes: usize) -> Self {
        Self {
            in_channels: info.embed_dim,
            num_classes,
            align_corners: AlignCorners::False,
        }
    }
}

/// `conv_seg` (1×1, `D → classes`, with bias: `D + 1` parameters per class) applied to the
/// final patch tokens, then bilinear upsampling to the input size.
#[derive(Debug, Clone)]
pub struct LinearHead {
    conv_seg: crate::layers::Conv2d,
    cfg: LinearConfig,
}

impl LinearHead {
    /// Builds the head; parameters `conv_seg.weight` `[classes, D, 1, 1]` and `conv_seg.bias`.
    pub fn new(cfg: &LinearConfig, vb: VarBuilder) -> Result<Self> {
        check_classes(cfg.num_classes)?;
        Ok(Self {
            conv_seg: classifier(cfg.in_channels, cfg.num_classes, vb.pp("conv_seg"))?,
            cfg: cfg.clone(),
        })
    }
}

impl SegmentationHead for LinearHead {
    fn layers(&self) -> &[usize] {
        &[]
    }

    fn num_classes(&self) -> usize {
        self.cfg.num_classes
    }

    fn forward(
        &self,
        features: &Features,
        size: (usize, usize),
        _mode: &mut Mode,
    ) -> Result<Tensor> {
        let map = final_map(features, self.cfg.in_channels)?;
        let logits = self.conv_seg.forward(&map)?;
        resize_bilinear(&logits, size, self.cfg.align_corners)
    }
}
