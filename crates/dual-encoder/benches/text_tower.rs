//! Text-tower forward (UniCL-base size: width 512, 12 layers × 8 heads, 77 tokens, batch 4)
//! and CLIP tokenization of 64 sentences. The PyTorch counterpart is `text_tower.py`.
#![allow(clippy::unwrap_used)] // a benchmark may panic on setup failure
use std::hint::black_box;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use dual_encoder::{TextConfig, TextEncoder, TextTokenizer, TextTransformer, TokenBatch};

const SENTENCES: [&str; 4] = [
    "chest x-ray showing pneumonia",
    "no pleural effusion or pneumothorax",
    "mild cardiomegaly with bibasilar atelectasis",
    "endotracheal tube terminates 4 cm above the carina",
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let cfg = TextConfig::unicl_base();
    let model =
        TextTransformer::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    // 4 rows of 77 ids; the end-of-text (largest id) sits at a different place in each row
    let rows: Vec<Vec<u32>> = (0..4u32)
        .map(|r| {
            (0..77u32)
                .map(|i| {
                    if i == 10 + 5 * r {
                        49407
                    } else {
                        (i * 37 + r * 11) % 49000
                    }
                })
                .collect()
        })
        .collect();
    let batch = TokenBatch::from_rows(&rows, None, &dev).unwrap();
    let mut g = c.benchmark_group("text_tower");
    g.sample_size(10);
    g.bench_function("unicl_base_forward_b4x77", |b| {
        b.iter(|| black_box(model.encode(&batch).unwrap()))
    });
    // the same weights as plain tensors, as a loaded checkpoint has them: no graph is
    // recorded, as in the PyTorch counterpart's `torch.no_grad()`
    let tensors = train_utils::detached_tensors(&train_utils::named_vars(&varmap));
    let loaded =
        TextTransformer::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, &dev)).unwrap();
    g.bench_function("unicl_base_forward_b4x77_no_graph", |b| {
        b.iter(|| black_box(loaded.encode(&batch).unwrap()))
    });
    g.finish();

    let tok = TextTokenizer::from_file(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tokenizer/tokenizer.json"
        )
        .as_ref(),
        77,
    )
    .unwrap();
    let texts: Vec<&str> = SENTENCES.iter().cycle().take(64).copied().collect();
    c.bench_function("clip_tokenize_64", |b| {
        b.iter(|| black_box(tok.encode_batch(&texts, &dev).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
