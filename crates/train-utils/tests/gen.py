"""Writes the fixtures of the `train-utils` crate (run by hand, not by CI).

- `adamw/`: `torch.optim.AdamW` (foreach=False) over 4 steps on fixed parameters and
  gradients, with dinov2's parameter-group scheme (`lr_multiplier`, `wd_multiplier`,
  `is_last_layer`) applied each step as `dinov2/train/train.py::apply_optim_scheduler` does,
  and `torch.nn.utils.clip_grad_norm_` (max norm 3.0) before each step.
- `schedules.json`: dinov2's `CosineScheduler` (`dinov2/utils/utils.py`), re-implemented here
  with numpy from a reading of the reference (dinov2 is not on PyPI), for the lr, weight-decay,
  momentum, teacher-temperature and last-layer-lr schedules of `build_schedulers`.

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/train-utils/tests/gen.py
"""

import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


class CosineScheduler:
    def __init__(self, base_value, final_value, total_iters, warmup_iters=0, start_warmup_value=0, freeze_iters=0):
        self.final_value = final_value
        self.total_iters = total_iters
        freeze = np.zeros((freeze_iters))
        warmup = np.linspace(start_warmup_value, base_value, warmup_iters)
        iters = np.arange(total_iters - warmup_iters - freeze_iters)
        sched = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
        self.schedule = np.concatenate((freeze, warmup, sched))
        assert len(self.schedule) == self.total_iters

    def __getitem__(self, it):
        return self.final_value if it >= self.total_iters else self.schedule[it]


def schedules():
    epoch_len, epochs = 5, 4
    total = epochs * epoch_len
    lr = CosineScheduler(4e-3, 1e-6, total, warmup_iters=2 * epoch_len, start_warmup_value=0)
    wd = CosineScheduler(0.04, 0.4, total)
    mom = CosineScheduler(0.992, 1.0, total)
    tt = CosineScheduler(0.07, 0.07, 3 * epoch_len, warmup_iters=3 * epoch_len, start_warmup_value=0.04)
    last = CosineScheduler(4e-3, 1e-6, total, warmup_iters=2 * epoch_len, start_warmup_value=0)
    last.schedule[: 1 * epoch_len] = 0
    frz = CosineScheduler(1.0, 0.5, 12, warmup_iters=3, start_warmup_value=0.1, freeze_iters=2)
    n = total + 3
    out = {
        "epoch_len": epoch_len, "epochs": epochs,
        "lr": [float(lr[i]) for i in range(n)],
        "wd": [float(wd[i]) for i in range(n)],
        "momentum": [float(mom[i]) for i in range(n)],
        "teacher_temp": [float(tt[i]) for i in range(n)],
        "last_layer_lr": [float(last[i]) for i in range(n)],
        "freeze_warmup": [float(frz[i]) for i in range(14)],
    }
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump(out, f, indent=1)


def adamw():
    torch.manual_seed(0)
    names = ["backbone.blocks.0.weight", "backbone.blocks.0.bias", "head.last_layer.weight_v", "backbone.norm.weight"]
    shapes = [(4, 3), (4,), (5, 2), (3,)]
    lr_mult = [0.9, 0.9, 1.0, 1.0]
    wd_mult = [1.0, 0.0, 1.0, 0.0]
    last = [False, False, True, False]
    params = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    groups = [
        {"params": [p], "lr_multiplier": lm, "wd_multiplier": wm, "is_last_layer": il}
        for p, lm, wm, il in zip(params, lr_mult, wd_mult, last)
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    tensors = {f"init.{n}": p.detach().clone() for n, p in zip(names, params)}
    lrs = [1e-1, 5e-2, 2e-2, 1e-2]
    wds = [0.04, 0.1, 0.2, 0.4]
    last_lrs = [0.0, 0.0, 2e-2, 1e-2]  # the last layer is frozen for two steps
    for step in range(4):
        for g in opt.param_groups:
            g["weight_decay"] = wds[step] * g["wd_multiplier"]
            g["lr"] = (last_lrs[step] if g["is_last_layer"] else lrs[step]) * g["lr_multiplier"]
        opt.zero_grad(set_to_none=True)
        for i, (n, p) in enumerate(zip(names, params)):
            if step == 2 and i == 3:
                continue  # no gradient this step: AdamW skips the parameter entirely
            g = torch.randn_like(p) * (3.0 if step == 1 else 1.0)
            p.grad = g
            tensors[f"grad{step}.{n}"] = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, 3.0)
        tensors[f"norm{step}"] = norm.detach().reshape(())
        opt.step()
        for n, p in zip(names, params):
            tensors[f"param{step}.{n}"] = p.detach().clone()
    os.makedirs(os.path.join(OUT, "adamw"), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "adamw", "tensors.safetensors"))
    with open(os.path.join(OUT, "adamw", "config.json"), "w") as f:
        json.dump({"names": names, "lr_mult": lr_mult, "wd_mult": wd_mult, "is_last_layer": last,
                   "lr": lrs, "wd": wds, "last_layer_lr": last_lrs}, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    schedules()
    adamw()
    print("fixtures written to", OUT)
