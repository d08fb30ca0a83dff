"""Times scikit-learn's roc_auc_score + average_precision_score on the same 10^6 scores
as benches/ranking.rs (same splitmix64 recipe), for docs/performance.md.

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/metrics/benches/sklearn_ranking.py
"""

import time

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score

M = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x):
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def data(n):
    i = np.arange(n, dtype=np.uint64)
    unit = lambda x: (x >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))
    u1 = unit(splitmix64(np.uint64(2) * i))
    u2 = unit(splitmix64(np.uint64(2) * i + np.uint64(1)))
    label = u2 < 0.3
    return label, 0.7 * u1 + 0.3 * label.astype(np.float64)


def main():
    y, s = data(1_000_000)
    auroc, ap = roc_auc_score(y, s), average_precision_score(y, s)
    print(f"sklearn {sklearn.__version__}: auroc = {auroc:.12f}, auprc = {ap:.12f}")
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        roc_auc_score(y, s)
        average_precision_score(y, s)
        times.append(time.perf_counter() - t0)
    print(f"roc_auc_score + average_precision_score, 1e6 scores: median {np.median(times) * 1e3:.1f} ms "
          f"(min {min(times) * 1e3:.1f} ms, 7 runs)")


if __name__ == "__main__":
    main()
