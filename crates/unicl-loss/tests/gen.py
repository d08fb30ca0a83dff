"""PyTorch references for the unicl-loss parity tests (run by hand, not by CI).

Writes tests/fixtures/<case>/tensors.safetensors with the inputs (image and text embeddings,
the log-space logit scale, the SigLIP bias, the labels) and, for each loss, its value and its
gradients w.r.t. the embeddings, the log scale and (SigLIP) the bias, all in float64.

The losses are re-implemented from their reference definitions:
- UniCL: logits `exp(logit_scale) * img @ txt.T` (microsoft/UniCL main.py / model.py) fed to
  timm's SoftTargetCrossEntropy with targets from label equality, each row normalised to sum
  to one (the UniCL paper's 1/|P(i)|), in both directions, averaged.
- CLIP: open_clip ClipLoss, world size 1.
- SigLIP: open_clip SigLipLoss, world size 1, with the ground truth `2*eye - 1` generalised to
  `2*T - 1` for label equality (identical when all labels are unique).

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/unicl-loss/tests/gen.py
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
N, D = 8, 16
REPORT = -1  # label id marking an image-report pair


def soft_target_cross_entropy(x, target):
    # timm.loss.SoftTargetCrossEntropy.forward
    loss = torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1)
    return loss.mean()


def label_equality(ids):
    return (ids[:, None] == ids[None, :]).to(torch.float64)


def unicl_loss(img, txt, ids, logit_scale):
    tau = logit_scale.exp()
    logits = tau * img @ txt.t()
    t = label_equality(ids)
    t_i2t = t / t.sum(dim=1, keepdim=True)
    t_t2i = t.t() / t.t().sum(dim=1, keepdim=True)
    return (soft_target_cross_entropy(logits, t_i2t) + soft_target_cross_entropy(logits.t(), t_t2i)) / 2


def clip_loss(img, txt, logit_scale):
    # open_clip ClipLoss.forward, world_size == 1
    scale = logit_scale.exp()
    logits_per_image = scale * img @ txt.T
    logits_per_text = scale * txt @ img.T
    labels = torch.arange(logits_per_image.shape[0], dtype=torch.long)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def siglip_loss(img, txt, ids, logit_scale, logit_bias):
    # open_clip SigLipLoss._loss with get_ground_truth generalised to label equality
    logits = logit_scale.exp() * img @ txt.T + logit_bias
    labels = 2 * label_equality(ids) - 1
    return -F.logsigmoid(labels * logits).sum() / img.shape[0]


def unique_report_ids(ids):
    """Reports get ids no label uses (the Rust side calls push_report)."""
    out = ids.clone()
    base = int(ids.max().item()) + 1
    for i in range(len(ids)):
        if ids[i] == REPORT:
            out[i] = base + i
    return out


def make_case(name, img, txt, log_scale, bias, ids, extra=None):
    ids_eff = unique_report_ids(ids)
    tensors = {
        "img": img,
        "txt": txt,
        "log_scale": torch.tensor(log_scale, dtype=torch.float64),
        "bias": torch.tensor(bias, dtype=torch.float64),
        "labels": ids,
    }
    if extra:
        tensors.update(extra)

    def run(prefix, fn, with_bias=False):
        i = img.clone().requires_grad_(True)
        t = txt.clone().requires_grad_(True)
        s = torch.tensor(log_scale, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
        loss = fn(i, t, s, b)
        loss.backward()
        tensors[f"{prefix}.value"] = loss.detach()
        tensors[f"{prefix}.grad_img"] = i.grad
        tensors[f"{prefix}.grad_txt"] = t.grad
        tensors[f"{prefix}.grad_log_scale"] = s.grad
        if with_bias:
            tensors[f"{prefix}.grad_bias"] = b.grad

    run("unicl", lambda i, t, s, b: unicl_loss(i, t, ids_eff, s))
    run("clip", lambda i, t, s, b: clip_loss(i, t, s))
    run("siglip", lambda i, t, s, b: siglip_loss(i, t, ids_eff, s, b), with_bias=True)

    out = os.path.join(HERE, "fixtures", name)
    os.makedirs(out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "tensors.safetensors"))
    print(name, {k: float(v) for k, v in tensors.items() if k.endswith(".value")})


def normed(x):
    return F.normalize(x, dim=-1)


def main():
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    # 1. all-unique labels: UniCL must equal CLIP; SigLIP at its paper init (t = 10, b = -10)
    make_case("unique", normed(randn(N, D)), normed(randn(N, D)), math.log(10.0), -10.0,
              torch.arange(N, dtype=torch.int64))

    # 2. repeated labels at UniCL's init (logit_scale = 1); correlated pairs
    img = normed(randn(N, D))
    make_case("repeated", img, normed(img + 0.7 * randn(N, D)), 1.0, -2.0,
              torch.tensor([0, 1, 0, 2, 1, 0, 3, 2], dtype=torch.int64))

    # 3. multi-label sets mixed with reports: combined label = the tuple of flags
    flags = torch.tensor([
        [0, 1, 0, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 1, 0, 0, 1],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ], dtype=torch.int64)
    is_report = torch.tensor([0, 1, 0, 0, 0, 1, 0, 0], dtype=torch.int64)
    combos = {}
    ids = []
    for row, rep in zip(flags.tolist(), is_report.tolist()):
        ids.append(REPORT if rep else combos.setdefault(tuple(row), len(combos)))
    img = normed(randn(N, D))
    make_case("mixed", img, normed(img + randn(N, D)), math.log(1 / 0.07), -5.0,
              torch.tensor(ids, dtype=torch.int64), {"flags": flags, "is_report": is_report})

    # 4. unnormalised inputs: the losses use the embeddings as given
    make_case("unnormalised", 2.0 * randn(N, D), 0.5 * randn(N, D) + 0.3, 0.5, -1.0,
              torch.tensor([3, 3, 1, REPORT, 1, 7, 3, REPORT], dtype=torch.int64))


if __name__ == "__main__":
    main()
