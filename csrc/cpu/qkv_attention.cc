// Grouped Q/K/V projection + softmax(QK^T / sqrt(d) + mask) V.
//
// Fused path (w.qkv packed: q/k/v share G groups and each group holds whole heads, the
// default SqueezeBERT config): one task per (sequence, group). The task runs one GEMM
// X[seq, group] @ [Wq_g | Wk_g | Wv_g] into its own L x 3H/G scratch (hot in L2, never the
// shared [T, 3H] buffer), then for each head of the group: K^T (pre-scaled by 1/sqrt d) ->
// S = Q K^T (GEMM micro-kernel) -> masked softmax rows (vectorised exp) -> ctx = P V (GEMM),
// rows scaled by 1/sum at the end (d values per row instead of L); sequences longer than
// kAttnOneBlock stream through key blocks with an online softmax (see attend).
// General path (groups not aligned with heads), and the fused weights when (sequence, group)
// tasks are too few for the threads: grouped GEMMs into the [T, 3H] workspace, then one task per
// (sequence, head) running the same attention core.
// Keys whose key_valid is 0 (padding kept only for the pooler) get transformers' additive mask
// (float lowest), i.e. probability exactly 0.
#include <cfloat>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

struct KeyMask {
  const float* add;   // [L]: 0 or -FLT_MAX, or nullptr when every key is valid
  const float* keep;  // [L]: 1 or 0
};

// One head of one sequence, flash-style: query rows in blocks of at most kAttnBlockQ, keys in
// blocks of at most kAttnBlockK (a sequence of up to kAttnOneBlock tokens is one block of each:
// plain softmax). Per key block: S = Q K^T (micro-kernel, K^T pre-scaled by 1/sqrt d), mask, a
// running row max m and sum l (online softmax), the ctx rows rescaled by exp(m_old - m_new) and
// ctx += P V; rows scaled by 1/l at the end (d values per row instead of L). The score tile is
// kAttnBlockQ x kAttnBlockK whatever L is. q/k/v rows have stride ld; scratch holds
// attention_head_scratch_floats(L, d) (kernels.h). Writes ctx rows (stride ldo) and, when
// scores != nullptr, the pre-softmax scores [L][L].
void attend(const float* q, const float* k, const float* v, int64_t ld, int64_t L, int64_t d,
            float scale, KeyMask mask, float* scratch, float* out, int64_t ldo, float* scores) {
  const bool one = L <= kAttnOneBlock;
  const int64_t BQ = one ? L : kAttnBlockQ, BK = one ? L : kAttnBlockK;
  float* kt = scratch;       // [d][L]
  float* s = kt + d * L;     // [BQ][BK]
  float* mrow = s + BQ * BK;  // [BQ] running max
  float* lrow = mrow + BQ;    // [BQ] running sum
  for (int64_t j = 0; j < L; ++j)
    for (int64_t c = 0; c < d; ++c) kt[c * L + j] = k[j * ld + c] * scale;
  for (int64_t q0 = 0; q0 < L; q0 += BQ) {
    const int64_t nq = imin(BQ, L - q0);
    for (int64_t i = 0; i < nq; ++i) {
      mrow[i] = -FLT_MAX;
      lrow[i] = 0.f;
    }
    for (int64_t k0 = 0; k0 < L; k0 += BK) {
      const int64_t nk = imin(BK, L - k0);
      gemm(q + q0 * ld, ld, kt + k0, L, d, s, BK, nq, nk, nullptr, Act::none);
      const vmask tm = tail_mask(nk % W);
      const int64_t nv = nk - nk % W;
      const float* add = mask.add ? mask.add + k0 : nullptr;
      const float* keep = mask.keep ? mask.keep + k0 : nullptr;
      for (int64_t i = 0; i < nq; ++i) {
        float* sr = s + i * BK;
        if (add) {
          for (int64_t j = 0; j < nv; j += W) vstore(sr + j, vadd(vload(sr + j), vload(add + j)));
          if (nv < nk) vstore(sr + nv, vadd(vload(sr + nv, tm), vload(add + nv, tm)), tm);
        }
        if (scores)
          for (int64_t j = 0; j < nk; ++j) scores[(q0 + i) * L + k0 + j] = sr[j];
        vf mx = vset1(-FLT_MAX);
        for (int64_t j = 0; j < nv; j += W) mx = vmax(mx, vload(sr + j));
        float m = vmaxall(mx);
        for (int64_t j = nv; j < nk; ++j) m = sr[j] > m ? sr[j] : m;
        m = m > mrow[i] ? m : mrow[i];
        const vf vm = vset1(m);
        vf sum = vzero();
        for (int64_t j = 0; j < nv; j += W) {
          vf p = vexp(vsub(vload(sr + j), vm));
          if (keep) p = vmul(p, vload(keep + j));
          vstore(sr + j, p);
          sum = vadd(sum, p);
        }
        float tail = 0.f;
        if (nv < nk) {
          vf p = vexp(vsub(vload(sr + nv, tm), vm));
          if (keep) p = vmul(p, vload(keep + nv, tm));
          vstore(sr + nv, p, tm);  // lanes past nk are computed but never stored or summed
          for (int64_t j = nv; j < nk; ++j) tail += sr[j];
        }
        if (k0 > 0) {  // rescale what earlier key blocks accumulated to the new max
          const float alpha = std::exp(mrow[i] - m);
          lrow[i] *= alpha;
          float* o = out + (q0 + i) * ldo;
          const vf va = vset1(alpha);
          int64_t c = 0;
          for (; c + W <= d; c += W) vstore(o + c, vmul(vload(o + c), va));
          for (; c < d; ++c) o[c] *= alpha;
        }
        mrow[i] = m;
        lrow[i] += tail + vsum(sum);
      }
      gemm(s, BK, v + k0 * ld, ld, nk, out + q0 * ldo, ldo, nq, d, nullptr, Act::none, k0 > 0);
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float r = 1.0f / lrow[i];
      const vf vr = vset1(r);
      float* o = out + (q0 + i) * ldo;
      int64_t c = 0;
      for (; c + W <= d; c += W) vstore(o + c, vmul(vload(o + c), vr));
      for (; c < d; ++c) o[c] *= r;
    }
  }
}

// Builds the additive/multiplicative key masks of sequence b in `buf` (2 * L floats);
// returns {nullptr, nullptr} when every key is valid.
KeyMask key_mask(const uint8_t* valid, int64_t L, float* buf) {
  bool all = true;
  for (int64_t j = 0; j < L; ++j) all &= valid[j] != 0;
  if (all) return {nullptr, nullptr};
  for (int64_t j = 0; j < L; ++j) {
    buf[j] = valid[j] ? 0.f : -FLT_MAX;
    buf[L + j] = valid[j] ? 1.f : 0.f;
  }
  return {buf, buf + L};
}

}  // namespace

void qkv_attention(const LayerWeights& w, const AttentionArgs& a, ThreadPool& pool) {
  const int64_t H = a.hidden, d = H / a.heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  if (w.qkv.packed() && a.batch * w.qkv.groups < 2 * pool.num_threads()) {
    // Too few (sequence, group) tasks to keep every thread busy (batch 1 with one group, as in
    // BERT-shaped models): project Q/K/V for all tokens with the parallel grouped GEMM into the
    // [T, 3H] workspace (group g's columns are [q_g | k_g | v_g]), then one task per
    // (sequence, head).
    const int64_t G = w.qkv.groups, No = H / G, hpg = No / d, ldq = 3 * H;
    grouped_linear(w.qkv, a.x, H, a.qkv, ldq, a.tokens, Act::none, pool);
    auto task = [&](int64_t t, int thread) {
      const int64_t b = t / a.heads, h = t % a.heads;
      const int64_t base = a.cu_seqlens[b], L = a.cu_seqlens[b + 1] - base;
      float* maskbuf = a.scratch + thread * a.scratch_per_thread;
      const float* q0 = a.qkv + base * ldq + (h / hpg) * 3 * No + (h % hpg) * d;
      float* sc = a.scores ? a.scores + a.score_offsets[b] + h * L * L : nullptr;
      attend(q0, q0 + No, q0 + 2 * No, ldq, L, d, scale, key_mask(a.key_valid + base, L, maskbuf),
             maskbuf + 2 * L, a.ctx + base * H + h * d, H, sc);
    };
    parallel_for(pool, a.batch * a.heads, task);
    return;
  }
  if (w.qkv.packed()) {
    const int64_t G = w.qkv.groups, No = H / G, hpg = No / d, ld = 3 * No;
    auto task = [&](int64_t t, int thread) {
      const int64_t b = t / G, g = t % G;
      const int64_t base = a.cu_seqlens[b], L = a.cu_seqlens[b + 1] - base;
      float* qkv = a.scratch + thread * a.scratch_per_thread;
      float* maskbuf = qkv + L * ld;
      float* rest = maskbuf + 2 * L;
      gemm_group(w.qkv, g, 0, ld, a.x + base * H + g * No, H, qkv, ld, L, Act::none);
      const KeyMask mask = key_mask(a.key_valid + base, L, maskbuf);
      for (int64_t hl = 0; hl < hpg; ++hl) {
        const int64_t h = g * hpg + hl;
        float* sc = a.scores ? a.scores + a.score_offsets[b] + h * L * L : nullptr;
        attend(qkv + hl * d, qkv + No + hl * d, qkv + 2 * No + hl * d, ld, L, d, scale, mask,
               rest, a.ctx + base * H + h * d, H, sc);
      }
    };
    parallel_for(pool, a.batch * G, task);
    return;
  }
  const int64_t ld = 3 * H;
  grouped_linear(w.q, a.x, H, a.qkv, ld, a.tokens, Act::none, pool);
  grouped_linear(w.k, a.x, H, a.qkv + H, ld, a.tokens, Act::none, pool);
  grouped_linear(w.v, a.x, H, a.qkv + 2 * H, ld, a.tokens, Act::none, pool);
  auto task = [&](int64_t t, int thread) {
    const int64_t b = t / a.heads, h = t % a.heads;
    const int64_t base = a.cu_seqlens[b], L = a.cu_seqlens[b + 1] - base;
    float* maskbuf = a.scratch + thread * a.scratch_per_thread;
    const float* q0 = a.qkv + base * ld + h * d;
    float* sc = a.scores ? a.scores + a.score_offsets[b] + h * L * L : nullptr;
    attend(q0, q0 + H, q0 + 2 * H, ld, L, d, scale, key_mask(a.key_valid + base, L, maskbuf),
           maskbuf + 2 * L, a.ctx + base * H + h * d, H, sc);
  };
  parallel_for(pool, a.batch * a.heads, task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
