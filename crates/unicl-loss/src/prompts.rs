//! Structured labels → text through prompt templates and finding synonyms.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, LabelSet, Result};

/// What one sampled text says about its image's label set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextUnit {
    /// The whole set: every present finding ("chest x-ray with effusion and mass"), or a
    /// normal text for the empty set. The text's UniCL label is the set.
    #[default]
    LabelSet,
    /// One statement about one finding: "chest x-ray with effusion" (present) or "no
    /// effusion" (absent). The text's UniCL label is the statement (finding, present), so
    /// every image of a batch for which the same statement was drawn is a positive. These
    /// are the texts per-finding zero-shot prompts contrast ("showing X" against "no X").
    Finding,
    /// One statement per image about one finding that the whole step shares (drawn
    /// uniformly per step from the sampler's seed): "chest x-ray with X" for the images
    /// that have X, "no X" for the others. The batch's texts are then the two statements
    /// of one finding, so each step contrasts exactly what a per-finding zero-shot prompt
    /// pair asks; labels are as for [`TextUnit::Finding`]. Needs [`PromptSampler`], which
    /// knows the step.
    BatchFinding,
}

impl TextUnit {
    /// Whether a text states one finding ([`TextUnit::Finding`], [`TextUnit::BatchFinding`]).
    pub fn is_statement(self) -> bool {
        matches!(self, Self::Finding | Self::BatchFinding)
    }
}

/// The UniCL label of one sampled text: texts with equal labels are positives of each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TextLabel {
    /// The text renders this whole set ([`TextUnit::LabelSet`], or a normal text drawn for
    /// the empty set under [`TextUnit::Finding`]).
    Set(LabelSet),
    /// The text states that finding `finding` is present or absent ([`TextUnit::Finding`]).
    Statement {
        /// Finding index.
        finding: u32,
        /// Whether the statement says present.
        present: bool,
    },
}

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
/// as an absent template (a leading "a"/"an" dropped), appended after a comma: "chest x-ray
/// with effusion, no pneumothorax". Label prompts without any negation never show the text
/// tower the "no {finding}" phrasing that per-finding zero-shot prompts contrast against.
///
/// With `unit = Finding` a text is instead one statement about one finding (see
/// [`TextUnit::Finding`]): with probability `present_probability` a present finding (drawn
/// uniformly among those the set holds; for the empty set, one of `negative_texts`), otherwise
/// an absent one (uniformly among the rest), rendered through a positive template with that
/// one finding, or through an absent template (`absent_template` or one of
/// `extra_absent_templates`).
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
    /// Further ways to name an absent finding ("no evidence of {finding}", …), each drawn as
    /// often as `absent_template`. A text tower trained from scratch learns only the words
    /// its training texts use, so zero-shot negative prompts phrased otherwise would meet
    /// untrained tokens. Empty: `absent_template` alone, with no draw spent on the choice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_absent_templates: Vec<String>,
    /// Whether a text renders the whole label set or one finding statement.
    #[serde(default)]
    pub unit: TextUnit,
    /// Under `unit = Finding`: how often the statement names a present finding (or, for the
    /// empty set, is a normal text) rather than an absent one.
    #[serde(default = "default_present_probability")]
    pub present_probability: f64,
}

fn default_present_probability() -> f64 {
    0.5
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
            extra_absent_templates: Vec::new(),
            unit: TextUnit::LabelSet,
            present_probability: default_present_probability(),
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
        let names_absent = self.mention_absent > 0 || self.unit.is_statement();
        if names_absent {
            if let Some(t) = self
                .absent_templates()
                .find(|t| !t.contains(FINDING_PLACEHOLDER))
            {
                return Err(Error::Prompt(format!(
                    "absent template {t:?} lacks {FINDING_PLACEHOLDER}"
                )));
            }
        }
        if self.unit.is_statement() {
            if self.mention_absent > 0 {
                return Err(Error::Prompt(
                    "mention_absent extends label-set texts; finding statements already name \
                     absent findings"
                        .into(),
                ));
            }
            if self.findings.is_empty() {
                return Err(Error::Prompt("finding statements need findings".into()));
            }
            if !(0.0..=1.0).contains(&self.present_probability) {
                return Err(Error::Prompt(format!(
                    "present probability {} outside [0, 1]",
                    self.present_probability
                )));
            }
        }
        Ok(())
    }

    /// One text for `set`, drawn with `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, set: &LabelSet, rng: &mut R) -> Result<String> {
        Ok(self.sample_labelled(set, rng)?.0)
    }

    /// One text for `set` and its UniCL label, drawn with `rng`.
    pub fn sample_labelled<R: Rng + ?Sized>(
        &self,
        set: &LabelSet,
        rng: &mut R,
    ) -> Result<(String, TextLabel)> {
        match self.unit {
            TextUnit::Finding => self.sample_statement(set, rng),
            TextUnit::BatchFinding => Err(Error::Prompt(
                "batch-shared findings are drawn per step: sample through a PromptSampler".into(),
            )),
            TextUnit::LabelSet => Ok((self.sample_set(set, rng)?, TextLabel::Set(set.clone()))),
        }
    }

    /// The statement about finding `finding` that `set` makes true ([`TextUnit::BatchFinding`]):
    /// present when the set holds it, else absent.
    fn statement_about<R: Rng + ?Sized>(
        &self,
        set: &LabelSet,
        finding: u32,
        rng: &mut R,
    ) -> Result<(String, TextLabel)> {
        self.validate()?;
        self.check_indices(set.findings().chain([finding]))?;
        let present = set.contains(finding);
        Ok((
            self.render_statement(finding, present, rng)?,
            TextLabel::Statement { finding, present },
        ))
    }

    /// One statement about one finding of `set` ([`TextUnit::Finding`]).
    fn sample_statement<R: Rng + ?Sized>(
        &self,
        set: &LabelSet,
        rng: &mut R,
    ) -> Result<(String, TextLabel)> {
        self.validate()?;
        self.check_indices(set.findings())?;
        let n = self.findings.len() as u32;
        let absent: Vec<u32> = (0..n).filter(|&i| !set.contains(i)).collect();
        let present = absent.is_empty() || rng.random_bool(self.present_probability);
        if present && set.is_empty() {
            let t = &self.negative_texts[rng.random_range(0..self.negative_texts.len())];
            return Ok((t.clone(), TextLabel::Set(set.clone())));
        }
        let finding = if present {
            let held: Vec<u32> = set.findings().collect();
            held[rng.random_range(0..held.len())]
        } else {
            absent[rng.random_range(0..absent.len())]
        };
        let text = self.render_statement(finding, present, rng)?;
        Ok((text, TextLabel::Statement { finding, present }))
    }

    /// "chest x-ray with {finding}" or "no {finding}": a synonym, then a template, drawn.
    fn render_statement<R: Rng + ?Sized>(
        &self,
        finding: u32,
        present: bool,
        rng: &mut R,
    ) -> Result<String> {
        let p = self.finding(finding)?.phrases();
        let phrase = &p[rng.random_range(0..p.len())];
        Ok(if present {
            let t = &self.positive_templates[rng.random_range(0..self.positive_templates.len())];
            t.replace(FINDINGS_PLACEHOLDER, phrase)
        } else {
            self.absent_text(self.draw_absent_template(rng), phrase)
        })
    }

    /// `absent_template`, then `extra_absent_templates`.
    fn absent_templates(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.absent_template).chain(&self.extra_absent_templates)
    }

    /// One of the absent templates, uniformly; without extra templates no draw is made, so
    /// the texts of runs from before they existed are drawn again unchanged.
    fn draw_absent_template<R: Rng + ?Sized>(&self, rng: &mut R) -> &str {
        if self.extra_absent_templates.is_empty() {
            return &self.absent_template;
        }
        match rng.random_range(0..=self.extra_absent_templates.len()) {
            0 => &self.absent_template,
            i => &self.extra_absent_templates[i - 1],
        }
    }

    /// `template` for one phrase, a leading "a"/"an" dropped ("no a lung mass" → "no lung
    /// mass").
    fn absent_text(&self, template: &str, phrase: &str) -> String {
        let bare = ["a ", "an "]
            .iter()
            .find_map(|a| phrase.strip_prefix(a))
            .unwrap_or(phrase);
        template.replace(FINDING_PLACEHOLDER, bare)
    }

    /// Every statement [`TextUnit::Finding`] or [`TextUnit::BatchFinding`] can draw about
    /// finding `index` (present and absent), e.g. for a tokenizer corpus.
    pub fn statement_texts(&self, index: u32) -> Result<Vec<String>> {
        let p = self.finding(index)?.phrases();
        let mut out: Vec<String> = self
            .positive_templates
            .iter()
            .flat_map(|t| p.iter().map(move |s| t.replace(FINDINGS_PLACEHOLDER, s)))
            .collect();
        for t in self.absent_templates() {
            out.extend(p.iter().map(|s| self.absent_text(t, s)));
        }
        Ok(out)
    }

    /// A label-set text: the present findings, then any absent mentions.
    fn sample_set<R: Rng + ?Sized>(&self, set: &LabelSet, rng: &mut R) -> Result<String> {
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
            out.push_str(", ");
            let t = self.draw_absent_template(rng);
            out.push_str(&self.absent_text(t, phrase));
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

    /// An error naming the first of `indices` outside the vocabulary, if any.
    fn check_indices(&self, mut indices: impl Iterator<Item = u32>) -> Result<()> {
        match indices.find(|&i| i as usize >= self.findings.len()) {
            Some(bad) => self.finding(bad).map(|_| ()),
            None => Ok(()),
        }
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
        Ok(self.labelled_text(set, step, index)?.0)
    }

    /// The text for `set` at `(step, index)` and its UniCL label.
    pub fn labelled_text(
        &self,
        set: &LabelSet,
        step: u64,
        index: u64,
    ) -> Result<(String, TextLabel)> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // one ChaCha stream per step, one block range per sample: independent, reproducible
        rng.set_stream(step);
        rng.set_word_pos(u128::from(index) << 20);
        if self.templates.unit == TextUnit::BatchFinding {
            let finding = self.step_finding(step)?;
            return self.templates.statement_about(set, finding, &mut rng);
        }
        self.templates.sample_labelled(set, &mut rng)
    }

    /// The finding every text of step `step` states under [`TextUnit::BatchFinding`]:
    /// uniform over the vocabulary, from a stream of its own (the top bit of the stream id,
    /// which per-sample streams, one per step, never reach).
    pub fn step_finding(&self, step: u64) -> Result<u32> {
        let n = self.templates.findings.len() as u32;
        if n == 0 {
            return Err(Error::Prompt("finding statements need findings".into()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(step | (1 << 63));
        Ok(rng.random_range(0..n))
    }
}
