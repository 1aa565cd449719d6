// Host-side interface of the CUDA kernels: plain C++ (no CUDA or torch types beyond an opaque
// stream), so the binding file and the launch-planning tests see one contract.
//
// Every launcher takes raw device pointers, sizes and a cudaStream_t, allocates nothing and
// throws std::runtime_error with the CUDA error string when a launch fails.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../common/encoder_spec.h"

typedef struct CUstream_st* cudaStream_t;

namespace sqf {
namespace cuda {

enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };
// The kernels take the activation as an int: common/encoder_spec.h's Act ids.
constexpr int act_none = static_cast<int>(::sqf::Act::none), act_gelu = static_cast<int>(::sqf::Act::gelu),
              act_gelu_tanh = static_cast<int>(::sqf::Act::gelu_tanh), act_relu = static_cast<int>(::sqf::Act::relu),
              act_silu = static_cast<int>(::sqf::Act::silu), act_tanh = static_cast<int>(::sqf::Act::tanh);

int dtype_size(DType t);
const char* dtype_name(DType t);

// ---- tiles (compile-time constants, exposed for the planners and the tests) ---------------------
constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 32, kGemmThreads = 128;
constexpr int kFfnThreads = 256, kFfnBI = 64;
int ffn_block_rows(DType t);       // 64 on tensor cores, 32 for fp32 (shared memory budget)
int attention_block_rows(DType t); // query rows per block = key rows per K/V tile
constexpr int kAttnMaxHeadDim = 128;

// ---- launch plans: pure functions of the shapes, tested without a GPU ---------------------------
struct GemmPlan {
  int grid_x = 0, grid_y = 0, grid_z = 0;  // row tiles, (group, column tile), problems x K splits
  int k_splits = 1;
  int k_chunks_per_split = 0;  // kGemmBK-wide K chunks each split reduces
  int tiles_per_group = 0;
};
// One grouped 1x1 conv over `rows` rows. `problems` independent convs of the same shape share a
// launch (q/k/v). `split_k` > 0 forces the number of K splits, 0 picks one from `sm_count`.
GemmPlan plan_gemm(int64_t rows, int in, int out, int groups, int problems, bool ln_epilogue,
                   int sm_count, int split_k = 0);

struct FfnPlan {
  bool fused = false;       // intermediate kept on chip, one block per (row tile, group, split)
  std::string why_not;      // when !fused: the reason the two-GEMM path is taken
  int block_rows = 0, smem_bytes = 0;
  int grid_x = 0, grid_y = 0, grid_z = 0;
  int chunks = 0;           // intermediate columns per group / kFfnBI, rounded up
};
FfnPlan plan_ffn(int64_t rows, int hidden, int intermediate, int intermediate_groups, int output_groups,
                 DType t, int smem_limit, int sm_count);

struct AttnPlan {
  int grid_x = 0, grid_y = 0, grid_z = 0, threads = 0, smem_bytes = 0, head_dim_padded = 0;
};
AttnPlan plan_attention(int batch, int max_len, int heads, int head_dim, DType t);

// ---- launchers ----------------------------------------------------------------------------------
struct Conv {  // one grouped 1x1 conv: y[:, g] = x[:, g] @ W_g^T + b_g
  const void* w = nullptr;     // [out, in/groups] (transformers' [out, in/groups, 1])
  const void* bias = nullptr;  // [out]
  int in = 0, out = 0, groups = 1;
};

struct LnEpilogue {  // out = LayerNorm(y + residual) over `out` channels
  const void* residual = nullptr;  // [rows, out] model dtype
  const void* ln_w = nullptr;
  const void* ln_b = nullptr;
  float eps = 1e-12f;
  void* out = nullptr;             // [rows, out]
  float* pre = nullptr;            // workspace [rows, out] fp32, all zero between launches
  int* counters = nullptr;         // workspace [row tiles], all zero between launches
};

// y = act(conv(x)) for up to 3 convs of the same shape (y_col0[i]: column offset of conv i's
// output in y, row stride ldy). x row r is x[x_rows ? x_rows[r] : r]. Rows >= *live (when given)
// are skipped.
void grouped_linear(DType t, const void* x, int64_t ldx, const int64_t* x_rows, int64_t rows,
                    const int64_t* live, const Conv* convs, int nconv, void* y, int64_t ldy,
                    const int64_t* y_col0, int act, int sm_count, cudaStream_t stream);

// out = LayerNorm(conv(x) + residual): the second FFN conv on the unfused path, and attn_out_ln.
void grouped_linear_ln(DType t, const void* x, int64_t ldx, int64_t rows, const int64_t* live,
                       const Conv& conv, const LnEpilogue& ln, int sm_count, int split_k,
                       cudaStream_t stream);

void attn_out_ln(DType t, const void* ctx, int64_t rows, const int64_t* live, const Conv& post,
                 const LnEpilogue& ln, int sm_count, cudaStream_t stream);

struct EmbedArgs {
  int64_t rows = 0;                  // capacity; live rows = *live
  const int64_t* live = nullptr;
  int hidden = 0;
  const int64_t* input_ids = nullptr;  // [T] or null when inputs_embeds is given
  const void* inputs_embeds = nullptr;
  const int64_t* token_type_ids = nullptr;
  const int64_t* position_ids = nullptr;
  const void *word = nullptr, *position = nullptr, *token_type = nullptr;
  int64_t vocab = 0, max_positions = 0, type_vocab = 0;
  const void *ln_w = nullptr, *ln_b = nullptr;
  float eps = 1e-12f;
  void* out = nullptr;
};
void embed_ln(DType t, const EmbedArgs& a, cudaStream_t stream);

struct AttentionArgs {
  int batch = 0, max_len = 0, heads = 0, hidden = 0;
  const void* qkv = nullptr;         // [T, 3*hidden]: q | k | v column blocks
  const int64_t* cu_seqlens = nullptr;
  const uint8_t* key_valid = nullptr;
  void* ctx = nullptr;               // [T, hidden]
  void* scores = nullptr;            // optional [b][head][L_b][L_b] pre-softmax blocks
  const int64_t* score_offsets = nullptr;  // [batch] start of sequence b's block
};
void attention(DType t, const AttentionArgs& a, cudaStream_t stream);
// Q/K/V projection into the `qkv` workspace [rows, 3*hidden], then attention() on it.
void qkv_attention(DType t, const void* x, int64_t rows, const int64_t* live, const Conv& q,
                   const Conv& k, const Conv& v, void* qkv, const AttentionArgs& a, int sm_count,
                   cudaStream_t stream);

// out = LayerNorm(conv2(act(conv1(x))) + x). `inter` is workspace [rows, intermediate] used only
// on the unfused path (see plan_ffn).
void ffn_ln(DType t, const void* x, int64_t rows, const int64_t* live, const Conv& c1,
            const Conv& c2, int act, const LnEpilogue& ln, void* inter, int smem_limit,
            int sm_count, cudaStream_t stream);

// ---- the whole encoder: embeddings, L x (qkv_attention, attn_out_ln, ffn_ln), pooler ---------
// The model's shape (common/encoder_spec.h, shared with the cpu encoder) plus the compute dtype.
struct EncoderConfig : ::sqf::EncoderSpec {
  DType dtype = DType::f32;
};

struct LayerWeights {
  Conv q, k, v, post, inter, out;
  const void *post_ln_w = nullptr, *post_ln_b = nullptr, *out_ln_w = nullptr, *out_ln_b = nullptr;
};

struct EncoderWeights {
  const void *word = nullptr, *position = nullptr, *token_type = nullptr;
  const void *emb_ln_w = nullptr, *emb_ln_b = nullptr;
  std::vector<LayerWeights> layers;
  Conv pooler;  // pooler.w == nullptr: no pooler
};

// Byte offsets into one workspace buffer sized for `tokens` rows. The `zeroed` tail (fp32 LN
// row buffer and tile counters) must be zero when first handed over; the kernels leave it zero.
struct WorkspaceLayout {
  int64_t qkv = 0, ctx = 0, mid = 0, ping0 = 0, ping1 = 0, inter = 0, pre = 0, counters = 0;
  int64_t zeroed = 0;  // start of the region that must be zero
  int64_t total = 0;
};
WorkspaceLayout workspace_layout(const EncoderConfig& c, int64_t tokens, bool unfused_ffn);

// The packed batch of common/encoder_spec.h in the model's dtype. batch counts sequences (graph buckets
// pad with empty ones); tokens is the row capacity (live rows = cu_seqlens[batch], read on the device).
// What the host cannot read back from the device comes with it.
struct ForwardArgs : ::sqf::PackedBatch<void> {
  int max_len = 0;  // upper bound of any sequence length (grid size)
  const int64_t* score_offsets = nullptr;
  int64_t score_per_layer = 0;  // scores: [layers, score_per_layer]
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};

struct DeviceLimits {
  int sm_count = 0, smem_optin = 48 * 1024;
};

void encoder_forward(const EncoderConfig& c, const EncoderWeights& w, const ForwardArgs& a,
                     const DeviceLimits& dev, cudaStream_t stream);

// ---- device queries (never throw; 0 devices when no driver) --------------------------------------
int device_count(std::string* error);
struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0, sm_count = 0, smem_optin = 0;
};
DeviceInfo device_info(int device);

void check_launch(const char* what);  // throws on a pending launch error

}  // namespace cuda
}  // namespace sqf
