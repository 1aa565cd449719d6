// A minimal fp32 vector abstraction for the kernel files, one definition per ISA variant
// (CTranslate2's Vec<T, ISA> idea, reduced to what the kernels use). Everything lives in the
// per-ISA namespace, so the AVX-512 and the portable definitions never meet in one symbol.
//
//   avx512: W = 16 lanes (__m512), masked tails through __mmask16
//   avx2:   W = 8 lanes (__m256), masked tails through maskload/maskstore
//   scalar: W = 8 lanes of plain floats; exp/erf come from libm, so this variant is the
//           reference the SIMD ones are tested against.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#elif defined(SQF_NEON)
#include "simd_neon.h"  // W = 4 (native AArch64, or SIMDe on x86); defines SQF_SIMD_NEON
#endif

#ifndef SQF_ISA_NS
#error "SQF_ISA_NS must be defined by the build (one namespace per ISA variant)"
#endif

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

#if defined(__AVX512F__)

constexpr int W = 16;
using vf = __m512;
struct vmask { __mmask16 m; };
inline vmask tail_mask(int64_t n) {  // first n lanes (n may be <= 0 or exceed W)
  return vmask{static_cast<__mmask16>(n >= 16 ? 0xffff : n <= 0 ? 0 : ((1u << n) - 1))};
}
#define SQF_PS(op) _mm512_##op##_ps  // the ops both x86 widths share: written once, after this chain
inline vf vload(const float* p, vmask m) { return _mm512_maskz_loadu_ps(m.m, p); }
inline void vstore(float* p, vf v, vmask m) { _mm512_mask_storeu_ps(p, m.m, v); }
inline vf vabs(vf a) { return _mm512_abs_ps(a); }
// 1/a: 14-bit estimate + one Newton step (~2^-23 rel.); a division costs 8x the throughput.
inline vf vrecip(vf a) {
  const vf r = _mm512_rcp14_ps(a);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(a, r, _mm512_set1_ps(2.0f)));
}
inline vf vselect_lt0(vf x, vf if_neg, vf if_pos) {  // x < 0 ? if_neg : if_pos
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), if_pos, if_neg);
}
inline float vsum(vf a) { return _mm512_reduce_add_ps(a); }
inline float vmaxall(vf a) { return _mm512_reduce_max_ps(a); }
inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline vf vpow2n(vf p, vf n) { return _mm512_scalef_ps(p, n); }  // p * 2^n
#define SQF_SIMD_POLY 1

#elif defined(__AVX2__)

constexpr int W = 8;
using vf = __m256;
struct vmask { __m256i m; };
inline vmask tail_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return vmask{_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n > 8 ? 8 : n < 0 ? 0 : n)), idx)};
}
#define SQF_PS(op) _mm256_##op##_ps
inline vf vload(const float* p, vmask m) { return _mm256_maskload_ps(p, m.m); }
inline void vstore(float* p, vf v, vmask m) { _mm256_maskstore_ps(p, m.m, v); }
inline vf vabs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline vf vrecip(vf a) {  // 12-bit estimate + one Newton step (~2^-22 rel.)
  const vf r = _mm256_rcp_ps(a);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(a, r, _mm256_set1_ps(2.0f)));
}
inline vf vselect_lt0(vf x, vf if_neg, vf if_pos) {
  return _mm256_blendv_ps(if_pos, if_neg, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}
inline float vsum(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float vmaxall(vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline vf vpow2n(vf p, vf n) {  // n in [-126, 127] (callers clamp)
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#define SQF_SIMD_POLY 1

#elif defined(SQF_SIMD_NEON)  // neon: defined in simd_neon.h

#else  // portable

constexpr int W = 8;
struct vf { float v[W]; };
struct vmask { int n; };
inline vmask tail_mask(int64_t n) { return vmask{static_cast<int>(n > W ? W : n < 0 ? 0 : n)}; }
#define SQF_LANES(expr) \
  vf r;                 \
  for (int i = 0; i < W; ++i) r.v[i] = (expr); \
  return r
inline vf vload(const float* p) { SQF_LANES(p[i]); }
inline vf vload(const float* p, vmask m) { SQF_LANES(i < m.n ? p[i] : 0.f); }
inline void vstore(float* p, vf v) { for (int i = 0; i < W; ++i) p[i] = v.v[i]; }
inline void vstore(float* p, vf v, vmask m) { for (int i = 0; i < m.n; ++i) p[i] = v.v[i]; }
inline vf vset1(float x) { SQF_LANES(x); }
inline vf vzero() { SQF_LANES(0.f); }
inline vf vadd(vf a, vf b) { SQF_LANES(a.v[i] + b.v[i]); }
inline vf vsub(vf a, vf b) { SQF_LANES(a.v[i] - b.v[i]); }
inline vf vmul(vf a, vf b) { SQF_LANES(a.v[i] * b.v[i]); }
inline vf vmax(vf a, vf b) { SQF_LANES(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
inline vf vmin(vf a, vf b) { SQF_LANES(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
inline vf vfma(vf a, vf b, vf c) { SQF_LANES(a.v[i] * b.v[i] + c.v[i]); }
inline vf vfnma(vf a, vf b, vf c) { SQF_LANES(c.v[i] - a.v[i] * b.v[i]); }
inline vf vabs(vf a) { SQF_LANES(std::fabs(a.v[i])); }
inline vf vdiv(vf a, vf b) { SQF_LANES(a.v[i] / b.v[i]); }
inline vf vselect_lt0(vf x, vf n, vf p) { SQF_LANES(x.v[i] < 0.f ? n.v[i] : p.v[i]); }
inline float vsum(vf a) { float s = 0.f; for (int i = 0; i < W; ++i) s += a.v[i]; return s; }
inline float vmaxall(vf a) { float s = a.v[0]; for (int i = 1; i < W; ++i) s = a.v[i] > s ? a.v[i] : s; return s; }
inline vf vexp(vf a) { SQF_LANES(std::exp(a.v[i])); }
inline vf vgelu(vf a) { SQF_LANES(0.5f * a.v[i] * (1.0f + std::erf(a.v[i] * 0.70710678118654752f))); }
#undef SQF_LANES

#endif

#ifdef SQF_PS  // x86, either width
inline vf vload(const float* p) { return SQF_PS(loadu)(p); }
inline void vstore(float* p, vf v) { SQF_PS(storeu)(p, v); }
inline vf vset1(float x) { return SQF_PS(set1)(x); }
inline vf vzero() { return SQF_PS(setzero)(); }
inline vf vadd(vf a, vf b) { return SQF_PS(add)(a, b); }
inline vf vsub(vf a, vf b) { return SQF_PS(sub)(a, b); }
inline vf vmul(vf a, vf b) { return SQF_PS(mul)(a, b); }
inline vf vmax(vf a, vf b) { return SQF_PS(max)(a, b); }
inline vf vmin(vf a, vf b) { return SQF_PS(min)(a, b); }
inline vf vfma(vf a, vf b, vf c) { return SQF_PS(fmadd)(a, b, c); }    // a*b + c
inline vf vfnma(vf a, vf b, vf c) { return SQF_PS(fnmadd)(a, b, c); }  // c - a*b
inline vf vdiv(vf a, vf b) { return SQF_PS(div)(a, b); }
#undef SQF_PS
#endif

#ifdef SQF_SIMD_POLY
// exp(x): Cephes expf (range reduction by ln2, degree-6 polynomial), ~1 ulp on the clamped
// range; inputs below -87.3 give ~1e-38, not 0 (callers that need exact zeros mask). NaN stays
// NaN: x86 min/max return their *second* operand when either is NaN, so x goes second (a NaN
// score clamped to -87.3 would vanish from a softmax; PyTorch's softmax turns the row NaN).
inline vf vexp(vf x) {
  x = vmin(vset1(88.3f), vmax(vset1(-87.3f), x));
  const vf n = vround(vmul(x, vset1(1.44269504088896341f)));
  vf r = vfnma(n, vset1(0.693359375f), x);
  r = vfnma(n, vset1(-2.12194440e-4f), r);
  vf p = vset1(1.9875691500E-4f);
  p = vfma(p, r, vset1(1.3981999507E-3f));
  p = vfma(p, r, vset1(8.3334519073E-3f));
  p = vfma(p, r, vset1(4.1665795894E-2f));
  p = vfma(p, r, vset1(1.6666665459E-1f));
  p = vfma(p, r, vset1(5.0000001201E-1f));
  p = vfma(p, vmul(r, r), vadd(r, vset1(1.0f)));
  return vpow2n(p, n);
}
#if defined(__AVX512F__)
// GELU(x) = 0.5 x + |x| Q(|x|), Q(a) = 0.5 erf(a / sqrt 2) a cubic per interval of 5/16 on [0, 5)
// (4 in-register 16-entry table lookups, 3 FMAs; Q is flat to 6e-7 beyond 5): half the
// instructions of the erfc form below, which ISAs without a 16-lane permute keep. Tables from
// scripts/gen_gelu_table.py:
// max |error| 1.14e-05 on [-40, 40] (|x| < 5: 1.68e-06)
alignas(64) static const float kGeluC0[16] = {
    -5.717643035e-07f, 1.226682737e-01f, 2.340127677e-01f, 3.257479370e-01f,
    3.943495750e-01f, 4.409148395e-01f, 4.696039855e-01f, 4.856474400e-01f,
    4.937907159e-01f, 4.975423515e-01f, 4.991111159e-01f, 4.997065067e-01f,
    4.999116063e-01f, 4.999757409e-01f, 4.999939203e-01f, 4.999986291e-01f};
alignas(64) static const float kGeluC1[16] = {
    1.246858239e-01f, 1.187733039e-01f, 1.026046351e-01f, 8.037935197e-02f,
    5.710022151e-02f, 3.678226471e-02f, 2.148471400e-02f, 1.137924008e-02f,
    5.464892369e-03f, 2.379750367e-03f, 9.396377718e-04f, 3.364092263e-04f,
    1.092077728e-04f, 3.214534809e-05f, 8.579517271e-06f, 2.076297733e-06f};
alignas(64) static const float kGeluC2[16] = {
    -7.095977344e-05f, -6.015754770e-03f, -1.028633397e-02f, -1.199182775e-02f,
    -1.126669534e-02f, -8.993989788e-03f, -6.245164666e-03f, -3.820764599e-03f,
    -2.075133147e-03f, -1.005475060e-03f, -4.361099564e-04f, -1.697363186e-04f,
    -5.938700269e-05f, -1.870445703e-05f, -5.308903837e-06f, -1.359080329e-06f};
alignas(64) static const float kGeluC3[16] = {
    -1.945144497e-03f, -1.412799349e-03f, -5.834805779e-04f, 2.134107926e-04f,
    7.311229128e-04f, 9.004853782e-04f, 8.037905209e-04f, 5.848808214e-04f,
    3.620048228e-04f, 1.946007105e-04f, 9.194214363e-05f, 3.846519030e-05f,
    1.432155113e-05f, 4.762465323e-06f, 1.418198735e-06f, 3.789452592e-07f};
inline vf vgelu(vf x) {
  const __m512 a = _mm512_abs_ps(x);
  const __m512 f = _mm512_min_ps(_mm512_mul_ps(a, _mm512_set1_ps(16.f / 5.f)), _mm512_set1_ps(15.9998f));
  const __m512i i = _mm512_cvttps_epi32(f);
  const __m512 t = _mm512_sub_ps(f, _mm512_cvtepi32_ps(i));
  __m512 q = _mm512_permutexvar_ps(i, _mm512_load_ps(kGeluC3));
  q = _mm512_fmadd_ps(q, t, _mm512_permutexvar_ps(i, _mm512_load_ps(kGeluC2)));
  q = _mm512_fmadd_ps(q, t, _mm512_permutexvar_ps(i, _mm512_load_ps(kGeluC1)));
  q = _mm512_fmadd_ps(q, t, _mm512_permutexvar_ps(i, _mm512_load_ps(kGeluC0)));
  return _mm512_fmadd_ps(a, q, _mm512_mul_ps(x, _mm512_set1_ps(0.5f)));
}
#else
// GELU(x) = 0.5 x (1 + erf(x / sqrt 2)) with Abramowitz-Stegun 7.1.26 for erfc (abs. error
// <= 1.5e-7, the approximation oneDNN uses). 1 + erf is formed without cancellation for
// negative x: 1 + erf(-|z|) = erfc(|z|).
inline vf vgelu(vf x) {
  const vf z = vabs(vmul(x, vset1(0.70710678118654752f)));
  const vf t = vrecip(vfma(vset1(0.3275911f), z, vset1(1.0f)));
  vf p = vset1(1.061405429f);
  p = vfma(p, t, vset1(-1.453152027f));
  p = vfma(p, t, vset1(1.421413741f));
  p = vfma(p, t, vset1(-0.284496736f));
  p = vfma(p, t, vset1(0.254829592f));
  const vf erfc = vmul(vmul(p, t), vexp(vsub(vzero(), vmul(z, z))));
  const vf one_plus_erf = vselect_lt0(x, erfc, vsub(vset1(2.0f), erfc));
  return vmul(vmul(vset1(0.5f), x), one_plus_erf);
}
#endif
#undef SQF_SIMD_POLY
#endif

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
