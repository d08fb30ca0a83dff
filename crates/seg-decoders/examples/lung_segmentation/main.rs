//! Lung segmentation on cxr-mini: linear, ViTDet and UPerNet heads on a frozen encoder (a
//! DINOv2 ViT, or MI2's DaViT tower), scored on the test split beside two trivial baselines.
//!
//! Run from the workspace root:
//! `cargo run --release -p seg-decoders --example lung_segmentation -- --help`
//!
//! Geometry: each radiograph (longer side 512, often 512×419) is resized whole to S×S
//! (default 224, the encoder's bicubic filter and normalisation, no centre crop, so no lung
//! is cut off); its mask is resized bilinearly to S×S and thresholded at 0.5 for training.
//! Predictions are resized back (bilinear on the logits) to the native size and scored
//! against the native masks. The masks only cover V7's annotated ROI box, so the scores are
//! Dice over whole images with `mask_complete = 1`, and Dice inside the ROI box over every
//! test mask, each with a 95% percentile bootstrap CI clustered by patient.
//!
//! Expected output (random-init ViT-tiny): per-epoch losses, then a Markdown table in which
//! the mean-training-mask prior scores about 0.82 (complete) / 0.74 (ROI), all-foreground
//! about 0.42 / 0.55, and heads on a random encoder land near or below the prior. A trained
//! encoder's linear head has to beat the prior to show it learned something.

mod data;
mod scoring;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::{Parser, ValueEnum};
use cxr_core::ranges::at_least_one;
use cxr_core::Encoder;
use cxr_data::Split;
use metrics::bootstrap::{BootstrapConfig, PairedInterval};
use seg_decoders::augment::PairedAugment;
use seg_decoders::eval::predict_logits;
use seg_decoders::output::{write_mask_png, write_overlay_png};
use seg_decoders::train::Backbone;
use seg_decoders::{train_segmentation, HeadConfig, SegBatch, TrainOptions};
use vit_backbone::{encoder_kind, open_encoder, Dinov2Config, Dinov2Model, EncoderKind};

use cxr_viz::render::IntervalRow;
use data::Sample;
use scoring::{fmt, paired_mean, score, to_native, Scored, Scores};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeadKind {
    Linear,
    Vitdet,
    Upernet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrainMasks {
    /// Every training image with a mask (truncated masks teach "background" where
    /// unannotated lung lies outside the ROI box).
    All,
    /// Only `mask_complete = 1` training masks.
    Complete,
}

/// Train segmentation heads on a frozen ViT for cxr-mini lung masks and report test Dice
/// (patient-clustered bootstrap CIs) beside all-foreground and mean-training-mask baselines.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Args {
    /// The cxr-mini folder (labels.csv, images/, masks/). Default:
    /// $CXR_SHARED/data/cxr-mini, CXR_SHARED defaulting to the `shared/` beside the repository.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Encoder: a Hugging Face DINOv2 folder (config.json, model.safetensors,
    /// preprocessor_config.json), or a DaViT / MI2 folder for frozen heads (--fine-tune needs
    /// DINOv2). Default: models/cxr-dino-vit-tiny of the workspace if it exists, else a
    /// random-init ViT-tiny/14 (HF DINOv2 init, seeded). Give it N times with N --baseline
    /// folders to compare N pairs (frozen heads; figures from the first): each pair gets its
    /// paired differences, and their mean over the pairs one more row per head.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Use the random-init encoder even when a default model folder exists.
    #[arg(long)]
    random_encoder: bool,
    /// A second encoder to compare against: a DINOv2 folder, or `random` for the seeded
    /// random-init ViT-tiny/14. Every head is trained on it too (same data, seed and
    /// epochs), and each head's Dice difference (encoder − baseline) gets a paired
    /// patient-clustered bootstrap. To test a pretraining run against its own random
    /// initialisation, pass the folder `pretrain_dino --export-init` wrote. Frozen heads only.
    /// Give one per --model to compare several pairs.
    #[arg(long)]
    baseline: Vec<String>,
    /// Square input side (a multiple of the patch size 14).
    #[arg(long, default_value_t = 224, value_parser = at_least_one::<usize>)]
    size: usize,
    /// Heads to train, comma separated.
    #[arg(long, value_delimiter = ',', default_values = ["linear", "vitdet", "upernet"])]
    heads: Vec<HeadKind>,
    /// Which training masks to use.
    #[arg(long, value_enum, default_value_t = TrainMasks::All)]
    train_masks: TrainMasks,
    /// Epochs of the linear head.
    #[arg(long, default_value_t = 60, value_parser = at_least_one::<usize>)]
    epochs_linear: usize,
    /// Epochs of the ViTDet head.
    #[arg(long, default_value_t = 15, value_parser = at_least_one::<usize>)]
    epochs_vitdet: usize,
    /// Epochs of the UPerNet head.
    #[arg(long, default_value_t = 10, value_parser = at_least_one::<usize>)]
    epochs_upernet: usize,
    /// ViTDet pyramid and FPN-head channels (published: 256 / 128).
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    vitdet_channels: usize,
    /// UPerNet channels (published: 512).
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    upernet_channels: usize,
    /// Peak Adam learning rate of ViTDet and UPerNet (linear warm-up over the first epoch,
    /// cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Peak Adam learning rate of the linear head.
    #[arg(long, default_value_t = 1e-2)]
    lr_linear: f64,
    /// Score the validation masks after every epoch (re-runs the encoder on them each time).
    #[arg(long)]
    val_every_epoch: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 8, value_parser = at_least_one::<usize>)]
    batch: usize,
    /// Seed of the random encoder, dropout and the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Bootstrap resamples (of patients).
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    resamples: usize,
    /// Where overlay / mask PNGs go (none written when 0 figures are asked for). The figures
    /// in docs/results.md were written with `--out-dir docs/img`.
    #[arg(long, default_value = "out/lung_segmentation")]
    out_dir: PathBuf,
    /// Test images to draw (overlay of the prediction in red, ground truth in blue; 0: none).
    #[arg(long, default_value_t = 2)]
    figures: usize,
    /// Head whose predictions are drawn.
    #[arg(long, value_enum, default_value_t = HeadKind::Linear)]
    figure_head: HeadKind,
    /// Fine-tune the encoder with each head (a fresh copy of the encoder per head) instead
    /// of training the head on frozen features.
    #[arg(long)]
    fine_tune: bool,
    /// With --fine-tune: the encoder's learning rate relative to the head's.
    #[arg(long, default_value_t = 0.1)]
    backbone_lr_scale: f64,
    /// Paired random-resized-crop augmentation of the training batches (area 0.5–1, aspect
    /// 3/4–4/3, no flips: laterality matters in a chest X-ray).
    #[arg(long)]
    augment: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_dir(a: &Args) -> PathBuf {
    a.data
        .clone()
        .unwrap_or_else(|| cxr_testkit::shared_dir().join("data/cxr-mini"))
}

/// A ViT-tiny/14 with Hugging Face's `Dinov2PreTrainedModel._init_weights` distribution
/// (weights and tokens: truncated normal, std 0.02, cut at ±2; biases 0; norms 1/0; layer
/// scale as configured), drawn from a seeded generator: candle's CPU `randn` is unseeded.
fn random_vit_tiny(size: usize, seed: u64, dev: &Device) -> anyhow::Result<Dinov2Model> {
    let cfg = Dinov2Config::vit_tiny(size);
    let varmap = VarMap::new();
    Dinov2Model::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
    let tensors = train_utils::init::hf_vit_reinit(&varmap, seed, dev)?;
    Ok(Dinov2Model::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::F32, dev),
    )?)
}

/// The encoder folder: `--model`, else the shipped demo model unless `--random-encoder`;
/// `None` means the seeded random ViT-tiny.
fn model_dir(a: &Args) -> Option<PathBuf> {
    let default = workspace_root().join("models/cxr-dino-vit-tiny");
    match (a.model.first(), a.random_encoder) {
        (Some(d), _) => Some(d.clone()),
        (None, false) if default.join("config.json").exists() => Some(default),
        _ => None,
    }
}

/// A `Var`-backed copy of the encoder (the same weights as [`load_encoder`]'s) for
/// fine-tuning, with the `VarMap` that holds its parameters.
fn trainable_encoder(a: &Args, dev: &Device) -> anyhow::Result<(Dinov2Model, VarMap)> {
    let varmap = VarMap::new();
    let dir = model_dir(a);
    let model = match dir {
        Some(d) => {
            let files = vit_backbone::ModelFiles::in_dir(&d)?;
            vit_backbone::Checkpoint::read(&files)?.into_trainable(&varmap, DType::F32, dev)?
        }
        None => {
            let cfg = Dinov2Config::vit_tiny(a.size);
            let model = Dinov2Model::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))?;
            let values = train_utils::init::hf_vit_reinit(&varmap, a.seed, dev)?;
            let data = varmap
                .data()
                .lock()
                .map_err(|_| anyhow!("poisoned VarMap"))?;
            for (name, var) in data.iter() {
                var.set(&values[name].copy()?)?;
            }
            model
        }
    };
    Ok((model, varmap))
}

fn load_encoder(a: &Args, dev: &Device) -> anyhow::Result<(Box<dyn Encoder>, String)> {
    encoder_from(model_dir(a), a, dev)
}

/// `--baseline`: a folder, or `random` for the seeded random ViT-tiny.
fn load_baseline(spec: &str, a: &Args, dev: &Device) -> anyhow::Result<(Box<dyn Encoder>, String)> {
    let dir = (spec != "random").then(|| PathBuf::from(spec));
    let (m, name) = encoder_from(dir, a, dev)?;
    Ok((m, format!("baseline {name}")))
}

fn encoder_from(
    dir: Option<PathBuf>,
    a: &Args,
    dev: &Device,
) -> anyhow::Result<(Box<dyn Encoder>, String)> {
    Ok(match dir {
        Some(d) => {
            let m = open_encoder(&d, DType::F32, dev)
                .with_context(|| format!("loading encoder from {}", d.display()))?;
            (m, d.display().to_string())
        }
        None => (
            Box::new(random_vit_tiny(a.size, a.seed, dev)?),
            format!("random ViT-tiny/14 (seed {})", a.seed),
        ),
    })
}

fn head_config(kind: HeadKind, a: &Args, enc: &dyn Encoder) -> anyhow::Result<HeadConfig> {
    let info = enc.feature_info();
    Ok(match kind {
        HeadKind::Linear => HeadConfig::linear(&info, 1),
        HeadKind::Vitdet => {
            let mut c = seg_decoders::heads::VitDetConfig::for_encoder(&info, 1);
            c.out_channels = a.vitdet_channels;
            c.head_channels = a.vitdet_channels;
            HeadConfig::VitDet(c)
        }
        HeadKind::Upernet => {
            let mut c = seg_decoders::heads::UperNetConfig::for_encoder(&info, 1)?;
            c.channels = a.upernet_channels;
            HeadConfig::UperNet(c)
        }
    })
}

fn describe(kind: HeadKind, a: &Args) -> String {
    match kind {
        HeadKind::Linear => "linear".into(),
        HeadKind::Vitdet => format!("ViTDet (c{})", a.vitdet_channels),
        HeadKind::Upernet => format!("UPerNet (c{})", a.upernet_channels),
    }
}

struct Row {
    method: String,
    encoder: String,
    epochs: String,
    scores: Scores,
}

fn print_table(rows: &[Row]) {
    println!("| method | encoder | Dice, complete masks (95% CI) | images / patients | Dice in ROI box (95% CI) | images / patients | epochs |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        let (c, o) = (&r.scores.complete, &r.scores.roi);
        println!(
            "| {} | {} | {} | {} / {} | {} | {} / {} | {} |",
            r.method,
            r.encoder,
            fmt(&c.interval),
            c.images(),
            c.patients,
            fmt(&o.interval),
            o.images(),
            o.patients,
            r.epochs
        );
    }
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let a = Args::parse();
    let dev = Device::Cpu;
    let t0 = Instant::now();
    if a.baseline.len() > a.model.len().max(1)
        || (a.model.len() > 1 && a.baseline.len() != a.model.len())
    {
        bail!(
            "{} --model and {} --baseline: several models need one baseline each",
            a.model.len(),
            a.baseline.len()
        );
    }
    if a.fine_tune && !a.baseline.is_empty() {
        bail!("--baseline compares frozen encoders; drop --fine-tune");
    }
    if a.fine_tune {
        if let Some(dir) = model_dir(&a) {
            let kind = encoder_kind(&dir)?;
            if kind != EncoderKind::Dinov2 {
                bail!(
                    "--fine-tune trains a DINOv2 encoder; {} holds a {kind} one (drop \
                     --fine-tune to train heads on its frozen features)",
                    dir.display()
                );
            }
        }
    }
    let (encoder, enc_name) = load_encoder(&a, &dev)?;
    let patch = encoder.feature_info().patch_stride;
    if a.size % patch != 0 {
        bail!(
            "--size {} is not a multiple of the encoder's patch stride {patch}",
            a.size
        );
    }
    let processor = data::square_processor(&encoder.preprocessing(), a.size);
    let data = data_dir(&a);
    let samples = data::load(&data, &processor, a.size)
        .with_context(|| format!("loading {}", data.display()))?;
    let (train, val, test) = splits(&samples, &a);
    println!(
        "encoder: {enc_name}; input {s}x{s} (whole image resized, no crop); masks: train {} / val {} / test {} ({} complete)",
        train.len(),
        val.len(),
        test.len(),
        test.iter().filter(|s| s.complete).count(),
        s = a.size
    );
    let boot = BootstrapConfig {
        n_resamples: a.resamples,
        seed: a.seed,
        confidence: 0.95,
    };
    let mut rows = Vec::new();

    let all_fg: Vec<Vec<bool>> = test.iter().map(|s| vec![true; s.mask.len()]).collect();
    rows.push(Row {
        method: "all-foreground baseline".into(),
        encoder: "-".into(),
        epochs: "-".into(),
        scores: score(&test, &all_fg, &boot)?,
    });
    let n = a.size * a.size;
    let mut mean = vec![0f32; n];
    for s in &train {
        for (m, t) in mean.iter_mut().zip(&s.target) {
            *m += t / train.len() as f32;
        }
    }
    let prior = Tensor::from_vec(mean, (a.size, a.size), &dev)?.affine(1.0, -0.5)?;
    let prior_pred = test
        .iter()
        .map(|s| to_native(&prior, s.height, s.width))
        .collect::<Result<Vec<_>, _>>()?;
    rows.push(Row {
        method: "mean training mask > 0.5".into(),
        encoder: "-".into(),
        epochs: "-".into(),
        scores: score(&test, &prior_pred, &boot)?,
    });

    let sets = Sets::new(&a, &train, &val, &test, &dev)?;
    let mut per_head = Vec::new();
    for &kind in &a.heads {
        let row = fit_head(
            &a,
            kind,
            encoder.as_ref(),
            &enc_name,
            &sets,
            &boot,
            &dev,
            true,
        )?;
        per_head.push((kind, rows.len()));
        rows.push(row);
    }
    let mut paired_rows = Vec::new();
    // per pair, the row of each head for the model and for its baseline
    let mut pairs: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for (p, spec) in a.baseline.iter().enumerate() {
        let model_rows = if p == 0 {
            per_head.iter().map(|&(_, i)| i).collect()
        } else {
            let (enc, name) = encoder_from(Some(a.model[p].clone()), &a, &dev)?;
            fit_frozen_heads(
                &a,
                enc.as_ref(),
                &name,
                patch,
                &data,
                &boot,
                &dev,
                &mut rows,
            )?
        };
        let (base, base_name) = load_baseline(spec, &a, &dev)?;
        let base_rows = fit_frozen_heads(
            &a,
            base.as_ref(),
            &base_name,
            patch,
            &data,
            &boot,
            &dev,
            &mut rows,
        )?;
        pairs.push((model_rows, base_rows));
    }
    for (h, &(kind, _)) in per_head.iter().enumerate() {
        let of = |members: &[(Vec<usize>, Vec<usize>)], view: fn(&Scores) -> &Scored| {
            members
                .iter()
                .map(|(m, b)| (view(&rows[m[h]].scores), view(&rows[b[h]].scores)))
                .collect::<Vec<_>>()
        };
        for (p, pair) in pairs.iter().enumerate() {
            let label = if pairs.len() > 1 {
                format!("{}, pair {}", describe(kind, &a), p + 1)
            } else {
                describe(kind, &a)
            };
            let one = std::slice::from_ref(pair);
            paired_rows.push(PairedRow {
                head: label,
                pooled: false,
                complete: paired_mean(&of(one, |s| &s.complete), &boot)?,
                roi: paired_mean(&of(one, |s| &s.roi), &boot)?,
            });
        }
        if pairs.len() > 1 {
            paired_rows.push(PairedRow {
                head: format!("{}, mean of the {} pairs", describe(kind, &a), pairs.len()),
                pooled: true,
                complete: paired_mean(&of(&pairs, |s| &s.complete), &boot)?,
                roi: paired_mean(&of(&pairs, |s| &s.roi), &boot)?,
            });
        }
    }
    println!();
    print_table(&rows);
    if !paired_rows.is_empty() {
        print_paired(&paired_rows, a.resamples);
    }
    if pairs.len() > 1 {
        plot_paired(&paired_rows, &a.out_dir)?;
    }
    println!(
        "\ntrain masks: {:?}; lr {:.0e} (linear {:.0e}), batch {}, BCE + soft Dice, {}; total {:.0} s",
        a.train_masks,
        a.lr,
        a.lr_linear,
        a.batch,
        if a.augment {
            "paired random-resized-crop augmentation"
        } else {
            "no augmentation"
        },
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Train (the masks --train-masks keeps), val and test samples.
fn splits<'s>(
    samples: &'s [Sample],
    a: &Args,
) -> (Vec<&'s Sample>, Vec<&'s Sample>, Vec<&'s Sample>) {
    let pick =
        |split: Split| -> Vec<&Sample> { samples.iter().filter(|s| s.split == split).collect() };
    let train = pick(Split::Train)
        .into_iter()
        .filter(|s| a.train_masks == TrainMasks::All || s.complete)
        .collect();
    (train, pick(Split::Val), pick(Split::Test))
}

/// Fits every head of --heads on a frozen `encoder` (no figures), on the same images and masks
/// as the first encoder but with its own normalisation; pushes the rows and returns their
/// indices, in --heads order.
#[allow(clippy::too_many_arguments)]
fn fit_frozen_heads(
    a: &Args,
    encoder: &dyn Encoder,
    name: &str,
    patch: usize,
    data: &Path,
    boot: &BootstrapConfig,
    dev: &Device,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Vec<usize>> {
    let own = encoder.feature_info().patch_stride;
    if own != patch {
        bail!("{name}: patch stride {own} but the first encoder's is {patch}");
    }
    let processor = data::square_processor(&encoder.preprocessing(), a.size);
    let samples = data::load(data, &processor, a.size)
        .with_context(|| format!("loading {}", data.display()))?;
    let (train, val, test) = splits(&samples, a);
    let sets = Sets::new(a, &train, &val, &test, dev)?;
    let mut out = Vec::new();
    for &kind in &a.heads {
        out.push(rows.len());
        rows.push(fit_head(a, kind, encoder, name, &sets, boot, dev, false)?);
    }
    Ok(out)
}

/// Batches of the three splits, as one encoder's preprocessing made them.
struct Sets<'s> {
    train: Vec<SegBatch>,
    val: Vec<SegBatch>,
    test: Vec<SegBatch>,
    test_samples: &'s [&'s Sample],
}

impl<'s> Sets<'s> {
    fn new(
        a: &Args,
        train: &[&Sample],
        val: &[&Sample],
        test: &'s [&'s Sample],
        dev: &Device,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            train: data::batches(train, a.size, a.batch, dev)?,
            val: data::batches(val, a.size, a.batch, dev)?,
            test: data::batches(test, a.size, a.batch, dev)?,
            test_samples: test,
        })
    }
}

/// Trains one head on `encoder` (frozen, or a fine-tuned copy with --fine-tune), scores its
/// native-size test predictions, and draws the figures when `figures` and the head match.
#[allow(clippy::too_many_arguments)]
fn fit_head(
    a: &Args,
    kind: HeadKind,
    encoder: &dyn Encoder,
    enc_name: &str,
    sets: &Sets,
    boot: &BootstrapConfig,
    dev: &Device,
    figures: bool,
) -> anyhow::Result<Row> {
    let test = sets.test_samples;
    let val_used: &[SegBatch] = if a.val_every_epoch { &sets.val } else { &[] };
    let epochs = match kind {
        HeadKind::Linear => a.epochs_linear,
        HeadKind::Vitdet => a.epochs_vitdet,
        HeadKind::Upernet => a.epochs_upernet,
    };
    let cfg = head_config(kind, a, encoder)?;
    let tuned = if a.fine_tune {
        Some(trainable_encoder(a, dev)?)
    } else {
        None
    };
    let backbone = match &tuned {
        Some((_, vm)) => Backbone::FineTune {
            vars: vm.all_vars(),
            lr_scale: a.backbone_lr_scale,
        },
        None => Backbone::Frozen { cache: true },
    };
    let enc: &dyn Encoder = match &tuned {
        Some((m, _)) => m,
        None => encoder,
    };
    let opts = TrainOptions {
        epochs,
        backbone,
        augment: a.augment.then(PairedAugment::default),
        lr: if kind == HeadKind::Linear {
            a.lr_linear
        } else {
            a.lr
        },
        warmup_steps: sets.train.len(),
        seed: a.seed,
        verbose: true,
        ..TrainOptions::default()
    };
    let th = Instant::now();
    eprintln!(
        "training {} on {enc_name} for {epochs} epochs",
        describe(kind, a)
    );
    let (trained, _history) = train_segmentation(enc, &cfg, &sets.train, val_used, &opts)?;
    let logits = predict_all(enc, &trained.head, &sets.test)?;
    let preds = test
        .iter()
        .zip(&logits)
        .map(|(s, l)| to_native(l, s.height, s.width))
        .collect::<Result<Vec<_>, _>>()?;
    let scores = score(test, &preds, boot)?;
    eprintln!(
        "{}: test Dice complete {} / ROI {} ({:.0} s)",
        describe(kind, a),
        fmt(&scores.complete.interval),
        fmt(&scores.roi.interval),
        th.elapsed().as_secs_f64()
    );
    if figures && kind == a.figure_head && a.figures > 0 {
        draw(a, test, &sets.test, &logits)?;
    }
    Ok(Row {
        method: format!("{} head", describe(kind, a)),
        encoder: if a.fine_tune {
            format!(
                "{enc_name}, fine-tuned (encoder lr x{})",
                a.backbone_lr_scale
            )
        } else {
            format!("{enc_name}, frozen")
        },
        epochs: epochs.to_string(),
        scores,
    })
}

/// A head's paired Dice differences, encoder − baseline, for one pair or the mean of several.
struct PairedRow {
    head: String,
    pooled: bool,
    complete: PairedInterval,
    roi: PairedInterval,
}

/// The paired Dice differences, encoder − baseline, per head.
fn print_paired(rows: &[PairedRow], resamples: usize) {
    let d = |p: &PairedInterval| {
        let est = p
            .difference
            .estimate
            .map_or("-".into(), |v| format!("{v:+.3}"));
        let ci = p
            .difference
            .ci
            .map_or(String::new(), |(lo, hi)| format!(" [{lo:+.3}, {hi:+.3}]"));
        let frac = p
            .fraction_a_not_better
            .map_or("-".into(), |f| format!("{:.1}%", 100.0 * f));
        format!("{est}{ci} | {frac}")
    };
    println!("\nPaired patient-clustered bootstrap ({resamples} resamples), encoder − baseline:\n");
    println!("| head | Δ Dice, complete masks (95% CI) | resamples with Δ ≤ 0 | Δ Dice in ROI box (95% CI) | resamples with Δ ≤ 0 |");
    println!("| --- | --- | --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} |", r.head, d(&r.complete), d(&r.roi));
    }
}

/// The paired Dice differences as a forest plot, `paired_dice.png`/`.svg` in `dir`: each
/// head's pairs and their mean (emphasised), complete masks above the ROI box.
fn plot_paired(rows: &[PairedRow], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut plot = Vec::new();
    for view in ["complete masks", "ROI box"] {
        for r in rows {
            let d = if view == "ROI box" {
                &r.roi
            } else {
                &r.complete
            };
            let d = &d.difference;
            if let (Some(estimate), Some(ci)) = (d.estimate, d.ci) {
                plot.push(IntervalRow {
                    label: format!("{} · {view}", r.head),
                    estimate,
                    ci,
                    emphasis: r.pooled,
                });
            }
        }
    }
    for ext in ["png", "svg"] {
        cxr_viz::render::intervals(
            &plot,
            "Test Dice, encoder − baseline (95% patient-clustered CI)",
            "paired difference",
            &dir.join(format!("paired_dice.{ext}")),
        )?;
    }
    Ok(())
}

/// Test logits `[S, S]`, one per image, in order.
fn predict_all(
    encoder: &dyn Encoder,
    head: &seg_decoders::Head,
    batches: &[SegBatch],
) -> anyhow::Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for b in batches {
        let l = predict_logits(encoder, head, &b.images)?;
        for i in 0..l.dim(0)? {
            out.push(l.get(i)?.squeeze(0)?);
        }
    }
    Ok(out)
}

/// Overlays (prediction red, ground truth blue, on the S×S input) and the predicted mask
/// PNG for the first `--figures` test images, complete masks first.
fn draw(a: &Args, test: &[&Sample], batches: &[SegBatch], logits: &[Tensor]) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let mut order: Vec<usize> = (0..test.len()).collect();
    order.sort_by_key(|&i| !test[i].complete);
    for &i in order.iter().take(a.figures) {
        let (bi, k) = (i / a.batch, i % a.batch);
        let image = batches[bi].images.get(k)?;
        let truth = batches[bi].masks.get(k)?;
        let pred = logits[i].gt(0.0)?.to_dtype(DType::F32)?.unsqueeze(0)?;
        let both = Tensor::cat(&[&pred, &truth], 0)?;
        let stem = format!("lung_seg_{:?}_{}", a.figure_head, test[i].id).to_lowercase();
        let overlay = a.out_dir.join(format!("{stem}_overlay.png"));
        write_overlay_png(&image, &both, 0.3, &overlay)?;
        write_mask_png(&pred, &a.out_dir.join(format!("{stem}_mask.png")))?;
        eprintln!("wrote {} (+ _mask.png)", overlay.display());
    }
    Ok(())
}
