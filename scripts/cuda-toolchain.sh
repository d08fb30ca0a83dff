#!/usr/bin/env bash
# Installs a CUDA 13.0 toolchain (nvcc + NVVM + crt headers, cudart, nvrtc, cuBLAS, cuRAND, CCCL headers) from
# NVIDIA's PyPI wheels into a project-local folder, so `cargo build --features cuda` works on a
# machine with no GPU and no system CUDA. Nothing outside the folder is touched.
#
#   bash scripts/cuda-toolchain.sh            # installs into .cuda/ (git-ignored)
#   source .cuda/env.sh                        # CUDA_ROOT, PATH, CUDA_COMPUTE_CAP, ...
#   cargo build --release --features cuda ...
#
# Versions are pinned to CUDA 13.0 on purpose: candle loads its kernels as PTX, and a driver
# only JIT-compiles PTX from a toolkit no newer than itself (the lent H100/H200 drivers are
# 580.x = CUDA 13.0). CUDA_COMPUTE_CAP defaults to 90 (Hopper); override it before sourcing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${CUDA_TOOLCHAIN_DIR:-$ROOT/.cuda}"
PY="${PYTHON:-python3}"
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-nvrtc==13.0.88
  nvidia-curand==10.4.0.35
  nvidia-cublas==13.0.2.14
)

if [ -x "$DEST/toolkit/bin/nvcc" ] && [ -f "$DEST/env.sh" ]; then
  echo "CUDA toolchain already in $DEST (delete it to reinstall)"
  exit 0
fi

mkdir -p "$DEST"
echo "installing ${#WHEELS[@]} NVIDIA wheels into $DEST/site (about 600 MB download) ..."
"$PY" -m pip install --quiet --no-deps --only-binary=:all: --target "$DEST/site" "${WHEELS[@]}"

# The wheels all unpack under nvidia/cu13/{bin,include,lib,nvvm}: that folder is a toolkit root
# once it has the layout build scripts look for (lib64, unversioned .so names, a libcuda stub).
TK="$DEST/toolkit"
ln -sfn "$DEST/site/nvidia/cu13" "$TK"
ln -sfn lib "$TK/lib64"
for lib in "$TK"/lib/lib*.so.*; do
  base="$(basename "$lib")"
  ln -sfn "$base" "$TK/lib/${base%%.so.*}.so"
done
# CCCL (cuda/std, thrust, cub) ships under include/cccl; nvcc and nvrtc look in include/.
for d in "$TK"/include/cccl/*; do
  [ -e "$TK/include/$(basename "$d")" ] || ln -sfn "cccl/$(basename "$d")" "$TK/include/$(basename "$d")"
done

# Link-time stub for the driver library: the real libcuda.so.1 comes with the GPU machine's
# driver and the wheels do not ship NVIDIA's stub. The linker only needs every driver entry
# point to exist under the right soname, so the stub defines each `cu*` function that cuda.h
# declares as an empty symbol; at run time the loader binds the real driver's.
mkdir -p "$TK/lib/stubs"
grep -ohE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' "$TK/include/cuda.h" "$TK"/include/cudaProfiler*.h 2>/dev/null \
  | sed -E 's/[[:space:]]*\($//' | sort -u \
  | awk '{ printf "void %s(void) {}\n", $1 }' > "$DEST/stub.c"
# cuda.h maps many names to versioned ones (cuCtxCreate -> cuCtxCreate_v2) with #defines
grep -ohE '#define[[:space:]]+cu[A-Za-z0-9_]+[[:space:]]+cu[A-Za-z0-9_]+' "$TK/include/cuda.h" \
  | awk '{ print $3 }' | sort -u | awk '{ printf "void %s(void) {}\n", $1 }' >> "$DEST/stub.c"
sort -u "$DEST/stub.c" -o "$DEST/stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$TK/lib/stubs/libcuda.so" "$DEST/stub.c"
ln -sfn libcuda.so "$TK/lib/stubs/libcuda.so.1"

cat > "$DEST/env.sh" <<ENV
# source this before 'cargo build --features cuda'
export CUDA_ROOT="$TK"
export CUDA_PATH="$TK"
export CUDA_TOOLKIT_ROOT_DIR="$TK"
export PATH="$TK/bin:\$PATH"
export LIBRARY_PATH="$TK/lib:$TK/lib/stubs:\${LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION=13000
ENV
echo "done: source $DEST/env.sh"
"$TK/bin/nvcc" --version | tail -2
