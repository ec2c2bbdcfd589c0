// The whole model on the GPU against the CPU reference on the committed HF fixtures
// (tests/fixtures/tiny-*): full prefill, chunked prefill, prefill + decode, and a batch of two
// sequences at different positions. Logits agree within the tolerances below (docs/numerics.md,
// "GPU model": linear and the experts run BF16 activations on the tensor cores) and the greedy
// token is the same on every row whose CPU top-2 gap exceeds what they allow.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "../model_test_util.h"
#include "core/safetensors.h"
#include "cuda/cuda_backend.h"
#include "gpu_test_util.h"
#include "model/model.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

// The fixtures are committed next to this directory (tests/fixtures); DSV4_FIXTURES overrides
// that for a binary run away from its source tree (built on one machine, run on a GPU machine).
std::string fixture_dir() {
  if (const char* dir = std::getenv("DSV4_FIXTURES")) return dir;
  return (fs::path(__FILE__).parent_path().parent_path() / "fixtures").string();
}

// docs/numerics.md "GPU model": linear and moe_experts round activations to BF16, which moves a
// row's logits by ~6e-3 (median) relative; on ~1% of rows it also flips a discrete choice
// upstream (an expert or an indexer entry at a near-tie) and the row moves by up to ~0.5. The CPU
// with only its activations rounded to BF16 shows the same outliers at the same rows, so they are
// a property of BF16 activations, not of the kernels. Hence: the median row error is bounded
// tightly, rows beyond kRowTolerance may be at most kMaxOutlierFraction of all rows, and the
// greedy token must agree on every other row unless its CPU top-2 gap is within what
// kRowTolerance allows.
constexpr double kMedianTolerance = 1.5e-2;
constexpr double kRowTolerance = 5e-2;
constexpr double kMaxOutlierFraction = 0.03;

struct Comparison {
  double median_rel = 0, max_rel = 0;
  int64_t worst_row = -1, rows = 0;
  int64_t outliers = 0;     // rows above kRowTolerance
  int64_t close_calls = 0;  // greedy differs on a row whose CPU top-2 gap is within the tolerance
};

// Per row: ‖gpu − cpu‖ / ‖cpu‖ and the greedy token. A row error e moves two logits' difference
// by at most √2·e·‖cpu‖, so with e ≤ kRowTolerance a greedy flip needs a CPU top-2 gap below
// 2·kRowTolerance·‖cpu‖; a flip past that gap on a non-outlier row is a failure.
Comparison compare(const std::vector<float>& gpu, const std::vector<float>& cpu, int64_t V,
                   const std::string& what) {
  Comparison c;
  EXPECT_EQ(gpu.size(), cpu.size()) << what;
  if (gpu.size() != cpu.size() || cpu.empty()) return c;
  c.rows = int64_t(cpu.size()) / V;
  std::vector<double> rels;
  for (int64_t r = 0; r < c.rows; ++r) {
    const float* g = gpu.data() + r * V;
    const float* x = cpu.data() + r * V;
    double diff = 0, norm = 0;
    for (int64_t v = 0; v < V; ++v) {
      EXPECT_TRUE(std::isfinite(g[v])) << what << ": row " << r << " logit " << v;
      diff += (double(g[v]) - x[v]) * (double(g[v]) - x[v]);
      norm += double(x[v]) * x[v];
    }
    const double rel = std::sqrt(diff / norm);
    rels.push_back(rel);
    if (!(rel <= c.max_rel)) c.max_rel = rel, c.worst_row = r;
    const bool outlier = !(rel <= kRowTolerance);
    c.outliers += outlier;
    const int64_t arg_g = std::max_element(g, g + V) - g, arg_c = std::max_element(x, x + V) - x;
    if (arg_g == arg_c) continue;
    float second = -INFINITY;
    for (int64_t v = 0; v < V; ++v)
      if (v != arg_c) second = std::max(second, x[v]);
    const double gap = double(x[arg_c]) - second;
    if (!outlier && gap > 2 * kRowTolerance * std::sqrt(norm)) {
      ADD_FAILURE() << what << ": row " << r << " greedy token " << arg_g << " on the GPU, " << arg_c
                    << " on the CPU; CPU top-2 gap " << gap << ", row error " << rel;
    } else {
      ++c.close_calls;
      std::printf(
          "%s: row %lld greedy token differs (GPU %lld, CPU %lld), CPU top-2 gap %.3g, row error %.3g%s\n",
          what.c_str(), (long long)r, (long long)arg_g, (long long)arg_c, gap, rel,
          outlier ? " (outlier row)" : " (gap within the tolerance)");
    }
  }
  std::sort(rels.begin(), rels.end());
  c.median_rel = rels[rels.size() / 2];
  std::printf(
      "%s: %lld rows, row-relative error median %.3g, p90 %.3g, max %.3g (row %lld); %lld rows above %.g, "
      "%lld greedy differences reported\n",
      what.c_str(), (long long)c.rows, c.median_rel, rels[rels.size() * 9 / 10], c.max_rel,
      (long long)c.worst_row, (long long)c.outliers, kRowTolerance, (long long)c.close_calls);
  return c;
}

void expect_within_tolerance(const Comparison& c, const std::string& what) {
  EXPECT_LE(c.median_rel, kMedianTolerance) << what;
  EXPECT_LE(double(c.outliers), kMaxOutlierFraction * double(c.rows))
      << what << ": " << c.outliers << " of " << c.rows << " rows above " << kRowTolerance;
}

using model_test::run_chunks;

class GpuModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    dir_ = fixture_dir() + "/" + GetParam();
    ASSERT_TRUE(fs::exists(dir_ + "/model.safetensors")) << "fixture missing: " << dir_;
    Result<std::unique_ptr<Model>> cpu = Model::load(dir_, make_cpu_backend());
    ASSERT_TRUE(cpu.ok()) << cpu.status().message();
    cpu_ = std::move(cpu.value());
    Result<std::unique_ptr<Model>> gpu = Model::load(dir_, make_cuda_backend());
    ASSERT_TRUE(gpu.ok()) << gpu.status().message();
    gpu_ = std::move(gpu.value());
    Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::open(dir_ + "/expected.safetensors");
    ASSERT_TRUE(f.ok()) << f.status().message();
    for (int64_t v : plain_to_i64(*(*f)->find("tokens"))) tokens_.push_back(int32_t(v));
    prefill_len_ = plain_to_i64(*(*f)->find("prefill_len"))[0];
    V_ = cpu_->config().vocab_size;
  }
  // Same chunking on both backends.
  void check(const std::vector<int64_t>& sizes, const std::string& what) {
    expect_within_tolerance(compare(run_chunks(*gpu_, tokens_, sizes), run_chunks(*cpu_, tokens_, sizes), V_,
                                    GetParam() + " " + what),
                            what);
  }
  std::string dir_;
  std::unique_ptr<Model> cpu_, gpu_;
  std::vector<int32_t> tokens_;
  int64_t prefill_len_ = 0, V_ = 0;
};

TEST_P(GpuModel, FullPrefillMatchesCpu) {
  check({int64_t(tokens_.size())}, "full prefill");
}

TEST_P(GpuModel, ChunkedPrefillMatchesCpu) {
  // As test_model.cpp: odd offsets across CSA (4) and HCA (128) windows, one token at a time.
  check({7}, "chunks of 7");
  check({64}, "chunks of 64");
  check({130, 61, 3}, "chunks of 130, 61, 3");
  check({1}, "chunks of 1");
}

TEST_P(GpuModel, PrefillThenDecodeMatchesCpu) {
  check({prefill_len_, 1}, "prefill + decode");
}

TEST_P(GpuModel, BatchOfSequencesAtDifferentPositionsMatchesCpu) {
  // Sequence a: prefill alone; then decode-sized steps of a batched with b's prefill chunks, in
  // both orders. The CPU reference runs each sequence alone.
  const int64_t n = int64_t(tokens_.size());
  ASSERT_GE(n, 20);
  const std::vector<int32_t> a(tokens_.begin(), tokens_.end());
  const std::vector<int32_t> b(tokens_.rbegin(), tokens_.rbegin() + 19);
  const int64_t a0 = n - 4;
  SequenceState sa = gpu_->new_state(), sb = gpu_->new_state();
  std::vector<float> got_a, got_b;
  const auto step = [&](std::vector<SequenceChunk> batch, std::vector<std::vector<float>*> outs) {
    Result<std::vector<float>> r = gpu_->forward(batch);
    ASSERT_TRUE(r.ok()) << r.status().message();
    size_t at = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const size_t len = batch[i].tokens.size() * size_t(V_);
      outs[i]->insert(outs[i]->end(), r->begin() + long(at), r->begin() + long(at + len));
      at += len;
    }
  };
  step({{&sa, std::span<const int32_t>(a.data(), size_t(a0))}}, {&got_a});
  step({{&sa, std::span<const int32_t>(a.data() + a0, 2)}, {&sb, std::span<const int32_t>(b.data(), 13)}},
       {&got_a, &got_b});
  step({{&sb, std::span<const int32_t>(b.data() + 13, 6)},
        {&sa, std::span<const int32_t>(a.data() + a0 + 2, 2)}},
       {&got_b, &got_a});
  expect_within_tolerance(compare(got_a, run_chunks(*cpu_, a, {n}), V_, GetParam() + " batch, sequence a"),
                          "a");
  expect_within_tolerance(compare(got_b, run_chunks(*cpu_, b, {19}), V_, GetParam() + " batch, sequence b"),
                          "b");
}

// Decode steps recorded as CUDA graphs give the same logits, bit for bit, as the same steps run
// eagerly, at every batch size from 1 to 9 (odd ones included: capture failing at some batch
// sizes is a known failure of other engines). Each size prefills fresh sequences of different
// lengths (which may allocate, making earlier recordings stale) and then decodes three steps:
// eager (warm-up), recorded + replayed, replayed.
TEST_P(GpuModel, DecodeGraphsMatchEagerBitForBit) {
  Result<std::unique_ptr<Model>> eager = Model::load(dir_, make_cuda_backend());
  ASSERT_TRUE(eager.ok()) << eager.status().message();
  (*eager)->set_decode_graphs(false);
  constexpr int64_t kMaxBatch = 9, kSteps = 3;
  for (int64_t batch = 1; batch <= kMaxBatch; ++batch) {
    std::vector<SequenceState> graph_states, eager_states;
    for (int64_t i = 0; i < batch; ++i) {
      graph_states.push_back(gpu_->new_state());
      eager_states.push_back((*eager)->new_state());
      const std::span<const int32_t> prompt(tokens_.data() + i, size_t(5 + 17 * i));
      for (auto [model, state] :
           {std::pair{gpu_.get(), &graph_states.back()}, {eager->get(), &eager_states.back()}}) {
        const SequenceChunk chunk{state, prompt, true};
        ASSERT_TRUE(model->forward({&chunk, 1}).ok());
      }
    }
    for (int64_t step = 0; step < kSteps; ++step) {
      std::vector<SequenceChunk> graph_batch, eager_batch;
      for (int64_t i = 0; i < batch; ++i) {
        const std::span<const int32_t> token(tokens_.data() + 100 + 10 * i + step, 1);
        graph_batch.push_back({&graph_states[size_t(i)], token});
        eager_batch.push_back({&eager_states[size_t(i)], token});
      }
      Result<std::vector<float>> got = gpu_->forward(graph_batch), want = (*eager)->forward(eager_batch);
      ASSERT_TRUE(got.ok()) << "batch " << batch << " step " << step << ": " << got.status().message();
      ASSERT_TRUE(want.ok()) << want.status().message();
      ASSERT_EQ(got->size(), want->size());
      for (size_t i = 0; i < got->size(); ++i)
        ASSERT_EQ(std::memcmp(&(*got)[i], &(*want)[i], sizeof(float)), 0)
            << GetParam() << " batch " << batch << " step " << step << ": logit " << i << " graph "
            << (*got)[i] << " eager " << (*want)[i];
    }
    EXPECT_GE(gpu_->decode_graphs_recorded(), 1) << "batch " << batch << ": no decode step was recorded";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuModel, ::testing::Values("tiny-nvfp4", "tiny-mxfp4"));

}  // namespace
}  // namespace dsv4
