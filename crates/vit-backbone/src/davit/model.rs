//! `DavitModel`: the DaViT image tower with its UniCL projection.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use cxr_core::{Preprocessing, Resample};

use super::block::{BranchMasks, DualBlock};
use super::config::DavitConfig;
use super::conv_embed::ConvEmbed;
use super::drop_path::DropPathDraw;
use crate::layers::LayerNorm;

/// The tokens a stage ends with.
#[derive(Debug, Clone)]
pub struct StageOutput {
    /// `[B, H·W, C]`, row-major over the grid.
    pub tokens: Tensor,
    /// `(H, W)` of the token grid.
    pub grid: (usize, usize),
}

/// What [`DavitModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct DavitOutput {
    /// Every stage's output, in order (the last one is the final feature map).
    pub stages: Vec<StageOutput>,
    /// `[B, C_last]`: the average of the last map's tokens, then LayerNorm (`norms`); what the
    /// reference's `forward_features` returns.
    pub pooled: Tensor,
}

/// The DaViT tower (`image_encoder.*`) and, when configured, `image_projection`.
#[derive(Debug)]
pub struct DavitModel {
    convs: Vec<ConvEmbed>,
    stages: Vec<Vec<(DualBlock, DualBlock)>>,
    norms: LayerNorm,
    projection: Option<Tensor>,
    cfg: DavitConfig,
    preprocessing: Preprocessing,
    device: Device,
    dtype: DType,
    drop_path_seed: AtomicU64,
    drop_path_calls: AtomicU64,
}

/// MI2's evaluation transform: resize straight to the square input (bicubic, no crop),
/// `ToTensor`, ImageNet mean and std (`IMAGE_MEAN`, `IMAGE_STD` of its `config.yaml`).
pub fn mi2_preprocessing(size: usize) -> Preprocessing {
    Preprocessing {
        shortest_edge: None,
        crop: (size, size),
        resample: Resample::Bicubic,
        rescale_factor: 1.0 / 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    }
}

impl DavitModel {
    /// Builds the tower from `vb` in the released checkpoint's layout: tower weights under
    /// `image_encoder.`, the projection as `image_projection` `[C_last, P]`.
    ///
    /// Plain tensors select the fused inference kernels; a `VarMap` builder the
    /// differentiable ops.
    pub fn new(cfg: &DavitConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let tower = vb.pp("image_encoder");
        let mut convs = Vec::new();
        let mut stages = Vec::new();
        for i in 0..cfg.num_stages() {
            convs.push(ConvEmbed::new(
                if i == 0 {
                    cfg.in_chans
                } else {
                    cfg.embed_dims[i - 1]
                },
                cfg.embed_dims[i],
                cfg.patch_size[i],
                cfg.patch_stride[i],
                cfg.patch_padding[i],
                cfg.patch_prenorm[i],
                cfg.layer_norm_eps,
                tower.pp("convs").pp(i),
            )?);
            let pairs = (0..cfg.depths[i])
                .map(|j| {
                    let vb = tower.pp("blocks").pp(i).pp(j);
                    Ok((
                        DualBlock::spatial(cfg, i, vb.pp("spatial_block"))?,
                        DualBlock::channel(cfg, i, vb.pp("channel_block"))?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(pairs);
        }
        let norms = LayerNorm::new(cfg.out_dim(), cfg.layer_norm_eps, tower.pp("norms"))?;
        let projection = cfg
            .projection_dim
            .map(|p| {
                vb.get_with_hints(
                    (cfg.out_dim(), p),
                    "image_projection",
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.02,
                    },
                )
            })
            .transpose()?;
        Ok(Self {
            convs,
            stages,
            norms,
            projection,
            cfg: cfg.clone(),
            preprocessing: mi2_preprocessing(cfg.image_size),
            device: vb.device().clone(),
            dtype: vb.dtype(),
            drop_path_seed: AtomicU64::new(0),
            drop_path_calls: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DavitConfig {
        &self.cfg
    }

    /// The weight dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The preprocessing reported by the encoder (MI2's by default).
    pub(crate) fn preprocessing_ref(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// Replaces the preprocessing reported by the encoder.
    pub fn with_preprocessing(mut self, preprocessing: Preprocessing) -> Self {
        self.preprocessing = preprocessing;
        self
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Seeds stochastic depth: masks are a pure function of (seed, call counter, block).
    pub fn set_drop_path_state(&self, seed: u64, calls: u64) {
        self.drop_path_seed.store(seed, Ordering::SeqCst);
        self.drop_path_calls.store(calls, Ordering::SeqCst);
    }

    /// `(seed, calls)` of stochastic depth, for checkpoints.
    pub fn drop_path_state(&self) -> (u64, u64) {
        (
            self.drop_path_seed.load(Ordering::SeqCst),
            self.drop_path_calls.load(Ordering::SeqCst),
        )
    }

    /// Runs the tower on `pixels` `[B, 3, H, W]` (any size); `train` turns stochastic depth on.
    pub fn forward(&self, pixels: &Tensor, train: bool) -> Result<DavitOutput> {
        let (b, c, _, _) = pixels.dims4()?;
        if c != self.cfg.in_chans {
            candle_core::bail!(
                "DaViT expects {} input channels, got pixels of shape {:?}",
                self.cfg.in_chans,
                pixels.dims()
            );
        }
        let draw = (train && self.cfg.drop_path_rate > 0.0).then(|| DropPathDraw {
            seed: self.drop_path_seed.load(Ordering::SeqCst),
            call: self.drop_path_calls.fetch_add(1, Ordering::SeqCst),
        });
        let rates = self.cfg.block_drop_rates();
        let masks_for = |block: usize| -> Result<Option<BranchMasks>> {
            match (draw, rates.get(block)) {
                (Some(d), Some(&rate)) if rate > 0.0 => Ok(Some(BranchMasks {
                    attn: d.mask(rate, block, 0, b, self.dtype, &self.device)?,
                    ffn: d.mask(rate, block, 1, b, self.dtype, &self.device)?,
                })),
                _ => Ok(None),
            }
        };
        let mut outputs: Vec<StageOutput> = Vec::with_capacity(self.convs.len());
        let mut block = 0;
        for (i, (conv, pairs)) in self.convs.iter().zip(&self.stages).enumerate() {
            let embedded = match outputs.last() {
                None if i == 0 => conv.forward_image(pixels),
                Some(prev) => conv.forward_tokens(&prev.tokens, prev.grid),
                None => candle_core::bail!("stage {i} has no input"),
            };
            let (mut x, grid) = embedded
                .map_err(|e| e.context(format!("DaViT stage {i}, pixels {:?}", pixels.dims())))?;
            for (spatial, channel) in pairs {
                x = spatial.forward(&x, grid, masks_for(block)?.as_ref())?;
                x = channel.forward(&x, grid, masks_for(block + 1)?.as_ref())?;
                block += 2;
            }
            outputs.push(StageOutput { tokens: x, grid });
        }
        let last = outputs
            .last()
            .ok_or_else(|| candle_core::Error::Msg("DaViT without stages".into()))?;
        let pooled = self.norms.forward(&last.tokens.mean(1)?)?;
        Ok(DavitOutput {
            stages: outputs,
            pooled,
        })
    }

    /// `pooled @ image_projection`, L2-normalised: the UniCL image embedding (`[B, P]`).
    pub fn project(&self, pooled: &Tensor) -> Result<Tensor> {
        let Some(p) = &self.projection else {
            candle_core::bail!("this DaViT config has no image projection (projection_dim = None)");
        };
        let z = pooled.matmul(p)?;
        z.broadcast_div(&z.sqr()?.sum_keepdim(1)?.sqrt()?)
    }

    /// The MI2 image embedding of `pixels`: forward, pool, project, L2-normalise
    /// (what the reference's `encode_image` returns).
    pub fn encode_image(&self, pixels: &Tensor) -> Result<Tensor> {
        self.project(&self.forward(pixels, false)?.pooled)
    }
}
