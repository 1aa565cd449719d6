// Post-attention conv + bias + residual + LayerNorm (encoder eps 1e-12, set by the caller).
// The kernel is the grouped GEMM's LayerNorm epilogue (grouped_linear.cu): blocks own 64x64
// output tiles, accumulate conv + bias + residual into an fp32 row buffer, and the last block of
// each 64-row tile normalises the rows. With few rows (small batches) K is split across blocks
// so the GPU still fills; the split count comes from plan_gemm.
#include "common.cuh"

namespace sqf {
namespace cuda {

void attn_out_ln(DType t, const void* ctx, int64_t rows, const int64_t* live, const Conv& post,
                 const LnEpilogue& ln, int sm_count, cudaStream_t stream) {
  grouped_linear_ln(t, ctx, post.in, rows, live, post, ln, sm_count, 0, stream);
}

}  // namespace cuda
}  // namespace sqf
