// Helpers shared by the kernel files of one ISA variant. Everything here lives in the
// per-ISA namespace (SQF_ISA_NS is set by CMake for each variant) so no inline function is
// shared between translation units compiled with different instruction sets.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels.h"

#ifndef SQF_ISA_NS
#error "SQF_ISA_NS must be defined by the build (one namespace per ISA variant)"
#endif

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

// out = LayerNorm(a + r) over n channels (r may be null). Two-pass statistics in fp32.
inline void add_layernorm_row(const float* a, const float* r, const float* w, const float* b,
                              float eps, float* out, int64_t n) {
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    float v = r ? a[i] + r[i] : a[i];
    out[i] = v;
    sum += v;
  }
  const float mean = sum / static_cast<float>(n);
  float var = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    float d = out[i] - mean;
    var += d * d;
  }
  const float rstd = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (out[i] - mean) * rstd * w[i] + b[i];
}

void grouped_linear(const GroupedLinear& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                    int64_t rows, Act act, ThreadPool& pool);

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
