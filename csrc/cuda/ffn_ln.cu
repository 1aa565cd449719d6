// Grouped FFN + activation + output conv + bias + residual + LayerNorm.
//
// Fused path (intermediate_groups == output_groups == G, per-group widths <= 256): group g of
// the intermediate only feeds group g of the output, so one block per (row tile, group, split)
// keeps its slice of the 4x wider intermediate on chip. The block stages its x rows
// [BM, H/G] once, then for each 64-column chunk of the group's intermediate:
//   stage 1  h = act(x_g @ W1[chunk]^T + b1)   -> shared memory (fp32 acc, rounded to dtype)
//   stage 2  acc += h @ W2_g[:, chunk]^T        -> accumulators stay in registers
// and finally adds b2 + residual into the fp32 row buffer; the last block of the row tile
// applies the LayerNorm (ln_tile_finish). Few rows => the chunks are split across blocks
// (grid.z) so small batches still fill the GPU.
// Unfused path (other group layouts, or a tile that does not fit in shared memory): two grouped
// GEMMs through an [rows, intermediate] workspace, the second with the LayerNorm epilogue.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace sqf {
namespace cuda {

namespace {

constexpr int kFfnMaxWidth = 256;  // per-group input/output width the fused path accepts

struct FfnSmem {
  int x, w1, h, i, w2, c, total;
};

__host__ __device__ constexpr int falign128(int x) { return (x + 127) / 128 * 128; }

__host__ __device__ inline FfnSmem ffn_smem(int BM, int K1P, int NOP, int esize) {
  const int pad = 16 / esize, BI = kFfnBI;
  const int ldx = K1P + pad, ldh = BI + 4, ldi = BI + pad, ldw2 = BI + pad, ldc = NOP + 4;
  FfnSmem m{};
  m.x = 0;
  int off = falign128(BM * ldx * esize);
  const int region = off;
  m.w1 = off; off = falign128(off + BI * ldx * esize);
  m.h = off;  off = falign128(off + BM * ldh * 4);
  m.i = off;  off = falign128(off + BM * ldi * esize);
  m.w2 = off; off = falign128(off + NOP * ldw2 * esize);
  m.c = region;  // epilogue tile reuses the chunk buffers
  const int cend = falign128(region + BM * ldc * 4);
  m.total = off > cend ? off : cend;
  return m;
}

template <typename T>
struct FfnParams {
  const T* x;
  int64_t rows;
  const int64_t* live;
  const T *w1, *b1, *w2, *b2;
  int act, H, G, Ni, Ig, No, K1P, NOP, chunks, cps;
  LnTile<T> ln;
};

template <typename T, int BM>
__global__ void __launch_bounds__(kFfnThreads) ffn_fused_kernel(const FfnParams<T> p) {
  using M = TileMma<T>;
  constexpr int NT = kFfnThreads, NW = NT / 32, BI = kFfnBI, PAD = pad_elems<T>();
  constexpr int FR1 = (BM / 16) * (BI / 16) / NW;                    // stage-1 tiles per warp
  constexpr int MAXF2 = (BM / 16) * (kFfnMaxWidth / 16) / NW;        // stage-2 tiles per warp (max)
  static_assert(FR1 >= 1 && (BM / 16) * (BI / 16) % NW == 0, "stage-1 tiles must split evenly over warps");
  extern __shared__ __align__(128) unsigned char smem[];
  const FfnSmem lay = ffn_smem(BM, p.K1P, p.NOP, sizeof(T));
  const int ldx = p.K1P + PAD, ldh = BI + 4, ldi = BI + PAD, ldw2 = BI + PAD, ldc = p.NOP + 4;
  T* Xs = reinterpret_cast<T*>(smem + lay.x);
  T* W1s = reinterpret_cast<T*>(smem + lay.w1);
  float* Hs = reinterpret_cast<float*>(smem + lay.h);
  T* Is = reinterpret_cast<T*>(smem + lay.i);
  T* W2s = reinterpret_cast<T*>(smem + lay.w2);
  float* Cs = reinterpret_cast<float*>(smem + lay.c);

  const int64_t nrows = live_rows(p.rows, p.live);
  const int64_t row0 = int64_t(blockIdx.x) * BM;
  if (row0 >= nrows) return;
  const int g = blockIdx.y, split = blockIdx.z;
  const int r_valid = int(min(int64_t(BM), nrows - row0));
  const int H = p.H, Ni = p.Ni, Ig = p.Ig, No = p.No;
  const int warp = threadIdx.x >> 5;

  load_tile<T, NT>(Xs, ldx, BM, p.K1P, p.x + int64_t(g) * Ni, H, row0, nullptr, r_valid, Ni,
                   vec_ok<T>(p.x, H, int64_t(g) * Ni, Ni));
  const bool v1 = vec_ok<T>(p.w1, Ni, 0, Ni), v2 = vec_ok<T>(p.w2, Ig, 0, Ig);

  const int nt2 = p.NOP / 16, nf2 = (BM / 16) * nt2;
  typename M::FC acc2[MAXF2];
#pragma unroll
  for (int i = 0; i < MAXF2; ++i) M::zero(acc2[i]);

  const int c_begin = split * p.cps, c_end = min(p.chunks, c_begin + p.cps);
  for (int ch = c_begin; ch < c_end; ++ch) {
    const int c0 = ch * BI, cv = min(BI, Ig - c0);
    __syncthreads();  // previous chunk's stage 2 is done with W2s / Is
    load_tile<T, NT>(W1s, ldx, BI, p.K1P, p.w1, Ni, int64_t(g) * Ig + c0, nullptr, cv, Ni, v1);
    load_tile<T, NT>(W2s, ldw2, p.NOP, BI, p.w2 + c0, Ig, int64_t(g) * No, nullptr, No, cv, v2);
    __syncthreads();

#pragma unroll
    for (int i = 0; i < FR1; ++i) {
      const int f = warp * FR1 + i, fm = f / (BI / 16), fn = f % (BI / 16);
      typename M::FC hacc;
      M::zero(hacc);
      for (int kk = 0; kk < p.K1P / 16; ++kk) {
        typename M::FA a;
        typename M::FBc b;
        M::load_a(a, Xs + fm * 16 * ldx + kk * 16, ldx);
        M::load_bc(b, W1s + fn * 16 * ldx + kk * 16, ldx);
        M::mma(hacc, a, b);
      }
      M::store(Hs + fm * 16 * ldh + fn * 16, hacc, ldh);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < BM * BI; idx += NT) {
      const int i = idx / BI, j = idx % BI;
      float v = 0.f;
      if (j < cv) v = activate(Hs[i * ldh + j] + to_f(p.b1[int64_t(g) * Ig + c0 + j]), p.act);
      Is[i * ldi + j] = from_f<T>(v);
    }
    __syncthreads();

#pragma unroll
    for (int kk = 0; kk < BI / 16; ++kk) {
#pragma unroll
      for (int i = 0; i < MAXF2; ++i) {
        const int f = warp + NW * i;
        if (f < nf2) {
          const int fm = f / nt2, fn = f % nt2;
          typename M::FA a;
          typename M::FBc b;
          M::load_a(a, Is + fm * 16 * ldi + kk * 16, ldi);
          M::load_bc(b, W2s + fn * 16 * ldw2 + kk * 16, ldw2);
          M::mma(acc2[i], a, b);
        }
      }
    }
  }
  __syncthreads();  // Cs reuses the chunk buffers
#pragma unroll
  for (int i = 0; i < MAXF2; ++i) {
    const int f = warp + NW * i;
    if (f < nf2) M::store(Cs + (f / nt2) * 16 * ldc + (f % nt2) * 16, acc2[i], ldc);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < BM * p.NOP; idx += NT) {
    const int i = idx / p.NOP, j = idx % p.NOP;
    if (i >= r_valid || j >= No) continue;
    const int64_t col = int64_t(g) * No + j;
    float v = Cs[i * ldc + j];
    if (split == 0) v += to_f(p.b2[col]) + to_f(p.x[(row0 + i) * H + col]);
    atomicAdd(p.ln.pre + (row0 + i) * H + col, v);
  }
  p.ln.finish(row0, r_valid, H);
}

template <typename T> constexpr int ffn_bm() { return sizeof(T) == 2 ? 64 : 32; }

template <typename T>
void launch_fused(const FfnPlan& plan, const void* x, int64_t rows, const int64_t* live, const Conv& c1,
                  const Conv& c2, int act, const LnEpilogue& ln, cudaStream_t stream) {
  FfnParams<T> p{};
  p.x = static_cast<const T*>(x);
  p.rows = rows;
  p.live = live;
  p.w1 = static_cast<const T*>(c1.w);
  p.b1 = static_cast<const T*>(c1.bias);
  p.w2 = static_cast<const T*>(c2.w);
  p.b2 = static_cast<const T*>(c2.bias);
  p.act = act;
  p.H = c1.in;
  p.G = c1.groups;
  p.Ni = c1.in / c1.groups;
  p.Ig = c1.out / c1.groups;
  p.No = c2.out / c2.groups;
  p.K1P = round_up(p.Ni, 16);
  p.NOP = round_up(p.No, 16);
  p.chunks = plan.chunks;
  p.cps = ceil_div_i(plan.chunks, plan.grid_z);
  p.ln = LnTile<T>::from(ln);
  auto kernel = ffn_fused_kernel<T, ffn_bm<T>()>;
  set_smem_limit(reinterpret_cast<const void*>(kernel), plan.smem_bytes);
  kernel<<<dim3(plan.grid_x, plan.grid_y, plan.grid_z), kFfnThreads, plan.smem_bytes, stream>>>(p);
  check_launch("ffn_ln");
}

}  // namespace

int ffn_block_rows(DType t) { return t == DType::f32 ? ffn_bm<float>() : ffn_bm<__half>(); }

FfnPlan plan_ffn(int64_t rows, int hidden, int intermediate, int intermediate_groups, int output_groups,
                 DType t, int smem_limit, int sm_count) {
  FfnPlan p;
  const int G = intermediate_groups;
  const int Ni = hidden / G, Ig = intermediate / G, No = hidden / output_groups;
  p.block_rows = ffn_block_rows(t);
  if (intermediate_groups != output_groups) {
    p.why_not = "intermediate_groups != output_groups";
    return p;
  }
  if (round_up(Ni, 16) > kFfnMaxWidth || round_up(No, 16) > kFfnMaxWidth) {
    p.why_not = "per-group width " + std::to_string(std::max(Ni, No)) + " > " + std::to_string(kFfnMaxWidth);
    return p;
  }
  p.smem_bytes = ffn_smem(p.block_rows, round_up(Ni, 16), round_up(No, 16), dtype_size(t)).total;
  if (p.smem_bytes > smem_limit) {
    p.why_not = "needs " + std::to_string(p.smem_bytes) + " bytes of shared memory, the device allows " +
                std::to_string(smem_limit);
    return p;
  }
  p.fused = true;
  p.chunks = std::max(1, ceil_div_i(Ig, kFfnBI));
  p.grid_x = static_cast<int>((rows + p.block_rows - 1) / p.block_rows);
  p.grid_y = G;
  int splits = 1;
  const int64_t blocks = int64_t(std::max(p.grid_x, 1)) * G;
  if (sm_count > 0 && blocks < sm_count) splits = static_cast<int>((2 * int64_t(sm_count) + blocks - 1) / blocks);
  splits = std::max(1, std::min(splits, p.chunks));
  const int cps = ceil_div_i(p.chunks, splits);
  p.grid_z = ceil_div_i(p.chunks, cps);  // no empty split
  return p;
}

void ffn_ln(DType t, const void* x, int64_t rows, const int64_t* live, const Conv& c1,
            const Conv& c2, int act, const LnEpilogue& ln, void* inter, int smem_limit,
            int sm_count, cudaStream_t stream) {
  const FfnPlan plan = plan_ffn(rows, c1.in, c1.out, c1.groups, c2.groups, t, smem_limit, sm_count);
  if (rows <= 0) return;
  if (plan.fused) {
    switch (t) {
      case DType::f32: return launch_fused<float>(plan, x, rows, live, c1, c2, act, ln, stream);
      case DType::f16: return launch_fused<__half>(plan, x, rows, live, c1, c2, act, ln, stream);
      case DType::bf16: return launch_fused<__nv_bfloat16>(plan, x, rows, live, c1, c2, act, ln, stream);
    }
  }
  if (!inter) throw std::invalid_argument("ffn_ln: the unfused path (" + plan.why_not + ") needs the intermediate workspace");
  grouped_linear(t, x, c1.in, nullptr, rows, live, &c1, 1, inter, c1.out, nullptr, act, sm_count, stream);
  LnEpilogue l2 = ln;
  l2.residual = x;
  grouped_linear_ln(t, inter, c1.out, rows, live, c2, l2, sm_count, 0, stream);
}

}  // namespace cuda
}  // namespace sqf
