//! `Dinov2Model`: the RAD-DINO / DINOv2 encoder, output for output as `transformers`.

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use cxr_core::{
    Encoder, FeatureInfo, FeatureRequest, Features, Intermediate, LayerInfo, Preprocessing,
};

use crate::block::{Block, DropPathMasks};
use crate::config::Dinov2Config;
use crate::embeddings::Embeddings;
use crate::layers::LayerNorm;

/// Options of one forward pass beyond the pixels.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions<'a> {
    /// `[B, N]` patch mask (1 = replace by the mask token), as iBOT uses it.
    pub bool_masked_pos: Option<&'a Tensor>,
    /// Keep every hidden state (`hidden_states[0]` = embeddings, `[i + 1]` = block `i`).
    pub output_hidden_states: bool,
    /// Keep the attention probabilities of these blocks (all blocks when `all_attentions`).
    pub attention_layers: Vec<usize>,
    /// Keep the attention probabilities of every block.
    pub all_attentions: bool,
    /// Training mode: stochastic depth is applied.
    pub train: bool,
}

/// What `Dinov2Model::forward` returns, named as in `transformers`.
#[derive(Debug, Clone)]
pub struct Dinov2Output {
    /// `[B, 1 + R + N, D]` after the final layer norm.
    pub last_hidden_state: Tensor,
    /// `[B, D]`: the normed class token.
    pub pooler_output: Tensor,
    /// Every hidden state when asked for (`num_hidden_layers + 1` of them), else empty.
    pub hidden_states: Vec<Tensor>,
    /// `(block, [B, heads, T, T])` attention probabilities of the blocks asked for.
    pub attentions: Vec<(usize, Tensor)>,
    /// `(rows, cols)` of the patch grid.
    pub grid: (usize, usize),
}

/// The DINOv2 vision transformer with `transformers`' parameter names.
#[derive(Debug)]
pub struct Dinov2Model {
    embeddings: Embeddings,
    layers: Vec<Block>,
    layernorm: LayerNorm,
    cfg: Dinov2Config,
    preprocessing: Preprocessing,
    device: Device,
    dtype: DType,
    drop_path_seed: AtomicU64,
    drop_path_calls: AtomicU64,
}

impl Dinov2Model {
    /// Builds the model from `vb` (weights without prefix, as in `model.safetensors`).
    ///
    /// With plain tensors (e.g. `VarBuilder::from_mmaped_safetensors`) the fused inference
    /// kernels run; with a `VarMap`-backed builder every op is differentiable.
    pub fn new(cfg: &Dinov2Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let embeddings = Embeddings::new(cfg, vb.pp("embeddings"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let layernorm = LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layernorm"))?;
        Ok(Self {
            embeddings,
            layers,
            layernorm,
            cfg: cfg.clone(),
            preprocessing: default_preprocessing(cfg),
            device: vb.device().clone(),
            dtype: vb.dtype(),
            drop_path_seed: AtomicU64::new(0),
            drop_path_calls: AtomicU64::new(0),
        })
    }

    /// Replaces the preprocessing reported by [`Encoder::preprocessing`] (normally read from
    /// the checkpoint's `preprocessor_config.json`).
    pub fn with_preprocessing(mut self, preprocessing: Preprocessing) -> Self {
        self.preprocessing = preprocessing;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Dinov2Config {
        &self.cfg
    }

    /// The weight dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Seeds stochastic depth. Masks are a pure function of (seed, call counter, block), so a
    /// run restored with [`Self::set_drop_path_state`] draws the same masks again.
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

    fn drop_path_masks(&self, batch: usize, call: u64) -> Result<Vec<DropPathMasks>> {
        let rate = self.cfg.drop_path_rate;
        let keep = 1.0 - rate;
        let seed = self.drop_path_seed.load(Ordering::SeqCst);
        let mut masks = Vec::with_capacity(self.layers.len());
        for layer in 0..self.layers.len() {
            let branch = |which: u64| -> Result<Tensor> {
                let v: Vec<f32> = (0..batch)
                    .map(|s| {
                        let u = crate::davit::drop_path::unit_uniform(
                            seed,
                            call,
                            layer as u64,
                            which,
                            s as u64,
                        );
                        // floor(u + keep) / keep, as timm and transformers draw it
                        ((u + keep).floor() / keep) as f32
                    })
                    .collect();
                Tensor::from_vec(v, (batch, 1, 1), &self.device)?.to_dtype(self.dtype)
            };
            masks.push(DropPathMasks {
                attention: branch(0)?,
                mlp: branch(1)?,
            });
        }
        Ok(masks)
    }

    /// The full forward pass.
    pub fn forward(&self, pixels: &Tensor, opts: &ForwardOptions) -> Result<Dinov2Output> {
        let (b, _, h, w) = pixels.dims4()?;
        let grid = self.embeddings.grid_for(h, w);
        let mut x = self.embeddings.forward(pixels, opts.bool_masked_pos)?;
        let drop_path = if opts.train && self.cfg.drop_path_rate > 0.0 {
            let call = self.drop_path_calls.fetch_add(1, Ordering::SeqCst);
            Some(self.drop_path_masks(b, call)?)
        } else {
            None
        };
        let mut hidden_states = Vec::new();
        let mut attentions = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if opts.output_hidden_states {
                hidden_states.push(x.clone());
            }
            let keep = opts.all_attentions || opts.attention_layers.contains(&i);
            let (next, probs) = layer.forward(&x, keep, drop_path.as_ref().map(|m| &m[i]))?;
            if let Some(p) = probs {
                attentions.push((i, p));
            }
            x = next;
        }
        if opts.output_hidden_states {
            hidden_states.push(x.clone());
        }
        let last_hidden_state = self.layernorm.forward(&x)?;
        // contiguous: CUDA matmuls (heads, KoLeo) reject the strided CLS view
        let pooler_output = last_hidden_state
            .narrow(1, 0, 1)?
            .squeeze(1)?
            .contiguous()?;
        Ok(Dinov2Output {
            last_hidden_state,
            pooler_output,
            hidden_states,
            attentions,
            grid,
        })
    }

    /// [`Self::forward`] of several inputs at once, as dinov2's `forward_features_list` runs
    /// its global and local crops: each input is embedded on its own, then the tokens of all
    /// of them go through every block as one `[T, D]` matrix (one GEMM per linear layer, one
    /// graph node per op, each image attending only to its own tokens) and are split again
    /// after the final layer norm. The outputs, stochastic-depth masks included, equal those of
    /// one [`Self::forward`] per input in order (up to float rounding). Inputs that ask for
    /// hidden states or attention probabilities run one by one.
    pub fn forward_list(&self, inputs: &[(&Tensor, &ForwardOptions)]) -> Result<Vec<Dinov2Output>> {
        let one_by_one = inputs.len() < 2
            || inputs.iter().any(|(_, o)| {
                o.output_hidden_states || o.all_attentions || !o.attention_layers.is_empty()
            });
        if one_by_one {
            return inputs.iter().map(|(p, o)| self.forward(p, o)).collect();
        }
        let d = self.cfg.hidden_size;
        let mut tokens = Vec::with_capacity(inputs.len());
        let mut groups = Vec::with_capacity(inputs.len());
        let mut grids = Vec::with_capacity(inputs.len());
        let mut masks = Vec::with_capacity(inputs.len());
        for (pixels, opts) in inputs {
            let (b, _, h, w) = pixels.dims4()?;
            grids.push(self.embeddings.grid_for(h, w));
            let x = self.embeddings.forward(pixels, opts.bool_masked_pos)?;
            let n = x.dim(1)?;
            tokens.push(x.reshape((b * n, d))?);
            groups.push((b, n));
            masks.push(if opts.train && self.cfg.drop_path_rate > 0.0 {
                let call = self.drop_path_calls.fetch_add(1, Ordering::SeqCst);
                Some(self.drop_path_masks(b, call)?)
            } else {
                None
            });
        }
        let drop_path = per_token_masks(&masks, &groups, self.layers.len(), self.dtype)?;
        let mut x = Tensor::cat(&tokens, 0)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward_varlen(&x, &groups, drop_path.as_ref().map(|m| &m[i]))?;
        }
        let x = self.layernorm.forward(&x)?;
        let mut outputs = Vec::with_capacity(inputs.len());
        let mut row = 0;
        for (&(b, n), grid) in groups.iter().zip(grids) {
            let last_hidden_state = x.narrow(0, row, b * n)?.reshape((b, n, d))?;
            let pooler_output = last_hidden_state
                .narrow(1, 0, 1)?
                .squeeze(1)?
                .contiguous()?;
            outputs.push(Dinov2Output {
                last_hidden_state,
                pooler_output,
                hidden_states: Vec::new(),
                attentions: Vec::new(),
                grid,
            });
            row += b * n;
        }
        Ok(outputs)
    }

    /// Number of leading non-patch tokens (class + registers).
    pub fn prefix_tokens(&self) -> usize {
        1 + self.cfg.num_register_tokens
    }
}

/// The per-sample stochastic-depth masks of each input (`None`: no drop path for it) as
/// per-token `[T, 1]` factors for every layer, or `None` when no input has any.
fn per_token_masks(
    masks: &[Option<Vec<DropPathMasks>>],
    groups: &[(usize, usize)],
    layers: usize,
    dtype: DType,
) -> Result<Option<Vec<DropPathMasks>>> {
    let Some(device) = masks
        .iter()
        .flatten()
        .flatten()
        .next()
        .map(|m| m.attention.device())
    else {
        return Ok(None);
    };
    let expand = |i: usize, pick: &dyn Fn(&DropPathMasks) -> &Tensor| -> Result<Tensor> {
        let parts = masks
            .iter()
            .zip(groups)
            .map(|(m, &(b, n))| match m {
                Some(m) => pick(&m[i])
                    .broadcast_as((b, n, 1))?
                    .contiguous()?
                    .reshape((b * n, 1)),
                None => Tensor::ones((b * n, 1), dtype, device),
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    };
    (0..layers)
        .map(|i| {
            Ok(DropPathMasks {
                attention: expand(i, &|m| &m.attention)?,
                mlp: expand(i, &|m| &m.mlp)?,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Preprocessing when no `preprocessor_config.json` is at hand: DINOv2's ImageNet statistics
/// at the model's training size.
fn default_preprocessing(cfg: &Dinov2Config) -> Preprocessing {
    let mut p = Preprocessing::imagenet(cfg.image_size);
    p.shortest_edge = Some(cfg.image_size);
    p
}

impl Encoder for Dinov2Model {
    fn forward_features(
        &self,
        pixels: &Tensor,
        request: &FeatureRequest,
    ) -> cxr_core::Result<Features> {
        if pixels.rank() != 4 {
            return Err(cxr_core::Error::BadInput {
                name: "pixels".into(),
                expected: "[B, 3, H, W]".into(),
                found: pixels.dims().to_vec(),
            });
        }
        if let Some(&bad) = request.layers.iter().find(|&&l| l >= self.layers.len()) {
            return Err(cxr_core::Error::BadInput {
                name: "request.layers".into(),
                expected: format!("layer indices below {}", self.layers.len()),
                found: vec![bad],
            });
        }
        let out = self.forward(
            pixels,
            &ForwardOptions {
                output_hidden_states: !request.layers.is_empty(),
                train: request.train,
                ..Default::default()
            },
        )?;
        let prefix = self.prefix_tokens();
        let n = out.grid.0 * out.grid.1;
        let intermediates = request
            .layers
            .iter()
            .map(|&layer| {
                let hs = &out.hidden_states[layer + 1];
                Ok(Intermediate {
                    layer,
                    tokens: hs.narrow(1, prefix, n)?,
                    grid: out.grid,
                    cls: Some(hs.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Features {
            pooled: out.pooler_output,
            patch_tokens: out.last_hidden_state.narrow(1, prefix, n)?,
            grid: out.grid,
            intermediates,
        })
    }

    fn feature_info(&self) -> FeatureInfo {
        let layer = LayerInfo {
            channels: self.cfg.hidden_size,
            stride: self.cfg.patch_size,
        };
        FeatureInfo {
            embed_dim: self.cfg.hidden_size,
            patch_stride: self.cfg.patch_size,
            layers: vec![layer; self.cfg.num_hidden_layers],
        }
    }

    fn preprocessing(&self) -> Preprocessing {
        self.preprocessing.clone()
    }

    fn device(&self) -> &Device {
        &self.device
    }
    fn stochastic_depth_state(&self) -> Option<(u64, u64)> {
        Some(self.drop_path_state())
    }

    fn set_stochastic_depth_state(&self, seed: u64, calls: u64) {
        self.set_drop_path_state(seed, calls);
    }
}
