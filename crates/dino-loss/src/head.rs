//! dinov2's `DINOHead`: MLP → L2 normalisation → weight-normalised prototype layer.

use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sizes of a [`DinoHead`]; the defaults are dinov2's (`ssl_default_config.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DinoHeadConfig {
    /// Width of the backbone features fed to the head.
    pub in_dim: usize,
    /// Number of prototypes `K` (dinov2: 65536).
    pub n_prototypes: usize,
    /// Hidden width of the MLP (2048).
    pub hidden_dim: usize,
    /// Bottleneck width before the prototype layer (256).
    pub bottleneck_dim: usize,
    /// Number of linear layers in the MLP (3); 1 means a single in→bottleneck layer.
    pub nlayers: usize,
    /// Whether the MLP's linear layers have biases (true).
    pub mlp_bias: bool,
    /// Train the weight-norm gain `last_layer.weight_g`. dinov2 leaves it trainable
    /// (initialised to 1); DINO v1's `norm_last_layer` and this crate's default freeze it, so
    /// the prototypes are the row-normalised `weight_v`.
    pub train_weight_g: bool,
}

impl Default for DinoHeadConfig {
    fn default() -> Self {
        Self {
            in_dim: 768,
            n_prototypes: 65536,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            nlayers: 3,
            mlp_bias: true,
            train_weight_g: false,
        }
    }
}

impl DinoHeadConfig {
    /// dinov2's default head for features of width `in_dim` with `n_prototypes` outputs.
    pub fn new(in_dim: usize, n_prototypes: usize) -> Self {
        Self {
            in_dim,
            n_prototypes,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        if self.in_dim == 0 || self.n_prototypes == 0 || self.bottleneck_dim == 0 {
            return Err(Error::Config(format!(
                "DINO head sizes must be positive, got {self:?}"
            )));
        }
        if self.nlayers > 1 && self.hidden_dim == 0 {
            return Err(Error::Config(
                "DINO head hidden_dim must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Names and shapes of the MLP's linear layers, in dinov2's key layout
    /// (`mlp.0`, `mlp.2`, … — the GELUs take the odd indices; `mlp` when `nlayers` is 1).
    fn linear_layers(&self) -> Vec<(String, usize, usize)> {
        let nlayers = self.nlayers.max(1);
        if nlayers == 1 {
            return vec![("mlp".into(), self.in_dim, self.bottleneck_dim)];
        }
        (0..nlayers)
            .map(|i| {
                let fan_in = if i == 0 { self.in_dim } else { self.hidden_dim };
                let fan_out = if i + 1 == nlayers {
                    self.bottleneck_dim
                } else {
                    self.hidden_dim
                };
                (format!("mlp.{}", 2 * i), fan_in, fan_out)
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// The DINO/iBOT projection head.
///
/// `forward(x) = normalize(mlp(x)) · (g ⊙ v / ‖v‖_row)ᵀ` where `v` is `last_layer.weight_v`
/// (`[K, bottleneck]`) and `g` is `last_layer.weight_g` (`[K, 1]`).
#[derive(Debug, Clone)]
pub struct DinoHead {
    config: DinoHeadConfig,
    layers: Vec<Linear>,
    weight_v: Tensor,
    weight_g: Tensor,
}

impl DinoHead {
    /// Builds the head from `vb`: with a `VarMap`-backed builder the missing tensors are
    /// created with dinov2's initialisation (truncated normal, std 0.02, for the MLP weights —
    /// its ±2 truncation is absolute, so with std 0.02 it equals a plain normal — zero biases,
    /// PyTorch's default `Linear` init for `weight_v`, `weight_g = 1`); with a safetensors
    /// builder the tensors are loaded and shape-checked. A frozen `weight_g`
    /// ([`DinoHeadConfig::train_weight_g`] false) is read when present but never becomes a
    /// trainable variable.
    pub fn new(config: DinoHeadConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let mut layers = Vec::new();
        for (name, fan_in, fan_out) in config.linear_layers() {
            let lvb = vb.pp(&name);
            let weight = lvb.get_with_hints(
                (fan_out, fan_in),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?;
            let bias = if config.mlp_bias {
                Some(lvb.get_with_hints(fan_out, "bias", Init::Const(0.0))?)
            } else {
                None
            };
            layers.push(Linear { weight, bias });
        }
        let k = config.n_prototypes;
        let lvb = vb.pp("last_layer");
        let bound = 1.0 / (config.bottleneck_dim as f64).sqrt();
        let weight_v = lvb.get_with_hints(
            (k, config.bottleneck_dim),
            "weight_v",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let weight_g = if config.train_weight_g {
            lvb.get_with_hints((k, 1), "weight_g", Init::Const(1.0))?
        } else if lvb.contains_tensor("weight_g") {
            lvb.get((k, 1), "weight_g")?.detach()
        } else {
            Tensor::ones((k, 1), vb.dtype(), vb.device())?
        };
        Ok(Self {
            config,
            layers,
            weight_v,
            weight_g,
        })
    }

    /// Creates the head's variables in `varmap` under `prefix` (e.g. `"dino_head."`) with
    /// dinov2's initialisation drawn from `rng` (reproducible, unlike candle's unseeded
    /// `randn`), then builds the head from them. Existing entries are overwritten.
    pub fn init_seeded(
        config: DinoHeadConfig,
        varmap: &candle_nn::VarMap,
        prefix: &str,
        rng: &mut impl rand::Rng,
        device: &candle_core::Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut init: Vec<(String, Tensor)> = Vec::new();
        for (name, fan_in, fan_out) in config.linear_layers() {
            init.push((
                format!("{name}.weight"),
                train_utils::init::trunc_normal(
                    &[fan_out, fan_in],
                    0.0,
                    0.02,
                    -2.0,
                    2.0,
                    rng,
                    device,
                )
                .map_err(|e| Error::Config(e.to_string()))?,
            ));
            if config.mlp_bias {
                init.push((
                    format!("{name}.bias"),
                    Tensor::zeros(fan_out, DType::F32, device)?,
                ));
            }
        }
        let bound = 1.0 / (config.bottleneck_dim as f64).sqrt();
        init.push((
            "last_layer.weight_v".into(),
            train_utils::init::uniform(
                &[config.n_prototypes, config.bottleneck_dim],
                -bound,
                bound,
                rng,
                device,
            )
            .map_err(|e| Error::Config(e.to_string()))?,
        ));
        if config.train_weight_g {
            init.push((
                "last_layer.weight_g".into(),
                Tensor::ones((config.n_prototypes, 1), DType::F32, device)?,
            ));
        }
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Config("the VarMap's lock is poisoned".into()))?;
            for (name, t) in init {
                data.insert(
                    format!("{prefix}{name}"),
                    candle_core::Var::from_tensor(&t)?,
                );
            }
        }
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        let vb = match prefix.strip_suffix('.') {
            Some(p) if !p.is_empty() => vb.pp(p),
            _ => vb,
        };
        Self::new(config, vb)
    }

    /// The head's sizes.
    pub fn config(&self) -> &DinoHeadConfig {
        &self.config
    }

    /// The weight-norm gain `[K, 1]` (a constant unless `train_weight_g`).
    pub fn weight_g(&self) -> &Tensor {
        &self.weight_g
    }

    /// Every tensor of the head under its dinov2 key, including a frozen `weight_g`, for
    /// writing checkpoints in the layout [`DinoHead::new`] reads.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, _, _), layer) in self.config.linear_layers().iter().zip(&self.layers) {
            out.push((format!("{name}.weight"), layer.weight.clone()));
            if let Some(b) = &layer.bias {
                out.push((format!("{name}.bias"), b.clone()));
            }
        }
        out.push(("last_layer.weight_g".into(), self.weight_g.clone()));
        out.push(("last_layer.weight_v".into(), self.weight_v.clone()));
        out
    }

    /// The MLP followed by L2 normalisation: the bottleneck features `[.., bottleneck]`.
    pub fn bottleneck(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.is_empty() || dims[dims.len() - 1] != self.config.in_dim {
            return Err(Error::bad_input(
                "head input",
                format!("[.., {}]", self.config.in_dim),
                &dims,
            ));
        }
        // contiguous: CUDA matmul needs a dense left operand (e.g. a CLS-token view)
        let mut h = x.flatten_to(dims.len().saturating_sub(2))?.contiguous()?;
        if h.rank() == 1 {
            h = h.unsqueeze(0)?;
        }
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            h = fused_ops::linear(&h, &layer.weight, layer.bias.as_ref())?;
            if i + 1 < n {
                h = fused_ops::gelu_erf(&h)?;
            }
        }
        // dinov2 uses eps 1e-6 in half precision and 1e-12 otherwise
        let eps = match h.dtype() {
            DType::F16 | DType::BF16 => 1e-6,
            _ => 1e-12,
        };
        let h = l2_normalize_eps(&h, eps)?;
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.config.bottleneck_dim;
        Ok(h.reshape(out_dims)?)
    }

    /// The effective prototype matrix `g ⊙ v / ‖v‖_row`, `[K, bottleneck]`.
    pub fn prototypes(&self) -> Result<Tensor> {
        // weight_norm(dim=0): the norm runs over every dimension but the output one
        Ok(fused_ops::weight_norm_rows(&self.weight_v, &self.weight_g)?)
    }

    /// Runs the head: `[.., in_dim]` → `[.., K]` logits.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let z = self.bottleneck(x)?;
        let dims = z.dims().to_vec();
        let z2 = z.flatten_to(dims.len().saturating_sub(2))?;
        // the weight-normalised prototypes without forming the [K, bottleneck] matrix when the
        // gain is frozen (dinov2's norm_last_layer); linear of the weight norm otherwise
        let logits = fused_ops::weight_normed_linear(&z2, &self.weight_v, &self.weight_g)?;
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.config.n_prototypes;
        Ok(logits.reshape(out_dims)?)
    }

    /// Runs the head once on the rows of several `[n_i, in_dim]` inputs stacked, as dinov2
    /// does for the student's crops and masked patches, and returns each input's logits.
    /// The same values as one [`DinoHead::forward`] per input, with the weight-normalised
    /// prototype matrix (`[K, bottleneck]`, 16.8 M values at K = 65 536) built, multiplied
    /// and differentiated once instead of once per input.
    pub fn forward_many(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let rows = inputs
            .iter()
            .map(|t| match t.dims() {
                &[n, d] if d == self.config.in_dim => Ok(n),
                dims => Err(Error::bad_input(
                    "head input",
                    format!("[rows, {}] for every input", self.config.in_dim),
                    dims,
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let logits = self.forward(&Tensor::cat(inputs, 0)?)?;
        let mut start = 0;
        let mut out = Vec::with_capacity(rows.len());
        for n in rows {
            out.push(logits.narrow(0, start, n)?);
            start += n;
        }
        Ok(out)
    }
}

/// `x / max(‖x‖₂, eps)` over the last dimension, as `torch.nn.functional.normalize`.
pub(crate) fn l2_normalize_eps(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(eps)?;
    x.broadcast_div(&norm)
}
