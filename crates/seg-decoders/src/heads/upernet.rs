//! UPerNet (Xiao et al. 2018) as mmsegmentation's `UPerHead`, fed either by the multi-scale
//! neck that BEiT / ViT-adapter style ViT segmenters put on four intermediate layers of a
//! plain ViT, or directly by the four stages of a hierarchical encoder (DaViT, as Swin feeds
//! it in mmsegmentation).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use cxr_core::{FeatureInfo, Features};
use serde::{Deserialize, Serialize};

use super::{check_classes, SegmentationHead};
use crate::layers::{
    adaptive_avg_pool2d, check_map, classifier, deconv2x2, dropout2d, gelu, max_pool_2x2,
    BatchNorm2d, BnConfig, ConvBnRelu, Mode,
};
use crate::resize::{resize_bilinear, AlignCorners};
use crate::{Error, Result};

/// What UPerNet's four input maps are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UperNetInput {
    /// Four maps of one stride and width (blocks of a plain ViT), which BEiT's neck turns into
    /// strides ×4, ×2, ×1 and ×½ of that stride (`neck.*` parameters).
    VitNeck {
        /// Width of the four maps.
        channels: usize,
    },
    /// Four maps that already form a pyramid, finest first (the stages of a hierarchical
    /// encoder such as DaViT or Swin), read as they are: no neck.
    Pyramid {
        /// Width of each map, finest first.
        channels: Vec<usize>,
    },
}

impl UperNetInput {
    /// The width of each of the four levels the head reads.
    pub fn level_channels(&self) -> Vec<usize> {
        match self {
            UperNetInput::VitNeck { channels } => vec![*channels; 4],
            UperNetInput::Pyramid { channels } => channels.clone(),
        }
    }
}

/// Settings of [`UperNetHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UperNetConfig {
    /// The four encoder layers read, shallow to deep (ViT-B: 2, 5, 8, 11; DaViT: 0, 1, 2, 3).
    pub layers: Vec<usize>,
    /// What those layers' maps are: one stride (through the ViT neck) or a pyramid.
    pub input: UperNetInput,
    /// Channels of the head (mmsegmentation: 512).
    pub channels: usize,
    /// Output sizes of the pyramid pooling module (1, 2, 3, 6).
    pub pool_scales: Vec<usize>,
    /// Output classes.
    pub num_classes: usize,
    /// `Dropout2d` before the classifier (0.1).
    pub dropout: f64,
    /// BatchNorm settings of the neck and head.
    pub bn: BnConfig,
    /// Alignment of every bilinear resize.
    pub align_corners: AlignCorners,
}

impl UperNetConfig {
    /// UPerNet over four evenly spaced layers with the published sizes (512 channels): through
    /// the ViT neck when the layers share one stride (a plain ViT), as a pyramid when their
    /// strides increase (a hierarchical encoder's stages).
    pub fn for_encoder(info: &FeatureInfo, num_classes: usize) -> Result<Self> {
        let layers = info.evenly_spaced_layers(4);
        if layers.len() != 4 {
            return Err(Error::Config(format!(
                "UPerNet reads four layers; the encoder has {}",
                info.num_layers()
            )));
        }
        let widths: Vec<usize> = layers.iter().map(|&l| info.layers[l].channels).collect();
        let strides: Vec<usize> = layers.iter().map(|&l| info.layers[l].stride).collect();
        let input = if strides.iter().all(|&s| s == strides[0]) {
            if widths.iter().any(|&w| w != widths[0]) {
                return Err(Error::Config(format!(
                    "the ViT neck needs equal widths on layers {layers:?}, got {widths:?}"
                )));
            }
            UperNetInput::VitNeck {
                channels: widths[0],
            }
        } else if strides.windows(2).all(|w| w[0] < w[1]) {
            UperNetInput::Pyramid { channels: widths }
        } else {
            return Err(Error::Config(format!(
                "UPerNet reads four maps of one stride (a ViT) or of increasing strides (a \
                 pyramid); layers {layers:?} have strides {strides:?}"
            )));
        };
        Ok(Self {
            layers,
            input,
            channels: 512,
            pool_scales: vec![1, 2, 3, 6],
            num_classes,
            dropout: 0.1,
            bn: BnConfig::default(),
            align_corners: AlignCorners::False,
        })
    }
}

/// The multi-scale neck: `fpn1` = ConvT(2, 2) → BN → GELU → ConvT(2, 2) (×4), `fpn2` =
/// ConvT(2, 2) (×2), `fpn3` = identity, `fpn4` = max-pool 2×2 (×½). Widths stay `d`.
#[derive(Debug, Clone)]
struct Neck {
    fpn1_0: crate::layers::ConvTranspose2d,
    fpn1_1: BatchNorm2d,
    fpn1_3: crate::layers::ConvTranspose2d,
    fpn2_0: crate::layers::ConvTranspose2d,
}

impl Neck {
    fn new(d: usize, bn: BnConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fpn1_0: deconv2x2(d, d, true, vb.pp("fpn1").pp(0))?,
            fpn1_1: BatchNorm2d::new(d, bn.eps, bn.momentum, vb.pp("fpn1").pp(1))?,
            fpn1_3: deconv2x2(d, d, true, vb.pp("fpn1").pp(3))?,
            fpn2_0: deconv2x2(d, d, true, vb.pp("fpn2").pp(0))?,
        })
    }

    fn forward(&self, maps: &[Tensor], mode: &Mode) -> Result<Vec<Tensor>> {
        let [a, b, c, d] = maps else {
            return Err(Error::Config(format!(
                "the neck takes 4 maps, got {}",
                maps.len()
            )));
        };
        let a = self.fpn1_0.forward(a)?;
        let a = self
            .fpn1_3
            .forward(&gelu(&self.fpn1_1.forward(&a, mode)?)?)?;
        Ok(vec![
            a,
            self.fpn2_0.forward(b)?,
            c.clone(),
            max_pool_2x2(d)?,
        ])
    }
}

/// UPerNet: the neck above, then `UPerHead` — PPM on the coarsest level (adaptive average
/// pooling to each scale → 1×1 conv-BN-ReLU → bilinear back, concatenated with the input,
/// 3×3 `bottleneck`), 1×1 `lateral_convs` on the other levels, top-down bilinear addition,
/// 3×3 `fpn_convs`, everything resized to the finest level, concatenated, 3×3
/// `fpn_bottleneck`, `Dropout2d`, 1×1 `conv_seg`; finally bilinear to the input size.
///
/// Parameter names: `neck.fpn1.{0,1,3}.*`, `neck.fpn2.0.*` (BEiT's names, where they sit in
/// the backbone; ViT input only) and `decode_head.*` exactly as mmsegmentation's `UPerHead`.
#[derive(Debug, Clone)]
pub struct UperNetHead {
    /// The ViT neck; `None` for a pyramid input.
    neck: Option<Neck>,
    psp_modules: Vec<ConvBnRelu>,
    bottleneck: ConvBnRelu,
    lateral_convs: Vec<ConvBnRelu>,
    fpn_convs: Vec<ConvBnRelu>,
    fpn_bottleneck: ConvBnRelu,
    conv_seg: crate::layers::Conv2d,
    cfg: UperNetConfig,
}

impl UperNetHead {
    /// Builds the neck (`neck.*`) and head (`decode_head.*`) under `vb`.
    pub fn new(cfg: &UperNetConfig, vb: VarBuilder) -> Result<Self> {
        check_classes(cfg.num_classes)?;
        if cfg.layers.len() != 4 {
            return Err(Error::Config(format!(
                "UPerNet reads four layers, got {:?}",
                cfg.layers
            )));
        }
        if cfg.pool_scales.contains(&0) {
            return Err(Error::Config("pool scales must be positive".into()));
        }
        let widths = cfg.input.level_channels();
        // zero widths reached the initialiser as an infinite Kaiming std
        if widths.len() != 4 || widths.contains(&0) || cfg.channels == 0 {
            return Err(Error::Config(format!(
                "UPerNet widths must be four positive input widths and positive channels, got \
                 input {widths:?} and channels {}",
                cfg.channels
            )));
        }
        let (ch, bn) = (cfg.channels, cfg.bn);
        let coarsest = widths[3];
        let head = vb.pp("decode_head");
        let psp_modules = cfg
            .pool_scales
            .iter()
            .enumerate()
            .map(|(i, _)| ConvBnRelu::new(coarsest, ch, 1, bn, head.pp("psp_modules").pp(i).pp(1)))
            .collect::<Result<Vec<_>>>()?;
        let bottleneck = ConvBnRelu::new(
            coarsest + cfg.pool_scales.len() * ch,
            ch,
            3,
            bn,
            head.pp("bottleneck"),
        )?;
        let lateral_convs = (0..3)
            .map(|i| ConvBnRelu::new(widths[i], ch, 1, bn, head.pp("lateral_convs").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let neck = match cfg.input {
            UperNetInput::VitNeck { channels } => Some(Neck::new(channels, bn, vb.pp("neck"))?),
            UperNetInput::Pyramid { .. } => None,
        };
        let fpn_convs = (0..3)
            .map(|i| ConvBnRelu::new(ch, ch, 3, bn, head.pp("fpn_convs").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            neck,
            psp_modules,
            bottleneck,
            lateral_convs,
            fpn_convs,
            fpn_bottleneck: ConvBnRelu::new(4 * ch, ch, 3, bn, head.pp("fpn_bottleneck"))?,
            conv_seg: classifier(ch, cfg.num_classes, head.pp("conv_seg"))?,
            cfg: cfg.clone(),
        })
    }

    /// The four encoder layers as `[B, C_i, rows_i, cols_i]` maps, in the configured order.
    pub fn input_maps(&self, features: &Features) -> Result<Vec<Tensor>> {
        let widths = self.cfg.input.level_channels();
        self.cfg
            .layers
            .iter()
            .zip(widths)
            .map(|(&l, width)| {
                let inter = features.intermediate(l).ok_or_else(|| {
                    Error::Config(format!("the features lack intermediate layer {l}"))
                })?;
                let map = inter.map()?;
                check_map(&format!("layer {l}"), &map, width)?;
                Ok(map)
            })
            .collect()
    }

    /// The fused finest-level feature map (before dropout and the classifier), from the four
    /// input maps (through the neck for a ViT).
    pub fn fused(&self, maps: &[Tensor], mode: &Mode) -> Result<Tensor> {
        let align = self.cfg.align_corners;
        let inputs = match &self.neck {
            Some(neck) => neck.forward(maps, mode)?,
            None if maps.len() == 4 => maps.to_vec(),
            None => {
                return Err(Error::Config(format!(
                    "UPerNet takes 4 maps, got {}",
                    maps.len()
                )))
            }
        };
        let size_of = |t: &Tensor| -> Result<(usize, usize)> { Ok((t.dim(2)?, t.dim(3)?)) };

        let mut laterals = Vec::with_capacity(4);
        for (conv, x) in self.lateral_convs.iter().zip(&inputs) {
            laterals.push(conv.forward(x, mode)?);
        }
        laterals.push(self.psp(&inputs[3], mode)?);
        for i in (1..laterals.len()).rev() {
            let up = resize_bilinear(&laterals[i], size_of(&laterals[i - 1])?, align)?;
            laterals[i - 1] = (&laterals[i - 1] + up)?;
        }
        let finest = size_of(&laterals[0])?;
        let mut outs = Vec::with_capacity(4);
        for (conv, x) in self.fpn_convs.iter().zip(&laterals) {
            let y = conv.forward(x, mode)?;
            outs.push(resize_bilinear(&y, finest, align)?);
        }
        outs.push(resize_bilinear(&laterals[3], finest, align)?);
        self.fpn_bottleneck.forward(&Tensor::cat(&outs, 1)?, mode)
    }

    fn psp(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        let size = (x.dim(2)?, x.dim(3)?);
        let mut outs = vec![x.clone()];
        for (&scale, module) in self.cfg.pool_scales.iter().zip(&self.psp_modules) {
            let pooled = adaptive_avg_pool2d(x, (scale, scale))?;
            let y = module.forward(&pooled, mode)?;
            outs.push(resize_bilinear(&y, size, self.cfg.align_corners)?);
        }
        self.bottleneck.forward(&Tensor::cat(&outs, 1)?, mode)
    }
}

impl SegmentationHead for UperNetHead {
    fn layers(&self) -> &[usize] {
        &self.cfg.layers
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
        let maps = self.input_maps(features)?;
        let fused = self.fused(&maps, mode)?;
        let logits = self
            .conv_seg
            .forward(&dropout2d(&fused, self.cfg.dropout, mode)?)?;
        resize_bilinear(&logits, size, self.cfg.align_corners)
    }
}
