//! LoRA adapters on the decoder's q and v projections (PEFT's default targets for llama).

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::linear::Lora;
use crate::llama::Llama;
use crate::{Error, Result};

/// Rank and scaling of the adapters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r`.
    pub rank: usize,
    /// `alpha`; the update is scaled by `alpha / r`.
    pub alpha: f64,
}

/// Variable name of an adapter matrix, PEFT style
/// (`model.layers.{i}.self_attn.{q,v}_proj.lora_{A,B}.weight`).
pub fn lora_name(layer: usize, proj: &str, which: char) -> String {
    format!("model.layers.{layer}.self_attn.{proj}.lora_{which}.weight")
}

/// Adds adapters to every q/v projection of `lm`, registering their variables in `varmap`.
/// `A` is PEFT's Kaiming-uniform init (`U(±1/√in)`), `B` is zero, so the model is unchanged
/// until the first update.
pub fn add_lora(
    lm: &mut Llama,
    cfg: &LoraConfig,
    varmap: &VarMap,
    rng: &mut impl Rng,
) -> Result<Vec<(String, Var)>> {
    if cfg.rank == 0 {
        return Err(Error::bad_input("lora", "rank must be positive"));
    }
    let mut out = Vec::new();
    let dtype = lm.dtype();
    let device = lm.device().clone();
    for (layer, proj, linear) in lm.qv_projections_mut() {
        let (o, i) = (linear.out_dim(), linear.in_dim());
        let bound = 1.0 / (i as f64).sqrt();
        let a: Vec<f32> = (0..cfg.rank * i)
            .map(|_| (bound * (2.0 * rng.random::<f64>() - 1.0)) as f32)
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (cfg.rank, i), &device)?.to_dtype(dtype)?)?;
        let b = Var::from_tensor(&Tensor::zeros((o, cfg.rank), dtype, &device)?)?;
        let (na, nb) = (lora_name(layer, proj, 'A'), lora_name(layer, proj, 'B'));
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::bad_input("varmap", "lock poisoned"))?;
            data.insert(na.clone(), a.clone());
            data.insert(nb.clone(), b.clone());
        }
        out.push((na, a.clone()));
        out.push((nb, b.clone()));
        linear.lora = Some(Lora {
            a,
            b,
            scale: cfg.alpha / cfg.rank as f64,
        });
    }
    Ok(out)
}
