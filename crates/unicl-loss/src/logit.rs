//! The learnable logit scale (log-parameterised, open_clip's post-step clamp) and SigLIP's bias.

use candle_core::{DType, Device, Tensor, Var};

use crate::Result;

/// Largest logit scale: after each optimizer step the log-space parameter is clamped to
/// `[0, ln 100]`, so `exp(θ) ∈ [1, 100]` (CLIP / open_clip).
pub const MAX_LOGIT_SCALE: f64 = 100.0;

/// UniCL's initial log-space parameter: `logit_scale = 1`, so the scale is `e ≈ 2.718`.
pub const UNICL_INIT_LOG_SCALE: f64 = 1.0;

/// CLIP's initial log-space parameter, `ln(1 / 0.07)` (scale ≈ 14.29).
pub fn clip_init_log_scale() -> f64 {
    (1.0f64 / 0.07).ln()
}

/// SigLIP's initial log-space parameter, `ln 10` (scale 10).
pub fn siglip_init_log_scale() -> f64 {
    10f64.ln()
}

/// SigLIP's initial logit bias.
pub const SIGLIP_INIT_BIAS: f64 = -10.0;

/// The trainable temperature parameters of a contrastive objective: `θ` with
/// `scale = exp(θ)`, and (SigLIP only) a bias `b` added to every logit.
///
/// The forward pass uses `exp(θ)` unclamped, so `θ` always receives a gradient; call
/// [`LogitParams::clamp_`] after every optimizer step, as open_clip does.
#[derive(Debug, Clone)]
pub struct LogitParams {
    log_scale: Var,
    bias: Option<Var>,
}

impl LogitParams {
    /// Parameters with the given initial `θ` and optional bias, as 0-d tensors.
    pub fn new(
        init_log_scale: f64,
        init_bias: Option<f64>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let scalar = |v: f64| -> Result<Var> {
            Ok(Var::from_tensor(&Tensor::new(v, device)?.to_dtype(dtype)?)?)
        };
        Ok(Self {
            log_scale: scalar(init_log_scale)?,
            bias: init_bias.map(scalar).transpose()?,
        })
    }

    /// UniCL's initialisation: `θ = 1`, no bias.
    pub fn unicl(dtype: DType, device: &Device) -> Result<Self> {
        Self::new(UNICL_INIT_LOG_SCALE, None, dtype, device)
    }

    /// CLIP's initialisation: `θ = ln(1/0.07)`, no bias.
    pub fn clip(dtype: DType, device: &Device) -> Result<Self> {
        Self::new(clip_init_log_scale(), None, dtype, device)
    }

    /// SigLIP's initialisation: `θ = ln 10`, `b = −10`.
    pub fn siglip(dtype: DType, device: &Device) -> Result<Self> {
        Self::new(
            siglip_init_log_scale(),
            Some(SIGLIP_INIT_BIAS),
            dtype,
            device,
        )
    }

    /// The log-space scale parameter `θ` (exclude it from weight decay, as UniCL does).
    pub fn log_scale(&self) -> &Var {
        &self.log_scale
    }

    /// The bias parameter, if any.
    pub fn bias_var(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// `exp(θ)`, differentiable w.r.t. `θ`: the `scale` argument of every loss.
    pub fn scale(&self) -> Result<Tensor> {
        Ok(self.log_scale.as_tensor().exp()?)
    }

    /// The bias tensor, if any: the `bias` argument of the losses.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref().map(|v| v.as_tensor())
    }

    /// Every trainable parameter, for the optimizer.
    pub fn vars(&self) -> Vec<Var> {
        std::iter::once(self.log_scale.clone())
            .chain(self.bias.clone())
            .collect()
    }

    /// Clamps `θ` in place to `[0, ln 100]` (call after each optimizer step).
    pub fn clamp_(&self) -> Result<()> {
        let clamped = self
            .log_scale
            .as_tensor()
            .detach()
            .clamp(0.0, MAX_LOGIT_SCALE.ln())?;
        self.log_scale.set(&clamped)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inits_and_clamp() {
        let dev = Device::Cpu;
        let p = LogitParams::unicl(DType::F64, &dev).unwrap();
        let s: f64 = p.scale().unwrap().to_scalar().unwrap();
        assert!((s - std::f64::consts::E).abs() < 1e-12);
        assert!(p.bias().is_none());
        let c = LogitParams::clip(DType::F64, &dev).unwrap();
        let s: f64 = c.scale().unwrap().to_scalar().unwrap();
        assert!((s - 1.0 / 0.07).abs() < 1e-9);
        let g = LogitParams::siglip(DType::F32, &dev).unwrap();
        assert_eq!(g.vars().len(), 2);
        assert_eq!(g.bias().unwrap().to_scalar::<f32>().unwrap(), -10.0);

        let big = LogitParams::new(7.0, None, DType::F64, &dev).unwrap();
        big.clamp_().unwrap();
        let s: f64 = big.scale().unwrap().to_scalar().unwrap();
        assert!((s - 100.0).abs() < 1e-9);
        let neg = LogitParams::new(-2.0, None, DType::F64, &dev).unwrap();
        neg.clamp_().unwrap();
        assert_eq!(neg.log_scale().as_tensor().to_scalar::<f64>().unwrap(), 0.0);
    }
}
