//! Binary and multi-label classification metrics with scikit-learn's definitions.

pub mod multiclass;
pub mod multilabel;
pub mod paired;
pub mod ranking;
pub(crate) mod sort;
pub mod state;
pub mod threshold;

pub use multilabel::{
    macro_mean, multilabel_best_f1, multilabel_counts, multilabel_counts_at,
    multilabel_macro_auroc, multilabel_ranking, MultiLabelCounts, MultiLabelRanking,
    MultiLabelView,
};
pub use paired::paired_mean_macro_auroc;
pub use ranking::{
    auroc, average_precision, best_f1_threshold, confusion_at_thresholds, precision_recall_curve,
    ranking_scores, roc_curve, BestThreshold, CurvePoint, PrCurve, RankingScores, RocCurve,
};
pub use state::{BinaryCountsState, BinaryRankingState, MultiLabelState};
pub use threshold::BinaryCounts;
