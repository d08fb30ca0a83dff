//! DaViT training mode: one backward step reaches every parameter; stochastic depth is
//! reproducible from its state.
#![allow(clippy::unwrap_used)] // tests may panic on failure

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use vit_backbone::davit::{DavitConfig, DavitModel};

fn tiny(drop_path_rate: f64) -> DavitConfig {
    DavitConfig {
        drop_path_rate,
        ..DavitConfig::tiny()
    }
}

#[test]
fn one_backward_step_reaches_every_parameter() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = DavitModel::new(&tiny(0.0), vb).unwrap();
    // 44x60: grids 11x15, 6x8, 3x4, 2x2, padded windows in every stage but the last
    let x = Tensor::randn(0f32, 1.0, (2, 3, 44, 60), &Device::Cpu).unwrap();
    let out = model.forward(&x, true).unwrap();
    let emb = model.project(&out.pooled).unwrap();
    let w = Tensor::randn(0f32, 1.0, emb.dims(), &Device::Cpu).unwrap();
    let loss = (emb * w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    assert_eq!(
        data.len(),
        vit_backbone::davit::weights::expected_tensors(&tiny(0.0)).len()
    );
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        assert!(v.iter().any(|&x| x != 0.0), "{name}: all-zero gradient");
    }
}

#[test]
fn stochastic_depth_is_active_in_training_and_reproducible() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = DavitModel::new(&tiny(0.5), vb).unwrap();
    let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &Device::Cpu).unwrap();
    let eval_a = model.forward(&x, false).unwrap().pooled;
    let eval_b = model.forward(&x, false).unwrap().pooled;
    assert_eq!(cxr_core::ops::max_abs_diff(&eval_a, &eval_b).unwrap(), 0.0);
    model.set_drop_path_state(7, 0);
    let train_a = model.forward(&x, true).unwrap().pooled;
    assert_eq!(model.drop_path_state(), (7, 1));
    assert!(cxr_core::ops::max_abs_diff(&train_a, &eval_a).unwrap() > 1e-4);
    model.set_drop_path_state(7, 0);
    let train_b = model.forward(&x, true).unwrap().pooled;
    assert_eq!(
        cxr_core::ops::max_abs_diff(&train_a, &train_b).unwrap(),
        0.0
    );
}
