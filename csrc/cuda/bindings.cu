// pybind11 bindings: sqbert_fast._C_cuda. Arrays are torch tensors on the device (or any object with
// __cuda_array_interface__), checked by the view of ../bindings/py_common.h, shared with the CPU
// module: both Encoders take the same arguments the same way, and parse the config into the same
// EncoderSpec. Nothing touches the GPU at import, so the module imports on machines without one;
// functions that need a device raise RuntimeError("no CUDA device: ...") instead of crashing.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "../bindings/py_common.h"
#include "kernels.h"

namespace py = pybind11;
namespace sc = sqf::cuda;
using sqf::pyb::Memory;
using sqf::str_cat;

namespace {

sc::DType dtype_from_name(const std::string& n) {
  if (n == "float32") return sc::DType::f32;
  if (n == "float16") return sc::DType::f16;
  if (n == "bfloat16") return sc::DType::bf16;
  throw py::value_error("dtype must be float32, float16 or bfloat16, got '" + n + "'");
}

void check_device(int index) {
  std::string err;
  const int n = sc::device_count(&err);
  if (n == 0) throw std::runtime_error("no CUDA device: " + (err.empty() ? std::string("none found") : err));
  if (index < 0 || index >= n)
    throw std::runtime_error("no CUDA device " + std::to_string(index) + " (found " + std::to_string(n) + ")");
}

sc::EncoderConfig config_from_dict(const py::dict& d, const std::string& dtype) {
  sc::EncoderConfig c;
  static_cast<sqf::EncoderSpec&>(c) = sqf::pyb::spec_from_dict(d, "cuda");
  c.dtype = dtype_from_name(dtype);
  if (c.head_dim() > sc::kAttnMaxHeadDim)
    throw py::value_error(str_cat("head size ", c.head_dim(), " exceeds the CUDA attention kernel's ",
                                  sc::kAttnMaxHeadDim));
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

class PyEncoder {
 public:
  // weights: name -> a contiguous tensor of `dtype` on `device`, read in place (and kept alive here).
  // They are checked before the device is looked for, so a bad weight is named on any machine.
  PyEncoder(py::dict config, py::dict weights, const std::string& dtype, int device) : device_(device) {
    c_ = config_from_dict(config, dtype);
    const std::string dt = sc::dtype_name(c_.dtype);
    const int64_t H = c_.hidden;
    auto w = [&](const std::string& key, const std::vector<int64_t>& shape) -> const void* {
      if (!weights.contains(key.c_str())) throw py::key_error(str_cat("missing weight '", key, "'"));
      py::object o = weights[key.c_str()];
      const void* p = sqf::pyb::checked_view(o, key.c_str(), dt, shape, Memory::cuda).data;
      if (!p) throw py::value_error(str_cat("weight '", key, "' is a null pointer"));
      keep_.push_back(o);
      return p;
    };
    const void** emb[] = {&w_.word, &w_.position, &w_.token_type, &w_.emb_ln_w, &w_.emb_ln_b};
    for (int j = 0; j < 5; ++j) *emb[j] = w(c_.embedding_params()[j].key, c_.embedding_params()[j].shape);
    for (int64_t l = 0; l < c_.layers; ++l) {
      sc::LayerWeights lw;
      sc::Conv* convs[] = {&lw.q, &lw.k, &lw.v, &lw.post, &lw.inter, &lw.out};
      int i = 0;
      for (const sqf::ConvSpec& cs : c_.convs()) {
        sc::Conv& cv = *convs[i++];
        cv.w = w(sqf::layer_key(l, cs.name, "_weight"), {cs.out, cs.in / cs.groups, 1});
        cv.bias = w(sqf::layer_key(l, cs.name, "_bias"), {cs.out});
        cv.in = static_cast<int>(cs.in);
        cv.out = static_cast<int>(cs.out);
        cv.groups = static_cast<int>(cs.groups);
      }
      const void** ln[] = {&lw.post_ln_w, &lw.post_ln_b, &lw.out_ln_w, &lw.out_ln_b};
      for (int j = 0; j < 4; ++j) *ln[j] = w(sqf::layer_key(l, sqf::kLayerNormParams[j]), {H});
      w_.layers.push_back(lw);
    }
    if (weights.contains("pooler_weight")) {
      w_.pooler.w = w("pooler_weight", {H, H});
      w_.pooler.bias = w("pooler_bias", {H});
      w_.pooler.in = w_.pooler.out = static_cast<int>(H);
      w_.pooler.groups = 1;
    }
    check_device(device);
    const sc::DeviceInfo info = sc::device_info(device);
    if (info.major < 8)
      throw std::runtime_error(str_cat("the cuda backend needs compute capability 8.0 or newer, device ", device, " (",
                                       info.name, ") is ", info.major, ".", info.minor));
    dev_.sm_count = info.sm_count;
    dev_.smem_optin = info.smem_optin;
  }

  sc::WorkspaceLayout layout(int64_t tokens) const {
    const sc::FfnPlan f = sc::plan_ffn(tokens, int(c_.hidden), int(c_.intermediate), int(c_.intermediate_groups),
                                       int(c_.output_groups), c_.dtype, dev_.smem_optin, dev_.sm_count);
    return sc::workspace_layout(c_, tokens, !f.fused);
  }

  // The signature of _C.Encoder.forward. Sizes come from the arrays: batch from cu_seqlens, the row
  // capacity from last_hidden (a CUDA graph's bucket: live rows = cu_seqlens[batch], read on the
  // device). max_len (an upper bound of the lengths: the grid), score_offsets (with scores) and the
  // workspace are required here, since nothing is read back from the device.
  void forward(py::object input_ids, py::object inputs_embeds, py::object token_type_ids, py::object position_ids,
               py::object cu_seqlens, py::object key_valid, py::object last_hidden, py::object hidden_states,
               py::object scores, py::object pool_rows, py::object pooled, int64_t max_len, py::object score_offsets,
               py::object workspace, int64_t stream) {
    using sqf::pyb::checked;
    using sqf::pyb::checked_view;
    using sqf::pyb::optional;
    const std::string dt = sc::dtype_name(c_.dtype);
    const int64_t H = c_.hidden;
    sc::ForwardArgs a;
    int64_t batch = 0;
    a.cu_seqlens = checked<int64_t>(cu_seqlens, "cu_seqlens", {-1}, Memory::cuda, false, &batch);
    --batch;
    const sqf::pyb::View lh = checked_view(last_hidden, "last_hidden", dt, {-1, H}, Memory::cuda, true);
    const int64_t tokens = lh.shape[0];
    a.last_hidden = lh.data;
    if (batch < 1 || tokens < 1) throw py::value_error("empty batch");
    if (max_len < 1 || max_len > tokens)
      throw py::value_error(str_cat("max_len ", max_len, " outside [1, tokens=", tokens, "]"));
    if (input_ids.is_none() == inputs_embeds.is_none())
      throw py::value_error("give exactly one of input_ids and inputs_embeds");
    if (workspace.is_none()) throw py::value_error("workspace is required (size it with workspace_layout)");
    if (!scores.is_none() && score_offsets.is_none()) throw py::value_error("scores need score_offsets");
    if (!pooled.is_none() && pool_rows.is_none()) throw py::value_error("pooled needs pool_rows");
    a.batch = batch;
    a.tokens = tokens;
    a.max_len = static_cast<int>(max_len);
    a.input_ids = optional<int64_t>(input_ids, "input_ids", {tokens}, Memory::cuda);
    if (!inputs_embeds.is_none())
      a.inputs_embeds = checked_view(inputs_embeds, "inputs_embeds", dt, {tokens, H}, Memory::cuda).data;
    a.token_type_ids = checked<int64_t>(token_type_ids, "token_type_ids", {tokens}, Memory::cuda);
    a.position_ids = checked<int64_t>(position_ids, "position_ids", {tokens}, Memory::cuda);
    a.key_valid = checked<uint8_t>(key_valid, "key_valid", {tokens}, Memory::cuda);
    if (!hidden_states.is_none())
      a.hidden_states =
          checked_view(hidden_states, "hidden_states", dt, {c_.layers + 1, tokens, H}, Memory::cuda, true).data;
    if (!scores.is_none()) {
      const sqf::pyb::View v = checked_view(scores, "scores", dt, {c_.layers, -1}, Memory::cuda, true);
      a.scores = v.data;
      a.score_per_layer = v.shape[1];
      a.score_offsets = checked<int64_t>(score_offsets, "score_offsets", {batch}, Memory::cuda);
    }
    a.pool_rows = optional<int64_t>(pool_rows, "pool_rows", {batch}, Memory::cuda);
    if (!pooled.is_none()) a.pooled = checked_view(pooled, "pooled", dt, {batch, H}, Memory::cuda, true).data;
    const sqf::pyb::View ws = checked_view(workspace, "workspace", "uint8", {-1}, Memory::cuda, true);
    a.workspace = ws.data;
    a.workspace_bytes = ws.shape[0];
    py::gil_scoped_release release;
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != device_) {  // not during graph capture
      const cudaError_t e = cudaSetDevice(device_);
      if (e != cudaSuccess) throw std::runtime_error(std::string("cudaSetDevice: ") + cudaGetErrorString(e));
    }
    sc::encoder_forward(c_, w_, a, dev_, reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(stream)));
  }

  int sm_count() const { return dev_.sm_count; }
  int smem_optin() const { return dev_.smem_optin; }

 private:
  int device_;
  std::vector<py::object> keep_;  // the weights, read in place
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
      .def("forward", &PyEncoder::forward, py::arg("input_ids"), py::arg("inputs_embeds"),
           py::arg("token_type_ids"), py::arg("position_ids"), py::arg("cu_seqlens"), py::arg("key_valid"),
           py::arg("last_hidden"), py::arg("hidden_states") = py::none(), py::arg("scores") = py::none(),
           py::arg("pool_rows") = py::none(), py::arg("pooled") = py::none(), py::kw_only(),
           py::arg("max_len") = 0, py::arg("score_offsets") = py::none(), py::arg("workspace") = py::none(),
           py::arg("stream") = 0)
      .def_property_readonly("sm_count", &PyEncoder::sm_count)
      .def_property_readonly("smem_optin", &PyEncoder::smem_optin);
}
