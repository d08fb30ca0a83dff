//! Stage 2: frozen-feature probes of the findings on cxr-findings (probe-heads' protocol:
//! CLS + mean patch token, L2 logistic regression per finding with `C` chosen on val, test
//! AUROC and F1 at the threshold chosen on val, with a patient-level bootstrap).
use cxr_core::Encoder;
use cxr_data::{Manifest, ManifestSpec, Split};
use metrics::bootstrap::BootstrapConfig;
use probe_heads::extract::{extract_features, ExtractConfig};
use probe_heads::protocol::{run_probes, Probe, ProbeData, ProtocolConfig};
use probe_heads::Targets;
use serde_json::json;

use super::error::{Context, Result};
use super::summary::{show_interval, Headline, StageSummary};
use super::PipelineConfig;

pub(crate) fn run(
    cfg: &PipelineConfig,
    encoder: &dyn Encoder,
    log: &mut dyn FnMut(&str),
) -> Result<StageSummary> {
    let stage = "probe";
    let manifest = Manifest::from_csv(
        cfg.findings.join("labels.csv"),
        &ManifestSpec::cxr_findings(),
    )
    .ctx(stage)?;
    let (tr, va, te) = (
        manifest.indices_in(Split::Train),
        manifest.indices_in(Split::Val),
        manifest.indices_in(Split::Test),
    );
    let targets = |rows: &[usize]| Targets::from_manifest(&manifest, rows);
    let ecfg = ExtractConfig {
        progress: cfg.progress,
        ..Default::default()
    };
    let mut feats = Vec::new();
    for rows in [&tr, &va, &te] {
        feats.push(
            extract_features(encoder, "probe", &manifest, rows, &ecfg)
                .ctx(stage)?
                .cls_and_patch_mean()
                .ctx(stage)?,
        );
    }
    let (ytr, yva, yte) = (targets(&tr), targets(&va), targets(&te));
    let groups: Vec<String> = te
        .iter()
        .map(|&i| manifest.records[i].patient.clone())
        .collect();
    let data = ProbeData::new(
        [&feats[0], &feats[1], &feats[2]],
        [&ytr, &yva, &yte],
        &groups,
    );
    let protocol = ProtocolConfig {
        probes: vec![Probe::LogReg],
        bootstrap: BootstrapConfig {
            n_resamples: cfg.bootstrap,
            seed: cfg.seed,
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = run_probes(&data, &protocol)
        .ctx(stage)?
        .pop()
        .ok_or_else(|| super::Error::stage(stage, "the protocol returned no probe"))?;
    log(&format!(
        "{} / {} / {} train / val / test images, {} features; test AUROC and F1 at the \
         val-chosen threshold (95% CI over patients):",
        tr.len(),
        va.len(),
        te.len(),
        feats[0].cols
    ));
    let mut per_label = serde_json::Map::new();
    for (r, f) in outcome.columns.iter().zip(&outcome.f1) {
        log(&format!(
            "  {:<20} AUROC {}  F1 {} ({} positives)",
            r.name,
            show_interval(r.auroc.estimate, r.auroc.ci),
            show_interval(f.f1.estimate, f.f1.ci),
            r.positives
        ));
        per_label.insert(
            r.name.clone(),
            json!({
                "auroc": r.auroc.estimate, "ci": r.auroc.ci,
                "f1": f.f1.estimate, "f1_ci": f.f1.ci,
                "threshold": (!f.threshold.is_nan()).then_some(f.threshold),
                "positives": r.positives, "n": r.n,
            }),
        );
    }
    let macro_row = outcome
        .columns
        .last()
        .ok_or_else(|| super::Error::stage(stage, "no evaluation rows"))?;
    Ok(StageSummary {
        seconds: 0.0,
        headline: Headline::from_interval("macro AUROC (test)", &macro_row.auroc, te.len()),
        details: json!({
            "train": tr.len(), "val": va.len(), "test": te.len(),
            "features": feats[0].cols,
            "chosen_c": outcome.chosen_c,
            "per_label": per_label,
        }),
        outputs: vec![],
    })
}
