//! Spatial window attention (`window_attn.fn`): multi-head self-attention inside
//! non-overlapping `window × window` windows.
//!
//! As in the reference, a grid that is not a multiple of the window is padded with zero
//! tokens on the right and bottom (after the pre-norm), the padding takes part in the
//! attention of the last windows as ordinary keys (no mask), and is cropped afterwards.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::Linear;

/// Window multi-head self-attention with a fused `qkv` projection and `proj`.
#[derive(Debug, Clone)]
pub struct WindowAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    window: usize,
}

impl WindowAttention {
    /// Loads `qkv` and `proj` under `vb` (`window_attn.fn`).
    pub fn new(
        dim: usize,
        heads: usize,
        window: usize,
        qkv_bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            qkv: Linear::new(dim, 3 * dim, qkv_bias, vb.pp("qkv"))?,
            proj: Linear::new(dim, dim, true, vb.pp("proj"))?,
            heads,
            window,
        })
    }

    /// Attention of normed tokens `x` `[B, H·W, C]` on a `(H, W)` grid.
    pub fn forward(&self, x: &Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        if n != h * w {
            candle_core::bail!("window attention: {n} tokens do not fill a {h}x{w} grid");
        }
        let ws = self.window;
        let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
        let mut grid = x.reshape((b, h, w, c))?;
        if ph > 0 {
            grid = grid.pad_with_zeros(1, 0, ph)?;
        }
        if pw > 0 {
            grid = grid.pad_with_zeros(2, 0, pw)?;
        }
        let (hp, wp) = (h + ph, w + pw);
        let (nh, nw) = (hp / ws, wp / ws);
        let windows = grid
            .reshape((b, nh, ws, nw, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b * nh * nw, ws * ws, c))?;
        let ctx = self.attend(&self.qkv.forward(&windows)?, c)?;
        let y = self.proj.forward(&ctx)?;
        let mut y = y
            .reshape((b, nh, nw, ws, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .reshape((b, hp, wp, c))?;
        if ph > 0 || pw > 0 {
            y = y.narrow(1, 0, h)?.narrow(2, 0, w)?;
        }
        y.contiguous()?.reshape((b, n, c))
    }

    /// Softmax attention per window and head from `qkv` `[B', T, 3C]`, giving `[B', T, C]`.
    fn attend(&self, qkv: &Tensor, c: usize) -> Result<Tensor> {
        let head_dim = c / self.heads;
        fused_ops::self_attention(qkv, self.heads, (head_dim as f64).powf(-0.5))
    }
}
