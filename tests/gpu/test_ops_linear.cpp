// test_ops: linear on sm_90a (cuda::linear_sm90) against cpu::linear with the same quantized bits,
// and the packed layout (pack_linear_weight_sm90) decoded on the host against dequantize_row.
// x is drawn random, never zero, and rounded to BF16 before the CPU sees it, so the only
// difference left is fp32 accumulation order (tolerance: docs/numerics.md, "GPU linear").
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
#include "ops/linear.h"

namespace dsv4 {
namespace {

#define SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

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
uint32_t e2m1_bits(uint32_t q) {
  return (q & 0x8000u) | ((q & 0x7000u) >> 6);
}  // low half of the pair

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
                const int shift = 4 * j;  // a_j comes from the word shifted left by 4j
                const uint32_t qq = word[st] << shift;
                v = bf16_bits(e2m1_bits(h ? qq >> 16 : qq));
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

class LinearSm90 : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearSm90, MatchesCpu) {
  SKIP_WITHOUT_GPU();
  const LinearCase c = GetParam();
  const std::string name = case_name(c);
  const uint32_t seed = uint32_t(c.rows * 131 + c.cols * 7 + c.n_tokens) + uint32_t(c.format);
  const QuantizedWeight q = random_weight(c, seed);
  std::mt19937 rng(seed + 1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(size_t(c.n_tokens * c.cols));
  for (auto& v : x) {
    v = round_to_bf16(dist(rng));
    if (v == 0.0f) v = 0.5f;
  }
  std::vector<float> want(size_t(c.n_tokens * c.rows));
  LinearParams cp{x.data(), q.view(), want.data(), c.n_tokens};
  ASSERT_TRUE(check_linear(cp).ok());
  cpu::linear(cp);

  auto packed = cuda::pack_linear_weight_sm90(q.view());
  ASSERT_TRUE(packed.ok()) << packed.status().message();
  auto d_w = cuda::DeviceBuffer<uint8_t>::create(packed->data.size());
  auto d_s = cuda::DeviceBuffer<uint8_t>::create(std::max<size_t>(packed->scales.size(), 1));
  auto d_x = cuda::DeviceBuffer<float>::create(x.size());
  const size_t ny = want.size();
  auto d_y = cuda::DeviceBuffer<float>::create(ny + 2 * kCanary);
  ASSERT_TRUE(d_w.ok() && d_s.ok() && d_x.ok() && d_y.ok());
  ASSERT_TRUE(d_w->upload(packed->data).ok());
  if (!packed->scales.empty()) ASSERT_TRUE(d_s->upload(packed->scales).ok());
  ASSERT_TRUE(d_x->upload(x).ok());
  float poison;
  std::memcpy(&poison, &kPoisonBits, 4);
  ASSERT_TRUE(d_y->upload(std::vector<float>(ny + 2 * kCanary, poison)).ok());

  const cuda::PackedWeightView wv{packed->format,   packed->rows, packed->cols, packed->rows_pad,
                                  packed->cols_pad, d_w->get(),   d_s->get(),   packed->out_scale};
  const size_t ws_bytes = cuda::linear_sm90_workspace_bytes(wv, c.n_tokens);
  auto d_ws = cuda::DeviceBuffer<uint8_t>::create(ws_bytes);
  ASSERT_TRUE(d_ws.ok());
  cublasHandle_t handle;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const cuda::LinearSm90Params p{d_x->get(), wv,    d_y->get() + kCanary, c.n_tokens, d_ws->get(),
                                 ws_bytes,   handle};
  const Status s = cuda::linear_sm90(p, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << name;
  cublasDestroy(handle);
  ASSERT_TRUE(s.ok()) << name << ": " << s.message();
  auto got_r = d_y->download();
  ASSERT_TRUE(got_r.ok());
  const std::vector<float>& got = *got_r;

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

// V4-Flash experts w1/w3 [2048, 4096], w2 [4096, 2048]; V4-Pro [3072, 7168], [7168, 3072];
// attention wq_b [32768, 1024] FP8; ragged rows/cols/token counts; > 64 tokens (cuBLAS path).
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
                      LinearCase{WeightFormat::kMXFP4, 100, 96, 3, "ragged"},
                      LinearCase{WeightFormat::kMXFP4, 37, 480, 64, "ragged"},
                      LinearCase{WeightFormat::kFP8Block128, 130, 200, 3, "ragged"},
                      LinearCase{WeightFormat::kFP8Block128, 77, 1000, 17, "ragged"},
                      LinearCase{WeightFormat::kBF16, 300, 160, 5, "ragged"},
                      LinearCase{WeightFormat::kBF16, 2048, 4096, 8, "flash w1"},
                      LinearCase{WeightFormat::kNVFP4, 300, 352, 65, "many tokens"},
                      LinearCase{WeightFormat::kMXFP4, 2048, 4096, 300, "many tokens"},
                      LinearCase{WeightFormat::kFP8Block128, 130, 200, 129, "many tokens"}));

}  // namespace
}  // namespace dsv4
