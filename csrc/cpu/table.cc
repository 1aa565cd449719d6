// The kernel table of one ISA variant (compiled once per ISA, like every file here).
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

void embed_ln(const EmbedArgs& a, ThreadPool& pool);
void qkv_attention(const PackedLayer& w, const AttentionArgs& a, ThreadPool& pool);
void attn_out_ln(const GroupedLinear& w, const float* ln_w, const float* ln_b, float eps,
                 const float* ctx, const float* residual, float* out, int64_t rows,
                 ThreadPool& pool);
void ffn_ln(const GroupedLinear& w1, const GroupedLinear& w2, Act act, const float* ln_w,
            const float* ln_b, float eps, const float* x, float* inter, float* out, int64_t rows,
            ThreadPool& pool);

#define SQF_STR2(x) #x
#define SQF_STR(x) SQF_STR2(x)

const KernelTable& table() {
  static const KernelTable t{SQF_STR(SQF_ISA_NAME), kNR, grouped_linear, embed_ln, qkv_attention,
                             attn_out_ln, ffn_ln};
  return t;
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
