//! Paired bootstrap comparisons of multi-label rankings.

use super::multilabel::{multilabel_macro_auroc, MultiLabelView};
use crate::bootstrap::{paired_bootstrap, BootstrapConfig, PairedInterval, Resampling};
use crate::error::{MetricsError, Result};

/// Paired bootstrap of macro AUROC, A − B, where A and B are each the mean over `pairs` of
/// one system's macro AUROC on the same samples.
///
/// With one pair this is the usual paired comparison of two systems. With several (say, five
/// seeds of one training recipe, each against its own initialisation) the difference is the
/// mean of the pairs' differences, and every resample draws the same rows for all of them, so
/// the interval speaks of the recipe rather than of one seed's draw.
///
/// Every view must hold the same truth (same samples, same labels, same missing entries).
pub fn paired_mean_macro_auroc(
    pairs: &[(MultiLabelView<'_>, MultiLabelView<'_>)],
    resampling: Resampling<'_>,
    cfg: &BootstrapConfig,
) -> Result<PairedInterval> {
    let Some((first, _)) = pairs.first() else {
        return Err(MetricsError::InvalidArgument(
            "paired macro AUROC needs at least one pair of systems".into(),
        ));
    };
    for (i, view) in pairs.iter().flat_map(|(a, b)| [a, b]).enumerate() {
        if view.n_labels() != first.n_labels() || view.y_true() != first.y_true() {
            return Err(MetricsError::InvalidArgument(format!(
                "paired macro AUROC: system {} of pair {} is scored against other truth ({} \
                 samples x {} labels) than the first system ({} x {})",
                ["A", "B"][i % 2],
                i / 2,
                view.n_samples(),
                view.n_labels(),
                first.n_samples(),
                first.n_labels()
            )));
        }
    }
    let (a, b): (Vec<MultiLabelView<'_>>, Vec<MultiLabelView<'_>>) = pairs.iter().copied().unzip();
    let mean_of = |views: &[MultiLabelView<'_>], rows: &[usize]| -> Result<f64> {
        let mut sum = 0.0;
        for view in views {
            sum += multilabel_macro_auroc(view, Some(rows)).ok_or(MetricsError::Empty {
                metric: "macro AUROC",
            })?;
        }
        Ok(sum / views.len() as f64)
    };
    paired_bootstrap(
        resampling,
        cfg,
        |rows| mean_of(&a, rows),
        |rows| mean_of(&b, rows),
    )
}
