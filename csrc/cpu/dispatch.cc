// Run-time choice of the kernel table (baseline code: compiled without ISA flags).
#include "../common/errors.h"
#include "kernels.h"

namespace sqf {
namespace cpu {
#define SQF_DECLARE_TABLE(ns) \
  namespace ns {              \
  const KernelTable& table(); \
  }
SQF_DECLARE_TABLE(isa_scalar)
#ifdef SQF_HAVE_AVX2
SQF_DECLARE_TABLE(isa_avx2)
#endif
#ifdef SQF_HAVE_AVX512
SQF_DECLARE_TABLE(isa_avx512)
#endif
#ifdef SQF_HAVE_AVX512_BF16
SQF_DECLARE_TABLE(isa_avx512_bf16)
#endif
#ifdef SQF_HAVE_AMX
SQF_DECLARE_TABLE(isa_amx)
#endif
#ifdef SQF_HAVE_NEON
SQF_DECLARE_TABLE(isa_neon)
#endif
#ifdef SQF_HAVE_NEON_FP16
SQF_DECLARE_TABLE(isa_neon_fp16)
#endif

const KernelTable& kernel_table(Isa isa) {
  SQF_CHECK(isa_supported(isa), "CPU ISA '", isa_name(isa),
            "' is not usable here (not built, or the CPU lacks it)");
  switch (isa) {
#ifdef SQF_HAVE_AVX2
    case Isa::avx2: return isa_avx2::table();
#endif
#ifdef SQF_HAVE_AVX512
    case Isa::avx512: return isa_avx512::table();
#endif
#ifdef SQF_HAVE_AVX512_BF16
    case Isa::avx512_bf16: return isa_avx512_bf16::table();
#endif
#ifdef SQF_HAVE_AMX
    case Isa::amx: return isa_amx::table();
#endif
#ifdef SQF_HAVE_NEON
    case Isa::neon: return isa_neon::table();
#endif
#ifdef SQF_HAVE_NEON_FP16
    case Isa::neon_fp16: return isa_neon_fp16::table();
#endif
    default: return isa_scalar::table();
  }
}

}  // namespace cpu
}  // namespace sqf
