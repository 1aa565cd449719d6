// Grouped Q/K/V projection + softmax(QK^T / sqrt(d) + mask) V, one task per
// (sequence, head). Q/K/V go through a [T, 3*hidden] workspace (q | k | v column blocks);
// each task keeps its L x L score tile in a per-thread scratch slab. Keys whose key_valid is
// 0 (padding kept only so the pooler can read column 0) get the same additive mask as
// transformers (float lowest), i.e. probability exactly 0.
#include <cfloat>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

void qkv_attention(const LayerWeights& w, const AttentionArgs& a, ThreadPool& pool) {
  const int64_t H = a.hidden, ld = 3 * H, d = H / a.heads;
  grouped_linear(w.q, a.x, H, a.qkv, ld, a.tokens, Act::none, pool);
  grouped_linear(w.k, a.x, H, a.qkv + H, ld, a.tokens, Act::none, pool);
  grouped_linear(w.v, a.x, H, a.qkv + 2 * H, ld, a.tokens, Act::none, pool);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  auto task = [&](int64_t t, int thread) {
    const int64_t b = t / a.heads, h = t % a.heads;
    const int64_t base = a.cu_seqlens[b], L = a.cu_seqlens[b + 1] - base;
    float* s = a.scratch + thread * a.scratch_per_thread;
    const float* q0 = a.qkv + base * ld + h * d;
    const float* k0 = q0 + H;
    const float* v0 = q0 + 2 * H;
    const uint8_t* valid = a.key_valid + base;
    float* sc = a.scores ? a.scores + a.score_offsets[b] + h * L * L : nullptr;
    for (int64_t i = 0; i < L; ++i) {
      const float* q = q0 + i * ld;
      float* srow = s + i * L;
      float mx = -FLT_MAX;
      for (int64_t j = 0; j < L; ++j) {
        const float* k = k0 + j * ld;
        float dot = 0.f;
        for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
        float v = valid[j] ? dot * scale : -FLT_MAX;
        srow[j] = v;
        if (valid[j] && v > mx) mx = v;
      }
      if (sc)
        for (int64_t j = 0; j < L; ++j) sc[i * L + j] = srow[j];
      float sum = 0.f;
      for (int64_t j = 0; j < L; ++j) {
        float p = valid[j] ? std::exp(srow[j] - mx) : 0.f;
        srow[j] = p;
        sum += p;
      }
      const float inv = 1.0f / sum;
      float* out = a.ctx + (base + i) * H + h * d;
      for (int64_t c = 0; c < d; ++c) out[c] = 0.f;
      for (int64_t j = 0; j < L; ++j) {
        const float p = srow[j] * inv;
        if (p == 0.f) continue;
        const float* v = v0 + j * ld;
        for (int64_t c = 0; c < d; ++c) out[c] += p * v[c];
      }
    }
  };
  parallel_for(pool, a.batch * a.heads, task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
