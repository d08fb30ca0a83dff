//! Weighted k-nearest-neighbour evaluation of frozen features, as DINO's `eval_knn.py`
//! does it (cosine similarity, the `k` most similar training samples vote with weight
//! `exp(sim / T)`), extended to multi-label findings: a finding's score is the weighted
//! fraction of neighbours that have it. [`auroc`] scores those per finding.

use candle_core::{Tensor, D};

use crate::{Error, Result};

/// Per-query, per-label scores in `[0, 1]`.
///
/// `train` `[N, D]` and `query` `[Q, D]` features (L2-normalised here), `labels` `N` rows of
/// `L` values in `{0, 1}`.
pub fn knn_scores(
    train: &Tensor,
    labels: &[Vec<f32>],
    query: &Tensor,
    k: usize,
    temperature: f64,
) -> Result<Vec<Vec<f64>>> {
    let (n, d) = train.dims2()?;
    let (_, dq) = query.dims2()?;
    if d != dq || labels.len() != n || n == 0 || k == 0 || temperature <= 0.0 {
        return Err(Error::Invalid(format!(
            "kNN: train {:?}, query {:?}, {} label rows, k {k}, T {temperature}",
            train.dims(),
            query.dims(),
            labels.len()
        )));
    }
    let norm = |x: &Tensor| -> Result<Tensor> {
        let x = x.to_dtype(candle_core::DType::F32)?;
        let l = x
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        Ok(x.broadcast_div(&l)?)
    };
    let sims: Vec<Vec<f32>> = norm(query)?.matmul(&norm(train)?.t()?)?.to_vec2()?;
    let n_labels = labels[0].len();
    let k = k.min(n);
    Ok(sims
        .iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let mut score = vec![0f64; n_labels];
            let mut total = 0f64;
            for &j in &order[..k] {
                let w = (f64::from(row[j]) / temperature).exp();
                total += w;
                for (s, &y) in score.iter_mut().zip(&labels[j]) {
                    *s += w * f64::from(y);
                }
            }
            score.iter().map(|s| s / total).collect()
        })
        .collect())
}

/// Area under the ROC curve (Mann–Whitney U with ties counted half); `None` unless both
/// classes are present.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != positive.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // average ranks (1-based) over ties
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &t in &idx[i..=j] {
            ranks[t] = r;
        }
        i = j + 1;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    let u = rank_sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn auroc_matches_hand_counts() {
        // pairs (pos, neg): (0.8>0.1) (0.8>0.4) (0.35<0.4) (0.35>0.1) → 3/4
        let a = auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((a - 0.75).abs() < 1e-12);
        // a tie counts half
        let a = auroc(&[0.5, 0.5], &[false, true]).unwrap();
        assert!((a - 0.5).abs() < 1e-12);
        assert!(auroc(&[0.1, 0.2], &[true, true]).is_none());
    }

    #[test]
    fn knn_weights_neighbours_by_similarity() {
        let dev = Device::Cpu;
        let train = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 0.1]], &dev).unwrap();
        let labels = vec![vec![1f32, 0.], vec![0., 1.], vec![1., 1.]];
        let q = Tensor::new(&[[2f32, 0.]], &dev).unwrap();
        // k = 1: the exact match alone
        let s = knn_scores(&train, &labels, &q, 1, 0.07).unwrap();
        assert_eq!(s[0], vec![1.0, 0.0]);
        // k = 2: sims 1 and cos(1, 0.1); weights exp(sim / T)
        let s = knn_scores(&train, &labels, &q, 2, 0.07).unwrap();
        let c = 1.0 / (1.0f64 + 0.01).sqrt();
        let (w1, w2) = ((1.0f64 / 0.07).exp(), (c / 0.07).exp());
        assert!((s[0][0] - 1.0).abs() < 1e-6);
        assert!((s[0][1] - w2 / (w1 + w2)).abs() < 1e-5, "{:?}", s);
    }
}
