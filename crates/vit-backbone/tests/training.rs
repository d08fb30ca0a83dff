//! Training-mode behaviour: every parameter gets a gradient, stochastic depth is reproducible.
#![allow(clippy::unwrap_used)] // tests may panic on failure

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use vit_backbone::{Dinov2Config, Dinov2Model, ForwardOptions};

fn tiny(drop_path_rate: f64) -> Dinov2Config {
    Dinov2Config {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        image_size: 56,
        drop_path_rate,
        ..Dinov2Config::rad_dino()
    }
}

fn pixels(b: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let n = b * 3 * h * w;
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, (b, 3, h, w), &Device::Cpu).unwrap()
}

#[test]
fn one_backward_step_reaches_every_parameter() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Dinov2Model::new(&tiny(0.0), vb).unwrap();
    // a non-square input exercises the interpolated position embeddings, the mask the mask token
    let x = pixels(2, 42, 70, 3);
    let mask = Tensor::from_vec(
        (0..30)
            .map(|i| (i % 4 == 0) as u8 as f32)
            .collect::<Vec<_>>(),
        (2, 15),
        &Device::Cpu,
    )
    .unwrap();
    let out = model
        .forward(
            &x,
            &ForwardOptions {
                bool_masked_pos: Some(&mask),
                train: true,
                ..Default::default()
            },
        )
        .unwrap();
    // a loss that depends on every output token and is not invariant to the final norm
    let weights = Tensor::randn(0f32, 1.0, (1, 16, 32), &Device::Cpu).unwrap();
    let loss = (out
        .last_hidden_state
        .broadcast_mul(&weights)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all())
    .unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    assert!(data.len() > 30);
    for (name, var) in data.iter() {
        let g = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        cxr_testkit::assert_finite_nonzero_gradient(name, g);
    }
}

#[test]
fn stochastic_depth_is_seeded_and_only_in_training() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Dinov2Model::new(&tiny(0.5), vb).unwrap();
    let x = pixels(4, 56, 56, 5);
    let run = |train: bool| {
        model
            .forward(
                &x,
                &ForwardOptions {
                    train,
                    ..Default::default()
                },
            )
            .unwrap()
            .pooler_output
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let eval_a = run(false);
    let eval_b = run(false);
    assert_eq!(eval_a, eval_b);
    model.set_drop_path_state(7, 0);
    let first = run(true);
    let second = run(true);
    assert_ne!(first, second, "consecutive training calls draw new masks");
    assert_ne!(first, eval_a, "rate 0.5 over 2 blocks drops something");
    assert_eq!(model.drop_path_state(), (7, 2));
    model.set_drop_path_state(7, 0);
    assert_eq!(run(true), first, "restoring the state replays the masks");
}

/// Global and local crops through the blocks together (dinov2's `forward_features_list`): the
/// same outputs, stochastic-depth masks and gradients as one forward per input.
#[test]
fn forward_list_equals_one_forward_per_input() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Dinov2Model::new(&tiny(0.4), vb).unwrap();
    let (global, local) = (pixels(2, 56, 56, 5), pixels(3, 28, 42, 6));
    let mask = Tensor::from_vec(
        (0..32)
            .map(|i| (i % 3 == 0) as u8 as f32)
            .collect::<Vec<_>>(),
        (2, 16),
        &Device::Cpu,
    )
    .unwrap();
    let masked = ForwardOptions {
        bool_masked_pos: Some(&mask),
        train: true,
        ..Default::default()
    };
    let train = ForwardOptions {
        train: true,
        ..Default::default()
    };
    let loss_of = |outs: &[vit_backbone::Dinov2Output]| {
        let a = outs[0].last_hidden_state.sqr().unwrap().sum_all().unwrap();
        let b = (outs[1].pooler_output.sum_all().unwrap() * 3.0).unwrap();
        (a + b).unwrap()
    };
    model.set_drop_path_state(7, 0);
    let separate = vec![
        model.forward(&global, &masked).unwrap(),
        model.forward(&local, &train).unwrap(),
    ];
    let after_separate = model.drop_path_state();
    model.set_drop_path_state(7, 0);
    let together = model
        .forward_list(&[(&global, &masked), (&local, &train)])
        .unwrap();
    assert_eq!(model.drop_path_state(), after_separate);
    assert_eq!(together.len(), separate.len(), "one output per input");
    for (s, t) in separate.iter().zip(&together) {
        assert_eq!(s.grid, t.grid);
        for (a, b) in [
            (&s.last_hidden_state, &t.last_hidden_state),
            (&s.pooler_output, &t.pooler_output),
        ] {
            let diff = cxr_core::ops::max_abs_diff(a, b).unwrap();
            assert!(diff < 1e-5, "outputs differ by {diff}");
        }
    }
    let (gs, gt) = (
        loss_of(&separate).backward().unwrap(),
        loss_of(&together).backward().unwrap(),
    );
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let (a, b) = (gs.get(var).unwrap(), gt.get(var).unwrap());
        let diff = cxr_core::ops::max_abs_diff(a, b).unwrap();
        let size = cxr_core::ops::max_abs(a).unwrap();
        assert!(
            diff <= 1e-4 * size.max(1.0),
            "{name}: gradients differ by {diff} of {size}"
        );
    }
    // hidden states asked for: one input at a time, same result
    let all = ForwardOptions {
        output_hidden_states: true,
        ..Default::default()
    };
    let one_by_one = model
        .forward_list(&[(&global, &all), (&local, &all)])
        .unwrap();
    assert_eq!(one_by_one[1].hidden_states.len(), 3);
}
