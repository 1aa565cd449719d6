// pybind11 bindings: sqbert_fast._C. The only place where Python objects meet the CPU kernels.
// Arrays arrive as NumPy arrays or CPU torch tensors (zero copy) and are checked by the view of
// py_common.h, shared with the CUDA module, so both Encoders take the same arguments the same way.
// Compute releases the GIL.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "../common/cpu_features.h"
#include "../common/errors.h"
#include "../common/thread_pool.h"
#include "../cpu/encoder.h"
#include "py_common.h"
#include "sqf_built_isas.h"

namespace py = pybind11;
using sqf::str_cat;
using sqf::pyb::Memory;

namespace {

template <typename T>
T* array_ptr(const py::handle& obj, const char* name, const std::vector<int64_t>& shape, bool writable = false,
             int64_t* rows = nullptr) {
  return sqf::pyb::checked<T>(obj, name, shape, Memory::host, writable, rows);
}

template <typename T>
T* optional_ptr(const py::object& obj, const char* name, const std::vector<int64_t>& shape, bool writable = false) {
  return sqf::pyb::optional<T>(obj, name, shape, Memory::host, writable);
}

class PyEncoder {
 public:
  PyEncoder(py::dict config, py::dict weights, const std::string& isa, bool bf16, bool fp16, bool int8,
            const std::string& int8_isa, const std::string& int8_attention) {
    sqf::cpu::EncoderConfig c;
    static_cast<sqf::EncoderSpec&>(c) = sqf::pyb::spec_from_dict(config, "cpu");
    c.bf16 = bf16;
    c.fp16 = fp16;
    c.int8 = int8;
    if (bf16 + fp16 + int8 > 1) throw py::value_error("give at most one of bf16, fp16 and int8");
    const int64_t H = c.hidden;

    // Conv weights are only read while packing, except FFN weights, which the fused FFN reads in
    // place (Encoder::Encoder): fp32 ones in an fp32 model, bf16 ones (given as uint16 bits or a
    // bfloat16 tensor) in a bf16 model. Every other array is read in place. What is read is kept.
    const bool ffn_in_place = sqf::cpu::Encoder::ffn_reads_in_place(c);
    auto get = [&](const std::string& key) -> py::object {
      if (!weights.contains(key.c_str())) throw py::key_error(str_cat("missing weight '", key, "'"));
      return weights[key.c_str()];
    };
    auto w = [&](const std::string& key, std::vector<int64_t> shape) -> const float* {
      py::object o = get(key);
      if (shape.size() != 3 && key != "pooler_weight") keep_.push_back(o);
      return array_ptr<float>(o, key.c_str(), shape);
    };
    sqf::cpu::EncoderWeights raw;
    const float** emb[] = {&raw.word, &raw.position, &raw.token_type, &raw.emb_ln_w, &raw.emb_ln_b};
    for (int j = 0; j < 5; ++j) *emb[j] = w(c.embedding_params()[j].key, c.embedding_params()[j].shape);
    for (int64_t l = 0; l < c.layers; ++l) {
      sqf::cpu::LayerWeights r{};
      const float** f32[] = {&r.q_w, &r.k_w, &r.v_w, &r.post_w, &r.inter_w, &r.out_w};
      const float** bias[] = {&r.q_b, &r.k_b, &r.v_b, &r.post_b, &r.inter_b, &r.out_b};
      sqf::cpu::RawInt8* q8[] = {&r.q8, &r.k8, &r.v8, &r.post8, &r.inter8, &r.out8};
      const uint16_t** w16[] = {nullptr, nullptr, nullptr, nullptr, &r.inter_w16, &r.out_w16};
      int i = 0;
      for (const sqf::ConvSpec& cv : c.convs()) {
        const std::string key = sqf::layer_key(l, cv.name, "_weight");
        const std::vector<int64_t> shape = {cv.out, cv.in / cv.groups, 1};
        *bias[i] = w(sqf::layer_key(l, cv.name, "_bias"), {cv.out});
        if (int8 && weights.contains((key + "_scale").c_str())) {
          // an int8 conv weight and its fp32 scales [out], both only read while packing (a conv without
          // scales stays fp32: one kept in higher precision)
          q8[i]->w = array_ptr<int8_t>(get(key), key.c_str(), shape);
          q8[i]->scale = array_ptr<float>(get(key + "_scale"), (key + "_scale").c_str(), {cv.out});
        } else if (py::object o = get(key); w16[i] && bf16 && sqf::pyb::view_of(o, key.c_str()).dtype != "float32") {
          *w16[i] = sqf::pyb::checked<uint16_t>(o, key.c_str(), shape, Memory::host);
          keep_.push_back(o);
        } else {
          if (w16[i] && ffn_in_place) keep_.push_back(o);
          *f32[i] = array_ptr<float>(o, key.c_str(), shape);
        }
        ++i;
      }
      const float** ln[] = {&r.post_ln_w, &r.post_ln_b, &r.out_ln_w, &r.out_ln_b};
      for (int j = 0; j < 4; ++j) *ln[j] = w(sqf::layer_key(l, sqf::kLayerNormParams[j]), {H});
      raw.layers.push_back(r);
    }
    if (weights.contains("pooler_weight")) {
      raw.pooler_w = w("pooler_weight", {H, H});
      raw.pooler_b = w("pooler_bias", {H});
    }
    const sqf::Isa main_isa = sqf::isa_from_name(isa);
    if (int8_attention == "fp32") {
      c.int8_attention_fp32 = true;
    } else if (int8_attention == "bf16") {
      if (!sqf::cpu::Encoder::int8_attention_bf16(main_isa))
        throw py::value_error(str_cat("int8_attention='bf16' needs bf16 dot products (ISA amx or avx512_bf16), not ",
                                      isa));
    } else if (!int8_attention.empty() && int8_attention != "auto") {
      throw py::value_error(str_cat("int8_attention must be 'auto', 'fp32' or 'bf16', not '", int8_attention, "'"));
    }
    const sqf::cpu::Int8Kernels* i8 =
        int8 ? &sqf::cpu::int8_kernels(int8_isa.empty() ? sqf::default_int8_isa(main_isa)
                                                        : sqf::int8_isa_from_name(int8_isa))
             : nullptr;
    enc_ = std::make_unique<sqf::cpu::Encoder>(c, raw, main_isa, i8);
  }

  // cu_seqlens + key_valid of a packed batch, checked.
  static sqf::cpu::ForwardArgs packed_batch(py::object cu_seqlens, py::object key_valid) {
    sqf::cpu::ForwardArgs a;
    const int64_t* cu = array_ptr<int64_t>(cu_seqlens, "cu_seqlens", {-1}, false, &a.batch);
    --a.batch;
    if (a.batch < 1) throw py::value_error("empty batch: cu_seqlens needs at least 2 entries");
    a.tokens = cu[a.batch];
    if (a.tokens < 1) throw py::value_error("empty batch: no tokens");
    for (int64_t b = 0; b < a.batch; ++b)
      if (cu[b + 1] < cu[b]) throw py::value_error("cu_seqlens must be non-decreasing");
    a.cu_seqlens = cu;
    if (!key_valid.is_none()) a.key_valid = array_ptr<uint8_t>(key_valid, "key_valid", {a.tokens});
    return a;
  }

  void embed_inputs(sqf::cpu::ForwardArgs& a, py::object input_ids, py::object inputs_embeds,
                    py::object token_type_ids, py::object position_ids) {
    const int64_t T = a.tokens;
    a.input_ids = optional_ptr<int64_t>(input_ids, "input_ids", {T});
    a.inputs_embeds = optional_ptr<float>(inputs_embeds, "inputs_embeds", {T, enc_->config().hidden});
    if (!a.input_ids == !a.inputs_embeds)
      throw py::value_error("give exactly one of input_ids and inputs_embeds");
    a.token_type_ids = array_ptr<int64_t>(token_type_ids, "token_type_ids", {T});
    a.position_ids = array_ptr<int64_t>(position_ids, "position_ids", {T});
  }

  // ---- single fused ops (per-op tests and benchmarks) ----
  void embed_ln(py::object input_ids, py::object inputs_embeds, py::object token_type_ids,
                py::object position_ids, py::object out) {
    const py::object ids = input_ids.is_none() ? inputs_embeds : input_ids;
    sqf::cpu::ForwardArgs a;
    a.tokens = sqf::pyb::rows_of(ids, input_ids.is_none() ? "inputs_embeds" : "input_ids");
    if (a.tokens < 1) throw py::value_error("empty batch: no tokens");
    embed_inputs(a, input_ids, inputs_embeds, token_type_ids, position_ids);
    float* o = array_ptr<float>(out, "out", {a.tokens, enc_->config().hidden}, true);
    py::gil_scoped_release release;
    enc_->embed_ln(a, o);
  }

  void qkv_attention(int64_t layer, py::object x, py::object cu_seqlens, py::object key_valid,
                     py::object out) {
    sqf::cpu::ForwardArgs a = packed_batch(cu_seqlens, key_valid);
    if (!a.key_valid) throw py::value_error("key_valid is required");
    const int64_t H = enc_->config().hidden;
    const float* xp = array_ptr<float>(x, "x", {a.tokens, H});
    float* o = array_ptr<float>(out, "out", {a.tokens, H}, true);
    py::gil_scoped_release release;
    enc_->qkv_attention(layer, a, xp, o);
  }

  void attn_out_ln(int64_t layer, py::object ctx, py::object residual, py::object out) {
    const int64_t H = enc_->config().hidden;
    int64_t T = 0;
    const float* c = array_ptr<float>(ctx, "ctx", {-1, H}, false, &T);
    const float* r = array_ptr<float>(residual, "residual", {T, H});
    float* o = array_ptr<float>(out, "out", {T, H}, true);
    py::gil_scoped_release release;
    enc_->attn_out_ln(layer, T, c, r, o);
  }

  void ffn_ln(int64_t layer, py::object x, py::object out) {
    const int64_t H = enc_->config().hidden;
    int64_t T = 0;
    const float* xp = array_ptr<float>(x, "x", {-1, H}, false, &T);
    float* o = array_ptr<float>(out, "out", {T, H}, true);
    py::gil_scoped_release release;
    enc_->ffn_ln(layer, T, xp, o);
  }

  // The signature of _C_cuda.Encoder.forward. max_len and score_offsets are what the CUDA encoder
  // cannot read from device memory; here they are optional and, when given, checked against
  // cu_seqlens (O(batch)). There is no stream, and the workspaces are the Encoder's own.
  void forward(py::object input_ids, py::object inputs_embeds, py::object token_type_ids,
               py::object position_ids, py::object cu_seqlens, py::object key_valid,
               py::object last_hidden, py::object hidden_states, py::object scores,
               py::object pool_rows, py::object pooled, int64_t max_len, py::object score_offsets,
               py::object workspace, int64_t stream) {
    if (!workspace.is_none()) throw py::value_error("the cpu encoder keeps its own workspaces: workspace must be None");
    if (stream != 0) throw py::value_error("the cpu encoder runs on no stream: stream must be 0");
    const auto& c = enc_->config();
    sqf::cpu::ForwardArgs a = packed_batch(cu_seqlens, key_valid);
    if (!a.key_valid) throw py::value_error("key_valid is required");
    const int64_t* cu = a.cu_seqlens;
    const int64_t T = a.tokens, B = a.batch, H = c.hidden;
    embed_inputs(a, input_ids, inputs_embeds, token_type_ids, position_ids);
    a.last_hidden = array_ptr<float>(last_hidden, "last_hidden", {T, H}, true);
    a.hidden_states =
        optional_ptr<float>(hidden_states, "hidden_states", {c.layers + 1, T, H}, true);
    const int64_t* soff = optional_ptr<int64_t>(score_offsets, "score_offsets", {B});
    int64_t per_layer = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = cu[b + 1] - cu[b];
      if (max_len > 0 && L > max_len)
        throw py::value_error(str_cat("sequence ", b, " has ", L, " tokens, more than max_len=", max_len));
      if (soff && soff[b] != per_layer)
        throw py::value_error(str_cat("score_offsets[", b, "] is ", soff[b], ", cu_seqlens put it at ", per_layer));
      per_layer += c.heads * L * L;
    }
    if (!scores.is_none()) a.scores = array_ptr<float>(scores, "scores", {c.layers, per_layer}, true);
    a.pool_rows = optional_ptr<int64_t>(pool_rows, "pool_rows", {B});
    a.pooled = optional_ptr<float>(pooled, "pooled", {B, H}, true);
    py::gil_scoped_release release;
    enc_->forward(a);
  }

  std::string isa() const { return enc_->isa(); }
  std::string int8_isa() const { return enc_->int8_isa(); }
  std::string attention_precision() const { return enc_->attention_precision(); }
  int64_t packed_weight_bytes() const { return enc_->packed_weight_bytes(); }

 private:
  std::vector<py::object> keep_;  // the arrays the kernels read in place (embeddings, biases)
  std::unique_ptr<sqf::cpu::Encoder> enc_;
};

// A digest of a sample of each given weight, for noticing in-place edits (`p.data.mul_(2)`, a merged
// LoRA update, weights copied in by hand, magnitude pruning) that move neither a parameter's data_ptr
// nor its version counter while the Encoder holds packed copies. kRowsSampled rows spread over each
// array, one element each, at columns that differ row to row; the addresses are fixed at construction,
// so a check is kRowsSampled loads per array (1.2k for the default config, 40-80 us cold). An edit that
// touches none of the sampled elements (one pruned channel of 768) goes unseen: refresh_weights().
class WeightSampler {
 public:
  static constexpr int64_t kRowsSampled = 16;

  explicit WeightSampler(py::list arrays) {
    for (py::handle h : arrays) {
      if (!py::isinstance<py::array>(h)) throw py::type_error("WeightSampler takes numpy arrays");
      py::array a = py::reinterpret_borrow<py::array>(h);
      if (!(a.flags() & py::array::c_style)) throw py::value_error("WeightSampler arrays must be C-contiguous");
      const int64_t esize = a.itemsize();
      if (esize != 1 && esize != 2 && esize != 4)
        throw py::type_error("WeightSampler arrays must have 1-, 2- or 4-byte elements");
      const int64_t rows = a.ndim() ? a.shape(0) : 1;
      const int64_t cols = rows ? a.size() / rows : 0;
      const auto* base = static_cast<const uint8_t*>(a.data());
      const int64_t n = std::min(rows, kRowsSampled);
      for (int64_t i = 0; cols && i < n; ++i) {
        const int64_t r = n > 1 ? i * (rows - 1) / (n - 1) : 0;  // first and last rows included
        const int64_t c = (r * 40507 + static_cast<int64_t>(keep_.size()) * 7919) % cols;
        samples_.push_back({base + (r * cols + c) * esize, esize});
      }
      keep_.push_back(a);
    }
    digest_ = digest();
  }
  bool changed() const { return digest() != digest_; }

 private:
  struct Sample {
    const uint8_t* p;
    int64_t esize;
  };
  uint64_t digest() const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the sampled words
    for (const Sample& s : samples_) {
      uint32_t v = 0;
      std::memcpy(&v, s.p, static_cast<size_t>(s.esize));
      h = (h ^ v) * 1099511628211ull;
    }
    return h;
  }
  std::vector<py::array> keep_;
  std::vector<Sample> samples_;
  uint64_t digest_;
};

// C[M, N] = act(int8 GEMM of A [M, K] fp32 and W [N, K] int8 with scales [N]) on one int8 variant, packed
// here: the op-level face of gemm_i8.cc for tests and microbenchmarks. w_scale None: C = the exact int32
// products (as floats).
py::array_t<float> int8_gemm(const std::string& variant, py::object a, py::object w, py::object w_scale,
                             py::object bias, const std::string& act) {
  const auto& k = sqf::cpu::int8_kernels(sqf::int8_isa_from_name(variant));
  const sqf::pyb::View av = sqf::pyb::checked_view(a, "a", "float32", {-1, -1}, Memory::host);
  const float* A = static_cast<const float*>(av.data);
  const int64_t M = av.shape[0], K = av.shape[1];
  int64_t N = 0;
  const int8_t* W = array_ptr<int8_t>(w, "w", {-1, K}, false, &N);
  if (M < 1 || N < 1 || K < 1) throw py::value_error("int8_gemm needs M, N, K >= 1");
  const float* ws = optional_ptr<float>(w_scale, "w_scale", {N});
  const float* b = optional_ptr<float>(bias, "bias", {N});
  const sqf::Act ac = act.empty() ? sqf::Act::none : sqf::act_from_name(act, "cpu");
  const int64_t panels = (N + k.nr - 1) / k.nr, pb = k.panel_bytes(K);
  sqf::cpu::aligned_vector<int8_t> packed(static_cast<size_t>(panels * pb));
  std::vector<int32_t> sum(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < K; ++i) sum[n] += W[n * K + i];
  for (int64_t p = 0; p < panels; ++p)
    k.pack_panel(W + p * k.nr * K, K, K, std::min(k.nr, N - p * k.nr), packed.data() + p * pb);
  py::array_t<float> out({M, N});
  float* C = out.mutable_data();
  {
    py::gil_scoped_release release;
    k.gemm(A, K, packed.data(), K, ws, sum.data(), C, N, M, N, b, ac);
  }
  return out;
}

// GOP/s of one int8 variant's GEMM on M x K activations and N x K weights (random, packed once,
// outside the timing), best of repeated calls over about `seconds`, one thread: the practical int8 peak
// the benchmark reports beside the theoretical one.
double int8_gemm_peak(const std::string& variant, int64_t M, int64_t N, int64_t K, double seconds) {
  if (M < 1 || N < 1 || K < 1) throw py::value_error("int8_gemm_peak needs M, N, K >= 1");
  const auto& k = sqf::cpu::int8_kernels(sqf::int8_isa_from_name(variant));
  std::vector<float> A(static_cast<size_t>(M * K)), C(static_cast<size_t>(M * N)), ws(static_cast<size_t>(N), 1e-3f);
  std::vector<int8_t> W(static_cast<size_t>(N * K));
  uint32_t x = 12345;
  for (auto& v : A) v = static_cast<float>((x = x * 1664525u + 1013904223u) >> 8) / 16777216.f - 0.5f;
  for (auto& v : W) v = static_cast<int8_t>(static_cast<int>((x = x * 1664525u + 1013904223u) >> 24) - 128);
  const int64_t panels = (N + k.nr - 1) / k.nr, pb = k.panel_bytes(K);
  sqf::cpu::aligned_vector<int8_t> packed(static_cast<size_t>(panels * pb));
  std::vector<int32_t> sum(static_cast<size_t>(N), 0);
  for (int64_t p = 0; p < panels; ++p)
    k.pack_panel(W.data() + p * k.nr * K, K, K, std::min(k.nr, N - p * k.nr), packed.data() + p * pb);
  py::gil_scoped_release release;
  double best = 1e30, spent = 0;
  for (int rep = 0; rep < 3 || spent < seconds; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    k.gemm(A.data(), K, packed.data(), K, ws.data(), sum.data(), C.data(), N, M, N, nullptr, sqf::cpu::Act::none);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    spent += dt;
  }
  return 2.0 * M * N * K / best / 1e9;
}

py::dict cpu_info() {
  const auto& f = sqf::cpu_features();
  py::dict d;
  d["vendor"] = f.vendor;
  d["brand"] = f.brand;
  py::dict feats;
  for (const auto& [name, flag] : sqf::kFeatureFlags) feats[name] = f.*flag;
  d["features"] = feats;
  // (built, usable) name lists of one enum's variants
  auto variants = [&](const char* key, const auto& built, auto supported, auto name) {
    py::list b, u;
    for (auto v : built) {
      b.append(name(v));
      if (supported(v)) u.append(name(v));
    }
    d[str_cat("built_", key).c_str()] = b;
    d[str_cat("usable_", key).c_str()] = u;
  };
  variants("isas", sqf::built_isas(), sqf::isa_supported, sqf::isa_name);
  variants("int8_isas", sqf::built_int8_isas(), sqf::int8_isa_supported, sqf::int8_isa_name);
  d["best_isa"] = sqf::isa_name(sqf::best_isa());
#if defined(SQF_NEON_SIMDE)
  d["neon_impl"] = "simde";  // NEON kernels emulated on x86 through SIMDe (tests only)
#elif defined(SQF_HAVE_NEON)
  d["neon_impl"] = "native";
#endif
  sqf::Isa main_isa = sqf::best_isa();
  try {
    main_isa = sqf::default_isa();
  } catch (const std::exception&) {  // a bad SQBERT_FAST_FORCE_CPU_ISA is reported by default_isa()
  }
  try {
    d["int8_isa"] = sqf::int8_isa_name(sqf::default_int8_isa(main_isa));
  } catch (const std::exception& e) {  // a bad SQBERT_FAST_FORCE_INT8_ISA
    d["int8_isa_error"] = std::string(e.what());
  }
  d["bf16_isas"] = py::cast(std::vector<std::string>{"avx512_bf16", "amx"});
  d["fp16_isas"] = py::cast(std::vector<std::string>{"neon_fp16"});
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "sqbert_fast C++ CPU kernels";
  // std::invalid_argument and std::out_of_range from the kernels become ValueError and IndexError
  // (pybind11's own translation).
  m.def("cpu_info", &cpu_info, "CPU features detected and ISA variants built/usable");
  m.def("int8_gemm", &int8_gemm, py::arg("variant"), py::arg("a"), py::arg("w"), py::arg("w_scale") = py::none(),
        py::arg("bias") = py::none(), py::arg("act") = "", "one int8 GEMM on one int8 variant (tests, benchmarks)");
  m.def("int8_gemm_peak", &int8_gemm_peak, py::arg("variant"), py::arg("m") = 128, py::arg("n") = 768,
        py::arg("k") = 768, py::arg("seconds") = 0.3, "GOP/s of one int8 variant's GEMM, one thread, packing excluded");
  m.def("default_isa", [] { return std::string(sqf::isa_name(sqf::default_isa())); },
        "ISA the cpu backend uses: SQBERT_FAST_FORCE_CPU_ISA if set (validated), else the best");
  m.def("set_num_threads", [](int n) {
    py::gil_scoped_release release;
    sqf::ThreadPool::global().set_num_threads(n);
  });
  m.def("get_num_threads", [] { return sqf::ThreadPool::global().num_threads(); });
  m.def("max_threads", &sqf::ThreadPool::max_threads,
        "largest thread count set_num_threads accepts (a multiple of the hardware threads)");
  py::class_<WeightSampler>(m, "WeightSampler")
      .def(py::init<py::list>(), py::arg("arrays"))
      .def("changed", &WeightSampler::changed,
           "True when a sampled element differs from its value at construction");
  py::class_<PyEncoder>(m, "Encoder")
      .def(py::init<py::dict, py::dict, const std::string&, bool, bool, bool, const std::string&, const std::string&>(),
           py::arg("config"), py::arg("weights"), py::arg("isa"), py::arg("bf16") = false,
           py::arg("fp16") = false, py::arg("int8") = false, py::arg("int8_isa") = "",
           py::arg("int8_attention") = "auto")
      .def("forward", &PyEncoder::forward, py::arg("input_ids"), py::arg("inputs_embeds"),
           py::arg("token_type_ids"), py::arg("position_ids"), py::arg("cu_seqlens"),
           py::arg("key_valid"), py::arg("last_hidden"), py::arg("hidden_states") = py::none(),
           py::arg("scores") = py::none(), py::arg("pool_rows") = py::none(),
           py::arg("pooled") = py::none(), py::kw_only(), py::arg("max_len") = 0,
           py::arg("score_offsets") = py::none(), py::arg("workspace") = py::none(), py::arg("stream") = 0)
      .def("embed_ln", &PyEncoder::embed_ln, py::arg("input_ids"), py::arg("inputs_embeds"),
           py::arg("token_type_ids"), py::arg("position_ids"), py::arg("out"),
           "embeddings gather + sum + LayerNorm on packed rows")
      .def("qkv_attention", &PyEncoder::qkv_attention, py::arg("layer"), py::arg("x"),
           py::arg("cu_seqlens"), py::arg("key_valid"), py::arg("out"),
           "one layer's grouped Q/K/V projection + attention on packed rows")
      .def("attn_out_ln", &PyEncoder::attn_out_ln, py::arg("layer"), py::arg("ctx"),
           py::arg("residual"), py::arg("out"), "post-attention conv + residual + LayerNorm")
      .def("ffn_ln", &PyEncoder::ffn_ln, py::arg("layer"), py::arg("x"), py::arg("out"),
           "grouped FFN + activation + output conv + residual + LayerNorm")
      .def_property_readonly("isa", &PyEncoder::isa)
      .def_property_readonly("int8_isa", &PyEncoder::int8_isa)
      .def_property_readonly("attention_precision", &PyEncoder::attention_precision)
      .def_property_readonly("packed_weight_bytes", &PyEncoder::packed_weight_bytes);
}
