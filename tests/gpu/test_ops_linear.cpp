// test_ops: linear on sm_90a (cuda::linear_sm90) against cpu::linear with the same quantized bits,
// and the packed layout (pack_linear_weight_sm90) decoded on the host against dequantize_row.
// x is drawn random, never zero, and rounded to BF16 before the CPU sees it, so the only
// difference left is fp32 accumulation order (tolerance: docs/numerics.md, "GPU linear"). Also:
// bitwise identical outputs run after run and from CUDA graph replays (split-K is deterministic).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/numeric.h"
#include "core/quant.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/linear_sm90.h"
#include "gpu_test_util.h"
#include "ops/linear.h"

namespace dsv4 {
namespace {

constexpr int kCanary = 64;
const uint32_t kPoisonBits = 0x7FC00123;  // a float NaN no op writes

struct LinearCase {
  WeightFormat format;
  int64_t rows, cols, n_tokens;
  const char* what;
};

std::string case_name(const LinearCase& c) {
  return fmt::format("linear format={} rows={} cols={} n_tokens={} ({})", weight_format_name(c.format),
                     c.rows, c.cols, c.n_tokens, c.what);
}

QuantizedWeight random_weight(const LinearCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(size_t(c.rows * c.cols));
  for (auto& v : w) v = dist(rng);
  return quantize_weight(c.format, w.data(), c.rows, c.cols);
}

// The packed layout, decoded on the host with the kernel's bit moves: every element times
// out_scale must equal dequantize_row exactly (all scalings involved are exact).
float bf16_bits(uint32_t b) {
  return bf16_to_f32(uint16_t(b));
}
// A-fragment pair j (BF16 pair bits) of a packed e2m1 word, by the placement linear_sm90.h states.
uint32_t e2m1_pair_bits(uint32_t q, int j) {
  const auto rotr = [](uint32_t v, int d) { return d ? (v >> d) | (v << (32 - d)) : v; };
  constexpr uint32_t kPair = 0x81C081C0u, kM = 0x00400040u;
  switch (j) {
    case 0:
      return q & kPair;
    case 1:
      return rotr(q, cuda::kE2m1Pair1Rotation) & kPair;
    case 2:
      return rotr(q, cuda::kE2m1Pair2Rotation) & kPair;
    default:
      return (rotr(q, cuda::kE2m1Pair3MantissaRotation) & kM) |
             (rotr(q, cuda::kE2m1Pair3Rotation) & (kPair & ~kM));
  }
}

void check_pack(const LinearCase& c) {
  const QuantizedWeight q = random_weight(c, 99);
  auto packed = cuda::pack_linear_weight_sm90(q.view());
  ASSERT_TRUE(packed.ok()) << packed.status().message();
  const cuda::PackedLinearWeight& p = *packed;
  const int64_t kc = cuda::packed_chunk_k(c.format), n_chunks = p.cols_pad / kc;
  std::vector<float> got(size_t(p.rows_pad * p.cols_pad), NAN);
  for (int64_t tile = 0; tile < p.rows_pad / 16; ++tile)
    for (int64_t ch = 0; ch < n_chunks; ++ch)
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t2 = 2 * (lane % 4);
        const size_t base = size_t(((tile * n_chunks + ch) * 32 + lane) * 16);
        uint32_t word[4];
        std::memcpy(word, &p.data[base], 16);
        auto put = [&](int64_t row, int64_t col, float v) { got[size_t(row * p.cols_pad + col)] = v; };
        for (int st = 0; st < kc / 16; ++st)
          for (int j = 0; j < 4; ++j)      // A fragment register: rows g | g+8, cols +0 | +8
            for (int h = 0; h < 2; ++h) {  // lower / upper column of the pair
              const int64_t row = tile * 16 + g + (j % 2) * 8, col = ch * kc + st * 16 + t2 + (j / 2) * 8 + h;
              float v, s;
              if (c.format == WeightFormat::kFP8Block128) {
                const uint8_t byte = uint8_t(word[2 * st + j / 2] >> (8 * (2 * (j % 2) + h)));
                v = bf16_bits((uint32_t(byte & 0x80) << 8) | (uint32_t(byte & 0x7F) << 4));
                uint16_t sb;
                std::memcpy(&sb, &p.scales[size_t(((row / 128) * (p.cols_pad / 128) + col / 128) * 2)], 2);
                s = bf16_bits(sb);
              } else {
                const uint32_t pair = e2m1_pair_bits(word[st], j);
                v = bf16_bits(h ? pair >> 16 : pair & 0xFFFFu);
                const int rh = j % 2;
                if (c.format == WeightFormat::kNVFP4)
                  s = bf16_bits(p.scales[size_t(((tile * n_chunks + ch) * 8 + g) * 8 + 2 * st + rh)] * 16u +
                                0x7000u);
                else
                  s = bf16_bits(p.scales[size_t(((tile * n_chunks + ch) * 8 + g) * 4 + 2 * (st / 2) + rh)] *
                                    128u +
                                0x4000u);
              }
              put(row, col, v * s * p.out_scale);
            }
      }
  std::vector<float> want(size_t(c.cols));
  for (int64_t r = 0; r < p.rows_pad; ++r) {
    if (r < c.rows) dequantize_row(q.view(), r, want.data());
    for (int64_t k = 0; k < p.cols_pad; ++k) {
      const float w = r < c.rows && k < c.cols ? want[size_t(k)] : 0.0f;
      const float gv = got[size_t(r * p.cols_pad + k)];
      ASSERT_EQ(gv, w) << "pack_linear_weight_sm90 " << case_name(c) << ": first mismatch at [" << r << ", "
                       << k << "]: packed " << gv << " canonical " << w;
    }
  }
}

class PackLinearSm90 : public ::testing::TestWithParam<LinearCase> {};
TEST_P(PackLinearSm90, DecodesToCanonical) {
  check_pack(GetParam());
}  // host only: runs in CI

INSTANTIATE_TEST_SUITE_P(Formats, PackLinearSm90,
                         ::testing::Values(LinearCase{WeightFormat::kNVFP4, 40, 96, 0, "ragged"},
                                           LinearCase{WeightFormat::kMXFP4, 33, 160, 0, "ragged"},
                                           LinearCase{WeightFormat::kFP8Block128, 130, 200, 0, "ragged"},
                                           LinearCase{WeightFormat::kNVFP4, 256, 512, 0, "tiles"}));

// The weight packed on the device, x, a prepared workspace and a cuBLAS handle: one linear_sm90
// call's inputs, run as often as a test needs.
class DeviceLinear {
 public:
  DeviceLinear(const QuantizedWeight& q, const std::vector<float>& x, int64_t n_tokens)
      : n_tokens_(n_tokens) {
    auto packed = cuda::pack_linear_weight_sm90(q.view());
    if (!packed.ok()) {
      ADD_FAILURE() << packed.status().message();
      return;
    }
    auto w = cuda::DeviceBuffer<uint8_t>::create(packed->data.size());
    auto s = cuda::DeviceBuffer<uint8_t>::create(std::max<size_t>(packed->scales.size(), 1));
    auto dx = cuda::DeviceBuffer<float>::create(x.size());
    EXPECT_TRUE(w.ok() && s.ok() && dx.ok());
    if (!w.ok() || !s.ok() || !dx.ok()) return;
    w_ = std::move(*w), s_ = std::move(*s), x_ = std::move(*dx);
    EXPECT_TRUE(w_.upload(packed->data).ok());
    if (!packed->scales.empty()) EXPECT_TRUE(s_.upload(packed->scales).ok());
    EXPECT_TRUE(x_.upload(x).ok());
    view_ = {packed->format,   packed->rows, packed->cols, packed->rows_pad,
             packed->cols_pad, w_.get(),     s_.get(),     packed->out_scale};
    ws_bytes_ = cuda::linear_sm90_workspace_bytes(view_, n_tokens);
    auto ws = cuda::DeviceBuffer<uint8_t>::create(ws_bytes_);
    EXPECT_TRUE(ws.ok());
    if (!ws.ok()) return;
    ws_ = std::move(*ws);
    EXPECT_TRUE(cuda::linear_sm90_prepare_workspace(ws_.get(), ws_bytes_, nullptr).ok());
  }
  Status run(float* y, cudaStream_t stream) const {
    return cuda::linear_sm90({x_.get(), view_, y, n_tokens_, ws_.get(), ws_bytes_, handle_.get()}, stream);
  }

 private:
  int64_t n_tokens_;
  cuda::DeviceBuffer<uint8_t> w_, s_, ws_;
  cuda::DeviceBuffer<float> x_;
  cuda::PackedWeightView view_;
  size_t ws_bytes_ = 0;
  gpu_test::CublasHandle handle_;
};

// x ~ N(0, 1) rounded to BF16 (so the CPU sees the kernel's operands), never zero.
std::vector<float> random_x(const LinearCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(size_t(c.n_tokens * c.cols));
  for (auto& v : x) {
    v = round_to_bf16(dist(rng));
    if (v == 0.0f) v = 0.5f;
  }
  return x;
}

uint32_t case_seed(const LinearCase& c) {
  return uint32_t(c.rows * 131 + c.cols * 7 + c.n_tokens) + uint32_t(c.format);
}

// y with kCanary poisoned floats each side; returns the whole buffer.
std::vector<float> run_guarded(const DeviceLinear& lin, size_t ny, uint32_t poison_bits,
                               const std::string& name) {
  float poison;
  std::memcpy(&poison, &poison_bits, 4);
  auto d_y = cuda::DeviceBuffer<float>::create(ny + 2 * kCanary);
  EXPECT_TRUE(d_y.ok());
  if (!d_y.ok()) return {};
  EXPECT_TRUE(d_y->upload(std::vector<float>(ny + 2 * kCanary, poison)).ok());
  const Status s = lin.run(d_y->get() + kCanary, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << name;
  EXPECT_TRUE(s.ok()) << name << ": " << s.message();
  auto got = d_y->download();
  EXPECT_TRUE(got.ok());
  return got.ok() ? *got : std::vector<float>{};
}

class LinearSm90 : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearSm90, MatchesCpu) {
  SKIP_WITHOUT_GPU();
  const LinearCase c = GetParam();
  const std::string name = case_name(c);
  const uint32_t seed = case_seed(c);
  const QuantizedWeight q = random_weight(c, seed);
  const std::vector<float> x = random_x(c, seed + 1);
  std::vector<float> want(size_t(c.n_tokens * c.rows));
  LinearParams cp{x.data(), q.view(), want.data(), c.n_tokens};
  ASSERT_TRUE(check_linear(cp).ok());
  cpu::linear(cp);

  const DeviceLinear lin(q, x, c.n_tokens);
  const size_t ny = want.size();
  const std::vector<float> got = run_guarded(lin, ny, kPoisonBits, name);
  ASSERT_EQ(got.size(), ny + 2 * kCanary) << name;
  for (int i = 0; i < kCanary; ++i) {
    uint32_t before, after;
    std::memcpy(&before, &got[size_t(i)], 4);
    std::memcpy(&after, &got[ny + kCanary + size_t(i)], 4);
    ASSERT_EQ(before, kPoisonBits) << name << ": canary before the output overwritten at " << i;
    ASSERT_EQ(after, kPoisonBits) << name << ": canary after the output overwritten at " << i;
  }
  const float tol = 1e-5f * std::sqrt(float(c.cols));
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    float ref_max = 0.0f;
    for (int64_t n = 0; n < c.rows; ++n) ref_max = std::max(ref_max, std::fabs(want[size_t(t * c.rows + n)]));
    ASSERT_GT(ref_max, 0.0f) << name << ": all-zero reference row " << t;
    for (int64_t n = 0; n < c.rows; ++n) {
      const float gv = got[size_t(kCanary + t * c.rows + n)], wv2 = want[size_t(t * c.rows + n)];
      ASSERT_TRUE(std::isfinite(gv)) << name << ": non-finite output (NaN = unwritten) at [" << t << ", " << n
                                     << "]";
      ASSERT_LE(std::fabs(gv - wv2), tol * ref_max)
          << name << ": first bad index [" << t << ", " << n << "]: gpu " << gv << " cpu " << wv2
          << " (tolerance " << tol << " · row max " << ref_max << ")";
    }
  }
}

// The path heuristic (host only: runs in CI) against the winners measured on the H100
// (docs/performance.md, "linear, many tokens", session 6): wgmma GEMM for pro.w2 at 128/512 tokens
// and NVFP4 flash.w2 at 512, dequantize + cuBLAS for the other V4 expert shapes and at 4096 tokens.
// NVFP4 pro.w1 at 4096 tokens measured a 1% tie (wgmma 386.6 µs, dequantize + cuBLAS 391.1): either.
TEST(LinearSm90Path, PicksMeasuredWinner) {
  using P = cuda::LinearPath;
  struct Expect {
    int64_t rows, cols, n_tokens;
    P nvfp4, fp8;
    bool tie = false;
  };
  constexpr auto kPrefill = P::kPrefill, kDequant = P::kDequantCublas;
  const Expect cases[] = {
      {2048, 4096, 128, kDequant, kDequant},        {2048, 4096, 512, kDequant, kDequant},
      {2048, 4096, 4096, kDequant, kDequant},       {4096, 2048, 128, kDequant, kDequant},
      {4096, 2048, 512, kPrefill, kDequant},        {4096, 2048, 4096, kDequant, kDequant},
      {3072, 7168, 128, kDequant, kDequant},        {3072, 7168, 512, kDequant, kDequant},
      {3072, 7168, 4096, kPrefill, kDequant, true}, {7168, 3072, 128, kPrefill, kPrefill},
      {7168, 3072, 512, kPrefill, kPrefill},        {7168, 3072, 4096, kDequant, kDequant}};
  for (const WeightFormat f : {WeightFormat::kNVFP4, WeightFormat::kFP8Block128})
    for (const Expect& e : cases) {
      const cuda::PackedWeightView w{f, e.rows, e.cols, e.rows, e.cols, nullptr, nullptr, 1.0f};
      const P want = f == WeightFormat::kNVFP4 ? e.nvfp4 : e.fp8;
      const P got = cuda::linear_sm90_path(w, e.n_tokens);
      if (e.tie && f == WeightFormat::kNVFP4)
        EXPECT_TRUE(got == kPrefill || got == kDequant);
      else
        EXPECT_EQ(int(got), int(want))
            << weight_format_name(f) << " [" << e.rows << ", " << e.cols << "] n_tokens=" << e.n_tokens;
    }
  const cuda::PackedWeightView nv{WeightFormat::kNVFP4, 7168, 3072, 7168, 3072, nullptr, nullptr, 1.0f};
  EXPECT_EQ(int(cuda::linear_sm90_path(nv, 64)), int(cuda::LinearPath::kDecode));
  const cuda::PackedWeightView bf{WeightFormat::kBF16, 7168, 3072, 7168, 3072, nullptr, nullptr, 1.0f};
  EXPECT_EQ(int(cuda::linear_sm90_path(bf, 512)), int(cuda::LinearPath::kCublas));
}

// Which forced paths a call accepts (host only): the benchmarks force each path the heuristic
// chooses between, and linear_sm90 refuses one that cannot run the case.
TEST(LinearSm90Path, ForcedPathRuns) {
  using P = cuda::LinearPath;
  constexpr auto kNv = WeightFormat::kNVFP4, kBf = WeightFormat::kBF16;
  EXPECT_TRUE(cuda::linear_path_runs(P::kDecode, kNv, cuda::kDecodeMaxTokens, 1));
  EXPECT_FALSE(cuda::linear_path_runs(P::kDecode, kNv, cuda::kDecodeMaxTokens + 1, 1));
  EXPECT_TRUE(cuda::linear_path_runs(P::kPrefill, kNv, 4096, 1));
  EXPECT_FALSE(cuda::linear_path_runs(P::kPrefill, kNv, 4096, 2));
  EXPECT_TRUE(cuda::linear_path_runs(P::kDequantCublas, WeightFormat::kFP8Block128, 4096, 2));
  EXPECT_FALSE(cuda::linear_path_runs(P::kDequantCublas, kBf, 4096, 1));
  EXPECT_FALSE(cuda::linear_path_runs(P::kCublas, kNv, 4096, 1));
  EXPECT_TRUE(cuda::linear_path_runs(P::kCublas, kBf, 1, 1));
  EXPECT_TRUE(cuda::linear_path_runs(P::kAuto, kBf, 1, 1));
  EXPECT_STREQ(cuda::linear_path_name(P::kDequantCublas), "dequant+cublas");
}

// V4-Flash experts w1/w3 [2048, 4096], w2 [4096, 2048]; V4-Pro [3072, 7168], [7168, 3072];
// attention wq_b [32768, 1024] FP8; ragged rows/cols/token counts. ≤ 64 tokens run the decode
// kernel; above, linear_sm90_path picks the wgmma GEMM (the cases marked "wgmma": partial
// 128-token tiles, rows off the 256-row CTA and the 16-row tile, cols off 128) or dequantize +
// cuBLAS (the others). The MoE cases cover the wgmma GEMM's ragged handling further.
INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearSm90,
    ::testing::Values(LinearCase{WeightFormat::kNVFP4, 2048, 4096, 1, "flash w1"},
                      LinearCase{WeightFormat::kNVFP4, 2048, 4096, 8, "flash w1"},
                      LinearCase{WeightFormat::kNVFP4, 2048, 4096, 64, "flash w1"},
                      LinearCase{WeightFormat::kNVFP4, 4096, 2048, 17, "flash w2"},
                      LinearCase{WeightFormat::kNVFP4, 3072, 7168, 3, "pro w1"},
                      LinearCase{WeightFormat::kNVFP4, 7168, 3072, 64, "pro w2"},
                      LinearCase{WeightFormat::kMXFP4, 2048, 4096, 1, "flash w1"},
                      LinearCase{WeightFormat::kMXFP4, 4096, 2048, 64, "flash w2"},
                      LinearCase{WeightFormat::kMXFP4, 3072, 7168, 17, "pro w1"},
                      LinearCase{WeightFormat::kMXFP4, 7168, 3072, 3, "pro w2"},
                      LinearCase{WeightFormat::kFP8Block128, 32768, 1024, 1, "wq_b"},
                      LinearCase{WeightFormat::kFP8Block128, 32768, 1024, 64, "wq_b"},
                      LinearCase{WeightFormat::kFP8Block128, 2048, 4096, 8, "shared expert"},
                      LinearCase{WeightFormat::kNVFP4, 100, 96, 1, "ragged"},
                      LinearCase{WeightFormat::kNVFP4, 100, 96, 3, "ragged"},
                      LinearCase{WeightFormat::kNVFP4, 37, 480, 17, "ragged"},
                      LinearCase{WeightFormat::kNVFP4, 300, 352, 64, "ragged"},
                      LinearCase{WeightFormat::kNVFP4, 37, 4000, 3, "ragged, split-K, last split adds"},
                      LinearCase{WeightFormat::kNVFP4, 37, 4000, 5, "ragged, split-K, reduce kernel"},
                      LinearCase{WeightFormat::kMXFP4, 100, 96, 3, "ragged"},
                      LinearCase{WeightFormat::kMXFP4, 37, 480, 64, "ragged"},
                      LinearCase{WeightFormat::kFP8Block128, 130, 200, 3, "ragged"},
                      LinearCase{WeightFormat::kFP8Block128, 77, 1000, 17, "ragged"},
                      LinearCase{WeightFormat::kBF16, 300, 160, 5, "ragged"},
                      LinearCase{WeightFormat::kBF16, 2048, 4096, 8, "flash w1"},
                      LinearCase{WeightFormat::kNVFP4, 300, 352, 65, "many tokens, ragged"},
                      LinearCase{WeightFormat::kMXFP4, 2048, 4096, 300, "many tokens, flash w1"},
                      LinearCase{WeightFormat::kFP8Block128, 130, 200, 129, "many tokens, ragged"},
                      LinearCase{WeightFormat::kNVFP4, 2048, 4096, 1000, "many tokens, flash w1"},
                      LinearCase{WeightFormat::kNVFP4, 4096, 2048, 300, "many tokens, flash w2"},
                      LinearCase{WeightFormat::kMXFP4, 4096, 2048, 129, "many tokens, flash w2"},
                      LinearCase{WeightFormat::kNVFP4, 3072, 7168, 129, "many tokens, pro w1"},
                      LinearCase{WeightFormat::kMXFP4, 7168, 3072, 65, "many tokens, pro w2 (wgmma)"},
                      LinearCase{WeightFormat::kFP8Block128, 32768, 1024, 200, "many tokens, wq_b (wgmma)"},
                      LinearCase{WeightFormat::kFP8Block128, 2048, 4096, 300, "many tokens, shared expert"},
                      LinearCase{WeightFormat::kNVFP4, 37, 480, 200, "many tokens, ragged"},
                      LinearCase{WeightFormat::kMXFP4, 100, 96, 77, "many tokens, ragged"},
                      LinearCase{WeightFormat::kFP8Block128, 77, 1000, 300, "many tokens, ragged"},
                      LinearCase{WeightFormat::kNVFP4, 272, 352, 129, "many tokens, ragged"},
                      LinearCase{WeightFormat::kNVFP4, 7000, 3008, 100, "many tokens, ragged (wgmma)"},
                      LinearCase{WeightFormat::kFP8Block128, 7001, 3000, 200, "many tokens, ragged (wgmma)"},
                      LinearCase{WeightFormat::kBF16, 300, 160, 100, "many tokens"}));

// Run-to-run and graph-vs-eager determinism: the same inputs give bitwise identical outputs
// whatever was in y before (poisoned differently each run), eagerly and as replays of one CUDA
// graph (split-K's arrival counters must be left reset for the next replay). Shapes where
// split-K engages, with the last split adding the partials and with the reduce kernel, and one
// on the wgmma GEMM (no split: every output has one writer).
class LinearSm90Repeat : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearSm90Repeat, BitwiseIdenticalEagerAndGraph) {
  SKIP_WITHOUT_GPU();
  const LinearCase c = GetParam();
  const std::string name = case_name(c);
  const QuantizedWeight q = random_weight(c, case_seed(c));
  const DeviceLinear lin(q, random_x(c, case_seed(c) + 1), c.n_tokens);
  const size_t ny = size_t(c.n_tokens * c.rows);
  const std::vector<float> first = run_guarded(lin, ny, kPoisonBits, name + " eager 1");
  ASSERT_EQ(first.size(), ny + 2 * kCanary);
  for (size_t i = kCanary; i < kCanary + ny; ++i)
    ASSERT_TRUE(std::isfinite(first[i])) << name << ": output " << i - kCanary << " unwritten or not finite";
  const std::vector<float> second = run_guarded(lin, ny, 0x7FC00456u, name + " eager 2");

  // The same call captured once, replayed twice over differently poisoned outputs.
  auto d_y = cuda::DeviceBuffer<float>::create(ny);
  ASSERT_TRUE(d_y.ok());
  cudaStream_t st;
  ASSERT_EQ(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const Status s = lin.run(d_y->get(), st);
  ASSERT_EQ(cudaStreamEndCapture(st, &graph), cudaSuccess) << name;
  ASSERT_TRUE(s.ok()) << name << ": " << s.message();
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess) << name;
  std::vector<std::vector<float>> replays;
  for (const uint8_t poison : {0xFF, 0x7F}) {  // NaN patterns: an unwritten output shows
    ASSERT_EQ(cudaMemsetAsync(d_y->get(), poison, ny * sizeof(float), st), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, st), cudaSuccess) << name;
    ASSERT_EQ(cudaStreamSynchronize(st), cudaSuccess) << name;
    auto got = d_y->download();
    ASSERT_TRUE(got.ok());
    replays.push_back(*got);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
  const std::vector<float> third = run_guarded(lin, ny, kPoisonBits, name + " eager 3");

  const auto expect_same = [&](const float* got, const std::string& what) {
    for (size_t i = 0; i < ny; ++i)
      if (std::memcmp(got + i, &first[kCanary + i], sizeof(float)) != 0) {
        ADD_FAILURE() << name << ": " << what << " differs from the first eager run at output " << i << ": "
                      << got[i] << " vs " << first[kCanary + i];
        return;
      }
  };
  expect_same(second.data() + kCanary, "second eager run");
  expect_same(replays[0].data(), "first graph replay");
  expect_same(replays[1].data(), "second graph replay");
  expect_same(third.data() + kCanary, "eager run after the replays");
}

INSTANTIATE_TEST_SUITE_P(
    SplitK, LinearSm90Repeat,
    ::testing::Values(LinearCase{WeightFormat::kNVFP4, 2048, 4096, 1, "flash w1, last split adds"},
                      LinearCase{WeightFormat::kNVFP4, 2048, 4096, 8, "flash w1, reduce kernel"},
                      LinearCase{WeightFormat::kNVFP4, 2048, 4096, 64, "flash w1, reduce kernel"},
                      LinearCase{WeightFormat::kNVFP4, 7168, 3072, 8, "pro w2, last split adds"},
                      LinearCase{WeightFormat::kMXFP4, 3072, 7168, 3, "pro w1, last split adds"},
                      LinearCase{WeightFormat::kFP8Block128, 32768, 1024, 1, "wq_b, last split adds"},
                      LinearCase{WeightFormat::kNVFP4, 37, 4000, 3, "ragged, last split adds"},
                      LinearCase{WeightFormat::kNVFP4, 37, 4000, 5, "ragged, reduce kernel"},
                      LinearCase{WeightFormat::kNVFP4, 7168, 3072, 200, "pro w2, wgmma"}));

}  // namespace
}  // namespace dsv4
