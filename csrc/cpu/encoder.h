// The whole SqueezeBERT encoder on the CPU: weights packed once at construction, then
// forward() runs embeddings+LN, every layer's three fused ops and the pooler on packed
// (padding-free) token rows. Workspaces are pooled per Encoder and grow to the largest batch
// seen; concurrent forward() calls each take their own workspace, so one Encoder can serve
// several Python threads.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels.h"

namespace sqf {
namespace cpu {

// The model's shape (common/encoder_spec.h) plus the cpu encoder's precision.
struct EncoderConfig : EncoderSpec {
  // bf16: conv weights packed as bf16 (GEMMs on AMX tiles / AVX512-BF16, fp32 accumulation);
  // activations, LayerNorm and softmax stay fp32.
  bool bf16 = false;
  // fp16: conv weights packed as IEEE half (fp16 FMAs on neon_fp16, flushed to fp32 every 32 k);
  // activations, LayerNorm and softmax stay fp32.
  bool fp16 = false;
  // int8: the six conv weights given as int8 + a scale per output channel, activations quantized per
  // row on the fly (the int8 variant's GEMM); softmax and LayerNorm stay fp32, QK^T and PV run on the
  // bf16 GEMM where the CPU has bf16 dot products (int8_attention_bf16) unless int8_attention_fp32.
  bool int8 = false;
  bool int8_attention_fp32 = false;
};

// An int8 conv weight [out, in/groups] and its per-output-channel scales.
struct RawInt8 {
  const int8_t* w = nullptr;
  const float* scale = nullptr;
};

// The weights as given, in transformers' layout (conv weights [out, in/groups, 1], linear [out, in]):
// EncoderWeights / LayerWeights, the names the CUDA encoder's as-given structs have. Encoder packs them
// into PackedLayer (kernels.h) once.
struct LayerWeights {
  const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *post_w, *post_b, *post_ln_w, *post_ln_b;
  const float *inter_w, *inter_b, *out_w, *out_b, *out_ln_w, *out_ln_b;
  // bf16 models may give the FFN weights as bf16 bits instead (then inter_w / out_w are null):
  // read in place when ffn_bf16_in_place(), else widened to fp32 for packing
  const uint16_t *inter_w16 = nullptr, *out_w16 = nullptr;
  // int8 models give the six convs here instead (then the fp32 conv pointers are null)
  RawInt8 q8, k8, v8, post8, inter8, out8;
};
struct EncoderWeights {
  const float *word, *position, *token_type, *emb_ln_w, *emb_ln_b;
  std::vector<LayerWeights> layers;
  const float *pooler_w = nullptr, *pooler_b = nullptr;
};

using ForwardArgs = PackedBatch<float>;

class Encoder {
 public:
  // int8 models: `i8` is the int8 GEMM (default: default_int8_isa(isa))
  Encoder(const EncoderConfig& cfg, const EncoderWeights& w, Isa isa, const Int8Kernels* i8 = nullptr);
  // Whether fp32 FFN conv weights are read in place for the Encoder's whole life (fp32 and one
  // group count: the fused FFN's transposed GEMMs) rather than only while packing.
  static bool ffn_reads_in_place(const EncoderConfig& cfg) {
    return !cfg.bf16 && !cfg.fp16 && !cfg.int8 && cfg.intermediate_groups == cfg.output_groups;
  }
  // Whether bf16 FFN weights given as bf16 (LayerWeights::inter_w16 / out_w16) are read in place: one
  // group count, and every group's rows and columns in whole 32s (the AMX kernel reads A in
  // 32-row blocks of 32-deep rows, here straight from the parameters).
  static bool ffn_bf16_in_place(const EncoderConfig& cfg) {
    const int64_t G = cfg.intermediate_groups;
    return cfg.bf16 && G == cfg.output_groups && (cfg.hidden / G) % 32 == 0 && (cfg.intermediate / G) % 32 == 0;
  }
  void forward(const ForwardArgs& a);
  // One fused op of one layer on packed rows, with this Encoder's packed weights: what the per-op
  // tests and benchmarks call. Inputs/outputs are [T, hidden]; `a` carries T, batch, cu_seqlens,
  // key_valid (qkv_attention) or the embedding inputs (embed_ln).
  void embed_ln(const ForwardArgs& a, float* out);
  void qkv_attention(int64_t layer, const ForwardArgs& a, const float* x, float* out);
  void attn_out_ln(int64_t layer, int64_t tokens, const float* ctx, const float* residual, float* out);
  void ffn_ln(int64_t layer, int64_t tokens, const float* x, float* out);
  const EncoderConfig& config() const { return cfg_; }
  const char* isa() const { return kernels_->isa; }
  const char* int8_isa() const { return i8_ ? i8_->name : ""; }  // "" unless an int8 model
  // the precision of QK^T and PV: "bf16" (bf16 models; int8 ones where int8_attention_bf16) or "fp32"
  const char* attention_precision() const { return !layers_.empty() && layers_[0].attn_bf16 ? "bf16" : "fp32"; }
  // int8 models run QK^T and PV on the bf16 GEMM where the CPU has bf16 dot products (AMX,
  // AVX512-BF16): the attention GEMMs are then 2-3x faster; the accuracy on real text is measured
  // with it (sqbert_fast/int8_eval.py)
  static bool int8_attention_bf16(Isa isa) { return isa == Isa::amx || isa == Isa::avx512_bf16; }
  int64_t packed_weight_bytes() const;

 private:
  struct Workspace {
    aligned_vector<float> buf;
    int64_t tokens = 0, max_len = 0, threads = 0;
  };
  struct PackPart {
    const float* w;
    const float* b;
    int64_t out;
  };
  GroupedLinear pack(const std::vector<PackPart>& parts, int64_t in, int64_t groups);
  const float* packed_bias(aligned_vector<float>&& bias, bool any_bias);
  struct PackPart8 {
    RawInt8 w;
    const float* b;
    int64_t out;
  };
  GroupedLinear pack_i8(const std::vector<PackPart8>& parts, int64_t in, int64_t groups);
  // A workspace borrowed from the pool for one call, handed back on scope exit (exceptions too).
  struct Lease {
    Encoder* owner;
    std::unique_ptr<Workspace> ws;
    Lease(Encoder* o, std::unique_ptr<Workspace> w) : owner(o), ws(std::move(w)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      if (ws) owner->release(std::move(ws));
    }
    Workspace* operator->() { return ws.get(); }
  };
  Lease lease();
  // O(batch) checks of cu_seqlens (packing.py validates the rest once); returns the longest sequence.
  int64_t check_batch(const ForwardArgs& a) const;
  EmbedArgs embed_args(const ForwardArgs& a, float* out) const;
  // The workspace's regions (its layout lives here only).
  struct Slots {
    float *qkv, *ctx, *mid, *ping0, *ping1, *inter, *pooled_in, *scratch;
  };
  Slots slots(Workspace& ws) const;
  // Columns of the [T, I] intermediate workspace: none when the FFN runs on in-place weights (its
  // tasks keep their slice of the intermediate in per-thread buffers).
  int64_t inter_width() const { return ffn_in_place_ ? 0 : cfg_.intermediate; }
  bool ffn_in_place_ = false;  // every layer's FFN reads its weights in place (fp32 or bf16)
  // Grows `ws` to hold `tokens` rows and sequences up to `max_len` for the current pool size.
  void reserve(Workspace& ws, int64_t tokens, int64_t max_len, int64_t threads) const;
  const PackedLayer& layer(int64_t l) const;
  void release(std::unique_ptr<Workspace> ws);

  EncoderConfig cfg_;
  const KernelTable* kernels_;
  EncoderWeights raw_;
  std::vector<PackedLayer> layers_;
  GroupedLinear pooler_;
  std::list<aligned_vector<float>> packed_;  // a list: pointers into it stay valid
  std::list<aligned_vector<uint16_t>> packed16_;
  std::list<aligned_vector<int8_t>> packed8_;
  std::list<aligned_vector<int32_t>> packed32_;
  const Int8Kernels* i8_ = nullptr;
  std::mutex ws_mutex_;
  std::vector<std::unique_ptr<Workspace>> free_ws_;
};

uint16_t float_to_bf16(float x);
uint16_t float_to_half(float x);  // IEEE binary16, round to nearest even

}  // namespace cpu
}  // namespace sqf
