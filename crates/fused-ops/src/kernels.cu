// CUDA kernels of the fused operations. Each has a CPU twin in the Rust module of the same
// operation; that twin is the reference the GPU parity checks compare against.
//
// Compiled to PTX by build.rs with the nvcc of the `cuda` toolchain (scripts/cuda-toolchain.sh)
// and loaded through candle's custom-module cache. All accumulation is in f32, as PyTorch does
// for f32 and bf16 inputs.

#include <cuda_bf16.h>
#include <type_traits>
#include <stdint.h>

#define BLOCK 256

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

// four consecutive elements as f32 (16-byte f32 / 8-byte bf16 accesses: 4-element aligned)
__device__ __forceinline__ void load4(const float* p, float v[4]) {
  const float4 t = *reinterpret_cast<const float4*>(p);
  v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
}
__device__ __forceinline__ void load4(const __nv_bfloat16* p, float v[4]) {
  const uint2 t = *reinterpret_cast<const uint2*>(p);
  const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(&t);
#pragma unroll
  for (int k = 0; k < 4; ++k) v[k] = __bfloat162float(e[k]);
}
__device__ __forceinline__ void store4(float* p, const float v[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, const float v[4]) {
  uint2 t;
  __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&t);
#pragma unroll
  for (int k = 0; k < 4; ++k) e[k] = __float2bfloat16(v[k]);
  *reinterpret_cast<uint2*>(p) = t;
}

// eight consecutive elements (one 16-byte access for bf16, two for f32: 8-element aligned)
__device__ __forceinline__ void load8(const float* p, float v[8]) {
  load4(p, v);
  load4(p + 4, v + 4);
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float v[8]) {
  const uint4 t = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat16* e = reinterpret_cast<const __nv_bfloat16*>(&t);
#pragma unroll
  for (int k = 0; k < 8; ++k) v[k] = __bfloat162float(e[k]);
}
__device__ __forceinline__ void store8(float* p, const float v[8]) {
  store4(p, v);
  store4(p + 4, v + 4);
}
__device__ __forceinline__ void store8(__nv_bfloat16* p, const float v[8]) {
  uint4 t;
  __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&t);
#pragma unroll
  for (int k = 0; k < 8; ++k) e[k] = __float2bfloat16(v[k]);
  *reinterpret_cast<uint4*>(p) = t;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
  return v;
}

// Sum of `v` over the block; every thread gets the result. `shared` holds 32 floats.
__device__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int n_warps = (blockDim.x + 31) >> 5;
  v = (lane < n_warps) ? shared[lane] : 0.f;
  return warp_sum(v);
}
__device__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int n_warps = (blockDim.x + 31) >> 5;
  v = (lane < n_warps) ? shared[lane] : -INFINITY;
  return warp_max(v);
}

// ---------------------------------------------------------------------------------------------
// Layer norm over the last dimension (`d`), one warp per row (8 rows per 256-thread block): no
// block barriers, only warp shuffles. Two passes over the row (mean, then centred variance) as
// PyTorch's reference formula; the row stays in L1 between them.

template <typename T>
__device__ __forceinline__ void ln_row_stats(const T* x, int d, float eps, int lane, float* mean,
                                             float* rstd) {
  float s = 0.f;
  for (int i = lane; i < d; i += 32) s += to_f32(x[i]);
  const float m = warp_sum(s) / d;
  float v = 0.f;
  for (int i = lane; i < d; i += 32) {
    const float c = to_f32(x[i]) - m;
    v += c * c;
  }
  *mean = m;
  *rstd = rsqrtf(warp_sum(v) / d + eps);
}

// Rows up to 32 · LN_CACHE elements stay in registers between the three steps (one read of x
// from memory instead of three); longer rows take the looping form. Where the width is a
// multiple of 4 and the operands 4-element aligned (`vec4`), a lane reads and writes groups of
// 4 consecutive elements (16-byte f32 / 8-byte bf16 accesses), which is what makes the kernel
// bandwidth-bound rather than instruction-bound; the summation order then differs from the
// looping form's (results agree to rounding).
#define LN_CACHE 32

template <typename T>
__device__ void ln_fwd(const T* x, const T* w, const T* b, T* y, int rows, int d, float eps,
                       int vec4) {
  const size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= (size_t)rows) return;
  const int lane = threadIdx.x & 31;
  x += row * d;
  y += row * d;
  if (vec4 && d <= 32 * LN_CACHE) {
    float v[LN_CACHE];  // group k of this lane: elements 4 (lane + 32 k) .. + 3
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < LN_CACHE / 4; ++k) {
      const int i = 4 * (lane + 32 * k);
      if (i < d) {
        load4(x + i, v + 4 * k);
      } else {
        v[4 * k] = v[4 * k + 1] = v[4 * k + 2] = v[4 * k + 3] = 0.f;
      }
      s += (v[4 * k] + v[4 * k + 1]) + (v[4 * k + 2] + v[4 * k + 3]);
    }
    const float mean = warp_sum(s) / d;
    float var = 0.f;
#pragma unroll
    for (int k = 0; k < LN_CACHE / 4; ++k) {
      if (4 * (lane + 32 * k) < d) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float c = v[4 * k + e] - mean;
          var += c * c;
        }
      }
    }
    const float rstd = rsqrtf(warp_sum(var) / d + eps);
#pragma unroll
    for (int k = 0; k < LN_CACHE / 4; ++k) {
      const int i = 4 * (lane + 32 * k);
      if (i < d) {
        float wv[4], bv[4], out[4];
        load4(w + i, wv);
        load4(b + i, bv);
#pragma unroll
        for (int e = 0; e < 4; ++e) out[e] = (v[4 * k + e] - mean) * rstd * wv[e] + bv[e];
        store4(y + i, out);
      }
    }
    return;
  }
  if (d <= 32 * LN_CACHE) {
    float v[LN_CACHE];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < LN_CACHE; ++k) {
      const int i = lane + 32 * k;
      v[k] = i < d ? to_f32(x[i]) : 0.f;
      s += v[k];
    }
    const float mean = warp_sum(s) / d;
    float var = 0.f;
#pragma unroll
    for (int k = 0; k < LN_CACHE; ++k) {
      const float c = v[k] - mean;
      if (lane + 32 * k < d) var += c * c;
    }
    const float rstd = rsqrtf(warp_sum(var) / d + eps);
#pragma unroll
    for (int k = 0; k < LN_CACHE; ++k) {
      const int i = lane + 32 * k;
      if (i < d) y[i] = from_f32<T>((v[k] - mean) * rstd * to_f32(w[i]) + to_f32(b[i]));
    }
    return;
  }
  float mean, rstd;
  ln_row_stats(x, d, eps, lane, &mean, &rstd);
  for (int i = lane; i < d; i += 32) {
    const float n = (to_f32(x[i]) - mean) * rstd;
    y[i] = from_f32<T>(n * to_f32(w[i]) + to_f32(b[i]));
  }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · w.
template <typename T>
__device__ void ln_bwd(const T* x, const T* w, const T* dy, T* dx, int rows, int d, float eps,
                       int /*vec4: the forward's launch signature*/) {
  const size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= (size_t)rows) return;
  const int lane = threadIdx.x & 31;
  x += row * d;
  dy += row * d;
  dx += row * d;
  float mean, rstd;
  ln_row_stats(x, d, eps, lane, &mean, &rstd);
  float sg = 0.f, sgx = 0.f;
  for (int i = lane; i < d; i += 32) {
    const float g = to_f32(dy[i]) * to_f32(w[i]);
    sg += g;
    sgx += g * (to_f32(x[i]) - mean) * rstd;
  }
  const float mg = warp_sum(sg) / d;
  const float mgx = warp_sum(sgx) / d;
  for (int i = lane; i < d; i += 32) {
    const float xh = (to_f32(x[i]) - mean) * rstd;
    const float g = to_f32(dy[i]) * to_f32(w[i]);
    dx[i] = from_f32<T>(rstd * (g - mg - xh * mgx));
  }
}

// Per-row mean and 1/std (a warp per row), for the parameter gradients.
template <typename T>
__device__ void ln_stats(const T* x, float* mean, float* rstd, int rows, int d, float eps) {
  const size_t row = (size_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= (size_t)rows) return;
  const int lane = threadIdx.x & 31;
  float m, r;
  ln_row_stats(x + row * d, d, eps, lane, &m, &r);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// Column partial sums over the rows of chunk blockIdx.y: part[chunk, c] = Σ dy·x̂ and
// part[chunks + chunk, c] = Σ dy. One thread per column: reads coalesce along the row.
template <typename T>
__device__ void ln_param_partials(const T* x, const T* dy, const float* mean, const float* rstd,
                                  float* part, int rows, int d, int rows_per_chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= d) return;
  const int chunk = blockIdx.y, chunks = gridDim.y;
  const int r0 = chunk * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
  float sw = 0.f, sb = 0.f;
  for (int r = r0; r < r1; ++r) {
    const float g = to_f32(dy[(size_t)r * d + c]);
    sw += g * (to_f32(x[(size_t)r * d + c]) - mean[r]) * rstd[r];
    sb += g;
  }
  part[(size_t)chunk * d + c] = sw;
  part[(size_t)(chunks + chunk) * d + c] = sb;
}

#define LN_KERNELS(SUFFIX, T)                                                                     \
  extern "C" __global__ void ln_fwd_##SUFFIX(const T* x, const T* w, const T* b, T* y, int rows, \
                                             int d, float eps, int vec4) {                       \
    ln_fwd(x, w, b, y, rows, d, eps, vec4);                                                      \
  }                                                                                              \
  extern "C" __global__ void ln_bwd_##SUFFIX(const T* x, const T* w, const T* dy, T* dx,         \
                                             int rows, int d, float eps, int vec4) {             \
    ln_bwd(x, w, dy, dx, rows, d, eps, vec4);                                                    \
  }                                                                                              \
  extern "C" __global__ void ln_stats_##SUFFIX(const T* x, float* mean, float* rstd, int rows,   \
                                               int d, float eps) {                               \
    ln_stats(x, mean, rstd, rows, d, eps);                                                       \
  }                                                                                              \
  extern "C" __global__ void ln_param_partials_##SUFFIX(const T* x, const T* dy,                 \
                                                        const float* mean, const float* rstd,    \
                                                        float* part, int rows, int d,            \
                                                        int rows_per_chunk) {                    \
    ln_param_partials(x, dy, mean, rstd, part, rows, d, rows_per_chunk);                         \
  }

LN_KERNELS(f32, float)
LN_KERNELS(bf16, __nv_bfloat16)

// ---------------------------------------------------------------------------------------------
// Bilinear resize with PyTorch's `F.interpolate(mode="bilinear", antialias=False)` source
// coordinates. One thread per output element; the backward scatters into the zeroed input
// gradient with atomics (two output pixels can read the same input pixel).

struct Tap {
  int i0, i1;
  float l0, l1;
};

__device__ __forceinline__ Tap tap(int dst, int in, int out, int align_corners) {
  float src;
  if (align_corners) {
    src = out > 1 ? (float)(in - 1) / (float)(out - 1) * dst : 0.f;
  } else {
    src = fmaxf(((float)in / (float)out) * (dst + 0.5f) - 0.5f, 0.f);
  }
  Tap t;
  t.i0 = min((int)floorf(src), in - 1);
  t.i1 = min(t.i0 + 1, in - 1);
  t.l1 = src - t.i0;
  t.l0 = 1.f - t.l1;
  return t;
}

extern "C" __global__ void resize_fwd_f32(const float* x, float* y, int planes, int ih, int iw,
                                          int oh, int ow, int align_corners) {
  const size_t n = (size_t)planes * oh * ow;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n;
       idx += (size_t)gridDim.x * blockDim.x) {
    const int ox = idx % ow;
    const int oy = (idx / ow) % oh;
    const size_t p = idx / ((size_t)ow * oh);
    const Tap ty = tap(oy, ih, oh, align_corners), tx = tap(ox, iw, ow, align_corners);
    const float* src = x + p * ih * iw;
    y[idx] = ty.l0 * (tx.l0 * src[ty.i0 * iw + tx.i0] + tx.l1 * src[ty.i0 * iw + tx.i1]) +
             ty.l1 * (tx.l0 * src[ty.i1 * iw + tx.i0] + tx.l1 * src[ty.i1 * iw + tx.i1]);
  }
}

extern "C" __global__ void resize_bwd_f32(const float* dy, float* dx, int planes, int ih, int iw,
                                          int oh, int ow, int align_corners) {
  const size_t n = (size_t)planes * oh * ow;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n;
       idx += (size_t)gridDim.x * blockDim.x) {
    const int ox = idx % ow;
    const int oy = (idx / ow) % oh;
    const size_t p = idx / ((size_t)ow * oh);
    const Tap ty = tap(oy, ih, oh, align_corners), tx = tap(ox, iw, ow, align_corners);
    float* dst = dx + p * ih * iw;
    const float g = dy[idx];
    atomicAdd(dst + ty.i0 * iw + tx.i0, ty.l0 * tx.l0 * g);
    atomicAdd(dst + ty.i0 * iw + tx.i1, ty.l0 * tx.l1 * g);
    atomicAdd(dst + ty.i1 * iw + tx.i0, ty.l1 * tx.l0 * g);
    atomicAdd(dst + ty.i1 * iw + tx.i1, ty.l1 * tx.l1 * g);
  }
}

// ---------------------------------------------------------------------------------------------
// DINO teacher: softmax((t − center) / temp) over the `k` prototypes, one block per row.

extern "C" __global__ void center_softmax_f32(const float* t, const float* center, float* y,
                                              int k, float inv_temp) {
  __shared__ float shared[32];
  const size_t row = blockIdx.x;
  t += row * k;
  y += row * k;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < k; i += blockDim.x) m = fmaxf(m, (t[i] - center[i]) * inv_temp);
  m = block_max(m, shared);
  float s = 0.f;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const float e = expf((t[i] - center[i]) * inv_temp - m);
    y[i] = e;
    s += e;
  }
  const float inv = 1.f / block_sum(s, shared);
  for (int i = threadIdx.x; i < k; i += blockDim.x) y[i] *= inv;
}

// ---------------------------------------------------------------------------------------------
// Sinkhorn-Knopp on `[n, k]` teacher logits (dinov2's prototypes are our columns). The global
// maximum and sum are two-stage reductions (per-block partials, then one block); each round is
// a column pass (one thread per prototype, coalesced across the row) and a row pass (one block
// per sample).

// partial[blockIdx.x] = max over the block's grid-stride share of x.
extern "C" __global__ void sk_partial_max(const float* x, size_t n, float* partial) {
  __shared__ float shared[32];
  float m = -INFINITY;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    m = fmaxf(m, x[i]);
  m = block_max(m, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = m;
}

// q = exp((t − max) / temp); partial[blockIdx.x] = the block's sum of q.
extern "C" __global__ void sk_exp(const float* t, float* q, size_t n, const float* max,
                                  float inv_temp, float* partial) {
  __shared__ float shared[32];
  const float m = *max;
  float s = 0.f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float e = expf((t[i] - m) * inv_temp);
    q[i] = e;
    s += e;
  }
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = op(partial[0..count]) in one block; op 0 = max, 1 = sum.
extern "C" __global__ void sk_finish(const float* partial, int count, int op, float* out) {
  __shared__ float shared[32];
  float v = op == 0 ? -INFINITY : 0.f;
  for (int i = threadIdx.x; i < count; i += blockDim.x)
    v = op == 0 ? fmaxf(v, partial[i]) : v + partial[i];
  v = op == 0 ? block_max(v, shared) : block_sum(v, shared);
  if (threadIdx.x == 0) out[0] = v;
}

// q /= total (the first normalisation of dinov2's Q /= sum(Q)).
extern "C" __global__ void sk_scale(float* q, size_t n, const float* total) {
  const float inv = 1.f / *total;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    q[i] *= inv;
}

// col[c] = Σ_r q[r, c] · k: the per-prototype mass times K, so that a division by it leaves
// every prototype with mass 1/K.
extern "C" __global__ void sk_col_sum(const float* q, int rows, int k, float* col) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  float s = 0.f;
  for (int r = 0; r < rows; ++r) s += q[(size_t)r * k + c];
  col[c] = s * k;
}

// Row r: q[r, :] /= col, then q[r, :] /= (Σ q[r, :] · n_samples) and × out_scale.
extern "C" __global__ void sk_row_norm(float* q, int k, const float* col, float n_samples,
                                       float out_scale) {
  __shared__ float shared[32];
  float* row = q + (size_t)blockIdx.x * k;
  float s = 0.f;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const float v = row[i] / col[i];
    row[i] = v;
    s += v;
  }
  const float scale = out_scale / (block_sum(s, shared) * n_samples);
  for (int i = threadIdx.x; i < k; i += blockDim.x) row[i] *= scale;
}

// ---------------------------------------------------------------------------------------------
// GEMM epilogues of the ViT block (inference): one pass instead of bias add + GELU, or bias add +
// layer scale + residual add. Operands (a, p, r): `p` holds the per-channel rows of width d.
// CPU twin: epilogue.rs.

__device__ __forceinline__ float gelu_erf(float v) {
  return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
}

// Rows of threads (threadIdx.x along a row, threadIdx.y picks one of the block's rows;
// grid-stride over rows), sized on the host so that a row's accesses occupy whole warps: the
// per-channel operands are indexed by the column directly, no division. `vec` (8, 4 or 1): d
// is a multiple of it and every operand vec-element aligned, so that many elements move per
// access (8 bf16 = 16 bytes).

// f(v, k, c): the epilogue of element c + k of the row, in place on v[k]
template <typename T, int W, typename F>
__device__ __forceinline__ void epilogue_row(const T* a, const T* r, T* y, int d, F f) {
  for (int c = W * threadIdx.x; c < d; c += W * blockDim.x) {
    float v[W];
    if (W == 8) load8(a + c, v); else if (W == 4) load4(a + c, v); else v[0] = to_f32(a[c]);
    f(v, c);
    if (W == 8) store8(y + c, v); else if (W == 4) store4(y + c, v); else y[c] = from_f32<T>(v[0]);
  }
}

// y = gelu(x + b)
template <typename T>
__device__ void bias_gelu(const T* x, const T* b, const T* /*unused*/, T* y, size_t rows, int d,
                          int vec) {
  for (size_t r = (size_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows;
       r += (size_t)gridDim.x * blockDim.y) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    auto run = [&](auto width) {
      constexpr int W = decltype(width)::value;
      epilogue_row<T, W>(xr, xr, yr, d, [&](float* v, int c) {
        float bb[W];
        if (W == 8) load8(b + c, bb); else if (W == 4) load4(b + c, bb); else bb[0] = to_f32(b[c]);
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] = gelu_erf(v[k] + bb[k]);
      });
    };
    if (vec == 8) run(std::integral_constant<int, 8>());
    else if (vec == 4) run(std::integral_constant<int, 4>());
    else run(std::integral_constant<int, 1>());
  }
}

// y = r + λ ⊙ (a + b), p = [b; λ]
template <typename T>
__device__ void bias_scale_residual(const T* a, const T* p, const T* res, T* y, size_t rows,
                                    int d, int vec) {
  for (size_t r = (size_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows;
       r += (size_t)gridDim.x * blockDim.y) {
    const T* ar = a + r * d;
    const T* rr = res + r * d;
    T* yr = y + r * d;
    auto run = [&](auto width) {
      constexpr int W = decltype(width)::value;
      epilogue_row<T, W>(ar, rr, yr, d, [&](float* v, int c) {
        float bv[W], lv[W], rv[W];
        if (W == 8) {
          load8(p + c, bv); load8(p + d + c, lv); load8(rr + c, rv);
        } else if (W == 4) {
          load4(p + c, bv); load4(p + d + c, lv); load4(rr + c, rv);
        } else {
          bv[0] = to_f32(p[c]); lv[0] = to_f32(p[d + c]); rv[0] = to_f32(rr[c]);
        }
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] = rv[k] + lv[k] * (v[k] + bv[k]);
      });
    };
    if (vec == 8) run(std::integral_constant<int, 8>());
    else if (vec == 4) run(std::integral_constant<int, 4>());
    else run(std::integral_constant<int, 1>());
  }
}

// y = a + b (training's bias add; its backward is column_sum)
template <typename T>
__device__ void bias_add(const T* a, const T* b, const T* /*unused*/, T* y, size_t rows, int d,
                         int vec) {
  for (size_t r = (size_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows;
       r += (size_t)gridDim.x * blockDim.y) {
    auto run = [&](auto width) {
      constexpr int W = decltype(width)::value;
      epilogue_row<T, W>(a + r * d, a + r * d, y + r * d, d, [&](float* v, int c) {
        float bb[W];
        if (W == 8) load8(b + c, bb); else if (W == 4) load4(b + c, bb); else bb[0] = to_f32(b[c]);
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] += bb[k];
      });
    };
    if (vec == 8) run(std::integral_constant<int, 8>());
    else if (vec == 4) run(std::integral_constant<int, 4>());
    else run(std::integral_constant<int, 1>());
  }
}

// y = a ⊙ λ (training's layer scale)
template <typename T>
__device__ void scale_columns(const T* a, const T* l, const T* /*unused*/, T* y, size_t rows,
                              int d, int vec) {
  for (size_t r = (size_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows;
       r += (size_t)gridDim.x * blockDim.y) {
    auto run = [&](auto width) {
      constexpr int W = decltype(width)::value;
      epilogue_row<T, W>(a + r * d, a + r * d, y + r * d, d, [&](float* v, int c) {
        float lv[W];
        if (W == 8) load8(l + c, lv); else if (W == 4) load4(l + c, lv); else lv[0] = to_f32(l[c]);
#pragma unroll
        for (int k = 0; k < W; ++k) v[k] *= lv[k];
      });
    };
    if (vec == 8) run(std::integral_constant<int, 8>());
    else if (vec == 4) run(std::integral_constant<int, 4>());
    else run(std::integral_constant<int, 1>());
  }
}

#define EPILOGUE(name, T, suffix)                                                              \
  extern "C" __global__ void name##_##suffix(const T* a, const T* p, const T* r, T* y,       \
                                             size_t rows, int d, int vec) {                  \
    name<T>(a, p, r, y, rows, d, vec);                                                         \
  }
EPILOGUE(bias_gelu, float, f32)
EPILOGUE(bias_gelu, __nv_bfloat16, bf16)
EPILOGUE(bias_scale_residual, float, f32)
EPILOGUE(bias_scale_residual, __nv_bfloat16, bf16)
EPILOGUE(bias_add, float, f32)
EPILOGUE(bias_add, __nv_bfloat16, bf16)
EPILOGUE(scale_columns, float, f32)
EPILOGUE(scale_columns, __nv_bfloat16, bf16)

// Column partial sums: part[chunk, c] = Σ x[r, c] over the rows of `chunk`, one thread per
// column so consecutive threads read consecutive elements of a row (columns.rs).
template <typename T>
__device__ void column_partials(const T* x, float* part, int rows, int cols, int rows_per_chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(rows, r0 + rows_per_chunk);
  float s = 0.f;
  for (int r = r0; r < r1; ++r) s += to_f32(x[(size_t)r * cols + c]);
  part[(size_t)blockIdx.y * cols + c] = s;
}
extern "C" __global__ void column_partials_f32(const float* x, float* part, int rows, int cols,
                                               int rows_per_chunk) {
  column_partials(x, part, rows, cols, rows_per_chunk);
}
extern "C" __global__ void column_partials_bf16(const __nv_bfloat16* x, float* part, int rows,
                                                int cols, int rows_per_chunk) {
  column_partials(x, part, rows, cols, rows_per_chunk);
}

// ---------------------------------------------------------------------------------------------
// In-place optimizer updates (optim.rs, whose `Update::apply` is the CPU twin), grid-stride:
//   kind 0  m ← m + c0 · (g − m)                                  first moment (lerp)
//   kind 1  v ← c0 · v + c1 · g²                                 second moment
//   kind 2  t ← c0 · t + c1 · s                                  EMA
//   kind 3  p ← p · c0 − c1 · (m / (√v / c2 + c3))               AdamW parameter step
// `b` is read by kind 3 only.

template <typename T>
__device__ void optim_update(T* dst, const T* a, const T* b, size_t n, int kind, float c0,
                             float c1, float c2, float c3) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float d = to_f32(dst[i]), x = to_f32(a[i]);
    float r;
    switch (kind) {
      case 0: r = d + c0 * (x - d); break;
      case 1: r = c0 * d + c1 * (x * x); break;
      case 2: r = c0 * d + c1 * x; break;
      default: r = d * c0 - c1 * (x / (sqrtf(to_f32(b[i])) / c2 + c3)); break;
    }
    dst[i] = from_f32<T>(r);
  }
}

#define OPTIM_UPDATE(SUFFIX, T)                                                                  \
  extern "C" __global__ void optim_update_##SUFFIX(T* dst, const T* a, const T* b, size_t n,    \
                                                   int kind, float c0, float c1, float c2,      \
                                                   float c3) {                                  \
    optim_update(dst, a, b, n, kind, c0, c1, c2, c3);                                            \
  }
OPTIM_UPDATE(f32, float)
OPTIM_UPDATE(bf16, __nv_bfloat16)
