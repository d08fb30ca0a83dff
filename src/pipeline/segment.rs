//! Stage 3: lung segmentation on cxr-mini with seg-decoders' linear head on the frozen
//! encoder (scaling's `LungSegTask`: whole image resized to the encoder's square input,
//! BCE + soft Dice, Adam), mean per-image Dice on the test split with a patient bootstrap.
use cxr_core::Encoder;
use metrics::bootstrap::{bootstrap, BootstrapConfig, Resampling};
use scaling::study::tasks::{EvalTask, LungSegTask, Predictions};
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
    Ok(StageSummary {
        seconds: 0.0,
        headline,
        details: json!({
            "head": "linear (1x1 conv on final patch tokens)",
            "epochs": cfg.seg_epochs,
            "input_px": size,
            "patients": clusters.len(),
            "dice_per_image": r.ids.iter().zip(values).map(|(id, v)| json!({"id": id, "dice": v})).collect::<Vec<_>>(),
        }),
        outputs: vec![],
    })
}
