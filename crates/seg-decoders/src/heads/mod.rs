//! The segmentation heads and the configuration that picks one.

mod linear;
mod upernet;
mod vitdet;

pub use linear::{LinearConfig, LinearHead};
pub use upernet::{UperNetConfig, UperNetHead, UperNetInput};
pub use vitdet::{VitDetConfig, VitDetHead};

use candle_core::Tensor;
use candle_nn::VarBuilder;
use cxr_core::{FeatureInfo, FeatureRequest, Features};
use serde::{Deserialize, Serialize};

use crate::layers::Mode;
use crate::{Error, Result};

/// A segmentation head: encoder features in, per-pixel class logits out.
pub trait SegmentationHead {
    /// The intermediate layers the head reads (empty when it only reads the final tokens).
    fn layers(&self) -> &[usize];

    /// Number of output classes (channels of the logits).
    fn num_classes(&self) -> usize;

    /// Logits `[B, classes, size.0, size.1]` at the input resolution `size`.
    fn forward(&self, features: &Features, size: (usize, usize), mode: &mut Mode)
        -> Result<Tensor>;

    /// The feature request that gives this head what it reads.
    fn feature_request(&self, train: bool) -> FeatureRequest {
        FeatureRequest::with_layers(self.layers().to_vec()).train(train)
    }
}

/// Which head to build, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HeadConfig {
    /// 1×1 projection of the final patch tokens.
    Linear(LinearConfig),
    /// ViTDet simple feature pyramid + semantic-FPN head.
    VitDet(VitDetConfig),
    /// BEiT/ViT-adapter multi-scale neck + mmsegmentation `UPerHead`.
    UperNet(UperNetConfig),
}

impl HeadConfig {
    /// Linear head for an encoder.
    pub fn linear(info: &FeatureInfo, num_classes: usize) -> Self {
        Self::Linear(LinearConfig::for_encoder(info, num_classes))
    }

    /// ViTDet head for an encoder, with the paper's channel counts.
    pub fn vitdet(info: &FeatureInfo, num_classes: usize) -> Self {
        Self::VitDet(VitDetConfig::for_encoder(info, num_classes))
    }

    /// UPerNet head over four evenly spaced layers of an encoder, 512 channels.
    pub fn upernet(info: &FeatureInfo, num_classes: usize) -> Result<Self> {
        Ok(Self::UperNet(UperNetConfig::for_encoder(
            info,
            num_classes,
        )?))
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Linear(c) => c.num_classes,
            Self::VitDet(c) => c.num_classes,
            Self::UperNet(c) => c.num_classes,
        }
    }
}

/// Any of the heads, built from a [`HeadConfig`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Head {
    /// See [`LinearHead`].
    Linear(LinearHead),
    /// See [`VitDetHead`].
    VitDet(Box<VitDetHead>),
    /// See [`UperNetHead`].
    UperNet(Box<UperNetHead>),
}

impl Head {
    /// Builds the head described by `cfg`, taking parameters from (or creating them in) `vb`.
    pub fn new(cfg: &HeadConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg {
            HeadConfig::Linear(c) => Self::Linear(LinearHead::new(c, vb)?),
            HeadConfig::VitDet(c) => Self::VitDet(Box::new(VitDetHead::new(c, vb)?)),
            HeadConfig::UperNet(c) => Self::UperNet(Box::new(UperNetHead::new(c, vb)?)),
        })
    }

    fn inner(&self) -> &dyn SegmentationHead {
        match self {
            Self::Linear(h) => h,
            Self::VitDet(h) => h.as_ref(),
            Self::UperNet(h) => h.as_ref(),
        }
    }
}

impl SegmentationHead for Head {
    fn layers(&self) -> &[usize] {
        self.inner().layers()
    }

    fn num_classes(&self) -> usize {
        self.inner().num_classes()
    }

    fn forward(
        &self,
        features: &Features,
        size: (usize, usize),
        mode: &mut Mode,
    ) -> Result<Tensor> {
        self.inner().forward(features, size, mode)
    }
}

/// The patch map `[B, D, rows, cols]` of `features`, checked to have `channels` channels.
pub(crate) fn final_map(features: &Features, channels: usize) -> Result<Tensor> {
    let map = features.patch_map()?;
    crate::layers::check_map("patch tokens", &map, channels)?;
    Ok(map)
}

pub(crate) fn check_classes(num_classes: usize) -> Result<()> {
    if num_classes == 0 {
        return Err(Error::Config("a head needs at least one class".into()));
    }
    Ok(())
}
