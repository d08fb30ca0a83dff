//! Dice at native resolution on the two trustworthy views of the masks (complete masks
//! whole; every mask inside its ROI box), with patient-clustered bootstrap intervals.

use candle_core::Tensor;
use metrics::bootstrap::{
    bootstrap, group_rows, paired_bootstrap, BootstrapConfig, Interval, PairedInterval, Resampling,
};
use metrics::segmentation::dice;
use seg_decoders::{resize_bilinear, AlignCorners};

use crate::data::Sample;

/// A mean Dice with its interval and how many images/patients it rests on.
pub struct Scored {
    pub interval: Interval,
    pub patients: usize,
    /// Dice of each image, and its patient, in test order (for paired comparisons).
    pub per_image: Vec<f64>,
    pub patient_of: Vec<String>,
}

impl Scored {
    /// Images the mean rests on.
    pub fn images(&self) -> usize {
        self.per_image.len()
    }
}

/// Mean of `values` over `rows` (one bootstrap resample).
fn mean_over(values: &[f64], rows: &[usize]) -> f64 {
    rows.iter().map(|&r| values[r]).sum::<f64>() / rows.len() as f64
}

/// Both views of one method's test predictions.
pub struct Scores {
    pub complete: Scored,
    pub roi: Scored,
}

/// The native-size binary prediction of a score map `[S, S]` (positive = lung): bilinear
/// resize (align_corners = False) to `h × w`, then `> 0`.
pub fn to_native(map: &Tensor, h: usize, w: usize) -> anyhow::Result<Vec<bool>> {
    let (s1, s2) = map.dims2()?;
    let up = resize_bilinear(&map.reshape((1, 1, s1, s2))?, (h, w), AlignCorners::False)?;
    Ok(up
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| v > 0.0)
        .collect())
}

fn select(p: &[bool], keep: &[bool]) -> Vec<bool> {
    p.iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(&v, _)| v)
        .collect()
}

fn scored(values: &[f64], patients: &[&str], cfg: &BootstrapConfig) -> anyhow::Result<Scored> {
    let groups = group_rows(patients);
    let interval = bootstrap(Resampling::Groups(&groups), cfg, |rows| {
        Ok(mean_over(values, rows))
    })?;
    Ok(Scored {
        interval,
        patients: groups.len(),
        per_image: values.to_vec(),
        patient_of: patients.iter().map(|p| p.to_string()).collect(),
    })
}

/// Paired patient-clustered bootstrap of mean Dice, A − B, over the same test images, for
/// one pair or several (say, seeds of one pretraining recipe, each against its own
/// initialisation): A and B are the means over the pairs, so the difference is the mean
/// paired difference, and each resample of patients scores every pair on the same images.
pub fn paired_mean(
    pairs: &[(&Scored, &Scored)],
    cfg: &BootstrapConfig,
) -> anyhow::Result<PairedInterval> {
    let Some((first, _)) = pairs.first() else {
        anyhow::bail!("paired Dice: no pair to compare");
    };
    if pairs
        .iter()
        .any(|(a, b)| a.patient_of != first.patient_of || b.patient_of != first.patient_of)
    {
        anyhow::bail!("paired Dice: the runs scored different test images");
    }
    let mean_of = |side: &[&Scored], rows: &[usize]| {
        Ok(side
            .iter()
            .map(|s| mean_over(&s.per_image, rows))
            .sum::<f64>()
            / side.len() as f64)
    };
    let (a, b): (Vec<&Scored>, Vec<&Scored>) = pairs.iter().copied().unzip();
    let groups = group_rows(&first.patient_of);
    Ok(paired_bootstrap(
        Resampling::Groups(&groups),
        cfg,
        |rows| mean_of(&a, rows),
        |rows| mean_of(&b, rows),
    )?)
}

/// Scores native-size predictions of `test` (same order).
pub fn score(
    test: &[&Sample],
    predictions: &[Vec<bool>],
    cfg: &BootstrapConfig,
) -> anyhow::Result<Scores> {
    let (mut c_val, mut c_pat, mut r_val, mut r_pat) = (vec![], vec![], vec![], vec![]);
    for (s, p) in test.iter().zip(predictions) {
        if s.complete {
            c_val.push(dice(p, &s.mask)?);
            c_pat.push(s.patient.as_str());
        }
        r_val.push(dice(&select(p, &s.in_roi), &select(&s.mask, &s.in_roi))?);
        r_pat.push(s.patient.as_str());
    }
    Ok(Scores {
        complete: scored(&c_val, &c_pat, cfg)?,
        roi: scored(&r_val, &r_pat, cfg)?,
    })
}

/// `0.823 [0.790, 0.851]`.
pub fn fmt(i: &Interval) -> String {
    let e = i.estimate.map_or("-".into(), |e| format!("{e:.3}"));
    match i.ci {
        Some((lo, hi)) => format!("{e} [{lo:.3}, {hi:.3}]"),
        None => e,
    }
}
