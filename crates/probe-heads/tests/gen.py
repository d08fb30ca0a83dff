"""Writes the scikit-learn parity fixture for the L2 logistic regression probe.

Run by a developer, not by CI:  OMP_NUM_THREADS=2 python crates/probe-heads/tests/gen.py
"""
import json
import pathlib

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

out = pathlib.Path(__file__).parent / "fixtures" / "logreg"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
n, d = 60, 6
x = rng.normal(size=(n, d)) * rng.uniform(0.5, 5.0, size=d) + rng.normal(size=d)
w = rng.normal(size=d)
x = x.astype(np.float32).astype(np.float64)  # Rust reads f32 features
y = (x @ w + rng.normal(size=n) * 2.0 > np.median(x @ w)).astype(int)
cases = []
for c in [0.01, 0.5, 10.0]:
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    m = LogisticRegression(C=c, tol=1e-12, max_iter=100000).fit(xs, y)
    cases.append({
        "c": c,
        "coef": m.coef_[0].tolist(),
        "intercept": float(m.intercept_[0]),
        "proba": m.predict_proba(xs)[:, 1].tolist(),
    })
json.dump({"x": x.tolist(), "y": y.tolist(), "cases": cases},
          open(out / "case.json", "w"))
print("wrote", out / "case.json")
