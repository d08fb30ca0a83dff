//! `DavitConfig`: the hyper-parameters of a DaViT image tower (`davit_v1`, standard
//! parametrisation), named as MedImageInsight's config spells them in lower case.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The architecture of a DaViT tower. Lists hold one entry per stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DavitConfig {
    /// Input channels (3).
    #[serde(default = "three")]
    pub in_chans: usize,
    /// Training resolution (square), reported by the preprocessing.
    pub image_size: usize,
    /// Width of each stage (`DIM_EMBED`).
    pub embed_dims: Vec<usize>,
    /// Number of (spatial, channel) block pairs per stage (`DEPTHS`).
    pub depths: Vec<usize>,
    /// Heads of the window attention per stage (`NUM_HEADS`).
    pub num_heads: Vec<usize>,
    /// Groups of the channel attention per stage (`NUM_GROUPS`).
    pub num_groups: Vec<usize>,
    /// Kernel of each patch-embedding conv (`PATCH_SIZE`).
    pub patch_size: Vec<usize>,
    /// Stride of each patch-embedding conv (`PATCH_STRIDE`).
    pub patch_stride: Vec<usize>,
    /// Zero padding of each patch-embedding conv (`PATCH_PADDING`).
    pub patch_padding: Vec<usize>,
    /// Per stage: LayerNorm before the conv (on the previous stage's tokens) instead of after.
    pub patch_prenorm: Vec<bool>,
    /// Side of the square attention windows (`WINDOW_SIZE`).
    pub window_size: usize,
    /// MLP hidden width as a multiple of the stage width.
    #[serde(default = "four")]
    pub mlp_ratio: f64,
    /// Bias in the q/k/v projections.
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// Largest stochastic-depth rate; block rates rise linearly from 0 over all 2·Σdepths blocks.
    #[serde(default)]
    pub drop_path_rate: f64,
    /// Depthwise conv position encoding before each attention.
    #[serde(default = "yes")]
    pub conv_at_attn: bool,
    /// Depthwise conv position encoding before each MLP.
    #[serde(default = "yes")]
    pub conv_at_ffn: bool,
    /// Channel attention scaled by `N^-1/2` (tokens) instead of `C^-1/2`.
    #[serde(default = "yes")]
    pub dynamic_scale: bool,
    /// Epsilon of every LayerNorm (PyTorch's default).
    #[serde(default = "ln_eps")]
    pub layer_norm_eps: f64,
    /// Width of the UniCL image projection (`image_projection`), if the tower has one.
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

fn three() -> usize {
    3
}
fn four() -> f64 {
    4.0
}
fn yes() -> bool {
    true
}
fn ln_eps() -> f64 {
    1e-5
}

impl DavitConfig {
    /// MedImageInsight's released image tower (2024.09.27 `config.yaml`): 480×480, widths
    /// 256…2048, depths 1-1-9-1, window 12, projection to 1024; ≈362.7M parameters.
    pub fn mi2() -> Self {
        Self {
            in_chans: 3,
            image_size: 480,
            embed_dims: vec![256, 512, 1024, 2048],
            depths: vec![1, 1, 9, 1],
            num_heads: vec![8, 16, 32, 64],
            num_groups: vec![8, 16, 32, 64],
            patch_size: vec![7, 3, 3, 3],
            patch_stride: vec![4, 2, 2, 2],
            patch_padding: vec![3, 1, 1, 1],
            patch_prenorm: vec![false, true, true, true],
            window_size: 12,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.2,
            conv_at_attn: true,
            conv_at_ffn: true,
            dynamic_scale: true,
            layer_norm_eps: 1e-5,
            projection_dim: Some(1024),
        }
    }

    /// A tiny tower with MI2's structure (widths 8…32, window 4) for tests.
    pub fn tiny() -> Self {
        Self {
            image_size: 64,
            embed_dims: vec![8, 16, 24, 32],
            depths: vec![1, 1, 2, 1],
            num_heads: vec![2, 2, 4, 4],
            num_groups: vec![2, 4, 4, 8],
            window_size: 4,
            drop_path_rate: 0.1,
            projection_dim: Some(12),
            ..Self::mi2()
        }
    }

    /// Reads the JSON form of the config.
    pub fn from_file(path: &Path) -> cxr_core::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| cxr_core::Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| cxr_core::Error::config(path, e.to_string()))?;
        cfg.validate()
            .map_err(|reason| cxr_core::Error::config(path, reason))?;
        Ok(cfg)
    }

    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.embed_dims.len()
    }

    /// Width of the last stage (of the pooled feature).
    pub fn out_dim(&self) -> usize {
        self.embed_dims.last().copied().unwrap_or(0)
    }

    /// Input pixels per token of each stage (cumulative products of the strides).
    pub fn stage_strides(&self) -> Vec<usize> {
        self.patch_stride
            .iter()
            .scan(1, |acc, s| {
                *acc *= s;
                Some(*acc)
            })
            .collect()
    }

    /// Drop-path rate of every block, in order: stage by stage, spatial then channel block.
    pub fn block_drop_rates(&self) -> Vec<f64> {
        let n: usize = 2 * self.depths.iter().sum::<usize>();
        // torch.linspace(0, rate, n)
        (0..n)
            .map(|i| {
                if n > 1 {
                    self.drop_path_rate * i as f64 / (n - 1) as f64
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Checks the lists agree in length and the widths divide into heads and groups.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.num_stages();
        if n == 0 {
            return Err("embed_dims is empty".into());
        }
        let lists = [
            ("depths", self.depths.len()),
            ("num_heads", self.num_heads.len()),
            ("num_groups", self.num_groups.len()),
            ("patch_size", self.patch_size.len()),
            ("patch_stride", self.patch_stride.len()),
            ("patch_padding", self.patch_padding.len()),
            ("patch_prenorm", self.patch_prenorm.len()),
        ];
        for (name, len) in lists {
            if len != n {
                return Err(format!("{name} has {len} entries, embed_dims has {n}"));
            }
        }
        for i in 0..n {
            let d = self.embed_dims[i];
            if self.num_heads[i] == 0 || d % self.num_heads[i] != 0 {
                return Err(format!(
                    "stage {i}: width {d} is not divisible by {} heads",
                    self.num_heads[i]
                ));
            }
            if self.num_groups[i] == 0 || d % self.num_groups[i] != 0 {
                return Err(format!(
                    "stage {i}: width {d} is not divisible by {} groups",
                    self.num_groups[i]
                ));
            }
            if self.patch_stride[i] == 0 || self.patch_size[i] == 0 {
                return Err(format!("stage {i}: zero patch size or stride"));
            }
            // a border at least as wide as the kernel only adds outputs that see nothing but
            // zeros (and a mistyped 100000 would allocate tens of GB)
            if self.patch_padding[i] >= self.patch_size[i] {
                return Err(format!(
                    "stage {i}: patch_padding {} is not smaller than patch_size {}",
                    self.patch_padding[i], self.patch_size[i]
                ));
            }
        }
        cxr_core::ranges::positive(&[("layer_norm_eps", self.layer_norm_eps)])?;
        // maps are padded to a multiple of the window, so a window past the image only adds
        // padding (and a mistyped 100000 asked for 300 GB)
        if self.window_size == 0 || self.window_size > self.image_size {
            return Err(format!(
                "window_size {} is not in 1..=image_size ({})",
                self.window_size, self.image_size
            ));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(format!(
                "drop_path_rate {} is outside [0, 1)",
                self.drop_path_rate
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_strides_are_cumulative() {
        let cfg = DavitConfig::mi2();
        cfg.validate().unwrap();
        DavitConfig::tiny().validate().unwrap();
        assert_eq!(cfg.stage_strides(), vec![4, 8, 16, 32]);
        let rates = cfg.block_drop_rates();
        assert_eq!(rates.len(), 24);
        assert!((rates[23] - 0.2).abs() < 1e-12 && rates[0] == 0.0);
    }

    #[test]
    fn mismatched_lists_are_rejected() {
        let cfg = DavitConfig {
            depths: vec![1, 1],
            ..DavitConfig::mi2()
        };
        assert!(cfg.validate().unwrap_err().contains("depths"));
        let cfg = DavitConfig {
            num_heads: vec![8, 16, 30, 64],
            ..DavitConfig::mi2()
        };
        assert!(cfg.validate().unwrap_err().contains("heads"));
        let cfg = DavitConfig {
            patch_padding: vec![3, 1, 100000, 1],
            ..DavitConfig::mi2()
        };
        assert_eq!(
            cfg.validate().unwrap_err(),
            "stage 2: patch_padding 100000 is not smaller than patch_size 3"
        );
        let cfg = DavitConfig {
            window_size: 100000,
            ..DavitConfig::mi2()
        };
        assert_eq!(
            cfg.validate().unwrap_err(),
            "window_size 100000 is not in 1..=image_size (480)"
        );
    }
}
