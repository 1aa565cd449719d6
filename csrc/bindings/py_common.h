// The Python boundary both native modules share (sqbert_fast._C and sqbert_fast._C_cuda): one array
// view and its checks, and the config dict -> EncoderSpec parse. Both Encoders take the same
// arguments the same way: NumPy arrays or torch tensors (CPU or CUDA, any dtype, bfloat16 included),
// or any object with __cuda_array_interface__. Nothing is copied; every argument is checked for
// memory kind, dtype, shape and contiguity here, and named in the error.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../common/encoder_spec.h"

namespace sqf {
namespace pyb {

namespace py = pybind11;

enum class Memory { host, cuda };

struct View {
  void* data = nullptr;
  std::string dtype;  // NumPy's names: float32, bfloat16, int64, uint8, ...
  std::vector<int64_t> shape;
  Memory memory = Memory::host;
  bool contiguous = true, writable = true;
};

// A NumPy kind character and item size -> the dtype's name ("float32"); C only (str(dtype) runs
// NumPy's Python code, ~5 us an array).
inline std::string kind_name(char kind, int64_t itemsize) {
  const std::string bits = std::to_string(8 * itemsize);
  if (kind == 'f') return "float" + bits;
  if (kind == 'i') return "int" + bits;
  if (kind == 'u') return "uint" + bits;
  if (kind == 'b') return "bool";
  return std::string(1, kind) + bits;
}

// An array-interface typestr ("<f4", "|u1") -> the NumPy dtype name.
inline std::string typestr_name(const std::string& t) {
  return t.size() < 3 ? t : kind_name(t[1], std::stoi(t.substr(2)));
}

inline View view_of(const py::handle& obj, const char* name) {
  View v;
  if (py::isinstance<py::array>(obj)) {
    auto arr = py::reinterpret_borrow<py::array>(obj);
    v.data = const_cast<void*>(arr.data());
    v.dtype = kind_name(arr.dtype().kind(), arr.itemsize());
    for (py::ssize_t i = 0; i < arr.ndim(); ++i) v.shape.push_back(arr.shape(i));
    v.contiguous = arr.flags() & py::array::c_style;
    v.writable = arr.writeable();
    return v;
  }
  if (py::hasattr(obj, "data_ptr") && py::hasattr(obj, "is_contiguous")) {  // a torch.Tensor
    const std::string dev = py::str(obj.attr("device").attr("type"));
    if (dev != "cpu" && dev != "cuda") throw py::value_error(str_cat(name, " is on ", dev, ", not cpu or cuda"));
    v.memory = dev == "cpu" ? Memory::host : Memory::cuda;
    std::string dt = py::str(obj.attr("dtype"));
    v.dtype = dt.rfind("torch.", 0) == 0 ? dt.substr(6) : dt;
    v.shape = obj.attr("shape").cast<std::vector<int64_t>>();
    v.contiguous = obj.attr("is_contiguous")().cast<bool>();
    v.data = reinterpret_cast<void*>(static_cast<uintptr_t>(obj.attr("data_ptr")().cast<uint64_t>()));
    return v;
  }
  if (py::hasattr(obj, "__cuda_array_interface__")) {
    auto d = obj.attr("__cuda_array_interface__").cast<py::dict>();
    v.memory = Memory::cuda;
    v.dtype = typestr_name(d["typestr"].cast<std::string>());
    v.shape = d["shape"].cast<std::vector<int64_t>>();
    auto data = d["data"].cast<py::tuple>();
    v.data = reinterpret_cast<void*>(static_cast<uintptr_t>(data[0].cast<uint64_t>()));
    v.writable = !data[1].cast<bool>();
    if (d.contains("strides") && !d["strides"].is_none()) {  // contiguous only if the strides are C order's
      auto strides = d["strides"].cast<std::vector<int64_t>>();
      const int64_t esize = std::stoi(d["typestr"].cast<std::string>().substr(2));
      int64_t want = esize;
      for (size_t i = v.shape.size(); i-- > 0;) {
        if (v.shape[i] > 1 && strides[i] != want) v.contiguous = false;
        want *= v.shape[i];
      }
    }
    return v;
  }
  throw py::type_error(str_cat(name, " must be a numpy array or a torch tensor, got ",
                               std::string(py::str(py::type::handle_of(obj).attr("__name__")))));
}

inline std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i)
    out += s[i] < 0 ? std::string(i ? ", *" : "*") : str_cat(i ? ", " : "", s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// The view of `obj`, checked: in `memory`, of one of `dtypes` (a |-separated list), C-contiguous,
// writable if asked, and of `shape` (-1 = any: read it from the view).
inline View checked_view(const py::handle& obj, const char* name, const std::string& dtypes,
                         const std::vector<int64_t>& shape, Memory memory, bool writable = false) {
  View v = view_of(obj, name);
  if (v.memory != memory)
    throw py::value_error(str_cat(name, " is in ", v.memory == Memory::host ? "host" : "CUDA device",
                                  " memory, but this encoder reads ", memory == Memory::host ? "host" : "CUDA device",
                                  " memory"));
  bool dtype_ok = false;  // one of the |-separated names (no allocation: this runs per argument per call)
  for (size_t at = 0; !dtype_ok && at <= dtypes.size();) {
    const size_t end = std::min(dtypes.find('|', at), dtypes.size());
    dtype_ok = dtypes.compare(at, end - at, v.dtype) == 0;
    at = end + 1;
  }
  if (!dtype_ok) {
    std::string want = dtypes;
    for (auto& ch : want) ch = ch == '|' ? '/' : ch;
    throw py::type_error(str_cat(name, " must have dtype ", want, ", got ", v.dtype));
  }
  if (!v.contiguous) throw py::value_error(str_cat(name, " must be C-contiguous"));
  if (writable && !v.writable) throw py::value_error(str_cat(name, " must be writable"));
  bool ok = v.shape.size() == shape.size();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || v.shape[i] == shape[i];
  if (!ok) throw py::value_error(str_cat(name, " has shape ", shape_text(v.shape), " but expected ", shape_text(shape)));
  return v;
}

template <typename T>
const char* dtype_name() {
  if (std::is_same<T, float>::value) return "float32";
  if (std::is_same<T, int64_t>::value) return "int64";
  if (std::is_same<T, uint8_t>::value) return "uint8";
  if (std::is_same<T, int8_t>::value) return "int8";
  if (std::is_same<T, uint16_t>::value) return "uint16|bfloat16";  // bf16 as its bits, or a bfloat16 tensor
  return "?";
}

// `rows`, when given, receives the first dimension (an `any` one, typically).
template <typename T>
T* checked(const py::handle& obj, const char* name, const std::vector<int64_t>& shape, Memory memory,
           bool writable = false, int64_t* rows = nullptr) {
  const View v = checked_view(obj, name, dtype_name<T>(), shape, memory, writable);
  if (rows) *rows = v.shape.empty() ? 0 : v.shape[0];
  return static_cast<T*>(v.data);
}

template <typename T>
T* optional(const py::object& obj, const char* name, const std::vector<int64_t>& shape, Memory memory,
            bool writable = false) {
  return obj.is_none() ? nullptr : checked<T>(obj, name, shape, memory, writable);
}

// The first dimension of an array argument (how many tokens, sequences, ...).
inline int64_t rows_of(const py::handle& obj, const char* name) {
  const View v = view_of(obj, name);
  if (v.shape.empty()) throw py::value_error(str_cat(name, " must have at least one dimension"));
  return v.shape[0];
}

// config.json's keys (a SqueezeBertConfig's attributes) -> the validated EncoderSpec.
inline EncoderSpec spec_from_dict(const py::dict& d, const char* backend) {
  auto get = [&](const char* k) -> py::object {
    if (!d.contains(k)) throw py::key_error(str_cat("config is missing '", k, "'"));
    return d[k];
  };
  EncoderSpec s;
  s.vocab = get("vocab_size").cast<int64_t>();
  s.hidden = get("hidden_size").cast<int64_t>();
  s.heads = get("num_attention_heads").cast<int64_t>();
  s.layers = get("num_hidden_layers").cast<int64_t>();
  s.intermediate = get("intermediate_size").cast<int64_t>();
  s.max_positions = get("max_position_embeddings").cast<int64_t>();
  s.type_vocab = get("type_vocab_size").cast<int64_t>();
  s.q_groups = get("q_groups").cast<int64_t>();
  s.k_groups = get("k_groups").cast<int64_t>();
  s.v_groups = get("v_groups").cast<int64_t>();
  s.post_attention_groups = get("post_attention_groups").cast<int64_t>();
  s.intermediate_groups = get("intermediate_groups").cast<int64_t>();
  s.output_groups = get("output_groups").cast<int64_t>();
  s.embedding_ln_eps = get("layer_norm_eps").cast<float>();
  s.act = act_from_name(get("hidden_act").cast<std::string>(), backend);
  s.validate();
  return s;
}

}  // namespace pyb
}  // namespace sqf
