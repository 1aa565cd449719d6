#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

#include "errors.h"
#include "sqf_built_isas.h"

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

namespace {
// One (value, name) table per enum, and the lookups both share.
template <class E>
struct Named {
  E value;
  const char* name;
};
#define SQF_NAMED_ISA(n) {Isa::n, #n},
#define SQF_NAMED_INT8(n) {Int8Isa::n, #n},
constexpr Named<Isa> kIsaNames[] = {SQF_ALL_ISAS(SQF_NAMED_ISA)};
constexpr Named<Int8Isa> kInt8IsaNames[] = {SQF_ALL_INT8_ISAS(SQF_NAMED_INT8)};
#undef SQF_NAMED_ISA
#undef SQF_NAMED_INT8

template <class E, size_t N>
const char* name_in(const Named<E> (&table)[N], E value) {
  for (const auto& e : table)
    if (e.value == value) return e.name;
  return "?";
}

template <class E, size_t N>
E from_name_in(const Named<E> (&table)[N], const std::string& name, const char* what) {
  std::string known;
  for (const auto& e : table) {
    if (name == e.name) return e.value;
    known += str_cat(known.empty() ? "" : ", ", e.name);
  }
  throw std::invalid_argument(str_cat("unknown ", what, " '", name, "' (expected one of ", known, ")"));
}

template <class E, class Has>
bool usable(const std::vector<E>& built, E isa, Has cpu_has_it) {
  for (E b : built)
    if (b == isa) return cpu_has_it(isa);
  return false;
}
}  // namespace

const char* isa_name(Isa isa) { return name_in(kIsaNames, isa); }
Isa isa_from_name(const std::string& name) { return from_name_in(kIsaNames, name, "CPU ISA"); }

std::vector<Isa> built_isas() {
#define SQF_VALUE(n) Isa::n,
  return {SQF_FOR_EACH_ISA(SQF_VALUE)};
#undef SQF_VALUE
}

bool isa_supported(Isa isa) { return usable(built_isas(), isa, cpu_has); }

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

const char* int8_isa_name(Int8Isa isa) { return name_in(kInt8IsaNames, isa); }
Int8Isa int8_isa_from_name(const std::string& name) { return from_name_in(kInt8IsaNames, name, "int8 ISA"); }

std::vector<Int8Isa> built_int8_isas() {
#define SQF_VALUE(n) Int8Isa::n,
  return {SQF_FOR_EACH_INT8_ISA(SQF_VALUE)};
#undef SQF_VALUE
}

bool int8_isa_supported(Int8Isa isa) { return usable(built_int8_isas(), isa, int8_cpu_has); }

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
