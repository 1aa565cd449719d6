// Embeddings gather + sum + LayerNorm, one token per row. Index ranges are validated before
// any thread starts, so a bad id raises instead of reading out of bounds.
#include <vector>

#include "../common/errors.h"
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {

void embed_ln(const EmbedArgs& a, ThreadPool& pool) {
  for (int64_t t = 0; t < a.tokens; ++t) {
    if (a.input_ids)
      SQF_CHECK_INDEX(a.input_ids[t] >= 0 && a.input_ids[t] < a.vocab, "input_ids contains ",
                      a.input_ids[t], ", outside the vocabulary [0, ", a.vocab, ")");
    SQF_CHECK_INDEX(a.token_type_ids[t] >= 0 && a.token_type_ids[t] < a.type_vocab,
                    "token_type_ids contains ", a.token_type_ids[t], ", outside [0, ",
                    a.type_vocab, ")");
    SQF_CHECK_INDEX(a.position_ids[t] >= 0 && a.position_ids[t] < a.max_positions,
                    "position_ids contains ", a.position_ids[t], ", outside [0, ",
                    a.max_positions, ")");
  }
  const int64_t H = a.hidden, block = 16;
  auto task = [&](int64_t blk, int) {
    float sum[4096];
    const int64_t end = imin(a.tokens, (blk + 1) * block);
    for (int64_t t = blk * block; t < end; ++t) {
      const float* w = a.input_ids ? a.word + a.input_ids[t] * H : a.inputs_embeds + t * H;
      const float* p = a.position + a.position_ids[t] * H;
      const float* ty = a.token_type + a.token_type_ids[t] * H;
      for (int64_t i = 0; i < H; ++i) sum[i] = w[i] + p[i];
      for (int64_t i = 0; i < H; ++i) sum[i] += ty[i];
      add_layernorm_row(sum, nullptr, a.ln_w, a.ln_b, a.eps, a.out + t * H, H);
    }
  };
  SQF_CHECK(H <= 4096, "hidden size ", H, " exceeds the CPU kernels' limit of 4096");
  parallel_for(pool, ceil_div(a.tokens, block), task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
