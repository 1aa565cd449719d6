// Helpers shared by the kernel files of one ISA variant. Everything here lives in the
// per-ISA namespace (SQF_ISA_NS is set by CMake for each variant) so no inline function is
// shared between translation units compiled with different instruction sets.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "simd.h"  // checks SQF_ISA_NS

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// fp32 -> bf16, round to nearest even (inputs are finite: activations, weights)
inline uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
// Two values as one bf16 VNNI word: lo in the low half (the even k), hi in the high half.
inline uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(to_bf16(lo)) | static_cast<uint32_t>(to_bf16(hi)) << 16;
}

#if defined(__AVX512BF16__)
// Rows a and b of 16 values, rounded to bf16 (nearest even), as 16 VNNI words (a_j, b_j): one
// conversion of both rows, (a0 .. a15, b0 .. b15), then one 16-bit permutation.
inline __m512i bf16_pairs(__m512 a, __m512 b) {
  alignas(64) static const int16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512bh x = _mm512_cvtne2ps_pbh(b, a);
  return _mm512_permutexvar_epi16(_mm512_load_si512(order), reinterpret_cast<const __m512i&>(x));
}
#endif

// Runs f(task, thread_index) on the pool; F is instantiated per ISA namespace.
template <typename F>
void parallel_for(ThreadPool& pool, int64_t n, F& f) {
  pool.parallel_for(
      n, [](void* ctx, int64_t i, int t) { (*static_cast<F*>(ctx))(i, t); }, &f);
}

inline float activate(float x, Act act) {
  switch (act) {
    case Act::none: return x;
    case Act::gelu: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Act::gelu_tanh:
      return 0.5f * x * (1.0f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Act::relu: return x > 0.f ? x : 0.f;
    case Act::silu: return x / (1.0f + std::exp(-x));
    case Act::tanh: return std::tanh(x);
  }
  return x;
}

#if defined(__AVX512F__)
// (also any 16 x 16 block of 32-bit words: bf16 pairs as floats' bit patterns)
// r[0..15] (rows of 16 floats) -> r[i] = column i: unpack 32/64-bit pairs, then 128-bit lanes.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
}
#endif

// dst[c * ldd + r] = src[r * lds + c] * scale (+ add[r]) for r < rows, c < cols; AVX-512 moves
// 16 x 16 blocks through one in-register transpose (K^T in attention, the FFN's transposed tasks).
inline void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd,
                      float scale = 1.f, const float* add = nullptr) {
  int64_t r0 = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(scale);
  for (; r0 + 16 <= rows; r0 += 16) {
    const __m512 b = add ? _mm512_loadu_ps(add + r0) : _mm512_setzero_ps();
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m512 v[16];
      for (int q = 0; q < 16; ++q) v[q] = _mm512_mul_ps(_mm512_loadu_ps(src + (r0 + q) * lds + c0), vs);
      transpose16(v);  // v[q] = column c0 + q of rows r0 .. r0 + 15
      for (int q = 0; q < 16; ++q) _mm512_storeu_ps(dst + (c0 + q) * ldd + r0, add ? _mm512_add_ps(v[q], b) : v[q]);
    }
    for (int64_t r = r0; r < r0 + 16; ++r)
      for (int64_t c = c0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c] * scale + (add ? add[r] : 0.f);
  }
#endif
  for (int64_t r = r0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c] * scale + (add ? add[r] : 0.f);
}

// Panel width of packed weights for this ISA (two vectors); Encoder::pack reads it from the
// kernel table.
constexpr int64_t kNR = 2 * W;

// out = LayerNorm(a + r) over n channels (r may be null; out may alias a). Two-pass
// statistics in fp32.
inline void add_layernorm_row(const float* a, const float* r, const float* w, const float* b,
                              float eps, float* out, int64_t n) {
  vf s = vzero();
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    vf v = vload(a + i);
    if (r) v = vadd(v, vload(r + i));
    vstore(out + i, v);
    s = vadd(s, v);
  }
  const vmask tm = tail_mask(n - i);
  if (i < n) {
    vf v = vload(a + i, tm);
    if (r) v = vadd(v, vload(r + i, tm));
    vstore(out + i, v, tm);
    s = vadd(s, v);
  }
  const float mean = vsum(s) / static_cast<float>(n);
  const vf vm = vset1(mean);
  vf q = vzero();
  for (i = 0; i + W <= n; i += W) {
    const vf d = vsub(vload(out + i), vm);
    q = vfma(d, d, q);
  }
  float var = vsum(q);
  for (; i < n; ++i) var += (out[i] - mean) * (out[i] - mean);
  const float rstd = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
  const vf vr = vset1(rstd);
  for (i = 0; i + W <= n; i += W)
    vstore(out + i, vfma(vmul(vsub(vload(out + i), vm), vr), vload(w + i), vload(b + i)));
  if (i < n)
    vstore(out + i, vfma(vmul(vsub(vload(out + i, tm), vm), vr), vload(w + i, tm), vload(b + i, tm)),
           tm);
}

// C[M, N] = act(A[M, K] @ B[K, N] + bias), or C += A @ B when `accumulate` (then bias = nullptr,
// act = none); B row-major with row stride ldb (activations: K^T and V inside attention, the
// transposed activations of the FFN). bias is per column ([N]), or per row ([M]) when bias_rows.
void gemm(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K, float* C,
          int64_t ldc, int64_t M, int64_t N, const float* bias, Act act, bool accumulate = false,
          bool bias_rows = false);
// C[M, N] = act(A[M, K] @ B + bias) with B bf16 VNNI panels (see kernels.h), fp32 accumulation.
void gemm_bf16(const float* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act);
// C[M, N] = A @ B with A bf16 rows already (row stride lda, K a multiple of 32, rows up to M
// rounded to 32 readable) and B VNNI panels: attention's QK^T on Q as the Q/K/V projection left it.
void gemm_bf16_a16(const uint16_t* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
                   int64_t M, int64_t N);
// C = A @ B (A fp32 rows, rounded to bf16; B VNNI panels of 32 columns) handed over block by block
// (BlockEpilogue, kernels.h: the fused Q/K/V projection writes bf16 Q, K^T and V).
void gemm_bf16_blocks(const float* A, int64_t lda, int64_t M, int64_t K, const uint16_t* B, int64_t N,
                      BlockEpilogue epi, void* ctx);
// The FFN's transposed bf16 task (ffn_ln.cc): C[M, m] = A @ B with A bf16 rows [M][K] used in place
// (the conv weights; K and M multiples of 32) and B VNNI panels of 32 tokens [ceil(m/32)][K/2][32][2],
// finished block by block instead of going through an fp32 [M][m] buffer:
//   _pack:    act(C + bias per row) rounded to bf16, as the next GEMM's token panels
//             dst[ceil(m/32)][M/2][32] (words: rows 2i, 2i + 1 of one token);
//   _store_t: out[t * ldo + r] = C[r][t] + bias[r] for tokens t < m (back to token rows).
void gemm_bf16_rows_pack(const uint16_t* A, int64_t K, const uint16_t* B, int64_t M, int64_t m,
                         const float* bias, Act act, uint32_t* dst);
void gemm_bf16_rows_store_t(const uint16_t* A, int64_t K, const uint16_t* B, int64_t M, int64_t m,
                            const float* bias, float* out, int64_t ldo);
// C = act(A @ W_g[:, j0:j0+n] + b_g[j0:j0+n]) for group g of a packed grouped linear (fp32 or
// bf16 packing); j0 must be a multiple of panel_width(w).
void gemm_group(const GroupedLinear& w, int64_t g, int64_t j0, int64_t n, const float* A,
                int64_t lda, float* C, int64_t ldc, int64_t M, Act act);
// C[M, N] = act(A[M, K] @ B + bias) with B fp16 panels (see kernels.h).
void gemm_f16(const float* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
              int64_t M, int64_t N, const float* bias, Act act);
inline int64_t panel_width(const GroupedLinear& w) {
  return w.int8() ? w.i8->nr : w.bf16() ? kBf16Panel : w.f16() ? kF16Panel : kNR;
}
// int8 weights whose variant computes 32-row tiles (i8_amx): row blocks in whole 32s
inline bool tiles32(const GroupedLinear& w) { return w.int8() && w.i8->mr == 32; }
// The table of this file's int8 variant (gemm_i8.cc, compiled per int8 variant only).
const Int8Kernels& int8_table();
// Row blocks of a row-blocked op with `parallel_other` independent tasks per row block: n blocks
// of whole units (MR rows; 32 when unit32: the AMX tiles' rows, or the FFN's transposed GEMMs'
// token panels), sizes differing by at most one unit.
struct RowBlocks {
  int64_t rows = 0, unit = 1, units = 0, n = 1;
  int64_t begin(int64_t b) const { return imin(rows, (b * units / n) * unit); }
  int64_t end(int64_t b) const { return begin(b + 1); }
};
RowBlocks row_blocks(int64_t rows, int64_t parallel_other, int threads, bool unit32);

void grouped_linear(const GroupedLinear& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                    int64_t rows, Act act, ThreadPool& pool);

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
