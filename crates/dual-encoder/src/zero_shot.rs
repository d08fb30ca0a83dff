//! Zero-shot classification with prompt ensembles.
//!
//! Each class (finding) is described by prompt templates (`"chest x-ray showing {}"`);
//! the class embedding is the mean of the unit-norm prompt embeddings, normalised again
//! (CLIP / UniCL prompt ensembling). Images are scored by `exp(logit_scale) · cos`:
//! - [`ZeroShotClassifier::probabilities`]: softmax over classes (single-label);
//! - [`ZeroShotClassifier::binary_scores`]: per finding, a two-way softmax of the positive
//!   ensemble against the negative one (`"no {}"`), the score to rank by for AUROC.

use candle_core::{Tensor, D};
use cxr_core::ops::softmax_last_dim;

use crate::dual::DualEncoder;
use crate::text_transformer::l2_normalize;
use crate::tokenizer::TextTokenizer;
use crate::{Error, Result};

/// A set of prompt templates; `{}` (or `{finding}`) marks where the class name goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates(Vec<String>);

impl Templates {
    /// Checks that there is at least one template and each has one placeholder.
    pub fn new<S: Into<String>>(templates: impl IntoIterator<Item = S>) -> Result<Self> {
        let t: Vec<String> = templates.into_iter().map(Into::into).collect();
        if t.is_empty() {
            return Err(Error::arg("templates", "at least one template"));
        }
        if let Some(bad) = t
            .iter()
            .find(|s| !(s.contains("{}") || s.contains("{finding}")))
        {
            return Err(Error::arg(
                "templates",
                format!("`{bad}` has no `{{}}` or `{{finding}}` placeholder"),
            ));
        }
        Ok(Self(t))
    }

    /// Positive chest X-ray prompts.
    pub fn cxr_positive() -> Self {
        Self(vec![
            "chest x-ray showing {}".into(),
            "a chest radiograph with {}".into(),
            "findings consistent with {}".into(),
        ])
    }

    /// Negative chest X-ray prompts.
    pub fn cxr_negative() -> Self {
        Self(vec![
            "no {}".into(),
            "chest x-ray without {}".into(),
            "no evidence of {}".into(),
        ])
    }

    /// The prompts for one class name.
    pub fn fill(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|t| t.replace("{finding}", name).replace("{}", name))
            .collect()
    }

    /// The templates.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// `[C, P]` unit-norm ensemble embeddings, one row per class name.
pub fn class_embeddings(
    model: &DualEncoder,
    tokenizer: &TextTokenizer,
    names: &[&str],
    templates: &Templates,
) -> Result<Tensor> {
    if names.is_empty() {
        return Err(Error::arg("names", "at least one class"));
    }
    let t = templates.as_slice().len();
    let prompts: Vec<String> = names.iter().flat_map(|n| templates.fill(n)).collect();
    let batch = tokenizer.encode_batch(&prompts, model.device())?;
    let emb = model.encode_text(&batch)?; // [C*T, P], unit norm
    let p = emb.dim(1)?;
    let mean = emb.reshape((names.len(), t, p))?.mean(1)?;
    l2_normalize(&mean)
}

/// Class embeddings for zero-shot scoring.
#[derive(Debug, Clone)]
pub struct ZeroShotClassifier {
    names: Vec<String>,
    positive: Tensor,
    negative: Option<Tensor>,
}

impl ZeroShotClassifier {
    /// Embeds the prompts of every class with `positive` templates and, when given,
    /// `negative` templates (needed for [`Self::binary_scores`]).
    pub fn new(
        model: &DualEncoder,
        tokenizer: &TextTokenizer,
        names: &[&str],
        positive: &Templates,
        negative: Option<&Templates>,
    ) -> Result<Self> {
        let pos = class_embeddings(model, tokenizer, names, positive)?;
        let neg = negative
            .map(|n| class_embeddings(model, tokenizer, names, n))
            .transpose()?;
        Ok(Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            positive: pos,
            negative: neg,
        })
    }

    /// The class names, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `[C, P]` positive class embeddings.
    pub fn class_embeddings(&self) -> &Tensor {
        &self.positive
    }

    /// `[B, C]` logits `scale · image · classᵀ` for unit-norm image embeddings `[B, P]`.
    pub fn logits(&self, model: &DualEncoder, image: &Tensor) -> Result<Tensor> {
        model.logits(image, &self.positive)
    }

    /// `[B, C]` softmax over classes.
    pub fn probabilities(&self, model: &DualEncoder, image: &Tensor) -> Result<Tensor> {
        Ok(softmax_last_dim(&self.logits(model, image)?)?)
    }

    /// `[B, C]` probability of the positive prompt ensemble against the negative one, per
    /// finding: `softmax([s·cos(img, pos_c), s·cos(img, neg_c)])₀`.
    pub fn binary_scores(&self, model: &DualEncoder, image: &Tensor) -> Result<Tensor> {
        let neg = self
            .negative
            .as_ref()
            .ok_or_else(|| Error::arg("negative", "binary scores need negative templates"))?;
        let pos_logit = model.logits(image, &self.positive)?;
        let neg_logit = model.logits(image, neg)?;
        let pair = Tensor::stack(&[&pos_logit, &neg_logit], D::Minus1)?; // [B, C, 2]
        Ok(softmax_last_dim(&pair)?
            .narrow(D::Minus1, 0, 1)?
            .squeeze(D::Minus1)?)
    }
}

/// AUROC of every finding column of `scores` (`[B, C]`, e.g. [`ZeroShotClassifier::binary_scores`])
/// against `labels[b][c]` (`None` = missing, skipped for that finding). A finding whose
/// present labels are all one class has no AUROC (`None`).
pub fn per_finding_auroc(scores: &Tensor, labels: &[Vec<Option<bool>>]) -> Result<Vec<Option<f64>>> {
    let (b, c) = scores.dims2()?;
    if labels.len() != b || labels.iter().any(|r| r.len() != c) {
        return Err(Error::arg(
            "labels",
            format!("{b} rows of {c} labels, like the scores"),
        ));
    }
    let s = scores.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?;
    Ok((0..c)
        .map(|j| {
            let (y, x): (Vec<bool>, Vec<f64>) = labels
                .iter()
                .zip(&s)
                .filter_map(|(l, row)| l[j].map(|y| (y, row[j])))
                .unzip();
            metrics::classification::auroc(&y, &x).ok()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    #[test]
    fn auroc_per_finding_skips_missing_and_single_class() {
        let scores = Tensor::new(
            &[[0.1f32, 0.5], [0.4, 0.6], [0.35, 0.7], [0.8, 0.2]],
            &Device::Cpu,
        )
        .unwrap();
        let labels = vec![
            vec![Some(false), Some(true)],
            vec![Some(false), None],
            vec![Some(true), Some(true)],
            vec![Some(true), Some(true)],
        ];
        let a = per_finding_auroc(&scores, &labels).unwrap();
        assert_eq!(a[0], Some(0.75)); // sklearn's roc_auc_score([0,0,1,1],[.1,.4,.35,.8])
        assert_eq!(a[1], None); // only positives once the missing label is skipped
        assert!(per_finding_auroc(&scores, &labels[..3]).is_err());
    }
}
