//! dinov2's parameter groups (`dinov2/utils/param_groups.py`), by parameter name.

use serde::{Deserialize, Serialize};

/// Per-parameter optimizer settings, as dinov2's `get_params_groups_with_decay` builds them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParamGroup {
    /// Multiplies the scheduled learning rate.
    pub lr_multiplier: f64,
    /// Multiplies the scheduled weight decay (0 = no decay).
    pub wd_multiplier: f64,
    /// Follows the last-layer lr schedule (zero while the last layer is frozen).
    pub is_last_layer: bool,
}

impl Default for ParamGroup {
    fn default() -> Self {
        Self {
            lr_multiplier: 1.0,
            wd_multiplier: 1.0,
            is_last_layer: false,
        }
    }
}

/// Which parameters are exempt from weight decay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDecayRule {
    /// dinov2's rule: names ending in `.bias` or containing `norm` or `gamma`.
    Dinov2,
    /// dinov2's rule plus the Hugging Face layer-scale names (`layer_scale`, `lambda1`/`lambda2`),
    /// position embeddings and learned tokens (`pos_embed`, `position_embeddings`, `cls_token`,
    /// `mask_token`, `register_tokens`).
    #[default]
    Extended,
}

impl NoDecayRule {
    /// True when `name` gets no weight decay.
    pub fn exempt(self, name: &str) -> bool {
        let dinov2 = name.ends_with(".bias") || name.contains("norm") || name.contains("gamma");
        match self {
            Self::Dinov2 => dinov2,
            Self::Extended => {
                dinov2
                    || [
                        "layer_scale",
                        "lambda1",
                        "lambda2",
                        "pos_embed",
                        "position_embeddings",
                        "cls_token",
                        "mask_token",
                        "register_tokens",
                    ]
                    .iter()
                    .any(|p| name.contains(p))
            }
        }
    }
}

/// The layer index of a backbone parameter for layer-wise lr decay: 0 for the embeddings
/// (patch/position embeddings, CLS/mask/register tokens), `i + 1` for block `i` (dinov2's
/// `blocks.{i}.` or Hugging Face's `encoder.layer.{i}.`), `n_layers + 1` for the rest (final
/// norm and anything after the blocks).
pub fn layer_id(name: &str, n_layers: usize) -> usize {
    let embed = [
        "pos_embed",
        "patch_embed",
        "mask_token",
        "cls_token",
        "register_tokens",
        "embeddings.",
    ];
    if embed.iter().any(|p| name.contains(p)) {
        return 0;
    }
    for marker in ["encoder.layer.", "blocks."] {
        if let Some(pos) = name.find(marker) {
            let rest = &name[pos + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(i) = digits.parse::<usize>() {
                return i + 1;
            }
        }
    }
    n_layers + 1
}

/// The name-based rules that give every parameter its [`ParamGroup`]. Build one per
/// sub-model as dinov2 does: the backbone with its depth, each head with `n_layers = 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamGroupRules {
    /// Number of transformer blocks; 0 disables layer-wise decay (heads).
    pub n_layers: usize,
    /// Layer-wise lr decay rate (dinov2 `optim.layerwise_decay`, 0.9 for RAD-DINO; 1.0 = off).
    pub layer_decay: f64,
    /// Extra lr multiplier for the patch embedding (`optim.patch_embed_lr_mult`, 0.2).
    pub patch_embed_lr_mult: f64,
    /// Weight-decay exemptions.
    pub no_decay: NoDecayRule,
}

impl ParamGroupRules {
    /// Rules for a ViT backbone of `n_layers` blocks.
    pub fn backbone(n_layers: usize, layer_decay: f64, patch_embed_lr_mult: f64) -> Self {
        Self {
            n_layers,
            layer_decay,
            patch_embed_lr_mult,
            no_decay: NoDecayRule::default(),
        }
    }

    /// Rules for a head: no layer-wise decay.
    pub fn head() -> Self {
        Self::backbone(0, 1.0, 1.0)
    }

    /// The group of parameter `name`.
    pub fn group(&self, name: &str) -> ParamGroup {
        let mut lr = if self.n_layers > 0 {
            let id = layer_id(name, self.n_layers);
            self.layer_decay.powi((self.n_layers + 1 - id) as i32)
        } else {
            1.0
        };
        if name.contains("patch_embed") {
            lr *= self.patch_embed_lr_mult;
        }
        ParamGroup {
            lr_multiplier: lr,
            wd_multiplier: if self.no_decay.exempt(name) { 0.0 } else { 1.0 },
            is_last_layer: name.contains("last_layer"),
        }
    }
}
