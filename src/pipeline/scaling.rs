//! Stage 5: a small data-scaling study. The encoder is continually pretrained with DINOv2
//! (multi-crop DINO + iBOT + KoLeo, EMA teacher) on nested subsets of the packs' train
//! splits, every subset for the same steps × batch (fixed compute); each exported teacher
//! is scored by the logistic-regression probes and the linear lung head; `a − b·n^(−c)` is
//! fitted per task with bootstrap refits, and the curves are drawn to `scaling.png/.svg`.
//! The study folder resumes: a rerun with the same settings reuses finished cells.
use candle_core::Device;
use dino_loss::DinoV2Config;
use dino_pretrain::Init;
use metrics::bootstrap::BootstrapConfig;
use scaling::study::cell::PretrainSpec;
use scaling::study::pool::Pool;
use scaling::study::tasks::{EvalTask, LungSegTask, ProbeTask};
use scaling::study::{run_study, StudySpec};
use serde_json::json;

use super::error::{Context, Error, Result};
use super::summary::{path_string, show_interval, Headline, StageSummary};
use super::PipelineConfig;

pub(crate) fn run(cfg: &PipelineConfig, log: &mut dyn FnMut(&str)) -> Result<StageSummary> {
    let stage = "scaling";
    let s = &cfg.scaling;
    let dir = cfg.out.join("scaling");
    // cells are reused by directory: refuse to mix settings (or encoders) in one folder
    let settings = serde_json::to_string_pretty(&json!({
        "model": cfg.model, "mini": cfg.mini, "findings": cfg.findings,
        "scaling": s, "seed": cfg.seed,
    }))
    .ctx(stage)?;
    let stamp = dir.join("settings.json");
    match std::fs::read_to_string(&stamp) {
        Ok(old) if old != settings => {
            return Err(Error::stage(
                stage,
                format!(
                    "{} holds a study with other settings; remove it or choose another --out",
                    dir.display()
                ),
            ))
        }
        Ok(_) => {}
        Err(_) => {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            std::fs::write(&stamp, &settings).map_err(|e| Error::io(&stamp, e))?;
        }
    }
    let pool = Pool::from_packs(&[cfg.mini.clone(), cfg.findings.clone()]).ctx(stage)?;
    let mut base = DinoV2Config::from_toml_file(&s.config).ctx(stage)?;
    base.crops.global_crops_size = s.crop;
    base.crops.local_crops_size = s.crop / 2;
    base.train.batch_size_per_gpu = s.batch;
    base.train.seed = cfg.seed;
    // schedules (warm-up, teacher momentum, last-layer freeze) span the cell's steps
    base.train.official_epoch_length =
        s.steps.div_ceil(base.optim.epochs.max(1) as u64).max(1) as usize;
    let arch = PretrainSpec {
        config: base,
        init: Init::Dir(cfg.model.clone()),
        steps: s.steps,
        checkpoint_every: s.steps.max(1),
        progress: cfg.progress,
    };
    let tasks: Vec<Box<dyn EvalTask>> = vec![
        Box::new(ProbeTask {
            data: cfg.findings.clone(),
            labels: s.labels.clone(),
        }),
        Box::new({
            let mut t = LungSegTask::new(&cfg.mini, s.seg_epochs);
            t.seed = cfg.seed;
            t
        }),
    ];
    let boot = BootstrapConfig {
        n_resamples: cfg.bootstrap,
        seed: cfg.seed,
        confidence: 0.95,
    };
    let spec = StudySpec {
        out: dir.clone(),
        sizes: s.sizes.clone(),
        archs: vec![arch],
        subset_seed: cfg.seed,
        bootstrap: boot,
        extrapolate_to: s.extrapolate.clone(),
    };
    log(&format!(
        "pool: {} train images; subsets {:?}, each {} steps × {} images at {} px from the encoder's weights; tasks: probe {:?} (cxr-findings), linear lung head ({} epochs)",
        pool.len(),
        s.sizes,
        s.steps,
        s.batch,
        s.crop,
        s.labels,
        s.seg_epochs
    ));
    let out = run_study(&spec, &pool, &tasks, &Device::Cpu, &mut |l| log(l)).ctx(stage)?;
    log("  images  task                     metric  value [95% CI]");
    for r in &out.rows {
        log(&format!(
            "  {:>6}  {:<24} {:<6}  {}",
            r.n_images,
            r.task,
            r.metric,
            show_interval(Some(r.value), r.ci)
        ));
    }
    let mut fits = Vec::new();
    for f in &out.fits {
        let l = &f.fit.law;
        log(&format!(
            "  fit {:<22} a {:.3}, b {:.3}, c {:.3}{} (c 95% CI {}){}",
            f.task,
            l.a,
            l.b,
            l.c,
            if f.fit.c_at_bound {
                " at its search bound"
            } else {
                ""
            },
            f.c_ci
                .map_or("-".into(), |(lo, hi)| format!("[{lo:.3}, {hi:.3}]")),
            f.extrapolation
                .iter()
                .map(|e| format!(
                    "; at n = {}: {}",
                    e.n,
                    show_interval(Some(e.estimate), e.band)
                ))
                .collect::<String>()
        ));
        fits.push(json!({
            "task": f.task, "a": l.a, "b": l.b, "c": l.c, "c_ci": f.c_ci,
            "c_at_bound": f.fit.c_at_bound, "extrapolation": f.extrapolation,
        }));
    }
    let png = out.figure.with_extension("png");
    let svg = out.figure.with_extension("svg");
    let tables = out.tables.with_extension("md");
    log(&format!(
        "{} cells ({} reused); table {}; figure {} / .svg",
        out.cells.len(),
        out.reused,
        tables.display(),
        png.display()
    ));
    let lung = out
        .fits
        .iter()
        .find(|f| f.task.starts_with("lung"))
        .or(out.fits.first());
    let headline = match lung {
        Some(f) => Headline {
            metric: format!("power-law exponent c ({})", f.task),
            value: Some(f.fit.law.c),
            ci: f.c_ci,
            n: out.cells.len(),
        },
        None => Headline {
            metric: "power-law exponent c".into(),
            value: None,
            ci: None,
            n: out.cells.len(),
        },
    };
    Ok(StageSummary {
        seconds: 0.0,
        headline,
        details: json!({
            "pool": pool.len(),
            "cells_reused": out.reused,
            "rows": out.rows,
            "fits": fits,
        }),
        outputs: vec![
            path_string(&tables),
            path_string(&out.tables.with_extension("csv")),
            path_string(&png),
            path_string(&svg),
        ],
    })
}
