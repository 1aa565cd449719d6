#include "encoder.h"

#include <algorithm>
#include <cstring>

#include "../common/errors.h"

namespace sqf {
namespace cpu {

uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

uint16_t float_to_half(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;                 // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;                // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                      // below 2^-14: subnormal or 0
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(a >> 23);         // 14..: value = m * 2^(e-150)
    if (shift > 24) return sign;
    const uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return sign | static_cast<uint16_t>(h + (rem > half || (rem == half && (h & 1u))));
  }
  const uint32_t r = a - 0x38000000u;                          // rebias 127 -> 15
  const uint32_t h = r >> 13, rem = r & 0x1fffu;
  return sign | static_cast<uint16_t>(h + (rem > 0x1000u || (rem == 0x1000u && (h & 1u))));
}

static GroupedLinear in_place(const float* w, const uint16_t* w16, const float* b, int64_t in, int64_t out,
                              int64_t groups) {
  GroupedLinear gl;
  gl.in = in;
  gl.out = out;
  gl.groups = groups;
  if (w)
    gl.set(GroupedLinear::Form::f32_native, w);
  else
    gl.set(GroupedLinear::Form::bf16_native, w16);
  gl.bias = b;
  return gl;
}

// bf16 bits -> fp32 (exact), for packing bf16-given weights that are not read in place.
static std::vector<float> widen_bf16(const uint16_t* w, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(w[i]) << 16;
    std::memcpy(&out[static_cast<size_t>(i)], &u, 4);
  }
  return out;
}

// The bias of a packed conv that stacks several parts: kept beside the packed weights (nullptr when no
// part has one). A single part's bias is read in place instead.
const float* Encoder::packed_bias(aligned_vector<float>&& bias, bool any_bias) {
  if (!any_bias) return nullptr;
  packed_.push_back(std::move(bias));
  return packed_.back().data();
}

GroupedLinear Encoder::pack(const std::vector<PackPart>& parts, int64_t in, int64_t groups) {
  // Weights arrive as [out, in/groups] (conv [out, in/groups, 1]); part p's group g owns rows
  // [g*No_p, (g+1)*No_p). Group g of the packed matrix stacks the parts' groups g side by side
  // (No = sum No_p) and is stored as panels [ceil(No/nr)][Ni][nr], the last one zero-padded,
  // which is the micro-kernel's B layout (one contiguous nr-float load per k).
  const int64_t nr = kernels_->nr, Ni = in / groups;
  int64_t No = 0;
  for (const PackPart& p : parts) No += p.out / groups;
  const int64_t panels = (No + nr - 1) / nr;
  aligned_vector<float> wt(static_cast<size_t>(groups * panels * Ni * nr), 0.f);
  aligned_vector<float> bias(static_cast<size_t>(groups * No), 0.f);
  bool any_bias = false;
  for (int64_t g = 0; g < groups; ++g) {
    int64_t col = 0;
    for (const PackPart& p : parts) {
      const int64_t Np = p.out / groups;
      for (int64_t o = 0; o < Np; ++o, ++col) {
        float* dst = wt.data() + (g * panels + col / nr) * Ni * nr + col % nr;
        const float* src = p.w + (g * Np + o) * Ni;
        for (int64_t i = 0; i < Ni; ++i) dst[i * nr] = src[i];
        if (p.b) {
          bias[g * No + col] = p.b[g * Np + o];
          any_bias = true;
        }
      }
    }
  }
  GroupedLinear gl;
  gl.in = in;
  gl.out = groups * No;
  gl.groups = groups;
  if (cfg_.bf16) {
    // Re-lay the fp32 panels as bf16 VNNI panels of 32 columns, [Kp/2][32][2] (gemm_bf16.cc).
    const int64_t P = kBf16Panel, p16 = (No + P - 1) / P, Kp = (Ni + 31) / 32 * 32;
    aligned_vector<uint16_t> w16(static_cast<size_t>(groups * p16 * Kp * P), 0);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t col = 0; col < No; ++col)
        for (int64_t i = 0; i < Ni; ++i) {
          const float v = wt[(g * panels + col / nr) * Ni * nr + i * nr + col % nr];
          w16[((g * p16 + col / P) * Kp + i - i % 2) * P + (col % P) * 2 + i % 2] = float_to_bf16(v);
        }
    packed16_.push_back(std::move(w16));
    gl.set(GroupedLinear::Form::bf16, packed16_.back().data());
  } else if (cfg_.fp16) {
    // Re-lay as fp16 panels of 16 columns, [K][16] each (gemm_f16.cc).
    const int64_t P = kF16Panel, p16 = (No + P - 1) / P;
    aligned_vector<uint16_t> w16(static_cast<size_t>(groups * p16 * Ni * P), 0);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t col = 0; col < No; ++col)
        for (int64_t i = 0; i < Ni; ++i)
          w16[((g * p16 + col / P) * Ni + i) * P + col % P] =
              float_to_half(wt[(g * panels + col / nr) * Ni * nr + i * nr + col % nr]);
    packed16_.push_back(std::move(w16));
    gl.set(GroupedLinear::Form::f16, packed16_.back().data());
  } else {
    packed_.push_back(std::move(wt));
    gl.set(GroupedLinear::Form::f32, packed_.back().data());
  }
  gl.bias = parts.size() == 1 ? parts[0].b : packed_bias(std::move(bias), any_bias);
  return gl;
}

GroupedLinear Encoder::pack_i8(const std::vector<PackPart8>& parts, int64_t in, int64_t groups) {
  // As pack(): group g stacks the parts' groups g side by side, in panels of the int8 variant's
  // width, each laid out by the variant (Int8Kernels::pack_panel). Scales and column sums follow the
  // same column order.
  const int64_t nr = i8_->nr, Ni = in / groups, pb = i8_->panel_bytes(Ni);
  int64_t No = 0;
  for (const PackPart8& p : parts) No += p.out / groups;
  const int64_t panels = (No + nr - 1) / nr;
  aligned_vector<int8_t> wq(static_cast<size_t>(groups * panels * pb));
  aligned_vector<float> scale(static_cast<size_t>(groups * No)), bias(static_cast<size_t>(groups * No), 0.f);
  aligned_vector<int32_t> sum(static_cast<size_t>(groups * No), 0);
  std::vector<int8_t> rows(static_cast<size_t>(nr * Ni));
  bool any_bias = false;
  for (int64_t g = 0; g < groups; ++g) {
    std::vector<const int8_t*> src;
    for (const PackPart8& p : parts) {
      const int64_t Np = p.out / groups;
      for (int64_t o = 0; o < Np; ++o) {
        const int64_t col = g * No + static_cast<int64_t>(src.size());
        src.push_back(p.w.w + (g * Np + o) * Ni);
        scale[col] = p.w.scale[g * Np + o];
        for (int64_t k = 0; k < Ni; ++k) sum[col] += src.back()[k];
        if (p.b) {
          bias[col] = p.b[g * Np + o];
          any_bias = true;
        }
      }
    }
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t nb = std::min(nr, No - p * nr);
      for (int64_t n = 0; n < nb; ++n) std::memcpy(rows.data() + n * Ni, src[p * nr + n], static_cast<size_t>(Ni));
      i8_->pack_panel(rows.data(), Ni, Ni, nb, wq.data() + (g * panels + p) * pb);
    }
  }
  GroupedLinear gl;
  gl.in = in;
  gl.out = groups * No;
  gl.groups = groups;
  gl.i8 = i8_;
  packed8_.push_back(std::move(wq));
  gl.set(GroupedLinear::Form::int8, packed8_.back().data());
  packed_.push_back(std::move(scale));
  gl.wscale = packed_.back().data();
  packed32_.push_back(std::move(sum));
  gl.wsum = packed32_.back().data();
  gl.bias = parts.size() == 1 ? parts[0].b : packed_bias(std::move(bias), any_bias);
  return gl;
}

Encoder::Encoder(const EncoderConfig& cfg, const EncoderWeights& w, Isa isa, const Int8Kernels* i8)
    : cfg_(cfg), kernels_(&kernel_table(isa)), raw_(w) {
  if (cfg.int8) i8_ = i8 ? i8 : &int8_kernels(default_int8_isa(isa));
  const int64_t H = cfg.hidden, I = cfg.intermediate;
  SQF_CHECK(H > 0 && cfg.heads > 0 && H % cfg.heads == 0, "hidden_size ", H,
            " must be a positive multiple of num_attention_heads ", cfg.heads);
  SQF_CHECK(static_cast<int64_t>(w.layers.size()) == cfg.layers, "expected ", cfg.layers,
            " layers of weights, got ", w.layers.size());
  SQF_CHECK(H <= 4096, "hidden size ", H, " exceeds the CPU kernels' limit of 4096");
  // Fused Q/K/V + attention needs one group count and whole heads inside each group.
  const int64_t d = H / cfg.heads;
  const bool fused_qkv = cfg.q_groups == cfg.k_groups && cfg.q_groups == cfg.v_groups &&
                         (H / cfg.q_groups) % d == 0;
  // FFN weights stay where they are (no packed copy: the model's memory is its parameters plus the
  // other convs' panels) when the FFN runs fused, i.e. with one group count: fp32 ones, and bf16
  // ones given as bf16 when their groups come in whole 32s.
  const bool ffn_in_place = ffn_reads_in_place(cfg), ffn_in_place16 = ffn_bf16_in_place(cfg);
  ffn_in_place_ = !w.layers.empty();
  for (const LayerWeights& l : w.layers) {
    PackedLayer lw;
    if (cfg.int8) {
      // each conv int8 when given so, else fp32 (kept in higher precision); Q/K/V fuse when all three agree
      auto conv = [&](const RawInt8& q8, const float* w32, const float* b, int64_t out, int64_t in, int64_t groups) {
        SQF_CHECK(q8.w || w32, "layer weights missing");
        return q8.w ? pack_i8({{q8, b, out}}, in, groups) : pack({{w32, b, out}}, in, groups);
      };
      const bool all8 = l.q8.w && l.k8.w && l.v8.w, none8 = !l.q8.w && !l.k8.w && !l.v8.w;
      if (fused_qkv && all8) {
        lw.qkv = pack_i8({{l.q8, l.q_b, H}, {l.k8, l.k_b, H}, {l.v8, l.v_b, H}}, H, cfg.q_groups);
      } else if (fused_qkv && none8 && l.q_w && l.k_w && l.v_w) {
        lw.qkv = pack({{l.q_w, l.q_b, H}, {l.k_w, l.k_b, H}, {l.v_w, l.v_b, H}}, H, cfg.q_groups);
      } else {
        lw.q = conv(l.q8, l.q_w, l.q_b, H, H, cfg.q_groups);
        lw.k = conv(l.k8, l.k_w, l.k_b, H, H, cfg.k_groups);
        lw.v = conv(l.v8, l.v_w, l.v_b, H, H, cfg.v_groups);
      }
      lw.post = conv(l.post8, l.post_w, l.post_b, H, H, cfg.post_attention_groups);
      lw.inter = conv(l.inter8, l.inter_w, l.inter_b, I, H, cfg.intermediate_groups);
      lw.out = conv(l.out8, l.out_w, l.out_b, H, I, cfg.output_groups);
      ffn_in_place_ = false;
      lw.post_ln_w = l.post_ln_w;
      lw.post_ln_b = l.post_ln_b;
      lw.out_ln_w = l.out_ln_w;
      lw.out_ln_b = l.out_ln_b;
      lw.attn_bf16 = !cfg.int8_attention_fp32 && int8_attention_bf16(isa);
      layers_.push_back(lw);
      continue;
    }
    if (fused_qkv) {
      lw.qkv = pack({{l.q_w, l.q_b, H}, {l.k_w, l.k_b, H}, {l.v_w, l.v_b, H}}, H, cfg.q_groups);
    } else {
      lw.q = pack({{l.q_w, l.q_b, H}}, H, cfg.q_groups);
      lw.k = pack({{l.k_w, l.k_b, H}}, H, cfg.k_groups);
      lw.v = pack({{l.v_w, l.v_b, H}}, H, cfg.v_groups);
    }
    lw.post = pack({{l.post_w, l.post_b, H}}, H, cfg.post_attention_groups);
    const bool given16 = l.inter_w16 && l.out_w16;
    SQF_CHECK((l.inter_w || l.inter_w16) && (l.out_w || l.out_w16), "layer FFN weights missing");
    if ((ffn_in_place && l.inter_w && l.out_w) || (ffn_in_place16 && given16)) {
      // read in place by the fused FFN's transposed GEMMs (ffn_ln.cc)
      lw.inter = in_place(l.inter_w, l.inter_w16, l.inter_b, H, I, cfg.intermediate_groups);
      lw.out = in_place(l.out_w, l.out_w16, l.out_b, I, H, cfg.output_groups);
    } else {
      ffn_in_place_ = false;
      std::vector<float> w1, w2;  // fp32 of bf16-given weights, only while packing
      if (!l.inter_w) w1 = widen_bf16(l.inter_w16, I * (H / cfg.intermediate_groups));
      if (!l.out_w) w2 = widen_bf16(l.out_w16, H * (I / cfg.output_groups));
      lw.inter = pack({{l.inter_w ? l.inter_w : w1.data(), l.inter_b, I}}, H, cfg.intermediate_groups);
      lw.out = pack({{l.out_w ? l.out_w : w2.data(), l.out_b, H}}, I, cfg.output_groups);
    }
    lw.post_ln_w = l.post_ln_w;
    lw.post_ln_b = l.post_ln_b;
    lw.out_ln_w = l.out_ln_w;
    lw.out_ln_b = l.out_ln_b;
    lw.attn_bf16 = lw.qkv.bf16() || lw.q.bf16();
    layers_.push_back(lw);
  }
  if (w.pooler_w) pooler_ = pack({{w.pooler_w, w.pooler_b, H}}, H, 1);
}

int64_t Encoder::packed_weight_bytes() const {
  int64_t n = 0;
  for (const auto& p : packed_) n += static_cast<int64_t>(p.size() * sizeof(float));
  for (const auto& p : packed16_) n += static_cast<int64_t>(p.size() * sizeof(uint16_t));
  for (const auto& p : packed8_) n += static_cast<int64_t>(p.size());
  for (const auto& p : packed32_) n += static_cast<int64_t>(p.size() * sizeof(int32_t));
  return n;
}

Encoder::Lease Encoder::lease() {
  std::lock_guard<std::mutex> lock(ws_mutex_);
  if (free_ws_.empty()) return Lease{this, std::make_unique<Workspace>()};
  Lease l{this, std::move(free_ws_.back())};
  free_ws_.pop_back();
  return l;
}

void Encoder::release(std::unique_ptr<Workspace> ws) {
  std::lock_guard<std::mutex> lock(ws_mutex_);
  free_ws_.push_back(std::move(ws));
}

int64_t Encoder::check_batch(const ForwardArgs& a) const {
  const int64_t T = a.tokens, B = a.batch;
  SQF_CHECK(B >= 1 && T >= 1, "empty batch");
  SQF_CHECK(a.cu_seqlens[0] == 0 && a.cu_seqlens[B] == T, "cu_seqlens must start at 0 and end at ",
            T, " tokens");
  int64_t max_len = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = a.cu_seqlens[b + 1] - a.cu_seqlens[b];
    SQF_CHECK(L >= 1, "sequence ", b, " is empty");
    // No length limit: attention streams key blocks, and embed_ln range-checks position_ids (a
    // sequence longer than max_position_embeddings is fine when its position ids are in range).
    // key_valid is not scanned here (O(tokens)): packing.py refuses a sequence with no valid key, and
    // the attention kernel gives such a sequence a zero context rather than dividing by zero.
    max_len = std::max(max_len, L);
  }
  return max_len;
}

void Encoder::reserve(Workspace& ws, int64_t tokens, int64_t max_len, int64_t threads) const {
  if (ws.tokens >= tokens && ws.max_len >= max_len && ws.threads >= threads) return;
  const int64_t H = cfg_.hidden, I = inter_width();
  ws.tokens = std::max(ws.tokens, tokens);
  ws.max_len = std::max(ws.max_len, max_len);
  ws.threads = std::max(ws.threads, threads);
  // the activation regions (common/encoder_spec.h; qkv also serves the fused weights when tasks are
  // few), then the pooler input [T, H] and the per-thread attention scratch
  const int64_t need = activation_layout(ws.tokens, H, I, 1, 1).end + ws.tokens * H +
                       ws.threads * attention_scratch_floats(ws.max_len, H, cfg_.heads);
  ws.buf.assign(static_cast<size_t>(need), 0.f);
}

Encoder::Slots Encoder::slots(Workspace& ws) const {
  const int64_t H = cfg_.hidden, I = inter_width(), T = ws.tokens;
  const ActivationLayout a = activation_layout(T, H, I, 1, 1);
  float* p = ws.buf.data();
  Slots s;
  s.qkv = p + a.qkv;
  s.ctx = p + a.ctx;
  s.mid = p + a.mid;
  s.ping0 = p + a.ping0;
  s.ping1 = p + a.ping1;
  s.inter = p + a.inter;
  s.pooled_in = p + a.end;
  s.scratch = s.pooled_in + T * H;
  return s;
}

EmbedArgs Encoder::embed_args(const ForwardArgs& a, float* out) const {
  EmbedArgs e{};
  e.tokens = a.tokens;
  e.hidden = cfg_.hidden;
  e.input_ids = a.input_ids;
  e.inputs_embeds = a.inputs_embeds;
  e.token_type_ids = a.token_type_ids;
  e.position_ids = a.position_ids;
  e.word = raw_.word;
  e.position = raw_.position;
  e.token_type = raw_.token_type;
  e.vocab = cfg_.vocab;
  e.max_positions = cfg_.max_positions;
  e.type_vocab = cfg_.type_vocab;
  e.ln_w = raw_.emb_ln_w;
  e.ln_b = raw_.emb_ln_b;
  e.eps = cfg_.embedding_ln_eps;
  e.out = out;
  return e;
}

const PackedLayer& Encoder::layer(int64_t l) const {
  SQF_CHECK_INDEX(l >= 0 && l < cfg_.layers, "layer ", l, " outside [0, ", cfg_.layers, ")");
  return layers_[l];
}

void Encoder::embed_ln(const ForwardArgs& a, float* out) {
  SQF_CHECK(a.tokens >= 1, "empty batch");
  kernels_->embed_ln(embed_args(a, out), ThreadPool::global());
}

void Encoder::qkv_attention(int64_t l, const ForwardArgs& a, const float* x, float* out) {
  const PackedLayer& w = layer(l);
  const int64_t H = cfg_.hidden, max_len = check_batch(a);
  ThreadPool& pool = ThreadPool::global();
  Lease ws = lease();
  reserve(*ws.ws, a.tokens, max_len, pool.num_threads());
  AttentionArgs at{};
  at.tokens = a.tokens;
  at.hidden = H;
  at.heads = cfg_.heads;
  at.batch = a.batch;
  at.x = x;
  at.cu_seqlens = a.cu_seqlens;
  at.key_valid = a.key_valid;
  const Slots sl = slots(*ws.ws);
  at.qkv = sl.qkv;
  at.scratch = sl.scratch;
  at.scratch_per_thread = attention_scratch_floats(ws->max_len, H, cfg_.heads);
  at.ctx = out;
  kernels_->qkv_attention(w, at, pool);
}

void Encoder::attn_out_ln(int64_t l, int64_t tokens, const float* ctx, const float* residual,
                          float* out) {
  const PackedLayer& w = layer(l);
  SQF_CHECK(tokens >= 1, "empty batch");
  kernels_->attn_out_ln(w.post, w.post_ln_w, w.post_ln_b, cfg_.encoder_ln_eps, ctx, residual, out,
                        tokens, ThreadPool::global());
}

void Encoder::ffn_ln(int64_t l, int64_t tokens, const float* x, float* out) {
  const PackedLayer& w = layer(l);
  SQF_CHECK(tokens >= 1, "empty batch");
  Lease ws = lease();
  ThreadPool& pool = ThreadPool::global();
  reserve(*ws.ws, tokens, 1, pool.num_threads());
  kernels_->ffn_ln(w.inter, w.out, cfg_.act, w.out_ln_w, w.out_ln_b, cfg_.encoder_ln_eps, x,
                   slots(*ws.ws).inter, out, tokens, pool);
}

void Encoder::forward(const ForwardArgs& a) {
  const int64_t T = a.tokens, B = a.batch, H = cfg_.hidden;
  const int64_t max_len = check_batch(a);
  std::vector<int64_t> score_offsets(B);
  int64_t score_per_layer = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = a.cu_seqlens[b + 1] - a.cu_seqlens[b];
    score_offsets[b] = score_per_layer;
    score_per_layer += cfg_.heads * L * L;
  }
  if (a.pool_rows)
    for (int64_t b = 0; b < B; ++b)
      SQF_CHECK_INDEX(a.pool_rows[b] >= 0 && a.pool_rows[b] < T, "pool row out of range");

  ThreadPool& pool = ThreadPool::global();
  Lease ws = lease();
  reserve(*ws.ws, T, max_len, pool.num_threads());
  const Slots ws_slots = slots(*ws.ws);
  float* qkv = ws_slots.qkv;
  float* ctx = ws_slots.ctx;
  float* mid = ws_slots.mid;
  float* ping[2] = {ws_slots.ping0, ws_slots.ping1};
  float* inter = ws_slots.inter;
  float* pooled_in = ws_slots.pooled_in;
  float* scratch = ws_slots.scratch;


  auto layer_out = [&](int64_t l) -> float* {  // where the output of step l (0 = embeddings) goes
    if (a.hidden_states) return a.hidden_states + l * T * H;
    if (l == cfg_.layers) return a.last_hidden;
    return ping[l % 2];
  };

  kernels_->embed_ln(embed_args(a, cfg_.layers == 0 && !a.hidden_states ? a.last_hidden : layer_out(0)),
                     pool);

  for (int64_t l = 0; l < cfg_.layers; ++l) {
    const float* x = layer_out(l);
    float* y = layer_out(l + 1);
    AttentionArgs at{};
    at.tokens = T;
    at.hidden = H;
    at.heads = cfg_.heads;
    at.batch = B;
    at.x = x;
    at.cu_seqlens = a.cu_seqlens;
    at.key_valid = a.key_valid;
    at.qkv = qkv;
    at.scratch = scratch;
    at.scratch_per_thread = attention_scratch_floats(ws->max_len, H, cfg_.heads);
    at.ctx = ctx;
    at.scores = a.scores ? a.scores + l * score_per_layer : nullptr;
    at.score_offsets = score_offsets.data();
    kernels_->qkv_attention(layers_[l], at, pool);
    const PackedLayer& w = layers_[l];
    kernels_->attn_out_ln(w.post, w.post_ln_w, w.post_ln_b, cfg_.encoder_ln_eps, ctx, x, mid, T,
                          pool);
    kernels_->ffn_ln(w.inter, w.out, cfg_.act, w.out_ln_w, w.out_ln_b, cfg_.encoder_ln_eps, mid,
                     inter, y, T, pool);
  }
  const float* last = layer_out(cfg_.layers);
  if (a.hidden_states) std::copy(last, last + T * H, a.last_hidden);
  if (a.pooled) {
    SQF_CHECK(raw_.pooler_w && a.pool_rows, "this model was built without a pooler");
    for (int64_t b = 0; b < B; ++b)
      std::copy(a.last_hidden + a.pool_rows[b] * H, a.last_hidden + (a.pool_rows[b] + 1) * H,
                pooled_in + b * H);
    kernels_->grouped_linear(pooler_, pooled_in, H, a.pooled, H, B, Act::tanh, pool);
  }
}

}  // namespace cpu
}  // namespace sqf
