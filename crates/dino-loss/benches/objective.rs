//! One DINOv2 objective step at full head size: teacher head forward + targets, student head
//! forward + backward through DINO (2 global + 8 local crops), KoLeo and iBOT.
//! Counterpart: `benches/objective_torch.py` (same sizes, PyTorch, 2 threads).
#![allow(clippy::unwrap_used, missing_docs)]

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use dino_loss::{
    DinoHead, DinoHeadConfig, DinoObjective, ObjectiveConfig, StudentOutputs, TeacherOutputs,
};

const DIM: usize = 384; // ViT-S
const B: usize = 8;
const N_LOCAL: usize = 8;
const N_PATCH: usize = 16; // masked tokens per image, 8 of 16 images masked
const K: usize = 65536;

fn bench(c: &mut Criterion) {
    // freed [208, 65536] buffers are reused instead of faulted in afresh every step
    train_utils::retain_freed_heap_memory();
    let dev = Device::Cpu;
    let cfg = DinoHeadConfig::new(DIM, K);
    let svm = VarMap::new();
    let student =
        DinoHead::new(cfg.clone(), VarBuilder::from_varmap(&svm, DType::F32, &dev)).unwrap();
    let tvm = VarMap::new();
    let teacher = DinoHead::new(cfg, VarBuilder::from_varmap(&tvm, DType::F32, &dev)).unwrap();
    let mut objective = DinoObjective::new(
        ObjectiveConfig {
            dino_prototypes: K,
            ibot_prototypes: K,
            ..ObjectiveConfig::default()
        },
        &dev,
    )
    .unwrap();
    let global = Tensor::randn(0f32, 1.0, (2 * B, DIM), &dev).unwrap();
    let local = Tensor::randn(0f32, 1.0, (N_LOCAL * B, DIM), &dev).unwrap();
    let n_masked = B * N_PATCH;
    let patches = Tensor::randn(0f32, 1.0, (n_masked, DIM), &dev).unwrap();
    let mut m = vec![0f32; 2 * B * 2 * N_PATCH];
    for img in 0..B {
        for j in 0..N_PATCH {
            m[img * 2 * N_PATCH + j] = 1.0;
        }
    }
    let masks = Tensor::from_vec(m, (2 * B, 2 * N_PATCH), &dev).unwrap();

    let mut group = c.benchmark_group("dino_objective");
    group.sample_size(10);
    // The heap grows for the first five or six steps (to ~4 GB) before freed blocks fit the
    // next step's tensors; those steps fault in fresh pages. Warm up past them so that, like
    // the PyTorch script's median, the samples measure the steady state of a training run.
    group.warm_up_time(std::time::Duration::from_secs(20));
    group.bench_function("head_fwd_bwd_k65536_2g8l", |bench| {
        bench.iter(|| {
            // one head call per model on everything it scores, as the trainer and dinov2 do
            let mut t = teacher.forward_many(&[&global, &patches]).unwrap();
            let t = TeacherOutputs {
                masked_patch_logits: t.pop(),
                cls_logits: t.remove(0),
            };
            let targets = objective.teacher_targets(&t, 0.07, 1, None).unwrap();
            let mut s = student.forward_many(&[&global, &local, &patches]).unwrap();
            let s = StudentOutputs {
                masked_patch_logits: s.pop(),
                local_cls_logits: s.pop(),
                global_cls_logits: s.remove(0),
                global_cls_tokens: global.clone(),
                masks: Some(masks.clone()),
            };
            let losses = objective.losses(&s, &targets).unwrap();
            losses.total.backward().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
