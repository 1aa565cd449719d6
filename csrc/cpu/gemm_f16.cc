// fp16-weight GEMM: C[M, N] = act(A[M, K] @ B + bias), A fp32 rows, B IEEE fp16 weights packed at
// load (Encoder::pack, cfg.fp16) as panels [ceil(N/16)][K][16], the last one zero-padded.
//
//   neon_fp16 (ARMv8.2-A FP16, SQF_NEON_FP16): A rows are rounded to fp16 into a per-thread buffer
//     (K padded to 8 with zeros); a 4 x 16 tile keeps 8 fp16 accumulators (float16x8_t) that take
//     FMLA-by-element (vfmaq_laneq_f16: 8 k-steps per A vector load) and are flushed into 16 fp32
//     accumulators every kFlushK k-steps, so no fp16 partial sum spans more than 32 products
//     (relative error ~ 32 * 2^-11 worst case instead of K * 2^-11). 8 + 16 + 4 A + 2 B = 30 of the
//     32 q registers. Bias, GELU and the store run on the fp32 accumulators.
//   every other ISA: the same numbers through the fp32 micro-kernel on a per-thread fp32 copy of
//     each B panel (a fallback, e.g. SQBERT_FAST_FORCE_CPU_ISA=neon on an fp16 model; the
//     cpu backend only offers fp16 where neon_fp16 runs natively).
// LayerNorm, softmax and the attention GEMMs stay fp32 everywhere.
#include <cstring>
#include <vector>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

constexpr int64_t P = kF16Panel;

#if defined(SQF_NEON_FP16)

constexpr int64_t kFlushK = 32;

#if defined(SQF_NEON_SIMDE)
inline float16_t to_f16(float x) { return simde_float16_from_float32(x); }
#else
inline float16_t to_f16(float x) { return static_cast<float16_t>(x); }
#endif
inline float16x8_t zero_f16() { return vreinterpretq_f16_u16(vdupq_n_u16(0)); }

// A[M, K] fp32 (stride lda) -> [M][Kp] fp16, Kp = K rounded up to 8, zero-padded.
const float16_t* convert_a(const float* A, int64_t lda, int64_t M, int64_t K, int64_t Kp) {
  thread_local aligned_vector<float16_t> buf;
  if (static_cast<int64_t>(buf.size()) < M * Kp) buf.resize(static_cast<size_t>(M * Kp));
  for (int64_t r = 0; r < M; ++r) {
    const float* a = A + r * lda;
    float16_t* o = buf.data() + r * Kp;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
      vst1q_f16(o + k, vcombine_f16(vcvt_f16_f32(vld1q_f32(a + k)), vcvt_f16_f32(vld1q_f32(a + k + 4))));
    for (; k < K; ++k) o[k] = to_f16(a[k]);
    for (; k < Kp; ++k) o[k] = to_f16(0.f);
  }
  return buf.data();
}

template <int R>
struct Tile {
  float16x8_t h[R][2];
  vf acc[R][4];
  void flush() {
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 2; ++j) {
        acc[r][2 * j] = vaddq_f32(acc[r][2 * j], vcvt_f32_f16(vget_low_f16(h[r][j])));
        acc[r][2 * j + 1] = vaddq_f32(acc[r][2 * j + 1], vcvt_f32_f16(vget_high_f16(h[r][j])));
        h[r][j] = zero_f16();
      }
  }
};

// One k-step with the A values in lane L of a[r].
template <int R, int L>
inline void step(Tile<R>& t, const float16x8_t* a, const float16_t* B) {
  const float16x8_t b0 = vld1q_f16(B), b1 = vld1q_f16(B + 8);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    t.h[r][0] = vfmaq_laneq_f16(t.h[r][0], b0, a[r], L);
    t.h[r][1] = vfmaq_laneq_f16(t.h[r][1], b1, a[r], L);
  }
}

template <int R>
void tile(const float16_t* Ah, int64_t Kp, const float16_t* B, int64_t K, const float* bias,
          float* C, int64_t ldc, int64_t nb, Act act) {
  Tile<R> t;
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < 4; ++j)
      t.acc[r][j] = bias ? vload(bias + 4 * j, tail_mask(nb - 4 * j)) : vzero();
    t.h[r][0] = t.h[r][1] = zero_f16();
  }
  int64_t k = 0;
  while (k < K) {
    const int64_t kend = imin(K, k + kFlushK);
    for (; k + 8 <= kend; k += 8) {
      float16x8_t a[R];
      for (int r = 0; r < R; ++r) a[r] = vld1q_f16(Ah + r * Kp + k);
      const float16_t* b = B + k * P;
      step<R, 0>(t, a, b);
      step<R, 1>(t, a, b + P);
      step<R, 2>(t, a, b + 2 * P);
      step<R, 3>(t, a, b + 3 * P);
      step<R, 4>(t, a, b + 4 * P);
      step<R, 5>(t, a, b + 5 * P);
      step<R, 6>(t, a, b + 6 * P);
      step<R, 7>(t, a, b + 7 * P);
    }
    for (; k < kend; ++k) {  // K % 8 tail (A is zero-padded, B is not: one k at a time)
      const float16x8_t b0 = vld1q_f16(B + k * P), b1 = vld1q_f16(B + k * P + 8);
      for (int r = 0; r < R; ++r) {
        const float16x8_t a = vdupq_n_f16(Ah[r * Kp + k]);
        t.h[r][0] = vfmaq_f16(t.h[r][0], b0, a);
        t.h[r][1] = vfmaq_f16(t.h[r][1], b1, a);
      }
    }
    t.flush();
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) {
      vf v = t.acc[r][j];
      if (act == Act::gelu) v = vgelu(v);
      vstore(C + r * ldc + 4 * j, v, tail_mask(nb - 4 * j));
    }
  if (act != Act::none && act != Act::gelu)
    for (int r = 0; r < R; ++r)
      for (int64_t j = 0; j < nb; ++j) C[r * ldc + j] = activate(C[r * ldc + j], act);
}

#else

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while (!(man & 0x400u)) man <<= 1, --exp;
    u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

#endif

}  // namespace

void gemm_f16(const float* A, int64_t lda, const uint16_t* B, int64_t K, float* C, int64_t ldc,
              int64_t M, int64_t N, const float* bias, Act act) {
#if defined(SQF_NEON_FP16)
  const int64_t Kp = ceil_div(K, 8) * 8;
  const float16_t* Ah = convert_a(A, lda, M, K, Kp);
  const float16_t* Bh = reinterpret_cast<const float16_t*>(B);
  for (int64_t j0 = 0; j0 < N; j0 += P) {
    const int64_t nb = imin(P, N - j0);
    const float16_t* Bp = Bh + (j0 / P) * K * P;
    const float* bj = bias ? bias + j0 : nullptr;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) tile<4>(Ah + m * Kp, Kp, Bp, K, bj, C + m * ldc + j0, ldc, nb, act);
    switch (M - m) {
      case 3: tile<3>(Ah + m * Kp, Kp, Bp, K, bj, C + m * ldc + j0, ldc, nb, act); break;
      case 2: tile<2>(Ah + m * Kp, Kp, Bp, K, bj, C + m * ldc + j0, ldc, nb, act); break;
      case 1: tile<1>(Ah + m * Kp, Kp, Bp, K, bj, C + m * ldc + j0, ldc, nb, act); break;
      default: break;
    }
  }
#else
  thread_local aligned_vector<float> panel_tls;
  if (static_cast<int64_t>(panel_tls.size()) < K * P) panel_tls.resize(static_cast<size_t>(K * P));
  float* const panel = panel_tls.data();  // addressed once (a thread_local access is a __tls_get_addr call)
  for (int64_t j0 = 0; j0 < N; j0 += P) {
    const uint16_t* Bp = B + (j0 / P) * K * P;
    for (int64_t i = 0; i < K * P; ++i) panel[i] = half_to_float(Bp[i]);
    gemm(A, lda, panel, P, K, C + j0, ldc, M, imin(P, N - j0), bias ? bias + j0 : nullptr,
         act);
  }
#endif
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
