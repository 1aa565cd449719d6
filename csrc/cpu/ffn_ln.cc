// Grouped FFN: intermediate conv + activation, output conv + bias + residual + LayerNorm.
//
// With intermediate_groups == output_groups (SqueezeBERT's default) group g of the
// intermediate feeds only group g of the output, so one task = (row block, group) computes
// its MB x I/G slice of the intermediate (bias + GELU fused in the micro-kernel epilogue) and
// immediately consumes it for the MB x H/G output slice while it is still in L1/L2. A second
// pass adds the residual and normalises whole rows. Other group layouts run the two grouped
// GEMMs one after the other.
//
// fp32 weights in the conv's own layout (GroupedLinear::wnat: no packed copy, see
// Encoder::Encoder) run the task transposed: with X^T the task's rows of group g turned into
// [Ni][m] (tokens along the vector lanes), mid^T = act(W1_g X^T + b1) and out^T = W2_g mid^T + b2
// put the weights in the micro-kernel's broadcast operand, read row by row in place, and the
// activations in its vector operand; out^T goes back to row-major on store.
#include <vector>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

inline uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(to_bf16(lo)) | static_cast<uint32_t>(to_bf16(hi)) << 16;
}

// X^T as the bf16 GEMM's B operand: x rows [m][K] (stride ldx, K a multiple of 32) -> VNNI panels
// of 32 tokens, dst[p][K/2][32][2] as 32-bit words dst[(p * K/2 + kk) * 32 + t] holding
// (x[32p + t][2kk], x[32p + t][2kk + 1]); tokens past m are zeros.
void pack_xt_bf16(const float* x, int64_t ldx, int64_t m, int64_t K, uint32_t* dst) {
  const int64_t P = ceil_div(m, 32), K2 = K / 2;
#if defined(__AVX512BF16__)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t t0 = 0; t0 < 32; t0 += 16)
      for (int64_t c0 = 0; c0 < K; c0 += 32) {
        __m512 v[16];
        for (int q = 0; q < 16; ++q) {
          const int64_t tok = 32 * p + t0 + q;
          if (tok < m) {
            const float* a = x + tok * ldx + c0;
            const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + 16), _mm512_loadu_ps(a));
            v[q] = reinterpret_cast<const __m512&>(h);
          } else {
            v[q] = _mm512_setzero_ps();
          }
        }
        transpose16(v);  // v[i]: pair c0/2 + i of the 16 tokens
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + (p * K2 + c0 / 2 + i) * 32 + t0, v[i]);
      }
#else
  for (int64_t p = 0; p < P; ++p)
    for (int64_t kk = 0; kk < K2; ++kk)
      for (int64_t t = 0; t < 32; ++t) {
        const int64_t tok = 32 * p + t;
        dst[(p * K2 + kk) * 32 + t] = tok < m ? bf16_pair(x[tok * ldx + 2 * kk], x[tok * ldx + 2 * kk + 1]) : 0u;
      }
#endif
}

// The intermediate as the second bf16 GEMM's B operand: mid^T rows [N][ld] (fp32, tokens along the
// row) + bias per row, activation, rounded to bf16 -> VNNI panels of 32 tokens as pack_xt_bf16 lays
// them out, pairs of consecutive rows in each 32-bit word.
void pack_mid_bf16(const float* midt, int64_t ld, int64_t N, int64_t m, const float* bias, Act act,
                   uint32_t* dst) {
  const int64_t P = ceil_div(m, 32), N2 = N / 2;
  for (int64_t kk = 0; kk < N2; ++kk) {
    const float* r0 = midt + 2 * kk * ld;
    const float* r1 = r0 + ld;
    const float b0 = bias ? bias[2 * kk] : 0.f, b1 = bias ? bias[2 * kk + 1] : 0.f;
    int64_t t = 0;
#if defined(__AVX512F__)
    if (act == Act::none || act == Act::gelu) {
      const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
      const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
      for (; t < P * 32; t += 16) {
        const __mmask16 live = t + 16 <= m ? 0xffff : t < m ? static_cast<__mmask16>((1u << (m - t)) - 1) : 0;
        __m512 v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(live, r0 + t), _mm512_set1_ps(b0));
        __m512 v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(live, r1 + t), _mm512_set1_ps(b1));
        if (act == Act::gelu) {
          v0 = vgelu(v0);
          v1 = vgelu(v1);
        }
        __m512i u0 = _mm512_castps_si512(v0), u1 = _mm512_castps_si512(v1);  // round to nearest even
        u0 = _mm512_add_epi32(u0, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u0, 16), one)));
        u1 = _mm512_add_epi32(u1, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u1, 16), one)));
        const __m512i w = _mm512_or_si512(_mm512_srli_epi32(u0, 16), _mm512_and_si512(u1, hi_mask));
        _mm512_storeu_si512(dst + ((t / 32) * N2 + kk) * 32 + t % 32, _mm512_maskz_mov_epi32(live, w));
      }
    }
#endif
    for (; t < P * 32; ++t)
      dst[((t / 32) * N2 + kk) * 32 + t % 32] =
          t < m ? bf16_pair(activate(r0[t] + b0, act), activate(r1[t] + b1, act)) : 0u;
  }
}

// The bf16 form of ffn_group_transposed: the weights are the bf16 GEMM's A rows, read in place.
void ffn_group_transposed_bf16(const GroupedLinear& w1, const GroupedLinear& w2, int64_t g, Act act,
                               const float* x, int64_t H, float* out, int64_t m) {
  const int64_t G = w1.groups, Ni = w1.in / G, Nm = w1.out / G, No = w2.out / G;
  const int64_t mp = ceil_div(m, 32) * 32;
  thread_local std::vector<uint32_t> packed;  // X^T, then mid^T, as VNNI panels
  thread_local std::vector<float> acc;        // mid^T, then out^T
  if (packed.size() < static_cast<size_t>(mp * (Ni + Nm) / 2)) packed.resize(static_cast<size_t>(mp * (Ni + Nm) / 2));
  if (acc.size() < static_cast<size_t>(mp * (Nm + No))) acc.resize(static_cast<size_t>(mp * (Nm + No)));
  uint32_t* xb = packed.data();
  uint32_t* mb = xb + mp * Ni / 2;
  float* midt = acc.data();
  float* outt = midt + Nm * mp;
  pack_xt_bf16(x + g * Ni, H, m, Ni, xb);
  gemm_bf16_rows(w1.wnat16 + g * Nm * Ni, Ni, reinterpret_cast<const uint16_t*>(xb), midt, mp, Nm, m);
  pack_mid_bf16(midt, mp, Nm, m, w1.bias ? w1.bias + g * Nm : nullptr, act, mb);
  gemm_bf16_rows(w2.wnat16 + g * No * Nm, Nm, reinterpret_cast<const uint16_t*>(mb), outt, mp, No, m);
  transpose(outt, mp, No, m, out + g * No, H, 1.f, w2.bias ? w2.bias + g * No : nullptr);
}

// One (row block, group) task of the fused FFN on in-place weights: out[m0:m0+m, group g].
void ffn_group_transposed(const GroupedLinear& w1, const GroupedLinear& w2, int64_t g, Act act,
                          const float* x, int64_t H, float* out, int64_t m) {
  const int64_t G = w1.groups, Ni = w1.in / G, Nm = w1.out / G, No = w2.out / G;
  const int64_t ld = ceil_div(m, 16) * 16;
  thread_local std::vector<float> buf;  // grows to the largest task, then reused
  const size_t need = static_cast<size_t>((Ni + Nm + No) * ld);
  if (buf.size() < need) buf.resize(need);
  float* xt = buf.data();
  float* midt = xt + Ni * ld;
  float* outt = midt + Nm * ld;
  transpose(x + g * Ni, H, m, Ni, xt, ld);
  gemm(w1.wnat + g * Nm * Ni, Ni, xt, ld, Ni, midt, ld, Nm, m, w1.bias ? w1.bias + g * Nm : nullptr, act,
       false, true);
  gemm(w2.wnat + g * No * Nm, Nm, midt, ld, Nm, outt, ld, No, m, w2.bias ? w2.bias + g * No : nullptr,
       Act::none, false, true);
  transpose(outt, ld, No, m, out + g * No, H);
}

}  // namespace

void layernorm_rows(const float* ln_w, const float* ln_b, float eps, const float* residual,
                    float* out, int64_t H, int64_t rows, ThreadPool& pool) {
  const int64_t blocks = imin(rows, 4 * static_cast<int64_t>(pool.num_threads()));
  const int64_t per = ceil_div(rows, blocks);
  auto task = [&](int64_t blk, int) {
    const int64_t end = imin(rows, (blk + 1) * per);
    for (int64_t t = blk * per; t < end; ++t)
      add_layernorm_row(out + t * H, residual + t * H, ln_w, ln_b, eps, out + t * H, H);
  };
  parallel_for(pool, ceil_div(rows, per), task);
}

void ffn_ln(const GroupedLinear& w1, const GroupedLinear& w2, Act act, const float* ln_w,
            const float* ln_b, float eps, const float* x, float* inter, float* out, int64_t rows,
            ThreadPool& pool) {
  const int64_t H = w2.out, I = w1.out;
  if (w1.groups == w2.groups) {
    const int64_t G = w1.groups, Ni1 = w1.in / G, No1 = I / G, No2 = H / G;
    const bool transposed = w1.wnat && w2.wnat, transposed16 = w1.wnat16 && w2.wnat16;
    const RowBlocks rb = row_blocks(rows, G, pool.num_threads(), w1.wt16 || transposed || transposed16);
    const int64_t mblocks = rb.n;
    auto task = [&](int64_t t, int) {
      const int64_t g = t % G, m0 = rb.begin(t / G), m = rb.end(t / G) - m0;
      if (transposed) return ffn_group_transposed(w1, w2, g, act, x + m0 * H, H, out + m0 * H, m);
      if (transposed16) return ffn_group_transposed_bf16(w1, w2, g, act, x + m0 * H, H, out + m0 * H, m);
      float* mid = inter + m0 * I + g * No1;
      gemm_group(w1, g, 0, No1, x + m0 * H + g * Ni1, H, mid, I, m, act);
      gemm_group(w2, g, 0, No2, mid, I, out + m0 * H + g * No2, H, m, Act::none);
    };
    parallel_for(pool, mblocks * G, task);
  } else {
    grouped_linear(w1, x, w1.in, inter, I, rows, act, pool);
    grouped_linear(w2, inter, I, out, H, rows, Act::none, pool);
  }
  layernorm_rows(ln_w, ln_b, eps, x, out, H, rows, pool);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
