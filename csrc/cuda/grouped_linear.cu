// Grouped 1x1 conv as a grouped GEMM, token-major: y[:, g] = x[:, g] @ W_g^T + b_g.
//
// Block tile 64 rows x 64 output channels of one group, K in chunks of 32 (4 warps, each a
// 32x32 sub-tile of 2x2 MMA tiles). The conv weight [out, in/groups] is read as is: a 64x32
// weight tile in shared memory is the column-major B operand. Two epilogues:
//   store — bias + activation, written at a column offset (q | k | v share one launch, grid.z
//           picks the conv; also the pooler with a row gather and tanh);
//   ln    — bias + residual accumulated into an fp32 row buffer (atomically, so K can be split
//           across blocks when there are few rows), and the last block of each row tile applies
//           the LayerNorm (ln_tile_finish). This is attn_out_ln's kernel.
#include <algorithm>

#include "common.cuh"

namespace sqf {
namespace cuda {

namespace {

template <typename T>
struct GemmParams {
  const T* x;
  int64_t ldx;
  const int64_t* x_rows;
  int64_t rows;
  const int64_t* live;
  const T* w[3];
  const T* bias[3];
  int64_t y_col0[3];
  int in, out, groups, Ni, No, tpg, k_splits, kcps;
  T* y;
  int64_t ldy;
  int act;
  const T* residual;
  LnTile<T> ln;
};

template <typename T, bool LN>
__global__ void __launch_bounds__(kGemmThreads) grouped_gemm_kernel(const GemmParams<T> p) {
  using M = TileMma<T>;
  constexpr int BM = kGemmBM, BN = kGemmBN, BK = kGemmBK, NT = kGemmThreads;
  constexpr int LDA = BK + pad_elems<T>(), LDC = BN + 4;
  constexpr int AB_BYTES = (BM + BN) * LDA * int(sizeof(T)), C_BYTES = BM * LDC * 4;
  __shared__ __align__(128) unsigned char smem[AB_BYTES > C_BYTES ? AB_BYTES : C_BYTES];
  T* As = reinterpret_cast<T*>(smem);
  T* Bs = As + BM * LDA;
  float* Cs = reinterpret_cast<float*>(smem);

  const int64_t nrows = live_rows(p.rows, p.live);
  const int64_t row0 = int64_t(blockIdx.x) * BM;
  if (row0 >= nrows) return;  // whole row tile idle: every block of the tile leaves
  const int g = blockIdx.y / p.tpg, n0 = (blockIdx.y % p.tpg) * BN;
  const int conv = blockIdx.z / p.k_splits, split = blockIdx.z % p.k_splits;
  if (g >= p.groups || conv >= (LN ? 1 : 3) || p.w[conv] == nullptr) return;
  const int Ni = p.Ni, No = p.No;
  const int r_valid = int(min(int64_t(BM), nrows - row0)), n_valid = min(BN, No - n0);
  const bool vx = vec_ok<T>(p.x, p.ldx, int64_t(g) * Ni, Ni);
  const bool vw = vec_ok<T>(p.w[conv], Ni, 0, Ni);

  const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;
  typename M::FC acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) M::zero(acc[i][j]);

  const int kchunks = ceil_div_i(Ni, BK);
  const int kc_begin = split * p.kcps, kc_end = min(kchunks, kc_begin + p.kcps);
  for (int kc = kc_begin; kc < kc_end; ++kc) {
    const int k0 = kc * BK, kv = min(BK, Ni - k0);
    __syncthreads();
    load_tile<T, NT>(As, LDA, BM, BK, p.x + int64_t(g) * Ni + k0, p.ldx, row0, p.x_rows, r_valid, kv, vx);
    load_tile<T, NT>(Bs, LDA, BN, BK, p.w[conv] + k0, Ni, int64_t(g) * No + n0, nullptr, n_valid, kv, vw);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      typename M::FA a[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) M::load_a(a[i], As + (wm * 32 + i * 16) * LDA + kk * 16, LDA);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        typename M::FBc b;
        M::load_bc(b, Bs + (wn * 32 + j * 16) * LDA + kk * 16, LDA);
#pragma unroll
        for (int i = 0; i < 2; ++i) M::mma(acc[i][j], a[i], b);
      }
    }
  }
  __syncthreads();  // last reads of As/Bs before Cs reuses the space
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) M::store(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC);
  __syncthreads();

  const T* bias = p.bias[conv];
  if (!LN) {
    T* y = p.y + p.y_col0[conv] + int64_t(g) * No + n0;
    for (int idx = threadIdx.x; idx < BM * BN; idx += NT) {
      const int i = idx / BN, j = idx % BN;
      if (i >= r_valid || j >= n_valid) continue;
      float v = Cs[i * LDC + j];
      if (bias) v += to_f(bias[int64_t(g) * No + n0 + j]);
      y[(row0 + i) * p.ldy + j] = from_f<T>(activate(v, p.act));
    }
    return;
  }
  const int N = p.out;
  for (int idx = threadIdx.x; idx < BM * BN; idx += NT) {
    const int i = idx / BN, j = idx % BN;
    if (i >= r_valid || j >= n_valid) continue;
    const int64_t col = int64_t(g) * No + n0 + j;
    float v = Cs[i * LDC + j];
    if (split == 0) v += (bias ? to_f(bias[col]) : 0.f) + to_f(p.residual[(row0 + i) * N + col]);
    atomicAdd(p.ln.pre + (row0 + i) * N + col, v);
  }
  p.ln.finish(row0, r_valid, N);
}

template <typename T>
GemmParams<T> base_params(const void* x, int64_t ldx, const int64_t* x_rows, int64_t rows,
                          const int64_t* live, const Conv& c, const GemmPlan& plan) {
  GemmParams<T> p{};
  p.x = static_cast<const T*>(x);
  p.ldx = ldx;
  p.x_rows = x_rows;
  p.rows = rows;
  p.live = live;
  p.in = c.in;
  p.out = c.out;
  p.groups = c.groups;
  p.Ni = c.in / c.groups;
  p.No = c.out / c.groups;
  p.tpg = plan.tiles_per_group;
  p.k_splits = plan.k_splits;
  p.kcps = plan.k_chunks_per_split;
  return p;
}

template <typename T>
void launch_store(const void* x, int64_t ldx, const int64_t* x_rows, int64_t rows,
                  const int64_t* live, const Conv* convs, int nconv, void* y, int64_t ldy,
                  const int64_t* y_col0, int act, int sm_count, cudaStream_t stream) {
  const GemmPlan plan = plan_gemm(rows, convs[0].in, convs[0].out, convs[0].groups, nconv, false, sm_count);
  GemmParams<T> p = base_params<T>(x, ldx, x_rows, rows, live, convs[0], plan);
  for (int i = 0; i < nconv; ++i) {
    p.w[i] = static_cast<const T*>(convs[i].w);
    p.bias[i] = static_cast<const T*>(convs[i].bias);
    p.y_col0[i] = y_col0 ? y_col0[i] : 0;
  }
  p.y = static_cast<T*>(y);
  p.ldy = ldy;
  p.act = act;
  if (plan.grid_x == 0) return;
  grouped_gemm_kernel<T, false><<<dim3(plan.grid_x, plan.grid_y, plan.grid_z), kGemmThreads, 0, stream>>>(p);
  check_launch("grouped_linear");
}

template <typename T>
void launch_ln(const void* x, int64_t ldx, int64_t rows, const int64_t* live, const Conv& conv,
               const LnEpilogue& ln, int sm_count, int split_k, cudaStream_t stream) {
  const GemmPlan plan = plan_gemm(rows, conv.in, conv.out, conv.groups, 1, true, sm_count, split_k);
  GemmParams<T> p = base_params<T>(x, ldx, nullptr, rows, live, conv, plan);
  p.w[0] = static_cast<const T*>(conv.w);
  p.bias[0] = static_cast<const T*>(conv.bias);
  p.residual = static_cast<const T*>(ln.residual);
  p.ln = LnTile<T>::from(ln);
  if (plan.grid_x == 0) return;
  grouped_gemm_kernel<T, true><<<dim3(plan.grid_x, plan.grid_y, plan.grid_z), kGemmThreads, 0, stream>>>(p);
  check_launch("grouped_linear_ln");
}

}  // namespace

GemmPlan plan_gemm(int64_t rows, int in, int out, int groups, int problems, bool ln_epilogue,
                   int sm_count, int split_k) {
  GemmPlan p;
  const int Ni = in / groups, No = out / groups;
  p.tiles_per_group = ceil_div_i(No, kGemmBN);
  p.grid_x = static_cast<int>((rows + kGemmBM - 1) / kGemmBM);
  p.grid_y = groups * p.tiles_per_group;
  const int kchunks = std::max(1, ceil_div_i(Ni, kGemmBK));
  int splits = 1;
  if (ln_epilogue) {
    if (split_k > 0) {
      splits = split_k;
    } else if (sm_count > 0) {
      // Few rows (small batches): split K so that about two waves of blocks keep every SM busy.
      const int64_t blocks = int64_t(std::max(p.grid_x, 1)) * p.grid_y;
      if (blocks < sm_count) splits = static_cast<int>((2 * int64_t(sm_count) + blocks - 1) / blocks);
    }
    splits = std::max(1, std::min(splits, kchunks));
  }
  p.k_chunks_per_split = ceil_div_i(kchunks, splits);
  p.k_splits = ceil_div_i(kchunks, p.k_chunks_per_split);  // no empty split
  p.grid_z = problems * p.k_splits;
  return p;
}

void grouped_linear(DType t, const void* x, int64_t ldx, const int64_t* x_rows, int64_t rows,
                    const int64_t* live, const Conv* convs, int nconv, void* y, int64_t ldy,
                    const int64_t* y_col0, int act, int sm_count, cudaStream_t stream) {
  if (nconv < 1 || nconv > 3) throw std::invalid_argument("grouped_linear: 1 to 3 convs per launch");
  for (int i = 1; i < nconv; ++i)
    if (convs[i].in != convs[0].in || convs[i].out != convs[0].out || convs[i].groups != convs[0].groups)
      throw std::invalid_argument("grouped_linear: convs sharing a launch must have the same shape");
  switch (t) {
    case DType::f32: return launch_store<float>(x, ldx, x_rows, rows, live, convs, nconv, y, ldy, y_col0, act, sm_count, stream);
    case DType::f16: return launch_store<__half>(x, ldx, x_rows, rows, live, convs, nconv, y, ldy, y_col0, act, sm_count, stream);
    case DType::bf16: return launch_store<__nv_bfloat16>(x, ldx, x_rows, rows, live, convs, nconv, y, ldy, y_col0, act, sm_count, stream);
  }
}

void grouped_linear_ln(DType t, const void* x, int64_t ldx, int64_t rows, const int64_t* live,
                       const Conv& conv, const LnEpilogue& ln, int sm_count, int split_k,
                       cudaStream_t stream) {
  switch (t) {
    case DType::f32: return launch_ln<float>(x, ldx, rows, live, conv, ln, sm_count, split_k, stream);
    case DType::f16: return launch_ln<__half>(x, ldx, rows, live, conv, ln, sm_count, split_k, stream);
    case DType::bf16: return launch_ln<__nv_bfloat16>(x, ldx, rows, live, conv, ln, sm_count, split_k, stream);
  }
}

}  // namespace cuda
}  // namespace sqf
