// Grouped Q/K/V projection + softmax(Q K^T / sqrt(d) + mask) V over packed varlen sequences.
//
// Q/K/V come from one grouped-GEMM launch (grouped_linear.cu; q | k | v column blocks of a
// [T, 3*hidden] workspace), then one attention block per (sequence, 64-query tile, head) streams
// the sequence's keys in 64-row K/V tiles flash-attention style: each warp owns 16 query rows,
// S = Q K^T goes through fp32 shared memory, the online softmax (running max and sum per row,
// base-2 exponent) rescales the fp32 output tile in shared memory, and P (rounded to the model
// dtype, as flash-attention does) times V accumulates into it on tensor cores. Keys with
// key_valid = 0 (padding kept only for the pooler) get probability 0 and, in the optional
// pre-softmax score output, float lowest — what transformers' additive mask gives.
// fp32 runs the same tiles on CUDA cores with 32-row tiles (shared-memory budget).
#include <cmath>
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace sqf {
namespace cuda {

namespace {

struct AttnSmem {  // byte offsets of the shared-memory regions, 128-byte aligned
  int q, k, v, p, s, o, l, total;
};

__host__ __device__ constexpr int align128(int x) { return (x + 127) / 128 * 128; }

__host__ __device__ inline AttnSmem attn_smem(int BQ, int DP, int esize) {
  const int pad = 16 / esize, ldq = DP + pad, ldp = BQ + pad, lds = BQ + 4, ldo = DP + 4;
  AttnSmem m{};
  int off = 0;
  m.q = off; off = align128(off + BQ * ldq * esize);
  m.k = off; off = align128(off + BQ * ldq * esize);
  m.v = off; off = align128(off + BQ * ldq * esize);
  m.p = off; off = align128(off + BQ * ldp * esize);
  m.s = off; off = align128(off + BQ * lds * 4);
  m.o = off; off = align128(off + BQ * ldo * 4);
  m.l = off; off = align128(off + BQ * 4);
  m.total = off;
  return m;
}

template <typename T> constexpr int attn_bq() { return sizeof(T) == 2 ? 64 : 32; }

template <typename T, int BQ>
__global__ void __launch_bounds__(BQ * 2) attention_kernel(const AttentionArgs a, int d, int DP, float scale) {
  using M = TileMma<T>;
  constexpr int NT = BQ * 2, PAD = pad_elems<T>();
  constexpr float LOG2E = 1.4426950408889634f;
  const float NEG_INF = -__int_as_float(0x7f800000);
  extern __shared__ __align__(128) unsigned char smem[];
  const AttnSmem lay = attn_smem(BQ, DP, sizeof(T));
  T* Qs = reinterpret_cast<T*>(smem + lay.q);
  T* Ks = reinterpret_cast<T*>(smem + lay.k);
  T* Vs = reinterpret_cast<T*>(smem + lay.v);
  T* Ps = reinterpret_cast<T*>(smem + lay.p);
  float* Ss = reinterpret_cast<float*>(smem + lay.s);
  float* Os = reinterpret_cast<float*>(smem + lay.o);
  float* Ls = reinterpret_cast<float*>(smem + lay.l);
  const int ldq = DP + PAD, ldp = BQ + PAD, lds = BQ + 4, ldo = DP + 4;

  const int b = blockIdx.x, q0 = blockIdx.y * BQ, h = blockIdx.z;
  const int64_t base = a.cu_seqlens[b];
  const int L = static_cast<int>(a.cu_seqlens[b + 1] - base);
  if (q0 >= L) return;
  const int H = a.hidden;
  const int64_t ld = 3 * int64_t(H);
  const T* qkv = static_cast<const T*>(a.qkv);
  const bool vec = vec_ok<T>(qkv, ld, int64_t(h) * d, d) && H % Vec<T>::n == 0;
  const int nk = DP / 16;

  load_tile<T, NT>(Qs, ldq, BQ, DP, qkv + int64_t(h) * d, ld, base + q0, nullptr, min(BQ, L - q0), d, vec);
  for (int i = threadIdx.x; i < BQ * ldo; i += NT) Os[i] = 0.f;
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r0w = warp * 16;
  typename M::FA qf[kAttnMaxHeadDim / 16];
#pragma unroll
  for (int kk = 0; kk < kAttnMaxHeadDim / 16; ++kk)
    if (kk < nk) M::load_a(qf[kk], Qs + r0w * ldq + kk * 16, ldq);

  const int r = r0w + (lane >> 1), hf = lane & 1, qi = q0 + r;
  T* sc = a.scores ? static_cast<T*>(a.scores) + a.score_offsets[b] + int64_t(h) * L * L : nullptr;
  const uint8_t* kvalid = a.key_valid + base;
  float m_run = NEG_INF, l_run = 0.f;

  for (int kv0 = 0; kv0 < L; kv0 += BQ) {
    __syncthreads();  // every warp is done with the previous K/V tile
    const int kvv = min(BQ, L - kv0);
    load_tile<T, NT>(Ks, ldq, BQ, DP, qkv + H + int64_t(h) * d, ld, base + kv0, nullptr, kvv, d, vec);
    load_tile<T, NT>(Vs, ldq, BQ, DP, qkv + 2 * int64_t(H) + int64_t(h) * d, ld, base + kv0, nullptr, kvv, d, vec);
    __syncthreads();

#pragma unroll
    for (int n = 0; n < BQ / 16; ++n) {
      typename M::FC s;
      M::zero(s);
#pragma unroll
      for (int kk = 0; kk < kAttnMaxHeadDim / 16; ++kk) {
        if (kk < nk) {
          typename M::FBc kb;
          M::load_bc(kb, Ks + n * 16 * ldq + kk * 16, ldq);
          M::mma(s, qf[kk], kb);
        }
      }
      M::store(Ss + r0w * lds + n * 16, s, lds);
    }
    __syncwarp();

    // Online softmax: the two lanes of a pair share row r, each takes half of the columns.
    constexpr int HALF = BQ / 2;
    float* srow = Ss + r * lds;
    T* prow = Ps + r * ldp;
    float mloc = NEG_INF;
    for (int jj = 0; jj < HALF; ++jj) {
      const int j = hf * HALF + jj, key = kv0 + j;
      const float s = srow[j] * scale;
      const bool valid = key < L && kvalid[key] != 0;
      if (sc && qi < L && key < L) sc[int64_t(qi) * L + key] = from_f<T>(valid ? s : lowest<T>());
      const float t = valid ? s * LOG2E : NEG_INF;
      srow[j] = t;
      mloc = fmaxf(mloc, t);
    }
    mloc = fmaxf(mloc, __shfl_xor_sync(0xffffffffu, mloc, 1));
    const float m_new = fmaxf(m_run, mloc);
    const float alpha = m_run == NEG_INF ? 0.f : exp2f(m_run - m_new);
    float lsum = 0.f;
    for (int jj = 0; jj < HALF; ++jj) {
      const int j = hf * HALF + jj;
      const float t = srow[j];
      const float p = t == NEG_INF ? 0.f : exp2f(t - m_new);
      prow[j] = from_f<T>(p);
      lsum += p;
    }
    lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
    l_run = l_run * alpha + lsum;
    m_run = m_new;
    float* orow = Os + r * ldo;
    for (int c = hf; c < DP; c += 2) orow[c] *= alpha;
    __syncwarp();

#pragma unroll
    for (int n = 0; n < kAttnMaxHeadDim / 16; ++n) {
      if (n < nk) {
        typename M::FC o;
        M::load_c(o, Os + r0w * ldo + n * 16, ldo);
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
          typename M::FA pa;
          typename M::FBr vb;
          M::load_a(pa, Ps + r0w * ldp + kk * 16, ldp);
          M::load_br(vb, Vs + kk * 16 * ldq + n * 16, ldq);
          M::mma(o, pa, vb);
        }
        M::store(Os + r0w * ldo + n * 16, o, ldo);
      }
    }
    __syncwarp();
  }

  if (hf == 0) Ls[r] = l_run > 0.f ? 1.0f / l_run : 0.f;
  __syncwarp();
  T* ctx = static_cast<T*>(a.ctx);
  for (int idx = lane; idx < 16 * d; idx += 32) {
    const int rr = r0w + idx / d, c = idx % d;
    if (q0 + rr < L) ctx[(base + q0 + rr) * H + int64_t(h) * d + c] = from_f<T>(Os[rr * ldo + c] * Ls[rr]);
  }
}

template <typename T>
void launch_attention(const AttentionArgs& a, cudaStream_t stream) {
  const int d = a.hidden / a.heads;
  const AttnPlan plan = plan_attention(a.batch, a.max_len, a.heads, d, TypeOf<T>::value);
  if (plan.grid_x == 0 || plan.grid_y == 0) return;
  constexpr int BQ = attn_bq<T>();
  auto kernel = attention_kernel<T, BQ>;
  set_smem_limit(reinterpret_cast<const void*>(kernel), plan.smem_bytes);
  kernel<<<dim3(plan.grid_x, plan.grid_y, plan.grid_z), plan.threads, plan.smem_bytes, stream>>>(
      a, d, plan.head_dim_padded, 1.0f / std::sqrt(static_cast<float>(d)));
  check_launch("attention");
}

}  // namespace

int attention_block_rows(DType t) { return t == DType::f32 ? attn_bq<float>() : attn_bq<__half>(); }

AttnPlan plan_attention(int batch, int max_len, int heads, int head_dim, DType t) {
  if (head_dim < 1 || head_dim > kAttnMaxHeadDim)
    throw std::invalid_argument("the CUDA attention kernel supports head sizes 1.." + std::to_string(kAttnMaxHeadDim) +
                                ", got " + std::to_string(head_dim));
  if (heads > 65535) throw std::invalid_argument("too many attention heads for the CUDA grid");
  const int BQ = attention_block_rows(t);
  AttnPlan p;
  p.head_dim_padded = round_up(head_dim, 16);
  p.grid_x = batch;
  p.grid_y = ceil_div_i(max_len, BQ);
  p.grid_z = heads;
  p.threads = BQ * 2;
  p.smem_bytes = attn_smem(BQ, p.head_dim_padded, dtype_size(t)).total;
  return p;
}

void attention(DType t, const AttentionArgs& a, cudaStream_t stream) {
  switch (t) {
    case DType::f32: return launch_attention<float>(a, stream);
    case DType::f16: return launch_attention<__half>(a, stream);
    case DType::bf16: return launch_attention<__nv_bfloat16>(a, stream);
  }
}

void qkv_attention(DType t, const void* x, int64_t rows, const int64_t* live, const Conv& q,
                   const Conv& k, const Conv& v, void* qkv, const AttentionArgs& a, int sm_count,
                   cudaStream_t stream) {
  const int H = a.hidden;
  const int64_t col0[3] = {0, H, 2 * int64_t(H)};
  const Conv convs[3] = {q, k, v};
  if (q.groups == k.groups && k.groups == v.groups) {
    grouped_linear(t, x, H, nullptr, rows, live, convs, 3, qkv, 3 * int64_t(H), col0, act_none, sm_count, stream);
  } else {
    for (int i = 0; i < 3; ++i)
      grouped_linear(t, x, H, nullptr, rows, live, &convs[i], 1, qkv, 3 * int64_t(H), &col0[i], act_none, sm_count, stream);
  }
  AttentionArgs at = a;
  at.qkv = qkv;
  attention(t, at, stream);
}

}  // namespace cuda
}  // namespace sqf
