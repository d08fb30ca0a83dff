//! A linear layer with frozen weights and an optional trainable LoRA adapter.

use candle_core::{Tensor, Var};

use crate::Result;

/// A LoRA adapter `scale · B(A x)` (PEFT's `lora_A`/`lora_B`, `scale = alpha / r`).
#[derive(Debug, Clone)]
pub struct Lora {
    /// `[r, in]`, Kaiming-uniform initialised.
    pub a: Var,
    /// `[out, r]`, zero initialised.
    pub b: Var,
    /// `alpha / r`.
    pub scale: f64,
}

/// `y = x Wᵀ + b` over the last dimension of any-rank input, plus the LoRA term when set.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// Trainable low-rank update.
    pub lora: Option<Lora>,
}

impl Linear {
    /// A layer without adapter.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.dims().first().copied().unwrap_or(0)
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.dims().get(1).copied().unwrap_or(0)
    }

    /// Applies the layer; gradients reach the input, and the LoRA variables when present.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = self.in_dim();
        let rows = x.elem_count() / in_dim.max(1);
        // 2-D matmul: one gemm instead of a batched broadcast
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = x2.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(l) = &self.lora {
            let low = x2.matmul(&l.a.as_tensor().t()?)?;
            let up = low.matmul(&l.b.as_tensor().t()?)?;
            y = (y + (up * l.scale)?)?;
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_dim();
        }
        Ok(y.reshape(out_dims)?)
    }
}
