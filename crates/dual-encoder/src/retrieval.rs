//! Image–text retrieval recall@k in both directions.
//!
//! A query is a hit at `k` when any of its relevant items ranks among the `k` highest
//! scores; ties are broken towards the lower index (a stable descending sort).

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Fraction of rows of `scores` (`[Q, N]`) whose top-`k` columns contain a relevant column
/// (`relevant[q]` lists the relevant columns of row `q`).
pub fn recall_at_k(scores: &[Vec<f32>], relevant: &[Vec<usize>], k: usize) -> Result<f64> {
    if k == 0 {
        return Err(Error::arg("k", "k must be at least 1"));
    }
    if scores.is_empty() || scores.len() != relevant.len() {
        return Err(Error::arg(
            "relevant",
            format!(
                "one list of relevant items per query ({} queries, {} lists)",
                scores.len(),
                relevant.len()
            ),
        ));
    }
    let mut hits = 0usize;
    for (q, (row, rel)) in scores.iter().zip(relevant).enumerate() {
        if let Some(&bad) = rel.iter().find(|&&r| r >= row.len()) {
            return Err(Error::arg(
                "relevant",
                format!("query {q} names item {bad} of {}", row.len()),
            ));
        }
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        if order.iter().take(k).any(|i| rel.contains(i)) {
            hits += 1;
        }
    }
    Ok(hits as f64 / scores.len() as f64)
}

/// Recall@k of image→text and text→image retrieval.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalRecall {
    /// `(k, recall)` with images as queries.
    pub image_to_text: Vec<(usize, f64)>,
    /// `(k, recall)` with texts as queries.
    pub text_to_image: Vec<(usize, f64)>,
}

/// Recall@k both ways from a `[N_img, N_txt]` similarity matrix, where `text_image[j]` is
/// the image that text `j` describes (several texts may describe one image; an image with
/// no text is not a query).
pub fn retrieval_recall(
    similarity: &Tensor,
    text_image: &[usize],
    ks: &[usize],
) -> Result<RetrievalRecall> {
    let (n_img, n_txt) = similarity.dims2()?;
    if text_image.len() != n_txt {
        return Err(Error::arg(
            "text_image",
            format!(
                "one image index per text ({n_txt} texts, {} given)",
                text_image.len()
            ),
        ));
    }
    if let Some(&bad) = text_image.iter().find(|&&i| i >= n_img) {
        return Err(Error::arg("text_image", format!("image {bad} of {n_img}")));
    }
    let sim = similarity.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let sim_t = similarity.t()?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut img_rel: Vec<Vec<usize>> = vec![Vec::new(); n_img];
    for (j, &i) in text_image.iter().enumerate() {
        img_rel[i].push(j);
    }
    let (img_rows, img_rel): (Vec<Vec<f32>>, Vec<Vec<usize>>) = sim
        .into_iter()
        .zip(img_rel)
        .filter(|(_, r)| !r.is_empty())
        .unzip();
    let txt_rel: Vec<Vec<usize>> = text_image.iter().map(|&i| vec![i]).collect();
    let i2t = ks
        .iter()
        .map(|&k| Ok((k, recall_at_k(&img_rows, &img_rel, k)?)))
        .collect::<Result<Vec<_>>>()?;
    let t2i = ks
        .iter()
        .map(|&k| Ok((k, recall_at_k(&sim_t, &txt_rel, k)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(RetrievalRecall {
        image_to_text: i2t,
        text_to_image: t2i,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    #[test]
    fn recall_by_hand() {
        let s = vec![
            vec![0.9, 0.1, 0.5],
            vec![0.2, 0.3, 0.8],
            vec![0.4, 0.4, 0.1],
        ];
        let rel = vec![vec![0], vec![1], vec![1]];
        assert_eq!(recall_at_k(&s, &rel, 1).unwrap(), 1.0 / 3.0);
        // row 2 ties 0.4/0.4: the lower index (0) ranks first, so item 1 is second
        assert_eq!(recall_at_k(&s, &rel, 2).unwrap(), 1.0);
        assert!(recall_at_k(&s, &rel, 0).is_err());
        assert!(recall_at_k(&s, &rel[..2], 1).is_err());
        assert!(recall_at_k(&s, &[vec![0], vec![1], vec![3]], 1).is_err());
    }

    #[test]
    fn both_directions_with_two_captions_per_image() {
        // images 0 and 1; texts 0, 1 describe image 0, text 2 describes image 1
        let sim = Tensor::new(&[[0.1f32, 0.9, 0.2], [0.8, 0.3, 0.7]], &Device::Cpu).unwrap();
        let r = retrieval_recall(&sim, &[0, 0, 1], &[1, 2]).unwrap();
        // image 0's best text is 1 (relevant); image 1's best is text 0 (not), then 2
        assert_eq!(r.image_to_text, vec![(1, 0.5), (2, 1.0)]);
        // text 0 → image 1 (miss), text 1 → image 0 (hit), text 2 → image 1 (hit)
        assert_eq!(r.text_to_image, vec![(1, 2.0 / 3.0), (2, 1.0)]);
        assert!(retrieval_recall(&sim, &[0, 0], &[1]).is_err());
        assert!(retrieval_recall(&sim, &[0, 0, 2], &[1]).is_err());
    }
}
