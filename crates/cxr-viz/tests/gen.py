"""Writes the scikit-learn reference fixtures of cxr-viz.

Run by a developer (not by CI), from this directory:

    OMP_NUM_THREADS=2 python gen.py     # needs numpy, scikit-learn (written with 1.9.1)

Every case is a small JSON file in `fixtures/` holding the inputs and sklearn's outputs, in
float64 (JSON floats round-trip f64 exactly through Python's repr).

- `pca.json`: `sklearn.decomposition.PCA(svd_solver="full")` on correlated data, 40 x 6:
  mean, components, explained variance (ratio) and the projection of the data.
- `tsne.json`: `sklearn.manifold._t_sne._joint_probabilities` (perplexity calibration by
  binary search, symmetrised) on 25 points in 5-D at two perplexities, and `_kl_divergence`
  (value and gradient) of that P at a fixed 2-D embedding; and 10 steps of sklearn's
  `_gradient_descent` (momentum, gains, learning rate 50, error checked every 5 steps) from a
  fixed start, once with early exaggeration (P x 12, momentum 0.5) and once without (momentum
  0.8). Whole runs are not compared: on 25 points the exact-t-SNE descent is chaotic (a
  1e-12 change of the start moves sklearn's own 300-step result by ~90 units), so only a
  few steps are reproducible to 1e-6.
"""

import json
import os

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.manifold._t_sne import _gradient_descent, _joint_probabilities, _kl_divergence
from sklearn.metrics import pairwise_distances

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def mat(a):
    return [[float(v) for v in row] for row in np.asarray(a)]


def vec(a):
    return [float(v) for v in np.asarray(a).ravel()]


def pca_case(rng):
    n, d = 40, 6
    latent = rng.standard_normal((n, 3)) * np.array([3.0, 1.5, 0.5])
    mix = rng.standard_normal((3, d))
    x = latent @ mix + 0.05 * rng.standard_normal((n, d)) + np.arange(d)
    pca = PCA(n_components=3, svd_solver="full").fit(x)
    return {
        "sklearn": sklearn.__version__,
        "x": mat(x),
        "k": 3,
        "mean": vec(pca.mean_),
        "components": mat(pca.components_),
        "explained_variance": vec(pca.explained_variance_),
        "explained_variance_ratio": vec(pca.explained_variance_ratio_),
        "transformed": mat(pca.transform(x)),
    }


def tsne_case(rng):
    n, d = 25, 5
    centres = rng.standard_normal((3, d)) * 4.0
    x = centres[np.arange(n) % 3] + rng.standard_normal((n, d))
    sq = pairwise_distances(x, metric="euclidean", squared=True)
    out = {"sklearn": sklearn.__version__, "x": mat(x), "sq_distances": mat(sq)}
    for perp in (5.0, 10.0):
        p = _joint_probabilities(sq, perp, 0)
        out[f"p_perplexity_{int(perp)}"] = vec(p)  # condensed upper triangle
    p = _joint_probabilities(sq, 5.0, 0)
    y = rng.standard_normal((n, 2))
    kl, grad = _kl_divergence(y.ravel().copy(), p, 1, n, 2)
    out["y"] = mat(y)
    out["kl"] = float(kl)
    out["grad"] = mat(grad.reshape(n, 2))
    init = 1e-4 * rng.standard_normal((n, 2))
    out["descent_init"] = mat(init)
    for name, exaggeration, momentum in (("early", 12.0, 0.5), ("late", 1.0, 0.8)):
        y, err, it = _gradient_descent(
            _kl_divergence,
            init.ravel().copy(),
            0,
            10,
            n_iter_check=5,
            n_iter_without_progress=300,
            momentum=momentum,
            learning_rate=50.0,
            min_grad_norm=1e-7,
            args=[p * exaggeration, 1, n, 2],
            kwargs=dict(skip_num_points=0),
        )
        out[f"descent_{name}"] = {
            "exaggeration": exaggeration,
            "momentum": momentum,
            "learning_rate": 50.0,
            "steps": 10,
            "check_every": 5,
            "y": mat(y.reshape(n, 2)),
            "error": float(err),
            "last_iter": int(it),
        }
    # a whole default-schedule run, for the sanity bounds of the Rust test (not compared)
    tsne = TSNE(n_components=2, perplexity=5.0, method="exact", init="pca", random_state=0)
    tsne.fit(x)
    out["sklearn_full_run_kl"] = float(tsne.kl_divergence_)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1234)
    for name, case in (("pca", pca_case(rng)), ("tsne", tsne_case(rng))):
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(case, f)
        print("wrote", name)


if __name__ == "__main__":
    main()
