"""Writes the scaling crate's parity fixtures (run by a developer, not by CI).

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/scaling/tests/gen.py

- power_law.json: scipy.optimize.curve_fit of metric(n) = a - b*n**(-c) (Levenberg-Marquardt,
  tight tolerances) on fixed noisy data, unweighted and with sigma; popt and pcov.
- kmeans.json: sklearn.cluster.KMeans(init=<explicit centres>, n_init=1, algorithm="lloyd")
  on fixed blobs; centres, labels, inertia, n_iter.
"""
import json
import os

import numpy as np
import scipy
import sklearn
from scipy.optimize import curve_fit
from sklearn.cluster import KMeans

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
os.makedirs(HERE, exist_ok=True)


def law(n, a, b, c):
    return a - b * n ** (-c)


def power_law_cases():
    rng = np.random.default_rng(12)
    cases = []
    # AUROC-like curve over 30k..3.5M images, noisy
    n = np.array([3e4, 1e5, 3e5, 1e6, 3.5e6, 6e4, 6e5])
    y = law(n, 0.92, 2.5, 0.35) + rng.normal(0, 0.004, n.size)
    cases.append(("auroc_like", n, y, None, [0.9, 2.0, 0.3]))
    # Dice-like, small n, weighted
    n = np.array([30.0, 60, 120, 240, 480, 960])
    sigma = np.array([0.02, 0.018, 0.015, 0.012, 0.01, 0.008])
    y = law(n, 0.88, 0.6, 0.55) + rng.normal(0, 1, n.size) * sigma
    cases.append(("dice_weighted", n, y, sigma, [0.85, 0.5, 0.5]))
    # steep exponent, few points
    n = np.array([100.0, 300, 1000, 3000, 10000])
    y = law(n, 0.75, 8.0, 0.9) + rng.normal(0, 0.002, n.size)
    cases.append(("steep", n, y, None, [0.7, 5.0, 1.0]))
    out = []
    for name, n, y, sigma, p0 in cases:
        popt, pcov = curve_fit(
            law, n, y, p0=p0, sigma=sigma, method="lm",
            ftol=1e-15, xtol=1e-15, gtol=1e-15, maxfev=200000,
        )
        out.append({
            "name": name, "n": n.tolist(), "y": y.tolist(),
            "sigma": None if sigma is None else sigma.tolist(),
            "popt": popt.tolist(), "pcov": pcov.tolist(),
        })
    return out


def kmeans_cases():
    rng = np.random.default_rng(3)
    out = []
    for name, k, dim, spread in [("blobs_2d", 3, 2, 0.6), ("overlap_5d", 4, 5, 1.5)]:
        means = rng.normal(0, 3, (k, dim))
        x = np.concatenate([m + spread * rng.normal(0, 1, (25, dim)) for m in means])
        init = x[rng.choice(len(x), k, replace=False)]
        km = KMeans(n_clusters=k, init=init, n_init=1, algorithm="lloyd", tol=1e-4, max_iter=300).fit(x)
        out.append({
            "name": name, "dim": dim, "x": x.ravel().tolist(), "init": init.ravel().tolist(),
            "centers": km.cluster_centers_.ravel().tolist(), "labels": km.labels_.tolist(),
            "inertia": float(km.inertia_), "n_iter": int(km.n_iter_),
        })
    return out


meta = {"scipy": scipy.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__}
with open(os.path.join(HERE, "power_law.json"), "w") as f:
    json.dump({"meta": meta, "cases": power_law_cases()}, f, indent=1)
with open(os.path.join(HERE, "kmeans.json"), "w") as f:
    json.dump({"meta": meta, "cases": kmeans_cases()}, f, indent=1)
print("wrote", HERE)
