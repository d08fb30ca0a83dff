//! A rule-based CheXpert-style labeler for chest X-ray reports, and the clinical F1 of
//! generated reports against reference reports.
//!
//! [`Labeler::label`] gives each of the 14 CheXpert observations ([`Observation::ALL`]) a
//! label: positive (1), negative (0), uncertain (−1) or absent (blank, `None`). It follows
//! the CheXpert labeler's design (mention extraction, then negation / uncertainty
//! classification, then aggregation), with phrase and cue lists written for this crate
//! rather than copied from CheXpert or NegBio, and token-level scope rules instead of a
//! dependency parse.
//!
//! ```
//! use report_labeler::{Label, Labeler, Observation as O};
//! let labeler = Labeler::new();
//! let l = labeler.label(
//!     "No pneumothorax. Stable cardiomegaly. Right basilar opacity, atelectasis versus \
//!      pneumonia. ET tube tip 4 cm above the carina.",
//! );
//! assert_eq!(l.get(O::Pneumothorax), Some(Label::Negative));
//! assert_eq!(l.get(O::Cardiomegaly), Some(Label::Positive));
//! assert_eq!(l.get(O::LungOpacity), Some(Label::Positive));
//! assert_eq!(l.get(O::Atelectasis), Some(Label::Uncertain));
//! assert_eq!(l.get(O::Pneumonia), Some(Label::Uncertain));
//! assert_eq!(l.get(O::SupportDevices), Some(Label::Positive));
//! assert_eq!(l.get(O::NoFinding), None);
//! assert_eq!(l.get(O::Fracture), None);
//! ```
//!
//! # How a report is labelled
//!
//! 1. **Sections and sentences.** Text is lower-cased and split into sentences at `.` `!`
//!    `?` (not inside `2.5` or after `vs.`, `e.g.`) and at blank lines. Sentences under a
//!    request header (`INDICATION:`, `HISTORY:`, `COMPARISON:`, `TECHNIQUE:`, ...) are
//!    skipped ([`LabelerConfig::skip_sections`]); everything else, with or without headers,
//!    is labelled.
//! 2. **Mentions.** Whole-word phrase matches, with plurals (`opacities`, `pneumothoraces`,
//!    `atelectases`), stems (`consolidat*`) and short gaps (`heart _ enlarged` matches "the
//!    heart is mildly enlarged"). Phrases come in kinds ([`MentionKind`]): findings;
//!    "normal" statements, which are negative ("heart size is normal" → Cardiomegaly 0;
//!    "the cardiomediastinal silhouette is normal" → Cardiomegaly 0 and Enlarged
//!    Cardiomediastinum 0; "lungs are clear" → Lung Opacity 0; "costophrenic angles are
//!    sharp" → Pleural Effusion 0); hedged statements ("top-normal heart size",
//!    "prominent cardiac silhouette" → Cardiomegaly −1); and negated-only phrases ("no acute
//!    osseous abnormality" → Fracture 0). Look-alikes are dropped ("pericardial effusion",
//!    "lytic lesion", "mass effect").
//! 3. **Cues and scopes.** The longest cue wins at each word, so "cannot be excluded" is
//!    uncertainty and never the negation "not"; "no change" / "no interval change" and
//!    "partially resolved" are not negations.
//!    - Forward cues ("no", "not", "without", "negative for", "free of", "no evidence of",
//!      "absence of", "resolution of", "removal of", "rather than"; "may", "possible",
//!      "probable", "likely", "suspicious for", "suggestive of", "concerning for", "cannot
//!      exclude", "rule out", "evaluate for", "borderline", ...) cover the words after
//!      them, through lists joined by "," "or" "and" ("no evidence of pleural effusion or
//!      pneumothorax" negates both), until a sentence end, `;` `:` `(` `)`, a contrast or
//!      new-clause word ("but", "however", "although", "except", "which", "there", ...), the
//!      next cue, or, once a mention has been passed, a verb ("is", "are", "seen",
//!      "noted", ...), "with", or a "the" that opens a new noun phrase (not one after a
//!      preposition). The scope of a bare "not" also ends at a comma.
//!    - Backward cues ("is absent", "has resolved", "are not seen", "no longer visualized",
//!      "has been removed", "cannot be excluded", "cannot be ruled out", "is not excluded",
//!      ...) cover the words before them (auxiliaries such as "has been" skipped) back to a
//!      comma, a verb, a contrast word, another cue, or a part noun ("tip", "end",
//!      "position": "the NG tube tip is not visualized" keeps the tube). "resolved",
//!      "removed", "removal", "absent", "excluded", "unlikely", "suspected", "possible" are
//!      backward right after a mention ("chest tube removal", "infection possible") and
//!      forward otherwise ("resolved pneumothorax", "possible pneumonia").
//!    - "versus" / "vs" hedge both sides ("atelectasis versus consolidation").
//!    - A gapped mention that contains a verb ("the heart *is* enlarged") is its own
//!      clause: cues before it do not reach it, only cues inside it ("the heart is *not*
//!      enlarged" → 0, "the heart *may* be enlarged" → −1) or after it.
//! 4. **Per mention.** A finding is uncertain if an uncertainty cue covers it, else
//!    negative if a negation covers it, else positive (uncertainty beats negation where
//!    both reach one mention). A "normal" statement is negative, positive if negated inside
//!    ("heart size is not normal"), uncertain if hedged inside.
//! 5. **Aggregation** (CheXpert's rules): per observation over all its mentions, positive
//!    beats uncertain beats negative; no mention leaves it blank. No Finding is 1 exactly
//!    when no observation other than Support Devices is positive or uncertain (so an empty
//!    report, or one mentioning only devices and negatives, is No Finding 1), and blank
//!    otherwise — never 0.
//!
//! # Conventions to know
//!
//! - **"likely"** is uncertain, as in CheXpert ("likely atelectasis" → −1); so are
//!   "probable", "suspected", "presumed".
//! - **Lung Opacity** is labelled only from opacity words ("opacity", "opacification",
//!   "infiltrate", "airspace disease", "haziness", "ground glass", "density", "interstitial
//!   markings"). Specific opacities (consolidation, edema, atelectasis, pneumonia, lesion)
//!   are *not* propagated to it, as CheXpert's mention-level output does not; a user who
//!   wants the parent can OR them in.
//! - **Enlarged Cardiomediastinum** comes from mediastinal / cardiomediastinal widening or
//!   enlargement; an "enlarged cardiomediastinal silhouette" is not also Cardiomegaly.
//! - **Cardiomegaly**: "stable cardiomegaly", "the heart is mildly enlarged" → 1; "heart
//!   size is normal", "the heart is not enlarged" → 0; "borderline / top-normal heart size"
//!   → −1.
//! - **Edema** includes vascular congestion, Kerley lines, cephalization and heart failure
//!   ("CHF").
//! - **Support Devices**: tubes, lines, catheters, PICC, ports, pacemakers / ICDs and their
//!   leads, sternal wires, clips, stents, valve prostheses, drains, hardware, and "tip in
//!   the SVC / at the cavoatrial junction / above the carina"; "the ET tube has been
//!   removed" → 0.
//! - **Fracture** includes old and healed fractures; "no acute osseous abnormality" → 0.
//! - **Pleural Effusion**: "blunting of the costophrenic angle" is −1 (effusion or pleural
//!   thickening); "costophrenic angles are sharp" is 0; a pericardial effusion is not one.
//! - **Known misses** (from a held-out hand-labelled set, see `tests/hand_labels.rs`): a
//!   trailing "likely" ("effusion is likely present") is not a hedge; "no consolidation to
//!   suggest pneumonia" gives pneumonia −1 rather than 0; bare "fluid" is no effusion
//!   mention; "lungs otherwise clear" is not read as clear lungs.
//! - Hedging by time ("stable", "unchanged", "improved", "decreased", "resolving") does not
//!   change a label: an improving effusion is still positive; "resolved" negates.
//!
//! # Scoring generated reports
//!
//! [`score`] compares generated with reference reports as report-generation papers do
//! (e.g. RAD-DINO's "CheXbert macro-F1-14"): each observation is binarised positive vs
//! rest (only a 1 counts as positive; 0, −1 and blank are negative), and F1 is computed per
//! observation over reports, macro-averaged over the 14 (and the 5 competition
//! observations) and micro-averaged, with percentile-bootstrap CIs that resample reports.
//! The F1, macro/micro averaging and bootstrap are the `metrics` crate's (scikit-learn's
//! `f1_score` with `zero_division=0`). [`score::LabelF1State`] accumulates batches as a
//! torchmetrics-style metric.
#![deny(missing_docs)]

mod error;
mod labeler;
mod observation;
mod pattern;
pub mod reports;
pub mod score;
mod text;
mod vocab;

pub use error::{LabelerError, Result};
pub use labeler::{aggregate, Labeler, LabelerConfig, LabelledReport, Mention, MentionKind};
pub use observation::{Label, Observation, ReportLabels, N_OBSERVATIONS};
