//! `Dinov2Config`, read straight from a Hugging Face `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How position embeddings are resampled when the patch grid differs from the trained one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PosInterpolation {
    /// Current `transformers` `Dinov2Model`: bicubic (a = -0.75) to exactly the target grid,
    /// `align_corners=False`, no antialiasing.
    #[default]
    Bicubic,
    /// `transformers` `Dinov2WithRegistersModel`: bicubic with antialiasing (Pillow-style,
    /// a = -0.5, support widened when downsampling).
    BicubicAntialias,
    /// Original DINOv2 (and older `transformers`): bicubic with
    /// `scale_factor = (grid + 0.1) / trained_grid`, so the sampling positions use the offset
    /// scale rather than `trained/target`.
    BicubicOffset,
}

fn default_hidden_size() -> usize {
    768
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    12
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_image_size() -> usize {
    224
}
fn default_patch_size() -> usize {
    14
}
fn default_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn default_layerscale() -> f64 {
    1.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "gelu".into()
}

/// The fields of a Hugging Face `Dinov2Config` (and `Dinov2WithRegistersConfig`) this crate uses.
///
/// Unknown fields in `config.json` are ignored; missing ones take `transformers`' defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dinov2Config {
    /// Width of the tokens.
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    /// Number of transformer blocks.
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per block.
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// MLP hidden width as a multiple of `hidden_size`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Activation of the MLP (`gelu` = exact erf GELU in `transformers`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Training image size; fixes the number of position embeddings.
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// Patch size of the convolutional stem.
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// Whether q, k and v projections have biases.
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// Initial value of the layer-scale vectors (the trained values live in the weights).
    #[serde(default = "default_layerscale")]
    pub layerscale_value: f64,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// SwiGLU feed-forward instead of the GELU MLP (ViT-g).
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    /// Stochastic-depth rate, applied uniformly to every block in training mode.
    #[serde(default)]
    pub drop_path_rate: f64,
    /// Register tokens (`Dinov2WithRegistersModel`); 0 for plain DINOv2 and RAD-DINO.
    #[serde(default)]
    pub num_register_tokens: usize,
    /// Whether the model carries a mask token (needed for iBOT masking).
    #[serde(default = "default_true")]
    pub use_mask_token: bool,
    /// The `model_type` field (`dinov2` or `dinov2_with_registers`).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Position-embedding interpolation (not a `transformers` field; chosen from `model_type`
    /// when absent).
    #[serde(default)]
    pub pos_interpolation: Option<PosInterpolation>,
}

impl Dinov2Config {
    fn base(hidden: usize, layers: usize, heads: usize, image_size: usize) -> Self {
        Self {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            mlp_ratio: 4.0,
            hidden_act: "gelu".into(),
            image_size,
            patch_size: 14,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: 1.0,
            layer_norm_eps: 1e-6,
            use_swiglu_ffn: false,
            drop_path_rate: 0.0,
            num_register_tokens: 0,
            use_mask_token: true,
            model_type: Some("dinov2".into()),
            pos_interpolation: None,
        }
    }

    /// `microsoft/rad-dino`: ViT-B/14 at 518×518 (37×37 patches), eps 1e-6, no registers.
    pub fn rad_dino() -> Self {
        Self::base(768, 12, 12, 518)
    }

    /// `facebook/dinov2-small` (ViT-S/14, 384 wide).
    pub fn dinov2_small() -> Self {
        Self::base(384, 12, 6, 518)
    }

    /// `facebook/dinov2-base` (ViT-B/14).
    pub fn dinov2_base() -> Self {
        Self::base(768, 12, 12, 518)
    }

    /// `facebook/dinov2-large` (ViT-L/14).
    pub fn dinov2_large() -> Self {
        Self::base(1024, 24, 16, 518)
    }

    /// `facebook/dinov2-giant` (ViT-g/14, SwiGLU feed-forward, 1536 wide).
    pub fn dinov2_giant() -> Self {
        Self {
            use_swiglu_ffn: true,
            ..Self::base(1536, 40, 24, 518)
        }
    }

    /// A ViT-Tiny-sized DINOv2 (192 wide, 3 heads) for experiments on small data.
    pub fn vit_tiny(image_size: usize) -> Self {
        Self::base(192, 12, 3, image_size)
    }

    /// Reads a `config.json` as written by `transformers`.
    pub fn from_file(path: &Path) -> cxr_core::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| cxr_core::Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| cxr_core::Error::config(path, e.to_string()))?;
        cfg.validate()
            .map_err(|r| cxr_core::Error::config(path, r))?;
        Ok(cfg)
    }

    /// Checks the values that would make the model ill-formed.
    pub fn validate(&self) -> Result<(), String> {
        if self.hidden_size == 0 || self.num_attention_heads == 0 {
            return Err("hidden_size and num_attention_heads must be positive".into());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.patch_size == 0 || self.image_size < self.patch_size {
            return Err(format!(
                "image_size {} and patch_size {} give no patches",
                self.image_size, self.patch_size
            ));
        }
        if self.hidden_act != "gelu" && !self.use_swiglu_ffn {
            return Err(format!(
                "hidden_act `{}` is not supported (only `gelu`, the exact erf GELU)",
                self.hidden_act
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(format!(
                "drop_path_rate {} is not in [0, 1)",
                self.drop_path_rate
            ));
        }
        cxr_core::ranges::positive(&[("layer_norm_eps", self.layer_norm_eps)])?;
        // (transformers allows any float; a ratio past 64 is a typo, and 1e308 overflowed the
        // SwiGLU width)
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio <= 64.0) {
            return Err(format!("mlp_ratio {} is not in (0, 64]", self.mlp_ratio));
        }
        Ok(())
    }

    /// Patches per side at the training resolution.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Hidden width of the feed-forward block, as `transformers` computes it.
    pub fn mlp_hidden(&self) -> usize {
        let hidden = (self.hidden_size as f64 * self.mlp_ratio) as usize;
        if self.use_swiglu_ffn {
            // two thirds of the MLP width, rounded up to a multiple of 8
            (hidden * 2 / 3).div_ceil(8) * 8
        } else {
            hidden
        }
    }

    /// The interpolation in force: the explicit field, else the one of `model_type`.
    pub fn interpolation(&self) -> PosInterpolation {
        self.pos_interpolation
            .unwrap_or(match self.model_type.as_deref() {
                Some("dinov2_with_registers") => PosInterpolation::BicubicAntialias,
                _ => PosInterpolation::Bicubic,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_transformers_config() {
        let json = r#"{"architectures":["Dinov2Model"],"hidden_size":768,"image_size":518,
            "layer_norm_eps":1e-06,"model_type":"dinov2","num_hidden_layers":12,
            "num_attention_heads":12,"patch_size":14,"torch_dtype":"float32"}"#;
        let cfg: Dinov2Config = serde_json::from_str(json).unwrap();
        assert_eq!(cfg, Dinov2Config::rad_dino());
        assert_eq!(cfg.grid_size(), 37);
        assert_eq!(cfg.mlp_hidden(), 3072);
        assert_eq!(cfg.interpolation(), PosInterpolation::Bicubic);
    }

    #[test]
    fn swiglu_width_matches_transformers() {
        // ViT-g: int(1536 * 4 * 2 / 3) = 4096, already a multiple of 8
        assert_eq!(Dinov2Config::dinov2_giant().mlp_hidden(), 4096);
        let odd = Dinov2Config {
            use_swiglu_ffn: true,
            ..Dinov2Config::base(100, 1, 4, 28)
        };
        // int(400 * 2 / 3) = 266 -> 272
        assert_eq!(odd.mlp_hidden(), 272);
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = Dinov2Config {
            num_attention_heads: 5,
            ..Dinov2Config::rad_dino()
        };
        assert!(bad.validate().is_err());
        for ratio in [0.0, -1.0, 1e308, f64::NAN] {
            let bad = Dinov2Config {
                mlp_ratio: ratio,
                use_swiglu_ffn: true,
                ..Dinov2Config::rad_dino()
            };
            assert_eq!(
                bad.validate().unwrap_err(),
                format!("mlp_ratio {ratio} is not in (0, 64]")
            );
        }
        let bad = Dinov2Config {
            layer_norm_eps: -0.5,
            ..Dinov2Config::rad_dino()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "layer_norm_eps -0.5 is not a positive number"
        );
        // a temporary folder, removed afterwards, not a file left in the system's temp dir
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("vit-backbone-bad-config.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = Dinov2Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("vit-backbone-bad-config.json"), "{err}");
    }
}
