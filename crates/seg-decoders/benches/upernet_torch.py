"""PyTorch counterpart of benches/upernet.rs: UPerNet (BEiT neck + mmsegmentation UPerHead,
written out in tests/gen.py) forward + backward at RAD-DINO size: four 768-d 37x37 maps,
518x518 output, batch 1, 512 channels, one class, eval-mode BatchNorm (batch 1 cannot use
batch statistics in the 1x1 pooling branch), CPU. TRAIN=1 BATCH=2 times a training step
instead (batch statistics, dropout), as `upernet_timing --train --batch 2` does.

Run: OMP_NUM_THREADS=2 /work/venv/bin/python benches/upernet_torch.py
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from gen import UperNet  # noqa: E402


def main():
    torch.manual_seed(0)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    train = os.environ.get("TRAIN", "0") == "1"
    batch = int(os.environ.get("BATCH", "1"))
    model = UperNet(768, 512, 1).train(train)
    maps = [torch.randn(batch, 768, 37, 37, requires_grad=True) for _ in range(4)]
    iters = int(os.environ.get("ITERS", "5"))

    def step():
        model.zero_grad()
        out = model(maps, (518, 518))
        out.mean().backward()

    step()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"torch {torch.__version__}, {threads} threads, batch {batch}, "
          f"{'train' if train else 'eval'} BN: UPerNet fwd+bwd median "
          f"{times[len(times) // 2]:.3f} s, min {times[0]:.3f} s over {iters} runs")


if __name__ == "__main__":
    main()
