//! Greedy KV-cached generation speed of a small random llama (4 layers, width 256, 4 heads,
//! vocabulary 8000): a 32-token prompt, 64 new tokens, batch 1, f32 on the CPU.
//! `generate_hf.py` times transformers' `generate` on the same configuration.
//!
//! `cargo bench -p llava-bridge --bench generate`

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use llava_bridge::generate::{generate, GenerationConfig};
use llava_bridge::init::random_llama;
use llava_bridge::{Llama, LlamaConfig, LlamaKeys};

const PROMPT: usize = 32;
const NEW: usize = 64;

fn bench(c: &mut Criterion) {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let cfg = LlamaConfig::tiny(8000, 256, 4, 4);
    let weights = random_llama(&cfg, 0.02, 0, &Device::Cpu).expect("weights");
    let lm = Llama::new(&cfg, &weights, &LlamaKeys::causal_lm()).expect("model");
    let ids: Vec<u32> = (0..PROMPT as u32).map(|i| (i * 97 + 5) % 8000).collect();
    let ids = Tensor::from_vec(ids, (1, PROMPT), &Device::Cpu).expect("ids");
    let embeds = lm.embed(&ids).expect("embed");
    // no EOS: every run produces exactly NEW tokens
    let gcfg = GenerationConfig::greedy(NEW, vec![]);
    let mut group = c.benchmark_group("llama_greedy");
    group.sample_size(20);
    group.bench_function("prompt32_new64", |b| {
        b.iter(|| {
            let out = generate(&lm, &embeds, &gcfg, None).expect("generate");
            assert_eq!(out[0].len(), NEW);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
