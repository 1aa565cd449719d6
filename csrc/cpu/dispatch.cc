// Run-time choice of the kernel table (baseline code: compiled without ISA flags). The variants
// built into this binary come from the generated sqf_built_isas.h (cmake/sqf_kernels.cmake): each
// exports its table from its own namespace, isa_<name>.
#include "../common/errors.h"
#include "kernels.h"
#include "sqf_built_isas.h"

namespace sqf {
namespace cpu {

#define SQF_DECLARE_TABLE(name) \
  namespace isa_##name {        \
  const KernelTable& table();   \
  }
SQF_FOR_EACH_ISA(SQF_DECLARE_TABLE)
#define SQF_DECLARE_INT8(name)     \
  namespace isa_##name {           \
  const Int8Kernels& int8_table(); \
  }
SQF_FOR_EACH_INT8_ISA(SQF_DECLARE_INT8)

namespace {
template <class E, class T>
struct Variant {
  E isa;
  const T& (*table)();
};

// `isa`'s table (checked usable before); the first entry is the scalar one
template <class E, class T, size_t N>
const T& pick(const Variant<E, T> (&variants)[N], E isa) {
  for (const auto& v : variants)
    if (v.isa == isa) return v.table();
  return variants[0].table();
}
}  // namespace

const KernelTable& kernel_table(Isa isa) {
  SQF_CHECK(isa_supported(isa), "CPU ISA '", isa_name(isa), "' is not usable here (not built, or the CPU lacks it)");
#define SQF_VARIANT(name) {Isa::name, &isa_##name::table},
  static const Variant<Isa, KernelTable> variants[] = {SQF_FOR_EACH_ISA(SQF_VARIANT)};
#undef SQF_VARIANT
  return pick(variants, isa);
}

const Int8Kernels& int8_kernels(Int8Isa isa) {
  SQF_CHECK(int8_isa_supported(isa), "int8 ISA '", int8_isa_name(isa),
            "' is not usable here (not built, or the CPU lacks it)");
#define SQF_VARIANT(name) {Int8Isa::name, &isa_##name::int8_table},
  static const Variant<Int8Isa, Int8Kernels> variants[] = {SQF_FOR_EACH_INT8_ISA(SQF_VARIANT)};
#undef SQF_VARIANT
  return pick(variants, isa);
}

}  // namespace cpu
}  // namespace sqf
