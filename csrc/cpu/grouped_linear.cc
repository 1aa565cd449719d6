// Grouped 1x1 convolution as a grouped GEMM on token-major rows (see kernels.h for layout).
// Portable C++ written so the compiler vectorises the NR-wide inner loop for whatever ISA
// flags this variant is built with: an MR x NR accumulator tile stays in registers while K
// streams through one packed weight row Wt[k, j0:j0+NR] at a time.
#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

constexpr int64_t MR = 4;    // rows per register tile
constexpr int64_t NR = 64;   // columns per register tile
constexpr int64_t MB = 64;   // rows per task (a task = group x row block x column block)

template <int64_t R>
void tile(const float* x, int64_t ldx, const float* wt, int64_t ldw, const float* bias,
          float* y, int64_t ldy, int64_t K, int64_t nb, Act act) {
  float acc[R][NR];
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < NR; ++j) acc[r][j] = (bias && j < nb) ? bias[j] : 0.f;
  if (nb == NR) {
    for (int64_t k = 0; k < K; ++k) {
      const float* w = wt + k * ldw;
      for (int64_t r = 0; r < R; ++r) {
        const float a = x[r * ldx + k];
        for (int64_t j = 0; j < NR; ++j) acc[r][j] += a * w[j];
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const float* w = wt + k * ldw;
      for (int64_t r = 0; r < R; ++r) {
        const float a = x[r * ldx + k];
        for (int64_t j = 0; j < nb; ++j) acc[r][j] += a * w[j];
      }
    }
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < nb; ++j) y[r * ldy + j] = activate(acc[r][j], act);
}

}  // namespace

void grouped_linear(const GroupedLinear& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                    int64_t rows, Act act, ThreadPool& pool) {
  const int64_t G = w.groups, Ni = w.in / G, No = w.out / G;
  const int64_t mblocks = ceil_div(rows, MB), nblocks = ceil_div(No, NR);
  auto task = [&](int64_t t, int) {
    const int64_t g = t / (mblocks * nblocks);
    const int64_t rem = t % (mblocks * nblocks);
    const int64_t m0 = (rem / nblocks) * MB, j0 = (rem % nblocks) * NR;
    const int64_t m1 = imin(m0 + MB, rows), nb = imin(NR, No - j0);
    const float* wt = w.wt + g * Ni * No + j0;
    const float* bias = w.bias ? w.bias + g * No + j0 : nullptr;
    const float* xg = x + g * Ni;
    float* yg = y + g * No + j0;
    int64_t m = m0;
    for (; m + MR <= m1; m += MR)
      tile<MR>(xg + m * ldx, ldx, wt, No, bias, yg + m * ldy, ldy, Ni, nb, act);
    for (; m < m1; ++m) tile<1>(xg + m * ldx, ldx, wt, No, bias, yg + m * ldy, ldy, Ni, nb, act);
  };
  parallel_for(pool, G * mblocks * nblocks, task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
