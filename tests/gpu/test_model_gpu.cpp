// The whole model on the GPU against the CPU on the committed HF fixtures (tests/fixtures/tiny-*):
// full prefill, chunked prefill, prefill + decode, and a batch of two sequences at different
// positions (docs/numerics.md, "GPU model"). Two references, each with bounds on the median row
// error and on every row's, and the greedy token identical on every row:
//  - the CPU oracle with the GPU's precision contract (bf16_activations: activations rounded to
//    BF16 exactly where the kernels round them): what differs is fp32 summation order, amplified
//    by the BF16 roundings it tips over;
//  - the fp32 CPU reference (which matches HF): BF16 activations move rows by ~8e-3.
// And the GPU is deterministic: the same run twice gives bitwise identical logits.
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

using model_test::fixture_dir;
using model_test::row_errors;
using model_test::RowBounds;
using model_test::RowErrors;

// GPU vs the CPU oracle (docs/numerics.md "GPU model"): the same function, computed in another
// fp32 summation order. A difference of a few fp32 ulps tips a BF16 rounding downstream now and
// then, and each tipped rounding (one BF16 ulp) tips more in the next layers: over the ~20 BF16
// rounding stages of the fixtures the difference grows to about half the BF16 effect itself.
// Measured on the CPU, the oracle against itself with reversed or k16-blocked sums (on the
// earlier random-token fixtures): median 3.3e-3 .. 3.5e-3, max 0.048. Hence a median bound 3x
// that, and the same bound on every row as against fp32.
constexpr RowBounds kGpuVsOracle{1e-2, 5e-2};

// GPU vs a reference, per row: ‖gpu − ref‖ / ‖ref‖ and the greedy token. The median row error and
// every row's error are bounded, and the greedy token must be the reference's on every row: the
// fixtures' tokens leave every greedy choice, expert top-k and indexer top-k a margin that BF16
// activations cannot cross (docs/fixtures.md, "Token choice").
void expect_near(const std::vector<float>& gpu, const std::vector<float>& ref, int64_t V,
                 const RowBounds& bounds, const std::string& what) {
  const RowErrors e = row_errors(gpu, ref, V);
  for (size_t i = 0; i < gpu.size(); ++i)
    if (!std::isfinite(gpu[i])) {
      ADD_FAILURE() << what << ": row " << i / size_t(V) << " logit " << i % size_t(V) << " is " << gpu[i];
      break;
    }
  for (int64_t r : e.greedy_differs) {
    const float* g = gpu.data() + r * V;
    const float* x = ref.data() + r * V;
    ADD_FAILURE() << what << ": row " << r << " greedy token " << std::max_element(g, g + V) - g
                  << " on the GPU, " << std::max_element(x, x + V) - x << " on the CPU; row error "
                  << e.rel[size_t(r)];
  }
  std::printf(
      "%s: %zu rows, row-relative error median %.3g, p90 %.3g, max %.3g (row %lld); %zu greedy differences\n",
      what.c_str(), e.rel.size(), e.median, e.p90, e.max, (long long)e.worst_row, e.greedy_differs.size());
  EXPECT_LE(e.median, bounds.median) << what;
  EXPECT_LE(e.max, bounds.row) << what << ": row " << e.worst_row;
}

// One set of GPU logits against both references.
void expect_matches_cpu(const std::vector<float>& gpu, const std::vector<float>& oracle,
                        const std::vector<float>& fp32, int64_t V, const std::string& what) {
  expect_near(gpu, oracle, V, kGpuVsOracle, what + " vs CPU oracle");
  expect_near(gpu, fp32, V, model_test::kBf16VsFp32, what + " vs fp32 CPU");
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
    Result<std::unique_ptr<Model>> oracle = Model::load(dir_, make_cpu_backend({.bf16_activations = true}));
    ASSERT_TRUE(oracle.ok()) << oracle.status().message();
    oracle_ = std::move(oracle.value());
    Result<std::unique_ptr<Model>> gpu = Model::load(dir_, make_cuda_backend());
    ASSERT_TRUE(gpu.ok()) << gpu.status().message();
    gpu_ = std::move(gpu.value());
    Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::open(dir_ + "/expected.safetensors");
    ASSERT_TRUE(f.ok()) << f.status().message();
    for (int64_t v : plain_to_i64(*(*f)->find("tokens"))) tokens_.push_back(int32_t(v));
    prefill_len_ = plain_to_i64(*(*f)->find("prefill_len"))[0];
    V_ = cpu_->config().vocab_size;
  }
  // Same chunking on every backend.
  void check(const std::vector<int64_t>& sizes, const std::string& what) {
    expect_matches_cpu(run_chunks(*gpu_, tokens_, sizes), run_chunks(*oracle_, tokens_, sizes),
                       run_chunks(*cpu_, tokens_, sizes), V_, GetParam() + " " + what);
  }
  std::string dir_;
  std::unique_ptr<Model> cpu_, oracle_, gpu_;
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
  // both orders. b is the fixture's first 19 tokens (its own sequence, at positions 0-18, where
  // the token choice's margins hold). The CPU reference runs each sequence alone.
  const int64_t n = int64_t(tokens_.size());
  ASSERT_GE(n, 20);
  const std::vector<int32_t> a(tokens_.begin(), tokens_.end());
  const std::vector<int32_t> b(tokens_.begin(), tokens_.begin() + 19);
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
  expect_matches_cpu(got_a, run_chunks(*oracle_, a, {n}), run_chunks(*cpu_, a, {n}), V_,
                     GetParam() + " batch, sequence a");
  expect_matches_cpu(got_b, run_chunks(*oracle_, b, {19}), run_chunks(*cpu_, b, {19}), V_,
                     GetParam() + " batch, sequence b");
}

TEST_P(GpuModel, RepeatedRunsAreBitwiseIdentical) {
  // Prefill (the many-token paths) and decode (the one-token paths), twice on fresh states.
  const std::vector<int64_t> sizes = {prefill_len_, 1};
  const std::vector<float> first = run_chunks(*gpu_, tokens_, sizes),
                           second = run_chunks(*gpu_, tokens_, sizes);
  ASSERT_EQ(first.size(), second.size());
  ASSERT_FALSE(first.empty());
  for (size_t i = 0; i < first.size(); ++i)
    if (std::memcmp(&first[i], &second[i], sizeof(float)) != 0) {
      ADD_FAILURE() << GetParam() << ": logit " << i % size_t(V_) << " of row " << i / size_t(V_)
                    << " differs between two identical runs: " << first[i] << " vs " << second[i];
      break;
    }
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
