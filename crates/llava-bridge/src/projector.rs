//! LLaVA-1.5's `mlp2x_gelu` projector: `Linear(d_vision → d_lm) – GELU(erf) – Linear(d_lm → d_lm)`
//! applied to every patch token, with transformers' `LlavaMultiModalProjector` key names.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;

use crate::weights::Weights;
use crate::{Error, Result};

/// The trainable projector. Its tensors are [`Var`]s, so a backward pass gives them gradients.
#[derive(Debug, Clone)]
pub struct Projector {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

/// Key of the projector in a `LlavaForConditionalGeneration` checkpoint.
pub const PROJECTOR_PREFIX: &str = "multi_modal_projector";

impl Projector {
    /// PyTorch's default `nn.Linear` init (`U(±1/√fan_in)` for weights and biases) from `rng`;
    /// the variables are registered in `varmap` under `{prefix}.linear_{1,2}.{weight,bias}`.
    pub fn init(
        d_vision: usize,
        d_lm: usize,
        varmap: &VarMap,
        prefix: &str,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Result<Self> {
        let b1 = 1.0 / (d_vision as f64).sqrt();
        let b2 = 1.0 / (d_lm as f64).sqrt();
        let u = |shape: &[usize], bound: f64, rng: &mut dyn rand::RngCore| -> Result<Tensor> {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| (bound * (2.0 * rng.random::<f64>() - 1.0)) as f32)
                .collect();
            Ok(Tensor::from_vec(v, shape, device)?)
        };
        let mut tensors = std::collections::HashMap::new();
        tensors.insert(
            format!("{prefix}.linear_1.weight"),
            u(&[d_lm, d_vision], b1, rng)?,
        );
        tensors.insert(format!("{prefix}.linear_1.bias"), u(&[d_lm], b1, rng)?);
        tensors.insert(
            format!("{prefix}.linear_2.weight"),
            u(&[d_lm, d_lm], b2, rng)?,
        );
        tensors.insert(format!("{prefix}.linear_2.bias"), u(&[d_lm], b2, rng)?);
        let w = Weights::from_map("projector init", tensors);
        Self::load(&w, prefix, d_vision, d_lm, varmap, DType::F32)
    }

    /// Loads the projector from `weights` (`{prefix}.linear_{1,2}.{weight,bias}`) as trainable
    /// variables registered in `varmap`, in `dtype`.
    pub fn load(
        weights: &Weights,
        prefix: &str,
        d_vision: usize,
        d_lm: usize,
        varmap: &VarMap,
        dtype: DType,
    ) -> Result<Self> {
        let get = |name: &str, shape: &[usize]| -> Result<Var> {
            let key = format!("{prefix}.{name}");
            let t = weights.get(&key, shape)?.to_dtype(dtype)?;
            let var = Var::from_tensor(&t)?;
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::bad_input("varmap", "lock poisoned"))?;
            data.insert(key, var.clone());
            Ok(var)
        };
        Ok(Self {
            w1: get("linear_1.weight", &[d_lm, d_vision])?,
            b1: get("linear_1.bias", &[d_lm])?,
            w2: get("linear_2.weight", &[d_lm, d_lm])?,
            b2: get("linear_2.bias", &[d_lm])?,
        })
    }

    /// Input width (the encoder's token width).
    pub fn d_vision(&self) -> usize {
        self.w1.as_tensor().dims()[1]
    }

    /// Output width (the decoder's width).
    pub fn d_lm(&self) -> usize {
        self.w1.as_tensor().dims()[0]
    }

    /// Projects tokens `[.., d_vision]` to `[.., d_lm]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let dv = self.d_vision();
        if dims.last() != Some(&dv) {
            return Err(Error::bad_input(
                "image tokens",
                format!("shape {dims:?}, the projector expects last dim {dv}"),
            ));
        }
        let rows = x.elem_count() / dv;
        let x2 = x.reshape((rows, dv))?;
        let h = fused_ops::gelu_erf(
            &x2.matmul(&self.w1.as_tensor().t()?)?
                .broadcast_add(self.b1.as_tensor())?,
        )?;
        let y = h
            .matmul(&self.w2.as_tensor().t()?)?
            .broadcast_add(self.b2.as_tensor())?;
        let mut out = dims;
        if let Some(l) = out.last_mut() {
            *l = self.d_lm();
        }
        Ok(y.reshape(out)?)
    }

    /// `(name, variable)` pairs under `prefix`.
    pub fn named_vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.linear_1.weight"), self.w1.clone()),
            (format!("{prefix}.linear_1.bias"), self.b1.clone()),
            (format!("{prefix}.linear_2.weight"), self.w2.clone()),
            (format!("{prefix}.linear_2.bias"), self.b2.clone()),
        ]
    }
}
