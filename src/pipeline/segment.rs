//! Stage 3: lung segmentation on cxr-mini with seg-decoders' linear head on the frozen
//! encoder (scaling's `LungSegTask`: whole image resized to the encoder's square input,
//! BCE + soft Dice, Adam), mean per-image Dice on the test split with a patient bootstrap.
use cxr_core::Encoder;
use cxr_data::Split;
use metrics::bootstrap::{bootstrap, BootstrapConfig, Resampling};
use scaling::study::tasks::{EvalTask, LungSegTask, Predictions};
use seg_decoders::lung;
use serde_json::json;

use super::error::{Context, Error, Result};
use super::summary::{Headline, StageSummary};
use super::PipelineConfig;

pub(crate) fn run(
    cfg: &PipelineConfig,
    encoder: &dyn Encoder,
    log: &mut dyn FnMut(&str),
) -> Result<StageSummary> {
    let stage = "segment";
    let mut task = LungSegTask::new(&cfg.mini, cfg.seg_epochs);
    task.seed = cfg.seed;
    let size = encoder.preprocessing().crop.0;
    log(&format!(
        "training a linear head for {} epochs on the train-split masks at {size} px (frozen encoder) …",
        cfg.seg_epochs
    ));
    let results = task.evaluate(encoder).ctx(stage)?;
    let r = results
        .into_iter()
        .next()
        .ok_or_else(|| Error::stage(stage, "the task returned no result"))?;
    let Predictions::PerSample { values } = &r.predictions else {
        return Err(Error::stage(stage, "expected per-image Dice values"));
    };
    let clusters = r.clusters();
    let boot = BootstrapConfig {
        n_resamples: cfg.bootstrap,
        seed: cfg.seed,
        ..Default::default()
    };
    let iv = bootstrap(Resampling::Groups(&clusters), &boot, |rows| {
        Ok(rows.iter().map(|&i| values[i]).sum::<f64>() / rows.len() as f64)
    })
    .ctx(stage)?;
    let headline = Headline::from_interval("mean lung Dice (test)", &iv, values.len());
    log(&format!(
        "{} test images of {} patients; whole-image Dice at the {size}-px input, every test mask (some masks cover only part of the lungs: docs/results.md)",
        values.len(),
        clusters.len()
    ));
    // two heads that ignore the image, scored the same way: everything is lung, and the
    // training masks' pixel-wise mean thresholded at 0.5
    let samples = lung::load(
        &cfg.mini,
        &lung::square_processor(&encoder.preprocessing(), size),
        size,
    )
    .ctx(stage)?;
    let train: Vec<&lung::Sample> = samples.iter().filter(|x| x.split == Split::Train).collect();
    let prior: Vec<bool> = (0..size * size)
        .map(|p| {
            train.iter().map(|x| f64::from(x.target[p])).sum::<f64>() > 0.5 * train.len() as f64
        })
        .collect();
    let mut baselines = Vec::new();
    for (name, pred) in [
        ("all foreground", vec![true; size * size]),
        ("mean training mask > 0.5", prior),
    ] {
        let per_image: Vec<f64> = r
            .ids
            .iter()
            .map(|id| {
                let x = samples
                    .iter()
                    .find(|x| &x.id == id && x.split == Split::Test)
                    .ok_or_else(|| Error::stage(stage, format!("test image {id} not loaded")))?;
                let t: Vec<bool> = x.target.iter().map(|&v| v > 0.5).collect();
                metrics::segmentation::dice(&pred, &t).ctx(stage)
            })
            .collect::<Result<_>>()?;
        let b = bootstrap(Resampling::Groups(&clusters), &boot, |rows| {
            Ok(rows.iter().map(|&i| per_image[i]).sum::<f64>() / rows.len() as f64)
        })
        .ctx(stage)?;
        log(&format!(
            "  {name:<26} {}",
            super::summary::show_interval(b.estimate, b.ci)
        ));
        baselines.push(json!({"baseline": name, "dice": b.estimate, "ci": b.ci}));
    }
    log(&format!(
        "  {:<26} {}",
        "linear head",
        super::summary::show_interval(iv.estimate, iv.ci)
    ));
    Ok(StageSummary {
        seconds: 0.0,
        headline,
        details: json!({
            "head": "linear (1x1 conv on final patch tokens)",
            "epochs": cfg.seg_epochs,
            "input_px": size,
            "patients": clusters.len(),
            "baselines": baselines,
            "dice_per_image": r.ids.iter().zip(values).map(|(id, v)| json!({"id": id, "dice": v})).collect::<Vec<_>>(),
        }),
        outputs: vec![],
    })
}
