// The encoder forward on the host side: carves the workspace, then issues embed_ln and, per
// layer, qkv_attention -> attn_out_ln -> ffn_ln on one stream, and the pooler. Allocates nothing;
// everything it launches is graph-capturable (no host sync, no memset: the LN row buffer and
// counters are left zero by the kernels themselves).
#include <stdexcept>
#include <string>

#include "kernels.h"
#include <cuda_runtime.h>

namespace sqf {
namespace cuda {

WorkspaceLayout workspace_layout(const EncoderConfig& c, int64_t tokens, bool unfused_ffn) {
  const int64_t T = tokens < 1 ? 1 : tokens, H = c.hidden, es = dtype_size(c.dtype);
  // the activation regions (common/encoder_spec.h), in bytes, 256-aligned; then the zeroed tail
  const ActivationLayout a = activation_layout(T, H, unfused_ffn ? c.intermediate : 0, es, 256);
  WorkspaceLayout w;
  w.qkv = a.qkv;
  w.ctx = a.ctx;
  w.mid = a.mid;
  w.ping0 = a.ping0;
  w.ping1 = a.ping1;
  w.inter = a.inter;
  w.zeroed = w.pre = a.end;
  w.counters = align_up(w.pre + T * H * 4, 256);  // one counter per row tile of the smallest tile in use (32 rows)
  w.total = align_up(w.counters + ((T + 31) / 32 + 1) * 4, 256);
  return w;
}

void encoder_forward(const EncoderConfig& c, const EncoderWeights& w, const ForwardArgs& a,
                     const DeviceLimits& dev, cudaStream_t stream) {
  const int64_t T = a.tokens, H = c.hidden;
  if (a.batch < 1 || T < 1) throw std::invalid_argument("empty batch");
  if (int(w.layers.size()) != c.layers) throw std::invalid_argument("layer weights do not match the config");
  const FfnPlan ffn = plan_ffn(T, int(c.hidden), int(c.intermediate), int(c.intermediate_groups), int(c.output_groups), c.dtype,
                               dev.smem_optin, dev.sm_count);
  const WorkspaceLayout lay = workspace_layout(c, T, !ffn.fused);
  if (a.workspace_bytes < lay.total)
    throw std::invalid_argument("workspace of " + std::to_string(a.workspace_bytes) + " bytes is smaller than the " +
                                std::to_string(lay.total) + " bytes needed");
  char* ws = static_cast<char*>(a.workspace);
  void* qkv = ws + lay.qkv;
  void* ctx = ws + lay.ctx;
  void* mid = ws + lay.mid;
  void* ping[2] = {ws + lay.ping0, ws + lay.ping1};
  void* inter = ffn.fused ? nullptr : ws + lay.inter;
  float* pre = reinterpret_cast<float*>(ws + lay.pre);
  int* counters = reinterpret_cast<int*>(ws + lay.counters);
  const int64_t* live = a.cu_seqlens + a.batch;
  const int64_t row_bytes = H * dtype_size(c.dtype);

  auto layer_out = [&](int l) -> void* {  // where step l's output goes (0 = embeddings)
    if (a.hidden_states) return static_cast<char*>(a.hidden_states) + l * T * row_bytes;
    if (l == c.layers) return a.last_hidden;
    return ping[l % 2];
  };

  EmbedArgs e;
  e.rows = T;
  e.live = live;
  e.hidden = int(c.hidden);
  e.input_ids = a.input_ids;
  e.inputs_embeds = a.inputs_embeds;
  e.token_type_ids = a.token_type_ids;
  e.position_ids = a.position_ids;
  e.word = w.word;
  e.position = w.position;
  e.token_type = w.token_type;
  e.vocab = c.vocab;
  e.max_positions = c.max_positions;
  e.type_vocab = c.type_vocab;
  e.ln_w = w.emb_ln_w;
  e.ln_b = w.emb_ln_b;
  e.eps = c.embedding_ln_eps;
  e.out = layer_out(0);
  embed_ln(c.dtype, e, stream);

  for (int l = 0; l < c.layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    const void* x = layer_out(l);
    void* y = layer_out(l + 1);
    AttentionArgs at;
    at.batch = static_cast<int>(a.batch);
    at.max_len = a.max_len;
    at.heads = int(c.heads);
    at.hidden = int(c.hidden);
    at.cu_seqlens = a.cu_seqlens;
    at.key_valid = a.key_valid;
    at.ctx = ctx;
    at.scores = a.scores ? static_cast<char*>(a.scores) + l * a.score_per_layer * dtype_size(c.dtype) : nullptr;
    at.score_offsets = a.score_offsets;
    qkv_attention(c.dtype, x, T, live, lw.q, lw.k, lw.v, qkv, at, dev.sm_count, stream);

    LnEpilogue ln;
    ln.residual = x;
    ln.ln_w = lw.post_ln_w;
    ln.ln_b = lw.post_ln_b;
    ln.eps = c.encoder_ln_eps;
    ln.out = mid;
    ln.pre = pre;
    ln.counters = counters;
    attn_out_ln(c.dtype, ctx, T, live, lw.post, ln, dev.sm_count, stream);

    LnEpilogue ln2 = ln;
    ln2.residual = mid;
    ln2.ln_w = lw.out_ln_w;
    ln2.ln_b = lw.out_ln_b;
    ln2.out = y;
    ffn_ln(c.dtype, mid, T, live, lw.inter, lw.out, static_cast<int>(c.act), ln2, inter, dev.smem_optin, dev.sm_count, stream);
  }
  void* last = layer_out(c.layers);
  if (last != a.last_hidden) {
    const cudaError_t err = cudaMemcpyAsync(a.last_hidden, last, T * row_bytes, cudaMemcpyDeviceToDevice, stream);
    if (err != cudaSuccess) throw std::runtime_error(std::string("cudaMemcpyAsync: ") + cudaGetErrorString(err));
  }
  if (a.pooled) {
    if (!w.pooler.w || !a.pool_rows) throw std::invalid_argument("this model was built without a pooler");
    grouped_linear(c.dtype, a.last_hidden, H, a.pool_rows, a.batch, nullptr, &w.pooler, 1, a.pooled, H, nullptr,
                   act_tanh, dev.sm_count, stream);
  }
}

}  // namespace cuda
}  // namespace sqf
