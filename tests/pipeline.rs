//! The README's pipeline at minimal settings on a handful of real images: every stage runs,
//! and `summary.json` carries each stage's headline number.
#![allow(clippy::unwrap_used)] // helpers of a test
use std::path::{Path, PathBuf};

use cxr::pipeline::{run, shared_dir, PipelineConfig, Stage};

/// Copies `labels.csv` rows of `src` chosen by `keep(fields, header)` and their images (and
/// masks, when the pack has them) into `dst`.
fn small_pack(src: &Path, dst: &Path, keep: &mut dyn FnMut(&[&str], &[&str]) -> bool) {
    let text = std::fs::read_to_string(src.join("labels.csv")).unwrap();
    let mut lines = text.lines();
    let header_line = lines.next().unwrap();
    let header: Vec<&str> = header_line.split(',').collect();
    let mut out = vec![header_line.to_string()];
    std::fs::create_dir_all(dst.join("images")).unwrap();
    let masks = src.join("masks");
    if masks.is_dir() {
        std::fs::create_dir_all(dst.join("masks")).unwrap();
        std::fs::copy(masks.join("masks.csv"), dst.join("masks/masks.csv")).unwrap();
    }
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if !keep(&f, &header) {
            continue;
        }
        let name = format!("{}.png", f[0]);
        std::fs::copy(
            src.join("images").join(&name),
            dst.join("images").join(&name),
        )
        .unwrap();
        let mask = masks.join(&name);
        if mask.is_file() {
            std::fs::copy(&mask, dst.join("masks").join(&name)).unwrap();
        }
        out.push(line.to_string());
    }
    std::fs::write(dst.join("labels.csv"), out.join("\n") + "\n").unwrap();
}

/// `per_split[split]` rows per split, counted separately for each value of `column`.
fn quota(
    per: &'static [(&'static str, usize)],
    column: &'static str,
) -> impl FnMut(&[&str], &[&str]) -> bool {
    let mut seen: std::collections::HashMap<(String, String), usize> = Default::default();
    move |f: &[&str], h: &[&str]| {
        let split = f[h.iter().position(|c| *c == "split").unwrap()];
        let v = f[h.iter().position(|c| *c == column).unwrap()];
        let cap = per.iter().find(|(s, _)| *s == split).map_or(0, |p| p.1);
        let n = seen.entry((split.to_string(), v.to_string())).or_default();
        *n += 1;
        *n <= cap
    }
}

/// Small copies of both packs under `dir`: `mini_per_split` masked and unmasked cxr-mini
/// images per split, and 4 / 3 / 4 cxr-findings rows of each No-Finding value.
fn small_packs(dir: &Path, mini_per_split: &'static [(&'static str, usize)]) -> (PathBuf, PathBuf) {
    let data = shared_dir().join("data");
    let (mini, findings) = (dir.join("mini"), dir.join("findings"));
    small_pack(
        &data.join("cxr-mini"),
        &mini,
        &mut quota(mini_per_split, "has_mask"),
    );
    small_pack(
        &data.join("cxr-findings"),
        &findings,
        &mut quota(&[("train", 4), ("val", 3), ("test", 4)], "no_finding"),
    );
    (mini, findings)
}

#[test]
fn pipeline_runs_every_stage_and_writes_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let (mini, findings) = small_packs(tmp.path(), &[("train", 4), ("val", 1), ("test", 3)]);
    let mut cfg = PipelineConfig {
        mini,
        findings,
        out: tmp.path().join("out"),
        bootstrap: 20,
        seg_epochs: 1,
        progress: false,
        ..Default::default()
    };
    cfg.report.steps = 2;
    cfg.report.batch = 4;
    cfg.report.width = 32;
    cfg.report.layers = 1;
    cfg.report.max_new_tokens = 4;
    cfg.scaling.sizes = vec![3, 6, 9];
    cfg.scaling.steps = 1;
    cfg.scaling.batch = 2;
    cfg.scaling.crop = 28;
    cfg.scaling.seg_epochs = 1;
    cfg.scaling.labels = vec!["no_finding".into()];
    let mut lines = Vec::new();
    let summary = run(&cfg, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(summary.stages.len(), Stage::ALL.len());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out.join("summary.json")).unwrap())
            .unwrap();
    for stage in Stage::ALL {
        let s = &json["stages"][stage.name()];
        assert!(s["seconds"].as_f64().unwrap() > 0.0, "{stage:?}: {s}");
        let h = &s["headline"];
        assert!(h["metric"].as_str().is_some_and(|m| !m.is_empty()), "{h}");
        assert!(h["n"].as_u64().unwrap() > 0, "{stage:?}: {h}");
        for o in s["outputs"].as_array().unwrap() {
            assert!(Path::new(o.as_str().unwrap()).exists(), "{o} missing");
        }
    }
    // the numbers that are defined at any size, in their ranges
    let v = |s: &str| json["stages"][s]["headline"]["value"].as_f64().unwrap();
    assert!((-2.0..=2.0).contains(&v("embed")));
    let dice = v("segment");
    assert!((0.0..=1.0).contains(&dice), "Dice {dice}");
    let baselines = json["stages"]["segment"]["details"]["baselines"]
        .as_array()
        .unwrap();
    assert_eq!(baselines.len(), 2);
    assert!(baselines
        .iter()
        .all(|b| (0.0..=1.0).contains(&b["dice"].as_f64().unwrap())));
    let rouge = v("report");
    assert!((0.0..=1.0).contains(&rouge), "ROUGE-L {rouge}");
    let probe = &json["stages"]["probe"];
    assert_eq!(probe["details"]["test"], 8);
    assert!(probe["details"]["per_label"]["no_finding"]["auroc"].is_number());
    assert!(probe["details"]["per_label"]["macro"]["f1"].is_number());
    let report = &json["stages"]["report"]["details"];
    assert!(report["baseline_most_common_text"]["BLEU-4"]["value"].is_number());
    let scaling = &json["stages"]["scaling"];
    assert_eq!(scaling["details"]["rows"].as_array().unwrap().len(), 2 * 3);
    assert!(cfg.out.join("scaling/scaling.png").is_file());
    assert!(cfg.out.join("scaling/scaling.svg").is_file());
    assert!(cfg.out.join("embeddings.safetensors").is_file());
    assert_eq!(
        json["config"]["scaling"]["sizes"],
        serde_json::json!([3, 6, 9])
    );
    assert!(lines.iter().any(|l| l.contains("[5/5] scaling")));
}

#[test]
fn unknown_stage_is_a_clear_error() {
    let e = Stage::parse("segmentation").unwrap_err().to_string();
    assert!(e.contains("segmentation") && e.contains("segment"), "{e}");
}

#[test]
fn a_davit_encoder_runs_the_encoder_stages_and_is_refused_for_scaling() {
    let tmp = tempfile::tempdir().unwrap();
    let (mini, findings) = small_packs(tmp.path(), &[("train", 3), ("val", 1), ("test", 2)]);
    let davit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/vit-backbone/tests/fixtures/davit_tiny");
    let cfg = PipelineConfig {
        model: davit.clone(),
        mini,
        findings,
        out: tmp.path().join("out"),
        stages: vec![Stage::Embed, Stage::Probe, Stage::Segment],
        bootstrap: 20,
        seg_epochs: 1,
        progress: false,
        ..Default::default()
    };
    let summary = run(&cfg, &mut |_| {}).unwrap();
    assert_eq!(summary.stages.len(), 3);
    let dice = summary.stages["segment"].headline.value.unwrap();
    assert!((0.0..=1.0).contains(&dice), "Dice {dice}");
    // scaling continues DINOv2 pretraining: refused before any stage runs
    let out = tmp.path().join("refused");
    let cfg = PipelineConfig {
        stages: vec![Stage::Embed, Stage::Scaling],
        out: out.clone(),
        ..cfg
    };
    let e = run(&cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("DaViT") && e.contains("scaling"), "{e}");
    assert!(!out.exists(), "nothing is written before the refusal");
}
