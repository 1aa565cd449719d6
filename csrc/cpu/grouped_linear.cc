// fp32 GEMM micro-kernel and the grouped 1x1 convolution built on it.
//
// Micro-kernel: an MR x NR accumulator tile (NR = 2 vectors) lives in registers while K
// streams through one row of B at a time; A is broadcast one element per row. MR is what the
// register file allows: AVX-512 12 x 32 (24 zmm accumulators + 2 B + 1 broadcast of 32),
// AVX2 6 x 16 (12 + 2 + 1 of 16), portable 4 x 16.
//
// Weight GEMMs (gemm_panels): B is packed at load as [N/NR panels][K][NR], the last panel
// zero-padded (Encoder::pack), so every k step is one contiguous NR-float load; A is packed per
// call into MR-row micro-panels; K is cut into blocks of at most KC so a B slice stays in L1
// across the row passes, and the first pass over a slice prefetches the next one.
// Activation GEMMs inside attention (gemm): B row-major B[k * ldb + j] (K^T and V), A read in
// place, tails through masked loads.
// Epilogue (fused, on the registers): + bias, activation (GELU vectorised), store.
#include <vector>

#include "kernel_common.h"

namespace sqf {
namespace cpu {
namespace SQF_ISA_NS {
namespace {

constexpr int64_t NR = kNR;
#if defined(__AVX512F__)
constexpr int MR = 12;
#elif defined(__AVX2__)
constexpr int MR = 6;
#elif defined(SQF_NEON_MR)
constexpr int MR = SQF_NEON_MR;  // simd_neon.h: 8 x 8 on AArch64 (16 of 32 q regs)
#else
constexpr int MR = 4;
#endif

// The micro-kernel. A is either row-major (PACKED = false: A[r * lda + k]) or an MR-row
// micro-panel [K][MR] (PACKED = true, see gemm_panels: the R broadcasts of a k step come from
// one cache line and one pointer). C is initialised from the bias when `first` (bias[j] per
// column, or bias[r] per row when `bias_rows`) and from C otherwise (K blocks after the first);
// the activation is applied when `last`. When `pf` is set, every k step also prefetches NR floats
// from pf onwards (the next B slice, or with bias_rows the next micro-tile's weight rows), so
// weights that stream from L3/DRAM (small batches) arrive while this tile is computed.
template <int R, bool FULL, bool PACKED>
void ukernel(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
             const float* bias, float* C, int64_t ldc, int64_t nb, Act act, bool first = true,
             bool last = true, const char* pf = nullptr, bool bias_rows = false) {
  const vmask m0 = tail_mask(nb), m1 = tail_mask(nb - W);
  const int64_t ars = PACKED ? 1 : lda, aks = PACKED ? MR : 1;
  vf c0[R], c1[R];
  if (first && bias && bias_rows) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) c0[r] = c1[r] = vset1(bias[r]);
  } else if (first) {
    vf b0 = vzero(), b1 = vzero();
    if (bias) {
      b0 = FULL ? vload(bias) : vload(bias, m0);
      b1 = FULL ? vload(bias + W) : vload(bias + W, m1);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = b0;
      c1[r] = b1;
    }
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = FULL ? vload(C + r * ldc) : vload(C + r * ldc, m0);
      c1[r] = FULL ? vload(C + r * ldc + W) : vload(C + r * ldc + W, m1);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    if (pf) {
      __builtin_prefetch(pf + k * NR * 4, 0, 2);
      if (NR * 4 > 64) __builtin_prefetch(pf + k * NR * 4 + 64, 0, 2);
    }
    const vf b0 = FULL ? vload(B) : vload(B, m0);
    const vf b1 = FULL ? vload(B + W) : vload(B + W, m1);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const vf a = vset1(A[r * ars]);
      c0[r] = vfma(a, b0, c0[r]);
      c1[r] = vfma(a, b1, c1[r]);
    }
    A += aks;
    B += ldb;
  }
  if (last && act == Act::gelu) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      c0[r] = vgelu(c0[r]);
      c1[r] = vgelu(c1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (FULL) {
      vstore(C + r * ldc, c0[r]);
      vstore(C + r * ldc + W, c1[r]);
    } else {
      vstore(C + r * ldc, c0[r], m0);
      vstore(C + r * ldc + W, c1[r], m1);
    }
  }
  if (last && act != Act::none && act != Act::gelu)
    for (int r = 0; r < R; ++r)
      for (int64_t j = 0; j < nb; ++j) C[r * ldc + j] = activate(C[r * ldc + j], act);
}

// Runs the micro-kernel on a remainder of r < MR rows (templates instantiated per R).
template <int R, bool FULL, bool PACKED>
void tail_rows(int r, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
               const float* bias, float* C, int64_t ldc, int64_t nb, Act act, bool first = true,
               bool last = true, const char* pf = nullptr, bool bias_rows = false) {
  if (r == R)
    return ukernel<R, FULL, PACKED>(A, lda, B, ldb, K, bias, C, ldc, nb, act, first, last, pf, bias_rows);
  if constexpr (R > 1)
    tail_rows<R - 1, FULL, PACKED>(r, A, lda, B, ldb, K, bias, C, ldc, nb, act, first, last, pf, bias_rows);
}

template <bool FULL>
void column_block(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                  const float* bias, float* C, int64_t ldc, int64_t M, int64_t nb, Act act,
                  bool accumulate, bool bias_rows) {
  auto bias_at = [&](int64_t m) { return bias && bias_rows ? bias + m : bias; };
  // With bias per row, A holds weights in their own layout (ffn_ln.cc), streamed once per column
  // block: each micro-tile prefetches the next one's MR rows (contiguous when lda == K).
  auto next_rows = [&](int64_t m) {
    return bias_rows && lda == K && m + MR < M ? reinterpret_cast<const char*>(A + (m + MR) * lda) : nullptr;
  };
  int64_t m = 0;
  for (; m + MR <= M; m += MR)
    ukernel<MR, FULL, false>(A + m * lda, lda, B, ldb, K, bias_at(m), C + m * ldc, ldc, nb, act, !accumulate,
                             true, next_rows(m), bias_rows);
  if (m < M)
    tail_rows<MR - 1, FULL, false>(static_cast<int>(M - m), A + m * lda, lda, B, ldb, K, bias_at(m),
                                   C + m * ldc, ldc, nb, act, !accumulate, true, nullptr, bias_rows);
}

// dst[k * MR + r] = A[r * lda + k] for r < rows, k < kc: one MR-row micro-panel of A. AVX-512
// moves full panels 16 k at a time through an in-register 16 x 16 transpose (a scalar
// transposing copy cost ~10% of the FFN's second GEMM, whose N is only H/G).
void pack_a(const float* A, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  int64_t k = 0;
#if defined(__AVX512F__)
  static_assert(MR <= 16, "transpose16 packs at most 16 rows");
  if (rows == MR) {
    for (; k + 16 <= kc; k += 16) {
      __m512 r[16];
      for (int q = 0; q < 16; ++q) r[q] = q < MR ? _mm512_loadu_ps(A + q * lda + k) : _mm512_setzero_ps();
      transpose16(r);
      for (int q = 0; q < 16; ++q) _mm512_mask_storeu_ps(dst + (k + q) * MR, (1u << MR) - 1, r[q]);
    }
  }
#endif
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t kk = k; kk < kc; ++kk) dst[kk * MR + r] = A[r * lda + kk];
}

// K block of the weight GEMMs: a KC x NR slice of B (24 KiB at KC = 192) stays in L1 across
// every MR-row pass of a row block, next to one A micro-panel (MR x KC, 9 KiB).
constexpr int64_t KC = 192;

// C[M, N] = act(A[M, K] @ B + bias) with B weight panels [N/NR][K][NR] (zero-padded). A is
// packed per K block into a per-thread buffer [ceil(M/MR)][kc][MR] (reused: no allocation in
// steady state). Loop order: K block, then panel, then MR-row micro-panels (BLIS' order).
void gemm_panels(const float* A, int64_t lda, const float* B, int64_t K, float* C, int64_t ldc,
                 int64_t M, int64_t N, const float* bias, Act act) {
  thread_local aligned_vector<float> abuf_tls;
  const int64_t nk = ceil_div(K, KC), kc_max = ceil_div(K, nk), mp = ceil_div(M, MR);
  if (static_cast<int64_t>(abuf_tls.size()) < mp * MR * kc_max)
    abuf_tls.resize(static_cast<size_t>(mp * MR * kc_max));
  float* const abuf = abuf_tls.data();  // addressed once (a thread_local access is a __tls_get_addr call)
  const int64_t npanels = ceil_div(N, NR);
  for (int64_t kb = 0; kb < nk; ++kb) {
    const int64_t k0 = kb * kc_max, kc = imin(kc_max, K - k0);
    const bool first = kb == 0, last = kb == nk - 1;
    for (int64_t i = 0; i < mp; ++i)  // pack A[:, k0:k0+kc] into MR-row micro-panels
      pack_a(A + i * MR * lda + k0, lda, imin(MR, M - i * MR), kc, abuf + i * kc * MR);
    for (int64_t p = 0; p < npanels; ++p) {
      const int64_t j0 = p * NR, nb = imin(NR, N - j0);
      const float* Bp = B + p * K * NR + k0 * NR;
      // next slice: the next panel of this K block, or the first panel of the next one
      const float* next = p + 1 < npanels ? Bp + K * NR : kb + 1 < nk ? B + (k0 + kc) * NR : nullptr;
      const float* bj = bias ? bias + j0 : nullptr;
      for (int64_t i = 0; i < mp; ++i) {
        const int rows = static_cast<int>(imin(MR, M - i * MR));
        const float* Ai = abuf + i * kc * MR;
        float* Ci = C + i * MR * ldc + j0;
        // the first pass prefetches the next slice (kc rows of NR floats)
        const char* pf = next && i == 0 ? reinterpret_cast<const char*>(next) : nullptr;
        if (nb == NR)
          tail_rows<MR, true, true>(rows, Ai, MR, Bp, NR, kc, bj, Ci, ldc, nb, act, first, last, pf);
        else
          tail_rows<MR, false, true>(rows, Ai, MR, Bp, NR, kc, bj, Ci, ldc, nb, act, first, last, pf);
      }
    }
  }
}

}  // namespace

void gemm(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K, float* C,
          int64_t ldc, int64_t M, int64_t N, const float* bias, Act act, bool accumulate, bool bias_rows) {
  if (bias_rows) {
    // A = conv weights in their own layout (the FFN's transposed tasks): rows outer, so each MR-row
    // block is read from memory once and stays in L1 across the column blocks (B, the task's tokens,
    // stays in L2), instead of the whole weight matrix streaming once per column block: a group's FFN
    // weights (2 x 590 KB in the default config) do not fit a 512 KB L2 (AMD Zen 1). Cachegrind,
    // avx2, default config, one layer at 8 x 128 twice, caches of a Zen 1 core (32 KB D1, 512 KB L2 as
    // LL): LL read misses of this kernel 10.1M -> 2.0M, of the whole run 12.8M -> 4.7M. Time on the
    // Xeon (2 MB L2) unchanged. The first column block of each row block prefetches the next one's rows.
    for (int64_t m = 0; m < M; m += MR) {
      const int rows = static_cast<int>(imin(MR, M - m));
      const char* next = lda == K && m + MR < M ? reinterpret_cast<const char*>(A + (m + MR) * lda) : nullptr;
      for (int64_t j0 = 0; j0 < N; j0 += NR) {
        const int64_t nb = imin(NR, N - j0);
        const char* pf = j0 == 0 ? next : nullptr;
        const float* bm = bias ? bias + m : nullptr;
        if (nb == NR)
          tail_rows<MR, true, false>(rows, A + m * lda, lda, B + j0, ldb, K, bm, C + m * ldc + j0, ldc, nb, act,
                                     !accumulate, true, pf, true);
        else
          tail_rows<MR, false, false>(rows, A + m * lda, lda, B + j0, ldb, K, bm, C + m * ldc + j0, ldc, nb, act,
                                      !accumulate, true, pf, true);
      }
    }
    return;
  }
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int64_t nb = imin(NR, N - j0);
    const float* bj = bias && !bias_rows ? bias + j0 : bias;
    if (nb == NR)
      column_block<true>(A, lda, B + j0, ldb, K, bj, C + j0, ldc, M, nb, act, accumulate, bias_rows);
    else
      column_block<false>(A, lda, B + j0, ldb, K, bj, C + j0, ldc, M, nb, act, accumulate, bias_rows);
  }
}

void gemm_group(const GroupedLinear& w, int64_t g, int64_t j0, int64_t n, const float* A,
                int64_t lda, float* C, int64_t ldc, int64_t M, Act act) {
  const int64_t Ni = w.in / w.groups, No = w.out / w.groups;
  const float* bias = w.bias ? w.bias + g * No + j0 : nullptr;
  if (w.int8()) {
    const int64_t panels = ceil_div(No, w.i8->nr), col = g * No + j0;
    w.i8->gemm(A, lda, w.int8() + (g * panels + j0 / w.i8->nr) * w.i8->panel_bytes(Ni), Ni, w.wscale + col,
               w.wsum + col, C, ldc, M, n, bias, act);
  } else if (w.bf16()) {
    const int64_t Kp = ceil_div(Ni, 32) * 32, panels = ceil_div(No, kBf16Panel);
    gemm_bf16(A, lda, w.bf16() + (g * panels + j0 / kBf16Panel) * Kp * kBf16Panel, Ni, C, ldc, M, n,
              bias, act);
  } else if (w.f16()) {
    const int64_t panels = ceil_div(No, kF16Panel);
    gemm_f16(A, lda, w.f16() + (g * panels + j0 / kF16Panel) * Ni * kF16Panel, Ni, C, ldc, M, n, bias,
             act);
  } else {
    const int64_t panels = ceil_div(No, NR);
    gemm_panels(A, lda, w.f32() + (g * panels + j0 / NR) * Ni * NR, Ni, C, ldc, M, n, bias, act);
  }
}

RowBlocks row_blocks(int64_t rows, int64_t parallel_other, int threads, bool unit32) {
  // Units of MR rows (32 for the AMX tiles, whose row blocks are 32), at most 96 rows per block
  // (A block + C block stay in L1/L2); enough blocks that blocks x parallel_other tasks give every
  // thread two, and a count of tasks that divides evenly among the threads.
  RowBlocks rb;
  rb.rows = rows;
  rb.unit = unit32 ? 32 : MR;
  rb.units = ceil_div(rows, rb.unit);
  const int64_t max_units = 96 / rb.unit > 1 ? 96 / rb.unit : 1;
  rb.n = ceil_div(rb.units, max_units);
  while (rb.n < rb.units && rb.n * parallel_other < 2 * threads) ++rb.n;
  while (rb.n < rb.units && (rb.n * parallel_other) % threads != 0) ++rb.n;
  return rb;
}

void grouped_linear(const GroupedLinear& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                    int64_t rows, Act act, ThreadPool& pool) {
  const int64_t G = w.groups, Ni = w.in / G, No = w.out / G;
  const int64_t pw = panel_width(w), panels = ceil_div(No, pw);
  const RowBlocks rb = row_blocks(rows, G, pool.num_threads(), w.bf16() != nullptr || tiles32(w));
  const int64_t mblocks = rb.n;
  // Split columns too when groups x row blocks cannot feed every thread (e.g. the pooler).
  int64_t nsplit = 1;
  while (nsplit < panels && G * mblocks * nsplit < 2 * pool.num_threads()) ++nsplit;
  const int64_t ppt = ceil_div(panels, nsplit);
  nsplit = ceil_div(panels, ppt);
  auto task = [&](int64_t t, int) {
    const int64_t g = t / (mblocks * nsplit), rem = t % (mblocks * nsplit);
    const int64_t m0 = rb.begin(rem / nsplit), p0 = (rem % nsplit) * ppt;
    const int64_t j0 = p0 * pw, n = imin(ppt * pw, No - j0);
    gemm_group(w, g, j0, n, x + m0 * ldx + g * Ni, ldx, y + m0 * ldy + g * No + j0, ldy,
               rb.end(rem / nsplit) - m0, act);
  };
  parallel_for(pool, G * mblocks * nsplit, task);
}

}  // namespace SQF_ISA_NS
}  // namespace cpu
}  // namespace sqf
