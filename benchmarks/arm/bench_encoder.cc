// Standalone latency benchmark of the C++ cpu encoder, for phones and boards (no Python needed):
// the default SqueezeBERT config (squeezebert-uncased: hidden 768, 12 layers, 12 heads, groups
// q/k/v/intermediate/output = 4, post-attention = 1) with random weights, batch x seq tokens,
// prints ms per sequence and GFLOP/s (total and per thread = per core when threads <= cores).
//
//   bench_encoder [--seq 128] [--batch 1] [--threads 1] [--iters 20] [--warmup 3] [--isa NAME] [--fp16]
//                 [--int8] [--int8-isa NAME] [--layers 12]
//   bench_encoder --int8-gemm [--seq 128] [--iters 20]
//
// --fp16 packs the conv weights as IEEE half: fp16 FMAs on neon_fp16 (ARMv8.2-A FP16 cores), the
// portable fp16-weight path elsewhere.
// --int8 gives the six convs int8 weights (a scale per output channel; activations quantized per row
// on the fly) on the int8 GEMM variant --int8-isa names, else the best one the CPU runs (i8_neon_i8mm
// where it has I8MM, i8_neon_dot with dotprod, else i8_scalar).
// --int8-gemm times the int8 GEMM alone (seq x 768 x 768, one thread) on every usable int8 variant and
// checks each one's integer products against i8_scalar's, bit for bit (exit 1 on a mismatch).
// --isa defaults to the best variant this CPU supports (SQBERT_FAST_FORCE_CPU_ISA also works);
// `bench_encoder --list` prints the variants built and usable. FLOPs count the GEMMs (2 per
// multiply-add: grouped convs, QK^T, PV, pooler excluded); LayerNorm/softmax/GELU are extra work.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/common/cpu_features.h"
#include "../../csrc/common/thread_pool.h"
#include "../../csrc/cpu/encoder.h"

namespace {

struct Rng {  // xorshift: reproducible weights without <random>'s per-platform differences
  uint64_t s = 0x9E3779B97F4A7C15ull;
  float uniform(float scale) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return scale * (static_cast<float>(s >> 40) / static_cast<float>(1ull << 24) * 2.f - 1.f);
  }
};

std::vector<float> random_vec(Rng& r, int64_t n, float scale, float offset = 0.f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = offset + r.uniform(scale);
  return v;
}

int64_t arg(int argc, char** argv, const char* name, int64_t def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], name)) return std::atoll(argv[i + 1]);
  return def;
}

bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], name)) return true;
  return false;
}

// --int8-gemm: M x 768 x 768 on every usable int8 variant, integer products (w_scale == nullptr)
// compared with i8_scalar's bit for bit, best-of-iters GOP/s.
int int8_gemm_check(int64_t M, int iters) {
  using namespace sqf;
  const int64_t N = 768, K = 768;
  Rng rng;
  std::vector<float> A = random_vec(rng, M * K, 3.f);
  std::vector<int8_t> W(static_cast<size_t>(N * K));
  for (auto& w : W) w = static_cast<int8_t>(std::lrint(rng.uniform(127.f)));
  std::vector<float> want;
  int bad = 0;
  for (Int8Isa v : built_int8_isas()) {
    if (!int8_isa_supported(v)) continue;
    const cpu::Int8Kernels& k = cpu::int8_kernels(v);
    const int64_t panels = (N + k.nr - 1) / k.nr, pb = k.panel_bytes(K);
    cpu::aligned_vector<int8_t> packed(static_cast<size_t>(panels * pb));
    for (int64_t p = 0; p < panels; ++p)
      k.pack_panel(W.data() + p * k.nr * K, K, K, std::min(k.nr, N - p * k.nr), packed.data() + p * pb);
    std::vector<float> C(static_cast<size_t>(M * N));
    double best = 1e30;
    for (int i = 0; i < iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      k.gemm(A.data(), K, packed.data(), K, nullptr, nullptr, C.data(), N, M, N, nullptr, cpu::Act::none);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (v == Int8Isa::i8_scalar) want = C;  // built_int8_isas() lists i8_scalar first
    const bool same = C == want;
    bad += !same;
    std::printf("%-16s %8.1f GOP/s  %s\n", k.name, 2.0 * M * N * K / best * 1e-9,
                same ? "integer products == i8_scalar" : "MISMATCH vs i8_scalar");
  }
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sqf;
  if (flag(argc, argv, "--list")) {
    for (Isa isa : built_isas())
      std::printf("%s%s\n", isa_name(isa), isa_supported(isa) ? "" : " (built, not usable on this CPU)");
    for (Int8Isa i8 : built_int8_isas())
      std::printf("%s%s\n", int8_isa_name(i8), int8_isa_supported(i8) ? "" : " (built, not usable on this CPU)");
    return 0;
  }
  const int64_t L = arg(argc, argv, "--seq", 128), B = arg(argc, argv, "--batch", 1);
  const int threads = static_cast<int>(arg(argc, argv, "--threads", 1));
  const int iters = static_cast<int>(arg(argc, argv, "--iters", 20));
  const int warmup = static_cast<int>(arg(argc, argv, "--warmup", 3));
  if (flag(argc, argv, "--int8-gemm")) {
    if (L < 1 || iters < 1) {
      std::fprintf(stderr, "bench_encoder: --int8-gemm needs --seq, --iters >= 1\n");
      return 2;
    }
    return int8_gemm_check(L, iters);
  }
  Isa isa;
  const cpu::Int8Kernels* i8 = nullptr;
  const bool int8 = flag(argc, argv, "--int8");
  try {
    isa = default_isa();
    for (int i = 1; i + 1 < argc; ++i)
      if (!std::strcmp(argv[i], "--isa")) isa = isa_from_name(argv[i + 1]);
    if (!isa_supported(isa)) throw std::runtime_error(std::string(isa_name(isa)) + " is not usable on this CPU");
    if (int8) {
      Int8Isa v = default_int8_isa(isa);
      for (int i = 1; i + 1 < argc; ++i)
        if (!std::strcmp(argv[i], "--int8-isa")) v = int8_isa_from_name(argv[i + 1]);
      i8 = &cpu::int8_kernels(v);  // throws when v is not usable here
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_encoder: %s\n", e.what());
    return 2;
  }

  cpu::EncoderConfig c;
  c.vocab = 30528, c.hidden = 768, c.heads = 12, c.layers = 12, c.intermediate = 3072;
  c.max_positions = 512, c.type_vocab = 2;
  c.q_groups = c.k_groups = c.v_groups = c.intermediate_groups = c.output_groups = 4;
  c.post_attention_groups = 1;
  c.layers = arg(argc, argv, "--layers", 12);
  c.fp16 = flag(argc, argv, "--fp16");
  c.int8 = int8;
  if (c.fp16 && c.int8) {
    std::fprintf(stderr, "bench_encoder: --fp16 and --int8 exclude each other\n");
    return 2;
  }
  if (L < 1 || L > c.max_positions || B < 1 || threads < 1 || iters < 1 || c.layers < 1) {
    std::fprintf(stderr, "bench_encoder: need 1 <= --seq <= 512, --batch/--threads/--iters/--layers >= 1\n");
    return 2;
  }
  const int64_t H = c.hidden, I = c.intermediate;
  Rng rng;
  std::vector<std::vector<float>> keep;  // owns every weight array
  auto vec = [&](int64_t n, float scale, float offset = 0.f) {
    keep.push_back(random_vec(rng, n, scale, offset));
    return keep.back().data();
  };
  cpu::EncoderWeights w;
  w.word = vec(c.vocab * H, 0.05f);
  w.position = vec(c.max_positions * H, 0.05f);
  w.token_type = vec(c.type_vocab * H, 0.05f);
  w.emb_ln_w = vec(H, 0.1f, 1.f);
  w.emb_ln_b = vec(H, 0.1f);
  auto conv = [&](int64_t out, int64_t in_per_group) { return vec(out * in_per_group, 1.f / std::sqrt(float(in_per_group))); };
  std::vector<std::vector<int8_t>> keep8;
  auto conv8 = [&](int64_t out, int64_t in_per_group) {  // int8 weights, scales as quantize_weight's would be
    keep8.emplace_back(static_cast<size_t>(out * in_per_group));
    for (auto& q : keep8.back()) q = static_cast<int8_t>(std::lrint(rng.uniform(127.f)));
    return cpu::RawInt8{keep8.back().data(), vec(out, 0.f, 1.f / (127.f * std::sqrt(float(in_per_group))))};
  };
  for (int64_t l = 0; l < c.layers; ++l) {
    cpu::LayerWeights r;
    r.q_w = conv(H, H / c.q_groups), r.q_b = vec(H, 0.02f);
    r.k_w = conv(H, H / c.k_groups), r.k_b = vec(H, 0.02f);
    r.v_w = conv(H, H / c.v_groups), r.v_b = vec(H, 0.02f);
    r.post_w = conv(H, H / c.post_attention_groups), r.post_b = vec(H, 0.02f);
    r.post_ln_w = vec(H, 0.1f, 1.f), r.post_ln_b = vec(H, 0.1f);
    r.inter_w = conv(I, H / c.intermediate_groups), r.inter_b = vec(I, 0.02f);
    r.out_w = conv(H, I / c.output_groups), r.out_b = vec(H, 0.02f);
    r.out_ln_w = vec(H, 0.1f, 1.f), r.out_ln_b = vec(H, 0.1f);
    if (c.int8) {
      r.q_w = r.k_w = r.v_w = r.post_w = r.inter_w = r.out_w = nullptr;
      r.q8 = conv8(H, H / c.q_groups), r.k8 = conv8(H, H / c.k_groups), r.v8 = conv8(H, H / c.v_groups);
      r.post8 = conv8(H, H / c.post_attention_groups);
      r.inter8 = conv8(I, H / c.intermediate_groups), r.out8 = conv8(H, I / c.output_groups);
    }
    w.layers.push_back(r);
  }
  ThreadPool::global().set_num_threads(threads);
  cpu::Encoder enc(c, w, isa, i8);

  const int64_t T = B * L;
  std::vector<int64_t> ids(T), types(T, 0), pos(T), cu(B + 1);
  std::vector<uint8_t> valid(T, 1);
  for (int64_t t = 0; t < T; ++t) ids[t] = 1000 + (t * 7919) % 20000, pos[t] = t % L;
  for (int64_t b = 0; b <= B; ++b) cu[b] = b * L;
  std::vector<float> out(T * H);
  cpu::ForwardArgs a;
  a.tokens = T, a.batch = B, a.input_ids = ids.data(), a.token_type_ids = types.data();
  a.position_ids = pos.data(), a.cu_seqlens = cu.data(), a.key_valid = valid.data();
  a.last_hidden = out.data();

  for (int i = 0; i < warmup; ++i) enc.forward(a);
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    enc.forward(a);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2], best = ms.front();
  for (float x : out)
    if (!std::isfinite(x)) {
      std::fprintf(stderr, "bench_encoder: non-finite output\n");
      return 1;
    }
  // GEMM FLOPs per sequence: Q,K,V + post + intermediate + output convs, QK^T and PV.
  const double Ld = double(L), Hd = double(H), Id = double(I);
  const double conv_flops = 2 * Ld * (3 * Hd * Hd / c.q_groups + Hd * Hd / c.post_attention_groups +
                                      Hd * Id / c.intermediate_groups + Id * Hd / c.output_groups);
  const double attn_flops = 2 * 2 * Ld * Ld * Hd;
  const double gflop = B * c.layers * (conv_flops + attn_flops) * 1e-9;
  const std::string wtype = c.int8 ? std::string("int8 (") + enc.int8_isa() + ")" : c.fp16 ? "fp16" : "fp32";
  std::printf("isa %s, %s weights, threads %d, batch %lld x seq %lld, median of %d iters\n", enc.isa(),
              wtype.c_str(), threads, static_cast<long long>(B), static_cast<long long>(L), iters);
  std::printf("ms per sequence: %.2f (median), %.2f (best)\n", med / B, best / B);
  std::printf("GFLOP per batch: %.3f; GFLOP/s: %.2f total, %.2f per core\n", gflop, gflop / (med * 1e-3),
              gflop / (med * 1e-3) / threads);
  return 0;
}
