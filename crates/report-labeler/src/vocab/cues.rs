//! Negation and uncertainty cues and the words that bound their scopes, written for this
//! crate from radiology usage (phrase syntax in [`crate::pattern`], no plurals).
//!
//! At each token the longest cue wins, and its tokens are consumed: "cannot be excluded" is
//! one uncertainty cue, never the negation "not" inside it; "no change" is a pseudo-cue
//! that means nothing but keeps "no" from negating what follows ("no change in the
//! effusion" keeps the effusion).

/// What a cue does to the mentions in its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CueKind {
    Negation,
    Uncertainty,
    /// Looks like a cue but is not one; only consumes its tokens.
    Pseudo,
}

/// Which way a cue's scope runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Over the words after the cue ("no pneumothorax").
    Forward,
    /// Over the words before it ("pneumothorax is absent").
    Backward,
    /// Backward when a mention ends just before it (auxiliaries skipped), else forward:
    /// "the effusion has resolved" / "resolved effusion".
    Either,
    /// Both ways ("atelectasis versus consolidation").
    Both,
}

/// One cue phrase.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CueDef {
    pub phrase: &'static str,
    pub kind: CueKind,
    pub direction: Direction,
}

const fn cue(phrase: &'static str, kind: CueKind, direction: Direction) -> CueDef {
    CueDef {
        phrase,
        kind,
        direction,
    }
}

use CueKind::{Negation as N, Pseudo as P, Uncertainty as U};
use Direction::{Backward as B, Both as X, Either as E, Forward as F};

pub(crate) const CUES: &[CueDef] = &[
    // negation, before the finding
    cue("no", N, F),
    cue("not", N, F),
    cue("without", N, F),
    cue("negative for", N, F),
    cue("free of", N, F),
    cue("clear of", N, F),
    cue("absence of", N, F),
    cue("resolution of", N, F),
    cue("removal of", N, F),
    cue("interval removal of", N, F),
    cue("rather than", N, F),
    cue("nor", N, F),
    cue("neither", N, F),
    cue("never", N, F),
    cue("rules out", N, F),
    cue("excludes", N, F),
    // negation, after the finding (or before it, when nothing precedes)
    cue("resolved", N, E),
    cue("removed", N, E),
    cue("removal", N, E),
    cue("absent", N, E),
    cue("unlikely", N, E),
    cue("excluded", N, E),
    cue("ruled out", N, E),
    cue("not seen", N, B),
    cue("not identified", N, B),
    cue("not visualized", N, B),
    cue("not visualised", N, B),
    cue("not present", N, B),
    cue("not appreciated", N, B),
    cue("not evident", N, B),
    cue("not demonstrated", N, B),
    cue("not detected", N, B),
    cue("not noted", N, B),
    cue("no longer seen", N, B),
    cue("no longer visualized", N, B),
    cue("no longer present", N, B),
    cue("no longer evident", N, B),
    cue("no longer identified", N, B),
    cue("no longer", N, F),
    // uncertainty, before the finding
    cue("may", U, F),
    cue("might", U, F),
    cue("could", U, F),
    cue("possible", U, E),
    cue("possibly", U, F),
    cue("possibility of", U, F),
    cue("probable", U, F),
    cue("probably", U, F),
    cue("likely", U, F),
    cue("most likely", U, F),
    cue("presumed", U, F),
    cue("presumably", U, F),
    cue("questionable", U, F),
    cue("question of", U, F),
    cue("suspicious for", U, F),
    cue("suspicious", U, F),
    cue("suspected", U, E),
    cue("suspect", U, F),
    cue("suggestive of", U, F),
    cue("suggest", U, F),
    cue("suggests", U, F),
    cue("suggesting", U, F),
    cue("concerning for", U, F),
    cue("concern for", U, F),
    cue("worrisome for", U, F),
    cue("cannot exclude", U, F),
    cue("can not exclude", U, F),
    cue("can't exclude", U, F),
    cue("cannot rule out", U, F),
    cue("can not rule out", U, F),
    cue("can't rule out", U, F),
    cue("difficult to exclude", U, E),
    cue("rule out", U, F),
    cue("evaluate for", U, F),
    cue("evaluation for", U, F),
    cue("assess for", U, F),
    cue("differential diagnosis", U, F),
    cue("differential", U, F),
    cue("consider", U, F),
    cue("considered", U, F),
    cue("borderline", U, F),
    cue("equivocal", U, F),
    cue("indeterminate", U, F),
    cue("uncertain", U, F),
    cue("maybe", U, F),
    cue("perhaps", U, F),
    // uncertainty, after the finding (these contain "not": longest match keeps them whole)
    cue("cannot be excluded", U, B),
    cue("can not be excluded", U, B),
    cue("cannot be entirely excluded", U, B),
    cue("cannot be completely excluded", U, B),
    cue("cannot be ruled out", U, B),
    cue("can not be ruled out", U, B),
    cue("could not be excluded", U, B),
    cue("not be excluded", U, B),
    cue("not excluded", U, B),
    cue("not entirely excluded", U, B),
    cue("not completely excluded", U, B),
    cue("not ruled out", U, B),
    cue("not be ruled out", U, B),
    cue("is possible", U, B),
    cue("are possible", U, B),
    cue("is questioned", U, B),
    cue("is not excluded", U, B),
    // uncertainty both ways
    cue("versus", U, X),
    cue("vs", U, X),
    // look like negation, are not
    cue("no change", P, F),
    cue("no interval change", P, F),
    cue("no significant change", P, F),
    cue("no significant interval change", P, F),
    cue("no substantial change", P, F),
    cue("no appreciable change", P, F),
    cue("no definite change", P, F),
    cue("no increase", P, F),
    cue("no significant increase", P, F),
    cue("no decrease", P, F),
    cue("without change", P, F),
    cue("without interval change", P, F),
    cue("without significant change", P, F),
    cue("not changed", P, F),
    cue("not significantly changed", P, F),
    cue("not only", P, F),
    cue("not been changed", P, F),
    cue("partially resolved", P, F),
    cue("incompletely resolved", P, F),
    cue("not completely resolved", P, F),
    cue("not fully resolved", P, F),
    cue("partial resolution of", P, F),
];

/// Words that end every scope and that a phrase gap never crosses: contrast, exception and
/// new-clause words. (`;` `:` `(` `)` and sentence ends do too.)
pub(crate) const HARD_STOPS: &[&str] = &[
    "but",
    "however",
    "although",
    "though",
    "except",
    "excepting",
    "whereas",
    "while",
    "aside",
    "apart",
    "otherwise",
    "which",
    "who",
    "whose",
    "there",
    "because",
    "nevertheless",
    "nonetheless",
    "besides",
];

/// Verbs that close the negated noun phrase: once a scope has passed a mention, one of these
/// ends it, so "no effusion is seen, cardiomegaly is stable" stops after "effusion". A
/// gapped mention whose gap holds one ("heart *is* enlarged") is its own clause.
pub(crate) const VERBS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "has",
    "have",
    "had",
    "remains",
    "remain",
    "persists",
    "persist",
    "appears",
    "appear",
    "seen",
    "noted",
    "identified",
    "present",
    "demonstrated",
    "visualized",
    "evident",
    "shows",
    "show",
    "measures",
    "measure",
    "projects",
    "project",
    "terminates",
    "terminate",
    "extends",
];

/// Prepositions: "the" after one of these belongs to the same noun phrase ("no opacity in
/// the right lung or effusion"); any other "the" (or "with") after a mention starts a new
/// one, which ends the scope ("no effusion and the ET tube is in place").
pub(crate) const PREPOSITIONS: &[&str] = &[
    "in",
    "at",
    "of",
    "within",
    "over",
    "from",
    "on",
    "to",
    "along",
    "about",
    "near",
    "into",
    "across",
    "throughout",
    "overlying",
    "involving",
    "by",
    "for",
    "beneath",
    "below",
    "above",
    "under",
    "behind",
    "through",
];

/// Verb-group words skipped between a mention and a backward cue: "the effusion *has been
/// completely* resolved".
pub(crate) const AUXILIARIES: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "has",
    "have",
    "had",
    "been",
    "be",
    "now",
    "since",
    "again",
    "also",
    "completely",
    "fully",
    "entirely",
    "essentially",
    "interval",
    "subsequently",
];

/// Nouns naming a part of a device or finding: a backward cue after one speaks of that part,
/// not of the whole ("the NG tube tip is not visualized" keeps the tube).
pub(crate) const PART_NOUNS: &[&str] = &["tip", "tips", "end", "position", "course"];
