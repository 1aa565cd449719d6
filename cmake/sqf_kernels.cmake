# The CPU kernel sources and the per-ISA compile function, shared by the Python module build
# (CMakeLists.txt) and the standalone ARM benchmark (benchmarks/arm/CMakeLists.txt). The same
# sources compile once per ISA, each with its own flags and into its own namespace
# (sqf::cpu::isa_<name>), never with -march=native. Needs SQF_ROOT (the repository root).
set(SQF_ISA_SOURCES
  ${SQF_ROOT}/csrc/cpu/grouped_linear.cc
  ${SQF_ROOT}/csrc/cpu/embed_ln.cc
  ${SQF_ROOT}/csrc/cpu/qkv_attention.cc
  ${SQF_ROOT}/csrc/cpu/attn_out_ln.cc
  ${SQF_ROOT}/csrc/cpu/ffn_ln.cc
  ${SQF_ROOT}/csrc/cpu/gemm_bf16.cc
  ${SQF_ROOT}/csrc/cpu/gemm_f16.cc
  ${SQF_ROOT}/csrc/cpu/table.cc)

set(SQF_ISA_OBJECTS)
# sqf_add_isa(name flags): an object library of the kernel sources for one ISA; its objects are
# appended to SQF_ISA_OBJECTS in the caller's scope.
function(sqf_add_isa name flags)
  add_library(sqf_isa_${name} OBJECT ${SQF_ISA_SOURCES})
  target_compile_definitions(sqf_isa_${name} PRIVATE SQF_ISA_NS=isa_${name} SQF_ISA_NAME=${name})
  separate_arguments(_flags UNIX_COMMAND "${flags}")
  target_compile_options(sqf_isa_${name} PRIVATE ${_flags} -fno-math-errno)
  set(SQF_ISA_OBJECTS ${SQF_ISA_OBJECTS} $<TARGET_OBJECTS:sqf_isa_${name}> PARENT_SCOPE)
endfunction()

# sqf_add_int8_isa(name flags): gemm_i8.cc alone for one int8 variant (isa_<name> namespace, the
# SQF_I8_<NAME> micro-kernel); appended to SQF_ISA_OBJECTS like the full variants.
function(sqf_add_int8_isa name flags)
  add_library(sqf_isa_${name} OBJECT ${SQF_ROOT}/csrc/cpu/gemm_i8.cc)
  string(TOUPPER ${name} _upper)
  target_compile_definitions(sqf_isa_${name} PRIVATE SQF_ISA_NS=isa_${name} SQF_ISA_NAME=${name} SQF_${_upper})
  separate_arguments(_flags UNIX_COMMAND "${flags}")
  target_compile_options(sqf_isa_${name} PRIVATE ${_flags} -fno-math-errno)
  set(SQF_ISA_OBJECTS ${SQF_ISA_OBJECTS} $<TARGET_OBJECTS:sqf_isa_${name}> PARENT_SCOPE)
endfunction()
