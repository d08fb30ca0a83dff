// Fused multi-head self-attention for inference, flash-attention style: softmax(q kᵀ · scale) v
// for one 64-query tile per block, streaming 64-key tiles through shared memory with an online
// softmax, so the [B, H, N, N] scores never reach global memory.
//
// Input: the qkv projection as it leaves the GEMM, `[B, N, 3, H, 64]` contiguous (no permute
// copies), plus its bias `[3, H, 64]` (added here rather than in a separate pass). Output: the
// context `[B, N, H, 64]`, the layout the output projection reads. Head dim 64 only (every
// DINOv2 / RAD-DINO size); other sizes take the composed path.
//
// Two kernels: f32 on the CUDA cores (register tiles of 4×4), bf16 on the tensor cores through
// WMMA 16×16×16 fragments with f32 accumulation. Both keep the softmax statistics in f32 and
// work in base 2 (exp2 of s · scale · log2 e), as flash attention does.
//
// CPU twin: `attention.rs` (`cpu_attention`).

#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>

#define HD 64      // head dim
#define BQ 64      // queries per block
#define BK 64      // keys per tile
#define LOG2E 1.4426950408889634f

// ---------------------------------------------------------------------------------------------
// f32: 256 threads as 16 × 16; thread (ty, tx) owns query rows ty + 16 i and, for the scores,
// keys tx + 16 j (i, j < 4), for the output the four head-dim columns 4 tx .. 4 tx + 3. Rows of
// the shared tiles are padded to 68 floats so that the float4 reads of 8 consecutive threads
// fall on distinct banks.

#define PAD 68

extern "C" __global__ void attn_fwd_f32(const float* __restrict__ qkv,
                                        const float* __restrict__ bias, float* __restrict__ out,
                                        int n, int heads, float scale) {
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  float* qs = smem;               // [BQ][PAD]
  float* ks = qs + BQ * PAD;      // [BK][PAD]
  float* vs = ks + BK * PAD;      // [BK][PAD]
  float* ps = vs + BK * PAD;      // [BQ][PAD]

  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
  const size_t row_stride = (size_t)3 * heads * HD;  // one token's q, k and v
  const float* base = qkv + (size_t)b * n * row_stride + (size_t)h * HD;
  const float* bq = bias ? bias + (size_t)h * HD : nullptr;
  const float* bk = bias ? bias + (size_t)(heads + h) * HD : nullptr;
  const float* bv = bias ? bias + (size_t)(2 * heads + h) * HD : nullptr;
  const float qscale = scale * LOG2E;

  // q tile (scaled into base 2); rows past n are zeros and never written back
  for (int c = tid; c < BQ * HD / 4; c += 256) {
    const int r = c >> 4, d = (c & 15) << 2;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (q0 + r < n) {
      v = *reinterpret_cast<const float4*>(base + (size_t)(q0 + r) * row_stride + d);
      if (bq) { v.x += bq[d]; v.y += bq[d + 1]; v.z += bq[d + 2]; v.w += bq[d + 3]; }
      v.x *= qscale; v.y *= qscale; v.z *= qscale; v.w *= qscale;
    }
    *reinterpret_cast<float4*>(qs + r * PAD + d) = v;
  }

  float o[4][4], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int j = 0; j < 4; ++j) o[i][j] = 0.f;
  }

  for (int k0 = 0; k0 < n; k0 += BK) {
    __syncthreads();  // previous tile fully consumed (and the q tile written, first time)
    for (int c = tid; c < BK * HD / 4; c += 256) {
      const int r = c >> 4, d = (c & 15) << 2;
      float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
      if (k0 + r < n) {
        const float* t = base + (size_t)(k0 + r) * row_stride;
        kv = *reinterpret_cast<const float4*>(t + heads * HD + d);
        vv = *reinterpret_cast<const float4*>(t + 2 * heads * HD + d);
        if (bk) {
          kv.x += bk[d]; kv.y += bk[d + 1]; kv.z += bk[d + 2]; kv.w += bk[d + 3];
          vv.x += bv[d]; vv.y += bv[d + 1]; vv.z += bv[d + 2]; vv.w += bv[d + 3];
        }
      }
      *reinterpret_cast<float4*>(ks + r * PAD + d) = kv;
      *reinterpret_cast<float4*>(vs + r * PAD + d) = vv;
    }
    __syncthreads();

    // scores s[i][j] = q[ty + 16 i] · k[tx + 16 j]
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
#pragma unroll 4
    for (int d = 0; d < HD; d += 4) {
      float4 qv[4], kv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) qv[i] = *reinterpret_cast<const float4*>(qs + (ty + 16 * i) * PAD + d);
#pragma unroll
      for (int j = 0; j < 4; ++j) kv[j] = *reinterpret_cast<const float4*>(ks + (tx + 16 * j) * PAD + d);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          s[i][j] += qv[i].x * kv[j].x + qv[i].y * kv[j].y + qv[i].z * kv[j].z + qv[i].w * kv[j].w;
    }

    // online softmax; a row's 64 scores live in the 16 threads of one half-warp
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (k0 + tx + 16 * j >= n) s[i][j] = -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, off));
      const float m_new = fmaxf(m[i], mx);
      const float alpha = exp2f(m[i] - m_new);
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = exp2f(s[i][j] - m_new);
        sum += p;
        ps[(ty + 16 * i) * PAD + tx + 16 * j] = p;
      }
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, off);
      l[i] = l[i] * alpha + sum;
      m[i] = m_new;
#pragma unroll
      for (int j = 0; j < 4; ++j) o[i][j] *= alpha;
    }
    __syncthreads();

    // o[i][:] += p[ty + 16 i][:] · v[:, 4 tx .. 4 tx + 3]
#pragma unroll 4
    for (int kk = 0; kk < BK; kk += 4) {
      float4 pv[4], vv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) pv[i] = *reinterpret_cast<const float4*>(ps + (ty + 16 * i) * PAD + kk);
#pragma unroll
      for (int t = 0; t < 4; ++t) vv[t] = *reinterpret_cast<const float4*>(vs + (kk + t) * PAD + 4 * tx);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float p[4] = {pv[i].x, pv[i].y, pv[i].z, pv[i].w};
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          o[i][0] += p[t] * vv[t].x;
          o[i][1] += p[t] * vv[t].y;
          o[i][2] += p[t] * vv[t].z;
          o[i][3] += p[t] * vv[t].w;
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int q = q0 + ty + 16 * i;
    if (q < n) {
      const float inv = 1.f / l[i];
      float4 v = make_float4(o[i][0] * inv, o[i][1] * inv, o[i][2] * inv, o[i][3] * inv);
      *reinterpret_cast<float4*>(out + ((size_t)b * n + q) * heads * HD + (size_t)h * HD + 4 * tx) = v;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 on the tensor cores: 4 warps, each owning 16 query rows. Per key tile a warp computes its
// 16 × 64 scores with WMMA into a per-warp f32 buffer, runs the online softmax there (two lanes
// per row), writes the probabilities as bf16, rescales its f32 output buffer and accumulates
// p · v into it with WMMA. Fragments are reloaded from shared memory rather than rescaled in
// registers because the WMMA fragment layout is opaque.

using namespace nvcuda;

#define LDH 72  // bf16 row pitch (a multiple of 8, as WMMA requires; 16 bytes of padding)
#define LDF 68  // f32 row pitch (a multiple of 4)

extern "C" __global__ void attn_fwd_bf16(const __nv_bfloat16* __restrict__ qkv,
                                         const __nv_bfloat16* __restrict__ bias,
                                         __nv_bfloat16* __restrict__ out, int n, int heads,
                                         float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  // bf16 WMMA needs sm_80; the Rust side never launches this kernel on such builds
  // (`cuda_supports`), and a launch that slipped through stops here instead of writing nothing
  __trap();
#else
  extern __shared__ float4 smem_f4[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_f4);  // [BQ][LDH]
  __nv_bfloat16* ks = qs + BQ * LDH;                               // [BK][LDH]
  __nv_bfloat16* vs = ks + BK * LDH;                               // [BK][LDH]
  __nv_bfloat16* pb = vs + BK * LDH;                               // [4 warps][16][LDH]
  float* sb = reinterpret_cast<float*>(pb + 4 * 16 * LDH);         // [4 warps][16][LDF]
  float* ob = sb + 4 * 16 * LDF;                                   // [4 warps][16][LDF]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
  const size_t row_stride = (size_t)3 * heads * HD;
  const __nv_bfloat16* base = qkv + (size_t)b * n * row_stride + (size_t)h * HD;
  const float qk_scale = scale * LOG2E;

  // 8 bf16 (16 bytes) per load; bias added in f32 and rounded once
  auto load_tile = [&](__nv_bfloat16* dst, int row0, int which) {
    const __nv_bfloat16* bw = bias ? bias + (size_t)(which * heads + h) * HD : nullptr;
    for (int c = tid; c < 64 * HD / 8; c += 128) {
      const int r = c >> 3, d = (c & 7) << 3;
      uint4 raw = make_uint4(0u, 0u, 0u, 0u);
      if (row0 + r < n) {
        raw = *reinterpret_cast<const uint4*>(base + (size_t)(row0 + r) * row_stride +
                                              (size_t)which * heads * HD + d);
        if (bw) {
          __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&raw);
#pragma unroll
          for (int t = 0; t < 8; ++t)
            e[t] = __float2bfloat16(__bfloat162float(e[t]) + __bfloat162float(bw[d + t]));
        }
      }
      *reinterpret_cast<uint4*>(dst + r * LDH + d) = raw;
    }
  };
  load_tile(qs, q0, 0);

  __nv_bfloat16* my_p = pb + warp * 16 * LDH;
  float* my_s = sb + warp * 16 * LDF;
  float* my_o = ob + warp * 16 * LDF;
  // two lanes per row: lane → row lane / 2, columns (lane & 1) · 32 .. + 31
  const int row = lane >> 1, col0 = (lane & 1) * 32;
  for (int c = 0; c < 32; ++c) my_o[row * LDF + col0 + c] = 0.f;
  float m = -INFINITY, l = 0.f;

  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) wmma::load_matrix_sync(qf[k], qs + warp * 16 * LDH + k * 16, LDH);

  for (int k0 = 0; k0 < n; k0 += BK) {
    __syncthreads();  // every warp is done with the previous k / v tiles
    load_tile(ks, k0, 1);
    load_tile(vs, k0, 2);
    __syncthreads();

    // s = q kᵀ for this warp's 16 rows: kᵀ as a column-major view of the k tile
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, ks + j * 16 * LDH + k * 16, LDH);
        wmma::mma_sync(acc, qf[k], kf, acc);
      }
      wmma::store_matrix_sync(my_s + j * 16, acc, LDF, wmma::mem_row_major);
    }
    __syncwarp();

    // online softmax over the row halves, statistics shared by the lane pair
    // (columns visited in a lane-rotated order: with the pitch of 68 floats this makes the 32
    // lanes hit 32 distinct banks)
    float mx = -INFINITY;
    for (int i = 0; i < 32; ++i) {
      const int c = (i + lane) & 31;
      float v = my_s[row * LDF + col0 + c] * qk_scale;
      if (k0 + col0 + c >= n) v = -INFINITY;
      my_s[row * LDF + col0 + c] = v;
      mx = fmaxf(mx, v);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
    const float m_new = fmaxf(m, mx);
    const float alpha = exp2f(m - m_new);
    float sum = 0.f;
    for (int i = 0; i < 32; ++i) {
      const int c = (i + lane) & 31;
      const float p = exp2f(my_s[row * LDF + col0 + c] - m_new);
      sum += p;
      my_p[row * LDH + col0 + c] = __float2bfloat16(p);
      my_o[row * LDF + col0 + c] *= alpha;
    }
    sum += __shfl_xor_sync(0xffffffff, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    __syncwarp();

    // o += p v
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, my_o + e * 16, LDF, wmma::mem_row_major);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, my_p + k * 16, LDH);
        wmma::load_matrix_sync(vf, vs + k * 16 * LDH + e * 16, LDH);
        wmma::mma_sync(acc, pf, vf, acc);
      }
      wmma::store_matrix_sync(my_o + e * 16, acc, LDF, wmma::mem_row_major);
    }
    __syncwarp();
  }

  const int q = q0 + warp * 16 + row;
  if (q < n) {
    const float inv = 1.f / l;
    __nv_bfloat16* dst = out + ((size_t)b * n + q) * heads * HD + (size_t)h * HD + col0;
    for (int c = 0; c < 32; c += 8) {
      uint4 packed;
      __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&packed);
#pragma unroll
      for (int t = 0; t < 8; ++t) e[t] = __float2bfloat16(my_o[row * LDF + col0 + c + t] * inv);
      *reinterpret_cast<uint4*>(dst + c) = packed;
    }
  }
#endif
}

// shared memory of the two kernels, in bytes (mirrored in cuda.rs)
// f32:  4 · 64 · 68 · 4                          = 69632
// bf16: 4 · 64 · 72 · 2 + 2 · 4 · 16 · 68 · 4    = 36864 + 34816 = 71680
