// NEON specialisation of the vector abstraction in simd.h (included from there; the kernel
// sources do not change). One variant per build flag set, all compiled from this file:
//
//   neon   (aarch64, -march=armv8-a):   W = 4 lanes of fp32 (float32x4_t), vfmaq_f32.
//   neon_fp16 (-march=armv8.2-a+fp16, SQF_NEON_FP16): the same fp32 code plus the fp16-weight
//                                        GEMM of gemm_f16.cc (FMLA .8h), chosen when HWCAP_ASIMDHP.
//   both on x86 (SQF_NEON_SIMDE):        the same code through SIMDe 0.8.x with native aliases,
//                                        so the NEON kernels run (slowly) in the x86 test suite.
//
// AArch64 has no masked loads/stores: tails are assembled from 64-bit and single-lane loads and
// stores (a switch on n, loop-invariant inside the GEMM micro-kernel), so a tail never reads or
// writes past the caller's n elements (the kernels rely on that at row ends) and never goes
// through memory the way a stack-buffer copy would (which spilled the accumulator tile).
// exp/GELU use the shared polynomial code in simd.h (SQF_SIMD_POLY): vround = FRINTN, 2^n built
// in the exponent bits, vdiv = FDIV (AArch64 only, which is the only NEON target here).
//
// The GEMM micro-kernel height comes from SQF_NEON_MR: 8 rows x 2 vectors = 16 accumulators of
// the 32 q registers on AArch64 (+2 B vectors; A is read as fmla-by-element scalars), 4 under
// SIMDe on x86 where the 16 xmm registers would otherwise spill.
#pragma once
#include <cstdint>

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define SQF_NEON_MR 8
#elif defined(SQF_NEON_SIMDE)
#ifndef SIMDE_ENABLE_NATIVE_ALIASES
#define SIMDE_ENABLE_NATIVE_ALIASES
#endif
#include <simde/arm/neon.h>
#define SQF_NEON_MR 4
#else
#error "simd_neon.h needs an AArch64 NEON target or SIMDe (SQF_NEON_SIMDE)"
#endif

#define SQF_SIMD_NEON 1
#define SQF_SIMD_POLY 1

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

constexpr int W = 4;
using vf = float32x4_t;
struct vmask { int n; };  // number of valid leading lanes, 0..W
inline vmask tail_mask(int64_t n) { return vmask{static_cast<int>(n > W ? W : n < 0 ? 0 : n)}; }
inline vf vload(const float* p) { return vld1q_f32(p); }
inline vf vload(const float* p, vmask m) {  // lanes >= n are 0; nothing past p[n-1] is read
  const float32x2_t z = vdup_n_f32(0.f);
  switch (m.n) {
    case 0: return vdupq_n_f32(0.f);
    case 1: return vcombine_f32(vset_lane_f32(p[0], z, 0), z);
    case 2: return vcombine_f32(vld1_f32(p), z);
    case 3: return vcombine_f32(vld1_f32(p), vset_lane_f32(p[2], z, 0));
    default: return vld1q_f32(p);
  }
}
inline void vstore(float* p, vf v) { vst1q_f32(p, v); }
inline void vstore(float* p, vf v, vmask m) {  // writes p[0..n) only
  switch (m.n) {
    case 0: return;
    case 1: vst1q_lane_f32(p, v, 0); return;
    case 2: vst1_f32(p, vget_low_f32(v)); return;
    case 3: vst1_f32(p, vget_low_f32(v)); vst1q_lane_f32(p + 2, v, 2); return;
    default: vst1q_f32(p, v);
  }
}
inline vf vset1(float x) { return vdupq_n_f32(x); }
inline vf vzero() { return vdupq_n_f32(0.f); }
inline vf vadd(vf a, vf b) { return vaddq_f32(a, b); }
inline vf vsub(vf a, vf b) { return vsubq_f32(a, b); }
inline vf vmul(vf a, vf b) { return vmulq_f32(a, b); }
inline vf vmax(vf a, vf b) { return vmaxq_f32(a, b); }
inline vf vmin(vf a, vf b) { return vminq_f32(a, b); }
inline vf vfma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }   // a*b + c, fused
inline vf vfnma(vf a, vf b, vf c) { return vfmsq_f32(c, a, b); }  // c - a*b, fused
inline vf vabs(vf a) { return vabsq_f32(a); }
inline vf vdiv(vf a, vf b) { return vdivq_f32(a, b); }
inline vf vrecip(vf a) { return vdivq_f32(vdupq_n_f32(1.0f), a); }
inline vf vselect_lt0(vf x, vf if_neg, vf if_pos) {  // x < 0 ? if_neg : if_pos
  return vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.f)), if_neg, if_pos);
}
inline float vsum(vf a) { return vaddvq_f32(a); }
inline float vmaxall(vf a) { return vmaxvq_f32(a); }
inline vf vround(vf a) { return vrndnq_f32(a); }  // to nearest, ties to even (as the AVX path)
inline vf vpow2n(vf p, vf n) {  // p * 2^n, n integral in [-126, 127] (callers clamp)
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
