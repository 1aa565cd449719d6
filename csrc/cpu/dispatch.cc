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

#define SQF_DECLARE_INT8(ns)        \
  namespace ns {                    \
  const Int8Kernels& int8_table();  \
  }
SQF_DECLARE_INT8(isa_i8_scalar)
#ifdef SQF_HAVE_I8_AVX2
SQF_DECLARE_INT8(isa_i8_avx2)
#endif
#ifdef SQF_HAVE_I8_AVX_VNNI
SQF_DECLARE_INT8(isa_i8_avx_vnni)
#endif
#ifdef SQF_HAVE_I8_AVX512_VNNI
SQF_DECLARE_INT8(isa_i8_avx512_vnni)
#endif
#ifdef SQF_HAVE_I8_AMX
SQF_DECLARE_INT8(isa_i8_amx)
#endif
#ifdef SQF_HAVE_I8_NEON_DOT
SQF_DECLARE_INT8(isa_i8_neon_dot)
#endif
#ifdef SQF_HAVE_I8_NEON_I8MM
SQF_DECLARE_INT8(isa_i8_neon_i8mm)
#endif

const Int8Kernels& int8_kernels(Int8Isa isa) {
  SQF_CHECK(int8_isa_supported(isa), "int8 ISA '", int8_isa_name(isa),
            "' is not usable here (not built, or the CPU lacks it)");
  switch (isa) {
#ifdef SQF_HAVE_I8_AVX2
    case Int8Isa::i8_avx2: return isa_i8_avx2::int8_table();
#endif
#ifdef SQF_HAVE_I8_AVX_VNNI
    case Int8Isa::i8_avx_vnni: return isa_i8_avx_vnni::int8_table();
#endif
#ifdef SQF_HAVE_I8_AVX512_VNNI
    case Int8Isa::i8_avx512_vnni: return isa_i8_avx512_vnni::int8_table();
#endif
#ifdef SQF_HAVE_I8_AMX
    case Int8Isa::i8_amx: return isa_i8_amx::int8_table();
#endif
#ifdef SQF_HAVE_I8_NEON_DOT
    case Int8Isa::i8_neon_dot: return isa_i8_neon_dot::int8_table();
#endif
#ifdef SQF_HAVE_I8_NEON_I8MM
    case Int8Isa::i8_neon_i8mm: return isa_i8_neon_i8mm::int8_table();
#endif
    default: return isa_i8_scalar::int8_table();
  }
}

}  // namespace cpu
}  // namespace sqf
