//! Building the trainable dual encoder in one `VarMap`, and its optimizer parameter groups.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dual_encoder::{DualEncoder, Mi2, Mi2Config, TextTransformer};
use train_utils::{named_vars, NoDecayRule, ParamGroup};
use vit_backbone::Dinov2Model;

use crate::{Error, ImageTowerConfig, Result, TrainConfig};

/// Prefix of the image tower's variables (UniCL's checkpoint layout).
pub const IMAGE_PREFIX: &str = "image_encoder";
/// Name of the learned temperature `θ`.
pub const LOGIT_SCALE: &str = "logit_scale";

/// A randomly initialised dual encoder whose every parameter is a variable of `varmap`:
/// the image tower under `image_encoder.` (a ViT, or MI2's DaViT with MI2's names), the text
/// tower as `lang_encoder.*` + `lang_projection`, `image_projection` and `logit_scale` (set to
/// the config's initial `θ`).
pub fn build_dual_encoder(
    cfg: &TrainConfig,
    varmap: &VarMap,
    device: &Device,
) -> Result<DualEncoder> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    let model = match &cfg.image {
        ImageTowerConfig::Dinov2(image) => {
            let image = Dinov2Model::new(image, vb.pp(IMAGE_PREFIX))?;
            let text = TextTransformer::new(&cfg.text, vb.clone())?;
            DualEncoder::new(Box::new(image), Box::new(text), vb)?
        }
        ImageTowerConfig::Davit(image) => Mi2::build(
            &Mi2Config {
                image: image.clone(),
                text: cfg.text.clone(),
            },
            vb,
        )?,
    };
    set_var(
        varmap,
        LOGIT_SCALE,
        &Tensor::new(cfg.log_scale_init() as f32, device)?,
    )?;
    Ok(model)
}

fn set_var(varmap: &VarMap, name: &str, value: &Tensor) -> Result<()> {
    let vars = named_vars(varmap);
    let (_, var) = vars
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| Error::Invalid(format!("the model has no variable `{name}`")))?;
    if var.dims() != value.dims() {
        return Err(Error::Checkpoint {
            name: name.into(),
            reason: format!("shape {:?}, model has {:?}", value.dims(), var.dims()),
        });
    }
    var.set(&value.to_dtype(var.dtype())?.to_device(var.device())?)?;
    Ok(())
}

/// Sets every variable of `varmap` from `tensors` (a whole model's checkpoint, e.g. MI2's):
/// each must be there with the same shape; tensors the model does not have are an error too,
/// so that nothing of the checkpoint is silently left out.
pub fn load_all(varmap: &VarMap, tensors: &HashMap<String, Tensor>, what: &str) -> Result<()> {
    let vars = named_vars(varmap);
    for (name, var) in &vars {
        let t = tensors.get(name).ok_or_else(|| Error::Checkpoint {
            name: format!("{what}: {name}"),
            reason: "missing".into(),
        })?;
        if t.dims() != var.dims() {
            return Err(Error::Checkpoint {
                name: format!("{what}: {name}"),
                reason: format!("shape {:?}, model has {:?}", t.dims(), var.dims()),
            });
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    let names: std::collections::HashSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = tensors.keys().find(|k| !names.contains(k.as_str())) {
        return Err(Error::Checkpoint {
            name: format!("{what}: {extra}"),
            reason: "not a variable of the model".into(),
        });
    }
    Ok(())
}

/// Copies a Hugging Face `Dinov2Model` checkpoint directory (`model.safetensors`) into the
/// image tower. Every image-tower variable must be found with the same shape; returns how
/// many were copied.
pub fn load_image_tower(varmap: &VarMap, dir: &Path, device: &Device) -> Result<usize> {
    let path = dir.join("model.safetensors");
    if !path.is_file() {
        return Err(Error::Invalid(format!("{}: not found", path.display())));
    }
    let tensors = candle_core::safetensors::load(&path, device).map_err(|e| e.with_path(&path))?;
    let mut copied = 0;
    for (name, var) in named_vars(varmap) {
        let Some(key) = name
            .strip_prefix(IMAGE_PREFIX)
            .and_then(|k| k.strip_prefix('.'))
        else {
            continue;
        };
        let t = tensors.get(key).ok_or_else(|| Error::Checkpoint {
            name: format!("{}: {key}", path.display()),
            reason: "missing (is it a DINOv2 checkpoint of the configured size?)".into(),
        })?;
        if t.dims() != var.dims() {
            return Err(Error::Checkpoint {
                name: format!("{}: {key}", path.display()),
                reason: format!("shape {:?}, image tower expects {:?}", t.dims(), var.dims()),
            });
        }
        var.set(&t.to_dtype(DType::F32)?)?;
        copied += 1;
    }
    Ok(copied)
}

/// True for parameters that get no weight decay: biases (also `in_proj_bias`), every norm
/// (`*norm*`, the text tower's `ln_1`/`ln_2`/`ln_final`), position tables and learned
/// tokens, and the logit scale.
pub fn no_weight_decay(name: &str) -> bool {
    NoDecayRule::Extended.exempt(name)
        || name.ends_with("bias")
        || name.contains(".ln_")
        || name.contains("positional_embedding")
        || name == LOGIT_SCALE
}

/// The optimizer group of `name`: full learning rate, decay unless [`no_weight_decay`].
pub fn param_group(name: &str) -> ParamGroup {
    ParamGroup {
        lr_multiplier: 1.0,
        wd_multiplier: if no_weight_decay(name) { 0.0 } else { 1.0 },
        is_last_layer: false,
    }
}
