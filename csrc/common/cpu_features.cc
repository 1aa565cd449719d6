#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

#include "errors.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define SQF_X86 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(SQF_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace sqf {
namespace {

#ifdef SQF_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

#ifdef SQF_X86
// AMX tile data is off by default for a Linux process: ask for it once (the grant is
// process-wide). Without it the first tile instruction would fault.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023;
  constexpr int XFEATURE_XTILEDATA = 18;
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0) return false;
  return bitmask & (1ul << XFEATURE_XTILEDATA);
#else
  return false;
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef SQF_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  unsigned max_leaf = a;
  char vendor[13] = {0};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;
  __get_cpuid(1, &a, &b, &c, &d);
  const bool osxsave = c & (1u << 27);
  const bool fma = c & (1u << 12);
  unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  const bool amx_os = (xcr0 & (3ull << 17)) == (3ull << 17);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.fma = fma && ymm_os;
    f.avx2 = (b & (1u << 5)) && ymm_os;
    f.avx512f = (b & (1u << 16)) && zmm_os;
    f.avx512dq = (b & (1u << 17)) && zmm_os;
    f.avx512bw = (b & (1u << 30)) && zmm_os;
    f.avx512vl = (b & (1u << 31)) && zmm_os;
    f.avx512_vnni = (c & (1u << 11)) && zmm_os;
    f.amx_bf16 = (d & (1u << 22)) && amx_os;
    f.amx_tile = (d & (1u << 24)) && amx_os;
    f.amx_int8 = (d & (1u << 25)) && amx_os;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = (a & (1u << 5)) && zmm_os;
    f.avx_vnni = (a & (1u << 4)) && ymm_os;
    f.amx_permitted = f.amx_tile && (f.amx_bf16 || f.amx_int8) && request_amx_permission();
  }
  unsigned ext = __get_cpuid_max(0x80000000, nullptr);
  if (ext >= 0x80000004) {
    char brand[49] = {0};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002 + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
#endif
#if defined(__aarch64__)
  f.neon = true;  // mandatory in AArch64
#if defined(__linux__)
  unsigned long hw = getauxval(AT_HWCAP);
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
  f.asimdhp = hw & HWCAP_ASIMDHP;
  f.asimddp = hw & HWCAP_ASIMDDP;
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
  f.i8mm = getauxval(AT_HWCAP2) & HWCAP2_I8MM;
#endif
#endif
  return f;
}

// x86 builds may carry the neon variant compiled through SIMDe (emulation, for tests): it runs
// on any CPU but is never the automatic choice.
#ifdef SQF_NEON_SIMDE
constexpr bool kNeonViaSimde = true;
#else
constexpr bool kNeonViaSimde = false;
#endif

bool cpu_has(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return f.avx2 && f.fma;
    case Isa::avx512: return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    case Isa::avx512_bf16: return cpu_has(Isa::avx512) && f.avx512_bf16;
    case Isa::amx: return cpu_has(Isa::avx512_bf16) && f.amx_permitted;
    case Isa::neon: return f.neon || kNeonViaSimde;
    case Isa::neon_fp16: return (f.neon && f.asimdhp) || kNeonViaSimde;  // HWCAP_ASIMDHP
  }
  return false;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512_bf16";
    case Isa::amx: return "amx";
    case Isa::neon: return "neon";
    case Isa::neon_fp16: return "neon_fp16";
  }
  return "?";
}

Isa isa_from_name(const std::string& name) {
  for (Isa i : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx, Isa::neon, Isa::neon_fp16})
    if (name == isa_name(i)) return i;
  throw std::invalid_argument(str_cat("unknown CPU ISA '", name,
                                      "' (expected one of scalar, avx2, avx512, avx512_bf16, amx, neon, neon_fp16)"));
}

std::vector<Isa> built_isas() {
  std::vector<Isa> v{Isa::scalar};
#ifdef SQF_HAVE_AVX2
  v.push_back(Isa::avx2);
#endif
#ifdef SQF_HAVE_AVX512
  v.push_back(Isa::avx512);
#endif
#ifdef SQF_HAVE_AVX512_BF16
  v.push_back(Isa::avx512_bf16);
#endif
#ifdef SQF_HAVE_AMX
  v.push_back(Isa::amx);
#endif
#ifdef SQF_HAVE_NEON
  v.push_back(Isa::neon);
#endif
#ifdef SQF_HAVE_NEON_FP16
  v.push_back(Isa::neon_fp16);
#endif
  return v;
}

bool isa_supported(Isa isa) {
  for (Isa b : built_isas())
    if (b == isa) return cpu_has(isa);
  return false;
}

Isa best_isa() {
  Isa best = Isa::scalar;
  for (Isa b : built_isas())
    if (cpu_has(b) && static_cast<int>(b) > static_cast<int>(best) &&
        !(kNeonViaSimde && (b == Isa::neon || b == Isa::neon_fp16)))
      best = b;
  return best;
}

Isa default_isa() {
  const char* env = std::getenv("SQBERT_FAST_FORCE_CPU_ISA");
  if (env && *env) {
    Isa want = isa_from_name(env);
    SQF_CHECK(isa_supported(want), "SQBERT_FAST_FORCE_CPU_ISA=", env,
              " is not available: ", cpu_has(want) ? "not built into this binary"
                                                    : "this CPU lacks it");
    return want;
  }
  return best_isa();
}

namespace {
bool int8_cpu_has(Int8Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Int8Isa::i8_scalar: return true;
    case Int8Isa::i8_avx2: return cpu_has(Isa::avx2);
    case Int8Isa::i8_avx_vnni: return cpu_has(Isa::avx2) && f.avx_vnni;
    case Int8Isa::i8_avx512_vnni: return cpu_has(Isa::avx512) && f.avx512_vnni;
    case Int8Isa::i8_amx: return cpu_has(Isa::avx512) && f.amx_int8 && f.amx_permitted;
    case Int8Isa::i8_neon_dot: return (f.neon && f.asimddp) || kNeonViaSimde;
    case Int8Isa::i8_neon_i8mm: return (f.neon && f.i8mm) || kNeonViaSimde;
  }
  return false;
}
// The newest Isa an int8 variant belongs with (a forced Isa caps the int8 choice).
Isa int8_tier(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::i8_scalar: return Isa::scalar;
    case Int8Isa::i8_avx2:
    case Int8Isa::i8_avx_vnni: return Isa::avx2;
    case Int8Isa::i8_avx512_vnni: return Isa::avx512;
    case Int8Isa::i8_amx: return Isa::amx;
    case Int8Isa::i8_neon_dot:
    case Int8Isa::i8_neon_i8mm: return Isa::neon;
  }
  return Isa::scalar;
}
bool is_neon(Isa isa) { return isa == Isa::neon || isa == Isa::neon_fp16; }
}  // namespace

const char* int8_isa_name(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::i8_scalar: return "i8_scalar";
    case Int8Isa::i8_avx2: return "i8_avx2";
    case Int8Isa::i8_avx_vnni: return "i8_avx_vnni";
    case Int8Isa::i8_avx512_vnni: return "i8_avx512_vnni";
    case Int8Isa::i8_amx: return "i8_amx";
    case Int8Isa::i8_neon_dot: return "i8_neon_dot";
    case Int8Isa::i8_neon_i8mm: return "i8_neon_i8mm";
  }
  return "?";
}

Int8Isa int8_isa_from_name(const std::string& name) {
  for (Int8Isa i : {Int8Isa::i8_scalar, Int8Isa::i8_avx2, Int8Isa::i8_avx_vnni, Int8Isa::i8_avx512_vnni,
                    Int8Isa::i8_amx, Int8Isa::i8_neon_dot, Int8Isa::i8_neon_i8mm})
    if (name == int8_isa_name(i)) return i;
  throw std::invalid_argument(str_cat("unknown int8 ISA '", name, "' (expected one of i8_scalar, i8_avx2, "
                                      "i8_avx_vnni, i8_avx512_vnni, i8_amx, i8_neon_dot, i8_neon_i8mm)"));
}

std::vector<Int8Isa> built_int8_isas() {
  std::vector<Int8Isa> v{Int8Isa::i8_scalar};
#ifdef SQF_HAVE_I8_AVX2
  v.push_back(Int8Isa::i8_avx2);
#endif
#ifdef SQF_HAVE_I8_AVX_VNNI
  v.push_back(Int8Isa::i8_avx_vnni);
#endif
#ifdef SQF_HAVE_I8_AVX512_VNNI
  v.push_back(Int8Isa::i8_avx512_vnni);
#endif
#ifdef SQF_HAVE_I8_AMX
  v.push_back(Int8Isa::i8_amx);
#endif
#ifdef SQF_HAVE_I8_NEON_DOT
  v.push_back(Int8Isa::i8_neon_dot);
#endif
#ifdef SQF_HAVE_I8_NEON_I8MM
  v.push_back(Int8Isa::i8_neon_i8mm);
#endif
  return v;
}

bool int8_isa_supported(Int8Isa isa) {
  for (Int8Isa b : built_int8_isas())
    if (b == isa) return int8_cpu_has(isa);
  return false;
}

Int8Isa default_int8_isa(Isa isa) {
  const char* env = std::getenv("SQBERT_FAST_FORCE_INT8_ISA");
  if (env && *env) {
    Int8Isa want = int8_isa_from_name(env);
    SQF_CHECK(int8_isa_supported(want), "SQBERT_FAST_FORCE_INT8_ISA=", env, " is not available: ",
              int8_cpu_has(want) ? "not built into this binary" : "this CPU lacks it");
    return want;
  }
  Int8Isa best = Int8Isa::i8_scalar;
  for (Int8Isa b : built_int8_isas()) {
    const Isa tier = int8_tier(b);
    // NEON int8 with a NEON Isa only; x86 ones up to the Isa's level (never with a NEON Isa)
    const bool fits = is_neon(tier) ? is_neon(isa) : !is_neon(isa) && static_cast<int>(tier) <= static_cast<int>(isa);
    if (fits && int8_isa_supported(b) && static_cast<int>(b) > static_cast<int>(best)) best = b;
  }
  return best;
}

}  // namespace sqf
