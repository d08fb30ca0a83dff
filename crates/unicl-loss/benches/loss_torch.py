"""PyTorch counterpart of `loss.rs`: forward + backward of UniCL, CLIP and SigLIP at batch
256 x dim 1024, float32 on CPU with 2 threads, the reference functions of `tests/gen.py` and
the same label pattern (even samples: one of 16 labels; odd samples: reports). Prints the
median time per loss.

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/unicl-loss/benches/loss_torch.py
"""

import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import gen  # noqa: E402

torch.set_num_threads(2)
N, D = 256, 1024
REPEATS = 30


def main():
    torch.manual_seed(0)
    img = F.normalize(torch.randn(N, D), dim=-1).requires_grad_(True)
    txt = F.normalize(torch.randn(N, D), dim=-1).requires_grad_(True)
    ids = torch.tensor([(i // 2) % 16 if i % 2 == 0 else 1000 + i for i in range(N)])
    # gen.label_equality builds float64 targets; cast them to the logits' dtype here
    eq = lambda ids: (ids[:, None] == ids[None, :]).to(torch.float32)  # noqa: E731
    gen.label_equality = eq
    cases = {
        "unicl": (1.0, None, lambda i, t, s, b: gen.unicl_loss(i, t, ids, s)),
        "clip": (math.log(1 / 0.07), None, lambda i, t, s, b: gen.clip_loss(i, t, s)),
        "siglip": (math.log(10.0), -10.0, lambda i, t, s, b: gen.siglip_loss(i, t, ids, s, b)),
    }
    for name, (init_s, init_b, fn) in cases.items():
        s = torch.tensor(init_s, requires_grad=True)
        b = torch.tensor(init_b if init_b is not None else 0.0, requires_grad=init_b is not None)

        def step():
            for p in (img, txt, s, b):
                p.grad = None
            fn(img, txt, s, b).backward()

        for _ in range(3):
            step()
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        print(f"{name}_fwd_bwd: median {statistics.median(times) * 1e3:.3f} ms over {REPEATS}")


if __name__ == "__main__":
    main()
