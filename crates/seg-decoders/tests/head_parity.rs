#![allow(clippy::unwrap_used)]
//! Every head against its PyTorch reference (mmsegmentation / detectron2 module structure and
//! parameter names, written out in `gen.py`) on fixed random weights: outputs, the gradient
//! of every parameter and input, and the BatchNorm running statistics after a training pass.

use crate::common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_close, fixture, max_abs_diff};
use cxr_core::{Features, Intermediate};
use rand::SeedableRng;
use seg_decoders::heads::{LinearConfig, UperNetConfig, UperNetInput, VitDetConfig};
use seg_decoders::layers::BnConfig;
use seg_decoders::{AlignCorners, Head, HeadConfig, Mode, SegmentationHead};

const TOL: f32 = 1e-4;
/// Below this, a training-mode reference gradient is rounding noise around a true 0.
const ZERO_THROUGH_BN: f32 = 1e-3;

fn to_tokens(map: &Tensor) -> Tensor {
    let (b, c, h, w) = map.dims4().unwrap();
    map.reshape((b, c, h * w))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
}

/// Features holding `maps[0]` as the final tokens and every map as intermediate layer `i`,
/// each with its own grid.
fn features(maps: &[Tensor]) -> Features {
    let grid = |m: &Tensor| {
        let (_, _, h, w) = m.dims4().unwrap();
        (h, w)
    };
    let b = maps[0].dim(0).unwrap();
    Features {
        pooled: Tensor::zeros((b, 1), DType::F32, &Device::Cpu).unwrap(),
        patch_tokens: to_tokens(&maps[0]),
        grid: grid(&maps[0]),
        intermediates: maps
            .iter()
            .enumerate()
            .map(|(i, m)| Intermediate {
                layer: i,
                tokens: to_tokens(m),
                grid: grid(m),
                cls: None,
            })
            .collect(),
    }
}

fn build(cfg: &HeadConfig, params: &HashMap<String, Tensor>) -> (Head, VarMap) {
    let mut varmap = VarMap::new();
    let head = Head::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let ours: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    for name in &ours {
        let value = params
            .get(name)
            .unwrap_or_else(|| panic!("PyTorch has no parameter `{name}`"));
        varmap.set_one(name, value).unwrap();
    }
    assert_eq!(ours.len(), params.len(), "parameter sets differ");
    (head, varmap)
}

fn check(case: &str, cfg: HeadConfig, train_cfg: HeadConfig) {
    let eval = fixture(case, "eval");
    let params: HashMap<String, Tensor> = eval
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone())))
        .collect();
    for (mode_name, cfg) in [("eval", cfg), ("train", train_cfg)] {
        let f = fixture(case, mode_name);
        let (head, varmap) = build(&cfg, &params);
        let n_inputs = f.keys().filter(|k| k.starts_with("input.")).count();
        let inputs: Vec<Var> = (0..n_inputs)
            .map(|i| Var::from_tensor(&f[&format!("input.{i}")]).unwrap())
            .collect();
        let maps: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
        let out_ref = &f["out"];
        let size = (out_ref.dim(2).unwrap(), out_ref.dim(3).unwrap());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut mode = if mode_name == "train" {
            Mode::Train(&mut rng)
        } else {
            Mode::Eval
        };
        let out = head.forward(&features(&maps), size, &mut mode).unwrap();
        assert_close(&format!("{case} {mode_name} output"), &out, out_ref, TOL);

        let grads = (out * &f["r"])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let data = varmap.data().lock().unwrap();
        let mut checked = 0;
        for (name, var) in data.iter() {
            if name.contains("running_") {
                if mode_name == "train" {
                    let after = &f[&format!("after.{name}")];
                    assert_close(
                        &format!("{case} {name} after training pass"),
                        var,
                        after,
                        TOL,
                    );
                }
                continue;
            }
            let reference = &f[&format!("grad.{name}")];
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{case} {mode_name}: no gradient for `{name}`"));
            let gmax = largest_magnitude(g);
            let scale = largest_magnitude(reference);
            let d = max_abs_diff(g, reference);
            if mode_name == "train" && scale < ZERO_THROUGH_BN {
                // a bias whose output only reaches a training-mode BatchNorm (through linear
                // layers) shifts each channel by a constant the batch mean takes out again: its
                // true gradient is 0, and both sides hold rounding noise; the eval pass checks
                // that the gradient flows
                assert!(
                    gmax < ZERO_THROUGH_BN,
                    "{case} train: `{name}` feeds BatchNorm only, yet its gradient is {gmax}"
                );
                checked += 1;
                continue;
            }
            assert!(
                gmax.is_finite() && gmax > 0.0,
                "{case} {mode_name}: gradient of `{name}` is {gmax}"
            );
            assert!(
                d <= TOL * scale.max(1.0),
                "{case} {mode_name}: gradient of `{name}` differs by {d} (scale {scale})"
            );
            checked += 1;
        }
        assert!(checked > 0);
        for (i, v) in inputs.iter().enumerate() {
            // inputs the head does not read have no reference gradient and get none (ViTDet
            // and linear read map 0); the others are compared relative to the gradient's size,
            // as for the parameters (the deepest map's gradient reaches 20 in training mode,
            // where f32 sums differ by ~1e-5 of it)
            let what = format!("{case} {mode_name} input {i} gradient");
            match (grads.get(v), f.get(&format!("grad_input.{i}"))) {
                (Some(g), Some(reference)) => {
                    let scale = largest_magnitude(reference);
                    assert_close(
                        &format!("{what} (scale {scale})"),
                        g,
                        reference,
                        TOL * scale.max(1.0),
                    );
                }
                (None, None) => {}
                (Some(_), None) => panic!("{what}: the reference head does not read it"),
                (None, Some(_)) => panic!("{what}: missing"),
            }
        }
    }
}

/// `max |t|`, NaN when `t` holds one.
fn largest_magnitude(t: &Tensor) -> f32 {
    cxr_core::ops::max_abs(t).unwrap()
}

#[test]
fn linear_head_matches_pytorch() {
    let cfg = HeadConfig::Linear(LinearConfig {
        in_channels: 32,
        num_classes: 3,
        align_corners: AlignCorners::False,
    });
    check("linear", cfg.clone(), cfg);
}

/// The ViTDet head of the fixtures (`gen.py`).
fn tiny_vitdet() -> VitDetConfig {
    VitDetConfig {
        embed_dim: 16,
        out_channels: 8,
        head_channels: 8,
        num_classes: 3,
        dropout: 0.1,
        ln_eps: 1e-6,
        bn: BnConfig::default(),
        align_corners: AlignCorners::False,
    }
}

/// The UPerNet head of the fixtures (`gen.py`).
fn tiny_upernet() -> UperNetConfig {
    UperNetConfig {
        layers: vec![0, 1, 2, 3],
        input: UperNetInput::VitNeck { channels: 16 },
        channels: 8,
        pool_scales: vec![1, 2, 3, 6],
        num_classes: 3,
        dropout: 0.1,
        bn: BnConfig::default(),
        align_corners: AlignCorners::False,
    }
}

#[test]
fn vitdet_head_matches_pytorch() {
    let cfg = tiny_vitdet();
    let train = VitDetConfig {
        dropout: 0.0,
        ..cfg.clone()
    };
    check("vitdet", HeadConfig::VitDet(cfg), HeadConfig::VitDet(train));
}

#[test]
fn upernet_head_matches_pytorch() {
    let cfg = tiny_upernet();
    let train = UperNetConfig {
        dropout: 0.0,
        ..cfg.clone()
    };
    check(
        "upernet",
        HeadConfig::UperNet(cfg),
        HeadConfig::UperNet(train),
    );
}

/// UPerNet straight on four stages of a hierarchical encoder (strides 4–32, widths 8, 12,
/// 16, 24): mmsegmentation's `UPerHead` with per-level `in_channels` and no neck.
#[test]
fn upernet_on_a_pyramid_matches_pytorch() {
    let cfg = UperNetConfig {
        input: UperNetInput::Pyramid {
            channels: vec![8, 12, 16, 24],
        },
        ..tiny_upernet()
    };
    let train = UperNetConfig {
        dropout: 0.0,
        ..cfg.clone()
    };
    check(
        "upernet_pyramid",
        HeadConfig::UperNet(cfg),
        HeadConfig::UperNet(train),
    );
}

/// `for_encoder` builds the neck for a plain ViT's equal-stride blocks and reads a
/// hierarchical encoder's stages as a pyramid.
#[test]
fn upernet_picks_the_neck_or_the_pyramid_from_the_encoder() {
    let info = |layers: &[(usize, usize)]| cxr_core::FeatureInfo {
        embed_dim: layers.last().unwrap().0,
        patch_stride: layers.last().unwrap().1,
        layers: layers
            .iter()
            .map(|&(channels, stride)| cxr_core::LayerInfo { channels, stride })
            .collect(),
    };
    let vit = UperNetConfig::for_encoder(&info(&[(192, 14); 12]), 1).unwrap();
    assert_eq!(vit.layers, vec![2, 5, 8, 11]);
    assert_eq!(vit.input, UperNetInput::VitNeck { channels: 192 });
    let davit = info(&[(256, 4), (512, 8), (1024, 16), (2048, 32)]);
    let pyramid = UperNetConfig::for_encoder(&davit, 1).unwrap();
    assert_eq!(pyramid.layers, vec![0, 1, 2, 3]);
    assert_eq!(
        pyramid.input,
        UperNetInput::Pyramid {
            channels: vec![256, 512, 1024, 2048]
        }
    );
    let e = UperNetConfig::for_encoder(&info(&[(8, 8), (8, 4), (8, 16), (8, 32)]), 1).unwrap_err();
    assert!(e.to_string().contains("strides [8, 4, 16, 32]"), "{e}");
}

/// Zero widths are configuration errors naming the field (they reached the initialiser as an
/// infinite Kaiming standard deviation and came back as a candle sampling error).
#[test]
fn zero_widths_are_config_errors() {
    let vb = |m: &VarMap| VarBuilder::from_varmap(m, DType::F32, &Device::Cpu);
    let upernet = UperNetConfig {
        channels: 0,
        ..tiny_upernet()
    };
    let e = seg_decoders::heads::UperNetHead::new(&upernet, vb(&VarMap::new())).unwrap_err();
    assert!(matches!(e, seg_decoders::Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("channels 0"), "{e}");
    let vitdet = VitDetConfig {
        head_channels: 0,
        ..tiny_vitdet()
    };
    let e = seg_decoders::heads::VitDetHead::new(&vitdet, vb(&VarMap::new())).unwrap_err();
    assert!(e.to_string().contains("head_channels 0"), "{e}");
}
