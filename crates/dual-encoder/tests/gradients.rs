//! One contrastive backward step reaches every parameter of both towers and the logit scale.
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_core::ops::log_softmax_last_dim;
use dual_encoder::{DualEncoder, TextConfig, TextTransformer};
use vit_backbone::{Dinov2Config, Dinov2Model};

/// Symmetric InfoNCE with matching pairs on the diagonal.
fn clip_loss(logits: &Tensor) -> Tensor {
    let n = logits.dim(0).unwrap();
    let eye = Tensor::eye(n, DType::F32, &Device::Cpu).unwrap();
    let a = (log_softmax_last_dim(logits).unwrap() * &eye)
        .unwrap()
        .sum_all()
        .unwrap();
    let b = (log_softmax_last_dim(&logits.t().unwrap()).unwrap() * &eye)
        .unwrap()
        .sum_all()
        .unwrap();
    ((a + b).unwrap() * (-0.5 / n as f64)).unwrap()
}

fn check(causal: bool) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let img_cfg = Dinov2Config {
        num_hidden_layers: 2,
        use_mask_token: false,
        ..Dinov2Config::vit_tiny(28)
    };
    let image = Dinov2Model::new(&img_cfg, vb.pp("image_encoder")).unwrap();
    let tok = common::tokenizer();
    let cfg = TextConfig {
        causal,
        ..TextConfig::tiny(tok.vocab_size())
    };
    let text = TextTransformer::new(&cfg, vb.clone()).unwrap();
    let model = DualEncoder::new(Box::new(image), Box::new(text), vb).unwrap();

    let pixels = Tensor::randn(0f32, 1.0, (3, 3, 28, 28), &Device::Cpu).unwrap();
    let batch = tok
        .encode_batch(
            &[
                "chest x-ray showing pneumonia",
                "no effusion",
                "mild cardiomegaly",
            ],
            &Device::Cpu,
        )
        .unwrap();
    let out = model.forward(&pixels, &batch, true).unwrap();
    let logits = model.logits(&out.image, &out.text).unwrap();
    let loss = clip_loss(&logits);
    let grads = loss.backward().unwrap();

    let data = varmap.data().lock().unwrap();
    assert!(data.contains_key("logit_scale") && data.contains_key("lang_projection"));
    assert!(data.contains_key("image_projection"));
    assert!(data
        .keys()
        .any(|k| k.starts_with("image_encoder.encoder.layer.1")));
    assert!(data
        .keys()
        .any(|k| k.starts_with("lang_encoder.resblocks.1")));
    drop(data);
    common::assert_every_var_has_a_gradient(&varmap, &grads);
}

#[test]
fn gradients_reach_every_parameter_causal() {
    check(true);
}

#[test]
fn gradients_reach_every_parameter_bidirectional() {
    check(false);
}

/// With a graph the text tower runs `fused_ops`' layer norm and softmax (closed-form
/// backwards, each checked against its composed form in `fused-ops`); without one, the
/// composed `cxr_core::ops` that the PyTorch parity tests pin. Both must give the same tower.
#[test]
fn the_training_path_gives_the_inference_path_outputs() {
    use dual_encoder::TextEncoder;
    let tok = common::tokenizer();
    let batch = tok
        .encode_batch(
            &["chest x-ray showing pneumonia", "no effusion"],
            &Device::Cpu,
        )
        .unwrap();
    for causal in [true, false] {
        let cfg = TextConfig {
            causal,
            ..TextConfig::tiny(tok.vocab_size())
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let tracked = TextTransformer::new(&cfg, vb).unwrap();
        // biases and norms away from their 0 / 1 init, so every input of every op matters
        for var in varmap.all_vars() {
            let noise = var.as_tensor().randn_like(0.0, 0.1).unwrap();
            var.set(&(var.as_tensor() + noise).unwrap()).unwrap();
        }
        let a = tracked.encode(&batch).unwrap().projected;
        assert!(a.track_op());
        let tensors = train_utils::detached_tensors(&train_utils::named_vars(&varmap));
        let plain = TextTransformer::new(
            &cfg,
            VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let b = plain.encode(&batch).unwrap().projected;
        assert!(!b.track_op());
        let d = cxr_core::ops::max_abs_diff(&a, &b).unwrap();
        assert!(d < 1e-5, "causal {causal}: the two paths differ by {d}");
    }
}
