// CPU feature detection, done once and cached. The ISA a kernel table is chosen for is the
// best one the CPU supports, unless SQBERT_FAST_FORCE_CPU_ISA names another (which must be
// supported: forcing an ISA the CPU lacks is an error, never a SIGILL).
#pragma once
#include <string>
#include <vector>

namespace sqf {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool neon = false, asimdhp = false, asimddp = false;
  std::string vendor, brand;
};

const CpuFeatures& cpu_features();
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws std::invalid_argument on unknown names
bool isa_supported(Isa isa);                 // built into this binary AND supported by the CPU
std::vector<Isa> built_isas();               // ISAs compiled into this binary
Isa best_isa();                              // best supported (ignores the env override)
Isa default_isa();                           // env override if set (validated), else best_isa()

}  // namespace sqf
