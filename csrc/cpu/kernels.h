// The CPU kernel table. Every fused op of DESIGN.md §3 is one entry; each ISA variant
// (scalar, avx2, avx512, neon) compiles the same sources with its own flags into its own
// namespace (sqf::cpu::isa_<name>) and exposes one table, chosen at run time.
//
// Layout contract (all kernels): activations are token-major [tokens, channels] fp32,
// sequences packed back to back, sequence b owning rows [cu_seqlens[b], cu_seqlens[b+1]).
// A grouped 1x1 conv with G groups is a grouped GEMM
//     y[:, g*No:(g+1)*No] = x[:, g*Ni:(g+1)*Ni] @ Wt_g + bias_g,
// with Wt_g = W_g^T packed once at load into panels [G][ceil(No/nr)][Ni][nr] (Ni = in/G,
// No = out/G, nr = KernelTable::nr, the last panel of each group zero-padded).
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "../common/cpu_features.h"
#include "../common/encoder_spec.h"
#include "../common/thread_pool.h"

namespace sqf {
namespace cpu {

// Storage for every buffer the kernels stream (packed weights, workspace, per-thread scratch):
// 64-byte aligned, so a 64-byte vector or AMX tile row never straddles two cache lines (the
// default allocator's 16-byte alignment split every one of them).
template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};
template <class T>
using aligned_vector = std::vector<T, CacheAligned<T>>;

using ::sqf::Act;  // the one activation table: common/encoder_spec.h

// bf16 weights use one layout on every ISA (gemm_bf16.cc): VNNI panels of 32 columns,
// [groups][ceil((out/groups)/32)][Kp/2][32][2] with Kp = in/groups rounded up to 32.
constexpr int64_t kBf16Panel = 32;
// fp16 weights (gemm_f16.cc; fp16 arithmetic on neon_fp16): panels of 16 columns,
// [groups][ceil((out/groups)/16)][in/groups][16] IEEE half.
constexpr int64_t kF16Panel = 16;

// The int8 GEMM of one int8 variant (gemm_i8.cc; sqbert_fast/quantization.py is the definition).
// Weights are int8 per output column with a scale each; activations are quantized per row inside
// gemm. Each variant packs the weights of a column panel its own way (pack_panel); panel p of a
// group starts at p * panel_bytes(K) of that group's packed bytes.
// A GEMM's output handed over block by block: epi(ctx, r0, p, acc) gets rows r0 .. r0 + 31 (rows past M
// are zero rows of A) of column panel p (columns 32p .. 32p + 31) as acc[32][32] fp32, and finishes them.
using BlockEpilogue = void (*)(void* ctx, int64_t r0, int64_t p, const float* acc);

struct Int8Kernels {
  const char* name;
  int64_t nr;                            // columns per panel
  int64_t mr;                            // rows per register / tile block (callers split rows in multiples)
  int64_t (*panel_bytes)(int64_t K);     // bytes of one packed panel of depth K
  // one panel from w[n * ldw + k] (n < nb <= nr, k < K), zero-padded
  void (*pack_panel)(const int8_t* w, int64_t ldw, int64_t K, int64_t nb, int8_t* dst);
  // C[M, N] = act(float(quant(A) @ B) * (a_scale[r] * w_scale[n]) + bias[n]); w_sum[n] = sum_k B[k][n].
  // w_scale == nullptr: C = the exact integer products (tests).
  void (*gemm)(const float* A, int64_t lda, const int8_t* B, int64_t K, const float* w_scale,
               const int32_t* w_sum, float* C, int64_t ldc, int64_t M, int64_t N, const float* bias, Act act);
  // float(quant(A) @ B) * (a_scale[r] * w_scale[n]) (no bias: the epilogue adds it) handed to epi in
  // 32 x 32 blocks, N a multiple of 32; nullptr in variants whose tile is not 32 x 32 (all but i8_amx).
  // The fused Q/K/V projection writes attention's bf16 operands from it, as it does from the bf16 GEMM.
  void (*gemm_blocks)(const float* A, int64_t lda, const int8_t* B, int64_t K, const float* w_scale,
                      const int32_t* w_sum, int64_t M, int64_t N, BlockEpilogue epi, void* ctx);
};

// One grouped conv's weights, in exactly one of these forms (`form`), at `w`:
//   f32:         fp32 panels [groups][ceil((out/groups)/nr)][in/groups][nr]
//   bf16:        bf16 VNNI panels (gemm_bf16.cc)
//   f16:         fp16 panels (gemm_f16.cc)
//   f32_native:  fp32 in the conv's own layout [out][in/groups], read in place (no packed copy): only
//                the fused FFN reads it (ffn_ln.cc), as the broadcast operand of a transposed GEMM
//   bf16_native: bf16 in the conv's own layout, read in place likewise
//   int8:        int8 panels of the int8 variant i8 ([groups][ceil((out/groups)/i8->nr)] panels of
//                i8->panel_bytes(in/groups) bytes), with a scale and a column sum per output channel
// The typed accessors give the weights in their form, or nullptr for any other.
struct GroupedLinear {
  enum class Form : uint8_t { none, f32, bf16, f16, f32_native, bf16_native, int8 };
  int64_t in = 0, out = 0, groups = 1;
  Form form = Form::none;
  const void* w = nullptr;
  const float* wscale = nullptr;  // int8: per output channel
  const int32_t* wsum = nullptr;  // int8: per output channel
  const Int8Kernels* i8 = nullptr;
  const float* bias = nullptr;  // [out] or nullptr

  void set(Form f, const void* weights) {
    form = weights ? f : Form::none;
    w = weights;
  }
  bool has_weights() const { return form != Form::none; }
  const float* f32() const { return as<float>(Form::f32); }
  const uint16_t* bf16() const { return as<uint16_t>(Form::bf16); }
  const uint16_t* f16() const { return as<uint16_t>(Form::f16); }
  const float* f32_native() const { return as<float>(Form::f32_native); }
  const uint16_t* bf16_native() const { return as<uint16_t>(Form::bf16_native); }
  const int8_t* int8() const { return as<int8_t>(Form::int8); }

 private:
  template <class T>
  const T* as(Form f) const { return form == f ? static_cast<const T*>(w) : nullptr; }
};

struct PackedLayer {
  // When q/k/v share their group count and every group holds whole heads, only `qkv` is
  // packed: group g's output columns are [q_g | k_g | v_g] (3 * H/G), so one GEMM per
  // (sequence, group) yields the Q, K, V of that group's heads. Otherwise q, k, v are packed.
  GroupedLinear qkv, q, k, v, post, inter, out;
  const float *post_ln_w, *post_ln_b, *out_ln_w, *out_ln_b;
  // QK^T and PV on the bf16 GEMM (bf16 models, and int8 ones where the CPU has bf16 dot products)
  bool attn_bf16 = false;
};

struct EmbedArgs {
  int64_t tokens, hidden;
  const int64_t* input_ids;     // [T] or nullptr when inputs_embeds is given
  const float* inputs_embeds;   // [T, hidden] or nullptr
  const int64_t* token_type_ids;  // [T]
  const int64_t* position_ids;    // [T]
  const float *word, *position, *token_type;  // embedding tables [rows, hidden]
  int64_t vocab, max_positions, type_vocab;
  const float *ln_w, *ln_b;
  float eps;
  float* out;  // [T, hidden]
};

struct AttentionArgs {
  int64_t tokens, hidden, heads, batch;
  const float* x;            // [T, hidden] layer input
  const int64_t* cu_seqlens;  // [batch + 1]
  const uint8_t* key_valid;  // [T]: 0 = query-only token (padding kept for the pooler)
  float* qkv;                // workspace [T, 3*hidden] (unfused path only)
  float* scratch;            // workspace [num_threads, scratch_per_thread]
  int64_t scratch_per_thread;  // >= attention_scratch_floats(max_len, hidden, heads)
  float* ctx;                // out [T, hidden]
  float* scores;             // optional out: pre-softmax scores, [b][head][L_b][L_b] blocks
  const int64_t* score_offsets;  // [batch]: start of sequence b's block in `scores`
};

// Attention of one head: sequences of up to kAttnOneBlock tokens take one L x L score tile;
// longer ones stream through kAttnBlockQ x kAttnBlockK tiles with an online softmax. Key blocks
// of 512 (not 128) keep sequences up to 512 in one key block: no rescaling of the running
// context (in-process A/B, qkv op 1x512: bf16 35.1 -> 30.4 ms, fp32 108 -> 104 ms).
constexpr int64_t kAttnOneBlock = 256, kAttnBlockQ = 96, kAttnBlockK = 512;
// Query / key rows per score tile for a sequence of `len` tokens (attend and its scratch size).
inline int64_t attn_block_q(int64_t len) { return len <= kAttnOneBlock ? len : kAttnBlockQ; }
inline int64_t attn_block_k(int64_t len) { return len <= kAttnOneBlock ? len : kAttnBlockK; }
// Row stride of the fp32 K^T of one head [d][len]: padded past len so its rows do not fall on a
// power-of-two stride, whose rows would share a few L1 sets (len = 512: 2 KB apart, 4 sets for
// the 64 rows the QK^T micro-kernel walks).
inline int64_t kt_stride(int64_t len) { return (len + 15) / 16 * 16 + 16; }
// Scratch of attend() for one head: K^T [d][kt_stride], the score tile, running max and sum per row.
inline int64_t attention_head_scratch_floats(int64_t len, int64_t d) {
  return d * kt_stride(len) + attn_block_q(len) * attn_block_k(len) + 2 * attn_block_q(len);
}
// The key masks of a sequence (2 floats per key), rounded to whole cache lines.
inline int64_t key_mask_floats(int64_t len) { return (2 * len + 15) / 16 * 16; }
// Per-thread scratch of qkv_attention: one group's Q|K|V rows, the key masks and attend()'s
// scratch, in whole cache lines (each thread's part starts on a line when the base does).
inline int64_t attention_scratch_floats(int64_t max_len, int64_t hidden, int64_t heads) {
  const int64_t n = max_len * 3 * hidden + key_mask_floats(max_len) +
                    attention_head_scratch_floats(max_len, hidden / heads) + 64;
  return (n + 15) / 16 * 16;
}

struct KernelTable {
  const char* isa;
  int64_t nr;  // panel width of packed weights
  // y = act(grouped_linear(x)) for rows [0, rows); x row stride ldx, y row stride ldy.
  void (*grouped_linear)(const GroupedLinear& w, const float* x, int64_t ldx, float* y,
                         int64_t ldy, int64_t rows, Act act, ThreadPool& pool);
  // embeddings gather + sum + LayerNorm
  void (*embed_ln)(const EmbedArgs& a, ThreadPool& pool);
  // grouped Q/K/V projection + masked softmax attention per (sequence, head)
  void (*qkv_attention)(const PackedLayer& w, const AttentionArgs& a, ThreadPool& pool);
  // out = LayerNorm(conv(ctx) + residual), eps fixed by the caller
  void (*attn_out_ln)(const GroupedLinear& w, const float* ln_w, const float* ln_b, float eps,
                      const float* ctx, const float* residual, float* out, int64_t rows,
                      ThreadPool& pool);
  // out = LayerNorm(conv2(act(conv1(x))) + x); `inter` is workspace [rows, intermediate]
  void (*ffn_ln)(const GroupedLinear& w1, const GroupedLinear& w2, Act act, const float* ln_w,
                 const float* ln_b, float eps, const float* x, float* inter, float* out,
                 int64_t rows, ThreadPool& pool);
};

const KernelTable& kernel_table(Isa isa);  // throws if `isa` is not usable here
const Int8Kernels& int8_kernels(Int8Isa isa);  // throws if `isa` is not usable here

}  // namespace cpu
}  // namespace sqf
