// Embeddings gather + sum + LayerNorm: one warp per packed token row, the summed row staged in
// shared memory (fp32) so the table rows are read once; two-pass statistics in fp32 (eps is the
// config's layer_norm_eps here, unlike the encoder's fixed 1e-12). Ids were range-checked by
// packing; an id that is still out of range yields a NaN row instead of an out-of-bounds read.
#include "common.cuh"

namespace sqf {
namespace cuda {

namespace {

constexpr int kEmbedWarps = 4;

template <typename T>
__global__ void __launch_bounds__(kEmbedWarps * 32) embed_ln_kernel(const EmbedArgs a) {
  extern __shared__ __align__(16) float rowbuf[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = int64_t(blockIdx.x) * kEmbedWarps + warp;
  if (t >= live_rows(a.rows, a.live)) return;
  const int H = a.hidden;
  float* buf = rowbuf + warp * H;
  T* out = static_cast<T*>(a.out) + t * H;
  const int64_t pos = a.position_ids[t], typ = a.token_type_ids[t];
  const int64_t id = a.input_ids ? a.input_ids[t] : 0;
  const bool ok = pos >= 0 && pos < a.max_positions && typ >= 0 && typ < a.type_vocab &&
                  (!a.input_ids || (id >= 0 && id < a.vocab));
  if (!ok) {
    for (int c = lane; c < H; c += 32) out[c] = from_f<T>(__int_as_float(0x7fc00000));
    return;
  }
  const T* w = a.input_ids ? static_cast<const T*>(a.word) + id * H : static_cast<const T*>(a.inputs_embeds) + t * H;
  const T* p = static_cast<const T*>(a.position) + pos * H;
  const T* ty = static_cast<const T*>(a.token_type) + typ * H;
  float s = 0.f;
  for (int c = lane; c < H; c += 32) {
    // Same association as the reference: (word + position) + token_type, each rounded to T.
    const float v = to_f(from_f<T>(to_f(from_f<T>(to_f(w[c]) + to_f(p[c]))) + to_f(ty[c])));
    buf[c] = v;
    s += v;
  }
  const float mean = warp_sum(s) / H;
  float s2 = 0.f;
  for (int c = lane; c < H; c += 32) {
    const float d = buf[c] - mean;
    s2 += d * d;
  }
  const float rstd = rsqrtf(warp_sum(s2) / H + a.eps);
  const T* lw = static_cast<const T*>(a.ln_w);
  const T* lb = static_cast<const T*>(a.ln_b);
  for (int c = lane; c < H; c += 32) out[c] = from_f<T>((buf[c] - mean) * rstd * to_f(lw[c]) + to_f(lb[c]));
}

template <typename T>
void launch(const EmbedArgs& a, cudaStream_t stream) {
  if (a.rows <= 0) return;
  const int smem = kEmbedWarps * a.hidden * int(sizeof(float));
  set_smem_limit(reinterpret_cast<const void*>(&embed_ln_kernel<T>), smem);
  const int64_t blocks = (a.rows + kEmbedWarps - 1) / kEmbedWarps;
  embed_ln_kernel<T><<<static_cast<unsigned>(blocks), kEmbedWarps * 32, smem, stream>>>(a);
  check_launch("embed_ln");
}

}  // namespace

void embed_ln(DType t, const EmbedArgs& a, cudaStream_t stream) {
  switch (t) {
    case DType::f32: return launch<float>(a, stream);
    case DType::f16: return launch<__half>(a, stream);
    case DType::bf16: return launch<__nv_bfloat16>(a, stream);
  }
}

}  // namespace cuda
}  // namespace sqf
