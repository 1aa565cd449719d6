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
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

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
  d.smem_optin = optin;
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
  // Always ask for the device maximum so one call serves every later (smaller) size.
  int optin = 0;
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  if (bytes > optin)
    throw std::runtime_error("kernel needs " + std::to_string(bytes) + " bytes of shared memory, the device allows " +
                             std::to_string(optin));
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin), "cudaFuncSetAttribute");
  done.insert({kernel, dev});
}

}  // namespace cuda
}  // namespace sqf
