// Post-attention grouped conv + bias + residual + LayerNorm. The GEMM writes the rows, then
// each row block is normalised while still hot in cache.
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

void attn_out_ln(const GroupedLinear& w, const float* ln_w, const float* ln_b, float eps,
                 const float* ctx, const float* residual, float* out, int64_t rows,
                 ThreadPool& pool) {
  const int64_t H = w.out, block = 16;
  grouped_linear(w, ctx, w.in, out, H, rows, Act::none, pool);
  auto task = [&](int64_t blk, int) {
    const int64_t end = imin(rows, (blk + 1) * block);
    for (int64_t t = blk * block; t < end; ++t)
      add_layernorm_row(out + t * H, residual + t * H, ln_w, ln_b, eps, out + t * H, H);
  };
  parallel_for(pool, ceil_div(rows, block), task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
