// Post-attention grouped conv + bias + residual + LayerNorm: the grouped GEMM (bias fused in
// the micro-kernel epilogue) writes the rows, then a second parallel pass adds the residual and
// normalises them (LayerNorm fused into each GEMM task measured no faster; at 8 x 128 bf16 the
// pass is ~12% of this op).
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

void layernorm_rows(const float* ln_w, const float* ln_b, float eps, const float* residual,
                    float* out, int64_t H, int64_t rows, ThreadPool& pool);

void attn_out_ln(const GroupedLinear& w, const float* ln_w, const float* ln_b, float eps,
                 const float* ctx, const float* residual, float* out, int64_t rows,
                 ThreadPool& pool) {
  grouped_linear(w, ctx, w.in, out, w.out, rows, Act::none, pool);
  layernorm_rows(ln_w, ln_b, eps, residual, out, w.out, rows, pool);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
