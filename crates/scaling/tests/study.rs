//! The study runner end to end on a tiny configuration: tables, fits, figure; a rerun reuses
//! finished cells; a lost cell state is rebuilt from its checkpoint; an interrupted cell
//! resumes to the same encoder as an uninterrupted one.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use cxr_core::{Encoder, FeatureRequest};
use dino_loss::DinoV2Config;
use dino_pretrain::Init;
use metrics::bootstrap::BootstrapConfig;
use scaling::curation::SubsetSampler;
use scaling::study::cell::{pretrain, run_cell, CellData, PretrainSpec};
use scaling::study::pool::Pool;
use scaling::study::tasks::{EvalTask, Predictions, TaskResult};
use scaling::study::{run_study, StudySpec};

use cxr_testkit::shared_dir as shared;

/// Mean pooled feature of six fixed inputs: deterministic, cheap, encoder-dependent.
#[derive(Debug)]
struct MeanFeature;

impl EvalTask for MeanFeature {
    fn name(&self) -> String {
        "mean-feature".into()
    }
    fn evaluate(&self, enc: &dyn Encoder) -> scaling::Result<Vec<TaskResult>> {
        let s = enc.preprocessing().crop.0;
        let x = Tensor::arange(0f32, (6 * 3 * s * s) as f32, &Device::Cpu)?
            .affine(1.0 / (6 * 3 * s * s) as f64, -0.5)?
            .reshape((6, 3, s, s))?;
        let f = enc.forward_features(&x, &FeatureRequest::default())?;
        let v: Vec<f64> = f.pooled.to_dtype(DType::F64)?.mean(1)?.to_vec1()?;
        Ok(vec![TaskResult {
            task: "mean-feature".into(),
            metric: "mean".into(),
            ids: (0..6).map(|i| i.to_string()).collect(),
            groups: (0..6).map(|i| i.to_string()).collect(),
            predictions: Predictions::PerSample { values: v },
        }])
    }
}

fn values(r: &TaskResult) -> Vec<f64> {
    match &r.predictions {
        Predictions::PerSample { values } => values.clone(),
        _ => panic!("not per-sample"),
    }
}

fn spec(steps: u64) -> PretrainSpec {
    let mut cfg = DinoV2Config::dinov2_default();
    cfg.student.arch = "vit_tiny".into();
    cfg.student.patch_size = 8;
    cfg.crops.global_crops_size = 16;
    cfg.crops.local_crops_size = 8;
    cfg.crops.local_crops_number = 1;
    cfg.dino.head_n_prototypes = 16;
    cfg.dino.head_hidden_dim = 16;
    cfg.dino.head_bottleneck_dim = 8;
    cfg.optim.epochs = 2;
    cfg.optim.warmup_epochs = 1;
    cfg.optim.freeze_last_layer_epochs = 0;
    cfg.teacher.warmup_teacher_temp_epochs = 1;
    cfg.train.official_epoch_length = 1;
    cfg.train.batch_size_per_gpu = 2;
    PretrainSpec {
        config: cfg,
        init: Init::Random,
        steps,
        checkpoint_every: 1,
        progress: false,
    }
}

#[test]
fn study_writes_tables_reuses_cells_and_resumes() {
    let dev = Device::Cpu;
    let tmp = tempfile::tempdir().unwrap();
    let pool = Pool::from_packs(&[shared().join("data/cxr-mini")]).unwrap();
    let tasks: Vec<Box<dyn EvalTask>> = vec![Box::new(MeanFeature)];
    let study = StudySpec {
        out: tmp.path().join("study"),
        sizes: vec![4, 8, 16],
        archs: vec![spec(2)],
        subset_seed: 0,
        bootstrap: BootstrapConfig {
            n_resamples: 20,
            ..Default::default()
        },
        extrapolate_to: vec![100.0],
    };
    let first = run_study(&study, &pool, &tasks, &dev, &mut |_| {}).unwrap();
    assert_eq!((first.cells.len(), first.reused), (3, 0));
    for ext in ["md", "csv", "fits.json"] {
        assert!(first.tables.with_extension(ext).is_file(), "{ext}");
    }
    for ext in ["png", "svg"] {
        assert!(first.figure.with_extension(ext).is_file(), "{ext}");
    }
    // cells differ (they saw different images) and every row has a CI
    assert_ne!(first.cells[0].results, first.cells[2].results);
    assert!(first.rows.iter().all(|r| r.ci.is_some()));

    let again = run_study(&study, &pool, &tasks, &dev, &mut |_| {}).unwrap();
    assert_eq!(again.reused, 3);
    // cell.json round-trips floats through decimal text (serde_json: within an ulp or so)
    assert_eq!(again.cells.len(), first.cells.len());
    for (a, b) in again.cells.iter().zip(&first.cells) {
        assert_eq!(
            (a.n_images, a.steps, &a.arch),
            (b.n_images, b.steps, &b.arch)
        );
        assert_eq!(a.results.len(), b.results.len());
        let (x, y) = (values(&a.results[0]), values(&b.results[0]));
        assert!(!y.is_empty());
        assert_eq!(x.len(), y.len(), "per-sample values after the round trip");
        for (u, v) in x.iter().zip(&y) {
            assert!((u - v).abs() <= 1e-12 * v.abs(), "{u} vs {v}");
        }
    }

    // a lost state is rebuilt from the cell's final checkpoint, identically
    let cell8 = study.out.join("cells/vit_tiny/nested-8");
    std::fs::remove_file(cell8.join("cell.json")).unwrap();
    let rebuilt = run_study(&study, &pool, &tasks, &dev, &mut |_| {}).unwrap();
    assert_eq!(rebuilt.reused, 2);
    assert_eq!(rebuilt.cells[1].results, first.cells[1].results);

    // an interrupted cell (1 of 2 steps done) resumes to the uninterrupted encoder
    let data = CellData {
        arm: "nested".into(),
        images: pool.images.clone(),
        sampler: SubsetSampler::new((0..8).collect(), 0).unwrap().shared(),
        n_images: 8,
    };
    let root = study.out.clone();
    let cut = tmp.path().join("cut");
    pretrain(&cut, &root, &spec(1), &data, &dev).unwrap();
    run_cell(&cut, &root, &spec(2), &data, &tasks, &dev).unwrap();
    let straight = tmp.path().join("straight");
    run_cell(&straight, &root, &spec(2), &data, &tasks, &dev).unwrap();
    let read = |d: &PathBuf| std::fs::read(d.join("encoder/model.safetensors")).unwrap();
    assert_eq!(read(&cut), read(&straight));
    // a mismatching rerun is refused
    assert!(run_cell(&straight, &root, &spec(3), &data, &tasks, &dev).is_err());
}

/// A pool read from tar shards holds the train samples with the labels a pool read from the
/// pack gives them.
#[test]
fn pool_from_shards_matches_the_pack() {
    use cxr_data::shards::{record_json, sample_key, ShardWriter};
    use cxr_data::{decode_file, DecodeOptions, ImageSource, Manifest, Split};
    let pack = shared().join("data/cxr-findings");
    let m = Manifest::from_pack(&pack).unwrap();
    let rows: Vec<usize> = (0..20).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardWriter::new(dir.path(), "f", 8).unwrap();
    for &i in &rows {
        let r = &m.records[i];
        let bytes = std::fs::read(&r.image).unwrap();
        w.write(&sample_key(&r.image), "png", &bytes, &record_json(&m, r))
            .unwrap();
    }
    w.finish().unwrap();
    let pool = Pool::from_shards(&[dir.path().to_path_buf()]).unwrap();
    let train: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|&i| m.records[i].split == Some(Split::Train))
        .collect();
    assert!(!train.is_empty() && train.len() < rows.len());
    assert_eq!(pool.len(), train.len());
    assert!(pool.pack.iter().all(|&p| p == 0));
    let from_pack = Pool::from_packs(&[pack]).unwrap();
    for (k, &i) in train.iter().enumerate() {
        // the pack pool lists the train rows in manifest order too
        let j = m
            .indices_in(Split::Train)
            .iter()
            .position(|&t| t == i)
            .unwrap();
        let mut a = pool.labels[k].clone();
        let mut b = from_pack.labels[j].clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "row {i}");
        assert!(!a.is_empty());
    }
    let opts = DecodeOptions::default();
    assert_eq!(
        pool.images.decode(0, &opts).unwrap(),
        decode_file(&m.records[train[0]].image, &opts).unwrap()
    );
}
