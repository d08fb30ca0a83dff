"""PyTorch counterpart of `objective.rs`: the same DINOv2 objective step (reference functions
re-implemented as in `tests/gen.py`), float32 on CPU with 2 threads. Prints the median time.

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/dino-loss/benches/objective_torch.py
"""

import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import gen  # noqa: E402

torch.set_num_threads(2)
DIM, B, N_LOCAL, N_PATCH, K = 384, 8, 8, 16, 65536


def main():
    torch.manual_seed(0)
    student = gen.DINOHead(DIM, K, hidden_dim=2048, bottleneck_dim=256)
    teacher = gen.DINOHead(DIM, K, hidden_dim=2048, bottleneck_dim=256)
    for p in teacher.parameters():
        p.requires_grad_(False)
    global_ = torch.randn(2 * B, DIM)
    local = torch.randn(N_LOCAL * B, DIM)
    patches = torch.randn(B * N_PATCH, DIM)
    masks = torch.zeros(2 * B, 2 * N_PATCH, dtype=torch.bool)
    masks[:B, :N_PATCH] = True
    dino_center = torch.zeros(1, K)
    ibot_center = torch.zeros(1, 1, K)
    terms = 2 * 1 + N_LOCAL * 2

    def step():
        nonlocal dino_center, ibot_center
        student.zero_grad(set_to_none=True)
        with torch.no_grad():
            # one head call on everything it scores, as dinov2's shared head does
            t_cls, t_patch = teacher(torch.cat([torch.cat(global_.chunk(2)[::-1]), patches])).split(
                [2 * B, B * N_PATCH])
            t_probs = gen.softmax_center_teacher(t_cls, dino_center, 0.07).view(2, B, K)
            t_pp = gen.softmax_center_teacher(t_patch.unsqueeze(0), ibot_center, 0.07).squeeze(0)
            dino_center = gen.center_update(dino_center, t_cls.mean(0, keepdim=True))
            ibot_center = gen.center_update(ibot_center, t_patch.mean(0, keepdim=True).unsqueeze(0))
        s_global, s_local, s_patch = student(torch.cat([global_, local, patches])).split(
            [2 * B, N_LOCAL * B, B * N_PATCH])
        loss = gen.dino_loss(s_local.chunk(N_LOCAL), list(t_probs)) / terms
        loss = loss + gen.dino_loss([s_global], [t_probs.flatten(0, 1)]) * 2 / terms
        loss = loss + 0.1 * sum(gen.koleo(p) for p in global_.chunk(2))
        loss = loss + gen.ibot_forward_masked(s_patch, t_pp, masks)
        loss.backward()

    for _ in range(6):  # as many warm-up steps as the Rust bench's 20 s warm-up covers
        step()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}: dino objective step median {statistics.median(times) * 1e3:.1f} ms "
          f"(min {min(times) * 1e3:.1f} ms, 10 runs)")


if __name__ == "__main__":
    main()
