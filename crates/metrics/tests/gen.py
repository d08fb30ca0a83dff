"""Writes the parity fixtures of the metrics crate (run by hand, not by CI).

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/metrics/tests/gen.py

References: scikit-learn (classification), numpy (percentiles), rouge-score (ROUGE-L),
pycocoevalcap (BLEU). Every input is drawn from fixed seeds; fixtures are small JSON files
under tests/fixtures/. JSON has no NaN, so a missing label is written as null.
"""

import json
import os
import re
from fractions import Fraction

import numpy as np
import sklearn
from sklearn import metrics as skm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def f(x):
    """Plain Python floats (full repr precision) or None for NaN."""
    x = float(x)
    return None if np.isnan(x) else x


def fl(xs):
    return [f(x) for x in xs]


def write(name, obj):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "w") as fh:
        json.dump(obj, fh, indent=None, separators=(",", ":"))
        fh.write("\n")


# ---------------------------------------------------------------- classification


def best_f1_reference(y, s):
    """F1-maximising threshold among observed scores, ties to the highest threshold,
    with exact rational F1 (independent of the Rust sweep)."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=float)
    p = int(y.sum())
    best = None
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & y).sum())
        fp = int((pred & ~y).sum())
        denom = tp + fp + p
        val = Fraction(2 * tp, denom) if denom else Fraction(0)
        if best is None or val > best[1]:
            best = (t, val)
    return best[0], float(best[1])


def binary_case(name, y, s):
    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=float)
    case = {"name": name, "y_true": [bool(v) for v in y], "y_score": fl(s)}
    if len(np.unique(y)) == 2:
        case["auroc"] = f(skm.roc_auc_score(y, s))
        case["average_precision"] = f(skm.average_precision_score(y, s))
        for drop in (True, False):
            fpr, tpr, th = skm.roc_curve(y, s, drop_intermediate=drop)
            case["roc_drop" if drop else "roc_full"] = {
                "fpr": fl(fpr), "tpr": fl(tpr),
                "thresholds": ["inf" if np.isinf(t) else f(t) for t in th],
            }
        pr, rc, th = skm.precision_recall_curve(y, s)
        case["pr"] = {"precision": fl(pr), "recall": fl(rc), "thresholds": fl(th)}
    pred = (s >= 0.5).astype(int)
    case["at_0_5"] = {
        "f1": f(skm.f1_score(y, pred, zero_division=0)),
        "precision": f(skm.precision_score(y, pred, zero_division=0)),
        "recall": f(skm.recall_score(y, pred, zero_division=0)),
        "accuracy": f(skm.accuracy_score(y, pred)),
        "balanced_accuracy": f(skm.balanced_accuracy_score(y, pred)) if len(np.unique(y)) == 2 else None,
    }
    t, v = best_f1_reference(y, s)
    case["best_f1"] = {"threshold": f(t), "f1": v,
                       "f1_sklearn": f(skm.f1_score(y, (s >= t).astype(int), zero_division=0))}
    return case


def classification():
    rng = np.random.default_rng(20261125)
    cases = []
    for i in range(4):
        n = int(rng.integers(20, 300))
        y = rng.random(n) < rng.uniform(0.1, 0.6)
        s = rng.normal(size=n) + 0.8 * y
        cases.append(binary_case(f"continuous_{i}", y, s))
    for i, step in enumerate([0.1, 0.25, 1.0]):
        n = 400
        y = rng.random(n) < 0.35
        s = np.round((rng.random(n) * 0.7 + 0.3 * y) / step) * step
        cases.append(binary_case(f"heavy_ties_{i}", y, s))
    cases.append(binary_case("all_tied", [0, 1, 0, 1, 1], [0.3] * 5))
    cases.append(binary_case("perfect", [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]))
    cases.append(binary_case("inverted", [1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]))
    cases.append(binary_case("two_samples", [1, 0], [0.5, 0.5]))
    cases.append(binary_case("signed_zero_extreme", [0, 1, 0, 1, 1, 0],
                             [-0.0, 0.0, -1e308, 1.7e308, -3.5, 1e300]))
    cases.append(binary_case("sklearn_doc", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]))
    # single class: sklearn warns; only the thresholded metrics are written
    cases.append(binary_case("single_class_neg", [0, 0, 0], [0.2, 0.7, 0.1]))
    write("classification_binary.json", {"sklearn": sklearn.__version__, "cases": cases})

    # multi-label with missing labels (None), macro / micro
    n, k = 160, 5
    y = (rng.random((n, k)) < np.array([0.1, 0.3, 0.5, 0.2, 0.4])).astype(float)
    s = rng.normal(size=(n, k)) + 1.0 * y
    s[:, 2] = np.round(s[:, 2])  # heavy ties in one label
    s[:, 4] = 1 / (1 + np.exp(-s[:, 4]))
    missing = rng.random((n, k)) < 0.15
    y_m = np.where(missing, np.nan, y)
    per = []
    for l in range(k):
        m = ~np.isnan(y_m[:, l])
        yl, sl = y_m[m, l].astype(int), s[m, l]
        pl = (sl >= 0.5).astype(int)
        per.append({
            "auroc": f(skm.roc_auc_score(yl, sl)),
            "average_precision": f(skm.average_precision_score(yl, sl)),
            "f1": f(skm.f1_score(yl, pl, zero_division=0)),
            "precision": f(skm.precision_score(yl, pl, zero_division=0)),
            "recall": f(skm.recall_score(yl, pl, zero_division=0)),
            "accuracy": f(skm.accuracy_score(yl, pl)),
        })
    m = ~np.isnan(y_m)
    yf, sf = y_m[m].astype(int), s[m]
    pf = (sf >= 0.5).astype(int)
    # sklearn's own multilabel averaging on the complete-label rows as a cross-check
    full = ~missing.any(axis=1)
    yfull, sfull = y[full].astype(int), s[full]
    write("classification_multilabel.json", {
        "n_labels": k,
        "y_true": [[None if np.isnan(v) else bool(v) for v in row] for row in y_m],
        "y_score": [fl(row) for row in s],
        "per_label": per,
        "macro_auroc": f(np.mean([p["auroc"] for p in per])),
        "macro_average_precision": f(np.mean([p["average_precision"] for p in per])),
        "micro_auroc": f(skm.roc_auc_score(yf, sf)),
        "micro_average_precision": f(skm.average_precision_score(yf, sf)),
        "micro_f1": f(skm.f1_score(yf, pf, zero_division=0)),
        "micro_precision": f(skm.precision_score(yf, pf, zero_division=0)),
        "micro_recall": f(skm.recall_score(yf, pf, zero_division=0)),
        "macro_f1": f(np.mean([p["f1"] for p in per])),
        "complete_rows": [int(i) for i in np.flatnonzero(full)],
        "complete_macro_auroc": f(skm.roc_auc_score(yfull, sfull, average="macro")),
        "complete_micro_auroc": f(skm.roc_auc_score(yfull, sfull, average="micro")),
        "complete_macro_average_precision": f(skm.average_precision_score(yfull, sfull, average="macro")),
        "complete_micro_average_precision": f(skm.average_precision_score(yfull, sfull, average="micro")),
        "complete_macro_f1": f(skm.f1_score(yfull, (sfull >= 0.5).astype(int), average="macro", zero_division=0)),
        "complete_micro_f1": f(skm.f1_score(yfull, (sfull >= 0.5).astype(int), average="micro", zero_division=0)),
    })

    # multi-class
    n, c = 120, 4
    yt = rng.integers(0, 3, size=n)  # class 3 never true
    yp = np.where(rng.random(n) < 0.6, yt, rng.integers(0, 4, size=n))
    p, r, f1, _ = skm.precision_recall_fscore_support(yt, yp, labels=range(c), zero_division=0)
    pm, rm, fm, _ = skm.precision_recall_fscore_support(yt, yp, labels=range(c), average="macro", zero_division=0)
    pu, ru, fu, _ = skm.precision_recall_fscore_support(yt, yp, labels=range(c), average="micro", zero_division=0)
    write("classification_multiclass.json", {
        "n_classes": c, "y_true": yt.tolist(), "y_pred": yp.tolist(),
        "precision": fl(p), "recall": fl(r), "f1": fl(f1),
        "macro_precision": f(pm), "macro_recall": f(rm), "macro_f1": f(fm),
        "micro_f1": f(fu), "accuracy": f(skm.accuracy_score(yt, yp)),
        "balanced_accuracy": f(skm.balanced_accuracy_score(yt, yp)),
    })

    # numpy percentiles for the bootstrap interval arithmetic
    vals = rng.normal(size=37)
    write("percentiles.json", {
        "values": fl(vals),
        "q": [0.0, 0.025, 0.5, 0.975, 1.0],
        "expected": fl(np.percentile(vals, [0.0, 2.5, 50.0, 97.5, 100.0])),
    })


# ---------------------------------------------------------------- segmentation


def segmentation():
    """Dice / IoU with the empty/empty = 1.0 convention, written out in numpy."""
    rng = np.random.default_rng(7)
    n_img, n_cls, h, w = 6, 3, 8, 8
    target = rng.integers(0, n_cls, size=(n_img, h, w))
    pred = np.where(rng.random((n_img, h, w)) < 0.7, target, rng.integers(0, n_cls, size=(n_img, h, w)))
    target[0][target[0] == 2] = 0  # class 2 absent from image 0's target ...
    pred[0][pred[0] == 2] = 1      # ... and from its prediction: empty/empty
    target[1][target[1] == 1] = 0  # class 1 absent from target 1 but predicted
    dice = np.zeros((n_img, n_cls))
    iou = np.zeros((n_img, n_cls))
    inter_t = np.zeros(n_cls)
    a_t = np.zeros(n_cls)
    b_t = np.zeros(n_cls)
    for i in range(n_img):
        for c in range(n_cls):
            a, b = pred[i] == c, target[i] == c
            inter, sa, sb = (a & b).sum(), a.sum(), b.sum()
            union = sa + sb - inter
            dice[i, c] = 1.0 if sa + sb == 0 else 2 * inter / (sa + sb)
            iou[i, c] = 1.0 if union == 0 else inter / union
            inter_t[c] += inter
            a_t[c] += sa
            b_t[c] += sb
    write("segmentation.json", {
        "n_classes": n_cls, "pixels": h * w,
        "predicted": pred.reshape(n_img, -1).tolist(), "target": target.reshape(n_img, -1).tolist(),
        "dice_per_image": [fl(r) for r in dice], "iou_per_image": [fl(r) for r in iou],
        "dice_mean": fl(dice.mean(0)), "iou_mean": fl(iou.mean(0)),
        "dice_global": fl(2 * inter_t / (a_t + b_t)),
        "iou_global": fl(inter_t / (a_t + b_t - inter_t)),
    })


# ---------------------------------------------------------------- text

WORDS = ("the heart size is normal mildly enlarged there no focal consolidation pleural effusion "
         "or pneumothorax lungs are clear bibasilar atelectasis stable cardiomediastinal silhouette "
         "within limits of right left lower lobe opacity may represent pneumonia small moderate "
         "interval change compared to prior exam tube tip 3 cm above carina T-12 x-ray").split()
PUNCT = [".", ",", ";", ":", "-", "(", ")", "!", "?", "'s", "/"]


def bleu_tokens(text):
    # the crate's BLEU tokenisation: lowercase, runs of alphanumerics
    return re.findall(r"[^\W_]+", text.lower())


def sentence(rng, n):
    out = []
    for _ in range(n):
        wd = WORDS[rng.integers(len(WORDS))]
        if rng.random() < 0.15:
            wd = wd.capitalize()
        out.append(wd)
        if rng.random() < 0.12:
            out.append(PUNCT[rng.integers(len(PUNCT))])
    return " ".join(out) + "."


def perturb(rng, text):
    toks = text.split()
    out = []
    for t in toks:
        r = rng.random()
        if r < 0.15:
            continue
        if r < 0.25:
            out.append(WORDS[rng.integers(len(WORDS))])
        out.append(t)
    return " ".join(out)


def text():
    from pycocoevalcap.bleu.bleu import Bleu
    from rouge_score import rouge_scorer

    rng = np.random.default_rng(11)
    pairs = []
    for i in range(40):
        ref = sentence(rng, int(rng.integers(3, 30)))
        refs = [ref] + [perturb(rng, ref) for _ in range(int(rng.integers(0, 3)))]
        hyp = perturb(rng, ref) if rng.random() < 0.8 else sentence(rng, int(rng.integers(1, 12)))
        pairs.append((hyp, refs))
    pairs.append(("", ["no acute cardiopulmonary process."]))          # empty hypothesis
    pairs.append(("Café naïve: 3.5cm — ok", ["café naive 3.5 cm ok"]))  # non-ASCII, decimals
    pairs.append(("heart heart heart heart", ["the heart", "heart is heart"]))  # clipping
    pairs.append(("", ["...", "no acute process"]))                          # empty / empty

    gts = {i: [" ".join(bleu_tokens(r)) for r in refs] for i, (_, refs) in enumerate(pairs)}
    res = {i: [" ".join(bleu_tokens(h))] for i, (h, _) in enumerate(pairs)}
    corpus, per_sentence = Bleu(4).compute_score(gts, res, verbose=0)
    from pycocoevalcap.rouge.rouge import Rouge
    coco_rouge_mean, coco_rouge = Rouge().compute_score(gts, res)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = []
    for h, refs in pairs:
        sc = scorer.score_multi(refs, h)["rougeL"] if len(refs) > 1 else scorer.score(refs[0], h)["rougeL"]
        rouge.append({"precision": f(sc.precision), "recall": f(sc.recall), "fmeasure": f(sc.fmeasure)})
    write("text.json", {
        "pairs": [{"hypothesis": h, "references": refs,
                   "bleu_tokens": bleu_tokens(h), "rouge_tokens": scorer._tokenizer.tokenize(h)}
                  for h, refs in pairs],
        "bleu": fl(corpus),
        "bleu_per_sentence": [fl([per_sentence[k][i] for k in range(4)]) for i in range(len(pairs))],
        "rouge_l": rouge,
        "rouge_l_mean": f(np.mean([r["fmeasure"] for r in rouge])),
        "coco_rouge_l": fl(coco_rouge),
        "coco_rouge_l_mean": f(coco_rouge_mean),
    })


# ---------------------------------------------------------------- CSV table (score example)


def table():
    """A tiny label/score CSV pair with blanks and a one-class label, and sklearn's values."""
    rng = np.random.default_rng(3)
    names = ["Effusion", "Cardiomegaly", "Nodule", "Hernia"]
    n = 24
    y = (rng.random((n, 4)) < [0.4, 0.3, 0.5, 0.0]).astype(float)
    y[rng.random((n, 4)) < 0.2] = np.nan
    y[:, 3] = np.where(np.isnan(y[:, 3]), np.nan, 0.0)  # Hernia: negatives only
    s = np.round(rng.random((n, 4)) * 0.6 + 0.4 * np.nan_to_num(y), 2)
    d = os.path.join(OUT, "table")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "y_true.csv"), "w") as fh:
        fh.write(",".join(names) + "\n")
        for row in y:
            fh.write(",".join("" if np.isnan(v) else str(int(v)) for v in row) + "\n")
    order = [2, 0, 3, 1]  # score columns in another order
    with open(os.path.join(d, "y_score.csv"), "w") as fh:
        fh.write(",".join(names[i] for i in order) + "\n")
        for row in s:
            fh.write(",".join(repr(float(row[i])) for i in order) + "\n")
    exp = {"auroc": {}, "auprc": {}, "f1@0.5": {}}
    for l, name in enumerate(names):
        m = ~np.isnan(y[:, l])
        yl, sl = y[m, l].astype(int), s[m, l]
        two = len(np.unique(yl)) == 2
        exp["auroc"][name] = f(skm.roc_auc_score(yl, sl)) if two else None
        exp["auprc"][name] = f(skm.average_precision_score(yl, sl)) if two else None
        exp["f1@0.5"][name] = f(skm.f1_score(yl, (sl >= 0.5).astype(int), zero_division=0))
    for key in ("auroc", "auprc"):
        exp[key]["macro"] = f(np.mean([v for v in exp[key].values() if v is not None]))
    exp["f1@0.5"]["macro"] = f(np.mean(list(exp["f1@0.5"].values())))
    m = ~np.isnan(y)
    exp["auroc"]["micro"] = f(skm.roc_auc_score(y[m].astype(int), s[m]))
    exp["auprc"]["micro"] = f(skm.average_precision_score(y[m].astype(int), s[m]))
    exp["f1@0.5"]["micro"] = f(skm.f1_score(y[m].astype(int), (s[m] >= 0.5).astype(int), zero_division=0))
    exp["n_samples"] = n
    write(os.path.join("table", "expected.json"), exp)
    with open(os.path.join(d, "groups.csv"), "w") as fh:
        fh.write("patient_id\n")
        for i in range(n):
            fh.write(f"p{i // 2}\n")


# ---------------------------------------------------------------- Porter stemmer (NLTK)

PORTER_WORDS = """caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated
troubled sized hopping tanned falling hissing fizzed failing filing happy sky skies relational
conditional rational valenci hesitanci digitizer conformabli radicalli differentli vileli
analogousli vietnamization predication operator feudalism decisiveness hopefulness callousness
formaliti sensitiviti sensibiliti triplicate formative formalize electriciti electrical hopeful
goodness revival allowance inference airliner gyroscopic adjustable defensible irritant
replacement adjustment dependent adoption homologou communism activate angulariti homologous
effective bowdlerize probate rate cease controll roll dying lying tying news innings inning
outings canning howe proceed exceed succeed generously logically fully cried spied died ties
analogies archaeology phraseology tyranny yelling yyyy syzygy toy boys enjoying played
emphysematous atelectasis atelectatic consolidation consolidations pneumothoraces effusions
opacities opacity enlarged enlargement cardiomegaly unchanged interval intervals mildly
hyperinflated hyperinflation degenerative calcified calcifications bibasilar bilateral
visualized visualised findings compared unremarkable worsening improving improvement
pleural hilar mediastinal silhouette retrocardiac costophrenic blunting""".split()


def porter():
    from nltk.stem import porter as nltk_porter

    st = nltk_porter.PorterStemmer()
    words = set(PORTER_WORDS)
    base = os.path.dirname(sklearn.__file__)
    for root, _, files in sorted(os.walk(base)):
        for fn in sorted(files):
            if fn.endswith(".py"):
                with open(os.path.join(root, fn), errors="ignore") as fh:
                    words.update(re.findall(r"\b[a-z]{3,}\b", fh.read().lower()))
    words = sorted(words)
    rng = np.random.default_rng(5)
    pick = sorted(set(PORTER_WORDS) | set(rng.choice(words, size=min(3000, len(words)), replace=False).tolist()))
    write("porter.json", {"nltk_mode": st.mode, "stems": {w: st.stem(w) for w in pick}})


def rouge_stemmed():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    fx = json.load(open(os.path.join(OUT, "text.json")))
    out = []
    for p in fx["pairs"]:
        refs, h = p["references"], p["hypothesis"]
        sc = scorer.score_multi(refs, h)["rougeL"] if len(refs) > 1 else scorer.score(refs[0], h)["rougeL"]
        out.append({"fmeasure": f(sc.fmeasure), "tokens": scorer._tokenizer.tokenize(h)})
    write("text_stemmed.json", {"rouge_l": out})


# ---------------------------------------------------------------- Hausdorff-95


def hausdorff():
    """MONAI's HD95 definition written with scipy: surface = mask ^ binary_erosion(mask),
    EDT-based directed distances, max of the two directed 95th percentiles."""
    from scipy import ndimage

    rng = np.random.default_rng(9)
    cases = []
    for i in range(6):
        h, w = int(rng.integers(12, 30)), int(rng.integers(12, 30))
        yy, xx = np.mgrid[:h, :w]
        def blob():
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 8)
            return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        a = blob() | (blob() if i % 2 else False)
        b = blob()
        spacing = (1.0, 1.0) if i < 3 else (0.5, 1.25)
        def surf(m):
            return m ^ ndimage.binary_erosion(m)
        sa, sb = surf(a), surf(b)
        if not sa.any() or not sb.any():
            continue
        da = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
        db = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
        hd = max(np.percentile(da, 95), np.percentile(db, 95))
        cases.append({"shape": [h, w], "spacing": list(spacing),
                      "predicted": a.ravel().astype(int).tolist(), "target": b.ravel().astype(int).tolist(),
                      "hd95": f(hd)})
    write("hausdorff.json", {"cases": cases})


if __name__ == "__main__":
    classification()
    segmentation()
    text()
    table()
    porter()
    rouge_stemmed()
    hausdorff()
    print("fixtures written to", OUT)
