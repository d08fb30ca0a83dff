//! Patch, class, mask, register and position embeddings (`embeddings.*`).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::config::Dinov2Config;
use crate::interpolate::resample_grid;

/// The embedding stem of the ViT.
#[derive(Debug, Clone)]
pub struct Embeddings {
    cls_token: Tensor,
    mask_token: Option<Tensor>,
    register_tokens: Option<Tensor>,
    position_embeddings: Tensor,
    patch_weight: Tensor,
    patch_bias: Tensor,
    cfg: Dinov2Config,
}

impl Embeddings {
    /// Loads the stem under `vb` (the `embeddings` prefix).
    pub fn new(cfg: &Dinov2Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let p = cfg.patch_size;
        let c = cfg.num_channels;
        let n = cfg.grid_size() * cfg.grid_size();
        let trunc = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let cls_token = vb.get_with_hints((1, 1, d), "cls_token", trunc)?;
        let mask_token = if cfg.use_mask_token {
            Some(vb.get_with_hints((1, d), "mask_token", Init::Const(0.0))?)
        } else {
            None
        };
        let register_tokens = if cfg.num_register_tokens > 0 {
            Some(vb.get_with_hints((1, cfg.num_register_tokens, d), "register_tokens", trunc)?)
        } else {
            None
        };
        let position_embeddings = vb.get_with_hints((1, n + 1, d), "position_embeddings", trunc)?;
        let proj = vb.pp("patch_embeddings").pp("projection");
        let fan_in = (c * p * p) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let patch_weight = proj.get_with_hints(
            (d, c, p, p),
            "weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let patch_bias = proj.get_with_hints(
            d,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Self {
            cls_token,
            mask_token,
            register_tokens,
            position_embeddings,
            patch_weight,
            patch_bias,
            cfg: cfg.clone(),
        })
    }

    /// Patch grid `(rows, cols)` for an input of `height × width` pixels (the convolution
    /// drops any remainder, as PyTorch's strided conv does).
    pub fn grid_for(&self, height: usize, width: usize) -> (usize, usize) {
        (height / self.cfg.patch_size, width / self.cfg.patch_size)
    }

    /// The stride-`p` convolution as one GEMM over flattened patches.
    fn patchify(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        let p = self.cfg.patch_size;
        let (gh, gw) = self.grid_for(h, w);
        let d = self.cfg.hidden_size;
        let x = if gh * p != h || gw * p != w {
            pixels.narrow(2, 0, gh * p)?.narrow(3, 0, gw * p)?
        } else {
            pixels.clone()
        };
        let x = x
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        let w = self.patch_weight.reshape((d, c * p * p))?;
        fused_ops::linear(&x, &w, Some(&self.patch_bias))?.reshape((b, gh * gw, d))
    }

    /// Position embeddings for a `grid`, resampled as `transformers` does when the grid or
    /// the aspect differs from training.
    pub fn position_embeddings_for(
        &self,
        grid: (usize, usize),
        height: usize,
        width: usize,
    ) -> Result<Tensor> {
        let trained = self.cfg.grid_size();
        let n_trained = trained * trained;
        if grid.0 * grid.1 == n_trained && height == width {
            return Ok(self.position_embeddings.clone());
        }
        let d = self.cfg.hidden_size;
        let cls = self.position_embeddings.narrow(1, 0, 1)?;
        let patch = self
            .position_embeddings
            .narrow(1, 1, n_trained)?
            .reshape((n_trained, d))?;
        let resampled = resample_grid(&patch, (trained, trained), grid, self.cfg.interpolation())?;
        Tensor::cat(&[cls, resampled.unsqueeze(0)?], 1)
    }

    /// `[B, 1 + R + N, D]` tokens for `pixels` `[B, C, H, W]`; `bool_masked_pos` `[B, N]`
    /// (1 = masked) swaps patch embeddings for the mask token before position embeddings.
    pub fn forward(&self, pixels: &Tensor, bool_masked_pos: Option<&Tensor>) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        if c != self.cfg.num_channels {
            candle_core::bail!(
                "pixel_values has {c} channels, the model expects {}",
                self.cfg.num_channels
            );
        }
        let pixels = pixels.to_dtype(self.patch_weight.dtype())?;
        let grid = self.grid_for(h, w);
        let mut x = self.patchify(&pixels)?;
        if let Some(mask) = bool_masked_pos {
            let token = self.mask_token.as_ref().ok_or_else(|| {
                candle_core::Error::Msg(
                    "bool_masked_pos given but the model has no mask token".into(),
                )
            })?;
            let n = grid.0 * grid.1;
            if mask.dims() != [b, n] {
                candle_core::bail!(
                    "bool_masked_pos has shape {:?}, expected [{b}, {n}]",
                    mask.dims()
                );
            }
            let m = mask.to_dtype(x.dtype())?.unsqueeze(2)?; // [B, N, 1]
            let keep = (1.0 - &m)?;
            x = (x.broadcast_mul(&keep)? + m.broadcast_mul(&token.unsqueeze(0)?)?)?;
        }
        let cls = self.cls_token.broadcast_as((b, 1, self.cfg.hidden_size))?;
        let x = Tensor::cat(&[&cls, &x], 1)?;
        let pos = self.position_embeddings_for(grid, h, w)?;
        let x = x.broadcast_add(&pos.to_dtype(x.dtype())?)?;
        match &self.register_tokens {
            Some(reg) => {
                let r = reg.dim(1)?;
                let reg = reg.broadcast_as((b, r, self.cfg.hidden_size))?;
                let n = x.dim(1)?;
                Tensor::cat(&[&x.narrow(1, 0, 1)?, &reg, &x.narrow(1, 1, n - 1)?], 1)
            }
            None => Ok(x),
        }
    }

    /// The storage dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.patch_weight.dtype()
    }
}
