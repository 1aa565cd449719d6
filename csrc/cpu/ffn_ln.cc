// Grouped FFN: intermediate conv + activation, output conv + bias + residual + LayerNorm.
// The intermediate [rows, intermediate] lives in a reused workspace.
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

void ffn_ln(const GroupedLinear& w1, const GroupedLinear& w2, Act act, const float* ln_w,
            const float* ln_b, float eps, const float* x, float* inter, float* out, int64_t rows,
            ThreadPool& pool) {
  const int64_t H = w2.out, block = 16;
  grouped_linear(w1, x, w1.in, inter, w1.out, rows, act, pool);
  grouped_linear(w2, inter, w2.in, out, H, rows, Act::none, pool);
  auto task = [&](int64_t blk, int) {
    const int64_t end = imin(rows, (blk + 1) * block);
    for (int64_t t = blk * block; t < end; ++t)
      add_layernorm_row(out + t * H, x + t * H, ln_w, ln_b, eps, out + t * H, H);
  };
  parallel_for(pool, ceil_div(rows, block), task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
