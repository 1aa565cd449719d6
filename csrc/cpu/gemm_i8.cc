// int8 GEMM of the grouped convs (sqbert_fast/quantization.py is the definition):
//   C[M, N] = act(float(quant(A) @ B) * (a_scale[r] * w_scale[n]) + bias[n])
// A: fp32 activation rows, quantized here, per row (symmetric: inv = 127 / max|a|, q = rne(a * inv));
// B: int8 weights, symmetric per output column, packed at load by this variant's pack_panel.
// The int32 products are exact: every variant's accumulators equal the scalar ones bit for bit
// (gemm with w_scale == nullptr returns them, as floats, for the tests).
//
// Compiled once per int8 variant (CMake: sqf_add_int8_isa), each in its own namespace, chosen at run
// time by int8_kernels() (dispatch.cc). Micro-kernels, one accumulator tile of MR rows x NR columns
// in registers, K streaming:
//   i8_scalar       [K/4][16][4] int8, plain int32 loops: the reference.
//   i8_avx2         [K/2][16][2] int16 (weights widened at load), vpmaddwd + vpaddd, 6 x 16. No
//                   vpmaddubsw: its u8 x s8 pair sums saturate at int16 (2 x 255 x 127 > 32767).
//   i8_avx_vnni     [K/4][16][4] int8, vpdpbusd ymm (AVX-VNNI), 6 x 16.
//   i8_avx512_vnni  [K/4][32][4] int8, vpdpbusd zmm, 12 x 32.
//   i8_amx          [K/4][32][4] int8 (K padded to 64): a 16 x 64-byte B tile is 16 k-quads of one
//                   16-column half of a panel (row stride 128 bytes); a 32 x 32 int32 C block = 4
//                   tiles, 2 A + 2 B tiles per 64-deep step (tdpbssd: signed x signed, no shift).
//   i8_neon_dot     [K/4][16][4] int8, sdot (vdotq_s32), 4-6 x 16; signed activations, no shift.
//   i8_neon_i8mm    [K/8][16][8] int8 = [K/8][8 column pairs][2][8], smmla (vmmlaq_s32: a 2 x 8 block
//                   of A times an 8 x 2 block of B into a 2 x 2 int32 tile), 4-6 x 16. A is quantized
//                   into row pairs interleaved by 8-byte k-chunks, [M/2][K/8][2][8] (the A operand of
//                   one smmla is one 16-byte load); signed activations, no shift. The accumulator
//                   [r0c0 r0c1 r1c0 r1c1] of pair p, column pair j holds rows 2p, 2p+1 of columns 2j, 2j+1.
// vpdpbusd multiplies unsigned by signed bytes: activations go in as q + 128 and the epilogue takes
// 128 * sum_k w[k][n] (w_sum, from the packing) off each accumulator, which is the same integer.
#include <algorithm>
#include <limits>

#include "kernel_common.h"

#if defined(SQF_I8_AVX512_VNNI) || defined(SQF_I8_AVX_VNNI) || defined(SQF_I8_AVX2) || defined(SQF_I8_AMX)
#include <immintrin.h>
#endif

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

#if defined(SQF_I8_AMX)
constexpr int64_t NR = 32, KS = 4, KPAD = 64;
constexpr int MR = 32;
constexpr bool kUnsigned = false;
using AType = int8_t;
using BType = int8_t;
#elif defined(SQF_I8_AVX512_VNNI)
constexpr int64_t NR = 32, KS = 4;
constexpr int MR = 12;
constexpr bool kUnsigned = true;
using AType = uint8_t;
using BType = int8_t;
#elif defined(SQF_I8_AVX_VNNI)
constexpr int64_t NR = 16, KS = 4;
constexpr int MR = 6;
constexpr bool kUnsigned = true;
using AType = uint8_t;
using BType = int8_t;
#elif defined(SQF_I8_AVX2)
constexpr int64_t NR = 16, KS = 2;
constexpr int MR = 6;
constexpr bool kUnsigned = false;
using AType = int16_t;
using BType = int16_t;
#elif defined(SQF_I8_NEON_DOT)
constexpr int64_t NR = 16, KS = 4;
#if defined(__aarch64__)
constexpr int MR = 6;
#else
constexpr int MR = 4;  // SIMDe on x86: 16 xmm registers
#endif
constexpr bool kUnsigned = false;
using AType = int8_t;
using BType = int8_t;
#elif defined(SQF_I8_NEON_I8MM)
constexpr int64_t NR = 16, KS = 8;
#if defined(__aarch64__)
constexpr int MR = 6;  // 3 row pairs x 8 column pairs = 24 accumulators + 3 A + B of the 32 q registers
#else
constexpr int MR = 4;  // SIMDe on x86: 16 accumulators, as i8_neon_dot's 4 x 16
#endif
constexpr bool kUnsigned = false;
using AType = int8_t;
using BType = int8_t;
#else
constexpr int64_t NR = 16, KS = 4;
constexpr int MR = 4;
constexpr bool kUnsigned = false;
using AType = int8_t;
using BType = int8_t;
#endif

constexpr int64_t kQmax = 127;
// smmla takes A two rows at a time: row tiles (and the tail dispatch) step by whole row pairs.
#if defined(SQF_I8_NEON_I8MM)
constexpr int kRowStep = 2;
#else
constexpr int kRowStep = 1;
#endif
static_assert(MR % kRowStep == 0, "the row tile holds whole row pairs");
#if !defined(SQF_I8_AMX)
constexpr int64_t KPAD = KS;  // K of a panel is padded to this (zero weights)
#endif

inline int64_t ksteps(int64_t K) { return ceil_div(K, KPAD) * (KPAD / KS); }
int64_t panel_bytes(int64_t K) { return ksteps(K) * KS * NR * static_cast<int64_t>(sizeof(BType)); }

// dst (one panel, [ceil(K/KS)][NR][KS] of BType) from w[n * ldw + k], n < nb, k < K; zero-padded.
// With KS = 8 (i8mm) that is [K/8][NR/2][2][8]: one 16-byte load is the B operand of one smmla.
void pack_panel(const int8_t* w, int64_t ldw, int64_t K, int64_t nb, int8_t* dst_bytes) {
  BType* dst = reinterpret_cast<BType*>(dst_bytes);
  const int64_t ks = ksteps(K);
  std::fill(dst, dst + ks * NR * KS, BType(0));
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t k = 0; k < K; ++k) dst[(k / KS) * NR * KS + n * KS + k % KS] = static_cast<BType>(w[n * ldw + k]);
}

// Rounds v * inv to the nearest integer (ties to even, as torch.round), clamped to [-127, 127], + the
// unsigned offset; n values of v -> q (n <= 16 per call on the vector paths).
inline void quantize_chunk(const float* v, float inv, int64_t n, AType* q) {
  const int offset = kUnsigned ? 128 : 0;
#if defined(__AVX512F__)
  if (n == 16) {  // |v * inv| <= 127 up to rounding, so saturating narrows never clip a real value
    const __m512i x = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v), _mm512_set1_ps(inv))),
                                       _mm512_set1_epi32(offset));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), kUnsigned ? _mm512_cvtusepi32_epi8(x) : _mm512_cvtsepi32_epi8(x));
    return;
  }
#elif defined(__AVX2__)
  if (n == 16) {
    const __m256 vi = _mm256_set1_ps(inv);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v), vi));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + 8), vi));
    const __m256i s16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);  // 16 int16, in order
    if (sizeof(AType) == 2) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), s16);
    } else {
      const __m256i u = _mm256_add_epi16(s16, _mm256_set1_epi16(static_cast<int16_t>(offset)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q),
                       _mm_packus_epi16(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
    }
    return;
  }
#elif defined(SQF_NEON)
  if (n == 16) {  // FCVTNS rounds ties to even
    const float32x4_t vi = vdupq_n_f32(inv);
    int16x8_t h0 = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v), vi))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + 4), vi))));
    int16x8_t h1 = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + 8), vi))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(v + 12), vi))));
    vst1q_s8(reinterpret_cast<int8_t*>(q), vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
    return;
  }
#endif
  for (int64_t k = 0; k < n; ++k) {
    float r = std::nearbyint(v[k] * inv);
    r = std::min(std::max(r, -static_cast<float>(kQmax)), static_cast<float>(kQmax));
    q[k] = static_cast<AType>(static_cast<int>(r) + offset);
  }
}

// One row: q[k] (+128 for the unsigned variants) for k < K, zeros up to Kq; returns the scale
// max|a| / 127, NaN when the row holds a NaN or an Inf (the output row is NaN then, as PyTorch's is).
#if defined(__AVX512F__) && defined(__AVX512BW__)
// AVX-512: max|a| as the unsigned max of the sign-cleared bit patterns (their order is the floats' order,
// and NaN or Inf is any pattern >= 0x7f800000), one and + one max per 16 values where the portable form
// below takes abs, max and an FMA; then 64 values per step: 4 conversions, 3 packs (no clipping: |a * inv|
// <= 127 up to rounding) and one 64-byte store. The int8 inputs' quantization was 15% of an int8 forward
// (default config, 8 x 128, i8_amx).
float quantize_row(const float* a, int64_t K, int64_t Kq, AType* q) {
  static_assert(sizeof(AType) == 1, "byte activations");
  const __m512i abs_bits = _mm512_set1_epi32(0x7fffffff);
  __m512i vmax = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16)
    vmax = _mm512_max_epu32(vmax, _mm512_and_si512(_mm512_loadu_si512(a + k), abs_bits));
  if (k < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);
    vmax = _mm512_max_epu32(vmax, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, a + k), abs_bits));
  }
  const uint32_t bits = _mm512_reduce_max_epu32(vmax);
  const int offset = kUnsigned ? 128 : 0;
  if (bits >= 0x7f800000u) {  // keep the integer part defined; the scale carries the NaN
    std::fill(q, q + Kq, static_cast<AType>(offset));
    return std::numeric_limits<float>::quiet_NaN();
  }
  float amax;
  std::memcpy(&amax, &bits, sizeof amax);
  const float inv = amax > 0.f ? static_cast<float>(kQmax) / amax : 0.f;
  const __m512 vi = _mm512_set1_ps(inv);
  // packs interleave 128-bit lanes: dword 4j + d of the packed bytes holds values 4j..4j+3 of input d
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  for (k = 0; k + 64 <= K; k += 64) {
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(a + k), vi));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(a + k + 16), vi));
    const __m512i i2 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(a + k + 32), vi));
    const __m512i i3 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(a + k + 48), vi));
    __m512i b = _mm512_permutexvar_epi32(
        order, _mm512_packs_epi16(_mm512_packs_epi32(i0, i1), _mm512_packs_epi32(i2, i3)));
    if (kUnsigned) b = _mm512_xor_si512(b, _mm512_set1_epi8(static_cast<char>(0x80)));  // q + 128
    _mm512_storeu_si512(q + k, b);
  }
  for (; k < K; k += 16) quantize_chunk(a + k, inv, imin(16, K - k), q + k);
  std::fill(q + K, q + Kq, static_cast<AType>(offset));
  return amax / static_cast<float>(kQmax);
}
#else
float quantize_row(const float* a, int64_t K, int64_t Kq, AType* q) {
  vf vamax = vzero(), vpoison = vzero();
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    const vf x = vload(a + k);
    vamax = vmax(vamax, vabs(x));
    vpoison = vfma(x, vzero(), vpoison);  // NaN * 0 and Inf * 0 are NaN
  }
  if (k < K) {
    const vf x = vload(a + k, tail_mask(K - k));
    vamax = vmax(vamax, vabs(x));
    vpoison = vfma(x, vzero(), vpoison);
  }
  const float amax = vmaxall(vamax), poison = vsum(vpoison);
  const float inv = amax > 0.f ? static_cast<float>(kQmax) / amax : 0.f;
  const int offset = kUnsigned ? 128 : 0;
  if (poison != poison) {  // keep the integer part defined; the scale carries the NaN
    std::fill(q, q + Kq, static_cast<AType>(offset));
    return poison;
  }
  for (k = 0; k < K; k += 16) quantize_chunk(a + k, inv, imin(16, K - k), q + k);
  std::fill(q + K, q + Kq, static_cast<AType>(offset));
  return amax / static_cast<float>(kQmax);
}
#endif

// The A operand: rows quantized by quantize_row, scales to as[M], in the micro-kernel's layout, zero
// rows from M up to Mp (whole row tiles are read). Row r of Kq values at aq + r * Kq, except on i8mm:
// row pairs [Mp / 2][Kq / 8][2][8], so pair p starts at aq + 2 * p * Kq all the same.
void quantize_a(const float* A, int64_t lda, int64_t M, int64_t K, int64_t Kq, int64_t Mp, AType* aq, float* as) {
#if defined(SQF_I8_NEON_I8MM)
  thread_local aligned_vector<AType> row_buf;
  if (static_cast<int64_t>(row_buf.size()) < Kq) row_buf.resize(static_cast<size_t>(Kq));
  AType* const row = row_buf.data();
  std::fill(aq + (M & ~int64_t(1)) * Kq, aq + Mp * Kq, AType(0));  // odd M: the last pair's second row too
  for (int64_t r = 0; r < M; ++r) {
    as[r] = quantize_row(A + r * lda, K, Kq, row);
    AType* dst = aq + (r & ~int64_t(1)) * Kq + (r & 1) * KS;
    for (int64_t s = 0; s < Kq / KS; ++s) std::memcpy(dst + s * 2 * KS, row + s * KS, static_cast<size_t>(KS));
  }
#else
  for (int64_t r = 0; r < M; ++r) as[r] = quantize_row(A + r * lda, K, Kq, aq + r * Kq);
  std::fill(aq + M * Kq, aq + Mp * Kq, AType(0));
#endif
}

#if !defined(SQF_I8_AMX)
// acc[R][NR] = A rows (each Kq = ksteps * KS values, row stride lda) . one B panel
template <int R>
void ukernel(const AType* A, int64_t lda, const BType* B, int64_t ks, int32_t* acc) {
#if defined(SQF_I8_AVX512_VNNI)
  __m512i c0[R], c1[R];
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_si512();
  for (int64_t s = 0; s < ks; ++s) {
    const __m512i b0 = _mm512_load_si512(B), b1 = _mm512_load_si512(B + 64);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t a4;
      std::memcpy(&a4, A + r * lda + s * 4, 4);
      const __m512i a = _mm512_set1_epi32(a4);
      c0[r] = _mm512_dpbusd_epi32(c0[r], a, b0);
      c1[r] = _mm512_dpbusd_epi32(c1[r], a, b1);
    }
    B += NR * KS;
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_si512(acc + r * NR, c0[r]);
    _mm512_storeu_si512(acc + r * NR + 16, c1[r]);
  }
#elif defined(SQF_I8_AVX_VNNI) || defined(SQF_I8_AVX2)
  __m256i c0[R], c1[R];
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm256_setzero_si256();
  for (int64_t s = 0; s < ks; ++s) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + 32 / sizeof(BType)));
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t a4;  // 4 u8 (VNNI) or 2 int16 (AVX2): one 32-bit word either way
      std::memcpy(&a4, A + r * lda + s * KS, 4);
      const __m256i a = _mm256_set1_epi32(a4);
#if defined(SQF_I8_AVX_VNNI)
      c0[r] = _mm256_dpbusd_avx_epi32(c0[r], a, b0);
      c1[r] = _mm256_dpbusd_avx_epi32(c1[r], a, b1);
#else
      c0[r] = _mm256_add_epi32(c0[r], _mm256_madd_epi16(b0, a));
      c1[r] = _mm256_add_epi32(c1[r], _mm256_madd_epi16(b1, a));
#endif
    }
    B += NR * KS;
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * NR), c0[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * NR + 8), c1[r]);
  }
#elif defined(SQF_I8_NEON_DOT)
  int32x4_t c[R][4];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) c[r][v] = vdupq_n_s32(0);
  for (int64_t s = 0; s < ks; ++s) {
    const int8x16_t b0 = vld1q_s8(B), b1 = vld1q_s8(B + 16), b2 = vld1q_s8(B + 32), b3 = vld1q_s8(B + 48);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t a4;
      std::memcpy(&a4, A + r * lda + s * 4, 4);
      const int8x16_t a = vreinterpretq_s8_s32(vdupq_n_s32(a4));
      c[r][0] = vdotq_s32(c[r][0], b0, a);
      c[r][1] = vdotq_s32(c[r][1], b1, a);
      c[r][2] = vdotq_s32(c[r][2], b2, a);
      c[r][3] = vdotq_s32(c[r][3], b3, a);
    }
    B += NR * KS;
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) vst1q_s32(acc + r * NR + 4 * v, c[r][v]);
#elif defined(SQF_I8_NEON_I8MM)
  // A: R / 2 row pairs, pair p at A + 2 * p * lda, each [ks][2][8]; B: [ks][NR / 2][2][8]
  constexpr int P = R / 2, J = NR / 2;
  int32x4_t c[P][J];
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < J; ++j) c[p][j] = vdupq_n_s32(0);
  for (int64_t s = 0; s < ks; ++s) {
    int8x16_t a[P];
    for (int p = 0; p < P; ++p) a[p] = vld1q_s8(A + 2 * p * lda + s * 16);
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const int8x16_t b = vld1q_s8(B + 16 * j);
      for (int p = 0; p < P; ++p) c[p][j] = vmmlaq_s32(c[p][j], a[p], b);
    }
    B += NR * KS;
  }
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < J; j += 2) {  // low halves: row 2p, high halves: row 2p + 1
      vst1q_s32(acc + 2 * p * NR + 2 * j, vcombine_s32(vget_low_s32(c[p][j]), vget_low_s32(c[p][j + 1])));
      vst1q_s32(acc + (2 * p + 1) * NR + 2 * j, vcombine_s32(vget_high_s32(c[p][j]), vget_high_s32(c[p][j + 1])));
    }
#else
  for (int r = 0; r < R; ++r)
    for (int64_t n = 0; n < NR; ++n) acc[r * NR + n] = 0;
  for (int64_t s = 0; s < ks; ++s) {
    for (int r = 0; r < R; ++r) {
      const AType* a = A + r * lda + s * KS;
      for (int64_t n = 0; n < NR; ++n) {
        int32_t sum = 0;
        for (int64_t i = 0; i < KS; ++i) sum += static_cast<int32_t>(a[i]) * static_cast<int32_t>(B[n * KS + i]);
        acc[r * NR + n] += sum;
      }
    }
    B += NR * KS;
  }
#endif
}

// r rows (a multiple of kRowStep, <= R) through the ukernel of that height
template <int R>
void tail_rows(int r, const AType* A, int64_t lda, const BType* B, int64_t ks, int32_t* acc) {
  if (r == R) return ukernel<R>(A, lda, B, ks, acc);
  if constexpr (R > kRowStep) tail_rows<R - kRowStep>(r, A, lda, B, ks, acc);
}

#else

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// acc[32][32] (rows of a 32-row block; rows past M are zero rows of A) = A block . one B panel:
// tiles 0-3 the int32 C block, 4-5 A, 6-7 B, configured per call (other code on this thread, oneDNN
// inside torch, may reconfigure the tiles).
void amx_block(const AType* A, int64_t lda, const BType* B, int64_t ks, int32_t* acc) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t kb = 0; kb < ks / 16; ++kb) {
    _tile_loadd(4, A + kb * 64, lda);
    _tile_loadd(5, A + 16 * lda + kb * 64, lda);
    _tile_loadd(6, B + kb * 16 * 128, 128);
    _tile_loadd(7, B + kb * 16 * 128 + 64, 128);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  _tile_stored(0, acc, 128);
  _tile_stored(1, acc + 16, 128);
  _tile_stored(2, acc + 16 * 32, 128);
  _tile_stored(3, acc + 16 * 32 + 16, 128);
}

#endif

// The W accumulators at acc, less the unsigned variants' 128 * column sum (comp), as floats.
inline vf acc_to_float(const int32_t* acc, const int32_t* comp) {
#if defined(__AVX512F__)
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc), _mm512_load_si512(comp)));
#elif defined(__AVX2__)
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(acc)),
                                             _mm256_load_si256(reinterpret_cast<const __m256i*>(comp))));
#elif defined(SQF_NEON)
  return vcvtq_f32_s32(vsubq_s32(vld1q_s32(acc), vld1q_s32(comp)));
#else
  vf r;
  for (int i = 0; i < W; ++i) r.v[i] = static_cast<float>(acc[i] - comp[i]);
  return r;
#endif
}

// One panel's per-column epilogue operands, zero-padded to NR (the vector loads read whole panels).
struct PanelCols {
  alignas(64) int32_t comp[NR];
  alignas(64) float scale[NR];
  alignas(64) float bias[NR];
  PanelCols(const int32_t* wsum, const float* w_scale, const float* b, int64_t nb) {
    for (int64_t j = 0; j < NR; ++j) {
      comp[j] = j < nb && kUnsigned ? 128 * wsum[j] : 0;
      scale[j] = j < nb && w_scale ? w_scale[j] : 0.f;
      bias[j] = j < nb && b ? b[j] : 0.f;
    }
  }
};

// C row segment [nb] from one row of accumulators: dequantize, + bias, activation. raw: the integers.
void epilogue(const int32_t* acc, const PanelCols& pc, float a_scale, bool raw, float* c, int64_t nb, Act act) {
  const vf va = vset1(a_scale);
  for (int64_t j = 0; j < nb; j += W) {
    vf v = acc_to_float(acc + j, pc.comp + j);
    if (!raw) {
      v = vfma(v, vmul(va, vload(pc.scale + j)), vload(pc.bias + j));
      if (act == Act::gelu) v = vgelu(v);
    }
    if (j + W <= nb)
      vstore(c + j, v);
    else
      vstore(c + j, v, tail_mask(nb - j));
  }
  if (!raw && act != Act::none && act != Act::gelu)
    for (int64_t j = 0; j < nb; ++j) c[j] = activate(c[j], act);
}

// quantize_a into this thread's buffers (scales of the pad rows M .. Mp - 1 are 0). Addressed once per
// call: each thread_local access in a shared object is a __tls_get_addr call (2.6% of an int8 scoring
// run when the GEMM loops touched them per block and per row).
struct QuantA {
  AType* q;
  float* scale;
};
QuantA quantize_a_here(const float* A, int64_t lda, int64_t M, int64_t K, int64_t Kq, int64_t Mp) {
  thread_local aligned_vector<AType> aq_buf;
  thread_local aligned_vector<float> as_buf;
  if (static_cast<int64_t>(aq_buf.size()) < Mp * Kq) aq_buf.resize(static_cast<size_t>(Mp * Kq));
  if (static_cast<int64_t>(as_buf.size()) < Mp) as_buf.resize(static_cast<size_t>(Mp));
  const QuantA a{aq_buf.data(), as_buf.data()};
  quantize_a(A, lda, M, K, Kq, Mp, a.q, a.scale);
  std::fill(a.scale + M, a.scale + Mp, 0.f);
  return a;
}

#if defined(SQF_I8_AMX)
// tiles 0-3 the int32 C block, 4-5 A, 6-7 B (amx_block), 16 rows of 64 bytes each
void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}
#endif

void gemm(const float* A, int64_t lda, const int8_t* Bbytes, int64_t K, const float* w_scale,
          const int32_t* w_sum, float* C, int64_t ldc, int64_t M, int64_t N, const float* bias, Act act) {
  if (M <= 0 || N <= 0) return;
  const int64_t ks = ksteps(K), Kq = ks * KS, Mp = ceil_div(M, MR) * MR;
  const auto [aq, as] = quantize_a_here(A, lda, M, K, Kq, Mp);
  const BType* B = reinterpret_cast<const BType*>(Bbytes);
  alignas(64) int32_t acc[MR * NR];
#if defined(SQF_I8_AMX)
  configure_tiles();
#endif
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int64_t nb = imin(NR, N - j0);
    const BType* Bp = B + (j0 / NR) * ks * KS * NR;
    const PanelCols pc(w_sum ? w_sum + j0 : nullptr, w_scale ? w_scale + j0 : nullptr, bias ? bias + j0 : nullptr, nb);
    for (int64_t m = 0; m < M; m += MR) {
      const int rows = static_cast<int>(imin(MR, M - m));
#if defined(SQF_I8_AMX)
      amx_block(aq + m * Kq, Kq, Bp, ks, acc);
#else
      // whole row pairs on i8mm (an odd M's pad row is zeros); the epilogue writes `rows` rows
      tail_rows<MR>((rows + kRowStep - 1) / kRowStep * kRowStep, aq + m * Kq, Kq, Bp, ks, acc);
#endif
      for (int r = 0; r < rows; ++r) epilogue(acc + r * NR, pc, as[m + r], !w_scale, C + (m + r) * ldc + j0, nb, act);
    }
  }
#if defined(SQF_I8_AMX)
  _tile_release();
#endif
}

#if defined(SQF_I8_AMX)
// gemm's 32 x 32 tile blocks handed to epi dequantized, without bias or activation (Int8Kernels).
void gemm_blocks(const float* A, int64_t lda, const int8_t* Bbytes, int64_t K, const float* w_scale,
                 const int32_t* w_sum, int64_t M, int64_t N, BlockEpilogue epi, void* ctx) {
  static_assert(MR == 32 && NR == 32, "BlockEpilogue blocks are 32 x 32");
  if (M <= 0 || N <= 0) return;
  const int64_t ks = ksteps(K), Kq = ks * KS, Mp = ceil_div(M, MR) * MR;
  const auto [aq, as] = quantize_a_here(A, lda, M, K, Kq, Mp);  // rows past M: zero rows, scale 0
  const BType* B = reinterpret_cast<const BType*>(Bbytes);
  alignas(64) int32_t acc[MR * NR];
  alignas(64) float block[MR * NR];
  configure_tiles();
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const BType* Bp = B + (j0 / NR) * ks * KS * NR;
    const PanelCols pc(w_sum ? w_sum + j0 : nullptr, w_scale + j0, nullptr, NR);
    for (int64_t m = 0; m < M; m += MR) {
      amx_block(aq + m * Kq, Kq, Bp, ks, acc);
      for (int r = 0; r < MR; ++r) epilogue(acc + r * NR, pc, as[m + r], false, block + r * NR, NR, Act::none);
      epi(ctx, m, j0 / NR, block);  // must leave the tiles alone (qkv_epilogue: AVX-512 bf16 conversions)
    }
  }
  _tile_release();
}
#endif

}  // namespace

#define SQF_STR2(x) #x
#define SQF_STR(x) SQF_STR2(x)

const Int8Kernels& int8_table() {
#if defined(SQF_I8_AMX)
  static const Int8Kernels t{SQF_STR(SQF_ISA_NAME), NR, MR, panel_bytes, pack_panel, gemm, gemm_blocks};
#else
  static const Int8Kernels t{SQF_STR(SQF_ISA_NAME), NR, MR, panel_bytes, pack_panel, gemm, nullptr};
#endif
  return t;
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
