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
use cxr_viz::render::IntervalRow;
use metrics::bootstrap::BootstrapConfig;
use probe_heads::eval::{evaluate, logreg_probe, paired_mean_macro_auroc};
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
    /// Give it N times with N --baseline folders to compare N pairs (say, seeds of one
    /// pretraining recipe, each against its own initialisation): each pair gets its paired
    /// table, and the mean paired difference over the pairs gets one more.
    #[arg(long)]
    model: Vec<PathBuf>,
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
    /// initialisation, pass the folder `pretrain_dino --export-init` wrote. Give one per --model
    /// to compare several pairs.
    #[arg(long)]
    baseline: Vec<PathBuf>,
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
    let models = if args.model.is_empty() && default_model.exists() {
        vec![default_model]
    } else {
        args.model.clone()
    };
    if args.baseline.len() > models.len().max(1)
        || (models.len() > 1 && args.baseline.len() != models.len())
    {
        return Err(anyhow!(
            "{} --model and {} --baseline folders: several models need one baseline each",
            models.len(),
            args.baseline.len()
        ));
    }
    // encoders 2i and 2i + 1 are pair i: a model and its baseline
    let mut encoders: Vec<(String, Box<dyn Encoder>)> = Vec::new();
    for (i, dir) in models.iter().enumerate() {
        encoders.push((
            format!("{} {}", encoder_kind(dir)?, dir.display()),
            open_encoder(dir, DType::F32, &Device::Cpu)?,
        ));
        if let Some(base) = args.baseline.get(i) {
            encoders.push((
                format!("baseline {}", base.display()),
                open_encoder(base, DType::F32, &Device::Cpu)?,
            ));
        }
    }
    if args.baseline.is_empty() {
        encoders.push((
            "ViT-tiny/14 random init (seed 0)".into(),
            Box::new(random_vit_tiny(0)?),
        ));
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
    if !models.is_empty() {
        let names: Vec<&str> = encoders.iter().map(|e| e.0.as_str()).collect();
        let pairs: Vec<(usize, usize)> = (0..models.len()).map(|i| (2 * i, 2 * i + 1)).collect();
        let (table, plot) = paired_tables(&names, &pairs, &kept, &yte, &groups, &boot)?;
        println!("{table}");
        let stem = |ext: &str| {
            let mut path = args.out.clone().into_os_string();
            path.push(format!("_paired.{ext}"));
            PathBuf::from(path)
        };
        std::fs::write(stem("md"), &table)
            .with_context(|| format!("writing {}", stem("md").display()))?;
        if pairs.len() > 1 {
            for ext in ["png", "svg"] {
                cxr_viz::render::intervals(
                    &plot,
                    "Test macro AUROC, model − baseline (95% patient-level CI)",
                    "paired difference",
                    &stem(ext),
                )?;
            }
        }
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

/// Markdown tables of the paired patient-level bootstrap of macro AUROC, model − baseline,
/// for each probe both were scored with: one per pair of encoders, and with several pairs one
/// more for their mean difference, each resample shared by all pairs. Also the differences as
/// forest-plot rows, grouped by probe.
fn paired_tables(
    names: &[&str],
    pairs: &[(usize, usize)],
    kept: &[(usize, String, Vec<f64>)],
    targets: &Targets,
    groups: &[String],
    boot: &BootstrapConfig,
) -> anyhow::Result<(String, Vec<IntervalRow>)> {
    let scores = |e: usize, probe: &str| {
        kept.iter()
            .find(|k| k.0 == e && k.1 == probe)
            .map(|k| k.2.as_slice())
    };
    let probes: Vec<&str> = kept
        .iter()
        .filter(|k| k.0 == pairs[0].0)
        .map(|k| k.1.as_str())
        .collect();
    let mut out = Vec::new();
    // (short name, what A and B are, the pairs averaged)
    type Table = (String, String, Vec<(usize, usize)>);
    let mut tables: Vec<Table> = pairs
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| {
            let short = format!("pair {}", i + 1);
            let what = format!("{short}, A = {}, B = {}", names[a], names[b]);
            (short, what, vec![(a, b)])
        })
        .collect();
    if pairs.len() > 1 {
        tables.push((
            format!("mean of {}", pairs.len()),
            format!(
                "A and B = the means over the {} pairs above (the mean paired difference)",
                pairs.len()
            ),
            pairs.to_vec(),
        ));
    }
    let mut plot: Vec<(usize, IntervalRow)> = Vec::new();
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    for (short, what, members) in tables {
        let mut t = format!(
            "Paired patient-level bootstrap ({} resamples), test macro AUROC: {what}\n\n\
             | probe | A | B | A − B (95% CI) | resamples with A − B ≤ 0 |\n|---|---|---|---|---|\n",
            boot.n_resamples
        );
        for (pi, probe) in probes.iter().enumerate() {
            let Some(pair_scores) = members
                .iter()
                .map(|&(a, b)| Some((scores(a, probe)?, scores(b, probe)?)))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let p = paired_mean_macro_auroc(targets, &pair_scores, groups, boot)?;
            let d = &p.difference;
            if let (Some(estimate), Some(ci)) = (d.estimate, d.ci) {
                plot.push((
                    pi,
                    IntervalRow {
                        label: format!("{probe} · {short}"),
                        estimate,
                        ci,
                        emphasis: members.len() > 1,
                    },
                ));
            }
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
        out.push(t);
    }
    plot.sort_by_key(|(probe, _)| *probe);
    Ok((out.join("\n"), plot.into_iter().map(|(_, r)| r).collect()))
}
