//! Linear probes on cxr-findings: features of an encoder (a trained HF-layout DINOv2 dir, a
//! DaViT / MI2 folder, or a seeded random-init ViT-tiny), the raw-pixel baseline (32x32 thumbnails) and the
//! view/sex/age-only baseline; test AUROC/AUPRC with patient-level bootstrap CIs.
//!
//! `cargo run --release --example probe_findings -- --data ../shared/data/cxr-findings`
//! Expect a few minutes on 2 cores; the random-init encoder should sit near the baselines
//! (about 0.5-0.65 macro AUROC), a trained one clearly above on effusion/cardiomegaly.
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use clap::Parser;
use cxr_core::ranges::at_least_one;
use cxr_core::Encoder;
use cxr_data::{Manifest, ManifestSpec, Split};
use metrics::bootstrap::BootstrapConfig;
use probe_heads::eval::{evaluate, logreg_probe, paired_macro_auroc};
use probe_heads::extract::{extract_cached, ExtractConfig};
use probe_heads::knn::{knn_scores, KnnConfig};
use probe_heads::linear::{fit_seeds, mean_std, LinearProbeConfig};
use probe_heads::logreg::default_c_grid;
use probe_heads::pixel::PatchMeanEncoder;
use probe_heads::results::{to_markdown, write_tables, ResultRow};
use probe_heads::{Matrix, Targets};
use vit_backbone::{encoder_kind, open_encoder, Dinov2Config, Dinov2Model};

#[derive(Parser, Debug)]
#[command(about = "Frozen-feature probes on cxr-findings, beside the README's baselines")]
struct Args {
    /// Encoder folder (HF DINOv2, DaViT or MI2); default models/cxr-dino-vit-tiny if present.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The cxr-findings pack.
    #[arg(long, default_value = "../shared/data/cxr-findings")]
    data: PathBuf,
    /// Feature cache dir.
    #[arg(long, default_value = "target/probe-cache")]
    cache: PathBuf,
    /// Linear-probe seeds (at least 1).
    #[arg(long, default_value_t = 5, value_parser = at_least_one::<usize>)]
    seeds: usize,
    /// AdamW learning rate of the linear probe.
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    bootstrap: usize,
    /// Baseline encoder folder (any kind --model takes) for a paired comparison with --model; default: the
    /// seeded random-init ViT-tiny/14. To test a pretraining run against its own random
    /// initialisation, pass the folder `pretrain_dino --export-init` wrote.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Output stem for <stem>.md / <stem>.csv (and <stem>_paired.md with a model).
    #[arg(long, default_value = "target/probe_findings")]
    out: PathBuf,
}

/// Seeded random init as HF Dinov2's `_init_weights` (see `train_utils::init::hf_vit_reinit`).
fn random_vit_tiny(seed: u64) -> anyhow::Result<Dinov2Model> {
    let cfg = Dinov2Config::vit_tiny(224);
    let vm = candle_nn::VarMap::new();
    let _probe = Dinov2Model::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let tensors = train_utils::init::hf_vit_reinit(&vm, seed, &Device::Cpu)?;
    Ok(Dinov2Model::new(
        &cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?)
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh on every pass
    cxr_core::retain_freed_heap_memory();
    let args = Args::parse();
    let t0 = std::time::Instant::now();
    let manifest = Manifest::from_csv(args.data.join("labels.csv"), &ManifestSpec::cxr_findings())?;
    let split = |s| manifest.indices_in(s);
    let (tr, va, te) = (split(Split::Train), split(Split::Val), split(Split::Test));
    let targets = |rows: &[usize]| Targets::from_manifest(&manifest, rows);
    let (ytr, yva, yte) = (targets(&tr), targets(&va), targets(&te));
    let groups: Vec<String> = te
        .iter()
        .map(|&i| manifest.records[i].patient.clone())
        .collect();
    let boot = BootstrapConfig {
        n_resamples: args.bootstrap,
        ..Default::default()
    };
    let mut rows = Vec::new();
    let mut report = |enc: &str,
                      probe: &str,
                      scores: &[f64],
                      seeds: usize,
                      sd: Option<Vec<f64>>|
     -> anyhow::Result<()> {
        let res = evaluate(&yte, scores, &groups, &boot)?;
        for (j, r) in res.iter().enumerate() {
            for (metric, iv) in [("AUROC", &r.auroc), ("AUPRC", &r.auprc)] {
                let Some(v) = iv.estimate else { continue };
                rows.push(ResultRow {
                    encoder: enc.into(),
                    task: format!("cxr-findings/{}", r.name),
                    probe: probe.into(),
                    metric: metric.into(),
                    value: v,
                    ci: iv.ci,
                    std: sd
                        .as_ref()
                        .filter(|_| metric == "AUROC")
                        .and_then(|s| s.get(j).copied()),
                    n: r.n,
                    seeds,
                });
            }
        }
        Ok(())
    };
    let default_model = PathBuf::from("models/cxr-dino-vit-tiny");
    let model_dir = args
        .model
        .clone()
        .or(default_model.exists().then_some(default_model));
    let mut encoders: Vec<(String, Box<dyn Encoder>)> = Vec::new();
    if let Some(dir) = &model_dir {
        encoders.push((
            format!("{} {}", encoder_kind(dir)?, dir.display()),
            open_encoder(dir, DType::F32, &Device::Cpu)?,
        ));
    }
    match &args.baseline {
        Some(dir) => encoders.push((
            format!("baseline {}", dir.display()),
            open_encoder(dir, DType::F32, &Device::Cpu)?,
        )),
        None => encoders.push((
            "ViT-tiny/14 random init (seed 0)".into(),
            Box::new(random_vit_tiny(0)?),
        )),
    }
    encoders.push((
        "raw pixels 32x32".into(),
        Box::new(PatchMeanEncoder::new(224, 7)?),
    ));
    let ecfg = ExtractConfig::default();
    // (encoder index, probe, test scores) for the paired comparison of the first two
    let mut kept: Vec<(usize, String, Vec<f64>)> = Vec::new();
    for (e, (name, enc)) in encoders.iter().enumerate() {
        let tag: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut feats = Vec::new();
        for (s, r) in [("train", &tr), ("val", &va), ("test", &te)] {
            let (f, hit) = extract_cached(
                enc.as_ref(),
                &tag,
                &manifest,
                r,
                &args.cache.join(format!("{tag}_{s}.safetensors")),
                &ecfg,
            )?;
            eprintln!(
                "{name} {s}: {} x {} features{}",
                f.cls.rows,
                f.cls.cols + f.patch_mean.cols,
                if hit { " (cached)" } else { "" }
            );
            // the pixel encoder's CLS already is the thumbnail; its patch mean is one number
            feats.push(if name.starts_with("raw") {
                f.cls
            } else {
                f.cls_and_patch_mean()?
            });
        }
        let (scores, _) = logreg_probe(
            (&feats[0], &ytr),
            (&feats[1], &yva),
            &feats[2],
            &default_c_grid(),
        )?;
        report(name, "logreg (C on val)", &scores, 1, None)?;
        kept.push((e, "logreg (C on val)".into(), scores));
        eprintln!("{name}: logreg done at {:.0?}", t0.elapsed());
        if !name.starts_with("raw") {
            let lcfg = LinearProbeConfig {
                lr: args.lr,
                ..Default::default()
            };
            let per_seed = fit_seeds(
                (&feats[0], &ytr),
                (&feats[1], &yva),
                &feats[2],
                &lcfg,
                args.seeds,
            )?;
            let k = ytr.width();
            let mean: Vec<f64> = (0..per_seed[0].len())
                .map(|i| per_seed.iter().map(|s| s[i]).sum::<f64>() / per_seed.len() as f64)
                .collect();
            let mut sds = Vec::new();
            for j in 0..=k {
                let aucs: Vec<f64> = per_seed
                    .iter()
                    .filter_map(|s| {
                        let r = evaluate(
                            &yte,
                            s,
                            &groups,
                            &BootstrapConfig {
                                n_resamples: 1,
                                ..Default::default()
                            },
                        )
                        .ok()?;
                        r[j].auroc.estimate
                    })
                    .collect();
                sds.push(mean_std(&aucs).1);
            }
            // the point estimate is the seed-mean AUROC's ensemble; the CI bootstraps the mean scores
            let linear = format!("linear AdamW lr={}", args.lr);
            report(name, &linear, &mean, args.seeds, Some(sds))?;
            kept.push((e, linear, mean));
            let train_val = Matrix::new(
                feats[0].rows + feats[1].rows,
                feats[0].cols,
                [feats[0].data.clone(), feats[1].data.clone()].concat(),
            )?;
            let tv_idx: Vec<usize> = tr.iter().chain(&va).copied().collect();
            let knn = knn_scores(
                &train_val,
                &targets(&tv_idx),
                &feats[2],
                &KnnConfig::default(),
            )?;
            report(name, "kNN k=20 T=0.07", &knn, 1, None)?;
            kept.push((e, "kNN k=20 T=0.07".into(), knn));
            eprintln!("{name}: linear + kNN done at {:.0?}", t0.elapsed());
        }
    }
    // view/sex/age-only baseline
    let meta = |rows: &[usize]| -> anyhow::Result<Matrix> {
        let mut v = Vec::new();
        for &i in rows {
            let m = &manifest.records[i].meta;
            v.push(f32::from(u8::from(
                m.get("view").map(String::as_str) == Some("AP"),
            )));
            v.push(f32::from(u8::from(
                m.get("sex").map(String::as_str) == Some("f"),
            )));
            v.push(
                m.get("age")
                    .and_then(|a| a.parse::<f32>().ok())
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: no numeric `age` in labels.csv",
                            manifest.records[i].image.display()
                        )
                    })?,
            );
        }
        Ok(Matrix::new(rows.len(), 3, v)?)
    };
    let (scores, _) = logreg_probe(
        (&meta(&tr)?, &ytr),
        (&meta(&va)?, &yva),
        &meta(&te)?,
        &default_c_grid(),
    )?;
    report(
        "metadata only (view, sex, age)",
        "logreg (C on val)",
        &scores,
        1,
        None,
    )?;
    write_tables(&rows, &args.out)?;
    if model_dir.is_some() {
        let table = paired_table(&encoders[0].0, &encoders[1].0, &kept, &yte, &groups, &boot)?;
        println!("{table}");
        let mut path = args.out.clone().into_os_string();
        path.push("_paired.md");
        std::fs::write(&path, &table)
            .with_context(|| format!("writing {}", path.to_string_lossy()))?;
    }
    let auroc: Vec<ResultRow> = rows.into_iter().filter(|r| r.metric == "AUROC").collect();
    println!("{}", to_markdown(&auroc));
    eprintln!(
        "wrote {}.md/.csv in {:.0?}",
        args.out.display(),
        t0.elapsed()
    );
    Ok(())
}

/// Markdown table of the paired patient-level bootstrap of macro AUROC, encoder 0 (the
/// model) − encoder 1 (the baseline), for each probe both were scored with.
fn paired_table(
    model: &str,
    baseline: &str,
    kept: &[(usize, String, Vec<f64>)],
    targets: &Targets,
    groups: &[String],
    boot: &BootstrapConfig,
) -> anyhow::Result<String> {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let mut t = format!(
        "Paired patient-level bootstrap ({} resamples), test macro AUROC: A = {model}, B = {baseline}\n\n\
         | probe | A | B | A − B (95% CI) | resamples with A − B ≤ 0 |\n|---|---|---|---|---|\n",
        boot.n_resamples
    );
    for (_, probe, a) in kept.iter().filter(|k| k.0 == 0) {
        let Some((_, _, b)) = kept.iter().find(|k| k.0 == 1 && &k.1 == probe) else {
            continue;
        };
        let p = paired_macro_auroc(targets, a, b, groups, boot)?;
        let d = &p.difference;
        let ci =
            d.ci.map_or("-".into(), |(lo, hi)| format!("[{lo:+.3}, {hi:+.3}]"));
        t.push_str(&format!(
            "| {probe} | {} | {} | {} {ci} | {} |\n",
            f(p.a.estimate),
            f(p.b.estimate),
            d.estimate.map_or("-".into(), |v| format!("{v:+.3}")),
            p.fraction_a_not_better
                .map_or("-".into(), |v| format!("{:.1}%", 100.0 * v)),
        ));
    }
    Ok(t)
}
