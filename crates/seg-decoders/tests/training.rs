#![allow(clippy::unwrap_used)]
//! The training loop on a synthetic two-class (overlapping) task with a small test encoder:
//! frozen and fine-tuned modes, every head, augmentation alignment, PNG writers.

use crate::common;

use candle_core::{Device, Tensor};
use common::{synthetic_batches, TestEncoder};
use cxr_core::Encoder;
use rand::SeedableRng;
use seg_decoders::augment::PairedAugment;
use seg_decoders::eval::{binarize, dice_per_image};
use seg_decoders::loss::Activation;
use seg_decoders::output::{write_mask_png, write_overlay_png};
use seg_decoders::{
    evaluate, train_segmentation, Backbone, HeadConfig, SegmentationHead, TrainOptions,
};

fn mean_dice(scores: &[seg_decoders::ImageDice]) -> f64 {
    scores.iter().map(|s| s.mean).sum::<f64>() / scores.len() as f64
}

/// Dice of predicting every pixel as foreground, the trivial baseline.
fn all_foreground_dice(batches: &[seg_decoders::SegBatch]) -> f64 {
    let mut all = Vec::new();
    for b in batches {
        let ones = b.masks.ones_like().unwrap();
        for per in dice_per_image(&ones, &b.masks).unwrap() {
            all.push(per.iter().sum::<f64>() / per.len() as f64);
        }
    }
    all.iter().sum::<f64>() / all.len() as f64
}

#[test]
fn frozen_linear_head_learns_overlapping_masks() {
    let (encoder, _) = TestEncoder::random(16, 4, 4);
    let train = synthetic_batches(6, 4, 32, 1);
    let val = synthetic_batches(2, 4, 32, 2);
    let cfg = HeadConfig::linear(&encoder.feature_info(), 2);
    let opts = TrainOptions {
        epochs: 25,
        lr: 2e-2,
        warmup_steps: 5,
        ..TrainOptions::default()
    };
    for (lr, weight_decay) in [(-2e-2, 0.0), (f64::NAN, 0.0), (2e-2, -0.1)] {
        let bad = TrainOptions {
            lr,
            weight_decay,
            ..opts.clone()
        };
        let e = train_segmentation(&encoder, &cfg, &train, &val, &bad).unwrap_err();
        assert!(matches!(e, seg_decoders::Error::Config(_)), "{e:?}");
    }
    let (trained, history) = train_segmentation(&encoder, &cfg, &train, &val, &opts).unwrap();
    let first = history.epochs[0].train_loss;
    let last = history.epochs.last().unwrap().train_loss;
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    let dice = mean_dice(&evaluate(&encoder, &trained.head, &val, Activation::Sigmoid).unwrap());
    let trivial = all_foreground_dice(&val);
    assert!(
        dice > trivial + 0.2,
        "Dice {dice} vs all-foreground {trivial}"
    );
    // 769-style parameter count: (D + 1) per class
    let n: usize = trained
        .varmap
        .all_vars()
        .iter()
        .map(|v| v.elem_count())
        .sum();
    assert_eq!(n, 2 * (16 + 1));
}

#[test]
fn every_head_trains_a_step_in_both_backbone_modes() {
    let train = synthetic_batches(1, 2, 32, 3);
    for make in [
        HeadConfig::linear,
        HeadConfig::vitdet,
        |i: &cxr_core::FeatureInfo, k| HeadConfig::upernet(i, k).unwrap(),
    ] {
        let (encoder, enc_vars) = TestEncoder::random(16, 4, 4);
        let mut cfg = make(&encoder.feature_info(), 2);
        // small widths keep the debug-build test fast
        match &mut cfg {
            HeadConfig::VitDet(c) => {
                c.out_channels = 16;
                c.head_channels = 8;
            }
            HeadConfig::UperNet(c) => c.channels = 8,
            _ => {}
        }
        let before: Vec<Tensor> = enc_vars
            .all_vars()
            .iter()
            .map(|v| v.as_tensor().copy().unwrap())
            .collect();
        let opts = TrainOptions {
            epochs: 2,
            backbone: Backbone::FineTune {
                vars: enc_vars.all_vars(),
                lr_scale: 0.1,
            },
            augment: Some(PairedAugment::default()),
            ..TrainOptions::default()
        };
        let (trained, history) = train_segmentation(&encoder, &cfg, &train, &[], &opts).unwrap();
        assert!(history.epochs.iter().all(|e| e.train_loss.is_finite()));
        let moved = enc_vars
            .all_vars()
            .iter()
            .zip(&before)
            .all(|(v, b)| common::max_abs_diff(v.as_tensor(), b) > 0.0);
        assert!(moved, "{cfg:?}: fine-tuning left encoder weights unchanged");
        assert_eq!(trained.head.num_classes(), 2);

        // frozen: the encoder stays put
        let before: Vec<Tensor> = enc_vars
            .all_vars()
            .iter()
            .map(|v| v.as_tensor().copy().unwrap())
            .collect();
        let opts = TrainOptions {
            epochs: 1,
            ..TrainOptions::default()
        };
        train_segmentation(&encoder, &cfg, &train, &train, &opts).unwrap();
        for (v, b) in enc_vars.all_vars().iter().zip(&before) {
            assert_eq!(common::max_abs_diff(v.as_tensor(), b), 0.0);
        }
    }
}

#[test]
fn augmentation_moves_image_and_mask_together() {
    let mask = synthetic_batches(1, 4, 40, 5).remove(0).masks;
    let images = Tensor::cat(&[&mask, &mask.narrow(1, 0, 1).unwrap()], 1).unwrap();
    let aug = PairedAugment {
        hflip: 0.5,
        ..PairedAugment::default()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (img, m) = aug.apply(&images, &mask, &mut rng).unwrap();
    assert_eq!(m.dims(), mask.dims());
    let thresholded = img
        .narrow(1, 0, 2)
        .unwrap()
        .ge(0.5)
        .unwrap()
        .to_dtype(m.dtype())
        .unwrap();
    assert_eq!(common::max_abs_diff(&thresholded, &m), 0.0);
    assert!(
        common::max_abs_diff(&m, &mask) > 0.0,
        "the transform did something"
    );
    assert!(aug
        .apply(&images, &mask.narrow(2, 0, 39).unwrap(), &mut rng)
        .is_err());
}

#[test]
fn softmax_binarize_is_one_hot() {
    let logits = Tensor::new(&[[[[1f32]], [[3.]], [[2.]]]], &Device::Cpu).unwrap();
    let b = binarize(&logits, Activation::Softmax).unwrap();
    assert_eq!(
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        vec![0., 1., 0.]
    );
}

#[test]
fn writes_mask_and_overlay_pngs() {
    let batch = synthetic_batches(1, 1, 24, 7).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mask = batch.masks.get(0).unwrap();
    write_mask_png(&mask.get(0).unwrap(), &dir.path().join("mask.png")).unwrap();
    write_overlay_png(
        &batch.images.get(0).unwrap(),
        &mask,
        0.4,
        &dir.path().join("overlay.png"),
    )
    .unwrap();
    let back = image::open(dir.path().join("mask.png")).unwrap().to_luma8();
    let want: Vec<f32> = mask
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (p, w) in back.pixels().zip(want) {
        assert_eq!(p.0[0], if w > 0.5 { 255 } else { 0 });
    }
    let overlay = image::open(dir.path().join("overlay.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(overlay.dimensions(), (24, 24));
    assert!(
        overlay.pixels().any(|p| p.0[0] != p.0[1]),
        "some pixel is coloured"
    );
    assert!(write_overlay_png(
        &batch.images.get(0).unwrap(),
        &batch.masks,
        0.4,
        &dir.path().join("x.png")
    )
    .is_err());
}
