//! ROUGE-L as Google's `rouge-score` (`RougeScorer(["rougeL"], use_stemmer=...)`).
//!
//! Tokens from [`tokenize_rouge_with`] (Porter-stemmed when `use_stemmer`); with `L` the longest-common-subsequence length,
//! `P = L / |prediction|`, `R = L / |target|`, `F = 2PR / (P + R)` (0 when `P + R = 0`);
//! all three are 0 when either side has no token. Several targets: the one with the
//! highest F (first on ties), as `score_multi`. The corpus value is the mean per-pair F.

use super::{tokenize_rouge, tokenize_rouge_with};
use crate::error::{check_len, MetricsError, Result};

/// Precision, recall and F-measure of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RougeScore {
    /// LCS / prediction length.
    pub precision: f64,
    /// LCS / target length.
    pub recall: f64,
    /// Harmonic mean.
    pub fmeasure: f64,
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of tokenised sequences.
pub fn rouge_l_tokens(target: &[String], prediction: &[String]) -> RougeScore {
    if target.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let l = lcs_len(target, prediction) as f64;
    let precision = l / prediction.len() as f64;
    let recall = l / target.len() as f64;
    let fmeasure = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RougeScore {
        precision,
        recall,
        fmeasure,
    }
}

/// ROUGE-L of one (target, prediction) pair of raw texts (`RougeScorer.score`).
pub fn rouge_l(target: &str, prediction: &str) -> RougeScore {
    rouge_l_tokens(&tokenize_rouge(target), &tokenize_rouge(prediction))
}

/// ROUGE-L against several targets: the best F (`RougeScorer.score_multi`), no stemming.
pub fn rouge_l_multi(targets: &[&str], prediction: &str) -> Result<RougeScore> {
    rouge_l_multi_with(targets, prediction, false)
}

/// [`rouge_l_multi`] with `rouge-score`'s `use_stemmer` option.
pub fn rouge_l_multi_with(
    targets: &[&str],
    prediction: &str,
    use_stemmer: bool,
) -> Result<RougeScore> {
    let p = tokenize_rouge_with(prediction, use_stemmer);
    let mut best: Option<RougeScore> = None;
    for t in targets {
        let s = rouge_l_tokens(&tokenize_rouge_with(t, use_stemmer), &p);
        if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
            best = Some(s);
        }
    }
    best.ok_or_else(|| MetricsError::InvalidArgument("ROUGE-L needs at least one target".into()))
}

/// Accumulates the mean ROUGE-L F-measure over pairs.
#[derive(Debug, Clone, Default)]
pub struct RougeLState {
    use_stemmer: bool,
    per_pair: Vec<f64>,
}

impl RougeLState {
    /// An empty state; `use_stemmer` as `rouge-score`'s option (the default is `false`).
    pub fn new(use_stemmer: bool) -> Self {
        Self {
            use_stemmer,
            per_pair: Vec::new(),
        }
    }

    /// Adds a batch of (targets, prediction) pairs.
    pub fn update(&mut self, targets: &[Vec<&str>], predictions: &[&str]) -> Result<()> {
        check_len("targets vs predictions", targets.len(), predictions.len())?;
        for (t, p) in targets.iter().zip(predictions) {
            self.per_pair
                .push(rouge_l_multi_with(t, p, self.use_stemmer)?.fmeasure);
        }
        Ok(())
    }

    /// Per-pair F-measures so far.
    pub fn per_pair(&self) -> &[f64] {
        &self.per_pair
    }

    /// Mean F-measure; errors when nothing was added.
    pub fn compute(&self) -> Result<f64> {
        if self.per_pair.is_empty() {
            return Err(MetricsError::Empty { metric: "ROUGE-L" });
        }
        Ok(self.per_pair.iter().sum::<f64>() / self.per_pair.len() as f64)
    }
}

/// pycocoevalcap's ROUGE-L (`pycocoevalcap.rouge.Rouge`), the variant most radiology
/// report-generation papers report next to its BLEU: on [`super::tokenize_bleu`] tokens,
/// `P = max_ref LCS / |hyp|`, `R = max_ref LCS / |ref|` (maxima taken separately over the
/// references), `F = (1 + β²) P R / (R + β² P)` with `β = 1.2`, 0 when `P` or `R` is 0.
/// As pycocoevalcap splits the joined tokens on `" "`, an empty text counts as one empty
/// token (so an empty hypothesis against an empty reference scores 1).
pub fn coco_rouge_l(hypothesis: &str, references: &[&str]) -> Result<f64> {
    if references.is_empty() {
        return Err(MetricsError::InvalidArgument(
            "ROUGE-L needs at least one reference".into(),
        ));
    }
    let split = |t: &str| {
        let tokens = super::tokenize_bleu(t);
        if tokens.is_empty() {
            vec![String::new()]
        } else {
            tokens
        }
    };
    let hyp = split(hypothesis);
    let (mut p_max, mut r_max) = (0.0f64, 0.0f64);
    for r in references {
        let r = split(r);
        let l = lcs_len(&r, &hyp) as f64;
        p_max = p_max.max(l / hyp.len() as f64);
        r_max = r_max.max(l / r.len() as f64);
    }
    let beta2 = 1.2f64.powf(2.0);
    Ok(if p_max != 0.0 && r_max != 0.0 {
        (1.0 + beta2) * p_max * r_max / (r_max + beta2 * p_max)
    } else {
        0.0
    })
}
