// Fused multi-head self-attention for inference, flash-attention style: softmax(q kᵀ · scale) v
// for one 64-query tile per block, streaming 64-key tiles through shared memory with an online
// softmax, so the [B, H, N, N] scores never reach global memory.
//
// Input: the qkv projection as it leaves the GEMM, `[B, N, 3, H, 64]` contiguous (no permute
// copies), plus its bias `[3, H, 64]` (added here rather than in a separate pass). Output: the
// context `[B, N, H, 64]`, the layout the output projection reads. Head dim 64 only (every
// DINOv2 / RAD-DINO size); other sizes take the composed path.
//
// Kernels: f32 on the CUDA cores (register tiles of 4×4); bf16 on the tensor cores, through
// mma.sync m16n8k16 with register-resident softmax (the default) or through WMMA 16×16×16
// fragments with the softmax in shared memory (the first kernel, kept for comparison), both
// with f32 accumulation. All keep the softmax statistics in f32 and work in base 2 (exp2 of
// s · scale · log2 e), as flash attention does.
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

// ---------------------------------------------------------------------------------------------
// bf16 on the tensor cores with `mma.sync.m16n8k16`, flash-attention-2 style: each of the 4 warps
// owns 16 query rows and keeps their q fragments, scores, probabilities and output accumulators
// in registers. The scores' accumulator layout is the A-fragment layout of the next product, so
// the probabilities feed `p · v` without a trip through shared memory (which the WMMA kernel
// above needs because its fragment layout is opaque).
//
// The k and v biases never enter the key loop: q · (k_j + b_k) = q · k_j + q · b_k, and the
// second term is the same for every key of a row, so it cancels in the softmax; and as a row's
// probabilities sum to one, Σ_j p_j (v_j + b_v) = Σ_j p_j v_j + b_v. So the k and v tiles are
// copied to shared memory untouched with cp.async, double-buffered (the next tile lands while
// this one is multiplied), and b_v is added to the normalised output in f32.
//
// Fragments are read from shared memory with ldmatrix (v transposed by ldmatrix.trans; plain
// 32-bit loads measured 30% slower on the H200). Two block sizes: 4 warps (64 query rows,
// `attn_fwd_bf16_mma`) and 8 warps (128 rows, `attn_fwd_bf16_mma128`, which halves the k/v
// traffic from L2 per query).
//
// Fragment coordinates of m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4: A (16 × 16) registers a0..a3 hold rows g, g + 8, g, g + 8 and
// columns 2t, 2t, 2t + 8, 2t + 8 (two consecutive columns each); B (16 × 8) registers b0, b1
// hold rows 2t and 2t + 8 (two consecutive rows each) of column g; C (16 × 8) holds rows g
// (c0, c1) and g + 8 (c2, c3) at columns 2t, 2t + 1.

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define LDT 72  // bf16 row pitch: 144 bytes, so the eight 16-byte rows of one ldmatrix hit distinct banks

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared, asynchronously; `valid == false` writes zeros and reads nothing
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// four 8 × 8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8
__device__ __forceinline__ void ldsm_x4(unsigned (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(unsigned (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// c += a · b, bf16 inputs, f32 accumulators
__device__ __forceinline__ void mma_16816(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                          unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// two floats as bf16, `lo` in the low half (the lower column / row of a fragment register)
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<unsigned*>(&v);
}
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.f32 %0, %1;\n" : "=f"(y) : "f"(x));  // exp2(-inf) = +0
  return y;
}

template <int WARPS>
__device__ __forceinline__ void attn_fwd_bf16_mma_body(const __nv_bfloat16* __restrict__ qkv,
                                                       const __nv_bfloat16* __restrict__ bias,
                                                       __nv_bfloat16* __restrict__ out, int n,
                                                       int heads, float scale) {
  constexpr int ROWS = 16 * WARPS, THREADS = 32 * WARPS;
  extern __shared__ float4 smem_mma[];
  __nv_bfloat16* qs = reinterpret_cast<__nv_bfloat16*>(smem_mma);  // [ROWS][LDT]
  __nv_bfloat16* ks = qs + ROWS * LDT;                             // [2][BK][LDT]
  __nv_bfloat16* vs = ks + 2 * BK * LDT;                           // [2][BK][LDT]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;          // fragment row group, thread in group
  const int lm = lane >> 3, lr = lane & 7;        // ldmatrix: which matrix, which row
  const int q0 = blockIdx.x * ROWS, h = blockIdx.y, b = blockIdx.z;
  const size_t row_stride = (size_t)3 * heads * HD;
  const __nv_bfloat16* base = qkv + (size_t)b * n * row_stride + (size_t)h * HD;
  const __nv_bfloat16* kbase = base + (size_t)heads * HD;
  const __nv_bfloat16* vbase = base + (size_t)2 * heads * HD;
  const int tiles = (n + BK - 1) / BK;

  // k and v of key tile `tile` into buffer `buf`: 64 rows of 8 16-byte chunks; rows past n are
  // zeros (their scores are masked, and zeros keep 0 · v finite)
  auto load_kv = [&](int tile, int buf) {
    const int k0 = tile * BK;
    for (int c = tid; c < BK * HD / 8; c += THREADS) {
      const int r = c >> 3, d = (c & 7) << 3;
      const bool valid = k0 + r < n;
      const size_t off = (size_t)(valid ? k0 + r : 0) * row_stride + d;
      cp_async_16(ks + (buf * BK + r) * LDT + d, kbase + off, valid);
      cp_async_16(vs + (buf * BK + r) * LDT + d, vbase + off, valid);
    }
    cp_async_commit();
  };
  load_kv(0, 0);

  // the q tile with its bias added in f32 and rounded once
  const __nv_bfloat16* bq = bias ? bias + (size_t)h * HD : nullptr;
  for (int c = tid; c < ROWS * HD / 8; c += THREADS) {
    const int r = c >> 3, d = (c & 7) << 3;
    uint4 raw = make_uint4(0u, 0u, 0u, 0u);
    if (q0 + r < n) {
      raw = *reinterpret_cast<const uint4*>(base + (size_t)(q0 + r) * row_stride + d);
      if (bq) {
        __nv_bfloat16* e = reinterpret_cast<__nv_bfloat16*>(&raw);
#pragma unroll
        for (int i = 0; i < 8; ++i)
          e[i] = __float2bfloat16(__bfloat162float(e[i]) + __bfloat162float(bq[d + i]));
      }
    }
    *reinterpret_cast<uint4*>(qs + r * LDT + d) = raw;
  }
  __syncthreads();

  // this warp's 16 q rows; their A fragments are re-read from shared memory at every tile
  // (4 ldmatrix against the 32 of k and v) rather than held, which keeps the kernel within
  // 128 registers without spilling
  const __nv_bfloat16* qw = qs + warp * 16 * LDT + (lr + 8 * (lm & 1)) * LDT + 8 * (lm >> 1);

  float o[8][4];  // output, 8 tiles of 8 dims: [0], [1] row g, [2], [3] row g + 8
#pragma unroll
  for (int i = 0; i < 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running maxima of rows g, g + 8 (· c, base 2)
  float l_lo = 0.f, l_hi = 0.f;              // this thread's share of the running sums
  const float qk_scale = scale * LOG2E;

  for (int tile = 0; tile < tiles; ++tile) {
    const int buf = tile & 1;
    if (tile + 1 < tiles) {
      load_kv(tile + 1, buf ^ 1);  // that buffer was released by the barrier ending the last tile
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* kt = ks + buf * BK * LDT;
    const __nv_bfloat16* vt = vs + buf * BK * LDT;
    const int k0 = tile * BK;

    // s = q kᵀ: 8 tiles of 8 keys; kᵀ's B fragments are k's rows read as they are stored
    float s[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      unsigned qf[4];
      ldsm_x4(qf, qw + kk * 16);
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        unsigned bf[4];  // b0, b1 of key tile 2 np, then of 2 np + 1
        ldsm_x4(bf, kt + (np * 16 + lr + 8 * (lm >> 1)) * LDT + kk * 16 + 8 * (lm & 1));
        mma_16816(s[2 * np], qf, bf[0], bf[1]);
        mma_16816(s[2 * np + 1], qf, bf[2], bf[3]);
      }
    }

    // online softmax; a row's 64 scores live in the 4 threads of its group. The maxima are
    // taken of the raw scores (scale > 0) and the scale folded into the exponent:
    // p = exp2(s · c − m · c) with c = scale · log2 e, one FFMA per score
    if (k0 + BK > n) {  // only the last tile has keys past n
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int key = k0 + i * 8 + 2 * t;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (key + e >= n) s[i][e] = s[i][2 + e] = -INFINITY;
        }
      }
    }
    float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      mx_lo = fmaxf(mx_lo, fmaxf(s[i][0], s[i][1]));
      mx_hi = fmaxf(mx_hi, fmaxf(s[i][2], s[i][3]));
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffff, mx_lo, off));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffff, mx_hi, off));
    }
    // every tile holds at least one key < n, so the new maxima are finite
    const float mn_lo = fmaxf(m_lo, mx_lo * qk_scale), mn_hi = fmaxf(m_hi, mx_hi * qk_scale);
    const float a_lo = fast_exp2(m_lo - mn_lo), a_hi = fast_exp2(m_hi - mn_hi);
    m_lo = mn_lo;
    m_hi = mn_hi;
    l_lo *= a_lo;
    l_hi *= a_hi;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      o[i][0] *= a_lo;
      o[i][1] *= a_lo;
      o[i][2] *= a_hi;
      o[i][3] *= a_hi;
    }
    // o += p v, one 16-key k-step at a time: the probabilities of key tiles 2 kk and 2 kk + 1
    // are the A fragment of k-step kk (the score accumulators' layout is the A layout), and
    // v's B fragments are pairs of consecutive keys of one dim (ldmatrix.trans)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      float p[2][4];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float* si = s[2 * kk + half];
        p[half][0] = fast_exp2(fmaf(si[0], qk_scale, -mn_lo));
        p[half][1] = fast_exp2(fmaf(si[1], qk_scale, -mn_lo));
        p[half][2] = fast_exp2(fmaf(si[2], qk_scale, -mn_hi));
        p[half][3] = fast_exp2(fmaf(si[3], qk_scale, -mn_hi));
        l_lo += p[half][0] + p[half][1];
        l_hi += p[half][2] + p[half][3];
      }
      const unsigned pf[4] = {pack_bf16(p[0][0], p[0][1]), pack_bf16(p[0][2], p[0][3]),
                              pack_bf16(p[1][0], p[1][1]), pack_bf16(p[1][2], p[1][3])};
#pragma unroll
      for (int dp = 0; dp < 4; ++dp) {
        unsigned bf[4];  // b0, b1 of dim tile 2 dp, then of 2 dp + 1
        ldsm_x4_trans(bf, vt + (kk * 16 + lr + 8 * (lm & 1)) * LDT + dp * 16 + 8 * (lm >> 1));
        mma_16816(o[2 * dp], pf, bf[0], bf[1]);
        mma_16816(o[2 * dp + 1], pf, bf[2], bf[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the prefetch of the tile after next
  }

#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    l_lo += __shfl_xor_sync(0xffffffff, l_lo, off);
    l_hi += __shfl_xor_sync(0xffffffff, l_hi, off);
  }
  const float inv_lo = 1.f / l_lo, inv_hi = 1.f / l_hi;
  const __nv_bfloat16* bv = bias ? bias + (size_t)(2 * heads + h) * HD : nullptr;
  const int r_lo = q0 + warp * 16 + g, r_hi = r_lo + 8;
  __nv_bfloat16* dst_lo = out + ((size_t)b * n + r_lo) * heads * HD + (size_t)h * HD;
  __nv_bfloat16* dst_hi = dst_lo + (size_t)8 * heads * HD;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int d = i * 8 + 2 * t;
    const float b0 = bv ? __bfloat162float(bv[d]) : 0.f;
    const float b1 = bv ? __bfloat162float(bv[d + 1]) : 0.f;
    if (r_lo < n)
      *reinterpret_cast<unsigned*>(dst_lo + d) =
          pack_bf16(o[i][0] * inv_lo + b0, o[i][1] * inv_lo + b1);
    if (r_hi < n)
      *reinterpret_cast<unsigned*>(dst_hi + d) =
          pack_bf16(o[i][2] * inv_hi + b0, o[i][3] * inv_hi + b1);
  }
}

// at most 128 registers a thread, so that 16 warps fit an SM (4 or 2 blocks)
extern "C" __global__ void __launch_bounds__(128, 4)
    attn_fwd_bf16_mma(const __nv_bfloat16* __restrict__ qkv, const __nv_bfloat16* __restrict__ bias,
                      __nv_bfloat16* __restrict__ out, int n, int heads, float scale) {
  attn_fwd_bf16_mma_body<4>(qkv, bias, out, n, heads, scale);
}

extern "C" __global__ void __launch_bounds__(256, 2)
    attn_fwd_bf16_mma128(const __nv_bfloat16* __restrict__ qkv,
                         const __nv_bfloat16* __restrict__ bias, __nv_bfloat16* __restrict__ out,
                         int n, int heads, float scale) {
  attn_fwd_bf16_mma_body<8>(qkv, bias, out, n, heads, scale);
}

#else  // before sm_80: no bf16 mma; the Rust side never launches these (`cuda_supports`)

extern "C" __global__ void attn_fwd_bf16_mma(const __nv_bfloat16*, const __nv_bfloat16*,
                                             __nv_bfloat16*, int, int, float) {
  __trap();
}
extern "C" __global__ void attn_fwd_bf16_mma128(const __nv_bfloat16*, const __nv_bfloat16*,
                                                __nv_bfloat16*, int, int, float) {
  __trap();
}

#endif

// shared memory of the kernels, in bytes (mirrored in cuda.rs)
// f32:       4 · 64 · 68 · 4                          = 69632
// bf16 wmma: 4 · 64 · 72 · 2 + 2 · 4 · 16 · 68 · 4    = 36864 + 34816 = 71680
// bf16 mma:  (16 · warps + 2 · 64 + 2 · 64) · 72 · 2   = 46080 (4 warps), 55296 (8 warps)
