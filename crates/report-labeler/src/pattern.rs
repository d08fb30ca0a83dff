//! Phrase patterns over sentence tokens.
//!
//! A phrase is written as space-separated elements:
//! - `word`: that word, or (for mention phrases) its plural: `+s`, `+es`, `y → ies`
//!   (`opacity/opacities`), `is → es` (`atelectasis/atelectases`), `ax → aces`
//!   (`pneumothorax/pneumothoraces`);
//! - `stem*`: any word starting with `stem` (`consolidat*`);
//! - `_`: a gap of 0 to [`MAX_GAP`] words (never punctuation or a scope-ending word), so that
//!   `heart _ enlarged` matches "heart is mildly enlarged". The shortest gap wins.
//!
//! Matching is on whole tokens, so word boundaries come for free ("effusion" never matches
//! inside "pericardial-effusion" unless that splits into the word "effusion").

use std::collections::HashMap;

use crate::text::Token;

/// Longest gap `_` may skip, in words.
pub(crate) const MAX_GAP: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Word(String),
    Prefix(String),
    Gap,
}

/// A compiled phrase.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    elems: Vec<Elem>,
    plurals: bool,
}

/// Where a pattern matched: tokens `start..end`; `gaps` are the token ranges the `_`
/// elements skipped (empty ranges left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub start: usize,
    pub end: usize,
    pub gaps: Vec<(usize, usize)>,
}

impl Match {
    /// Whether token `i` lies in one of the gaps.
    pub(crate) fn in_gap(&self, i: usize) -> bool {
        self.gaps.iter().any(|&(a, b)| a <= i && i < b)
    }
}

fn word_matches(pat: &str, tok: &str, plurals: bool) -> bool {
    if tok == pat {
        return true;
    }
    if !plurals {
        return false;
    }
    if let Some(rest) = tok.strip_prefix(pat) {
        if rest == "s" || rest == "es" {
            return true;
        }
    }
    let swap = |from: &str, to: &str| {
        pat.strip_suffix(from)
            .and_then(|stem| tok.strip_prefix(stem))
            .is_some_and(|rest| rest == to)
    };
    swap("y", "ies") || swap("is", "es") || swap("ax", "aces")
}

impl Pattern {
    /// First character of the first word or stem: every match starts with a token that
    /// begins with it (plural forms keep the first character). `None` for a leading gap.
    fn first_char(&self) -> Option<char> {
        match self.elems.first()? {
            Elem::Word(w) | Elem::Prefix(w) => w.chars().next(),
            Elem::Gap => None,
        }
    }

    /// Compiles a phrase (see the module docs). `plurals` allows plural forms of words.
    pub(crate) fn parse(phrase: &str, plurals: bool) -> Self {
        let elems = phrase
            .split_whitespace()
            .map(|w| {
                if w == "_" {
                    Elem::Gap
                } else if let Some(stem) = w.strip_suffix('*') {
                    Elem::Prefix(stem.to_string())
                } else {
                    Elem::Word(w.to_string())
                }
            })
            .collect();
        Self { elems, plurals }
    }

    /// The first match starting exactly at `start`, with the shortest gaps. `gap_ok` says
    /// which word tokens a gap may skip.
    pub(crate) fn match_at(
        &self,
        tokens: &[Token],
        start: usize,
        gap_ok: &dyn Fn(&str) -> bool,
    ) -> Option<Match> {
        let mut gaps = Vec::new();
        let end = self.go(0, tokens, start, gap_ok, &mut gaps)?;
        if end == start {
            return None;
        }
        gaps.retain(|&(a, b)| a < b);
        Some(Match { start, end, gaps })
    }

    fn go(
        &self,
        k: usize,
        tokens: &[Token],
        pos: usize,
        gap_ok: &dyn Fn(&str) -> bool,
        gaps: &mut Vec<(usize, usize)>,
    ) -> Option<usize> {
        let Some(elem) = self.elems.get(k) else {
            return Some(pos);
        };
        match elem {
            Elem::Gap => {
                for g in 0..=MAX_GAP {
                    if g > 0 {
                        let ok = tokens
                            .get(pos + g - 1)
                            .and_then(Token::word)
                            .is_some_and(gap_ok);
                        if !ok {
                            return None;
                        }
                    }
                    gaps.push((pos, pos + g));
                    if let Some(end) = self.go(k + 1, tokens, pos + g, gap_ok, gaps) {
                        return Some(end);
                    }
                    gaps.pop();
                }
                None
            }
            Elem::Word(w) => {
                let tok = tokens.get(pos)?.word()?;
                if word_matches(w, tok, self.plurals) {
                    self.go(k + 1, tokens, pos + 1, gap_ok, gaps)
                } else {
                    None
                }
            }
            Elem::Prefix(stem) => {
                let tok = tokens.get(pos)?.word()?;
                if tok.starts_with(stem.as_str()) {
                    self.go(k + 1, tokens, pos + 1, gap_ok, gaps)
                } else {
                    None
                }
            }
        }
    }
}

/// Patterns bucketed by the first character of their first word, so that a token only
/// tries the patterns that can start at it (an exact filter, not a heuristic).
#[derive(Debug, Default)]
pub(crate) struct FirstCharIndex {
    buckets: HashMap<char, Vec<usize>>,
    /// Patterns that can start anywhere.
    any: Vec<usize>,
}

impl FirstCharIndex {
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Self {
        let mut index = Self::default();
        for (i, p) in patterns.into_iter().enumerate() {
            match p.first_char() {
                Some(c) => index.buckets.entry(c).or_default().push(i),
                None => index.any.push(i),
            }
        }
        index
    }

    /// Indices of the patterns that may match at `token`, ascending within each bucket.
    pub(crate) fn candidates(&self, token: &Token) -> impl Iterator<Item = usize> + '_ {
        let bucket = token
            .word()
            .and_then(|w| w.chars().next())
            .and_then(|c| self.buckets.get(&c))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        bucket.iter().chain(&self.any).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::sentences;

    fn first(p: &str, text: &str) -> Option<Match> {
        let s = sentences(text, false).remove(0);
        let p = Pattern::parse(p, true);
        (0..s.len()).find_map(|i| p.match_at(&s, i, &|w| w != "but"))
    }

    #[test]
    fn plurals_and_stems() {
        assert!(first("opacity", "bilateral opacities").is_some());
        assert!(first("pneumothorax", "bilateral pneumothoraces").is_some());
        assert!(first("atelectasis", "atelectases").is_some());
        assert!(first("effusion", "effusions").is_some());
        assert!(first("consolidat*", "consolidative change").is_some());
        assert!(first("effusion", "effusional").is_none());
        assert!(first("mass", "massive").is_none());
    }

    #[test]
    fn gaps_are_shortest_and_bounded() {
        let m = first("heart _ enlarged", "the heart is mildly enlarged").unwrap();
        assert_eq!((m.start, m.end), (1, 5));
        assert_eq!(m.gaps, vec![(2, 4)]);
        assert!(m.in_gap(3) && !m.in_gap(4));
        assert!(first("heart _ enlarged", "heart a b c d e enlarged").is_none());
        assert!(first("heart _ enlarged", "heart size, enlarged").is_none());
        assert!(first("heart _ enlarged", "heart normal but enlarged").is_none());
    }
}
