"""scikit-learn counterpart of benches/viz.rs: PCA(svd_solver="covariance_eigh") fit of a
1024x192 matrix to 3 components, and exact t-SNE (perplexity 30, 1000 steps) of 243x192.

    OMP_NUM_THREADS=2 python benches/viz_sklearn.py
"""

import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE


def data(n, d):
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    return np.sin(0.37 * i + 1.3 * j) + 0.5 * np.cos(0.11 * i * j)


def best(f, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


patches = data(1024, 192)
for solver in ("covariance_eigh", "full"):
    b, m = best(lambda: PCA(3, svd_solver=solver).fit(patches), 20)
    print(f"pca_fit_1024x192_k3 ({solver}): best {b * 1e3:.2f} ms, median {m * 1e3:.2f} ms")
emb = data(243, 192)
b, m = best(
    lambda: TSNE(2, perplexity=30.0, method="exact", init="pca", random_state=0).fit(emb), 3
)
print(f"tsne_exact_243x192_1000it: best {b:.2f} s, median {m:.2f} s")
