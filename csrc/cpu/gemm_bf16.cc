// bf16 GEMM with fp32 accumulation: C[M, N] = act(A[M, K] @ B + bias), A fp32 rows (rounded to
// bf16 on the way in, RNE), B bf16 weights packed at load (Encoder::pack) as VNNI panels
//     [ceil(N/32)][Kp/2][32 columns][2 consecutive k],  Kp = K rounded up to 32, zero-padded,
// which serves both instruction sets:
//   amx:         a 16 x 32 bf16 B tile is 16 k-pair rows of one 16-column half of a panel (row
//                stride 128 bytes); a 32 x 32 C block = 4 tiles, 2 A tiles + 2 B tiles per
//                32-deep k step (tdpbf16ps); the C tiles start from the bias (loaded from 16
//                copies of it) and are stored straight to C, or, with an activation or a
//                partial block, go through a small fp32 buffer and the AVX-512 epilogue.
//   avx512_bf16: vdpbf16ps on a 12 x 32 register tile (24 zmm), one broadcast k-pair of A per row.
//   otherwise:   a portable loop with the same roundings: the reference in tests.
// A rows are converted into a per-thread bf16 buffer (rows rounded up to 32, zero-padded) that
// grows to the largest block seen and is then reused: no allocation in steady state.
#include <cstring>
#include <vector>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

inline float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// A[M, K] fp32 (stride lda) -> buf [Mp][Kp] bf16, zero-padded to Mp = M rounded up to 32.
uint16_t* convert_a(const float* A, int64_t lda, int64_t M, int64_t K, int64_t Kp) {
  thread_local std::vector<uint16_t> buf;
  const int64_t Mp = ceil_div(M, 32) * 32;
  if (static_cast<int64_t>(buf.size()) < Mp * Kp) buf.resize(static_cast<size_t>(Mp * Kp));
  uint16_t* out = buf.data();
  for (int64_t r = 0; r < Mp; ++r) {
    uint16_t* o = out + r * Kp;
    int64_t k = 0;
    if (r < M) {
      const float* a = A + r * lda;
#if defined(__AVX512BF16__)
      for (; k + 32 <= K; k += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(a + k));
        _mm512_storeu_si512(o + k, reinterpret_cast<const __m512i&>(v));
      }
#endif
      for (; k < K; ++k) o[k] = to_bf16(a[k]);
    }
    for (; k < Kp; ++k) o[k] = 0;
  }
  return out;
}

// bias + activation + store of one fp32 row segment of nb <= 32 values.
inline void epilogue_row(const float* acc, const float* bias, float* c, int64_t nb, Act act) {
  for (int64_t j0 = 0; j0 < nb; j0 += W) {
    const vmask m = tail_mask(nb - j0);
    vf v = vload(acc + j0, m);
    if (bias) v = vadd(v, vload(bias + j0, m));
    if (act == Act::gelu) v = vgelu(v);
    vstore(c + j0, v, m);
  }
  if (act != Act::none && act != Act::gelu)
    for (int64_t j = 0; j < nb; ++j) c[j] = activate(c[j], act);
}

#if defined(__AMX_BF16__)

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

void gemm_impl(const uint16_t* Ab, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act, bool prefetch_a = false) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  // Configured per call: other code on this thread (oneDNN inside torch) may reconfigure tiles.
  _tile_loadconfig(&cfg);
  alignas(64) float acc[32 * 32];
  alignas(64) float bias_rows[16 * 32];  // 16 copies of the panel's 32 biases: C tiles start from it
  const int64_t a_stride = Kp * 2, kb_n = Kp / 32;
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const uint16_t* Bp = B + (j0 / 32) * Kp * 32;
    const int64_t nb = imin(32, N - j0);
    if (bias)
      for (int r = 0; r < 16; ++r)
        for (int j = 0; j < 32; ++j) bias_rows[r * 32 + j] = j < nb ? bias[j0 + j] : 0.f;
    for (int64_t m0 = 0; m0 < M; m0 += 32) {
      const int64_t mb = imin(32, M - m0);
      if (bias) {
        _tile_loadd(0, bias_rows, 128);
        _tile_loadd(1, bias_rows + 16, 128);
        _tile_loadd(2, bias_rows, 128);
        _tile_loadd(3, bias_rows + 16, 128);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      const uint16_t* A0 = Ab + m0 * Kp;
      // A streamed from memory (weights read in place): fetch the next 32-row block meanwhile
      const char* next_a = prefetch_a && m0 + 32 < M ? reinterpret_cast<const char*>(A0 + 32 * Kp) : nullptr;
      const int64_t a_bytes = 32 * Kp * 2, a_per_kb = ceil_div(a_bytes, kb_n * 64) * 64;
      for (int64_t kb = 0; kb < kb_n; ++kb) {
        if (next_a)
          for (int64_t o = kb * a_per_kb; o < imin((kb + 1) * a_per_kb, a_bytes); o += 64)
            _mm_prefetch(next_a + o, _MM_HINT_T0);
        _tile_loadd(4, A0 + kb * 32, a_stride);
        _tile_loadd(5, A0 + 16 * Kp + kb * 32, a_stride);
        _tile_loadd(6, Bp + kb * 16 * 64, 128);
        _tile_loadd(7, Bp + kb * 16 * 64 + 32, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      if (act == Act::none && mb == 32 && nb == 32) {  // bias already in: tiles straight to C
        float* c = C + m0 * ldc + j0;
        _tile_stored(0, c, ldc * 4);
        _tile_stored(1, c + 16, ldc * 4);
        _tile_stored(2, c + 16 * ldc, ldc * 4);
        _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
        continue;
      }
      _tile_stored(0, acc, 128);
      _tile_stored(1, acc + 16, 128);
      _tile_stored(2, acc + 16 * 32, 128);
      _tile_stored(3, acc + 16 * 32 + 16, 128);
      for (int64_t r = 0; r < mb; ++r) epilogue_row(acc + r * 32, nullptr, C + (m0 + r) * ldc + j0, nb, act);
    }
  }
  _tile_release();
}

#elif defined(__AVX512BF16__)

template <int R>
void ukernel_bf16(const uint16_t* A, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
                  int64_t nb, const float* bias, Act act) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < Kp / 2; ++kk) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(B + kk * 64);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(B + kk * 64 + 32);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, A + r * Kp + 2 * kk, 4);
      const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
      c0[r] = _mm512_dpbf16_ps(c0[r], a, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], a, b1);
    }
  }
  alignas(64) float acc[32];
  for (int r = 0; r < R; ++r) {
    _mm512_store_ps(acc, c0[r]);
    _mm512_store_ps(acc + 16, c1[r]);
    epilogue_row(acc, bias, C + r * ldc, nb, act);
  }
}

template <int R>
void tail_bf16(int r, const uint16_t* A, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t nb, const float* bias, Act act) {
  if (r == R) return ukernel_bf16<R>(A, Kp, B, C, ldc, nb, bias, act);
  if constexpr (R > 1) tail_bf16<R - 1>(r, A, Kp, B, C, ldc, nb, bias, act);
}

void gemm_impl(const uint16_t* Ab, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act, bool /*prefetch_a: AMX only*/ = false) {
  constexpr int MR = 12;
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const uint16_t* Bp = B + (j0 / 32) * Kp * 32;
    const int64_t nb = imin(32, N - j0);
    const float* bj = bias ? bias + j0 : nullptr;
    int64_t m = 0;
    for (; m + MR <= M; m += MR) ukernel_bf16<MR>(Ab + m * Kp, Kp, Bp, C + m * ldc + j0, ldc, nb, bj, act);
    if (m < M)
      tail_bf16<MR - 1>(static_cast<int>(M - m), Ab + m * Kp, Kp, Bp, C + m * ldc + j0, ldc, nb, bj, act);
  }
}

#else

void gemm_impl(const uint16_t* Ab, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act, bool /*prefetch_a: AMX only*/ = false) {
  float acc[32];
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const uint16_t* Bp = B + (j0 / 32) * Kp * 32;
    const int64_t nb = imin(32, N - j0);
    for (int64_t r = 0; r < M; ++r) {
      for (int j = 0; j < 32; ++j) acc[j] = 0.f;
      const uint16_t* a = Ab + r * Kp;
      for (int64_t kk = 0; kk < Kp / 2; ++kk) {
        const float a0 = from_bf16(a[2 * kk]), a1 = from_bf16(a[2 * kk + 1]);
        const uint16_t* b = Bp + kk * 64;
        for (int j = 0; j < 32; ++j)
          acc[j] += a0 * from_bf16(b[2 * j]) + a1 * from_bf16(b[2 * j + 1]);
      }
      epilogue_row(acc, bias ? bias + j0 : nullptr, C + r * ldc + j0, nb, act);
    }
  }
}

#endif

}  // namespace

void gemm_bf16(const float* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act) {
  const int64_t Kp = ceil_div(K, 32) * 32;
  const uint16_t* Ab = convert_a(A, lda, M, K, Kp);
  gemm_impl(Ab, Kp, B, C, ldc, M, N, bias, act);
}

void gemm_bf16_rows(const uint16_t* A, int64_t K, const uint16_t* B, float* C, int64_t ldc, int64_t M,
                    int64_t N) {
  gemm_impl(A, K, B, C, ldc, M, N, nullptr, Act::none, /*prefetch_a=*/true);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
