//! The Porter stemmer as NLTK's `PorterStemmer()` (default `NLTK_EXTENSIONS` mode), which
//! `rouge-score` applies with `use_stemmer=True` to tokens longer than 3 characters.
//!
//! A rule-for-rule port of NLTK's implementation, its extensions included: the
//! irregular-form pool (`dying` → `die`, `news`, `proceed`, ...), words of ≤ 2 letters kept,
//! `ies`/`ied` on 4-letter words, step 1c's "consonant before y" condition, the `alli`,
//! `bli`, `fulli` and `logi` step-2 rules, and the 2-letter `*o` condition.

const VOWELS: [char; 5] = ['a', 'e', 'i', 'o', 'u'];

/// Consonant flags per letter (a `y` is a consonant unless it follows a consonant).
fn consonant_flags(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if VOWELS.contains(&c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

fn is_consonant(w: &[char], i: usize) -> bool {
    consonant_flags(&w[..=i])[i]
}

/// Number of "vc" sequences in the stem's consonant/vowel pattern.
fn measure(stem: &[char]) -> usize {
    let f = consonant_flags(stem);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(stem: &[char]) -> bool {
    consonant_flags(stem).iter().any(|&c| !c)
}

fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let s: Vec<char> = suffix.chars().collect();
    w.len() >= s.len() && w[w.len() - s.len()..] == s[..]
}

fn strip(w: &[char], suffix: &str) -> Vec<char> {
    w[..w.len() - suffix.chars().count()].to_vec()
}

fn join(stem: &[char], tail: &str) -> Vec<char> {
    let mut out = stem.to_vec();
    out.extend(tail.chars());
    out
}

type Cond<'a> = &'a dyn Fn(&[char]) -> bool;

/// A rule's suffix: a literal, or `*d` (a double consonant; the replacement follows the
/// stripped pair).
enum Suffix<'a> {
    Lit(&'a str),
    DoubleConsonant,
}

/// NLTK's `_apply_rule_list`: the first rule whose suffix matches decides; when its
/// condition fails the word is returned unchanged.
fn apply_rules(w: &[char], rules: &[(Suffix<'_>, &str, Option<Cond<'_>>)]) -> Vec<char> {
    for (suffix, replacement, cond) in rules {
        match suffix {
            Suffix::DoubleConsonant => {
                if ends_double_consonant(w) {
                    let stem = &w[..w.len() - 2];
                    return if cond.is_none_or(|c| c(stem)) {
                        join(stem, replacement)
                    } else {
                        w.to_vec()
                    };
                }
            }
            Suffix::Lit(s) => {
                if ends_with(w, s) {
                    let stem = strip(w, s);
                    return if cond.is_none_or(|c| c(&stem)) {
                        join(&stem, replacement)
                    } else {
                        w.to_vec()
                    };
                }
            }
        }
    }
    w.to_vec()
}

fn positive_measure(stem: &[char]) -> bool {
    measure(stem) > 0
}

fn step1a(w: &[char]) -> Vec<char> {
    if ends_with(w, "ies") && w.len() == 4 {
        return join(&strip(w, "ies"), "ie");
    }
    apply_rules(
        w,
        &[
            (Suffix::Lit("sses"), "ss", None),
            (Suffix::Lit("ies"), "i", None),
            (Suffix::Lit("ss"), "ss", None),
            (Suffix::Lit("s"), "", None),
        ],
    )
}

fn step1b(w: &[char]) -> Vec<char> {
    if ends_with(w, "ied") {
        let tail = if w.len() == 4 { "ie" } else { "i" };
        return join(&strip(w, "ied"), tail);
    }
    if ends_with(w, "eed") {
        let stem = strip(w, "eed");
        return if measure(&stem) > 0 {
            join(&stem, "ee")
        } else {
            w.to_vec()
        };
    }
    let mut intermediate = None;
    for suffix in ["ed", "ing"] {
        if ends_with(w, suffix) {
            let stem = strip(w, suffix);
            if contains_vowel(&stem) {
                intermediate = Some(stem);
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return w.to_vec();
    };
    let last = stem.last().copied().unwrap_or(' ');
    let last_s = last.to_string();
    let not_lsz = move |_: &[char]| !matches!(last, 'l' | 's' | 'z');
    let cvc1 = |s: &[char]| measure(s) == 1 && ends_cvc(s);
    apply_rules(
        &stem,
        &[
            (Suffix::Lit("at"), "ate", None),
            (Suffix::Lit("bl"), "ble", None),
            (Suffix::Lit("iz"), "ize", None),
            (Suffix::DoubleConsonant, &last_s, Some(&not_lsz)),
            (Suffix::Lit(""), "e", Some(&cvc1)),
        ],
    )
}

fn step1c(w: &[char]) -> Vec<char> {
    let cond = |s: &[char]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[(Suffix::Lit("y"), "i", Some(&cond))])
}

fn step2(w: &[char]) -> Vec<char> {
    if ends_with(w, "alli") && positive_measure(&strip(w, "alli")) {
        return step2(&join(&strip(w, "alli"), "al"));
    }
    let pm: Cond<'_> = &positive_measure;
    let full = w.to_vec();
    let logi = move |_: &[char]| positive_measure(&full[..full.len().saturating_sub(3)]);
    let table: [(&str, &str); 22] = [
        ("ational", "ate"),
        ("tional", "tion"),
        ("enci", "ence"),
        ("anci", "ance"),
        ("izer", "ize"),
        ("bli", "ble"),
        ("alli", "al"),
        ("entli", "ent"),
        ("eli", "e"),
        ("ousli", "ous"),
        ("ization", "ize"),
        ("ation", "ate"),
        ("ator", "ate"),
        ("alism", "al"),
        ("iveness", "ive"),
        ("fulness", "ful"),
        ("ousness", "ous"),
        ("aliti", "al"),
        ("iviti", "ive"),
        ("biliti", "ble"),
        ("fulli", "ful"),
        ("logi", "log"),
    ];
    let rules: Vec<(Suffix<'_>, &str, Option<Cond<'_>>)> = table
        .iter()
        .map(|&(s, r)| {
            let c: Cond<'_> = if s == "logi" { &logi } else { pm };
            (Suffix::Lit(s), r, Some(c))
        })
        .collect();
    apply_rules(w, &rules)
}

fn step3(w: &[char]) -> Vec<char> {
    let pm: Cond<'_> = &positive_measure;
    apply_rules(
        w,
        &[
            (Suffix::Lit("icate"), "ic", Some(pm)),
            (Suffix::Lit("ative"), "", Some(pm)),
            (Suffix::Lit("alize"), "al", Some(pm)),
            (Suffix::Lit("iciti"), "ic", Some(pm)),
            (Suffix::Lit("ical"), "ic", Some(pm)),
            (Suffix::Lit("ful"), "", Some(pm)),
            (Suffix::Lit("ness"), "", Some(pm)),
        ],
    )
}

fn step4(w: &[char]) -> Vec<char> {
    let gt1 = |s: &[char]| measure(s) > 1;
    let ion = |s: &[char]| measure(s) > 1 && matches!(s.last(), Some('s' | 't'));
    let suffixes = [
        "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion",
        "ou", "ism", "ate", "iti", "ous", "ive", "ize",
    ];
    let rules: Vec<(Suffix<'_>, &str, Option<Cond<'_>>)> = suffixes
        .iter()
        .map(|&s| {
            let c: Cond<'_> = if s == "ion" { &ion } else { &gt1 };
            (Suffix::Lit(s), "", Some(c))
        })
        .collect();
    apply_rules(w, &rules)
}

fn step5a(w: &[char]) -> Vec<char> {
    if ends_with(w, "e") {
        let stem = strip(w, "e");
        let m = measure(&stem);
        if m > 1 || (m == 1 && !ends_cvc(&stem)) {
            return stem;
        }
    }
    w.to_vec()
}

fn step5b(w: &[char]) -> Vec<char> {
    let full = w.to_vec();
    let cond = move |_: &[char]| measure(&full[..full.len().saturating_sub(1)]) > 1;
    apply_rules(w, &[(Suffix::Lit("ll"), "l", Some(&cond))])
}

fn irregular(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

/// Stems one word as NLTK's `PorterStemmer().stem(word)` (lowercasing it first).
pub fn porter_stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(s) = irregular(&lower) {
        return s.to_owned();
    }
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Vec<char> = lower.chars().collect();
    for step in [step1a, step1b, step1c, step2, step3, step4, step5a, step5b] {
        w = step(&w);
    }
    w.into_iter().collect()
}
