// Device queries and launch-error plumbing. Nothing here touches the GPU at import time: the
// module links the static CUDA runtime and only asks the driver when a function is called, so
// `import sqbert_fast._C_cuda` works on machines without a GPU or driver.
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "common.cuh"

namespace sqf {
namespace cuda {

int dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

int device_count(std::string* error) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (error) *error = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

static void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  // A failed runtime call also becomes the thread's "last error": clear it, or the next launch's
  // check_launch would report this failure again under the kernel's name.
  cudaGetLastError();
  throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// Shared memory the planners leave for kernels' static __shared__ variables (ln_tile_finish's
// flag, for one): a plan's dynamic bytes plus the kernel's static ones must fit the opt-in limit.
constexpr int kStaticSmemReserve = 1024;

DeviceInfo device_info(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceInfo d;
  d.name = prop.name;
  d.major = prop.major;
  d.minor = prop.minor;
  d.sm_count = prop.multiProcessorCount;
  int optin = 0;
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  d.smem_optin = optin - kStaticSmemReserve;
  return d;
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

void set_smem_limit(const void* kernel, int bytes) {
  if (bytes <= 48 * 1024) return;
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  static std::mutex mu;
  static std::set<std::pair<const void*, int>> done;
  std::lock_guard<std::mutex> lock(mu);
  if (done.count({kernel, dev})) return;
  // Always ask for the most this kernel can have, so one call serves every later (smaller) size:
  // the opt-in limit less the kernel's static shared memory (asking for more is an invalid argument).
  int optin = 0;
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  cudaFuncAttributes attr{};
  check(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes");
  const int dynamic_max = optin - static_cast<int>(attr.sharedSizeBytes);
  if (bytes > dynamic_max)
    throw std::runtime_error("kernel needs " + std::to_string(bytes) + " bytes of dynamic shared memory, the device allows " +
                             std::to_string(dynamic_max) + " beside its " + std::to_string(attr.sharedSizeBytes) +
                             " static bytes");
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, dynamic_max), "cudaFuncSetAttribute");
  done.insert({kernel, dev});
}

}  // namespace cuda
}  // namespace sqf
