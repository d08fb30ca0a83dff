"""Writes the PyTorch reference fixtures for the seg-decoders tests.

Run by a developer, never by CI: `OMP_NUM_THREADS=2 /work/venv/bin/python tests/gen.py`
from `crates/seg-decoders`. Every fixture is a small safetensors file under
`tests/fixtures/<case>/`, holding inputs, weights, outputs and gradients.
"""

import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")


def save(case, name, tensors):
    d = os.path.join(FIX, case)
    os.makedirs(d, exist_ok=True)
    tensors = {k: v.detach().contiguous().to(torch.float32) if v.is_floating_point() else v.detach().contiguous()
               for k, v in tensors.items()}
    save_file(tensors, os.path.join(d, name + ".safetensors"))


def gen_resize():
    cases = {
        "up": ((2, 3, 5, 7), (13, 11)),
        "down": ((1, 2, 13, 11), (5, 4)),
        "mixed": ((1, 2, 6, 9), (11, 4)),
        "one": ((1, 1, 1, 3), (4, 1)),
    }
    g = torch.Generator().manual_seed(0)
    for name, (shape, size) in cases.items():
        for align in (False, True):
            x = torch.randn(shape, generator=g, requires_grad=True)
            y = F.interpolate(x, size=size, mode="bilinear", align_corners=align)
            r = torch.randn(y.shape, generator=g)
            (y * r).sum().backward()
            save("resize", f"{name}_{'ac' if align else 'noac'}", {"x": x, "r": r, "y": y, "grad_x": x.grad})


if __name__ == "__main__":
    torch.manual_seed(0)
    gen_resize()
