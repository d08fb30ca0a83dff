//! The KoLeo regulariser (Sablayrolles et al., "Spreading vectors for similarity search").

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// `x / max(‖x‖₂, eps)` over the last dimension (`torch.nn.functional.normalize`).
pub fn l2_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(crate::head::l2_normalize_eps(x, eps)?)
}

/// dinov2's `KoLeoLoss` on `x` (`[n, D]`, `n ≥ 2`): L2-normalise (eps 1e-8), find each row's
/// nearest other row by the largest dot product, and return `−mean log(‖xᵢ − x_nn(i) + 1e-8‖ + 1e-8)`
/// (the `+1e-8` inside the norm is `nn.PairwiseDistance`'s eps). Gradients flow through both
/// ends of each pair; the neighbour search itself is not differentiated.
pub fn koleo_loss(x: &Tensor) -> Result<Tensor> {
    const EPS: f64 = 1e-8;
    if x.rank() != 2 || x.dim(0)? < 2 {
        return Err(Error::bad_input("KoLeo input", "[n ≥ 2, D]", x.dims()));
    }
    let x = match x.dtype() {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let n = x.dim(0)?;
    let xn = l2_normalize(&x, EPS)?;
    let xd = xn.detach();
    let dots = xd.matmul(&xd.t()?)?;
    let eye = Tensor::eye(n, DType::U8, x.device())?;
    let minus_one = Tensor::full(-1f32, (n, n), x.device())?.to_dtype(x.dtype())?;
    let dots = eye.where_cond(&minus_one, &dots)?;
    let nn_idx = dots.argmax(D::Minus1)?;
    let neighbours = xn.index_select(&nn_idx, 0)?;
    let dist = ((xn - neighbours)? + EPS)?.sqr()?.sum(D::Minus1)?.sqrt()?;
    Ok((dist + EPS)?.log()?.mean_all()?.neg()?)
}
