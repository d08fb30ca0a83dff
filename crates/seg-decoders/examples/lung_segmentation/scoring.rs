//! Dice at native resolution on the two trustworthy views of the masks (complete masks
//! whole; every mask inside its ROI box), with patient-clustered bootstrap intervals.

use candle_core::Tensor;
use metrics::bootstrap::{bootstrap, group_rows, BootstrapConfig, Interval, Resampling};
use metrics::segmentation::dice;
use seg_decoders::{resize_bilinear, AlignCorners};

use crate::data::{AnyError, Sample};

/// A mean Dice with its interval and how many images/patients it rests on.
pub struct Scored {
    pub interval: Interval,
    pub images: usize,
    pub patients: usize,
}

/// Both views of one method's test predictions.
pub struct Scores {
    pub complete: Scored,
    pub roi: Scored,
}

/// The native-size binary prediction of a score map `[S, S]` (positive = lung): bilinear
/// resize (align_corners = False) to `h × w`, then `> 0`.
pub fn to_native(map: &Tensor, h: usize, w: usize) -> Result<Vec<bool>, AnyError> {
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

fn scored(values: &[f64], patients: &[&str], cfg: &BootstrapConfig) -> Result<Scored, AnyError> {
    let groups = group_rows(patients);
    let interval = bootstrap(Resampling::Groups(&groups), cfg, |rows| {
        Ok(rows.iter().map(|&r| values[r]).sum::<f64>() / rows.len() as f64)
    })?;
    Ok(Scored {
        interval,
        images: values.len(),
        patients: groups.len(),
    })
}

/// Scores native-size predictions of `test` (same order).
pub fn score(
    test: &[&Sample],
    predictions: &[Vec<bool>],
    cfg: &BootstrapConfig,
) -> Result<Scores, AnyError> {
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
