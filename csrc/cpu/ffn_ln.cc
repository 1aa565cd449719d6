// Grouped FFN: intermediate conv + activation, output conv + bias + residual + LayerNorm.
//
// With intermediate_groups == output_groups (SqueezeBERT's default) group g of the
// intermediate feeds only group g of the output, so one task = (row block, group) computes
// its MB x I/G slice of the intermediate (bias + GELU fused in the micro-kernel epilogue) and
// immediately consumes it for the MB x H/G output slice while it is still in L1/L2. A second
// pass adds the residual and normalises whole rows. Other group layouts run the two grouped
// GEMMs one after the other.
//
// fp32 weights in the conv's own layout (GroupedLinear form f32_native: no packed copy, see
// Encoder::Encoder) run the task transposed: with X^T the task's rows of group g turned into
// [Ni][m] (tokens along the vector lanes), mid^T = act(W1_g X^T + b1) and out^T = W2_g mid^T + b2
// put the weights in the micro-kernel's broadcast operand, read row by row in place, and the
// activations in its vector operand; out^T goes back to row-major on store. The bf16 form finishes
// each 32 x 32 block of both GEMMs in L1 (gemm_bf16_rows_pack / _store_t). Tasks are group-major:
// both threads stream the same group's weights, which stay in L2 across its row blocks.
#include <vector>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

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

// The bf16 form of ffn_group_transposed: the weights are the bf16 GEMM's A rows, read in place.
void ffn_group_transposed_bf16(const GroupedLinear& w1, const GroupedLinear& w2, int64_t g, Act act,
                               const float* x, int64_t H, float* out, int64_t m) {
  const int64_t G = w1.groups, Ni = w1.in / G, Nm = w1.out / G, No = w2.out / G;
  const int64_t mp = ceil_div(m, 32) * 32;
  thread_local aligned_vector<uint32_t> packed;  // X^T, then act(mid^T), as VNNI token panels
  if (packed.size() < static_cast<size_t>(mp * (Ni + Nm) / 2)) packed.resize(static_cast<size_t>(mp * (Ni + Nm) / 2));
  uint32_t* xb = packed.data();
  uint32_t* mb = xb + mp * Ni / 2;
  pack_xt_bf16(x + g * Ni, H, m, Ni, xb);
  gemm_bf16_rows_pack(w1.bf16_native() + g * Nm * Ni, Ni, reinterpret_cast<const uint16_t*>(xb), Nm, m,
                      w1.bias ? w1.bias + g * Nm : nullptr, act, mb);
  gemm_bf16_rows_store_t(w2.bf16_native() + g * No * Nm, Nm, reinterpret_cast<const uint16_t*>(mb), No, m,
                         w2.bias ? w2.bias + g * No : nullptr, out + g * No, H);
}

// One (row block, group) task of the fused FFN on in-place weights: out[m0:m0+m, group g].
void ffn_group_transposed(const GroupedLinear& w1, const GroupedLinear& w2, int64_t g, Act act,
                          const float* x, int64_t H, float* out, int64_t m) {
  const int64_t G = w1.groups, Ni = w1.in / G, Nm = w1.out / G, No = w2.out / G;
  const int64_t ld = ceil_div(m, 16) * 16;
  thread_local aligned_vector<float> buf;  // grows to the largest task, then reused
  const size_t need = static_cast<size_t>((Ni + Nm + No) * ld);
  if (buf.size() < need) buf.resize(need);
  float* xt = buf.data();
  float* midt = xt + Ni * ld;
  float* outt = midt + Nm * ld;
  transpose(x + g * Ni, H, m, Ni, xt, ld);
  gemm(w1.f32_native() + g * Nm * Ni, Ni, xt, ld, Ni, midt, ld, Nm, m, w1.bias ? w1.bias + g * Nm : nullptr, act,
       false, true);
  gemm(w2.f32_native() + g * No * Nm, Nm, midt, ld, Nm, outt, ld, No, m, w2.bias ? w2.bias + g * No : nullptr,
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

namespace {
// The FFN as two grouped GEMMs through the [rows, I] intermediate, each split over rows and columns
// (grouped_linear): for group counts that differ, and for too few (row block, group) tasks to keep
// the threads busy (a sequence of up to 32 tokens in one group is one task of the fused path: one
// thread would run the whole FFN while the others wait).
void ffn_split(const GroupedLinear& w1, const GroupedLinear& w2, Act act, const float* ln_w, const float* ln_b,
               float eps, const float* x, float* inter, float* out, int64_t rows, ThreadPool& pool) {
  const int64_t H = w2.out, I = w1.out;
  grouped_linear(w1, x, w1.in, inter, I, rows, act, pool);
  grouped_linear(w2, inter, I, out, H, rows, Act::none, pool);
  layernorm_rows(ln_w, ln_b, eps, x, out, H, rows, pool);
}
}  // namespace

void ffn_ln(const GroupedLinear& w1, const GroupedLinear& w2, Act act, const float* ln_w,
            const float* ln_b, float eps, const float* x, float* inter, float* out, int64_t rows,
            ThreadPool& pool) {
  const int64_t H = w2.out, I = w1.out;
  if (w1.groups == w2.groups) {
    const int64_t G = w1.groups, Ni1 = w1.in / G, No1 = I / G, No2 = H / G;
    const bool transposed = w1.f32_native() && w2.f32_native(), transposed16 = w1.bf16_native() && w2.bf16_native();
    const RowBlocks rb = row_blocks(rows, G, pool.num_threads(), w1.bf16() || transposed || transposed16 || tiles32(w1));
    const int64_t mblocks = rb.n;
    if (mblocks * G < pool.num_threads() && inter && !transposed && !transposed16)
      return ffn_split(w1, w2, act, ln_w, ln_b, eps, x, inter, out, rows, pool);
    auto task = [&](int64_t t, int) {
      const int64_t g = t / mblocks, m0 = rb.begin(t % mblocks), m = rb.end(t % mblocks) - m0;
      if (transposed) return ffn_group_transposed(w1, w2, g, act, x + m0 * H, H, out + m0 * H, m);
      if (transposed16) return ffn_group_transposed_bf16(w1, w2, g, act, x + m0 * H, H, out + m0 * H, m);
      // the task's m x I/G slice of the intermediate in a per-thread buffer that stays in L2 across
      // tasks, not in the [T, I] workspace: fresh workspace lines per task cost 3x at 8 x 128 (int8)
      thread_local aligned_vector<float> midbuf;
      if (static_cast<int64_t>(midbuf.size()) < m * No1) midbuf.resize(static_cast<size_t>(m * No1));
      float* mid = midbuf.data();
      gemm_group(w1, g, 0, No1, x + m0 * H + g * Ni1, H, mid, No1, m, act);
      gemm_group(w2, g, 0, No2, mid, No1, out + m0 * H + g * No2, H, m, Act::none);
    };
    parallel_for(pool, mblocks * G, task);
  } else {
    return ffn_split(w1, w2, act, ln_w, ln_b, eps, x, inter, out, rows, pool);
  }
  layernorm_rows(ln_w, ln_b, eps, x, out, H, rows, pool);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
