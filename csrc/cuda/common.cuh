// Device helpers shared by the CUDA kernel files: element types, one 16x16x16 tile-MMA API with
// a tensor-core (WMMA, fp16/bf16 in, fp32 accumulate) and a CUDA-core (fp32 parity) variant,
// guarded global->shared tile loads, activations and the row-tile LayerNorm finisher.
//
// Layout contract (every kernel): activations are token-major [tokens, channels] in the model
// dtype, sequences packed back to back (cu_seqlens, int64). Conv weights keep transformers'
// [out, in/groups] layout, which is exactly the column-major B operand of Y = X W^T, so no
// weight repacking is needed. Kernels that need the live token count read it on the device
// (cu_seqlens[batch]) so a CUDA graph captured for a bucket of shapes serves smaller inputs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <stdexcept>

#include "kernels.h"

namespace sqf {
namespace cuda {

template <typename T> struct TypeOf;
template <> struct TypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct TypeOf<__half> { static constexpr DType value = DType::f16; };
template <> struct TypeOf<__nv_bfloat16> { static constexpr DType value = DType::bf16; };

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// torch.finfo(dtype).min: what transformers' additive mask puts on masked keys.
template <typename T> __device__ __forceinline__ float lowest();
template <> __device__ __forceinline__ float lowest<float>() { return -3.402823466e38f; }
template <> __device__ __forceinline__ float lowest<__half>() { return -65504.0f; }
template <> __device__ __forceinline__ float lowest<__nv_bfloat16>() { return -3.38953139e38f; }

// Elements per 16-byte vector, and the smem row padding (in elements) that keeps rows 16-byte
// aligned while shifting banks.
template <typename T> struct Vec { static constexpr int n = 16 / sizeof(T); };
template <typename T> constexpr int pad_elems() { return 16 / sizeof(T); }

__host__ __device__ constexpr int round_up(int x, int m) { return (x + m - 1) / m * m; }
__host__ __device__ constexpr int ceil_div_i(int a, int b) { return (a + b - 1) / b; }

// ---- tile MMA: C[16x16] += A[16x16] * B[16x16], A row-major in smem ----------------------------
// Bc: B(k, n) = p[n * ld + k] (a [n][k] weight tile);  Br: B(k, n) = p[k * ld + n].
// Accumulators leave through store() into fp32 smem, so epilogues never depend on the
// fragment's register layout.
template <typename T>
struct TileMma {
  using FA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major>;
  using FBc = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, T, nvcuda::wmma::col_major>;
  using FBr = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, T, nvcuda::wmma::row_major>;
  using FC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
  static __device__ __forceinline__ void zero(FC& c) { nvcuda::wmma::fill_fragment(c, 0.0f); }
  static __device__ __forceinline__ void load_a(FA& a, const T* p, int ld) { nvcuda::wmma::load_matrix_sync(a, p, ld); }
  static __device__ __forceinline__ void load_bc(FBc& b, const T* p, int ld) { nvcuda::wmma::load_matrix_sync(b, p, ld); }
  static __device__ __forceinline__ void load_br(FBr& b, const T* p, int ld) { nvcuda::wmma::load_matrix_sync(b, p, ld); }
  template <typename FB>
  static __device__ __forceinline__ void mma(FC& c, const FA& a, const FB& b) { nvcuda::wmma::mma_sync(c, a, b, c); }
  static __device__ __forceinline__ void store(float* p, const FC& c, int ld) {
    nvcuda::wmma::store_matrix_sync(p, c, ld, nvcuda::wmma::mem_row_major);
  }
  static __device__ __forceinline__ void load_c(FC& c, const float* p, int ld) {
    nvcuda::wmma::load_matrix_sync(c, p, ld, nvcuda::wmma::mem_row_major);
  }
};

// fp32 parity path: the same tiles on CUDA cores (tf32 tensor cores would miss the 1e-4 bar).
// Lane l owns row l/2, columns (l%2)*8 .. +8 of the 16x16 accumulator.
template <>
struct TileMma<float> {
  struct FA { const float* p; int ld; };
  struct FBc { const float* p; int ld; };
  struct FBr { const float* p; int ld; };
  struct FC { float x[8]; };
  static __device__ __forceinline__ void zero(FC& c) {
#pragma unroll
    for (int j = 0; j < 8; ++j) c.x[j] = 0.f;
  }
  static __device__ __forceinline__ void load_a(FA& a, const float* p, int ld) { a.p = p; a.ld = ld; }
  static __device__ __forceinline__ void load_bc(FBc& b, const float* p, int ld) { b.p = p; b.ld = ld; }
  static __device__ __forceinline__ void load_br(FBr& b, const float* p, int ld) { b.p = p; b.ld = ld; }
  // c += a * b where b's element (k, n) is b[k * ks + n * ns]
  static __device__ __forceinline__ void mma_strided(FC& c, const FA& a, const float* b, int ks, int ns) {
    const int lane = threadIdx.x & 31, r = lane >> 1, c0 = (lane & 1) * 8;
#pragma unroll 4
    for (int k = 0; k < 16; ++k) {
      const float av = a.p[r * a.ld + k];
#pragma unroll
      for (int j = 0; j < 8; ++j) c.x[j] = fmaf(av, b[k * ks + (c0 + j) * ns], c.x[j]);
    }
  }
  static __device__ __forceinline__ void mma(FC& c, const FA& a, const FBc& b) { mma_strided(c, a, b.p, 1, b.ld); }
  static __device__ __forceinline__ void mma(FC& c, const FA& a, const FBr& b) { mma_strided(c, a, b.p, b.ld, 1); }
  static __device__ __forceinline__ void store(float* p, const FC& c, int ld) {
    const int lane = threadIdx.x & 31, r = lane >> 1, c0 = (lane & 1) * 8;
#pragma unroll
    for (int j = 0; j < 8; ++j) p[r * ld + c0 + j] = c.x[j];
  }
  static __device__ __forceinline__ void load_c(FC& c, const float* p, int ld) {
    const int lane = threadIdx.x & 31, r = lane >> 1, c0 = (lane & 1) * 8;
#pragma unroll
    for (int j = 0; j < 8; ++j) c.x[j] = p[r * ld + c0 + j];
  }
};

// ---- global -> shared tile copy ------------------------------------------------------------------
// dst[R][ldd] <- rows [0, R) x cols [0, C) of a row-major source whose row i starts at
// src + row(i) * ld (row(i) = rows ? rows[row0 + i] : row0 + i). Rows >= r_valid and columns
// >= c_valid are zero-filled, so K/N tails contribute nothing to the MMA. 16-byte vector loads
// when `vec` (source rows 16-byte aligned, c_valid a multiple of the vector width).
template <typename T, int NT>
__device__ __forceinline__ void load_tile(T* dst, int ldd, int R, int C, const T* src, int64_t ld,
                                          int64_t row0, const int64_t* rows, int r_valid,
                                          int c_valid, bool vec) {
  constexpr int V = Vec<T>::n;
  if (vec) {
    const int cv = C / V;  // C is always a multiple of 16 here
    for (int idx = threadIdx.x; idx < R * cv; idx += NT) {
      const int i = idx / cv, j = (idx % cv) * V;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (i < r_valid && j < c_valid) {
        const int64_t r = rows ? rows[row0 + i] : row0 + i;
        v = *reinterpret_cast<const uint4*>(src + r * ld + j);
      }
      *reinterpret_cast<uint4*>(dst + i * ldd + j) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < R * C; idx += NT) {
      const int i = idx / C, j = idx % C;
      T v = from_f<T>(0.f);
      if (i < r_valid && j < c_valid) {
        const int64_t r = rows ? rows[row0 + i] : row0 + i;
        v = src[r * ld + j];
      }
      dst[i * ldd + j] = v;
    }
  }
}

template <typename T>
__host__ __device__ inline bool vec_ok(const void* p, int64_t ld, int64_t col0, int64_t cols) {
  constexpr int V = 16 / sizeof(T);
  return (reinterpret_cast<uintptr_t>(p) % 16 == 0) && ld % V == 0 && col0 % V == 0 && cols % V == 0;
}

// ---- activations (ids match kernels.h Act) -------------------------------------------------------
__device__ __forceinline__ float activate(float x, int act) {
  switch (act) {
    case 1: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 2: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case 3: return x > 0.f ? x : 0.f;
    case 4: return x / (1.0f + __expf(-x));
    case 5: return tanhf(x);
    default: return x;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ int64_t live_rows(int64_t cap, const int64_t* dev_count) {
  if (!dev_count) return cap;
  const int64_t n = *dev_count;
  return n < cap ? n : cap;
}

// ---- row-tile LayerNorm finisher ---------------------------------------------------------------
// Every block that contributes columns (or a K split) of rows [row0, row0 + rows) has added its
// part of y = conv + bias + residual into `pre` (fp32, zero between uses). The last of the
// `expected` blocks to arrive normalises those rows into `out`, then zeroes `pre` and the
// counter again, so the workspace is clean for the next launch without a memset.
template <typename T>
__device__ void ln_tile_finish(float* pre, int* counter, int expected, int64_t row0, int rows,
                               int N, const T* ln_w, const T* ln_b, float eps, T* out) {
  __shared__ int is_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(counter, 1) == expected - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const float inv_n = 1.0f / static_cast<float>(N);
  for (int r = warp; r < rows; r += nwarps) {
    float* p = pre + (row0 + r) * N;
    float s = 0.f;
    for (int c = lane; c < N; c += 32) s += __ldcg(p + c);
    const float mean = warp_sum(s) * inv_n;
    float s2 = 0.f;
    for (int c = lane; c < N; c += 32) {
      const float d = __ldcg(p + c) - mean;
      s2 += d * d;
    }
    const float rstd = rsqrtf(warp_sum(s2) * inv_n + eps);
    T* o = out + (row0 + r) * N;
    for (int c = lane; c < N; c += 32) {
      const float v = __ldcg(p + c);
      o[c] = from_f<T>((v - mean) * rstd * to_f(ln_w[c]) + to_f(ln_b[c]));
      __stcg(p + c, 0.f);
    }
  }
  if (threadIdx.x == 0) *counter = 0;
}

// A LayerNorm epilogue (LnEpilogue) as a kernel parameter, in the kernel's dtype.
template <typename T>
struct LnTile {
  const T* w;
  const T* b;
  float eps;
  T* out;
  float* pre;
  int* counters;

  static LnTile from(const LnEpilogue& ln) {
    return {static_cast<const T*>(ln.ln_w), static_cast<const T*>(ln.ln_b), ln.eps, static_cast<T*>(ln.out),
            ln.pre, ln.counters};
  }
  // ln_tile_finish for this block's row tile; every block of the (y, z) grid plane adds to it
  __device__ void finish(int64_t row0, int rows, int N) const {
    ln_tile_finish<T>(pre, counters + blockIdx.x, gridDim.y * gridDim.z, row0, rows, N, w, b, eps, out);
  }
};

// Raises the dynamic shared memory limit of `kernel` once per (kernel, device).
void set_smem_limit(const void* kernel, int bytes);

}  // namespace cuda
}  // namespace sqf
