//! The backbone configuration named by the DINOv2 config, and where the weights start.

use std::path::PathBuf;

use dino_loss::DinoV2Config;
use vit_backbone::Dinov2Config;

use crate::{Error, Result};

/// Where the student's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// Random initialisation as dinov2 draws it for training from scratch
    /// ([`train_utils::init::dinov2_vit_init`] for the backbone, seeded by `train.seed`; the
    /// heads with dinov2's head initialisers).
    Random,
    /// A Hugging Face model directory (`config.json` + safetensors in either key layout),
    /// e.g. a local copy of `microsoft/rad-dino`. A `dino_head.safetensors` beside it
    /// initialises the DINO head when its shapes match.
    Dir(PathBuf),
}

impl Init {
    /// Parses `random` or a directory path.
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("random") {
            Self::Random
        } else {
            Self::Dir(PathBuf::from(s))
        }
    }
}

/// The backbone for `cfg.student` at global crop size: `vit_tiny` (192 wide, 3 heads),
/// `vit_small`, `vit_base`, `vit_large`, `vit_giant2`, with the student's patch size,
/// stochastic-depth rate, layer-scale init and register tokens.
pub fn backbone_config(cfg: &DinoV2Config) -> Result<Dinov2Config> {
    let size = cfg.crops.global_crops_size;
    let mut m = match cfg.student.arch.as_str() {
        "vit_tiny" => Dinov2Config::vit_tiny(size),
        "vit_small" => Dinov2Config::dinov2_small(),
        "vit_base" => Dinov2Config::dinov2_base(),
        "vit_large" => Dinov2Config::dinov2_large(),
        "vit_giant2" => Dinov2Config::dinov2_giant(),
        other => {
            let known = "vit_tiny, vit_small, vit_base, vit_large, vit_giant2";
            return Err(Error::Invalid(format!(
                "student.arch `{other}` (known: {known})"
            )));
        }
    };
    m.image_size = size;
    m.patch_size = cfg.student.patch_size;
    m.drop_path_rate = cfg.student.drop_path_rate;
    m.layerscale_value = cfg.student.layerscale;
    m.num_register_tokens = cfg.student.num_register_tokens;
    m.validate().map_err(Error::Invalid)?;
    Ok(m)
}
