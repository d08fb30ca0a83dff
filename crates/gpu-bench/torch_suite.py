"""PyTorch counterpart of `gpu_suite` (same work, same card, same session):

    python3 crates/gpu-bench/torch_suite.py forward --batch 32 --json out.json
    python3 crates/gpu-bench/torch_suite.py ops --json ops.json

`forward`: transformers' Dinov2Model at RAD-DINO's configuration (ViT-B/14, 518x518, random
weights), inference, f32 and bf16 weights, with the `sdpa` attention (PyTorch's default, flash
or memory-efficient kernels) and `eager` (the materialised-scores path candle also takes).
`ops`: the PyTorch forms of the fused ops (F.layer_norm, F.interpolate, dinov2's teacher
centring and Sinkhorn-Knopp) at the sizes gpu_suite uses. Times are CUDA-event medians.
"""

import argparse
import json

import torch
import torch.nn.functional as F


def bench(fn, warmup=3, repeats=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], times[0]


def forward(args):
    from transformers import Dinov2Config, Dinov2Model

    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        for attn in ("sdpa", "eager"):
            cfg = Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                               mlp_ratio=4, patch_size=14, image_size=518, layerscale_value=1.0,
                               layer_norm_eps=1e-6, attn_implementation=attn)
            model = Dinov2Model(cfg).to("cuda", dtype).eval()
            x = torch.randn(args.batch, 3, 518, 518, device="cuda", dtype=dtype)
            with torch.inference_mode():
                med, mn = bench(lambda: model(pixel_values=x), repeats=args.repeats)
            print(f"torch Dinov2Model {dtype_name:>4} {attn:>5} batch {args.batch}: median {med:.1f} ms "
                  f"({args.batch / med * 1e3:.0f} img/s), min {mn:.1f} ms")
            rows.append({"dtype": dtype_name, "attn": attn, "batch": args.batch, "median_ms": med,
                         "min_ms": mn, "images_per_s": args.batch / med * 1e3})
            del model
            torch.cuda.empty_cache()
        # the stem alone (patch embedding, CLS, position embeddings, final layer norm): the
        # same model with no blocks, to split a forward into stem and blocks
        cfg = Dinov2Config(hidden_size=768, num_hidden_layers=0, num_attention_heads=12,
                           mlp_ratio=4, patch_size=14, image_size=518, layerscale_value=1.0,
                           layer_norm_eps=1e-6)
        model = Dinov2Model(cfg).to("cuda", dtype).eval()
        x = torch.randn(args.batch, 3, 518, 518, device="cuda", dtype=dtype)
        with torch.inference_mode():
            med, mn = bench(lambda: model(pixel_values=x), repeats=args.repeats)
        print(f"torch Dinov2Model {dtype_name:>4}  stem batch {args.batch}: median {med:.2f} ms, min {mn:.2f} ms")
        rows.append({"dtype": dtype_name, "attn": "stem (0 blocks)", "batch": args.batch,
                     "median_ms": med, "min_ms": mn})
        del model
        torch.cuda.empty_cache()
    return {"forward": rows, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}


def sinkhorn_knopp_teacher(teacher_output, teacher_temp, n_iterations=3):
    # dinov2/loss/dino_clstoken_loss.py, single process
    teacher_output = teacher_output.float()
    Q = torch.exp(teacher_output / teacher_temp).t()
    B = Q.shape[1]
    K = Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(n_iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def ops(args):
    rows = []

    def report(name, ms):
        print(f"torch {name:<44} {ms:8.3f} ms")
        rows.append({"op": name, "ms": ms})

    for dtype_name, dtype in (("F32", torch.float32), ("BF16", torch.bfloat16)):
        x = torch.randn(32 * 1370, 768, device="cuda", dtype=dtype, requires_grad=True)
        w = (1 + 0.1 * torch.randn(768, device="cuda", dtype=dtype)).requires_grad_(True)
        b = (0.1 * torch.randn(768, device="cuda", dtype=dtype)).requires_grad_(True)
        r = torch.randn(32 * 1370, 768, device="cuda")

        def ln_fwd_bwd():
            y = F.layer_norm(x, (768,), w, b, 1e-6)
            (y.float() * r).sum().backward()

        report(f"layer_norm fwd+bwd {dtype_name} [43840, 768]", bench(ln_fwd_bwd, repeats=args.repeats)[0])
        with torch.no_grad():
            report(f"layer_norm fwd {dtype_name} [43840, 768]",
                   bench(lambda: F.layer_norm(x, (768,), w, b, 1e-6), repeats=args.repeats)[0])

    img = torch.randn(8, 256, 37, 37, device="cuda", requires_grad=True)
    r = torch.randn(8, 256, 148, 148, device="cuda")

    def rs_fwd_bwd():
        y = F.interpolate(img, size=(148, 148), mode="bilinear", align_corners=False)
        (y * r).sum().backward()

    report("resize fwd+bwd [8,256,37,37]->148", bench(rs_fwd_bwd, repeats=args.repeats)[0])
    with torch.no_grad():
        report("resize fwd [8,256,37,37]->148", bench(
            lambda: F.interpolate(img, size=(148, 148), mode="bilinear", align_corners=False),
            repeats=args.repeats)[0])

    x = torch.randn(1, 512, 148, 148, device="cuda", requires_grad=True)
    w = (0.02 * torch.randn(512, 512, 3, 3, device="cuda")).requires_grad_(True)
    r = torch.randn(1, 512, 148, 148, device="cuda")

    def conv_fwd_bwd():
        (F.conv2d(x, w, padding=1) * r).sum().backward()

    report("conv2d 3x3 fwd+bwd [1,512,148,148]", bench(conv_fwd_bwd, repeats=args.repeats)[0])
    x = torch.randn(1, 768, 37, 37, device="cuda", requires_grad=True)
    w = (0.02 * torch.randn(768, 768, 2, 2, device="cuda")).requires_grad_(True)
    r = torch.randn(1, 768, 74, 74, device="cuda")

    def deconv_fwd_bwd():
        (F.conv_transpose2d(x, w, stride=2) * r).sum().backward()

    report("conv_transpose2d 2x2 s2 fwd+bwd [1,768,37,37]", bench(deconv_fwd_bwd, repeats=args.repeats)[0])

    t = torch.randn(64, 65536, device="cuda")
    center = 0.1 * torch.randn(1, 65536, device="cuda")
    report("center_softmax [64, 65536]",
           bench(lambda: F.softmax((t - center) / 0.07, dim=-1), repeats=args.repeats)[0])
    report("sinkhorn_knopp 3 it [64, 65536]",
           bench(lambda: sinkhorn_knopp_teacher(t, 0.07, 3), repeats=args.repeats)[0])
    return {"ops": rows, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["forward", "ops"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--json")
    args = p.parse_args()
    out = forward(args) if args.cmd == "forward" else ops(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
