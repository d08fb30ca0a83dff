//! The labeler: mentions, cues, scopes, and CheXpert's aggregation.

use crate::observation::{Label, Observation, ReportLabels};
use crate::pattern::{FirstCharIndex, Match, Pattern};
use crate::text::{sentences, Sentence, Token};
use crate::vocab::cues::{
    CueDef, CueKind, Direction, AUXILIARIES, CUES, HARD_STOPS, PART_NOUNS, PREPOSITIONS, VERBS,
};
use crate::vocab::mentions::VOCAB;

/// How a mention phrase relates to its observation (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MentionKind {
    /// Names the finding: positive unless negated or hedged.
    Finding,
    /// States the finding is absent ("heart size is normal"): negative.
    Normal,
    /// A borderline statement ("top-normal heart size"): uncertain.
    Hedged,
    /// Counts only when negated ("no acute osseous abnormality").
    NegatedOnly,
}

/// One mention found in a report, for inspection and debugging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The observation it speaks for.
    pub observation: Observation,
    /// Which phrase list matched.
    pub kind: MentionKind,
    /// The phrase that matched (pattern syntax).
    pub phrase: &'static str,
    /// Index of the sentence among the labelled sentences.
    pub sentence: usize,
    /// The matched tokens, lower-cased, space-separated.
    pub text: String,
    /// The mention's label; `None` for a [`MentionKind::NegatedOnly`] mention that was not
    /// negated (ignored).
    pub label: Option<Label>,
}

/// Labels and the mentions they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledReport {
    /// The 14 labels.
    pub labels: ReportLabels,
    /// Every mention, in sentence order.
    pub mentions: Vec<Mention>,
}

/// Settings of a [`Labeler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelerConfig {
    /// Skip the sentences of request sections (`INDICATION:`, `HISTORY:`, `COMPARISON:`,
    /// `TECHNIQUE:`, ...), whose words describe the question rather than the image.
    /// Default true.
    pub skip_sections: bool,
}

impl Default for LabelerConfig {
    fn default() -> Self {
        Self {
            skip_sections: true,
        }
    }
}

#[derive(Debug)]
struct MentionRule {
    observation: Observation,
    kind: MentionKind,
    phrase: &'static str,
    pattern: Pattern,
}

#[derive(Debug)]
struct CueRule {
    def: CueDef,
    pattern: Pattern,
}

/// A rule-based CheXpert-style report labeler. Build once ([`Labeler::new`] compiles the
/// phrase lists), then label any number of reports; `&self` only, so it can be shared
/// across threads.
#[derive(Debug)]
pub struct Labeler {
    config: LabelerConfig,
    mentions: Vec<MentionRule>,
    ignores: Vec<(Observation, Pattern)>,
    cues: Vec<CueRule>,
    mention_index: FirstCharIndex,
    ignore_index: FirstCharIndex,
    cue_index: FirstCharIndex,
}

impl Default for Labeler {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone)]
struct FoundMention {
    rule: usize,
    m: Match,
    clausal: bool,
}

#[derive(Debug, Clone, Copy)]
struct FoundCue {
    def: CueDef,
    start: usize,
    end: usize,
}

fn is_hard_stop(t: &Token) -> bool {
    match t {
        Token::Punct(_) => true,
        Token::Word(w) => HARD_STOPS.contains(&w.as_str()),
    }
}

fn word_in(t: &Token, list: &[&str]) -> bool {
    t.word().is_some_and(|w| list.contains(&w))
}

fn gap_ok(w: &str) -> bool {
    !HARD_STOPS.contains(&w)
}

impl Labeler {
    /// A labeler with the default settings.
    pub fn new() -> Self {
        Self::with_config(LabelerConfig::default())
    }

    /// A labeler with the given settings.
    pub fn with_config(config: LabelerConfig) -> Self {
        let mut mentions = Vec::new();
        let mut ignores = Vec::new();
        for v in VOCAB {
            let lists = [
                (MentionKind::Finding, v.finding),
                (MentionKind::Normal, v.normal),
                (MentionKind::Hedged, v.hedged),
                (MentionKind::NegatedOnly, v.negated_only),
            ];
            for (kind, phrases) in lists {
                for &phrase in phrases {
                    mentions.push(MentionRule {
                        observation: v.observation,
                        kind,
                        phrase,
                        pattern: Pattern::parse(phrase, true),
                    });
                }
            }
            for &phrase in v.ignore {
                ignores.push((v.observation, Pattern::parse(phrase, true)));
            }
        }
        let cues: Vec<CueRule> = CUES
            .iter()
            .map(|&def| CueRule {
                def,
                pattern: Pattern::parse(def.phrase, false),
            })
            .collect();
        Self {
            config,
            mention_index: FirstCharIndex::new(mentions.iter().map(|m| &m.pattern)),
            ignore_index: FirstCharIndex::new(ignores.iter().map(|(_, p)| p)),
            cue_index: FirstCharIndex::new(cues.iter().map(|c| &c.pattern)),
            mentions,
            ignores,
            cues,
        }
    }

    /// The settings.
    pub fn config(&self) -> LabelerConfig {
        self.config
    }

    /// The 14 labels of one report.
    pub fn label(&self, report: &str) -> ReportLabels {
        self.label_detailed(report).labels
    }

    /// The labels of many reports, in order.
    pub fn label_all<S: AsRef<str>>(&self, reports: &[S]) -> Vec<ReportLabels> {
        reports.iter().map(|r| self.label(r.as_ref())).collect()
    }

    /// The 14 labels of one report with the mentions behind them.
    pub fn label_detailed(&self, report: &str) -> LabelledReport {
        let mut mentions = Vec::new();
        for (k, sentence) in sentences(report, self.config.skip_sections)
            .iter()
            .enumerate()
        {
            self.label_sentence(sentence, k, &mut mentions);
        }
        LabelledReport {
            labels: aggregate(&mentions),
            mentions,
        }
    }

    fn find_cues(&self, s: &Sentence) -> Vec<FoundCue> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let best = self
                .cue_index
                .candidates(&s[i])
                .map(|k| &self.cues[k])
                .filter_map(|c| c.pattern.match_at(s, i, &gap_ok).map(|m| (m.end, c.def)))
                .max_by_key(|&(end, _)| end);
            match best {
                Some((end, def)) => {
                    out.push(FoundCue { def, start: i, end });
                    i = end;
                }
                None => i += 1,
            }
        }
        out
    }

    fn find_mentions(&self, s: &Sentence) -> Vec<FoundMention> {
        let mut found = Vec::new();
        for (i, token) in s.iter().enumerate() {
            for rule in self.mention_index.candidates(token) {
                if let Some(m) = self.mentions[rule].pattern.match_at(s, i, &gap_ok) {
                    let clausal = m
                        .gaps
                        .iter()
                        .any(|&(a, b)| s[a..b].iter().any(|t| word_in(t, VERBS)));
                    found.push(FoundMention { rule, m, clausal });
                }
            }
        }
        let mut ignored: Vec<(Observation, usize, usize)> = Vec::new();
        for (i, token) in s.iter().enumerate() {
            for k in self.ignore_index.candidates(token) {
                let (o, p) = &self.ignores[k];
                if let Some(m) = p.match_at(s, i, &gap_ok) {
                    ignored.push((*o, m.start, m.end));
                }
            }
        }
        found.retain(|f| {
            let o = self.mentions[f.rule].observation;
            !ignored
                .iter()
                .any(|&(io, a, b)| io == o && f.m.start < b && a < f.m.end)
        });
        found
    }

    /// End (exclusive) of the forward scope of `cue`.
    fn forward_end(
        s: &Sentence,
        cue: &FoundCue,
        cues: &[FoundCue],
        mentions: &[FoundMention],
    ) -> usize {
        let from = cue.end;
        let comma_ends = cue.def.phrase == "not";
        let mut k = from;
        while k < s.len() {
            let t = &s[k];
            let list_comma = t == &Token::Punct(',') && !comma_ends;
            if is_hard_stop(t) && !list_comma {
                break;
            }
            if cues.iter().any(|c| c.start == k) {
                break;
            }
            let passed_mention = mentions.iter().any(|m| m.m.start >= from && m.m.end <= k);
            if passed_mention {
                let new_phrase = word_in(t, VERBS)
                    || t.word() == Some("with")
                    || (t.word() == Some("the")
                        && !s
                            .get(k.wrapping_sub(1))
                            .is_some_and(|p| word_in(p, PREPOSITIONS)));
                if new_phrase {
                    break;
                }
            }
            k += 1;
        }
        k
    }

    /// Start of a backward scope ending at `end` (exclusive).
    fn backward_start(s: &Sentence, end: usize, cues: &[FoundCue]) -> usize {
        let mut k = end;
        while k > 0 {
            let t = &s[k - 1];
            let in_cue = cues.iter().any(|c| c.start < k && k - 1 < c.end);
            if is_hard_stop(t) || word_in(t, VERBS) || word_in(t, PART_NOUNS) || in_cue {
                break;
            }
            k -= 1;
        }
        k
    }

    fn label_sentence(&self, s: &Sentence, sentence: usize, out: &mut Vec<Mention>) {
        let cues = self.find_cues(s);
        let found = self.find_mentions(s);
        if found.is_empty() {
            return;
        }
        // per mention: (negated by a scope, hedged by a scope, negated inside, hedged inside)
        let mut scoped = vec![[false; 4]; found.len()];
        for cue in &cues {
            let slot = match cue.def.kind {
                CueKind::Negation => 0,
                CueKind::Uncertainty => 1,
                CueKind::Pseudo => continue,
            };
            for (f, flags) in found.iter().zip(scoped.iter_mut()) {
                if f.m.in_gap(cue.start) {
                    flags[slot + 2] = true;
                }
            }
            // the backward scope skips auxiliaries first: "effusion has resolved"
            let skip_aux = matches!(cue.def.direction, Direction::Backward | Direction::Either);
            let mut bend = cue.start;
            while skip_aux && bend > 0 && word_in(&s[bend - 1], AUXILIARIES) {
                bend -= 1;
            }
            let (forward, backward) = match cue.def.direction {
                Direction::Forward => (true, false),
                Direction::Backward => (false, true),
                Direction::Both => (true, true),
                Direction::Either => {
                    let after_mention = found.iter().any(|f| f.m.end == bend);
                    (!after_mention, after_mention)
                }
            };
            if forward {
                let fend = Self::forward_end(s, cue, &cues, &found);
                for (f, flags) in found.iter().zip(scoped.iter_mut()) {
                    if !f.clausal && f.m.start >= cue.end && f.m.start < fend {
                        flags[slot] = true;
                    }
                }
            }
            if backward {
                let bstart = Self::backward_start(s, bend, &cues);
                for (f, flags) in found.iter().zip(scoped.iter_mut()) {
                    if f.m.start >= bstart && f.m.end <= bend {
                        flags[slot] = true;
                    }
                }
            }
        }
        let mut ordered: Vec<(FoundMention, [bool; 4])> = found.into_iter().zip(scoped).collect();
        ordered.sort_by_key(|(f, _)| (f.m.start, f.m.end, f.rule));
        for (f, [neg, unc, neg_in, unc_in]) in ordered {
            let rule = &self.mentions[f.rule];
            let (neg, unc) = (neg || neg_in, unc || unc_in);
            let label = match rule.kind {
                MentionKind::Finding if unc => Some(Label::Uncertain),
                MentionKind::Finding if neg => Some(Label::Negative),
                MentionKind::Finding => Some(Label::Positive),
                // a "normal" statement is its own clause: only cues inside it count
                MentionKind::Normal if unc_in => Some(Label::Uncertain),
                MentionKind::Normal if neg_in => Some(Label::Positive),
                MentionKind::Normal => Some(Label::Negative),
                MentionKind::Hedged if neg => Some(Label::Negative),
                MentionKind::Hedged => Some(Label::Uncertain),
                MentionKind::NegatedOnly if neg && !unc => Some(Label::Negative),
                MentionKind::NegatedOnly => None,
            };
            out.push(Mention {
                observation: rule.observation,
                kind: rule.kind,
                phrase: rule.phrase,
                sentence,
                text: s[f.m.start..f.m.end]
                    .iter()
                    .map(Token::text)
                    .collect::<Vec<_>>()
                    .join(" "),
                label,
            });
        }
    }
}

/// CheXpert's aggregation: per observation the strongest label over its mentions (positive
/// beats uncertain beats negative); No Finding is positive exactly when no observation other
/// than Support Devices is positive or uncertain, and blank otherwise.
pub fn aggregate(mentions: &[Mention]) -> ReportLabels {
    let mut labels = ReportLabels::default();
    for m in mentions {
        let Some(label) = m.label else { continue };
        let slot = &mut labels.0[m.observation.index()];
        if slot.is_none_or(|old| label.precedence() > old.precedence()) {
            *slot = Some(label);
        }
    }
    let finding = Observation::ALL
        .into_iter()
        .filter(|&o| o != Observation::NoFinding && o != Observation::SupportDevices)
        .any(|o| matches!(labels.get(o), Some(Label::Positive | Label::Uncertain)));
    labels.set(
        Observation::NoFinding,
        (!finding).then_some(Label::Positive),
    );
    labels
}
