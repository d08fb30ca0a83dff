//! Structured labels → text through prompt templates and finding synonyms.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, LabelSet, Result};

/// Placeholder a positive template must contain.
pub const FINDINGS_PLACEHOLDER: &str = "{findings}";

/// One finding and the phrases that may name it in a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Canonical name (e.g. a label-table column).
    pub name: String,
    /// Phrases used in prompts, chosen uniformly; the name itself is used when this is empty.
    #[serde(default)]
    pub synonyms: Vec<String>,
}

impl Finding {
    fn phrases(&self) -> &[String] {
        if self.synonyms.is_empty() {
            std::slice::from_ref(&self.name)
        } else {
            &self.synonyms
        }
    }
}

/// How label sets become texts (serde-loadable, e.g. from TOML).
///
/// A non-empty set picks one of `positive_templates` and replaces `{findings}` with one
/// synonym per finding, joined as "a", "a and b", "a, b and c"; an empty set picks one of
/// `negative_texts`. One label set therefore gives several texts; a training step samples one.
///
/// With `mention_absent = k > 0`, a sampled text also names up to `k` findings the set does
/// *not* hold (how many, uniform in `0..=k`, and which, uniform among the absent ones), each
/// as `absent_template` (a leading "a"/"an" dropped), appended after a comma: "chest x-ray
/// with effusion, no pneumothorax". Label prompts without any negation never show the text
/// tower the "no {finding}" phrasing that per-finding zero-shot prompts contrast against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTemplates {
    /// Finding vocabulary, indexed by the [`LabelSet`] indices.
    pub findings: Vec<Finding>,
    /// Templates for sets with findings, each containing `{findings}`.
    pub positive_templates: Vec<String>,
    /// Texts for the empty set.
    pub negative_texts: Vec<String>,
    /// Word joining the last two findings.
    #[serde(default = "default_conjunction")]
    pub conjunction: String,
    /// Whether finding order is shuffled per sample (augmentation) or kept in index order.
    #[serde(default)]
    pub shuffle_findings: bool,
    /// At most this many absent findings named per sampled text (0 = none; see above).
    #[serde(default)]
    pub mention_absent: usize,
    /// How one absent finding is named; must contain `{finding}`.
    #[serde(default = "default_absent_template")]
    pub absent_template: String,
}

/// Placeholder of [`PromptTemplates::absent_template`].
pub const FINDING_PLACEHOLDER: &str = "{finding}";

fn default_conjunction() -> String {
    "and".into()
}

fn default_absent_template() -> String {
    "no {finding}".into()
}

impl PromptTemplates {
    /// A preset for the 14 NIH ChestX-ray14 findings, in the column order of the
    /// `cxr-findings` pack (atelectasis … pneumothorax).
    pub fn nih_chestxray14() -> Self {
        let f = |name: &str, syn: &[&str]| Finding {
            name: name.into(),
            synonyms: syn.iter().map(|s| s.to_string()).collect(),
        };
        Self {
            findings: vec![
                f("atelectasis", &["atelectasis", "collapse"]),
                f(
                    "cardiomegaly",
                    &[
                        "cardiomegaly",
                        "an enlarged heart",
                        "enlarged cardiac silhouette",
                    ],
                ),
                f(
                    "consolidation",
                    &["consolidation", "airspace consolidation"],
                ),
                f("edema", &["edema", "pulmonary edema"]),
                f("effusion", &["effusion", "pleural effusion"]),
                f("emphysema", &["emphysema", "hyperinflated lungs"]),
                f("fibrosis", &["fibrosis", "pulmonary fibrosis"]),
                f("hernia", &["hernia", "hiatal hernia"]),
                f("infiltration", &["infiltration", "pulmonary infiltrates"]),
                f("mass", &["mass", "a lung mass"]),
                f("nodule", &["nodule", "a pulmonary nodule"]),
                f("pleural_thickening", &["pleural thickening"]),
                f("pneumonia", &["pneumonia"]),
                f("pneumothorax", &["pneumothorax"]),
            ],
            positive_templates: vec![
                "chest x-ray with {findings}".into(),
                "chest radiograph showing {findings}".into(),
                "findings consistent with {findings}".into(),
                "{findings}".into(),
            ],
            negative_texts: vec![
                "no acute findings".into(),
                "normal chest x-ray".into(),
                "no acute cardiopulmonary process".into(),
            ],
            conjunction: default_conjunction(),
            shuffle_findings: false,
            mention_absent: 0,
            absent_template: default_absent_template(),
        }
    }

    /// Checks that the templates can render every label set over the vocabulary.
    pub fn validate(&self) -> Result<()> {
        if self.positive_templates.is_empty() || self.negative_texts.is_empty() {
            return Err(Error::Prompt(
                "need at least one positive template and one negative text".into(),
            ));
        }
        if let Some(t) = self
            .positive_templates
            .iter()
            .find(|t| !t.contains(FINDINGS_PLACEHOLDER))
        {
            return Err(Error::Prompt(format!(
                "positive template {t:?} lacks {FINDINGS_PLACEHOLDER}"
            )));
        }
        if self.mention_absent > 0 && !self.absent_template.contains(FINDING_PLACEHOLDER) {
            return Err(Error::Prompt(format!(
                "absent template {:?} lacks {FINDING_PLACEHOLDER}",
                self.absent_template
            )));
        }
        Ok(())
    }

    /// One text for `set`, drawn with `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, set: &LabelSet, rng: &mut R) -> Result<String> {
        let text = self.sample_present(set, rng)?;
        if self.mention_absent == 0 {
            return Ok(text);
        }
        let mut absent: Vec<u32> = (0..self.findings.len() as u32)
            .filter(|i| !set.contains(*i))
            .collect();
        let n = rng.random_range(0..=self.mention_absent.min(absent.len()));
        let (chosen, _) = absent.partial_shuffle(rng, n);
        let mut out = text;
        for &i in chosen.iter() {
            let p = self.finding(i)?.phrases();
            let phrase = &p[rng.random_range(0..p.len())];
            // "no a lung mass" -> "no lung mass"
            let bare = ["a ", "an "]
                .iter()
                .find_map(|a| phrase.strip_prefix(a))
                .unwrap_or(phrase);
            out.push_str(", ");
            out.push_str(&self.absent_template.replace(FINDING_PLACEHOLDER, bare));
        }
        Ok(out)
    }

    /// The text naming what `set` holds (no absent mentions).
    fn sample_present<R: Rng + ?Sized>(&self, set: &LabelSet, rng: &mut R) -> Result<String> {
        self.validate()?;
        if set.is_empty() {
            return Ok(self.negative_texts[rng.random_range(0..self.negative_texts.len())].clone());
        }
        let mut phrases = Vec::with_capacity(set.len());
        for i in set.findings() {
            let p = self.finding(i)?.phrases();
            phrases.push(p[rng.random_range(0..p.len())].as_str());
        }
        if self.shuffle_findings {
            phrases.shuffle(rng);
        }
        let template = &self.positive_templates[rng.random_range(0..self.positive_templates.len())];
        Ok(template.replace(FINDINGS_PLACEHOLDER, &self.join(&phrases)))
    }

    /// Every text `set` can give in index order (templates × synonym choices), e.g. to average
    /// text embeddings for zero-shot classification; absent-finding mentions are left out.
    /// Fails above `limit` texts.
    pub fn all_texts(&self, set: &LabelSet, limit: usize) -> Result<Vec<String>> {
        self.validate()?;
        if set.is_empty() {
            return Ok(self.negative_texts.clone());
        }
        let mut fills: Vec<Vec<&str>> = vec![Vec::new()];
        for i in set.findings() {
            let p = self.finding(i)?.phrases();
            if fills.len() * p.len() * self.positive_templates.len() > limit {
                return Err(Error::Prompt(format!(
                    "label set {set:?} gives more than {limit} texts"
                )));
            }
            fills = fills
                .iter()
                .flat_map(|f| {
                    p.iter()
                        .map(move |s| [f.as_slice(), &[s.as_str()]].concat())
                })
                .collect();
        }
        Ok(self
            .positive_templates
            .iter()
            .flat_map(|t| {
                fills
                    .iter()
                    .map(move |f| t.replace(FINDINGS_PLACEHOLDER, &self.join(f)))
            })
            .collect())
    }

    fn finding(&self, i: u32) -> Result<&Finding> {
        self.findings.get(i as usize).ok_or_else(|| {
            Error::Prompt(format!(
                "finding index {i} outside the vocabulary of {}",
                self.findings.len()
            ))
        })
    }

    fn join(&self, phrases: &[&str]) -> String {
        match phrases {
            [] => String::new(),
            [one] => (*one).to_string(),
            [init @ .., last] => format!("{} {} {last}", init.join(", "), self.conjunction),
        }
    }
}

/// Seeded, stateless text sampling: the text of sample `index` at training step `step`
/// depends only on `(seed, step, index)`, so a resumed run draws the same texts.
#[derive(Debug, Clone)]
pub struct PromptSampler {
    templates: PromptTemplates,
    seed: u64,
}

impl PromptSampler {
    /// A sampler over validated templates.
    pub fn new(templates: PromptTemplates, seed: u64) -> Result<Self> {
        templates.validate()?;
        Ok(Self { templates, seed })
    }

    /// The templates.
    pub fn templates(&self) -> &PromptTemplates {
        &self.templates
    }

    /// The text for `set` at `(step, index)`.
    pub fn text(&self, set: &LabelSet, step: u64, index: u64) -> Result<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // one ChaCha stream per step, one block range per sample: independent, reproducible
        rng.set_stream(step);
        rng.set_word_pos(u128::from(index) << 20);
        self.templates.sample(set, &mut rng)
    }
}
