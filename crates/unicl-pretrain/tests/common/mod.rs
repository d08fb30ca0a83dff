#![allow(clippy::unwrap_used, dead_code)]
//! Tiny towers and a few real cxr-findings images for the trainer tests.

use std::path::PathBuf;

use candle_core::Device;
use cxr_core::{Preprocessing, Resample};
use cxr_data::{ImageProcessor, Manifest, ManifestSpec, Split, NIH_FINDINGS};
use dual_encoder::{TextConfig, TextTokenizer};
use unicl_loss::{LabelSet, LossKind, PromptTemplates};
use unicl_pretrain::{train_clip_bpe, PairDataset, PairSample, PairSource, TrainConfig};
use vit_backbone::Dinov2Config;

pub fn data_dir() -> PathBuf {
    cxr_testkit::pack("cxr-findings")
}

pub fn processor(size: usize) -> ImageProcessor {
    ImageProcessor::from_preprocessing(&Preprocessing {
        shortest_edge: Some(size),
        crop: (size, size),
        resample: Resample::Bicubic,
        rescale_factor: 1.0 / 255.0,
        mean: [0.5307; 3],
        std: [0.2583; 3],
    })
}

/// The first `n` training images, with their labels; one is given a report.
pub fn tiny_dataset(n: usize) -> PairDataset {
    tiny_dataset_at(n, 28)
}

/// [`tiny_dataset`] at `size` px.
pub fn tiny_dataset_at(n: usize, size: usize) -> PairDataset {
    let m =
        Manifest::from_csv(data_dir().join("labels.csv"), &ManifestSpec::cxr_findings()).unwrap();
    let findings: Vec<String> = NIH_FINDINGS.iter().map(|s| s.to_string()).collect();
    let cols: Vec<usize> = findings.iter().map(|f| m.label_index(f).unwrap()).collect();
    let rows: Vec<usize> = m.indices_in(Split::Train).into_iter().take(n).collect();
    let samples = rows
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let r = &m.records[i];
            let flags: Vec<Option<bool>> =
                cols.iter().map(|&c| r.labels[c].map(|v| v > 0.5)).collect();
            let present: Vec<bool> = flags.iter().map(|f| f.unwrap_or(false)).collect();
            PairSample {
                patient: r.patient.clone(),
                labels: LabelSet::from_flags(&present),
                flags,
                report: (k == 1).then(|| "small left pleural effusion".to_string()),
            }
        })
        .collect();
    let files: Vec<std::path::PathBuf> = rows.iter().map(|&i| m.records[i].image.clone()).collect();
    PairDataset::with_samples(samples, files, findings, &processor(size)).unwrap()
}

pub fn tokenizer(dir: &std::path::Path) -> TextTokenizer {
    let t = PromptTemplates::nih_chestxray14();
    let mut corpus: Vec<String> = t.negative_texts.clone();
    for f in &t.findings {
        for s in &f.synonyms {
            corpus.push(format!("chest x-ray with {s} and {s}"));
        }
    }
    corpus.push("small left pleural effusion".into());
    train_clip_bpe(&corpus, 700, 16, dir).unwrap()
}

pub fn tiny_config(vocab: usize, batch: usize, steps: u64) -> TrainConfig {
    let mut image = Dinov2Config::vit_tiny(28);
    image.hidden_size = 24;
    image.num_hidden_layers = 2;
    image.num_attention_heads = 2;
    image.drop_path_rate = 0.0;
    image.use_mask_token = false;
    let mut text = TextConfig::tiny(vocab);
    text.context_length = 16;
    TrainConfig {
        image: unicl_pretrain::ImageTowerConfig::Dinov2(image),
        text,
        batch_size: batch,
        lr: 1e-3,
        warmup_steps: 1,
        ..TrainConfig::small(LossKind::Unicl, 28, vocab, steps)
    }
}

pub fn source(data: PairDataset, tok: TextTokenizer, batch: usize) -> PairSource {
    PairSource::new(
        data,
        PromptTemplates::nih_chestxray14(),
        tok,
        batch,
        7,
        false,
    )
    .unwrap()
}

pub fn dev() -> Device {
    Device::Cpu
}

/// Every variable of `a` equals the one of the same name in `b` to the bit.
pub fn assert_same_bits(a: &train_utils::NamedVars, b: &train_utils::NamedVars) {
    assert!(!a.is_empty(), "no variables to compare");
    assert_eq!(a.len(), b.len());
    for ((n, x), (m, y)) in a.iter().zip(b) {
        assert_eq!(n, m);
        let x: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = y.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x.len(), y.len(), "{n}: sizes");
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{n} differs"
        );
    }
}

/// Each of `vars` has a gradient in `g`, finite and not all zero.
pub fn assert_every_gradient(
    vars: &train_utils::NamedVars,
    g: &unicl_pretrain::gradcache::BatchGradients,
) {
    for (name, _) in vars {
        let grad = g
            .grads
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        cxr_testkit::assert_finite_nonzero_gradient(name, grad);
    }
}
