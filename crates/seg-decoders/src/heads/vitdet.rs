//! ViTDet's simple feature pyramid (Li et al. 2022, detectron2 `SimpleFeaturePyramid`) over
//! the last layer, with mmsegmentation's semantic-FPN head (`FPNHead`, Kirillov et al. 2019)
//! as the light segmentation head.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use cxr_core::{FeatureInfo, Features};
use serde::{Deserialize, Serialize};

use super::{check_classes, final_map, SegmentationHead};
use crate::layers::{
    classifier, deconv2x2, dropout2d, gelu, max_pool_2x2, BnConfig, ConvBnRelu, LayerNorm2d, Mode,
};
use crate::resize::{resize_bilinear, AlignCorners};
use crate::{Error, Result};

/// Settings of [`VitDetHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitDetConfig {
    /// Width `d` of the final patch tokens (divisible by 4).
    pub embed_dim: usize,
    /// Channels of every pyramid level (ViTDet: 256).
    pub out_channels: usize,
    /// Channels of the semantic-FPN head (mmsegmentation's FPN configs: 128).
    pub head_channels: usize,
    /// Output classes.
    pub num_classes: usize,
    /// `Dropout2d` before the classifier (mmsegmentation: 0.1).
    pub dropout: f64,
    /// Epsilon of the pyramid's channel layer norms (detectron2: 1e-6).
    pub ln_eps: f64,
    /// BatchNorm settings of the FPN head.
    pub bn: BnConfig,
    /// Alignment of every bilinear resize.
    pub align_corners: AlignCorners,
}

impl VitDetConfig {
    /// The published sizes (256 pyramid channels, 128 head channels).
    pub fn for_encoder(info: &FeatureInfo, num_classes: usize) -> Self {
        Self {
            embed_dim: info.embed_dim,
            out_channels: 256,
            head_channels: 128,
            num_classes,
            dropout: 0.1,
            ln_eps: 1e-6,
            bn: BnConfig::default(),
            align_corners: AlignCorners::False,
        }
    }
}

/// detectron2's `Conv2d(bias=False, norm=LN)`: `weight` and `norm.{weight,bias}`.
#[derive(Debug, Clone)]
struct ConvLn {
    conv: crate::layers::Conv2d,
    norm: LayerNorm2d,
}

impl ConvLn {
    fn new(cin: usize, cout: usize, kernel: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: crate::layers::conv_same(cin, cout, kernel, vb.clone())?,
            norm: LayerNorm2d::new(cout, eps, vb.pp("norm"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&self.conv.forward(x)?)
    }
}

/// One pyramid level: the resampling layers, then `1×1 conv + LN`, `3×3 conv + LN`.
#[derive(Debug, Clone)]
struct Level {
    resample: Resample,
    lateral: ConvLn,
    output: ConvLn,
}

#[derive(Debug, Clone)]
enum Resample {
    /// ×4: ConvT(d → d/2), LN, GELU, ConvT(d/2 → d/4).
    Up4(
        crate::layers::ConvTranspose2d,
        LayerNorm2d,
        crate::layers::ConvTranspose2d,
    ),
    /// ×2: ConvT(d → d/2).
    Up2(crate::layers::ConvTranspose2d),
    /// ×1.
    Identity,
    /// ×½: max-pool 2×2.
    Down2,
}

impl Level {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.resample {
            Resample::Up4(a, ln, b) => b.forward(&gelu(&ln.forward(&a.forward(x)?)?)?)?,
            Resample::Up2(a) => a.forward(x)?,
            Resample::Identity => x.clone(),
            Resample::Down2 => max_pool_2x2(x)?,
        };
        self.output.forward(&self.lateral.forward(&y)?)
    }
}

/// ViTDet simple feature pyramid (levels at 4×, 2×, 1×, ½× the token resolution, i.e.
/// strides 4, 8, 16, 32 for a 16-pixel patch) and a semantic-FPN head: each level goes
/// through `max(1, log2(stride/4))` `3×3 conv-BN-ReLU` blocks, each followed by a ×2 bilinear
/// upsampling for the coarser levels; the levels are summed at the finest resolution,
/// dropped out, classified by a 1×1 conv and upsampled to the input size.
///
/// Parameter names: `neck.simfp_{2,3,4,5}.*` as detectron2 names them;
/// `decode_head.scale_heads.{i}.{2k}.{conv,bn}.*` and `decode_head.conv_seg.*` as
/// mmsegmentation's `FPNHead`.
#[derive(Debug, Clone)]
pub struct VitDetHead {
    levels: Vec<Level>,
    scale_heads: Vec<Vec<ConvBnRelu>>,
    conv_seg: crate::layers::Conv2d,
    cfg: VitDetConfig,
}

impl VitDetHead {
    /// Builds the pyramid and head under `vb` (`neck.*`, `decode_head.*`).
    pub fn new(cfg: &VitDetConfig, vb: VarBuilder) -> Result<Self> {
        check_classes(cfg.num_classes)?;
        let d = cfg.embed_dim;
        if d % 4 != 0 || d == 0 {
            return Err(Error::Config(format!(
                "ViTDet pyramid needs an embedding width divisible by 4, got {d}"
            )));
        }
        // zero widths reached the initialiser as an infinite Kaiming std
        if cfg.out_channels == 0 || cfg.head_channels == 0 {
            return Err(Error::Config(format!(
                "ViTDet widths must be positive, got out_channels {} and head_channels {}",
                cfg.out_channels, cfg.head_channels
            )));
        }
        let (out, eps) = (cfg.out_channels, cfg.ln_eps);
        let neck = vb.pp("neck");
        let level = |name: &str, resample: Resample, width: usize, first: usize| -> Result<Level> {
            let v = neck.pp(name);
            Ok(Level {
                resample,
                lateral: ConvLn::new(width, out, 1, eps, v.pp(first))?,
                output: ConvLn::new(out, out, 3, eps, v.pp(first + 1))?,
            })
        };
        let p2 = neck.pp("simfp_2");
        let up4 = Resample::Up4(
            deconv2x2(d, d / 2, true, p2.pp(0))?,
            LayerNorm2d::new(d / 2, eps, p2.pp(1))?,
            deconv2x2(d / 2, d / 4, true, p2.pp(3))?,
        );
        let up2 = Resample::Up2(deconv2x2(d, d / 2, true, neck.pp("simfp_3").pp(0))?);
        let levels = vec![
            level("simfp_2", up4, d / 4, 4)?,
            level("simfp_3", up2, d / 2, 1)?,
            level("simfp_4", Resample::Identity, d, 0)?,
            level("simfp_5", Resample::Down2, d, 1)?,
        ];
        let head = vb.pp("decode_head");
        let mut scale_heads = Vec::with_capacity(4);
        for i in 0..4usize {
            let length = i.max(1);
            let hv = head.pp("scale_heads").pp(i);
            let mut blocks = Vec::with_capacity(length);
            for k in 0..length {
                let cin = if k == 0 { out } else { cfg.head_channels };
                // Sequential index 2k: the upsampling modules sit between the convs.
                let idx = if i == 0 { k } else { 2 * k };
                blocks.push(ConvBnRelu::new(
                    cin,
                    cfg.head_channels,
                    3,
                    cfg.bn,
                    hv.pp(idx),
                )?);
            }
            scale_heads.push(blocks);
        }
        Ok(Self {
            levels,
            scale_heads,
            conv_seg: classifier(cfg.head_channels, cfg.num_classes, head.pp("conv_seg"))?,
            cfg: cfg.clone(),
        })
    }

    /// The four pyramid levels (strides 4, 8, 16, 32 relative to a 16-pixel patch).
    pub fn pyramid(&self, features: &Features) -> Result<Vec<Tensor>> {
        let x = final_map(features, self.cfg.embed_dim)?;
        self.levels.iter().map(|l| l.forward(&x)).collect()
    }
}

impl SegmentationHead for VitDetHead {
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
        mode: &mut Mode,
    ) -> Result<Tensor> {
        let align = self.cfg.align_corners;
        let pyramid = self.pyramid(features)?;
        let mut sum: Option<Tensor> = None;
        for (i, (x, blocks)) in pyramid.iter().zip(&self.scale_heads).enumerate() {
            let mut y = x.clone();
            for block in blocks {
                y = block.forward(&y, mode)?;
                if i > 0 {
                    let (h, w) = (y.dim(2)?, y.dim(3)?);
                    y = resize_bilinear(&y, (2 * h, 2 * w), align)?;
                }
            }
            sum = Some(match sum {
                None => y,
                Some(s) => {
                    let target = (s.dim(2)?, s.dim(3)?);
                    (s + resize_bilinear(&y, target, align)?)?
                }
            });
        }
        let Some(sum) = sum else {
            return Err(Error::Config("the pyramid has no levels".into()));
        };
        let logits = self
            .conv_seg
            .forward(&dropout2d(&sum, self.cfg.dropout, mode)?)?;
        resize_bilinear(&logits, size, align)
    }
}
