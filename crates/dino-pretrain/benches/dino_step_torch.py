"""PyTorch counterpart of `examples/time_dino_step.rs`: times the same DINOv2 training step.

One step, as `DinoTrainer::train_step` runs it (and dinov2's `SSLMetaArch.forward_backward`
single-process):

* teacher (EMA copy, no gradient, no stochastic depth) on the 2·B global crops; its shared
  DINO/iBOT head on the CLS tokens and on the masked patch tokens; Sinkhorn-Knopp targets
  (3 iterations, teacher temperature from the warm-up schedule) or centering;
* student (`transformers.Dinov2Model`, stochastic depth 0.3, layer scale 1e-5) on the global
  crops with the iBOT masks (`bool_masked_pos`) and on the n_local·B local crops; the head on
  global CLS, local CLS and masked patches;
* DINO CE over crop pairs (global A↔B swapped, every local against both globals), iBOT on the
  masked patches, KoLeo (0.1) per global crop on the normed CLS tokens;
* backward, gradient clipping at 3.0 per sub-model (backbone, head), AdamW with dinov2's
  parameter groups (layer-wise lr decay 0.9, patch-embed lr × 0.2, no decay on biases/norms/
  layer scale/tokens/position embeddings; groups fused as dinov2 does), EMA teacher update.

The reference loss functions and the weight-normed `DINOHead` are imported from
`crates/dino-loss/tests/gen.py` (it imports torch and safetensors only). Needs torch and
transformers; safetensors only for `--masks`. The crops are seeded random pixels; iBOT masks
follow dinov2's collate counts (random patches instead of blocks: the cost depends only on the
count) unless `--masks` gives the Rust example's masks (`time_dino_step --save-masks`), which
makes the masked-patch count identical.

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/dino-pretrain/benches/dino_step_torch.py \
        --arch vit_tiny --batch 2 --n-local 2 --prototypes 1024 --global-size 56 \
        --local-size 28 --warmup 1 --steps 2
    # GPU, full size, bf16 autocast:
    python dino_step_torch.py --device cuda --dtype bf16 --arch vit_base --batch 32 --json t.json
"""

import argparse
import importlib.util
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import Dinov2Config, Dinov2Model

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "..", "dino-loss", "tests", "gen.py")


def load_reference():
    try:  # gen.py imports safetensors only to write fixtures; none are written here
        import safetensors.torch  # noqa: F401
    except ImportError:
        import sys
        import types

        stub = types.ModuleType("safetensors.torch")
        stub.save_file = None
        sys.modules.setdefault("safetensors", types.ModuleType("safetensors"))
        sys.modules["safetensors.torch"] = stub
    spec = importlib.util.spec_from_file_location("dino_loss_gen", GEN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = load_reference()

# `crate::backbone_config` / vit-backbone presets: (hidden, layers, heads)
ARCHS = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
}

# dinov2's ssl_default_config.yaml, as `DinoV2Config::dinov2_default` (epochs of 1250 steps)
EPOCH_LEN, EPOCHS = 1250, 100
BASE_LR, MIN_LR = 0.004, 1e-6
WD, WD_END = 0.04, 0.4
MOMENTUM, MOMENTUM_END = 0.992, 1.0
TEACHER_TEMP, WARMUP_TEACHER_TEMP, WARMUP_TEACHER_TEMP_EPOCHS = 0.07, 0.04, 30
STUDENT_TEMP, CENTER_MOMENTUM = 0.1, 0.9
DROP_PATH, LAYERSCALE, CLIP_GRAD = 0.3, 1e-5, 3.0
LAYER_DECAY, PATCH_EMBED_LR_MULT = 0.9, 0.2
MASK_PROBABILITY, MASK_RATIO = 0.5, (0.1, 0.5)
KOLEO_WEIGHT = 0.1


def cosine(base, final, total, it):
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * it / total))


def schedules(it, batch):
    """The step's values; no lr warm-up and no frozen last layer, as `StepBenchOptions`."""
    total = EPOCHS * EPOCH_LEN
    lr = cosine(BASE_LR * math.sqrt(batch / 1024), MIN_LR, total, it)
    tt_iters = WARMUP_TEACHER_TEMP_EPOCHS * EPOCH_LEN
    tt = (WARMUP_TEACHER_TEMP + (TEACHER_TEMP - WARMUP_TEACHER_TEMP) * it / tt_iters
          if it < tt_iters else TEACHER_TEMP)
    return dict(lr=lr, wd=cosine(WD, WD_END, total, it),
                momentum=cosine(MOMENTUM, MOMENTUM_END, total, it),
                teacher_temp=tt, last_layer_lr=lr)


# ---------------------------------------------------------------- parameter groups
def no_decay(name):
    dinov2 = name.endswith(".bias") or "norm" in name or "gamma" in name
    extra = ("layer_scale", "lambda1", "lambda2", "pos_embed", "position_embeddings",
             "cls_token", "mask_token", "register_tokens")
    return dinov2 or any(p in name for p in extra)


def layer_id(name, n_layers):
    if any(p in name for p in ("pos_embed", "patch_embed", "mask_token", "cls_token",
                               "register_tokens", "embeddings.")):
        return 0
    for marker in ("encoder.layer.", "blocks."):
        if marker in name:
            digits = ""
            for ch in name.split(marker, 1)[1]:
                if not ch.isdigit():
                    break
                digits += ch
            if digits:
                return int(digits) + 1
    return n_layers + 1


def group_of(name, n_layers):
    lr = LAYER_DECAY ** (n_layers + 1 - layer_id(name, n_layers)) if n_layers > 0 else 1.0
    if "patch_embed" in name:
        lr *= PATCH_EMBED_LR_MULT
    return (lr, 0.0 if no_decay(name) else 1.0, "last_layer" in name)


def param_groups(backbone, head, n_layers):
    fused = {}
    for module, depth in ((backbone, n_layers), (head, 0)):
        for name, p in module.named_parameters():
            if p.requires_grad:
                fused.setdefault(group_of(name, depth), []).append(p)
    return [dict(params=ps, lr_multiplier=lr, wd_multiplier=wd, is_last_layer=last)
            for (lr, wd, last), ps in fused.items()]


# ---------------------------------------------------------------- model and batch
def backbone(arch, size, drop_path, attn):
    d, layers, heads = ARCHS[arch]
    cfg = Dinov2Config(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                       mlp_ratio=4, image_size=size, patch_size=14, drop_path_rate=drop_path,
                       layerscale_value=LAYERSCALE, layer_norm_eps=1e-6,
                       attn_implementation=attn)
    return Dinov2Model(cfg)


def head(d, args):
    h = ref.DINOHead(d, args.prototypes, nlayers=3, hidden_dim=args.head_hidden_dim,
                     bottleneck_dim=args.head_bottleneck_dim)
    for m in h.modules():  # dinov2's init: zero biases (gen.py randomises them for parity)
        if isinstance(m, torch.nn.Linear) and m.bias is not None:
            torch.nn.init.zeros_(m.bias)
    return h


def synthetic_masks(n_crops, n_tokens, gen):
    """dinov2's collate counts: int(n·p) masked crops, ratios spread over [0.1, 0.5]."""
    n_masked = int(n_crops * MASK_PROBABILITY)
    lo, hi = MASK_RATIO
    probs = [lo + (hi - lo) * i / max(n_masked, 1) for i in range(n_masked + 1)]
    masks = torch.zeros(n_crops, n_tokens, dtype=torch.bool)
    for i in range(n_masked):
        r = probs[i] + (probs[i + 1] - probs[i]) * torch.rand((), generator=gen).item()
        k = int(n_tokens * r)
        masks[i, torch.randperm(n_tokens, generator=gen)[:k]] = True
    masks = masks[torch.randperm(n_crops, generator=gen)]
    if not masks.any():
        masks[0, 0] = True  # iBOT needs a masked patch (tiny grids)
    return masks


def make_batch(args, device):
    gen = torch.Generator().manual_seed(args.seed)
    b = args.batch
    g = (torch.rand(2 * b, 3, args.global_size, args.global_size, generator=gen) * 4 - 2)
    loc = (torch.rand(args.n_local * b, 3, args.local_size, args.local_size, generator=gen)
           * 4 - 2) if args.n_local > 0 else None
    n_tokens = (args.global_size // 14) ** 2
    if args.masks:
        from safetensors.torch import load_file
        masks = load_file(args.masks)["masks"].bool()
        if tuple(masks.shape) != (2 * b, n_tokens):
            raise SystemExit(f"{args.masks}: masks {tuple(masks.shape)}, expected "
                             f"{(2 * b, n_tokens)} for --batch {b} --global-size {args.global_size}")
    else:
        masks = synthetic_masks(2 * b, n_tokens, gen)
    return (g.to(device), None if loc is None else loc.to(device), masks.to(device))


# ---------------------------------------------------------------- the step
class Step:
    def __init__(self, args, device):
        torch.manual_seed(args.seed)
        d, n_layers, _ = ARCHS[args.arch]
        self.args, self.n_layers = args, n_layers
        self.student = backbone(args.arch, args.global_size, DROP_PATH, args.attn).to(device)
        self.student_head = head(d, args).to(device)
        self.teacher = backbone(args.arch, args.global_size, 0.0, args.attn).to(device)
        self.teacher_head = head(d, args).to(device)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        for p in list(self.teacher.parameters()) + list(self.teacher_head.parameters()):
            p.requires_grad_(False)
        self.student.train()
        self.student_head.train()
        self.teacher.eval()
        self.teacher_head.eval()
        self.opt = torch.optim.AdamW(param_groups(self.student, self.student_head, n_layers),
                                     betas=(0.9, 0.999), eps=1e-8)
        self.dino_center = torch.zeros(1, args.prototypes, device=device)
        self.ibot_center = torch.zeros(1, 1, args.prototypes, device=device)
        self.device_type = device.type
        self.it = 0
        self.s_params = list(self.student.parameters()) + list(self.student_head.parameters())
        self.t_params = list(self.teacher.parameters()) + list(self.teacher_head.parameters())

    def autocast(self):
        return torch.autocast(self.device_type, dtype=torch.bfloat16,
                              enabled=self.args.dtype == "bf16")

    def targets(self, t_cls, t_patch, temp, n_masked):
        if self.args.centering == "sinkhorn_knopp":
            cls = ref.sinkhorn_knopp_teacher(t_cls, temp, t_cls.shape[0])
            patch = ref.sinkhorn_knopp_teacher(t_patch, temp, n_masked)
        else:
            cls = ref.softmax_center_teacher(t_cls, self.dino_center, temp)
            patch = ref.softmax_center_teacher(t_patch.unsqueeze(0), self.ibot_center,
                                               temp).squeeze(0)
            self.dino_center = ref.center_update(self.dino_center, t_cls.mean(0, keepdim=True),
                                                 CENTER_MOMENTUM)
            self.ibot_center = ref.center_update(
                self.ibot_center, t_patch.unsqueeze(0).mean(1).sum(0, keepdim=True),
                CENTER_MOMENTUM)
        return cls, patch

    def losses(self, glob, loc, masks, s):
        b = glob.shape[0] // 2
        n_local = 0 if loc is None else loc.shape[0] // b
        n_masked = int(masks.sum())
        with torch.no_grad(), self.autocast():
            t_out = self.teacher(glob).last_hidden_state
            # crop B's targets first: student crop A learns from teacher crop B
            # one head call on the CLS tokens and the masked patches, as dinov2's shared head
            t_rows = [torch.cat(t_out[:, 0].chunk(2)[::-1]), t_out[:, 1:][masks]]
            t_cls, t_patch = self.teacher_head(torch.cat(t_rows)).float().split(
                [r.shape[0] for r in t_rows])
        t_probs, t_patch_probs = self.targets(t_cls, t_patch, s["teacher_temp"], n_masked)
        t_probs = t_probs.view(2, b, -1)
        with self.autocast():
            g = self.student(glob, bool_masked_pos=masks).last_hidden_state
            # dinov2 concatenates every input of the student head and calls it once
            rows = [g[:, 0], g[:, 1:][masks]]
            if loc is not None:
                rows.append(self.student(loc).last_hidden_state[:, 0])
            outs = self.student_head(torch.cat(rows)).float().split([r.shape[0] for r in rows])
            s_global, s_patch = outs[0], outs[1]
            s_local = outs[2] if loc is not None else None
        terms = 2 * (2 - 1) + n_local * 2
        out = {}
        if s_local is not None:
            out["dino_local_crops_loss"] = ref.dino_loss(
                s_local.chunk(n_local), list(t_probs), STUDENT_TEMP) / terms
        out["dino_global_crops_loss"] = ref.dino_loss(
            [s_global], [t_probs.flatten(0, 1)], STUDENT_TEMP) * 2 / terms
        cls_tokens = g[:, 0].float()
        out["koleo_loss"] = KOLEO_WEIGHT * sum(ref.koleo(c) for c in cls_tokens.chunk(2))
        out["ibot_loss"] = ref.ibot_forward_masked(s_patch, t_patch_probs, masks,
                                                   STUDENT_TEMP) * 2 * (1.0 / 2)
        out["total_loss"] = sum(out.values())
        return out

    def __call__(self, glob, loc, masks, mark=lambda phase: None):
        s = schedules(self.it, self.args.batch)
        losses = self.losses(glob, loc, masks, s)
        mark("forward")
        self.opt.zero_grad(set_to_none=True)
        losses["total_loss"].backward()
        mark("backward")
        for m in (self.student, self.student_head):
            torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad],
                                           CLIP_GRAD)
        for grp in self.opt.param_groups:
            grp["lr"] = (s["last_layer_lr"] if grp["is_last_layer"] else s["lr"]) \
                * grp["lr_multiplier"]
            grp["weight_decay"] = s["wd"] * grp["wd_multiplier"]
        self.opt.step()
        with torch.no_grad():
            m = s["momentum"]
            torch._foreach_mul_(self.t_params, m)
            torch._foreach_add_(self.t_params, [p.detach() for p in self.s_params], alpha=1 - m)
        mark("optimizer")
        self.it += 1
        return losses


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vit_base", choices=sorted(ARCHS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-local", type=int, default=8)
    ap.add_argument("--prototypes", type=int, default=65536)
    ap.add_argument("--global-size", type=int, default=224)
    ap.add_argument("--local-size", type=int, default=98)
    ap.add_argument("--head-hidden-dim", type=int, default=2048)
    ap.add_argument("--head-bottleneck-dim", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--phase-steps", type=int, default=0,
                    help="extra steps timed phase by phase (forward, backward, optimizer)")
    ap.add_argument("--centering", default="sinkhorn_knopp",
                    choices=["sinkhorn_knopp", "centering"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: torch.autocast with f32 master weights")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="attn_implementation of Dinov2Model")
    ap.add_argument("--masks", help="safetensors with `masks` [2B, N] (time_dino_step --save-masks)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    for what, size in (("global", args.global_size), ("local", args.local_size)):
        if size <= 0 or size % 14:
            raise SystemExit(f"--{what}-size {size} is not a positive multiple of 14")
    device = torch.device(args.device)
    glob, loc, masks = make_batch(args, device)
    step = Step(args, device)
    n_params = sum(p.numel() for p in step.s_params if p.requires_grad)
    print(f"torch {torch.__version__} DINOv2 step: {args.arch} patch 14, batch {args.batch} "
          f"(2 × {args.global_size} px global + {args.n_local} × {args.local_size} px local), "
          f"K = {args.prototypes}, {args.centering}, device {args.device}, {args.dtype}, "
          f"attn {args.attn}")
    first, last = None, float("nan")

    def run():
        nonlocal first, last
        out = step(glob, loc, masks)
        vals = {k: float(v) for k, v in out.items()}  # .item(): a host sync, as in candle
        if first is None:
            first = vals
        last = vals["total_loss"]
        if not all(math.isfinite(v) for v in vals.values()):
            raise SystemExit(f"non-finite loss at step {step.it - 1}: {vals}")

    for _ in range(args.warmup):
        run()
    sync(device)
    times = []
    for i in range(args.steps):
        t = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - t)
        print(f"step {i:>3}: {times[-1]:>9.4f} s")
    phases = {}
    for _ in range(args.phase_steps):
        t = time.perf_counter()

        def mark(phase):
            nonlocal t
            sync(device)
            phases.setdefault(phase, []).append(time.perf_counter() - t)
            t = time.perf_counter()
        step(glob, loc, masks, mark)
    med = statistics.median(times)
    timing = dict(step_seconds=times, median_s=med, min_s=min(times),
                  images_per_second=args.batch / med, batch_size=args.batch,
                  masked_patches=int(masks.sum()), student_parameters=n_params,
                  first_step_losses=[[k, v] for k, v in first.items()], last_total_loss=last,
                  phase_seconds=[[k, statistics.median(v)] for k, v in phases.items()])
    print(f"student parameters {n_params}, masked patches {timing['masked_patches']}")
    print("first step: " + ", ".join(f"{k} {v:.4f}" for k, v in first.items()))
    print(f"last step total_loss {last:.4f}")
    print("| side | median s/step | min s/step | images/s |")
    print("|---|---|---|---|")
    print(f"| torch ({args.device}, {args.dtype}, {args.attn}) | {med:.4f} | {min(times):.4f} | "
          f"{args.batch / med:.2f} |")
    for phase, ts in phases.items():
        print(f"phase {phase:<9} median {statistics.median(ts):.4f} s")
    if args.json:
        doc = dict(side="torch", torch=torch.__version__, device=args.device, dtype=args.dtype,
                   attn=args.attn, arch=args.arch, batch=args.batch, n_local=args.n_local,
                   prototypes=args.prototypes, head_hidden_dim=args.head_hidden_dim,
                   head_bottleneck_dim=args.head_bottleneck_dim, global_size=args.global_size,
                   local_size=args.local_size, centering=args.centering, warmup=args.warmup,
                   steps=args.steps, masks=args.masks, timing=timing)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
