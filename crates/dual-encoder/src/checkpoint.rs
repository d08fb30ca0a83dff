//! Reading UniCL / MedImageInsight checkpoints.
//!
//! Key map (checkpoint → this crate), as UniCLModel's `state_dict()` names them:
//!
//! | checkpoint key | module |
//! |---|---|
//! | `lang_encoder.*` | [`crate::TextTransformer`] (see its table) |
//! | `lang_projection` `[W, P]` | [`crate::TextTransformer`] projection |
//! | `image_encoder.*` | the image tower (DaViT for MI2), built by the caller from `vb.pp("image_encoder")` |
//! | `image_projection` `[D_img, P]` | [`crate::DualEncoder`] |
//! | `logit_scale` `[]` | [`crate::DualEncoder`] |
//!
//! Older UniCL checkpoints use `text.*`, `visual.*`, `text_projection` and
//! `vision_projection`; [`load_unicl_tensors`] renames them as UniCL's
//! `_convert_old_weights` does.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::Result;

/// The current key for an old-layout UniCL key (identity for current keys).
pub fn convert_old_key(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("visual.") {
        format!("image_encoder.{rest}")
    } else if let Some(rest) = key.strip_prefix("text.") {
        format!("lang_encoder.{rest}")
    } else if key == "vision_projection" {
        "image_projection".into()
    } else if key == "text_projection" {
        "lang_projection".into()
    } else {
        key.into()
    }
}

/// Every tensor of a UniCL safetensors checkpoint, keys converted to the current layout,
/// in `dtype` on `device`.
pub fn load_unicl_tensors(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(cxr_core::Error::NotFound(format!("checkpoint {}", path.display())).into());
    }
    let raw = candle_core::safetensors::load(path, device).map_err(|e| {
        cxr_core::Error::config(path, format!("not a readable safetensors file: {e}"))
    })?;
    raw.into_iter()
        .map(|(k, v)| Ok((convert_old_key(&k), v.to_dtype(dtype)?)))
        .collect()
}

/// A builder over [`load_unicl_tensors`], for [`crate::TextTransformer::new`] and
/// [`crate::DualEncoder::new`].
pub fn unicl_var_builder(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let tensors = load_unicl_tensors(path, dtype, device)?;
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}
