//! PCA (Jacobi) of patch features and exact t-SNE of image embeddings, at gallery sizes.
//! The scikit-learn counterpart is `benches/viz_sklearn.py` (same data generator and sizes).
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use cxr_viz::embedding_map::{tsne, TsneOptions};
use cxr_viz::pca::Pca;
use ndarray::Array2;

/// Deterministic data: `x[i, j] = sin(0.37 i + 1.3 j) + 0.5 cos(0.11 i j)`, as in the Python side.
fn data(n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let (i, j) = (i as f64, j as f64);
        (0.37 * i + 1.3 * j).sin() + 0.5 * (0.11 * i * j).cos()
    })
}

fn bench(c: &mut Criterion) {
    let patches = data(1024, 192);
    c.bench_function("pca_fit_1024x192_k3", |b| {
        b.iter(|| Pca::fit(patches.view(), 3).unwrap())
    });
    let emb = data(243, 192);
    let mut g = c.benchmark_group("tsne");
    g.sample_size(10);
    g.bench_function("tsne_exact_243x192_1000it", |b| {
        b.iter(|| {
            tsne(
                emb.view(),
                &TsneOptions {
                    perplexity: 30.0,
                    ..Default::default()
                },
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
