"""How well an encoder's frozen features encode a chest X-ray's global intensity.

Reads the feature cache that `probe_findings` writes (`target/probe-cache/<stem>_<split>.safetensors`,
rows in the order of the cxr-findings manifest's split) and fits a ridge regression (alpha by
leave-one-out CV) from the train split's CLS token or patch mean to each image's mean and
standard deviation of intensity at 112x112 (bicubic, 8-bit gray), scored by R^2 on the test split.
Used in docs/results.md (DINO runs 9 and 10) to test whether colour jitter removes intensity cues.

    python scripts/intensity_decoding.py NAME=STEM [NAME=STEM ...]
e.g.
    python scripts/intensity_decoding.py init=baseline_runs_dino_cpu_112_ls1_e120_init \
        run9=DINOv2_runs_dino_cpu_112_ls1_t04_k1024_nojit_export
Needs numpy, pillow, safetensors, scikit-learn. CXR_SHARED defaults to ../shared.
"""
import csv
import os
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import load_file
from sklearn.linear_model import RidgeCV

SIZE = 112


def intensity_stats(root, rows, split):
    out = []
    for r in rows:
        if r["split"] != split:
            continue
        im = Image.open(f"{root}/images/{r['id']}.png").convert("L")
        px = np.asarray(im.resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float64) / 255
        out.append((px.mean(), px.std()))
    return np.array(out)


def main():
    root = os.path.join(os.environ.get("CXR_SHARED", "../shared"), "data/cxr-findings")
    rows = list(csv.DictReader(open(f"{root}/labels.csv")))
    y = {s: intensity_stats(root, rows, s) for s in ("train", "test")}
    for arg in sys.argv[1:]:
        name, stem = arg.split("=", 1)
        feats = {s: load_file(f"target/probe-cache/{stem}_{s}.safetensors") for s in y}
        cells = []
        for key in ("cls", "patch_mean"):
            x_tr, x_te = feats["train"][key], feats["test"][key]
            if len(x_tr) != len(y["train"]) or len(x_te) != len(y["test"]):
                sys.exit(f"{stem}: {len(x_tr)}/{len(x_te)} feature rows, manifest has "
                         f"{len(y['train'])}/{len(y['test'])}")
            mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
            for j, target in enumerate(("mean", "std")):
                m = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((x_tr - mu) / sd, y["train"][:, j])
                r2 = m.score((x_te - mu) / sd, y["test"][:, j])
                cells.append(f"{key} -> {target} R2 {r2:.3f}")
        print(f"{name}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
