"""PyTorch counterpart of benches/davit_forward.rs: the MI2 image tower (DaViT, 480x480,
random weights) from tests/davit_reference.py, f32, CPU, batch 4, encode_image (forward,
pool, norm, projection, L2 norm).

    python davit_forward_pytorch.py [--threads 2] [--repeats 3] [--batch 4] [--warmup 1]

Prints the median seconds per forward.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from davit_reference import MI2, ImageTower  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ImageTower(MI2).eval()
    x = torch.randn(args.batch, 3, 480, 480)
    with torch.inference_mode():
        for _ in range(args.warmup):
            model.encode_image(x)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.encode_image(x)
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"pytorch {torch.__version__} davit mi2 batch{args.batch}: median {med:.2f} s "
          f"({med / args.batch:.2f} s/image, min {min(times):.2f}, max {max(times):.2f}, "
          f"{len(times)} runs)")


if __name__ == "__main__":
    main()
