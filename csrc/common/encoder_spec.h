// What every native encoder (cpu, cuda) is built from: the model's shape as config.json gives it,
// with transformers' names; the one activation table; the weight keys and their shapes; and the
// checks that make the sizes safe to divide and allocate by. The bindings fill it from the config
// dict (csrc/bindings/py_common.h); sqf::cpu::EncoderConfig and sqf::cuda::EncoderConfig extend it
// with what only their encoder needs (precision flags, a dtype).
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors.h"

namespace sqf {

// transformers' ACT2FN names -> one enum; the numbering is shared by every kernel file.
enum class Act : int { none = 0, gelu = 1, gelu_tanh = 2, relu = 3, silu = 4, tanh = 5 };

inline Act act_from_name(const std::string& n, const char* backend) {
  if (n == "gelu" || n == "gelu_python") return Act::gelu;
  if (n == "gelu_new" || n == "gelu_pytorch_tanh" || n == "gelu_fast") return Act::gelu_tanh;
  if (n == "relu") return Act::relu;
  if (n == "silu" || n == "swish") return Act::silu;
  if (n == "tanh") return Act::tanh;
  throw std::invalid_argument(str_cat("hidden_act '", n, "' is not supported by the ", backend,
                                      " backend (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, silu, tanh)"));
}

// One grouped 1x1 convolution of a layer: weight "layers.{l}.{name}_weight" [out, in/groups, 1],
// bias "layers.{l}.{name}_bias" [out].
struct ConvSpec {
  const char* name;
  int64_t in, out, groups;
};

// A parameter read as it is: its key and shape.
struct ParamSpec {
  const char* key;
  std::vector<int64_t> shape;
};

struct EncoderSpec {
  int64_t vocab = 0, hidden = 0, heads = 0, layers = 0, intermediate = 0;
  int64_t max_positions = 0, type_vocab = 0;
  int64_t q_groups = 1, k_groups = 1, v_groups = 1, post_attention_groups = 1;
  int64_t intermediate_groups = 1, output_groups = 1;
  float embedding_ln_eps = 1e-12f;
  float encoder_ln_eps = 1e-12f;  // transformers hard-codes 1e-12 for the encoder LayerNorms
  Act act = Act::gelu;

  int64_t head_dim() const { return hidden / heads; }

  // The embedding tables and the embedding LayerNorm: word, position, token type, LN weight, LN bias.
  std::array<ParamSpec, 5> embedding_params() const {
    return {{{"word_embeddings", {vocab, hidden}},
             {"position_embeddings", {max_positions, hidden}},
             {"token_type_embeddings", {type_vocab, hidden}},
             {"embeddings_ln_weight", {hidden}},
             {"embeddings_ln_bias", {hidden}}}};
  }

  // The six convs of a layer, in the order the encoders run them.
  std::array<ConvSpec, 6> convs() const {
    const int64_t H = hidden, I = intermediate;
    return {{{"q", H, H, q_groups},
             {"k", H, H, k_groups},
             {"v", H, H, v_groups},
             {"post", H, H, post_attention_groups},
             {"inter", H, I, intermediate_groups},
             {"out", I, H, output_groups}}};
  }

  // Sizes first (each divides or sizes something: heads = 0 would be a division by zero), then the
  // group counts. Throws std::invalid_argument (ValueError in Python) naming the config key.
  void validate() const {
    const std::pair<const char*, int64_t> sizes[] = {
        {"vocab_size", vocab}, {"hidden_size", hidden}, {"num_attention_heads", heads},
        {"intermediate_size", intermediate}, {"max_position_embeddings", max_positions},
        {"type_vocab_size", type_vocab}};
    for (const auto& [name, v] : sizes)
      if (v < 1) throw std::invalid_argument(str_cat(name, " must be >= 1, got ", v));
    if (layers < 0) throw std::invalid_argument(str_cat("num_hidden_layers must be >= 0, got ", layers));
    const char* keys[] = {"q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups",
                          "output_groups"};
    int i = 0;
    for (const ConvSpec& c : convs()) {
      if (c.groups < 1 || c.in % c.groups || c.out % c.groups)
        throw std::invalid_argument(str_cat(keys[i], "=", c.groups, " must divide both ", c.in, " and ", c.out));
      ++i;
    }
    if (hidden % heads) throw std::invalid_argument("hidden_size must be a multiple of num_attention_heads");
  }
};

// One forward's packed batch and outputs, as both encoders take it (T: float on the CPU, void on CUDA,
// whose dtype is the model's). Sequence b owns rows [cu_seqlens[b], cu_seqlens[b + 1]).
template <class T>
struct PackedBatch {
  int64_t tokens = 0, batch = 0;
  const int64_t* input_ids = nullptr;
  const T* inputs_embeds = nullptr;
  const int64_t* token_type_ids = nullptr;
  const int64_t* position_ids = nullptr;
  const int64_t* cu_seqlens = nullptr;
  const uint8_t* key_valid = nullptr;  // [T]: 0 = query-only row (padding kept for the pooler)
  T* last_hidden = nullptr;            // [T, hidden]
  T* hidden_states = nullptr;          // optional [layers + 1, T, hidden]
  T* scores = nullptr;                 // optional [layers, sum_b heads * L_b^2]
  const int64_t* pool_rows = nullptr;  // optional [batch]: packed row of each column-0 token
  T* pooled = nullptr;                 // optional [batch, hidden]
};

// The activation regions both encoders carve their workspace into, for `tokens` rows: the Q|K|V
// projection [T, 3H], the attention context, the post-attention output, two ping-pong layer outputs,
// and the FFN's intermediate [T, inter_cols] (0 columns when the FFN keeps it per thread or on chip).
// Offsets in units of `unit` bytes (1: elements), each region aligned to `align` units; `end` is where
// an encoder's own regions start (the CPU's pooler input and attention scratch, CUDA's LayerNorm row
// buffer and tile counters).
struct ActivationLayout {
  int64_t qkv = 0, ctx = 0, mid = 0, ping0 = 0, ping1 = 0, inter = 0, end = 0;
};

inline int64_t align_up(int64_t x, int64_t align) { return (x + align - 1) / align * align; }

inline ActivationLayout activation_layout(int64_t tokens, int64_t hidden, int64_t inter_cols, int64_t unit,
                                          int64_t align) {
  ActivationLayout a;
  int64_t off = 0;
  auto region = [&](int64_t& at, int64_t cols) {
    at = off;
    off = align_up(off + tokens * cols * unit, align);
  };
  region(a.qkv, 3 * hidden);
  region(a.ctx, hidden);
  region(a.mid, hidden);
  region(a.ping0, hidden);
  region(a.ping1, hidden);
  region(a.inter, inter_cols);
  a.end = off;
  return a;
}

// A layer's LayerNorm parameters, [hidden] each: "layers.{l}.{name}".
constexpr const char* kLayerNormParams[4] = {"post_ln_weight", "post_ln_bias", "out_ln_weight", "out_ln_bias"};

inline std::string layer_key(int64_t layer, const char* name, const char* suffix = "") {
  return str_cat("layers.", layer, ".", name, suffix);
}

}  // namespace sqf
