//! Forward and forward + backward times of the DINOv2 ViT-B/14 backbone at the step
//! benchmark's crop shapes (masked global crops at 224, local crops at 98, training mode with
//! stochastic depth), and of one block, so a step's phases (`step` prints them) can be split
//! into the backbone and the rest (heads, losses, teacher).

use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

use super::time;

/// `sum(y · r)` reduced row by row first (candle's whole-tensor reduction runs in one block).
fn weighted_sum(y: &Tensor, r: &Tensor) -> Result<Tensor> {
    (y * r)?.sum(D::Minus1)?.sum_all()
}

/// Times the backbone passes in f32 and bf16 mixed precision (bf16 casts of f32 variables,
/// as the trainer's `compute_precision = "bf16"` runs the student).
pub fn backbone_passes(dev: &Device, batch: usize, repeats: usize) -> Result<serde_json::Value> {
    let mut cfg = Dinov2Config::dinov2_base();
    cfg.image_size = 224;
    cfg.drop_path_rate = 0.1;
    cfg.layerscale_value = 1e-5;
    let varmap = VarMap::new();
    let f32_model = Dinov2Model::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
    let mut rows = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let cast;
        let model = match dtype {
            DType::F32 => &f32_model,
            _ => {
                let tensors = varmap
                    .data()
                    .lock()
                    .map_err(|_| candle_core::Error::Msg("variable map poisoned".into()))?
                    .iter()
                    .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_dtype(dtype)?)))
                    .collect::<Result<std::collections::HashMap<_, _>>>()?;
                cast = Dinov2Model::new(&cfg, VarBuilder::from_tensors(tensors, dtype, dev))?;
                &cast
            }
        };
        for (what, images, size) in [("global 224", 2 * batch, 224), ("local 98", 8 * batch, 98)] {
            let grid = size / 14;
            let x = Tensor::randn(0f32, 1.0, (images, 3, size, size), dev)?.to_dtype(dtype)?;
            // about 30% of the global crops' patches masked, as iBOT's mask generator does
            let masks = Tensor::rand(0f32, 1.0, (images, grid * grid), dev)?
                .lt(0.3)?
                .to_dtype(DType::U8)?;
            let opts = ForwardOptions {
                bool_masked_pos: (size == 224).then_some(&masks),
                train: true,
                ..Default::default()
            };
            let r = Tensor::randn(0f32, 1.0, (images, grid * grid + 1, cfg.hidden_size), dev)?
                .to_dtype(dtype)?;
            let (fwd, _) = time(dev, 2, repeats, || model.forward(&x, &opts).map(|_| ()))?;
            let (both, _) = time(dev, 2, repeats, || {
                let h = model.forward(&x, &opts)?.last_hidden_state;
                weighted_sum(&h, &r)?.backward().map(|_| ())
            })?;
            for (pass, ms) in [("forward", fwd * 1e3), ("forward+backward", both * 1e3)] {
                println!("{dtype:?} backbone {what:<10} {pass:<16} {ms:>8.1} ms ({images} crops)");
                rows.push(
                    json!({"dtype": format!("{dtype:?}"), "part": format!("backbone {what}"),
                    "pass": pass, "ms": ms, "crops": images}),
                );
            }
        }
        // one block at the global shape ((224 / 14)² patches + CLS = 257 tokens), its input a
        // variable (f32 only: the block's own weights are f32 variables)
        let x = Var::from_tensor(
            &Tensor::randn(0f32, 1.0, (2 * batch, 257, cfg.hidden_size), dev)?.to_dtype(dtype)?,
        )?;
        if dtype == DType::F32 {
            let block_vars = VarMap::new();
            let block = vit_backbone::block::Block::new(
                &cfg,
                VarBuilder::from_varmap(&block_vars, DType::F32, dev).pp("encoder.layer.0"),
            )?;
            let r = Tensor::randn(0f32, 1.0, (2 * batch, 257, cfg.hidden_size), dev)?;
            let (both, _) = time(dev, 2, repeats, || {
                let (y, _) = block.forward(x.as_tensor(), false, None)?;
                weighted_sum(&y, &r)?.backward().map(|_| ())
            })?;
            println!(
                "{dtype:?} one block  global 224 forward+backward {:>8.2} ms",
                both * 1e3
            );
            rows.push(
                json!({"dtype": format!("{dtype:?}"), "part": "one block, global 224",
                "pass": "forward+backward", "ms": both * 1e3, "crops": 2 * batch}),
            );
        }
    }
    Ok(json!({ "train_profile": rows }))
}
