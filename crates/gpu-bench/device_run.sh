#!/usr/bin/env bash
# The GPU session in one script, run from the repository root on the GPU machine (no Rust
# there): the gpu_suite binary built here with `--features cuda` travels xz-compressed in
# .gpu/ (git-ignored), PyTorch is the machine's own. Results land in $OUT (default out/gpu).
#
#   bash crates/gpu-bench/device_run.sh [parity|ops|profile|forward|step|bench|pretrain|unicl|train|all]
#   (bench = parity ops profile forward step; train = parity ops pretrain unicl step;
#    attention = parity profile forward step pretrain; final = parity profile forward
#    trainprof step stepprof; `pool` times our forward with CUDA's default memory-pool release threshold for
#    comparison and `stepprof` lists the kernels of a DINOv2 step when nsys is installed;
#    verify = parity and our two steps, without PyTorch)
#
# `pretrain` runs a DINOv2 ViT-Tiny pretraining (one run per teacher centering in
# $PRETRAIN_CENTERINGS, student layer-scale init $PRETRAIN_LAYERSCALE) on .gpu/findings-160 (the cxr-findings train
# split at 160 px) for about $PRETRAIN_SECONDS (default 180) and packs the exported teacher
# backbone, steps.csv and the loss curve into $OUT/pretrain.tar. At the end every JSON result
# is merged into $OUT/results.json (the tool returns at most 8 files).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
what=${1:-all}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"

# cuBLAS, cuRAND and NVRTC 13 from the machine's PyTorch wheels (or a system toolkit)
libdirs=$(python3 - <<'PY'
import glob, os
seen = []
for pat in ["libcublas.so.13", "libcurand.so.10", "libnvrtc.so.13", "libcudart.so.13"]:
    for root in ["/opt", "/usr/local", "/usr/lib"]:
        hits = glob.glob(f"{root}/**/{pat}", recursive=True)
        if hits:
            d = os.path.dirname(hits[0])
            if d not in seen:
                seen.append(d)
            break
print(":".join(seen))
PY
)
# .gpu/lib: fontconfig/freetype for the plots of pretrain_dino, used only where the system lacks them
export LD_LIBRARY_PATH="$libdirs:${LD_LIBRARY_PATH:-}:$PWD/.gpu/lib"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# the plots of the training loops need a sans-serif font; the GPU image has no fontconfig setup
if ! fc-match sans-serif >/dev/null 2>&1 && [ -f .gpu/fonts/fonts.conf ]; then
  sed "s|FONTDIR|$PWD/.gpu/fonts|" .gpu/fonts/fonts.conf > /tmp/fonts.conf
  export FONTCONFIG_FILE=/tmp/fonts.conf
fi

BIN=/tmp/gpu_suite
if [ ! -x "$BIN" ]; then
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open('.gpu/gpu_suite.xz'), open('$BIN','wb'))" && chmod +x "$BIN"
fi
run() { echo "== $*"; local t0=$(date +%s); "$@"; echo "   (exit $?, $(( $(date +%s) - t0 )) s)"; }
S="--arch vit_base --batch 32 --n-local 8 --prototypes 65536 --global-size 224 --local-size 98 --warmup 3 --steps 10"

case $what in parity|bench|all|train|attention|final|verify) run timeout 90 "$BIN" parity --json "$OUT/parity.json" ;; esac
case $what in ops|bench|all|train)
  run timeout 120 "$BIN" ops --json "$OUT/ops.json"
  run timeout 120 python3 crates/gpu-bench/torch_suite.py ops --json "$OUT/torch_ops.json" ;;
esac
case $what in pool)
  run timeout 90 "$BIN" forward --batch 32 --cuda-default-pool --json "$OUT/forward_default_pool.json" ;;
esac
case $what in profile|bench|all|attention|final)
  run timeout 90 "$BIN" profile --batch 32 --json "$OUT/profile.json" ;;
esac
case $what in forward|bench|all|attention|final)
  # every bf16 attention kernel on the fused path (the first is the default)
  run timeout 150 "$BIN" forward --batch 32 --bf16-attention ${BF16_ATTENTION:-mma128,mma,wmma} --json "$OUT/forward.json"
  run timeout 150 python3 crates/gpu-bench/torch_suite.py forward --batch 32 --json "$OUT/torch_forward.json" ;;
esac
case $what in trainprof|final|verify)
  run timeout 120 "$BIN" train-profile --batch 32 --json "$OUT/train_profile.json" ;;
esac
case $what in verify)
  # our steps only (a quick check of a change; compare with PyTorch from a full run)
  run timeout 180 "$BIN" step $S --json "$OUT/step.json"
  run timeout 120 "$BIN" step $S --precision bf16 --json "$OUT/step_bf16.json" ;;
esac
case $what in step|bench|all|train|attention|final)
  run timeout 180 "$BIN" step $S --save-masks "$OUT/masks.safetensors" --json "$OUT/step.json"
  run timeout 120 "$BIN" step $S --precision bf16 --json "$OUT/step_bf16.json"
  run timeout 120 python3 crates/dino-pretrain/benches/dino_step_torch.py --device cuda --dtype f32 --attn sdpa $S \
      --masks "$OUT/masks.safetensors" --json "$OUT/torch_step_f32.json"
  run timeout 120 python3 crates/dino-pretrain/benches/dino_step_torch.py --device cuda --dtype bf16 --attn sdpa $S \
      --masks "$OUT/masks.safetensors" --json "$OUT/torch_step_bf16.json" ;;
esac
case $what in stepprof|final)
  if command -v nsys >/dev/null 2>&1; then
    run timeout 150 nsys profile -o /tmp/step --force-overwrite true "$BIN" step ${S/--steps 10/--steps 3} --precision bf16
    nsys stats --report cuda_gpu_kern_sum --format csv /tmp/step.nsys-rep > "$OUT/step_kernels_bf16.csv" 2>/dev/null
    head -c 4000 "$OUT/step_kernels_bf16.csv"
  else
    echo "no nsys on this machine: no kernel list of the step"
  fi ;;
esac
case $what in pretrain|all|train|runs|attention)
  P=/tmp/pretrain_dino
  [ -x $P ] || { python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.gpu/pretrain_dino.xz'), open('$P','wb'))" && chmod +x $P; }
  cfg=crates/dino-pretrain/configs/vit_tiny_cxr_gpu.toml
  secs=${PRETRAIN_SECONDS:-180}
  run timeout 120 $P --device cuda --data "$PWD/.gpu/findings-160" --config $cfg --out /tmp/measure --measure 6 | tee /tmp/measure.txt
  st=$(grep "^step 5:" /tmp/measure.txt | sed 's/.*total \([0-9.]*\) s.*/\1/')
  epochs=$(python3 -c "print(max(5, min(100, int($secs / (float('${st:-1}') * 10)))))")
  echo "step time ${st}s -> $epochs epochs of 10 steps"
  # one run per teacher centering in $PRETRAIN_CENTERINGS (dinov2's names); the first one's
  # export initialises the UniCL stage
  first=""
  for c in ${PRETRAIN_CENTERINGS:-sinkhorn_knopp}; do
    sed -e "s/^epochs = 100/epochs = $epochs/" -e "s/^centering = .*/centering = \"$c\"/" \
        -e "s/^layerscale = .*/layerscale = ${PRETRAIN_LAYERSCALE:-1.0e-5}/" $cfg > /tmp/cfg-$c.toml
    run timeout $((secs + 90)) $P --device cuda --data "$PWD/.gpu/findings-160" --config /tmp/cfg-$c.toml \
        --out /tmp/run-$c --checkpoint-every 100000 --export /tmp/run-$c/export
    tail -3 /tmp/run-$c/steps.csv
    tar -C /tmp/run-$c -cf "$OUT/pretrain-$c.tar" export steps.csv loss_curve.png config.resolved.toml
    [ -n "$first" ] || { first=$c; ln -sfn /tmp/run-$c /tmp/run; }
  done ;;
esac
case $what in unicl|train|all|runs)
  U=/tmp/pretrain_unicl
  [ -x $U ] || { python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.gpu/pretrain_unicl.xz'), open('$U','wb'))" && chmod +x $U; }
  # from the DINO-pretrained tiny ViT of the `pretrain` stage when there is one
  init=""
  [ -f /tmp/run/export/config.json ] && init="--init-image /tmp/run/export"
  for obj in unicl clip; do
    run timeout ${UNICL_TIMEOUT:-150} $U train --device cuda --data "$PWD/.gpu/findings-160" --out /tmp/u-$obj \
        --objective $obj --steps ${UNICL_STEPS:-300} --batch 64 --image-size 112 --image-layers 12 \
        --context 24 --lr 3e-4 --init-log-scale 2.659260036932778 --val-every 100 \
        --checkpoint-every 100000 --probe --quiet $init
  done
  (cd /tmp && tar -cf "$OUT/unicl.tar" $(ls -d u-unicl/*.json u-unicl/*.png u-unicl/*.csv u-clip/*.json u-clip/*.png u-clip/*.csv 2>/dev/null)) ;;
esac

rm -f "$OUT/masks.safetensors"
python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
merged = {}
for p in sorted(glob.glob(os.path.join(out, "*.json"))):
    if os.path.basename(p) == "results.json":
        continue
    with open(p) as f:
        merged[os.path.basename(p)[:-5]] = json.load(f)
    os.remove(p)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(merged, f, indent=1)
print("merged", list(merged))
PY
