// pybind11 bindings: sqbert_fast._C_cuda. Tensors never cross this boundary: Python passes
// data_ptr() ints, shapes and the current torch stream's handle; this file checks what it can
// (shapes of the weights, dtype names, sizes) and names the offending argument. Nothing touches
// the GPU at import, so the module imports on machines without one; functions that need a
// device raise RuntimeError("no CUDA device: ...") instead of crashing.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "kernels.h"

namespace py = pybind11;
namespace sc = sqf::cuda;

namespace {

sc::DType dtype_from_name(const std::string& n) {
  if (n == "float32") return sc::DType::f32;
  if (n == "float16") return sc::DType::f16;
  if (n == "bfloat16") return sc::DType::bf16;
  throw py::value_error("dtype must be float32, float16 or bfloat16, got '" + n + "'");
}

int act_from_name(const std::string& n) {
  if (n == "gelu" || n == "gelu_python") return sc::act_gelu;
  if (n == "gelu_new" || n == "gelu_pytorch_tanh" || n == "gelu_fast") return sc::act_gelu_tanh;
  if (n == "relu") return sc::act_relu;
  if (n == "silu" || n == "swish") return sc::act_silu;
  if (n == "tanh") return sc::act_tanh;
  throw py::value_error("hidden_act '" + n + "' is not supported by the cuda backend");
}

void check_device(int index) {
  std::string err;
  const int n = sc::device_count(&err);
  if (n == 0) throw std::runtime_error("no CUDA device: " + (err.empty() ? std::string("none found") : err));
  if (index < 0 || index >= n)
    throw std::runtime_error("no CUDA device " + std::to_string(index) + " (found " + std::to_string(n) + ")");
}

sc::EncoderConfig config_from_dict(const py::dict& d, const std::string& dtype) {
  auto geti = [&](const char* k) -> int64_t {
    if (!d.contains(k)) throw py::key_error(std::string("config is missing '") + k + "'");
    return d[k].cast<int64_t>();
  };
  sc::EncoderConfig c;
  c.vocab = geti("vocab_size");
  c.hidden = static_cast<int>(geti("hidden_size"));
  c.heads = static_cast<int>(geti("num_attention_heads"));
  c.layers = static_cast<int>(geti("num_hidden_layers"));
  c.intermediate = static_cast<int>(geti("intermediate_size"));
  c.max_positions = geti("max_position_embeddings");
  c.type_vocab = geti("type_vocab_size");
  c.q_groups = static_cast<int>(geti("q_groups"));
  c.k_groups = static_cast<int>(geti("k_groups"));
  c.v_groups = static_cast<int>(geti("v_groups"));
  c.post_groups = static_cast<int>(geti("post_attention_groups"));
  c.inter_groups = static_cast<int>(geti("intermediate_groups"));
  c.out_groups = static_cast<int>(geti("output_groups"));
  if (!d.contains("layer_norm_eps")) throw py::key_error("config is missing 'layer_norm_eps'");
  c.embedding_eps = d["layer_norm_eps"].cast<float>();
  if (!d.contains("hidden_act")) throw py::key_error("config is missing 'hidden_act'");
  c.act = act_from_name(d["hidden_act"].cast<std::string>());
  c.dtype = dtype_from_name(dtype);
  const int H = c.hidden, I = c.intermediate;
  if (H < 1 || c.heads < 1 || H % c.heads) throw py::value_error("hidden_size must be a positive multiple of num_attention_heads");
  auto check_groups = [](int g, int in, int out, const char* name) {
    if (g < 1 || in % g || out % g)
      throw py::value_error(std::string(name) + "=" + std::to_string(g) + " must divide both " + std::to_string(in) +
                            " and " + std::to_string(out));
  };
  check_groups(c.q_groups, H, H, "q_groups");
  check_groups(c.k_groups, H, H, "k_groups");
  check_groups(c.v_groups, H, H, "v_groups");
  check_groups(c.post_groups, H, H, "post_attention_groups");
  check_groups(c.inter_groups, H, I, "intermediate_groups");
  check_groups(c.out_groups, I, H, "output_groups");
  if (H / c.heads > sc::kAttnMaxHeadDim)
    throw py::value_error("head size " + std::to_string(H / c.heads) + " exceeds the CUDA attention kernel's " +
                          std::to_string(sc::kAttnMaxHeadDim));
  return c;
}

py::dict plan_dict(const sc::GemmPlan& p) {
  py::dict d;
  d["grid"] = py::make_tuple(p.grid_x, p.grid_y, p.grid_z);
  d["k_splits"] = p.k_splits;
  d["k_chunks_per_split"] = p.k_chunks_per_split;
  d["tiles_per_group"] = p.tiles_per_group;
  return d;
}

py::dict ffn_dict(const sc::FfnPlan& p) {
  py::dict d;
  d["fused"] = p.fused;
  d["why_not"] = p.why_not;
  d["block_rows"] = p.block_rows;
  d["smem_bytes"] = p.smem_bytes;
  d["grid"] = py::make_tuple(p.grid_x, p.grid_y, p.grid_z);
  d["chunks"] = p.chunks;
  return d;
}

py::dict layout_dict(const sc::WorkspaceLayout& w) {
  py::dict d;
  d["qkv"] = w.qkv;
  d["ctx"] = w.ctx;
  d["mid"] = w.mid;
  d["ping0"] = w.ping0;
  d["ping1"] = w.ping1;
  d["inter"] = w.inter;
  d["pre"] = w.pre;
  d["counters"] = w.counters;
  d["zeroed"] = w.zeroed;
  d["total"] = w.total;
  return d;
}

template <typename T>
T* ptr(int64_t v) { return reinterpret_cast<T*>(static_cast<uintptr_t>(v)); }

class PyEncoder {
 public:
  // weights: name -> (data_ptr, shape tuple); all in `dtype`, contiguous, on `device`
  PyEncoder(py::dict config, py::dict weights, const std::string& dtype, int device) : device_(device) {
    c_ = config_from_dict(config, dtype);
    check_device(device);
    const sc::DeviceInfo info = sc::device_info(device);
    if (info.major < 8)
      throw std::runtime_error("the cuda backend needs compute capability 8.0 or newer, device " + std::to_string(device) +
                               " (" + info.name + ") is " + std::to_string(info.major) + "." + std::to_string(info.minor));
    dev_.sm_count = info.sm_count;
    dev_.smem_optin = info.smem_optin;
    const int64_t H = c_.hidden, I = c_.intermediate;
    auto w = [&](const std::string& key, std::vector<int64_t> shape) -> const void* {
      if (!weights.contains(key.c_str())) throw py::key_error("missing weight '" + key + "'");
      py::tuple t = weights[key.c_str()].cast<py::tuple>();
      if (t.size() != 2) throw py::value_error("weight '" + key + "' must be (data_ptr, shape)");
      auto got = t[1].cast<std::vector<int64_t>>();
      if (got != shape) {
        std::string g, s;
        for (auto v : got) g += std::to_string(v) + ",";
        for (auto v : shape) s += std::to_string(v) + ",";
        throw py::value_error("weight '" + key + "' has shape (" + g + ") but expected (" + s + ")");
      }
      const int64_t p = t[0].cast<int64_t>();
      if (p == 0) throw py::value_error("weight '" + key + "' is a null pointer");
      return ptr<const void>(p);
    };
    auto conv = [&](const std::string& wk, const std::string& bk, int in, int out, int groups) {
      sc::Conv cv;
      cv.w = w(wk, {out, in / groups, 1});
      cv.bias = w(bk, {out});
      cv.in = in;
      cv.out = out;
      cv.groups = groups;
      return cv;
    };
    w_.word = w("word_embeddings", {c_.vocab, H});
    w_.position = w("position_embeddings", {c_.max_positions, H});
    w_.token_type = w("token_type_embeddings", {c_.type_vocab, H});
    w_.emb_ln_w = w("embeddings_ln_weight", {H});
    w_.emb_ln_b = w("embeddings_ln_bias", {H});
    for (int l = 0; l < c_.layers; ++l) {
      auto k = [&](const char* name) { return "layers." + std::to_string(l) + "." + name; };
      sc::LayerWeights lw;
      lw.q = conv(k("q_weight"), k("q_bias"), H, H, c_.q_groups);
      lw.k = conv(k("k_weight"), k("k_bias"), H, H, c_.k_groups);
      lw.v = conv(k("v_weight"), k("v_bias"), H, H, c_.v_groups);
      lw.post = conv(k("post_weight"), k("post_bias"), H, H, c_.post_groups);
      lw.inter = conv(k("inter_weight"), k("inter_bias"), H, I, c_.inter_groups);
      lw.out = conv(k("out_weight"), k("out_bias"), I, H, c_.out_groups);
      lw.post_ln_w = w(k("post_ln_weight"), {H});
      lw.post_ln_b = w(k("post_ln_bias"), {H});
      lw.out_ln_w = w(k("out_ln_weight"), {H});
      lw.out_ln_b = w(k("out_ln_bias"), {H});
      w_.layers.push_back(lw);
    }
    if (weights.contains("pooler_weight")) {
      w_.pooler.w = w("pooler_weight", {H, H});
      w_.pooler.bias = w("pooler_bias", {H});
      w_.pooler.in = w_.pooler.out = static_cast<int>(H);
      w_.pooler.groups = 1;
    }
  }

  sc::WorkspaceLayout layout(int64_t tokens) const {
    const sc::FfnPlan f = sc::plan_ffn(tokens, c_.hidden, c_.intermediate, c_.inter_groups, c_.out_groups, c_.dtype,
                                       dev_.smem_optin, dev_.sm_count);
    return sc::workspace_layout(c_, tokens, !f.fused);
  }

  void forward(int batch, int64_t tokens, int max_len, int64_t cu_seqlens, int64_t input_ids, int64_t inputs_embeds,
               int64_t token_type_ids, int64_t position_ids, int64_t key_valid, int64_t last_hidden,
               int64_t hidden_states, int64_t scores, int64_t score_offsets, int64_t score_per_layer, int64_t pool_rows,
               int64_t pooled, int64_t workspace, int64_t workspace_bytes, int64_t stream) {
    if (batch < 1 || tokens < 1) throw py::value_error("empty batch");
    if (max_len < 1 || max_len > tokens)
      throw py::value_error("max_len " + std::to_string(max_len) + " outside [1, tokens=" + std::to_string(tokens) + "]");
    if (!cu_seqlens || !token_type_ids || !position_ids || !key_valid || !last_hidden || !workspace)
      throw py::value_error("cu_seqlens, token_type_ids, position_ids, key_valid, last_hidden and workspace are required");
    if (!input_ids == !inputs_embeds) throw py::value_error("give exactly one of input_ids and inputs_embeds");
    if (scores && !score_offsets) throw py::value_error("scores need score_offsets");
    if (pooled && !pool_rows) throw py::value_error("pooled needs pool_rows");
    sc::ForwardArgs a;
    a.batch = batch;
    a.tokens = tokens;
    a.max_len = max_len;
    a.cu_seqlens = ptr<const int64_t>(cu_seqlens);
    a.input_ids = ptr<const int64_t>(input_ids);
    a.inputs_embeds = ptr<const void>(inputs_embeds);
    a.token_type_ids = ptr<const int64_t>(token_type_ids);
    a.position_ids = ptr<const int64_t>(position_ids);
    a.key_valid = ptr<const uint8_t>(key_valid);
    a.last_hidden = ptr<void>(last_hidden);
    a.hidden_states = ptr<void>(hidden_states);
    a.scores = ptr<void>(scores);
    a.score_offsets = ptr<const int64_t>(score_offsets);
    a.score_per_layer = score_per_layer;
    a.pool_rows = ptr<const int64_t>(pool_rows);
    a.pooled = ptr<void>(pooled);
    a.workspace = ptr<void>(workspace);
    a.workspace_bytes = workspace_bytes;
    py::gil_scoped_release release;
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != device_) {  // not during graph capture
      const cudaError_t e = cudaSetDevice(device_);
      if (e != cudaSuccess) throw std::runtime_error(std::string("cudaSetDevice: ") + cudaGetErrorString(e));
    }
    sc::encoder_forward(c_, w_, a, dev_, ptr<CUstream_st>(stream));
  }

  int sm_count() const { return dev_.sm_count; }
  int smem_optin() const { return dev_.smem_optin; }

 private:
  int device_;
  sc::EncoderConfig c_;
  sc::EncoderWeights w_;
  sc::DeviceLimits dev_;
};

#ifndef SQF_CUDA_ARCHS
#define SQF_CUDA_ARCHS "unknown"
#endif

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "sqbert_fast CUDA kernels (fused SqueezeBERT encoder)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::out_of_range& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    }
  });
  m.attr("cuda_archs") = SQF_CUDA_ARCHS;
  m.attr("cudart_version") = CUDART_VERSION;
  m.attr("gemm_tile") = py::make_tuple(sc::kGemmBM, sc::kGemmBN, sc::kGemmBK);
  m.attr("ffn_chunk") = sc::kFfnBI;
  m.attr("max_head_dim") = sc::kAttnMaxHeadDim;
  m.def("device_count", [] { return sc::device_count(nullptr); }, "CUDA devices visible (0 without a driver)");
  m.def("device_error", [] {
    std::string e;
    sc::device_count(&e);
    return e;
  }, "why device_count() is 0, or ''");
  m.def("check_device", &check_device, py::arg("index") = 0, "raise RuntimeError('no CUDA device: ...') when absent");
  m.def("device_info", [](int i) {
    check_device(i);
    const sc::DeviceInfo d = sc::device_info(i);
    py::dict r;
    r["name"] = d.name;
    r["capability"] = py::make_tuple(d.major, d.minor);
    r["sm_count"] = d.sm_count;
    r["smem_optin"] = d.smem_optin;
    return r;
  }, py::arg("index") = 0);
  m.def("plan_gemm", [](int64_t rows, int in, int out, int groups, int problems, bool ln, int sm_count, int split_k) {
    if (groups < 1 || in % groups || out % groups) throw py::value_error("groups must divide in and out");
    return plan_dict(sc::plan_gemm(rows, in, out, groups, problems, ln, sm_count, split_k));
  }, py::arg("rows"), py::arg("in_channels"), py::arg("out_channels"), py::arg("groups"), py::arg("problems") = 1,
        py::arg("ln_epilogue") = false, py::arg("sm_count") = 0, py::arg("split_k") = 0);
  m.def("plan_ffn", [](int64_t rows, int hidden, int inter, int g1, int g2, const std::string& dtype, int smem, int sms) {
    return ffn_dict(sc::plan_ffn(rows, hidden, inter, g1, g2, dtype_from_name(dtype), smem, sms));
  }, py::arg("rows"), py::arg("hidden"), py::arg("intermediate"), py::arg("intermediate_groups"),
        py::arg("output_groups"), py::arg("dtype"), py::arg("smem_limit"), py::arg("sm_count") = 0);
  m.def("plan_attention", [](int batch, int max_len, int heads, int head_dim, const std::string& dtype) {
    const sc::AttnPlan p = sc::plan_attention(batch, max_len, heads, head_dim, dtype_from_name(dtype));
    py::dict d;
    d["grid"] = py::make_tuple(p.grid_x, p.grid_y, p.grid_z);
    d["threads"] = p.threads;
    d["smem_bytes"] = p.smem_bytes;
    d["head_dim_padded"] = p.head_dim_padded;
    return d;
  }, py::arg("batch"), py::arg("max_len"), py::arg("heads"), py::arg("head_dim"), py::arg("dtype"));
  m.def("workspace_layout", [](py::dict config, const std::string& dtype, int64_t tokens, bool unfused_ffn) {
    return layout_dict(sc::workspace_layout(config_from_dict(config, dtype), tokens, unfused_ffn));
  }, py::arg("config"), py::arg("dtype"), py::arg("tokens"), py::arg("unfused_ffn"));
  py::class_<PyEncoder>(m, "Encoder")
      .def(py::init<py::dict, py::dict, const std::string&, int>(), py::arg("config"), py::arg("weights"),
           py::arg("dtype"), py::arg("device"))
      .def("workspace_layout", [](const PyEncoder& e, int64_t tokens) { return layout_dict(e.layout(tokens)); },
           py::arg("tokens"))
      .def("forward", &PyEncoder::forward, py::arg("batch"), py::arg("tokens"), py::arg("max_len"),
           py::arg("cu_seqlens"), py::arg("input_ids"), py::arg("inputs_embeds"), py::arg("token_type_ids"),
           py::arg("position_ids"), py::arg("key_valid"), py::arg("last_hidden"), py::arg("hidden_states"),
           py::arg("scores"), py::arg("score_offsets"), py::arg("score_per_layer"), py::arg("pool_rows"),
           py::arg("pooled"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("stream"))
      .def_property_readonly("sm_count", &PyEncoder::sm_count)
      .def_property_readonly("smem_optin", &PyEncoder::smem_optin);
}
