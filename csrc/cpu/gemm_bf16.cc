// bf16 GEMM with fp32 accumulation: C[M, N] = act(A[M, K] @ B + bias), A fp32 rows (rounded to
// bf16 on the way in, RNE), B bf16 weights packed at load (Encoder::pack) as VNNI panels
//     [ceil(N/32)][Kp/2][32 columns][2 consecutive k],  Kp = K rounded up to 32, zero-padded,
// which serves both instruction sets:
//   amx:         a 16 x 32 bf16 B tile is 16 k-pair rows of one 16-column half of a panel (row
//                stride 128 bytes); a 32 x 32 C block = 4 tiles, 2 A tiles + 2 B tiles per
//                32-deep k step (tdpbf16ps); the C tiles start from the bias (a stride-0 tile
//                load of its row) and are stored straight to C, or, with an activation or a
//                partial block, go through a small fp32 buffer and the AVX-512 epilogue. Each
//                32-row A block meets every panel while the next panel is prefetched into L1.
//   avx512_bf16: vdpbf16ps on a 12 x 32 register tile (24 zmm), one broadcast k-pair of A per row.
//   otherwise:   a portable loop with the same roundings: the reference in tests.
// A rows are converted into a per-thread bf16 buffer (rows rounded up to 32, zero-padded) that
// grows to the largest block seen and is then reused: no allocation in steady state.
// The FFN's in-place form (gemm_bf16_rows_pack / _store_t, rows_blocks) swaps the roles: bf16
// weights as the A rows, read where the parameters live, tokens as the B panels, and an epilogue
// that finishes each 32 x 32 block in L1.
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
  thread_local aligned_vector<uint16_t> buf;
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

// Eight 16 x 64-byte tiles: 0-3 the 32 x 32 fp32 C block, 4-5 A, 6-7 B. Configured per call: other
// code on this thread (oneDNN inside torch) may reconfigure tiles.
inline void configure_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

// C tiles += 32-deep step kb: A0 32 bf16 rows (stride a_stride bytes), Bp one VNNI panel.
inline void kstep(const uint16_t* A0, int64_t a_stride, const uint16_t* Bp, int64_t kb) {
  _tile_loadd(4, A0 + kb * 32, a_stride);
  _tile_loadd(5, reinterpret_cast<const char*>(A0) + 16 * a_stride + kb * 64, a_stride);
  _tile_loadd(6, Bp + kb * 16 * 64, 128);
  _tile_loadd(7, Bp + kb * 16 * 64 + 32, 128);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

inline void store_c(float* c, int64_t ldc) {
  _tile_stored(0, c, ldc * 4);
  _tile_stored(1, c + 16, ldc * 4);
  _tile_stored(2, c + 16 * ldc, ldc * 4);
  _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
}

inline void zero_c() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// Prefetches part kb of kb_n of a 32 x K bf16 block (the operand the next block will read) into L1.
inline void prefetch_part(const char* next, int64_t bytes, int64_t kb, int64_t kb_n) {
  if (!next) return;
  const int64_t per = ceil_div(bytes, kb_n * 64) * 64;
  for (int64_t off = kb * per; off < imin((kb + 1) * per, bytes); off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
}

void gemm_impl(const uint16_t* Ab, int64_t lda, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act) {
  configure_tiles();
  alignas(64) float acc[32 * 32];
  const int64_t a_stride = lda * 2, kb_n = Kp / 32, bytes = 32 * Kp * 2;
  const int64_t P = ceil_div(N, 32), MB = ceil_div(M, 32);
  // A-block outer: 32 converted rows stay in L1 while the weight panels stream past, the next
  // panel (or the next A block) prefetched into L1 during the current block.
  for (int64_t mb = 0; mb < MB; ++mb) {
    const int64_t m0 = mb * 32, mr = imin(32, M - m0);
    const uint16_t* A0 = Ab + m0 * lda;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t j0 = p * 32, nb = imin(32, N - j0);
      const uint16_t* Bp = B + p * Kp * 32;
      const char* next = p + 1 < P    ? reinterpret_cast<const char*>(Bp + Kp * 32)
                         : mb + 1 < MB && lda == Kp ? reinterpret_cast<const char*>(A0 + 32 * Kp)
                                       : nullptr;
      const bool tile_bias = bias && nb == 32;  // C tiles start from the bias row (stride 0)
      if (tile_bias) {
        _tile_loadd(0, bias + j0, 0);
        _tile_loadd(1, bias + j0 + 16, 0);
        _tile_loadd(2, bias + j0, 0);
        _tile_loadd(3, bias + j0 + 16, 0);
      } else {
        zero_c();
      }
      for (int64_t kb = 0; kb < kb_n; ++kb) {
        prefetch_part(next, bytes, kb, kb_n);
        kstep(A0, a_stride, Bp, kb);
      }
      if (act == Act::none && mr == 32 && nb == 32) {  // bias already in: tiles straight to C
        store_c(C + m0 * ldc + j0, ldc);
        continue;
      }
      store_c(acc, 32);
      const float* eb = bias && !tile_bias ? bias + j0 : nullptr;
      for (int64_t r = 0; r < mr; ++r) epilogue_row(acc + r * 32, eb, C + (m0 + r) * ldc + j0, nb, act);
    }
  }
  _tile_release();
}

#elif defined(__AVX512BF16__)

template <int R>
void ukernel_bf16(const uint16_t* A, int64_t lda, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
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
      std::memcpy(&pair, A + r * lda + 2 * kk, 4);
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
void tail_bf16(int r, const uint16_t* A, int64_t lda, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t nb, const float* bias, Act act) {
  if (r == R) return ukernel_bf16<R>(A, lda, Kp, B, C, ldc, nb, bias, act);
  if constexpr (R > 1) tail_bf16<R - 1>(r, A, lda, Kp, B, C, ldc, nb, bias, act);
}

void gemm_impl(const uint16_t* Ab, int64_t lda, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act) {
  constexpr int MR = 12;
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const uint16_t* Bp = B + (j0 / 32) * Kp * 32;
    const int64_t nb = imin(32, N - j0);
    const float* bj = bias ? bias + j0 : nullptr;
    int64_t m = 0;
    for (; m + MR <= M; m += MR) ukernel_bf16<MR>(Ab + m * lda, lda, Kp, Bp, C + m * ldc + j0, ldc, nb, bj, act);
    if (m < M)
      tail_bf16<MR - 1>(static_cast<int>(M - m), Ab + m * lda, lda, Kp, Bp, C + m * ldc + j0, ldc, nb, bj, act);
  }
}

#else

void gemm_impl(const uint16_t* Ab, int64_t lda, int64_t Kp, const uint16_t* B, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act) {
  float acc[32];
  for (int64_t j0 = 0; j0 < N; j0 += 32) {
    const uint16_t* Bp = B + (j0 / 32) * Kp * 32;
    const int64_t nb = imin(32, N - j0);
    for (int64_t r = 0; r < M; ++r) {
      for (int j = 0; j < 32; ++j) acc[j] = 0.f;
      const uint16_t* a = Ab + r * lda;
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

// C = A @ B for A bf16 rows [M][K] read in place (M and K multiples of 32) and B VNNI panels of 32
// tokens, one 32 x 32 fp32 block at a time: epi(r0, p, acc) gets rows r0 .. r0 + 31 of token panel p
// in acc[32][32] (L1) and finishes them, so no [M][tokens] fp32 result goes through L2. Each A block
// serves every token panel before the next (A-block outer: 3-4% faster than panel outer for the
// FFN's second GEMM, in-process A/B); with AMX the next A block is prefetched into L1 meanwhile:
// the weights stream from L2/L3.
template <class Epi>
void rows_blocks(const uint16_t* A, int64_t K, const uint16_t* B, int64_t M, int64_t N, Epi&& epi) {
  const int64_t P = ceil_div(N, 32), MB = ceil_div(M, 32);
  alignas(64) float acc[32 * 32];
#if defined(__AMX_BF16__)
  configure_tiles();
  const int64_t kb_n = K / 32, a_stride = K * 2, a_bytes = 32 * K * 2;
  for (int64_t mb = 0; mb < MB; ++mb) {
    const uint16_t* A0 = A + mb * 32 * K;
    const char* na = mb + 1 < MB ? reinterpret_cast<const char*>(A0 + 32 * K) : nullptr;
    for (int64_t p = 0; p < P; ++p) {
      const uint16_t* Bp = B + p * K * 32;
      zero_c();
      for (int64_t kb = 0; kb < kb_n; ++kb) {
        prefetch_part(na, a_bytes, p * kb_n + kb, P * kb_n);  // over all the steps on this A block
        kstep(A0, a_stride, Bp, kb);
      }
      store_c(acc, 32);
      epi(mb * 32, p, static_cast<const float*>(acc));
    }
  }
  _tile_release();
#else
  for (int64_t mb = 0; mb < MB; ++mb)
    for (int64_t p = 0; p < P; ++p) {
      const int64_t mr = imin(32, M - mb * 32);
      gemm_impl(A + mb * 32 * K, K, K, B + p * K * 32, acc, 32, mr, 32, nullptr, Act::none);
      for (int64_t i = mr * 32; i < 32 * 32; ++i) acc[i] = 0.f;  // rows past M: as AMX's zero rows
      epi(mb * 32, p, static_cast<const float*>(acc));
    }
#endif
}

// acc[32 rows][32 tokens] + bias per row, activation, rounded to bf16 (nearest even) -> the next
// GEMM's VNNI token panel: word i * 32 + t of dst holds (rows 2i, 2i + 1) of token t.
void pack_pairs(const float* acc, const float* bias, Act act, uint32_t* dst) {
  for (int i = 0; i < 16; ++i) {
    const float* r0 = acc + 2 * i * 32;
    const float* r1 = r0 + 32;
    const float b0 = bias ? bias[2 * i] : 0.f, b1 = bias ? bias[2 * i + 1] : 0.f;
    int t = 0;
#if defined(__AVX512F__)
    if (act == Act::none || act == Act::gelu) {
      for (; t < 32; t += 16) {
        __m512 v0 = _mm512_add_ps(_mm512_load_ps(r0 + t), _mm512_set1_ps(b0));
        __m512 v1 = _mm512_add_ps(_mm512_load_ps(r1 + t), _mm512_set1_ps(b1));
        if (act == Act::gelu) {
          v0 = vgelu(v0);
          v1 = vgelu(v1);
        }
#if defined(__AVX512BF16__)
        _mm512_storeu_si512(dst + i * 32 + t, bf16_pairs(v0, v1));
#else
        const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
        __m512i u0 = _mm512_castps_si512(v0), u1 = _mm512_castps_si512(v1);
        u0 = _mm512_add_epi32(u0, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u0, 16), one)));
        u1 = _mm512_add_epi32(u1, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u1, 16), one)));
        const __m512i pair = _mm512_or_si512(_mm512_srli_epi32(u0, 16),
                                             _mm512_and_si512(u1, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
        _mm512_storeu_si512(dst + i * 32 + t, pair);
#endif
      }
    }
#endif
    for (; t < 32; ++t)
      dst[i * 32 + t] = bf16_pair(activate(r0[t] + b0, act), activate(r1[t] + b1, act));
  }
}

}  // namespace

void gemm_bf16(const float* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
               int64_t M, int64_t N, const float* bias, Act act) {
  const int64_t Kp = ceil_div(K, 32) * 32;
  const uint16_t* Ab = convert_a(A, lda, M, K, Kp);
  gemm_impl(Ab, Kp, Kp, B, C, ldc, M, N, bias, act);
}

void gemm_bf16_a16(const uint16_t* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
                   int64_t M, int64_t N) {
  gemm_impl(A, lda, K, B, C, ldc, M, N, nullptr, Act::none);
}

void gemm_bf16_blocks(const float* A, int64_t lda, int64_t M, int64_t K, const uint16_t* B, int64_t N,
                      BlockEpilogue epi, void* ctx) {
  const int64_t Kp = ceil_div(K, 32) * 32;
  const uint16_t* Ab = convert_a(A, lda, M, K, Kp);
  rows_blocks(Ab, Kp, B, M, N, [&](int64_t r0, int64_t p, const float* acc) { epi(ctx, r0, p, acc); });
}

void gemm_bf16_rows_pack(const uint16_t* A, int64_t K, const uint16_t* B, int64_t M, int64_t m,
                         const float* bias, Act act, uint32_t* dst) {
  const int64_t M2 = M / 2;
  rows_blocks(A, K, B, M, m, [&](int64_t r0, int64_t p, const float* acc) {
    pack_pairs(acc, bias ? bias + r0 : nullptr, act, dst + (p * M2 + r0 / 2) * 32);
  });
}

void gemm_bf16_rows_store_t(const uint16_t* A, int64_t K, const uint16_t* B, int64_t M, int64_t m,
                            const float* bias, float* out, int64_t ldo) {
  rows_blocks(A, K, B, M, m, [&](int64_t r0, int64_t p, const float* acc) {
    transpose(acc, 32, imin(32, M - r0), imin(32, m - 32 * p), out + 32 * p * ldo + r0, ldo, 1.f,
              bias ? bias + r0 : nullptr);
  });
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
