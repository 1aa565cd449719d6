// Grouped FFN: intermediate conv + activation, output conv + bias + residual + LayerNorm.
//
// With intermediate_groups == output_groups (SqueezeBERT's default) group g of the
// intermediate feeds only group g of the output, so one task = (row block, group) computes
// its MB x I/G slice of the intermediate (bias + GELU fused in the micro-kernel epilogue) and
// immediately consumes it for the MB x H/G output slice while it is still in L1/L2. A second
// pass adds the residual and normalises whole rows. Other group layouts run the two grouped
// GEMMs one after the other.
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

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
    const RowBlocks rb = row_blocks(rows, G, pool.num_threads(), w1.wt16 != nullptr);
    const int64_t mblocks = rb.n;
    auto task = [&](int64_t t, int) {
      const int64_t g = t % G, m0 = rb.begin(t / G), m = rb.end(t / G) - m0;
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
