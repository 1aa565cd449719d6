// CPU feature detection, done once and cached. The ISA a kernel table is chosen for is the
// best one the CPU supports, unless SQBERT_FAST_FORCE_CPU_ISA names another (which must be
// supported: forcing an ISA the CPU lacks is an error, never a SIGILL).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace sqf {

// Ordered by preference on x86. avx512_bf16 and amx run the same fp32 kernels as avx512; they
// differ in the bf16 GEMM (vdpbf16ps register tiles vs AMX tiles).
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3, amx = 4, neon = 5, neon_fp16 = 6 };

// int8 GEMM variants (csrc/cpu/gemm_i8.cc), chosen apart from Isa: the int8 dot-product
// instructions come and go independently of AVX-512 and bf16 (AVX-VNNI on Alder Lake without
// AVX-512, AVX512-VNNI on Cascade Lake without bf16). Only the GEMM differs; the rest of an int8
// model runs the Isa variant's kernels. Where several fit, the larger value is preferred (i8_neon_i8mm's
// smmla ahead of i8_neon_dot's sdot: twice the multiply-adds per instruction).
enum class Int8Isa { i8_scalar = 0, i8_avx2 = 1, i8_avx_vnni = 2, i8_avx512_vnni = 3, i8_amx = 4, i8_neon_dot = 5,
                     i8_neon_i8mm = 6 };

// Every variant of each enum, in its order (X-macros: the names, and their parsing, come from here; what a
// binary holds is the generated sqf_built_isas.h's SQF_FOR_EACH_ISA / SQF_FOR_EACH_INT8_ISA).
#define SQF_ALL_ISAS(X) X(scalar) X(avx2) X(avx512) X(avx512_bf16) X(amx) X(neon) X(neon_fp16)
#define SQF_ALL_INT8_ISAS(X) \
  X(i8_scalar) X(i8_avx2) X(i8_avx_vnni) X(i8_avx512_vnni) X(i8_amx) X(i8_neon_dot) X(i8_neon_i8mm)

struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx_vnni = false, avx512_vnni = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool amx_permitted = false;  // Linux granted XTILEDATA (arch_prctl ARCH_REQ_XCOMP_PERM)
  bool neon = false, asimdhp = false, asimddp = false, i8mm = false;  // i8mm: HWCAP2_I8MM (smmla)
  std::string vendor, brand;
};

// Every flag of CpuFeatures by its name (what cpu_info() reports).
constexpr std::pair<const char*, bool CpuFeatures::*> kFeatureFlags[] = {
    {"avx2", &CpuFeatures::avx2}, {"fma", &CpuFeatures::fma}, {"avx_vnni", &CpuFeatures::avx_vnni},
    {"avx512_vnni", &CpuFeatures::avx512_vnni}, {"avx512f", &CpuFeatures::avx512f},
    {"avx512bw", &CpuFeatures::avx512bw}, {"avx512vl", &CpuFeatures::avx512vl}, {"avx512dq", &CpuFeatures::avx512dq},
    {"avx512_bf16", &CpuFeatures::avx512_bf16}, {"amx_tile", &CpuFeatures::amx_tile},
    {"amx_bf16", &CpuFeatures::amx_bf16}, {"amx_int8", &CpuFeatures::amx_int8},
    {"amx_permitted", &CpuFeatures::amx_permitted}, {"neon", &CpuFeatures::neon}, {"asimdhp", &CpuFeatures::asimdhp},
    {"asimddp", &CpuFeatures::asimddp}, {"i8mm", &CpuFeatures::i8mm}};

const CpuFeatures& cpu_features();
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws std::invalid_argument on unknown names
bool isa_supported(Isa isa);                 // built into this binary AND supported by the CPU
std::vector<Isa> built_isas();               // ISAs compiled into this binary
Isa best_isa();                              // best supported (ignores the env override)
Isa default_isa();                           // env override if set (validated), else best_isa()

const char* int8_isa_name(Int8Isa isa);
Int8Isa int8_isa_from_name(const std::string& name);  // throws std::invalid_argument on unknown names
bool int8_isa_supported(Int8Isa isa);               // built AND supported by the CPU
std::vector<Int8Isa> built_int8_isas();
// The int8 variant an Encoder of ISA `isa` uses: SQBERT_FAST_FORCE_INT8_ISA if set (validated), else the
// best supported one no newer than `isa` (a forced SQBERT_FAST_FORCE_CPU_ISA=avx2 gives an AVX2 machine's
// choice: i8_avx_vnni where the CPU has AVX-VNNI, else i8_avx2).
Int8Isa default_int8_isa(Isa isa);

}  // namespace sqf
