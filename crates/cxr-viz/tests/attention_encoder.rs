//! The attention plumbing on a real (random-init) ViT with register tokens: the CLS row over
//! the patch keys plus the class and register keys is a probability distribution, and the
//! requested layer is the one returned. The probabilities themselves are checked against
//! transformers in `crates/vit-backbone/tests/parity.rs`.
#![allow(clippy::unwrap_used)] // tests may panic on failure

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_viz::attention::{cls_attention_maps, AttentionEncoder};
use cxr_viz::features::image_features;
use vit_backbone::{Dinov2Config, Dinov2Model};

#[test]
fn cls_maps_of_a_random_vit_with_registers() {
    let mut cfg = Dinov2Config::vit_tiny(28);
    cfg.num_hidden_layers = 2;
    cfg.num_register_tokens = 2;
    let vm = VarMap::new();
    let model =
        Dinov2Model::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    // 28 x 42 input: a 2 x 3 grid
    let pixels = Tensor::randn(0f32, 1., (2, 3, 28, 42), &Device::Cpu).unwrap();
    let maps = cls_attention_maps(&model, &pixels, None).unwrap();
    assert_eq!(maps.len(), 2);
    let full = model.layer_attention(&pixels, 1).unwrap();
    assert_eq!(full.prefix_tokens, 3);
    let rows: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
        .map(|b| full.probs.get(b).unwrap().to_vec3::<f32>().unwrap())
        .collect();
    for (b, m) in maps.iter().enumerate() {
        assert_eq!(m.grid, (2, 3));
        assert_eq!(m.heads.len(), cfg.num_attention_heads);
        for (h, head) in m.heads.iter().enumerate() {
            assert_eq!(head.len(), 6);
            let prefix: f64 = rows[b][h][0][..3].iter().map(|&v| f64::from(v)).sum();
            let total: f64 = prefix + head.iter().sum::<f64>();
            assert!((total - 1.0).abs() < 1e-5, "CLS row sums to {total}");
            for (k, &v) in head.iter().enumerate() {
                assert!((v - f64::from(rows[b][h][0][3 + k])).abs() < 1e-7);
            }
        }
    }
    // random weights and inputs: the two images attend differently
    assert_ne!(maps[0].heads, maps[1].heads);
    assert!(cls_attention_maps(&model, &pixels, Some(2)).is_err());
    let feats = image_features(&model, &pixels).unwrap();
    assert_eq!(feats[0].patches.dim(), (6, cfg.hidden_size));
    assert_eq!(feats[1].pooled.len(), cfg.hidden_size);
}
