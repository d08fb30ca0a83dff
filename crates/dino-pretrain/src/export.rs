//! Writing a trained encoder as a Hugging Face `Dinov2Model` directory.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use vit_backbone::Dinov2Config;

use crate::{Error, Result};

/// `preprocessor_config.json` of a `BitImageProcessor` that resizes the shortest edge to
/// `size` (bicubic), centre-crops `size × size`, rescales by 1/255 and normalises.
pub fn preprocessor_json(size: usize, mean: [f32; 3], std: [f32; 3]) -> serde_json::Value {
    serde_json::json!({
        "crop_size": {"height": size, "width": size},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": mean,
        "image_processor_type": "BitImageProcessor",
        "image_std": std,
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": size}
    })
}

/// Writes `config.json`, `model.safetensors` (in `dtype`) and `preprocessor_config.json`
/// into `dir`, loadable by `vit_backbone::Dinov2Model::from_dir`.
pub fn write_hf_dir(
    dir: &Path,
    config: &Dinov2Config,
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    preprocessor: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut cfg = serde_json::to_value(config).map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(obj) = cfg.as_object_mut() {
        obj.insert("architectures".into(), serde_json::json!(["Dinov2Model"]));
        // inference never uses stochastic depth
        obj.insert("drop_path_rate".into(), serde_json::json!(0.0));
        obj.insert(
            "torch_dtype".into(),
            serde_json::json!(match dtype {
                DType::F16 => "float16",
                DType::BF16 => "bfloat16",
                _ => "float32",
            }),
        );
    }
    let write = |name: &str, text: String| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
    };
    write(
        "config.json",
        serde_json::to_string_pretty(&cfg).map_err(|e| Error::Invalid(e.to_string()))?,
    )?;
    write(
        "preprocessor_config.json",
        serde_json::to_string_pretty(preprocessor).map_err(|e| Error::Invalid(e.to_string()))?,
    )?;
    let converted = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    candle_core::safetensors::save(&converted, dir.join("model.safetensors"))?;
    Ok(())
}
