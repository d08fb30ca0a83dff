//! Property tests: labelling never panics, on arbitrary Unicode and on word salads built
//! from the labeler's own vocabulary, and its output is internally consistent.

use proptest::prelude::*;
use report_labeler::{aggregate, Label, Labeler, Observation as O};

const WORDS: &[&str] = &[
    "no",
    "not",
    "without",
    "may",
    "cannot",
    "be",
    "excluded",
    "exclude",
    "versus",
    "vs.",
    "likely",
    "resolved",
    "has",
    "is",
    "are",
    "the",
    "heart",
    "size",
    "normal",
    "enlarged",
    "pneumothorax",
    "effusion",
    "pleural",
    "opacity",
    "consolidation",
    "edema",
    "tube",
    "tip",
    "svc",
    "but",
    "however",
    ",",
    ";",
    ":",
    ".",
    "(",
    ")",
    "?",
    "\n\n",
    "INDICATION:",
    "FINDINGS:",
    "e.g.",
    "2.5",
    "can't",
    "’",
    "-",
    "/",
    "İ",
    "ß",
    "ﬁ",
    "é",
    "\u{0}",
    "\u{200b}",
    "cardiomediastinal",
    "silhouette",
    "top",
    "clear",
    "lungs",
    "evidence",
    "of",
    "or",
    "and",
];

fn check(labeler: &Labeler, text: &str) {
    let r = labeler.label_detailed(text);
    assert_eq!(r.labels, labeler.label(text), "deterministic");
    assert_eq!(
        r.labels,
        aggregate(&r.mentions),
        "labels come from the mentions"
    );
    assert!(matches!(
        r.labels.get(O::NoFinding),
        None | Some(Label::Positive)
    ));
    assert!(r.mentions.iter().all(|m| m.observation != O::NoFinding));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_unicode(text in any::<String>()) {
        check(&Labeler::new(), &text);
    }

    #[test]
    fn vocabulary_salad(words in prop::collection::vec(prop::sample::select(WORDS), 0..60),
                        seps in prop::collection::vec(prop::sample::select(&[" ", "", "\n", "  "][..]), 60)) {
        let text: String = words
            .iter()
            .zip(&seps)
            .flat_map(|(w, s)| [*w, *s])
            .collect();
        check(&Labeler::new(), &text);
    }
}
