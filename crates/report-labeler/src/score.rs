//! Clinical F1 of generated reports against reference reports, from their labels.
//!
//! Each report pair contributes one sample per observation: the reference's label decides
//! the truth and the generated report's label the prediction, both binarised positive vs
//! rest ([`ReportLabels::is_positive`]: only 1 is positive). F1 per observation is
//! `2tp / (2tp + fp + fn)` over reports, 0 where nobody is positive on either side
//! (scikit-learn's `f1_score` with `zero_division=0`); macro-F1 is the plain mean over the
//! observations (14, or the 5 of [`Observation::FIVE`]); micro-F1 pools the counts of those
//! observations. All of it is computed by the `metrics` crate (`multilabel_counts`,
//! `BinaryCounts::f1`, `macro_mean`, `bootstrap_many`) on the binarised labels.
//!
//! Bootstrap CIs resample report pairs with replacement; every output shares the same
//! resamples.

use metrics::bootstrap::{bootstrap_many, BootstrapConfig, Interval, Resampling};
use metrics::classification::{macro_mean, multilabel_counts, BinaryCounts, MultiLabelView};
use metrics::MetricsError;

use crate::error::{LabelerError, Result};
use crate::labeler::Labeler;
use crate::observation::{Observation, ReportLabels, N_OBSERVATIONS};

/// F1 scores of a set of report pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelF1 {
    /// F1 of each observation, in [`Observation::ALL`] order.
    pub per_observation: [f64; N_OBSERVATIONS],
    /// Mean F1 over the 14 observations.
    pub macro_f1_14: f64,
    /// F1 of the pooled counts of the 14 observations.
    pub micro_f1_14: f64,
    /// Mean F1 over [`Observation::FIVE`].
    pub macro_f1_5: f64,
    /// F1 of the pooled counts of [`Observation::FIVE`].
    pub micro_f1_5: f64,
    /// Number of report pairs.
    pub n_reports: usize,
}

/// [`LabelF1`] with percentile-bootstrap intervals (estimate, CI, valid resamples).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelF1Intervals {
    /// Per observation, in [`Observation::ALL`] order.
    pub per_observation: Vec<Interval>,
    /// Macro-F1 over the 14 observations.
    pub macro_f1_14: Interval,
    /// Micro-F1 over the 14 observations.
    pub micro_f1_14: Interval,
    /// Macro-F1 over [`Observation::FIVE`].
    pub macro_f1_5: Interval,
    /// Micro-F1 over [`Observation::FIVE`].
    pub micro_f1_5: Interval,
    /// Number of report pairs.
    pub n_reports: usize,
}

const N_STATS: usize = N_OBSERVATIONS + 4;

/// The statistics over `rows` (all when `None`): 14 per-observation F1s, then macro-14,
/// micro-14, macro-5, micro-5.
fn stats(view: &MultiLabelView<'_>, rows: Option<&[usize]>) -> [f64; N_STATS] {
    let counts = multilabel_counts(view, 0.5, rows);
    let mut out = [0.0; N_STATS];
    for (o, c) in out.iter_mut().zip(&counts.per_label) {
        *o = c.f1();
    }
    let five = || {
        Observation::FIVE
            .iter()
            .map(|o| counts.per_label[o.index()])
    };
    out[N_OBSERVATIONS] = counts.macro_of(BinaryCounts::f1).unwrap_or(0.0);
    out[N_OBSERVATIONS + 1] = counts.micro().f1();
    out[N_OBSERVATIONS + 2] = macro_mean(five().map(|c| Some(c.f1()))).unwrap_or(0.0);
    out[N_OBSERVATIONS + 3] = five()
        .fold(BinaryCounts::default(), BinaryCounts::merged)
        .f1();
    out
}

/// Accumulates (generated, reference) label pairs batch by batch, then scores them; the
/// result does not depend on how the pairs were batched.
#[derive(Debug, Clone)]
pub struct LabelF1State {
    /// Reference positives, row-major `[report, observation]`.
    y_true: Vec<Option<bool>>,
    /// Generated positives as scores 1.0 / 0.0 (thresholded at 0.5).
    y_pred: Vec<f64>,
    n_reports: usize,
}

impl Default for LabelF1State {
    fn default() -> Self {
        Self::new()
    }
}

impl LabelF1State {
    /// An empty state.
    pub fn new() -> Self {
        Self {
            y_true: Vec::new(),
            y_pred: Vec::new(),
            n_reports: 0,
        }
    }

    /// Adds a batch of labelled report pairs (`generated[i]` is scored against
    /// `reference[i]`).
    pub fn update(&mut self, generated: &[ReportLabels], reference: &[ReportLabels]) -> Result<()> {
        if generated.len() != reference.len() {
            return Err(LabelerError::LengthMismatch {
                generated: generated.len(),
                reference: reference.len(),
            });
        }
        let mut y_true = Vec::with_capacity(generated.len() * N_OBSERVATIONS);
        let mut y_pred = Vec::with_capacity(generated.len() * N_OBSERVATIONS);
        for (g, r) in generated.iter().zip(reference) {
            for o in Observation::ALL {
                y_true.push(Some(r.is_positive(o)));
                y_pred.push(if g.is_positive(o) { 1.0 } else { 0.0 });
            }
        }
        self.y_true.extend(y_true);
        self.y_pred.extend(y_pred);
        self.n_reports += generated.len();
        Ok(())
    }

    /// Labels a batch of report texts with `labeler`, then adds them ([`Self::update`]).
    pub fn update_texts<S: AsRef<str>>(
        &mut self,
        labeler: &Labeler,
        generated: &[S],
        reference: &[S],
    ) -> Result<()> {
        if generated.len() != reference.len() {
            return Err(LabelerError::LengthMismatch {
                generated: generated.len(),
                reference: reference.len(),
            });
        }
        self.update(&labeler.label_all(generated), &labeler.label_all(reference))
    }

    /// Number of report pairs added so far.
    pub fn n_reports(&self) -> usize {
        self.n_reports
    }

    fn view(&self) -> Result<MultiLabelView<'_>> {
        if self.n_reports == 0 {
            return Err(LabelerError::NoReports);
        }
        Ok(MultiLabelView::new(
            N_OBSERVATIONS,
            &self.y_true,
            &self.y_pred,
        )?)
    }

    /// F1 scores of everything added.
    pub fn compute(&self) -> Result<LabelF1> {
        let s = stats(&self.view()?, None);
        let mut per_observation = [0.0; N_OBSERVATIONS];
        per_observation.copy_from_slice(&s[..N_OBSERVATIONS]);
        Ok(LabelF1 {
            per_observation,
            macro_f1_14: s[N_OBSERVATIONS],
            micro_f1_14: s[N_OBSERVATIONS + 1],
            macro_f1_5: s[N_OBSERVATIONS + 2],
            micro_f1_5: s[N_OBSERVATIONS + 3],
            n_reports: self.n_reports,
        })
    }

    /// F1 scores with percentile-bootstrap CIs over report pairs.
    pub fn compute_with_ci(&self, cfg: &BootstrapConfig) -> Result<LabelF1Intervals> {
        let view = self.view()?;
        let mut intervals =
            bootstrap_many(Resampling::Rows(self.n_reports), cfg, N_STATS, |rows| {
                Ok(stats(&view, Some(rows)).iter().map(|&x| Some(x)).collect())
            })?;
        let tail = intervals.split_off(N_OBSERVATIONS.min(intervals.len()));
        let n_tail = tail.len();
        let Ok([macro_f1_14, micro_f1_14, macro_f1_5, micro_f1_5]) =
            <[Interval; 4]>::try_from(tail)
        else {
            return Err(MetricsError::LengthMismatch {
                what: "bootstrap outputs vs label-F1 statistics",
                left: n_tail + N_OBSERVATIONS,
                right: N_STATS,
            }
            .into());
        };
        Ok(LabelF1Intervals {
            per_observation: intervals,
            macro_f1_14,
            micro_f1_14,
            macro_f1_5,
            micro_f1_5,
            n_reports: self.n_reports,
        })
    }
}

/// F1 scores of labelled report pairs in one call.
pub fn label_f1(generated: &[ReportLabels], reference: &[ReportLabels]) -> Result<LabelF1> {
    let mut s = LabelF1State::new();
    s.update(generated, reference)?;
    s.compute()
}

/// F1 scores with bootstrap CIs of labelled report pairs in one call.
pub fn label_f1_with_ci(
    generated: &[ReportLabels],
    reference: &[ReportLabels],
    cfg: &BootstrapConfig,
) -> Result<LabelF1Intervals> {
    let mut s = LabelF1State::new();
    s.update(generated, reference)?;
    s.compute_with_ci(cfg)
}

/// The report-generation table of one system: ROUGE-L F (mean over reports), corpus BLEU-4,
/// label macro-F1-14 and micro-F1-14 of `generated` against `reference` (whose labels are
/// `ref_labels`), each with an interval from one bootstrap over `groups` (e.g. the rows of
/// each patient, so a patient's reports are resampled together).
pub fn report_scores_with_ci(
    generated: &[String],
    reference: &[String],
    ref_labels: &[ReportLabels],
    groups: &[Vec<usize>],
    cfg: &BootstrapConfig,
) -> Result<Vec<Interval>> {
    if generated.len() != reference.len() || reference.len() != ref_labels.len() {
        return Err(LabelerError::LengthMismatch {
            generated: generated.len(),
            reference: reference.len(),
        });
    }
    let gen_labels = Labeler::new().label_all(generated);
    let rouge: Vec<f64> = generated
        .iter()
        .zip(reference)
        .map(|(g, r)| metrics::text::rouge::rouge_l(r, g).fmeasure)
        .collect();
    Ok(bootstrap_many(
        Resampling::Groups(groups),
        cfg,
        4,
        |rows| {
            let mean_rouge = rows.iter().map(|&i| rouge[i]).sum::<f64>() / rows.len() as f64;
            let hyps: Vec<&str> = rows.iter().map(|&i| generated[i].as_str()).collect();
            let refs: Vec<Vec<&str>> = rows.iter().map(|&i| vec![reference[i].as_str()]).collect();
            let bleu4 = metrics::text::bleu::corpus_bleu(&hyps, &refs)?[3];
            let g: Vec<ReportLabels> = rows.iter().map(|&i| gen_labels[i]).collect();
            let r: Vec<ReportLabels> = rows.iter().map(|&i| ref_labels[i]).collect();
            // only fails on empty or unequal inputs, which a resample never is
            let f1 = label_f1(&g, &r).ok();
            Ok(vec![
                Some(mean_rouge),
                Some(bleu4),
                f1.as_ref().map(|f| f.macro_f1_14),
                f1.as_ref().map(|f| f.micro_f1_14),
            ])
        },
    )?)
}
