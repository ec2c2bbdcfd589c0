// test_ops for the MoE layer on the GPU: moe_router (cuda::moe_router) and moe_experts
// (cuda::moe_experts_sm90 through the CUDA backend) against the CPU references with the same
// quantized bits. Expert ids are compared exactly; weights and outputs within the tolerances of
// docs/numerics.md, "GPU MoE". Expert weights come from a small pool of distinct random experts
// (expert e uses pool[e % pool size], the pool size prime) so V4-Pro shapes fit in memory and time.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <set>

#include "core/numeric.h"
#include "core/quant.h"
#include "cuda/cuda_backend.h"
#include "cuda/linear_sm90.h"
#include "cuda/moe_experts_sm90.h"
#include "cuda/moe_router.h"
#include "gpu_test_util.h"
#include "model/backend.h"

namespace dsv4 {
namespace {
using namespace gpu_test;

// ---- moe_router: bit-exact where the GPU sums the logits in the router order (few tokens, or an
// F32 gate): both backends round every product and sum the same way and compute σ with
// router_sigma from IEEE operations alone, so ids, weights and counts must be identical. With many
// tokens and a BF16 gate the logits run on the tensor cores (fp32-level error, another order):
// every chosen expert must be a top-k choice of the exact logits up to kRouterTieTolerance,
// weights within kRouterTieTolerance relative of the exact ones, counts the histogram of the ids
// (docs/numerics.md, "GPU MoE": both follow from a logit error below 1e-4).
constexpr double kRouterTieTolerance = 1e-4;
struct RouterCase {
  int64_t n_tokens, d_model, n_experts, top_k;
  bool hash;
  enum Gate { kBf16, kF32, kTies, kWide } gate;  // kTies: equal rows (ids must be 0..k-1); kWide: |ℓ| to ~100
  const char* what;
};

// The tensor-core router against logits summed in double: each token's ids are k distinct experts
// that a top-k of the exact σ + bias could pick within kRouterTieTolerance (hash mode: the table's
// ids, as the CPU's), weights follow from the exact σ of those ids, counts from the ids.
void check_router_near_exact(const std::vector<float>& x, const std::vector<float>& gate,
                             const std::vector<float>& bias, bool hash, int64_t T, int64_t D, int64_t E,
                             int64_t k, float scale, const std::vector<int32_t>& cpu_ids,
                             const std::vector<int32_t>& ids, const std::vector<float>& w,
                             const std::vector<int32_t>& counts, const std::string& what) {
  std::vector<int32_t> hist(static_cast<size_t>(E), 0);
  int64_t differing = 0;
  double max_rel = 0.0;  // largest relative weight error
  std::vector<double> sigma(static_cast<size_t>(E)), sel(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) {
      double l = 0.0;
      for (int64_t c = 0; c < D; ++c) l += double(x[size_t(t * D + c)]) * double(gate[size_t(e * D + c)]);
      sigma[size_t(e)] = double(router_sigma(float(l)));
      sel[size_t(e)] = sigma[size_t(e)] + (hash ? 0.0 : double(bias[size_t(e)]));
    }
    std::vector<double> sorted = sel;
    std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
    const double kth = sorted[size_t(k - 1)];
    std::vector<bool> chosen(static_cast<size_t>(E), false);
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      const int32_t id = ids[size_t(t * k + j)];
      ASSERT_TRUE(id >= 0 && id < E && !chosen[size_t(id)])
          << what << ": token " << t << " slot " << j << " id " << id;
      chosen[size_t(id)] = true;
      ++hist[size_t(id)];
      sum += sigma[size_t(id)];
      if (hash) {
        ASSERT_EQ(id, cpu_ids[size_t(t * k + j)]) << what << ": hash id, token " << t << " slot " << j;
      } else {
        ASSERT_GE(sel[size_t(id)], kth - kRouterTieTolerance)
            << what << ": token " << t << " chose expert " << id;
      }
      differing += id != cpu_ids[size_t(t * k + j)];
    }
    if (!hash)
      for (int64_t e = 0; e < E; ++e)
        if (!chosen[size_t(e)])
          ASSERT_LE(sel[size_t(e)], kth + kRouterTieTolerance)
              << what << ": token " << t << " left out expert " << e;
    for (int64_t j = 0; j < k; ++j) {
      const double want = sigma[size_t(ids[size_t(t * k + j)])] / (sum + 1e-20) * double(scale);
      max_rel = std::max(max_rel, std::abs(w[size_t(t * k + j)] - want) / std::max(std::abs(want), 1e-30));
      ASSERT_NEAR(w[size_t(t * k + j)], want, kRouterTieTolerance * std::abs(want) + 1e-7)
          << what << ": weight, token " << t << " slot " << j;
    }
  }
  for (int64_t e = 0; e < E; ++e)
    ASSERT_EQ(counts[size_t(e)], hist[size_t(e)]) << what << ": counts[" << e << "]";
  fmt::print(
      "[ numerics ] {}: tensor-core logits; {} of {} ids differ from the CPU's (near-ties), weights within "
      "{:.2g} relative of the exact\n",
      what, differing, T * k, max_rel);
}

void run_router(const RouterCase& c) {
  const std::string name =
      fmt::format("moe_router n_tokens={} d_model={} n_experts={} top_k={} {} ({})", c.n_tokens, c.d_model,
                  c.n_experts, c.top_k, c.hash ? "hash" : "dense", c.what);
  const uint32_t s = seed(uint32_t(c.n_tokens * 7 + c.d_model + c.n_experts + c.hash));
  const int64_t T = c.n_tokens, D = c.d_model, E = c.n_experts, k = c.top_k, V = 1000;
  const std::vector<float> x = random_normal(size_t(T * D), s);
  const float spread = c.gate == RouterCase::kWide ? 1.5f : 0.03f;  // logits ~ N(0, spread²·D)
  std::vector<float> gate = random_normal(size_t(E * D), s + 1, 0.0f, spread);
  if (c.gate == RouterCase::kTies)
    for (int64_t e = 1; e < E; ++e) std::copy_n(gate.begin(), D, gate.begin() + e * D);
  const QuantizedWeight g = quantize_weight(
      c.gate == RouterCase::kF32 ? WeightFormat::kF32 : WeightFormat::kBF16, gate.data(), E, D);
  std::vector<float> gate_q = gate;  // the values the kernels multiply
  if (g.format == WeightFormat::kBF16)
    for (float& v : gate_q) v = round_to_bf16(v);
  std::vector<float> bias = c.gate == RouterCase::kTies ? std::vector<float>(size_t(E), 0.0f)
                                                        : random_normal(size_t(E), s + 2, 0.0f, 0.1f);
  std::vector<int64_t> tid2eid(size_t(V * k));
  std::vector<int32_t> token_ids(static_cast<size_t>(T));
  std::mt19937 rng(s + 3);
  std::vector<int32_t> perm(static_cast<size_t>(E));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t v = 0; v < V; ++v) {
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t j = 0; j < k; ++j) tid2eid[size_t(v * k + j)] = perm[size_t(j)];
  }
  for (auto& t : token_ids) t = int32_t(rng() % V);

  MoeRouterParams p;
  p.n_tokens = T, p.d_model = D, p.n_experts = E, p.top_k = k, p.vocab_size = V,
  p.routed_scaling_factor = 1.5f;
  std::vector<int32_t> want_ids(size_t(T * k)), want_counts(static_cast<size_t>(E));
  std::vector<float> want_w(size_t(T * k));
  p.x = x.data();
  p.gate = g.view();
  p.bias = c.hash ? nullptr : bias.data();
  p.tid2eid = c.hash ? tid2eid.data() : nullptr;
  p.token_ids = token_ids.data();
  p.expert_ids = want_ids.data();
  p.weights = want_w.data();
  p.counts = want_counts.data();
  ASSERT_TRUE(check_moe_router(p).ok()) << name;
  cpu::moe_router(p);

  auto d_x = to_device(x);
  auto d_gate = to_device(g.data);
  auto d_bias = to_device(bias);
  auto d_tid = to_device(tid2eid);
  auto d_tok = to_device(token_ids);
  auto backend = make_cuda_backend();
  for (int rep = 0; rep < 2; ++rep) {  // the second call finds the counters the first one reset
    const std::string what = fmt::format("{} call {}", name, rep + 1);
    GuardedOutput<int32_t> ids(size_t(T * k), kPoisonId), counts(size_t(E), kPoisonId);
    GuardedOutput<float> w(size_t(T * k), poison_float());
    MoeRouterParams q = p;
    q.x = d_x.get();
    q.gate.data = d_gate.get();
    q.bias = c.hash ? nullptr : d_bias.get();
    q.tid2eid = c.hash ? d_tid.get() : nullptr;
    q.token_ids = d_tok.get();
    q.expert_ids = ids.data();
    q.weights = w.data();
    q.counts = counts.data();
    const Status st = backend->moe_router(q);
    ASSERT_TRUE(st.ok()) << what << ": " << st.message();
    const std::vector<int32_t> got_ids = ids.download(what + " ids"),
                               got_counts = counts.download(what + " counts");
    const std::vector<float> got_w = w.download(what + " weights");
    if (!cuda::moe_router_bit_exact(T, g.format)) {
      check_router_near_exact(x, gate_q, bias, c.hash, T, D, E, k, p.routed_scaling_factor, want_ids, got_ids,
                              got_w, got_counts, what);
      continue;
    }
    for (size_t i = 0; i < got_ids.size(); ++i)
      ASSERT_EQ(got_ids[i], want_ids[i])
          << what << ": first bad id at [" << i / size_t(k) << ", " << i % size_t(k) << "]";
    for (size_t i = 0; i < got_w.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(got_w[i]), std::bit_cast<uint32_t>(want_w[i]))
          << what << ": first bad weight at [" << i / size_t(k) << ", " << i % size_t(k) << "]: gpu "
          << got_w[i] << " cpu " << want_w[i];
    for (size_t e = 0; e < got_counts.size(); ++e)
      ASSERT_EQ(got_counts[e], want_counts[e]) << what << ": counts[" << e << "]";
    if (c.gate == RouterCase::kTies)
      for (int64_t j = 0; j < k; ++j)
        ASSERT_EQ(got_ids[size_t(j)], j) << what << ": ties must go to the lower id";
  }
}

TEST(GpuOps, MoeRouter) {
  SKIP_WITHOUT_GPU();
  using R = RouterCase;
  const RouterCase cases[] = {
      {1, 4096, 256, 6, false, R::kBf16, "flash"},
      {8, 4096, 256, 6, false, R::kBf16, "flash"},
      {64, 4096, 256, 6, false, R::kBf16, "flash"},
      {512, 4096, 256, 6, false, R::kBf16, "flash prefill, tensor cores"},
      {1037, 4096, 256, 6, false, R::kBf16, "flash prefill, tensor cores, a partial tile"},
      {600, 7168, 384, 6, true, R::kBf16, "pro hash, tensor cores"},
      {520, 264, 20, 6, false, R::kBf16, "ragged, tensor cores, a half k16 step"},
      {600, 4096, 256, 6, false, R::kF32, "flash, fp32 gate: the router order at any size"},
      {511, 4096, 256, 6, false, R::kBf16, "flash, the router order's largest size"},
      {1, 7168, 384, 6, false, R::kBf16, "pro"},
      {8, 7168, 384, 6, false, R::kBf16, "pro"},
      {64, 7168, 384, 6, false, R::kBf16, "pro"},
      {3, 4096, 256, 6, false, R::kF32, "flash, fp32 gate"},
      {8, 4096, 256, 6, true, R::kBf16, "flash hash"},
      {64, 7168, 384, 6, true, R::kBf16, "pro hash"},
      {2, 200, 256, 6, false, R::kBf16, "ragged d_model"},
      {37, 264, 20, 6, false, R::kBf16, "ragged tiles"},
      {5, 256, 256, 6, false, R::kTies, "ties"},
      {6, 512, 64, 6, false, R::kWide, "|logit| > 20 and exp underflow"},
      {3, 64, 16, 1, false, R::kBf16, "top-1"},
      {4, 256, 1024, 32, false, R::kBf16, "widest"},
  };
  for (const RouterCase& c : cases) run_router(c);
}

// ---- moe_experts: the GPU rounds x, act and each weighted slot output to BF16 (ops/moe_experts.h).
// |err| ≤ atol · rms(y) + 2^-7 · |y| per output (docs/numerics.md, "GPU MoE"). Against the CPU with
// the same roundings (the oracle) only fp32 summation order differs; where it tips a slot
// output's rounding the two differ by one BF16 ulp of that slot (≤ 2^-7 of it): for one slot (the
// shared expert) the relative term covers it, for several the atol term (measured ≤ 0.0176 ·
// rms(y)). Against the fp32 CPU the roundings themselves show: act's (2^-9 relative per term of the
// down GEMM, ≈ 1.1e-3 · rms(y) at 1σ, heavier-tailed than a Gaussian: act = silu(g)·u) and the
// slot outputs' (≤ 2^-9 of each slot).
constexpr double kExpertsTolRms = 2e-2;      // vs the oracle
constexpr double kExpertsFp32TolRms = 3e-2;  // vs the fp32 CPU
constexpr double kExpertsRtol = 1.0 / 128;   // one BF16 ulp of y, at most
struct ExpertsCase {
  WeightFormat format;
  int64_t n_tokens, d_model, d_ff, n_experts, top_k;
  // kSkipped: the GPU gets id -1 in each token's last slot and in every slot of token 0 (the CPU
  // gets those slots with weight 0, the same sum); the GPU skips them. kSkippedTokens: every slot
  // of every third token, the same way (top_k 1 has no last slot to spare).
  enum Routing { kRandom, kSkipOne, kAllOnOne, kDuplicates, kSkipped, kSkippedTokens } routing;
  bool counts;  // pass the ids' histogram (the router's counts) to the GPU
  const char* what;
  // kPrefill: the wgmma GEMMs, which the automatic choice keeps for grids of an SM count's CTAs,
  // pinned so that shapes small enough for the CPU reference cover them; kDense likewise.
  cuda::MoeGemmRegime regime = cuda::MoeGemmRegime::kAuto;
};

// A random weight, uniform with the spread of N(0, 0.05), from a cheap generator (Pro experts are
// 66 M elements each).
QuantizedWeight random_weight(WeightFormat f, int64_t rows, int64_t cols, uint32_t s) {
  std::vector<float> w(size_t(rows * cols));
  uint64_t h = 0x9E3779B97F4A7C15ull ^ s;
  for (auto& v : w) {
    h ^= h << 13, h ^= h >> 7, h ^= h << 17;
    v = (float(uint32_t(h >> 40)) / float(1 << 24) - 0.5f) * 0.173f;
  }
  return quantize_weight(f, w.data(), rows, cols);
}

struct PooledExpert {
  QuantizedWeight w[3];                            // canonical (CPU)
  cuda::DeviceBuffer<uint8_t> data[3], scales[3];  // packed (GPU)
  cuda::PackedLinearWeight packed[3];
};

void run_experts(const ExpertsCase& c) {
  const std::string name =
      fmt::format("moe_experts format={} n_tokens={} d_model={} d_ff={} n_experts={} top_k={}{} ({})",
                  weight_format_name(c.format), c.n_tokens, c.d_model, c.d_ff, c.n_experts, c.top_k,
                  c.counts ? " counts" : "", c.what);
  const uint32_t s = seed(uint32_t(c.n_tokens * 31 + c.d_model + c.n_experts + int(c.routing)));
  const int64_t T = c.n_tokens, D = c.d_model, I = c.d_ff, E = c.n_experts, k = c.top_k;
  const int64_t pool_size = std::min<int64_t>(E, 5);
  std::vector<std::unique_ptr<PooledExpert>> pool;
  for (int64_t i = 0; i < pool_size; ++i) {
    auto pe = std::make_unique<PooledExpert>();
    const int64_t rows[3] = {I, I, D}, cols[3] = {D, D, I};
    for (int m = 0; m < 3; ++m) {
      pe->w[m] = random_weight(c.format, rows[m], cols[m], s + uint32_t(10 * i + m));
      auto packed = cuda::pack_linear_weight_sm90(pe->w[m].view());
      ASSERT_TRUE(packed.ok()) << name << ": " << packed.status().message();
      pe->packed[m] = std::move(*packed);
      pe->data[m] = to_device(pe->packed[m].data);
      pe->scales[m] = to_device(pe->packed[m].scales);
    }
    pool.push_back(std::move(pe));
  }
  std::vector<ExpertWeights> host_experts(static_cast<size_t>(E)), dev_experts(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) {
    const PooledExpert& pe = *pool[size_t(e % pool_size)];
    host_experts[size_t(e)] = {pe.w[0].view(), pe.w[1].view(), pe.w[2].view()};
    WeightView v[3];
    for (int m = 0; m < 3; ++m)
      v[m] = cuda::packed_expert_view(pe.packed[m], pe.data[m].get(), pe.scales[m].get());
    dev_experts[size_t(e)] = {v[0], v[1], v[2]};
  }

  std::vector<float> x = random_normal(size_t(T * D), s + 100);
  for (auto& v : x) {
    v = round_to_bf16(v);
    if (v == 0.0f) v = 0.5f;
  }
  std::mt19937 rng(s + 101);
  std::vector<int32_t> ids(size_t(T * k));
  std::vector<int32_t> order(static_cast<size_t>(E));
  std::iota(order.begin(), order.end(), 0);
  for (int64_t t = 0; t < T; ++t) {
    std::shuffle(order.begin(), order.end(), rng);
    int64_t j = 0;
    for (int64_t i = 0; j < k; ++i) {
      const int32_t e = order[size_t(i % E)];
      if (c.routing == ExpertsCase::kSkipOne && e == 2) continue;  // expert 2 gets no tokens
      ids[size_t(t * k + j++)] = e;
    }
    if (c.routing == ExpertsCase::kAllOnOne) ids[size_t(t * k)] = 5;
    if (c.routing == ExpertsCase::kAllOnOne && k > 1 && ids[size_t(t * k + 1)] == 5)
      ids[size_t(t * k + 1)] = 6;
    if (c.routing == ExpertsCase::kDuplicates) ids[size_t(t * k + k - 1)] = ids[size_t(t * k)];
  }
  std::vector<float> wts(size_t(T * k));
  std::uniform_real_distribution<float> ud(0.05f, 1.0f);
  for (auto& v : wts) v = ud(rng);
  std::vector<int32_t> gpu_ids = ids;
  if (c.routing == ExpertsCase::kSkipped)
    for (int64_t i = 0; i < T * k; ++i)
      if (i < k || i % k == k - 1) gpu_ids[size_t(i)] = -1, wts[size_t(i)] = 0.0f;
  if (c.routing == ExpertsCase::kSkippedTokens)
    for (int64_t i = 0; i < T * k; ++i)
      if ((i / k) % 3 == 0) gpu_ids[size_t(i)] = -1, wts[size_t(i)] = 0.0f;
  std::vector<int32_t> counts(static_cast<size_t>(E), 0);
  for (const int32_t id : gpu_ids)
    if (id >= 0) ++counts[size_t(id)];

  std::vector<float> want(size_t(T * D)), want_fp32(size_t(T * D));
  MoeExpertsParams p{x.data(), ids.data(), wts.data(), host_experts.data(), want.data(), T, D, I,
                     E,        k,          10.0f};
  ASSERT_TRUE(check_moe_experts(p).ok()) << name;
  cpu::moe_experts(p, ActivationPrecision::kBF16);
  p.y = want_fp32.data();
  cpu::moe_experts(p);

  auto d_x = to_device(x);
  auto d_ids = to_device(gpu_ids);
  auto d_w = to_device(wts);
  auto d_counts = to_device(counts);
  MoeExpertsParams q{d_x.get(), d_ids.get(), d_w.get(), dev_experts.data(),
                     nullptr,   T,           D,         I,
                     E,         k,           10.0f,     c.counts ? d_counts.get() : nullptr};
  cuda::MoeExpertsSm90Runner runner;  // what the CUDA backend's moe_experts runs
  const CublasHandle cublas;          // dense mode's GEMMs
  std::vector<float> first;
  for (int rep = 0; rep < 2; ++rep) {  // the second call reuses the table, the workspace and its counters
    GuardedOutput<float> y(size_t(T * D), poison_float());
    q.y = y.data();
    const Status st = runner.run(q, nullptr, cublas.get(), nullptr, c.regime);
    ASSERT_TRUE(st.ok()) << name << ": " << st.message();
    const std::vector<float> got = y.download(name);
    if (rep == 0) {
      expect_close(name + " vs oracle", got, want, kExpertsRtol, kExpertsTolRms);
      expect_close(name + " vs fp32", got, want_fp32, kExpertsRtol, kExpertsFp32TolRms);
      first = got;
    } else {
      ASSERT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0)
          << name << ": a second call differs from the first (the sums have a fixed order)";
    }
  }
  // With an addend (the shared expert's output in the model), every mode adds it last in fp32: the
  // result is the call's without it plus the addend, bit for bit (ops/moe_experts.h).
  const std::vector<float> addend = random_normal(size_t(T * D), s + 102);
  auto d_addend = to_device(addend);
  GuardedOutput<float> y(size_t(T * D), poison_float());
  q.y = y.data();
  q.addend = d_addend.get();
  const Status st = runner.run(q, nullptr, cublas.get(), nullptr, c.regime);
  ASSERT_TRUE(st.ok()) << name << " with an addend: " << st.message();
  const std::vector<float> got = y.download(name);
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i], first[i] + addend[i]) << name << " with an addend: element " << i;
}

class GpuMoeExperts : public ::testing::TestWithParam<ExpertsCase> {};
TEST_P(GpuMoeExperts, MatchesCpu) {
  SKIP_WITHOUT_GPU();
  run_experts(GetParam());
}

constexpr auto kNv = WeightFormat::kNVFP4, kMx = WeightFormat::kMXFP4, kFp8 = WeightFormat::kFP8Block128;
constexpr auto kPinPrefill = cuda::MoeGemmRegime::kPrefill, kPinDense = cuda::MoeGemmRegime::kDense;
INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuMoeExperts,
    ::testing::Values(
        ExpertsCase{kNv, 1, 4096, 2048, 256, 6, ExpertsCase::kRandom, true, "flash"},
        ExpertsCase{kNv, 8, 4096, 2048, 256, 6, ExpertsCase::kRandom, true, "flash"},
        ExpertsCase{kNv, 64, 4096, 2048, 256, 6, ExpertsCase::kRandom, false, "flash"},
        ExpertsCase{kNv, 1, 7168, 3072, 384, 6, ExpertsCase::kRandom, false, "pro"},
        ExpertsCase{kNv, 8, 7168, 3072, 384, 6, ExpertsCase::kRandom, false, "pro"},
        ExpertsCase{kNv, 64, 7168, 3072, 384, 6, ExpertsCase::kRandom, true, "pro"},
        ExpertsCase{kMx, 8, 4096, 2048, 256, 6, ExpertsCase::kRandom, true, "flash mxfp4"},
        ExpertsCase{kFp8, 8, 4096, 2048, 1, 1, ExpertsCase::kRandom, false, "shared expert"},
        ExpertsCase{kNv, 3, 272, 208, 8, 2, ExpertsCase::kSkipOne, false, "ragged, expert 2 empty"},
        ExpertsCase{kMx, 3, 256, 96, 4, 3, ExpertsCase::kSkipOne, true, "ragged, expert 2 empty"},
        ExpertsCase{kNv, 100, 512, 256, 16, 2, ExpertsCase::kAllOnOne, true, "all tokens on expert 5"},
        ExpertsCase{kNv, 17, 256, 128, 8, 4, ExpertsCase::kDuplicates, false, "an id twice in a token"},
        ExpertsCase{kNv, 2, 256, 128, 8, 4, ExpertsCase::kDuplicates, true, "per slot, an id twice"},
        ExpertsCase{kNv, 2, 512, 256, 16, 6, ExpertsCase::kSkipped, false, "per slot, skipped slots"},
        ExpertsCase{kNv, 9, 512, 256, 16, 6, ExpertsCase::kSkipped, true, "grouped, skipped slots"},
        ExpertsCase{kFp8, 70, 384, 200, 1, 1, ExpertsCase::kRandom, false, "shared expert, ragged"},
        // Split K (decode grids far below the SM count): the shared expert at 1 token (per slot) and
        // at 3 tokens (grouped, one item), ragged widths whose last split is partial, skipped slots.
        ExpertsCase{kFp8, 1, 4096, 2048, 1, 1, ExpertsCase::kRandom, false,
                    "shared expert, 1 token, split K"},
        ExpertsCase{kFp8, 3, 1000, 600, 1, 1, ExpertsCase::kRandom, false, "shared expert ragged, split K"},
        ExpertsCase{kNv, 1, 2064, 520, 8, 4, ExpertsCase::kRandom, true, "per slot ragged, split K"},
        ExpertsCase{kMx, 2, 1024, 384, 16, 3, ExpertsCase::kSkipped, false,
                    "per slot, skipped slots, split K"},
        // The shared expert at 64 tokens: ≥ 16 tokens per expert but a prefill grid of 16 CTAs and
        // below dense mode's threshold, so the decode kernels (8 token tiles, split K).
        ExpertsCase{kFp8, 64, 4096, 2048, 1, 1, ExpertsCase::kRandom, false, "shared expert, 64 tokens"},
        // Prefill mode, pinned: real V4 widths with fewer experts so the CPU reference stays fast; partial
        // 128-token items, an empty expert, one expert holding three items, skipped slots, d_model / d_ff off
        // the 128 grid.
        ExpertsCase{kNv, 160, 4096, 2048, 16, 2, ExpertsCase::kRandom, true, "prefill flash widths",
                    kPinPrefill},
        ExpertsCase{kNv, 100, 7168, 3072, 8, 2, ExpertsCase::kRandom, false, "prefill pro widths",
                    kPinPrefill},
        ExpertsCase{kMx, 96, 4096, 2048, 8, 2, ExpertsCase::kSkipOne, true, "prefill mxfp4, expert 2 empty",
                    kPinPrefill},
        ExpertsCase{kFp8, 200, 4096, 2048, 1, 1, ExpertsCase::kRandom, false, "prefill shared expert",
                    kPinPrefill},
        ExpertsCase{kNv, 300, 272, 208, 8, 2, ExpertsCase::kSkipOne, false, "prefill ragged, expert 2 empty",
                    kPinPrefill},
        ExpertsCase{kNv, 300, 512, 256, 16, 2, ExpertsCase::kAllOnOne, true,
                    "prefill, 300 tokens on expert 5", kPinPrefill},
        ExpertsCase{kMx, 70, 256, 128, 4, 4, ExpertsCase::kDuplicates, false,
                    "prefill, an id twice in a token", kPinPrefill},
        // Even shares: 150 tokens on one expert run as two items of 75 (wgmma N = 96), 280 as three
        // of 94, 93, 93.
        ExpertsCase{kNv, 150, 512, 256, 16, 2, ExpertsCase::kAllOnOne, false,
                    "prefill, 150 tokens on expert 5, two even items", kPinPrefill},
        ExpertsCase{kFp8, 280, 4096, 2048, 1, 1, ExpertsCase::kRandom, false,
                    "prefill shared expert, three even items", kPinPrefill},
        ExpertsCase{kNv, 200, 512, 256, 8, 3, ExpertsCase::kSkipped, true, "prefill, skipped slots",
                    kPinPrefill},
        // Dense mode, pinned: real widths, ragged
        // d_ff (W3's rows start after W1's padded ones), skipped tokens, an FP4 format.
        ExpertsCase{kFp8, 200, 4096, 2048, 1, 1, ExpertsCase::kRandom, false, "dense shared expert",
                    kPinDense},
        ExpertsCase{kFp8, 70, 384, 200, 1, 1, ExpertsCase::kSkippedTokens, false,
                    "dense shared expert ragged, skipped tokens", kPinDense},
        ExpertsCase{kNv, 100, 272, 216, 1, 1, ExpertsCase::kRandom, true, "dense nvfp4 ragged", kPinDense},
        ExpertsCase{kMx, 130, 7168, 3072, 1, 1, ExpertsCase::kRandom, false, "dense mxfp4 pro widths",
                    kPinDense}));

// Dense mode is what the shared expert (one expert, top_k 1) runs from 128 tokens on (prefill
// chunks; decode batches keep the branch-friendly decode kernels), never the routed experts; the
// regimes pin either way.
TEST(GpuMoeExpertsDense, ChosenForTheSharedExpertFromManyTokens) {
  SKIP_WITHOUT_GPU();
  EXPECT_TRUE(cuda::moe_experts_sm90_dense(4096, 4096, 2048, 1, 1));
  EXPECT_TRUE(cuda::moe_experts_sm90_dense(16384, 7168, 3072, 1, 1));
  EXPECT_TRUE(cuda::moe_experts_sm90_dense(128, 4096, 2048, 1, 1));
  EXPECT_FALSE(cuda::moe_experts_sm90_dense(64, 4096, 2048, 1, 1));
  EXPECT_FALSE(cuda::moe_experts_sm90_dense(8, 4096, 2048, 1, 1));
  EXPECT_FALSE(cuda::moe_experts_sm90_dense(4096, 4096, 2048, 256, 6));
  EXPECT_FALSE(cuda::moe_experts_sm90_dense(4096, 4096, 2048, 1, 1, cuda::MoeGemmRegime::kPrefill));
  EXPECT_TRUE(cuda::moe_experts_sm90_dense(8, 256, 128, 1, 1, cuda::MoeGemmRegime::kDense));
}

// A dense call without a cuBLAS handle is refused with a message that names what is missing.
TEST(GpuMoeExpertsDense, NeedsACublasHandle) {
  SKIP_WITHOUT_GPU();
  cuda::MoeExpertsSm90Params p;
  std::vector<float> host_x(8 * 256, 1.0f);
  auto x = to_device(host_x);
  auto y = to_device(host_x);
  auto ids = to_device(std::vector<int32_t>(8, 0));
  auto w = to_device(std::vector<float>(8, 1.0f));
  cuda::MoeExpertSm90 entry{};
  auto table = to_device(std::vector<cuda::MoeExpertSm90>{entry});
  p.x = x.get(), p.y = y.get(), p.expert_ids = ids.get(), p.weights = w.get(), p.table = table.get();
  p.format = WeightFormat::kFP8Block128;
  p.n_tokens = 8, p.d_model = 256, p.d_ff = 128, p.n_experts = 1, p.top_k = 1;
  p.regime = cuda::MoeGemmRegime::kDense;
  const Status st = cuda::moe_experts_sm90(p, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("needs a cuBLAS handle"), std::string::npos) << st.message();
  p.n_experts = 2;
  const Status two = cuda::moe_experts_sm90(p, nullptr);
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.message().find("one expert with top_k 1"), std::string::npos) << two.message();
}

// ---- router → experts on the device vs router → experts on the CPU: the router's counts feed
// the plan (8 tokens, grouped mode) or are ignored (2 tokens, per-slot mode); dense and hash. As
// Model::moe runs it: a shared expert in a branch beside them, its output the routed call's addend,
// which that call reads only once the branch is done (eager and in a recorded graph).
void run_router_then_experts(int64_t T, bool hash) {
  const int64_t D = 512, I = 256, E = 32, k = 6, V = 50;
  const std::string name =
      fmt::format("moe_router → moe_experts n_tokens={} d_model={} d_ff={} n_experts={} top_k={} {}", T, D, I,
                  E, k, hash ? "hash" : "dense");
  const uint32_t s = seed(777 + uint32_t(T) + hash);
  std::vector<std::unique_ptr<PooledExpert>> pool;
  std::vector<ExpertWeights> host_experts, dev_experts;
  for (int64_t e = 0; e < E; ++e) {
    auto pe = std::make_unique<PooledExpert>();
    const int64_t rows[3] = {I, I, D}, cols[3] = {D, D, I};
    WeightView v[3];
    for (int m = 0; m < 3; ++m) {
      pe->w[m] = random_weight(kNv, rows[m], cols[m], s + uint32_t(3 * e + m));
      auto packed = cuda::pack_linear_weight_sm90(pe->w[m].view());
      ASSERT_TRUE(packed.ok()) << packed.status().message();
      pe->packed[m] = std::move(*packed);
      pe->data[m] = to_device(pe->packed[m].data);
      pe->scales[m] = to_device(pe->packed[m].scales);
      v[m] = cuda::packed_expert_view(pe->packed[m], pe->data[m].get(), pe->scales[m].get());
    }
    host_experts.push_back({pe->w[0].view(), pe->w[1].view(), pe->w[2].view()});
    dev_experts.push_back({v[0], v[1], v[2]});
    pool.push_back(std::move(pe));
  }
  std::vector<float> x = random_normal(size_t(T * D), s + 1);
  for (auto& v : x) v = round_to_bf16(v) == 0.0f ? 0.5f : round_to_bf16(v);
  const std::vector<float> gate_f32 = random_normal(size_t(E * D), s + 2, 0.0f, 0.1f);
  const QuantizedWeight gate = quantize_weight(WeightFormat::kBF16, gate_f32.data(), E, D);
  const std::vector<float> bias = random_normal(size_t(E), s + 3, 0.0f, 0.1f);
  std::vector<int64_t> tid2eid(size_t(V * k));
  for (size_t i = 0; i < tid2eid.size(); ++i) tid2eid[i] = int64_t((i * 7 + i / size_t(k)) % size_t(E));
  std::vector<int32_t> tokens(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) tokens[size_t(t)] = int32_t((t * 13 + 5) % V);
  std::vector<int32_t> ids(size_t(T * k)), counts(static_cast<size_t>(E));
  std::vector<float> wts(size_t(T * k)), want(size_t(T * D));
  MoeRouterParams rp;
  rp.x = x.data(), rp.gate = gate.view(), rp.expert_ids = ids.data(), rp.weights = wts.data();
  rp.bias = hash ? nullptr : bias.data(), rp.tid2eid = hash ? tid2eid.data() : nullptr;
  rp.token_ids = tokens.data(), rp.counts = counts.data(), rp.vocab_size = V;
  rp.n_tokens = T, rp.d_model = D, rp.n_experts = E, rp.top_k = k, rp.routed_scaling_factor = 1.5f;
  ASSERT_TRUE(check_moe_router(rp).ok()) << name;
  cpu::moe_router(rp);
  // The shared expert: expert 0's weights, every token's one slot with weight 1.
  const std::vector<int32_t> shared_ids(size_t(T), 0);
  const std::vector<float> shared_w(size_t(T), 1.0f);
  std::vector<float> shared_out(size_t(T * D));
  cpu::moe_experts({x.data(), shared_ids.data(), shared_w.data(), host_experts.data(), shared_out.data(), T,
                    D, I, 1, 1, 10.0f});
  cpu::moe_experts({x.data(), ids.data(), wts.data(), host_experts.data(), want.data(), T, D, I, E, k, 10.0f,
                    counts.data(), shared_out.data()});

  auto d_x = to_device(x);
  auto d_gate = to_device(gate.data);
  auto d_bias = to_device(bias);
  auto d_tid = to_device(tid2eid);
  auto d_tok = to_device(tokens);
  auto d_ids = to_device(std::vector<int32_t>(size_t(T * k), kPoisonId));
  auto d_counts = to_device(std::vector<int32_t>(size_t(E), kPoisonId));
  auto d_w = to_device(std::vector<float>(size_t(T * k), poison_float()));
  GuardedOutput<float> y(size_t(T * D), poison_float());
  MoeRouterParams q = rp;
  q.x = d_x.get(), q.gate.data = d_gate.get(), q.expert_ids = d_ids.get(), q.weights = d_w.get();
  q.bias = hash ? nullptr : d_bias.get(), q.tid2eid = hash ? d_tid.get() : nullptr;
  q.token_ids = d_tok.get(), q.counts = d_counts.get();
  auto d_shared_ids = to_device(shared_ids);
  auto d_shared_w = to_device(shared_w);
  GuardedOutput<float> d_shared_out(size_t(T * D), poison_float());
  auto backend = make_cuda_backend();
  const auto layer = [&]() -> Status {
    DSV4_RETURN_IF_ERROR(backend->begin_branch());
    DSV4_RETURN_IF_ERROR(
        backend->moe_experts({d_x.get(), d_shared_ids.get(), d_shared_w.get(), dev_experts.data(),
                              d_shared_out.data(), T, D, I, 1, 1, 10.0f}));
    DSV4_RETURN_IF_ERROR(backend->end_branch());
    DSV4_RETURN_IF_ERROR(backend->moe_router(q));
    DSV4_RETURN_IF_ERROR(
        backend->moe_experts({d_x.get(), d_ids.get(), d_w.get(), dev_experts.data(), y.data(), T, D, I, E, k,
                              10.0f, d_counts.get(), d_shared_out.data()}));
    return backend->join_branch();
  };
  const Status st = layer();
  ASSERT_TRUE(st.ok()) << st.message();
  const std::vector<float> eager = y.download(name);
  expect_close(name, eager, want, kExpertsRtol, kExpertsFp32TolRms);

  ASSERT_TRUE(backend->begin_capture().ok());
  const Status recorded = layer();
  Result<std::unique_ptr<BackendGraph>> graph = backend->end_capture();
  ASSERT_TRUE(recorded.ok()) << recorded.message();
  ASSERT_TRUE(graph.ok()) << graph.status().message();
  for (GuardedOutput<float>* o : {&y, &d_shared_out})
    ASSERT_TRUE(o->buf.upload(std::vector<float>(o->n + 2 * kCanary, o->poison)).ok());
  ASSERT_TRUE(backend->replay(**graph).ok());
  const std::vector<float> replayed = y.download(name);
  ASSERT_EQ(std::memcmp(replayed.data(), eager.data(), eager.size() * sizeof(float)), 0)
      << name << ": graph replay differs from the eager call";
}

TEST(GpuOps, MoeRouterThenExperts) {
  SKIP_WITHOUT_GPU();
  for (const int64_t T : {2, 8})
    for (const bool hash : {false, true}) run_router_then_experts(T, hash);
}

}  // namespace
}  // namespace dsv4
