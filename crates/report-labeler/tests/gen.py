"""Writes tests/fixtures/label_f1.json: scikit-learn's F1 on CheXpert-style label matrices.

Run by a developer (not CI): /work/venv/bin/python crates/report-labeler/tests/gen.py
Labels are 1 / 0 / -1 / blank (null); as in report-generation papers only 1 counts as
positive. Expected values are sklearn.metrics.f1_score per label, macro and micro, over the
14 observations and over the 5 competition ones (zero_division=0, sklearn's default value).
"""
import json
import pathlib

import numpy as np
from sklearn.metrics import f1_score

rng = np.random.default_rng(0)
n, k = 60, 14
five = [2, 5, 6, 8, 10]  # Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion


def draw():
    m = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, k), p=[0.25, 0.3, 0.1, 0.35])
    m[:, 11] = np.where(m[:, 11] == 1.0, np.nan, m[:, 11])  # one observation never positive
    return m


reference = draw()
# generated agrees with the reference 60% of the time
generated = np.where(rng.random((n, k)) < 0.6, reference, draw())
yt = (reference == 1.0).astype(int)
yp = (generated == 1.0).astype(int)


def f1(avg, cols):
    return float(f1_score(yt[:, cols], yp[:, cols], average=avg, zero_division=0))


out = {
    "generated": [[None if np.isnan(v) else int(v) for v in row] for row in generated],
    "reference": [[None if np.isnan(v) else int(v) for v in row] for row in reference],
    "per_observation": [float(v) for v in f1_score(yt, yp, average=None, zero_division=0)],
    "macro_f1_14": f1("macro", list(range(k))),
    "micro_f1_14": f1("micro", list(range(k))),
    "macro_f1_5": f1("macro", five),
    "micro_f1_5": f1("micro", five),
}
path = pathlib.Path(__file__).parent / "fixtures" / "label_f1.json"
path.parent.mkdir(exist_ok=True)
path.write_text(json.dumps(out))
print(path, {k: out[k] for k in ["macro_f1_14", "micro_f1_14", "macro_f1_5", "micro_f1_5"]})
