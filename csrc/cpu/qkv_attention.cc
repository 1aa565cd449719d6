// Grouped Q/K/V projection + softmax(QK^T / sqrt(d) + mask) V.
//
// Fused path (w.qkv packed: q/k/v share G groups and each group holds whole heads, the
// default SqueezeBERT config): one task per (sequence, group). The task runs one GEMM
// X[seq, group] @ [Wq_g | Wk_g | Wv_g] into its own L x 3H/G scratch (hot in L2, never the
// shared [T, 3H] buffer), then for each head of the group: K^T (pre-scaled by 1/sqrt d) ->
// S = Q K^T (GEMM micro-kernel) -> masked softmax rows (vectorised exp) -> ctx = P V (GEMM),
// rows scaled by 1/sum at the end (d values per row instead of L); sequences longer than
// kAttnOneBlock stream through key blocks with an online softmax (see attend). bf16 models with
// head sizes in whole 32s skip the scratch: the projection's epilogue writes Q, K^T and V in the
// bf16 layouts the attention GEMMs read (qkv_epilogue).
// General path (groups not aligned with heads), and the fused weights when (sequence, group)
// tasks are too few for the threads: grouped GEMMs into the [T, 3H] workspace, then one task per
// (sequence, head) running the same attention core.
// Keys whose key_valid is 0 (padding kept only for the pooler) get transformers' additive mask
// (float lowest), i.e. probability exactly 0. A sequence with no valid key at all (packing.py refuses
// one; a direct _C caller may pass one) gets a zero context, never a division by zero.
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

struct KeyMask {
  const float* add;   // [L]: 0 or -FLT_MAX, or nullptr when every key is valid
  const float* keep;  // [L]: 1 or 0
};

// bf16 B operands of the attention GEMMs in gemm_bf16's VNNI panels [ceil(N/32)][Kp/2][32][2]
// (Kp = K rounded up to 32), written in full (padding zeroed) into `buf` (grows, then reused).
struct VnniPanels {
  uint16_t* out;
  int64_t Kp;
  uint16_t& at(int64_t k, int64_t n) const {
    return out[((n / kBf16Panel) * Kp + k - k % 2) * kBf16Panel + (n % kBf16Panel) * 2 + k % 2];
  }
};
int64_t vnni_panels_size(int64_t K, int64_t N) { return ceil_div(N, kBf16Panel) * ceil_div(K, 32) * 32 * kBf16Panel; }
VnniPanels vnni_panels(aligned_vector<uint16_t>& buf, int64_t K, int64_t N) {
  const int64_t n = vnni_panels_size(K, N);
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return {buf.data(), ceil_div(K, 32) * 32};
}
// K^T: B[c][j] = k[j][c] * scale (K = d, N = L keys). The 32-bit word (c, c+1) of key j is
// one lane of the key's converted row, so 16 keys x 16 words are one 16 x 16 transpose.
uint16_t* pack_kt_bf16(const float* k, int64_t ld, int64_t L, int64_t d, float scale,
                       aligned_vector<uint16_t>& buf) {
  const VnniPanels b = vnni_panels(buf, d, L);
  const int64_t Kp = b.Kp, Np = ceil_div(L, kBf16Panel) * kBf16Panel;
  int64_t j0 = 0;
#if defined(__AVX512BF16__)
  if (d % 32 == 0) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (; j0 + 16 <= L; j0 += 16)
      for (int64_t c0 = 0; c0 < d; c0 += 32) {
        __m512 r[16];
        for (int q = 0; q < 16; ++q) {
          const float* kr = k + (j0 + q) * ld + c0;
          const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(kr + 16), vs),
                                                 _mm512_mul_ps(_mm512_loadu_ps(kr), vs));
          r[q] = _mm512_castsi512_ps(reinterpret_cast<const __m512i&>(h));
        }
        transpose16(r);  // r[p] = word p (dims c0 + 2p, c0 + 2p + 1) of keys j0 .. j0 + 15
        for (int p = 0; p < 16; ++p) _mm512_storeu_ps(reinterpret_cast<float*>(&b.at(c0 + 2 * p, j0)), r[p]);
      }
  }
#endif
  for (int64_t j = j0; j < Np; ++j)
    for (int64_t c = 0; c < Kp; ++c) b.at(c, j) = j < L && c < d ? to_bf16(k[j * ld + c] * scale) : 0;
  for (int64_t j = 0; j < j0; ++j)  // the vector path wrote dims < d of keys < j0: zero the padding
    for (int64_t c = d; c < Kp; ++c) b.at(c, j) = 0;
  return b.out;
}

// V: B[j][c] = v[j][c] (K = L keys, N = d) into `out` (vnni_panels_size(L, d) values). Keys j and
// j + 1 interleave: one 32 x 2 panel row per key pair and 32 dims, built from the pair's converted
// rows by one 16-bit permutation.
const uint16_t* pack_v_bf16(const float* v, int64_t ld, int64_t L, int64_t d, uint16_t* out) {
  const VnniPanels b{out, ceil_div(L, 32) * 32};
  const int64_t Kp = b.Kp, Np = ceil_div(d, kBf16Panel) * kBf16Panel;
  int64_t j0 = 0;
#if defined(__AVX512BF16__)
  if (d % 32 == 0) {
    for (; j0 + 2 <= L; j0 += 2)
      for (int64_t c0 = 0; c0 < d; c0 += 32) {
        const float* v0 = v + j0 * ld + c0;
        const float* v1 = v0 + ld;
        for (int h = 0; h < 2; ++h) {  // dims c0 + 16h .. c0 + 16h + 15 of keys j0, j0 + 1
          _mm512_storeu_si512(&b.at(j0, c0 + 16 * h),
                              bf16_pairs(_mm512_loadu_ps(v0 + 16 * h), _mm512_loadu_ps(v1 + 16 * h)));
        }
      }
  }
#endif
  for (int64_t j = j0; j < Kp; ++j)
    for (int64_t c = 0; c < Np; ++c) b.at(j, c) = j < L && c < d ? to_bf16(v[j * ld + c]) : 0;
  for (int64_t j = 0; j < j0; ++j)
    for (int64_t c = d; c < Np; ++c) b.at(j, c) = 0;
  return b.out;
}

// bf16 models, fused path: the Q/K/V projection of one (sequence, group) task writes attention's
// bf16 operands straight from its 32 x 32 fp32 blocks (tokens x features, bias added here): Q as
// rows (the QK^T A operand), K^T scaled by 1/sqrt d and V as the VNNI panels pack_kt_bf16 and
// pack_v_bf16 would build, per head (and per key block for V). No fp32 [L][3H/G] buffer, no
// conversion pass per head. Needs whole heads of a multiple of 32 (each 32-feature panel then
// lies in one of q/k/v and one head).
struct QkvBf16 {
  int64_t L, No, d, BK;
  float scale;
  const float* bias;  // the group's [q | k | v] biases
  uint16_t* q;        // [rows rounded to 32][No]
  uint32_t* kt;       // per head: [ceil(L/32) key panels][d/2][32 keys] words
  uint32_t* v;        // per head, per key block of BK: [d/32 panels][key pairs][32 dims] words
  int64_t kt_head() const { return ceil_div(L, 32) * 32 * d / 2; }          // words
  int64_t v_block() const { return vnni_panels_size(BK, d) / 2; }           // words
  int64_t v_head() const { return ceil_div(L, BK) * v_block(); }            // words
};

void qkv_epilogue(void* ctx, int64_t r0, int64_t p, const float* acc) {
  const QkvBf16& e = *static_cast<const QkvBf16*>(ctx);
  const int64_t f0 = p * 32, seg = f0 / e.No, w = f0 % e.No, hl = w / e.d, c0 = w % e.d;
  const float* b = e.bias + f0;
  if (seg == 0) {  // Q rows
    uint16_t* dst = e.q + r0 * e.No + w;
    for (int t = 0; t < 32; ++t) {
      const float* a = acc + t * 32;
      int c = 0;
#if defined(__AVX512BF16__)
      const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_add_ps(_mm512_loadu_ps(a + 16), _mm512_loadu_ps(b + 16)),
                                             _mm512_add_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b)));
      _mm512_storeu_si512(dst + t * e.No, reinterpret_cast<const __m512i&>(h));
      c = 32;
#endif
      for (; c < 32; ++c) dst[t * e.No + c] = to_bf16(a[c] + b[c]);
    }
  } else if (seg == 1) {  // K^T: word (dims c0 + 2i, c0 + 2i + 1) of key r0 + t at [i][t]
    uint32_t* dst = e.kt + hl * e.kt_head() + ((r0 / 32) * (e.d / 2) + c0 / 2) * 32;
#if defined(__AVX512BF16__)
    const __m512 vs = _mm512_set1_ps(e.scale);
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    for (int h = 0; h < 2; ++h) {
      __m512 r[16];
      for (int q = 0; q < 16; ++q) {
        const float* a = acc + (16 * h + q) * 32;
        const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_add_ps(_mm512_loadu_ps(a + 16), b1), vs),
                                               _mm512_mul_ps(_mm512_add_ps(_mm512_loadu_ps(a), b0), vs));
        r[q] = _mm512_castsi512_ps(reinterpret_cast<const __m512i&>(x));
      }
      transpose16(r);  // r[i] = word i of keys 16h .. 16h + 15
      for (int i = 0; i < 16; ++i) _mm512_storeu_ps(reinterpret_cast<float*>(dst + i * 32 + 16 * h), r[i]);
    }
#else
    for (int i = 0; i < 16; ++i)
      for (int t = 0; t < 32; ++t)
        dst[i * 32 + t] = bf16_pair((acc[t * 32 + 2 * i] + b[2 * i]) * e.scale,
                                    (acc[t * 32 + 2 * i + 1] + b[2 * i + 1]) * e.scale);
#endif
  } else {  // V: word (keys r0 + 2kk, r0 + 2kk + 1) of dim c0 + c at [kk][c], in key block r0 / BK
    const int64_t kb = r0 / e.BK, rin = r0 % e.BK, Kpb = ceil_div(imin(e.BK, e.L - kb * e.BK), 32) * 32;
    uint32_t* dst = e.v + hl * e.v_head() + kb * e.v_block() + ((c0 / 32) * (Kpb / 2) + rin / 2) * 32;
    for (int kk = 0; kk < 16; ++kk) {
      const float* a0 = acc + 2 * kk * 32;
      const float* a1 = a0 + 32;
      int c = 0;
#if defined(__AVX512BF16__)
      for (; c < 32; c += 16) {
        const __m512 bb = _mm512_loadu_ps(b + c);
        _mm512_storeu_si512(dst + kk * 32 + c, bf16_pairs(_mm512_add_ps(_mm512_loadu_ps(a0 + c), bb),
                                                          _mm512_add_ps(_mm512_loadu_ps(a1 + c), bb)));
      }
#endif
      for (; c < 32; ++c) dst[kk * 32 + c] = bf16_pair(a0[c] + b[c], a1[c] + b[c]);
    }
  }
}

// One head of one sequence, flash-style: query rows in blocks of at most kAttnBlockQ, keys in
// blocks of at most kAttnBlockK (a sequence of up to kAttnOneBlock tokens is one block of each:
// plain softmax). Per key block: S = Q K^T (micro-kernel, K^T pre-scaled by 1/sqrt d), mask, a
// running row max m and sum l (online softmax), the ctx rows rescaled by exp(m_old - m_new) and
// ctx += P V; rows scaled by 1/l at the end (d values per row instead of L). The score tile is
// kAttnBlockQ x kAttnBlockK whatever L is. q/k/v rows have stride ld; scratch holds
// attention_head_scratch_floats(L, d) (kernels.h). Writes ctx rows (stride ldo) and, when
// scores != nullptr, the pre-softmax scores [L][L].
void attend(const float* q, const float* k, const float* v, int64_t ld, int64_t L, int64_t d,
            float scale, KeyMask mask, float* scratch, float* out, int64_t ldo, float* scores,
            bool bf16, const QkvBf16* pre = nullptr, int64_t head = 0) {
  const bool one = L <= kAttnOneBlock;
  const int64_t BQ = attn_block_q(L), BK = attn_block_k(L);
  const int64_t ldkt = kt_stride(L);
  float* kt = scratch;        // [d][ldkt]
  float* s = kt + d * ldkt;   // [BQ][BK]
  float* mrow = s + BQ * BK;  // [BQ] running max
  float* lrow = mrow + BQ;    // [BQ] running sum
  thread_local aligned_vector<uint16_t> kt16, v16;
  thread_local aligned_vector<float> pv;
  const uint16_t* ktb = nullptr;
  const uint16_t* vb = nullptr;
  const int64_t vblock = vnni_panels_size(BK, d);  // V of one key block, packed once per head
  if (pre) {  // the projection wrote them (qkv_epilogue)
    ktb = reinterpret_cast<const uint16_t*>(pre->kt + head * pre->kt_head());
    vb = reinterpret_cast<const uint16_t*>(pre->v + head * pre->v_head());
  } else if (bf16) {
    ktb = pack_kt_bf16(k, ld, L, d, scale, kt16);
    const int64_t nkb = ceil_div(L, BK);
    if (static_cast<int64_t>(v16.size()) < nkb * vblock) v16.resize(static_cast<size_t>(nkb * vblock));
    for (int64_t kb = 0; kb < nkb; ++kb)
      pack_v_bf16(v + kb * BK * ld, ld, imin(BK, L - kb * BK), d, v16.data() + kb * vblock);
    vb = v16.data();
  } else {
    transpose(k, ld, L, d, kt, ldkt, scale);  // kt[c][j] = k[j][c] * scale: K^T of the head
  }
  if (bf16 && !one && static_cast<int64_t>(pv.size()) < BQ * d) pv.resize(static_cast<size_t>(BQ * d));
  const int64_t dp = ceil_div(d, 32) * 32;
  for (int64_t q0 = 0; q0 < L; q0 += BQ) {
    const int64_t nq = imin(BQ, L - q0);
    for (int64_t i = 0; i < nq; ++i) {
      mrow[i] = -INFINITY;  // as PyTorch: a row of -inf scores (or any NaN) makes the row NaN, not zeros
      lrow[i] = 0.f;
    }
    for (int64_t k0 = 0; k0 < L; k0 += BK) {
      const int64_t nk = imin(BK, L - k0);
      if (pre)  // key block k0 starts a panel (BK is a multiple of 32)
        gemm_bf16_a16(pre->q + q0 * pre->No + head * d, pre->No, ktb + (k0 / kBf16Panel) * dp * kBf16Panel, d,
                      s, BK, nq, nk);
      else if (bf16)
        gemm_bf16(q + q0 * ld, ld, ktb + (k0 / kBf16Panel) * dp * kBf16Panel, d, s, BK, nq, nk, nullptr,
                  Act::none);
      else
        gemm(q + q0 * ld, ld, kt + k0, ldkt, d, s, BK, nq, nk, nullptr, Act::none);
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
        vf mx = vset1(-INFINITY);
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
      if (!bf16) {
        gemm(s, BK, v + k0 * ld, ld, nk, out + q0 * ldo, ldo, nq, d, nullptr, Act::none, k0 > 0);
      } else if (k0 == 0) {
        gemm_bf16(s, BK, vb, nk, out + q0 * ldo, ldo, nq, d, nullptr, Act::none);
      } else {  // the bf16 GEMM does not accumulate: P V into pv, then added
        gemm_bf16(s, BK, vb + (k0 / BK) * vblock, nk, pv.data(), d, nq, d, nullptr, Act::none);
        for (int64_t i = 0; i < nq; ++i) {
          float* o = out + (q0 + i) * ldo;
          const float* pr = pv.data() + i * d;
          int64_t c = 0;
          for (; c + W <= d; c += W) vstore(o + c, vadd(vload(o + c), vload(pr + c)));
          for (; c < d; ++c) o[c] += pr[c];
        }
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      const float r = lrow[i] > 0.f ? 1.0f / lrow[i] : 0.f;  // no valid key (direct _C use): zero context
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

void qkv_attention(const PackedLayer& w, const AttentionArgs& a, ThreadPool& pool) {
  const int64_t H = a.hidden, d = H / a.heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // bf16 models: QK^T and PV on the bf16 GEMM too (Q, K, V and the probabilities rounded to bf16,
  // as flash attention does on GPUs; mask, softmax, the running max/sum and 1/sum stay fp32)
  const bool bf16 = w.attn_bf16;
  if (w.qkv.has_weights() && a.batch * w.qkv.groups < 2 * pool.num_threads()) {
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
             maskbuf + key_mask_floats(L), a.ctx + base * H + h * d, H, sc, bf16);
    };
    parallel_for(pool, a.batch * a.heads, task);
    return;
  }
  if (w.qkv.has_weights()) {
    const int64_t G = w.qkv.groups, No = H / G, hpg = No / d, ld = 3 * No;
    // bf16 with heads of whole 32s: the projection writes attention's bf16 operands (qkv_epilogue); so
    // does an int8 projection whose variant hands over 32 x 32 blocks (i8_amx) when attention runs in bf16
    const bool i8_blocks = w.qkv.int8() && w.qkv.i8->gemm_blocks && bf16;
    const bool direct = (w.qkv.bf16() || i8_blocks) && d % 32 == 0;
    auto task = [&](int64_t t, int thread) {
      const int64_t b = t / G, g = t % G;
      const int64_t base = a.cu_seqlens[b], L = a.cu_seqlens[b + 1] - base;
      float* qkv = a.scratch + thread * a.scratch_per_thread;
      float* maskbuf = qkv + L * ld;
      float* rest = maskbuf + key_mask_floats(L);
      const KeyMask mask = key_mask(a.key_valid + base, L, maskbuf);
      if (direct) {
        thread_local aligned_vector<uint16_t> q16;
        thread_local aligned_vector<uint32_t> kt32, v32;
        QkvBf16 e{L, No, d, attn_block_k(L), scale, w.qkv.bias ? w.qkv.bias + g * ld : nullptr,
                  nullptr, nullptr, nullptr};
        const int64_t Lp = ceil_div(L, 32) * 32;
        if (static_cast<int64_t>(q16.size()) < Lp * No) q16.resize(static_cast<size_t>(Lp * No));
        if (static_cast<int64_t>(kt32.size()) < hpg * e.kt_head()) kt32.resize(static_cast<size_t>(hpg * e.kt_head()));
        if (static_cast<int64_t>(v32.size()) < hpg * e.v_head()) v32.resize(static_cast<size_t>(hpg * e.v_head()));
        e.q = q16.data();
        e.kt = kt32.data();
        e.v = v32.data();
        if (i8_blocks) {
          const Int8Kernels& k8 = *w.qkv.i8;
          const int64_t panels = ceil_div(ld, k8.nr);
          k8.gemm_blocks(a.x + base * H + g * No, H, w.qkv.int8() + g * panels * k8.panel_bytes(No), No,
                         w.qkv.wscale + g * ld, w.qkv.wsum ? w.qkv.wsum + g * ld : nullptr, L, ld, qkv_epilogue, &e);
        } else {
          const int64_t Kp = ceil_div(No, 32) * 32, panels = ceil_div(ld, kBf16Panel);
          gemm_bf16_blocks(a.x + base * H + g * No, H, L, No, w.qkv.bf16() + g * panels * Kp * kBf16Panel, ld,
                           qkv_epilogue, &e);
        }
        for (int64_t hl = 0; hl < hpg; ++hl) {
          const int64_t h = g * hpg + hl;
          float* sc = a.scores ? a.scores + a.score_offsets[b] + h * L * L : nullptr;
          attend(nullptr, nullptr, nullptr, 0, L, d, scale, mask, rest, a.ctx + base * H + h * d, H, sc,
                 true, &e, hl);
        }
        return;
      }
      gemm_group(w.qkv, g, 0, ld, a.x + base * H + g * No, H, qkv, ld, L, Act::none);
      for (int64_t hl = 0; hl < hpg; ++hl) {
        const int64_t h = g * hpg + hl;
        float* sc = a.scores ? a.scores + a.score_offsets[b] + h * L * L : nullptr;
        attend(qkv + hl * d, qkv + No + hl * d, qkv + 2 * No + hl * d, ld, L, d, scale, mask,
               rest, a.ctx + base * H + h * d, H, sc, bf16);
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
           maskbuf + key_mask_floats(L), a.ctx + base * H + h * d, H, sc, bf16);
  };
  parallel_for(pool, a.batch * a.heads, task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
