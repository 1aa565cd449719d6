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

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols.
void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  int64_t r0 = 0;
#if defined(__AVX512F__)
  for (; r0 + 16 <= rows; r0 += 16) {
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m512 v[16];
      for (int q = 0; q < 16; ++q) v[q] = _mm512_loadu_ps(src + (r0 + q) * lds + c0);
      transpose16(v);
      for (int q = 0; q < 16; ++q) _mm512_storeu_ps(dst + (c0 + q) * ldd + r0, v[q]);
    }
    for (int64_t r = r0; r < r0 + 16; ++r)
      for (int64_t c = c0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
  }
#endif
  for (int64_t r = r0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
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
    const bool transposed = w1.wnat && w2.wnat;
    const RowBlocks rb = row_blocks(rows, G, pool.num_threads(), w1.wt16 || transposed);
    const int64_t mblocks = rb.n;
    auto task = [&](int64_t t, int) {
      const int64_t g = t % G, m0 = rb.begin(t / G), m = rb.end(t / G) - m0;
      if (transposed) return ffn_group_transposed(w1, w2, g, act, x + m0 * H, H, out + m0 * H, m);
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
