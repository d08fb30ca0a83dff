//! Zero-shot evaluation: per-finding AUROC of positive-vs-negative prompt ensembles, with
//! patient-level bootstrap intervals, and paired comparisons of two models.

use candle_core::{Device, Tensor};
use dual_encoder::{DualEncoder, Templates, TextTokenizer, ZeroShotClassifier};
use metrics::bootstrap::{
    bootstrap_many, group_rows, BootstrapConfig, Interval, PairedInterval, Resampling,
};
use metrics::classification::{macro_mean, MultiLabelView};
use serde::{Deserialize, Serialize};

use crate::{Error, PairDataset, Result};

/// The prompt name of a label column (`pleural_thickening` → `pleural thickening`).
pub fn display_name(column: &str) -> String {
    column.replace('_', " ")
}

/// `[N, P]` unit-norm image embeddings of every sample, in inference mode.
pub fn image_embeddings(
    model: &DualEncoder,
    data: &PairDataset,
    batch: usize,
    device: &Device,
) -> Result<Tensor> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::new();
    for chunk in idx.chunks(batch.max(1)) {
        let px = data.pixels(chunk, device)?;
        out.push(model.encode_image(&px, false)?.detach());
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Zero-shot scores of one split, with everything needed to recompute any AUROC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreFile {
    /// Finding names, in column order.
    pub findings: Vec<String>,
    /// Patient of every row.
    pub patients: Vec<String>,
    /// Per row, per finding: present / absent / missing.
    pub labels: Vec<Vec<Option<bool>>>,
    /// Per row, per finding: the positive-vs-negative prompt probability.
    pub scores: Vec<Vec<f64>>,
}

/// Scores every sample of `data` for every finding with
/// [`ZeroShotClassifier::binary_scores`]: dual-encoder's positive ensemble
/// ("chest x-ray showing {}", …) against its negative one ("no {}", …).
pub fn zero_shot_scores(
    model: &DualEncoder,
    tokenizer: &TextTokenizer,
    data: &PairDataset,
    batch: usize,
    device: &Device,
) -> Result<ScoreFile> {
    let names: Vec<String> = data.findings.iter().map(|f| display_name(f)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let clf = ZeroShotClassifier::new(
        model,
        tokenizer,
        &refs,
        &Templates::cxr_positive(),
        Some(&Templates::cxr_negative()),
    )?;
    let emb = image_embeddings(model, data, batch, device)?;
    let scores = clf
        .binary_scores(model, &emb)?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    Ok(ScoreFile {
        findings: data.findings.clone(),
        patients: data.patients(),
        labels: data.flags(),
        scores,
    })
}

/// Point AUROC per finding and their mean over the findings where it is defined (NaN when
/// none is): the statistics [`auroc_report`] bootstraps, without the intervals.
pub fn quick_auroc(s: &ScoreFile) -> Result<(Vec<Option<f64>>, f64)> {
    let (labels, scores) = flattened(s)?;
    let c = s.findings.len();
    let view = MultiLabelView::new(c, &labels, &scores)?;
    let per: Vec<Option<f64>> = (0..c)
        .map(|j| view.column_ranking(j, None).map(|r| r.auroc))
        .collect();
    let mean = macro_mean(per.iter().copied()).unwrap_or(f64::NAN);
    Ok((per, mean))
}

/// AUROC of one finding with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingAuroc {
    /// Finding name.
    pub finding: String,
    /// Positives in the split.
    pub positives: usize,
    /// AUROC and its patient-level bootstrap interval.
    pub auroc: Interval,
}

/// Per-finding and macro AUROC with patient-level bootstrap intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AurocReport {
    /// One entry per finding.
    pub findings: Vec<FindingAuroc>,
    /// Mean over findings (per resample, over the findings defined on it).
    pub macro_auroc: Interval,
}

/// The labels and scores of a checked score file, row-major (`[rows, findings]`), as
/// [`MultiLabelView`] reads them.
fn flattened(s: &ScoreFile) -> Result<(Vec<Option<bool>>, Vec<f64>)> {
    let n = s.scores.len();
    let c = s.findings.len();
    if n == 0
        || c == 0
        || s.labels.len() != n
        || s.patients.len() != n
        || s.scores.iter().any(|r| r.len() != c)
        || s.labels.iter().any(|r| r.len() != c)
    {
        return Err(Error::Invalid(format!(
            "score file: {n} rows of {c} findings expected for scores, labels and patients"
        )));
    }
    Ok((s.labels.concat(), s.scores.concat()))
}

/// Bootstraps every finding's AUROC and the macro AUROC over patients (all rows of a
/// patient are drawn together).
pub fn auroc_report(s: &ScoreFile, cfg: &BootstrapConfig) -> Result<AurocReport> {
    let (labels, scores) = flattened(s)?;
    let c = s.findings.len();
    let view = MultiLabelView::new(c, &labels, &scores)?;
    let groups = group_rows(&s.patients);
    let mut intervals = bootstrap_many(Resampling::Groups(&groups), cfg, c + 1, |rows| {
        let mut v: Vec<Option<f64>> = (0..c)
            .map(|j| view.column_ranking(j, Some(rows)).map(|r| r.auroc))
            .collect();
        // mean over the findings defined on this resample
        v.push(macro_mean(v.clone()));
        Ok(v)
    })?;
    let macro_auroc = intervals
        .pop()
        .ok_or_else(|| Error::Invalid("bootstrap returned nothing".into()))?;
    let findings = s
        .findings
        .iter()
        .zip(intervals)
        .enumerate()
        .map(|(j, (f, auroc))| FindingAuroc {
            finding: f.clone(),
            positives: s.labels.iter().filter(|r| r[j] == Some(true)).count(),
            auroc,
        })
        .collect();
    Ok(AurocReport {
        findings,
        macro_auroc,
    })
}

/// Paired patient-level bootstrap of macro AUROC, `a − b`, on the same rows (the two score
/// files must describe the same samples in the same order).
pub fn paired_macro_auroc(
    a: &ScoreFile,
    b: &ScoreFile,
    cfg: &BootstrapConfig,
) -> Result<PairedInterval> {
    paired_mean_macro_auroc(&[(a, b)], cfg)
}

/// [`paired_macro_auroc`] for several pairs of score files over the same rows (say, seeds of
/// one recipe, each against its own untrained model): A and B are the mean macro AUROCs over
/// the pairs, so the difference is the mean paired difference, each resample of patients
/// shared by every pair.
pub fn paired_mean_macro_auroc(
    pairs: &[(&ScoreFile, &ScoreFile)],
    cfg: &BootstrapConfig,
) -> Result<PairedInterval> {
    let Some(&(first, _)) = pairs.first() else {
        return Err(Error::Invalid("no pair of score files to compare".into()));
    };
    let mut flat = Vec::with_capacity(pairs.len());
    for &(a, b) in pairs {
        for f in [a, b] {
            if f.patients != first.patients
                || f.labels != first.labels
                || f.findings != first.findings
            {
                return Err(Error::Invalid(
                    "the score files are not over the same samples, labels and findings".into(),
                ));
            }
        }
        flat.push((flattened(a)?.1, flattened(b)?.1));
    }
    let labels = flattened(first)?.0;
    let c = first.findings.len();
    let views = flat
        .iter()
        .map(|(a, b)| {
            Ok((
                MultiLabelView::new(c, &labels, a)?,
                MultiLabelView::new(c, &labels, b)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let groups = group_rows(&first.patients);
    Ok(metrics::classification::paired_mean_macro_auroc(
        &views,
        Resampling::Groups(&groups),
        cfg,
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// 40 rows of 20 patients, two findings: the first scored by its own label plus noise, the
    /// second at random; a few labels missing.
    fn file(shift: f64) -> ScoreFile {
        let n = 40;
        let label = |i: usize, j: usize| (i * (j + 3) + i / 7) % 3 == 0;
        let noise = |i: usize, j: usize| ((i * 37 + j * 11) % 17) as f64 / 17.0;
        ScoreFile {
            findings: vec!["effusion".into(), "nodule".into()],
            patients: (0..n).map(|i| format!("p{}", i / 2)).collect(),
            labels: (0..n)
                .map(|i| (0..2).map(|j| (i % 9 != 4).then(|| label(i, j))).collect())
                .collect(),
            scores: (0..n)
                .map(|i| {
                    vec![
                        f64::from(u8::from(label(i, 0))) * shift + noise(i, 0),
                        noise(i, 1),
                    ]
                })
                .collect(),
        }
    }

    fn cfg() -> BootstrapConfig {
        BootstrapConfig {
            n_resamples: 200,
            ..Default::default()
        }
    }

    #[test]
    fn the_report_is_each_findings_auroc_and_their_mean() {
        let s = file(0.5);
        let r = auroc_report(&s, &cfg()).unwrap();
        let mut per = Vec::new();
        for (j, f) in r.findings.iter().enumerate() {
            let (y, x): (Vec<bool>, Vec<f64>) = (0..s.scores.len())
                .filter_map(|i| s.labels[i][j].map(|y| (y, s.scores[i][j])))
                .unzip();
            let want = metrics::classification::auroc(&y, &x).unwrap();
            assert_eq!(f.auroc.estimate, Some(want));
            assert_eq!(f.positives, y.iter().filter(|&&v| v).count());
            per.push(want);
        }
        assert!(
            per[0] > 0.8,
            "the first finding is scored by its label: {}",
            per[0]
        );
        assert_eq!(r.macro_auroc.estimate, Some((per[0] + per[1]) / 2.0));
        // the validation hook's point estimates are the report's
        let (quick, mean) = quick_auroc(&s).unwrap();
        assert_eq!(quick, vec![Some(per[0]), Some(per[1])]);
        assert_eq!(Some(mean), r.macro_auroc.estimate);
    }

    #[test]
    fn paired_differences_are_zero_against_itself_and_positive_against_a_worse_file() {
        let (good, poor) = (file(0.5), file(0.0));
        let same = paired_macro_auroc(&good, &good, &cfg()).unwrap();
        assert_eq!(same.difference.ci, Some((0.0, 0.0)));
        let p = paired_macro_auroc(&good, &poor, &cfg()).unwrap();
        let (lo, _) = p.difference.ci.unwrap();
        assert!(lo > 0.0, "{p:?}");
        // several pairs share each resample: (good, poor) and (poor, good) cancel on every one
        let cancel = paired_mean_macro_auroc(&[(&good, &poor), (&poor, &good)], &cfg()).unwrap();
        assert_eq!(cancel.difference.ci, Some((0.0, 0.0)));
        let twice = paired_mean_macro_auroc(&[(&good, &poor); 2], &cfg()).unwrap();
        assert_eq!(twice.difference.estimate, p.difference.estimate);
        assert!(paired_mean_macro_auroc(&[], &cfg()).is_err());
    }

    #[test]
    fn mismatched_or_nan_files_are_errors() {
        let good = file(0.5);
        let mut other = file(0.0);
        other.patients.swap(0, 39);
        assert!(paired_macro_auroc(&good, &other, &cfg()).is_err());
        assert!(paired_mean_macro_auroc(&[(&good, &good), (&good, &other)], &cfg()).is_err());
        let mut short = file(0.0);
        short.scores[3].pop();
        assert!(auroc_report(&short, &cfg()).is_err());
        let mut nan = file(0.5);
        nan.scores[2][1] = f64::NAN;
        let err = auroc_report(&nan, &cfg()).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
    }
}
