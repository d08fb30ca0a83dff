"""PyTorch counterpart of benches/forward.rs: transformers Dinov2Model at RAD-DINO size
(ViT-B/14, 518x518, random weights), f32, CPU, batch 1 and 4, SDPA and eager attention.

    python forward_pytorch.py [--threads 2] [--repeats 5] [--attn sdpa,eager] [--batches 1,4]

Prints the median seconds per forward for each setting.
"""

import argparse
import statistics
import time

import torch
from transformers import Dinov2Config, Dinov2Model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attn", default="sdpa,eager", help="attention implementations, comma-separated")
    ap.add_argument("--batches", default="1,4", help="batch sizes, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for attn in args.attn.split(","):
        cfg = Dinov2Config(image_size=518, patch_size=14, layer_norm_eps=1e-6, attn_implementation=attn)
        model = Dinov2Model(cfg).eval()
        for batch in [int(b) for b in args.batches.split(",")]:
            x = torch.randn(batch, 3, 518, 518)
            with torch.inference_mode():
                model(pixel_values=x)  # warm-up
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    model(pixel_values=x)
                    times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(f"pytorch {torch.__version__} {attn} batch{batch}: median {med:.3f} s "
                  f"({med / batch:.3f} s/image, min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
