//! The 14 CheXpert observations and the four-valued label of each.

use std::fmt;

/// One of the 14 CheXpert observations, in CheXpert's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Observation {
    /// No Finding (derived, never mentioned directly; see the crate docs).
    NoFinding,
    /// Enlarged Cardiomediastinum.
    EnlargedCardiomediastinum,
    /// Cardiomegaly.
    Cardiomegaly,
    /// Lung Opacity.
    LungOpacity,
    /// Lung Lesion.
    LungLesion,
    /// Edema.
    Edema,
    /// Consolidation.
    Consolidation,
    /// Pneumonia.
    Pneumonia,
    /// Atelectasis.
    Atelectasis,
    /// Pneumothorax.
    Pneumothorax,
    /// Pleural Effusion.
    PleuralEffusion,
    /// Pleural Other.
    PleuralOther,
    /// Fracture.
    Fracture,
    /// Support Devices.
    SupportDevices,
}

/// Number of observations.
pub const N_OBSERVATIONS: usize = 14;

impl Observation {
    /// All observations in CheXpert's column order (the order of every label array here).
    pub const ALL: [Observation; N_OBSERVATIONS] = [
        Self::NoFinding,
        Self::EnlargedCardiomediastinum,
        Self::Cardiomegaly,
        Self::LungOpacity,
        Self::LungLesion,
        Self::Edema,
        Self::Consolidation,
        Self::Pneumonia,
        Self::Atelectasis,
        Self::Pneumothorax,
        Self::PleuralEffusion,
        Self::PleuralOther,
        Self::Fracture,
        Self::SupportDevices,
    ];

    /// The five observations of the CheXpert competition tasks, often reported as
    /// "F1-5" in report-generation papers.
    pub const FIVE: [Observation; 5] = [
        Self::Cardiomegaly,
        Self::Edema,
        Self::Consolidation,
        Self::Atelectasis,
        Self::PleuralEffusion,
    ];

    /// Position in [`Observation::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// CheXpert's column name, e.g. `"Pleural Effusion"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoFinding => "No Finding",
            Self::EnlargedCardiomediastinum => "Enlarged Cardiomediastinum",
            Self::Cardiomegaly => "Cardiomegaly",
            Self::LungOpacity => "Lung Opacity",
            Self::LungLesion => "Lung Lesion",
            Self::Edema => "Edema",
            Self::Consolidation => "Consolidation",
            Self::Pneumonia => "Pneumonia",
            Self::Atelectasis => "Atelectasis",
            Self::Pneumothorax => "Pneumothorax",
            Self::PleuralEffusion => "Pleural Effusion",
            Self::PleuralOther => "Pleural Other",
            Self::Fracture => "Fracture",
            Self::SupportDevices => "Support Devices",
        }
    }

    /// The observation with this column name (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The label of one observation that is mentioned in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// Stated present (CheXpert `1`).
    Positive,
    /// Stated absent (CheXpert `0`).
    Negative,
    /// Hedged (CheXpert `-1`).
    Uncertain,
}

impl Label {
    /// CheXpert's number: 1, 0 or -1.
    pub fn value(self) -> i8 {
        match self {
            Self::Positive => 1,
            Self::Negative => 0,
            Self::Uncertain => -1,
        }
    }

    /// The label of a CheXpert number.
    pub fn from_value(v: i8) -> Option<Self> {
        match v {
            1 => Some(Self::Positive),
            0 => Some(Self::Negative),
            -1 => Some(Self::Uncertain),
            _ => None,
        }
    }

    /// Rank for aggregation over mentions: positive beats uncertain beats negative.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Self::Positive => 2,
            Self::Uncertain => 1,
            Self::Negative => 0,
        }
    }
}

/// The labels of one report: one entry per observation of [`Observation::ALL`], `None` when
/// the observation is not mentioned (CheXpert's blank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReportLabels(pub [Option<Label>; N_OBSERVATIONS]);

impl ReportLabels {
    /// The label of one observation.
    pub fn get(&self, o: Observation) -> Option<Label> {
        self.0[o.index()]
    }

    /// Sets the label of one observation.
    pub fn set(&mut self, o: Observation, label: Option<Label>) {
        self.0[o.index()] = label;
    }

    /// Whether the observation is labelled positive (the "positive vs rest" binarisation of
    /// the report-generation F1: uncertain, negative and blank all count as not positive).
    pub fn is_positive(&self, o: Observation) -> bool {
        self.get(o) == Some(Label::Positive)
    }

    /// The labels as CheXpert numbers in column order, `None` for blank.
    pub fn values(&self) -> [Option<i8>; N_OBSERVATIONS] {
        self.0.map(|l| l.map(Label::value))
    }

    /// The label as it appears in a CheXpert CSV cell: `"1"`, `"0"`, `"-1"` or `""`.
    pub fn cell(&self, o: Observation) -> &'static str {
        match self.get(o) {
            Some(Label::Positive) => "1",
            Some(Label::Negative) => "0",
            Some(Label::Uncertain) => "-1",
            None => "",
        }
    }
}
