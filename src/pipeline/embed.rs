//! Stage 1: embed every cxr-mini image and check that two images of one patient are more
//! alike than images of different patients.
use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use cxr_core::Encoder;
use cxr_data::{Manifest, ManifestSpec};
use metrics::bootstrap::{bootstrap, BootstrapConfig, Resampling};
use probe_heads::extract::{extract_features, ExtractConfig};
use probe_heads::Matrix;
use serde_json::json;

use super::error::{Context, Error, Result};
use super::summary::{path_string, Headline, StageSummary};
use super::PipelineConfig;

/// Per patient with at least two images: mean cosine similarity of its own pairs minus the
/// mean similarity of its images to every other patient's images.
pub(crate) fn patient_gaps(emb: &Matrix, patients: &[String]) -> Vec<f64> {
    let n = emb.rows;
    let unit: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let r: Vec<f64> = emb.row(i).iter().map(|&v| f64::from(v)).collect();
            let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            r.into_iter().map(|v| v / norm).collect()
        })
        .collect();
    let dot = |i: usize, j: usize| {
        unit[i]
            .iter()
            .zip(&unit[j])
            .map(|(a, b)| a * b)
            .sum::<f64>()
    };
    let mut by_patient: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in patients.iter().enumerate() {
        by_patient.entry(p.as_str()).or_default().push(i);
    }
    let mut keys: Vec<&&str> = by_patient.keys().collect();
    keys.sort();
    let mut gaps = Vec::new();
    for k in keys {
        let rows = &by_patient[*k];
        if rows.len() < 2 {
            continue;
        }
        let (mut same, mut ns, mut diff, mut nd) = (0.0, 0usize, 0.0, 0usize);
        for (a, &i) in rows.iter().enumerate() {
            for &j in &rows[a + 1..] {
                same += dot(i, j);
                ns += 1;
            }
            for j in (0..n).filter(|j| patients[*j] != patients[i]) {
                diff += dot(i, j);
                nd += 1;
            }
        }
        if nd > 0 {
            gaps.push(same / ns as f64 - diff / nd as f64);
        }
    }
    gaps
}

pub(crate) fn run(
    cfg: &PipelineConfig,
    encoder: &dyn Encoder,
    log: &mut dyn FnMut(&str),
) -> Result<StageSummary> {
    let stage = "embed";
    let manifest =
        Manifest::from_csv(cfg.mini.join("labels.csv"), &ManifestSpec::cxr_mini()).ctx(stage)?;
    let rows: Vec<usize> = (0..manifest.records.len()).collect();
    let t = Instant::now();
    let feats = extract_features(
        encoder,
        "embed",
        &manifest,
        &rows,
        &ExtractConfig {
            progress: cfg.progress,
            ..Default::default()
        },
    )
    .ctx(stage)?;
    let secs = t.elapsed().as_secs_f64();
    let n = feats.cls.rows;
    let d = feats.cls.cols;
    let path = cfg.out.join("embeddings.safetensors");
    let tensor = Tensor::from_vec(feats.cls.data.clone(), (n, d), &Device::Cpu).ctx(stage)?;
    let patch = Tensor::from_vec(
        feats.patch_mean.data.clone(),
        (n, feats.patch_mean.cols),
        &Device::Cpu,
    )
    .ctx(stage)?;
    candle_core::safetensors::save(
        &HashMap::from([
            ("embeddings".to_string(), tensor),
            ("patch_mean".into(), patch),
        ]),
        &path,
    )
    .map_err(|e| Error::io(&path, e))?;
    let ids_path = cfg.out.join("embeddings.ids.json");
    std::fs::write(
        &ids_path,
        serde_json::to_vec(&feats.ids).map_err(|e| Error::io(&ids_path, e))?,
    )
    .map_err(|e| Error::io(&ids_path, e))?;
    log(&format!(
        "embedded {n} images in {secs:.1} s ({:.1} images/s) → {} ([{n}, {d}] pooled CLS, row order in {})",
        n as f64 / secs.max(1e-9),
        path.display(),
        ids_path.display()
    ));
    let patients: Vec<String> = manifest.records.iter().map(|r| r.patient.clone()).collect();
    let gaps = patient_gaps(&feats.cls, &patients);
    let boot = BootstrapConfig {
        n_resamples: cfg.bootstrap,
        seed: cfg.seed,
        ..Default::default()
    };
    let headline = if gaps.is_empty() {
        Headline {
            metric: "same − different patient cosine".into(),
            value: None,
            ci: None,
            n: 0,
        }
    } else {
        let iv = bootstrap(Resampling::Rows(gaps.len()), &boot, |r| {
            Ok(r.iter().map(|&i| gaps[i]).sum::<f64>() / r.len() as f64)
        })
        .ctx(stage)?;
        Headline::from_interval("same − different patient cosine", &iv, gaps.len())
    };
    log(&format!(
        "{} patients with ≥ 2 images: their own images are {} more cosine-similar than other patients' (mean over patients, 95% CI over patients)",
        gaps.len(),
        super::summary::show_interval(headline.value, headline.ci)
    ));
    Ok(StageSummary {
        seconds: 0.0,
        headline,
        details: json!({
            "images": n,
            "embedding_dim": d,
            "images_per_second": n as f64 / secs.max(1e-9),
        }),
        outputs: vec![path_string(&path), path_string(&ids_path)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_is_own_pairs_minus_other_patients() {
        // patient a: two copies of e1; patient b: e2 and a unit vector at 60° to it; c: one image
        let h = 3f32.sqrt() / 2.0;
        let emb = Matrix::new(5, 2, vec![1.0, 0.0, 2.0, 0.0, 0.0, 1.0, h, 0.5, 1.0, 1.0]).unwrap();
        let p: Vec<String> = ["a", "a", "b", "b", "c"].map(String::from).to_vec();
        let g = patient_gaps(&emb, &p);
        assert_eq!(g.len(), 2, "c has one image and no gap");
        let r = 0.5f64.sqrt();
        // a: own 1; others per image: 0 (b's 90°), cos 30° = h, cos 45° = r
        let a = 1.0 - (f64::from(h) + r) / 3.0;
        // b: own cos 60° = 0.5; others: image 2 (0, 0, r), image 3 (h, h, cos 15°)
        let c15 = (15f64).to_radians().cos();
        let hb = f64::from(h);
        let b = 0.5 - (r + 2.0 * hb + c15) / 6.0;
        assert!((g[0] - a).abs() < 1e-6, "{} vs {a}", g[0]);
        assert!((g[1] - b).abs() < 1e-6, "{} vs {b}", g[1]);
    }
}
