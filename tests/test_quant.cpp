// Packed formats: exact dequantization of every code × scale, bit-exact round trips, and the
// quantizers' recipes (src/core/quant.h).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/numeric.h"
#include "core/quant.h"

namespace dsv4 {
namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(size_t(rows * cols));
  for (auto& x : v) x = d(rng);
  return v;
}

TEST(Quant, Nvfp4EveryCodeTimesEveryScaleIsExact) {
  // One row per E4M3 scale byte, 16 columns = one block holding every e2m1 code.
  const int64_t rows = 256, cols = 16;
  std::vector<uint8_t> codes(size_t(rows * cols / 2)), scales(rows);
  for (int64_t r = 0; r < rows; ++r) {
    scales[size_t(r)] = uint8_t(r);
    for (int k = 0; k < 16; k += 2) codes[size_t(r * 8 + k / 2)] = uint8_t(k | ((k + 1) << 4));
  }
  const float global = 0.375f;
  const WeightView w{WeightFormat::kNVFP4, rows, cols, codes.data(), scales.data(), global};
  std::vector<float> row(cols);
  std::vector<uint16_t> row_bf16(cols);
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(w, r, row.data());
    dequantize_row_bf16(w, r, row_bf16.data());
    const float s = e4m3_to_f32(uint8_t(r));
    for (int k = 0; k < 16; ++k) {
      const float want = e2m1_to_f32(uint8_t(k)) * s * global;
      if (std::isnan(s)) {
        EXPECT_TRUE(std::isnan(row[size_t(k)]));
        continue;
      }
      ASSERT_EQ(row[size_t(k)], want) << "scale byte " << r << " code " << k;
      // code × E4M3 scale has <= 6 significant bits: exact in BF16 (weight_scale_2 excluded).
      ASSERT_EQ(bf16_to_f32(row_bf16[size_t(k)]), e2m1_to_f32(uint8_t(k)) * s) << r << " " << k;
      // Signed scales: a negative scale byte flips the sign, it is not clamped away.
      if (r & 0x80) ASSERT_EQ(std::signbit(row[size_t(k)]), !std::signbit(e2m1_to_f32(uint8_t(k))));
    }
  }
}

TEST(Quant, Mxfp4EveryCodeTimesEveryExponentIsExact) {
  const int64_t rows = 256, cols = 32;
  std::vector<uint8_t> codes(size_t(rows * cols / 2)), scales(rows);
  for (int64_t r = 0; r < rows; ++r) {
    scales[size_t(r)] = uint8_t(r);
    for (int k = 0; k < 32; k += 2) codes[size_t(r * 16 + k / 2)] = uint8_t((k % 16) | (((k + 1) % 16) << 4));
  }
  const WeightView w{WeightFormat::kMXFP4, rows, cols, codes.data(), scales.data(), 1.0f};
  std::vector<float> row(cols);
  std::vector<uint16_t> row_bf16(cols);
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(w, r, row.data());
    dequantize_row_bf16(w, r, row_bf16.data());
    for (int k = 0; k < 32; ++k) {
      const double want = double(e2m1_to_f32(uint8_t(k % 16))) * std::pow(2.0, double(r) - 127);
      if (r == 255) {
        ASSERT_TRUE(std::isnan(row[size_t(k)]));  // E8M0 255 is NaN
        continue;
      }
      if (std::fabs(want) > double(std::numeric_limits<float>::max())) {
        ASSERT_TRUE(std::isinf(row[size_t(k)])) << r << " " << k;  // 6·2^127 overflows fp32
        continue;
      }
      ASSERT_EQ(double(row[size_t(k)]), want) << "exponent " << r << " code " << k % 16;
      ASSERT_EQ(bf16_to_f32(row_bf16[size_t(k)]), row[size_t(k)]) << r << " " << k;
    }
  }
}

TEST(Quant, Fp8BlockEveryByteTimesScaleIsExact) {
  const int64_t rows = 256, cols = 256;  // 2×2 blocks of 128
  std::vector<uint8_t> data(size_t(rows * cols));
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i);
  const std::vector<uint8_t> scales = {127, 120, 130, 100};
  const WeightView w{WeightFormat::kFP8Block128, rows, cols, data.data(), scales.data(), 1.0f};
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t k = 0; k < cols; ++k) {
      const float v = e4m3_to_f32(data[size_t(r * cols + k)]);
      const float s = e8m0_to_f32(scales[size_t((r / 128) * 2 + k / 128)]);
      if (std::isnan(v)) {
        ASSERT_TRUE(std::isnan(row[size_t(k)]));
        continue;
      }
      ASSERT_EQ(row[size_t(k)], v * s);
    }
  }
}

// Quantize → dequantize → quantize reproduces the dequantized values exactly, and the bits too
// except for MXFP4: with DeepSeek's 2^ceil(log2(amax/6)) rule a block whose largest code is ±3
// re-blocks to half the scale (code ±6), which encodes the same values differently.
class QuantRoundTrip : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(QuantRoundTrip, RequantizingTheDequantizedWeightGivesTheSameBits) {
  const WeightFormat f = GetParam();
  const int64_t rows = 130, cols = 320;
  const auto w = random_matrix(rows, cols, 7, 0.05f);
  const QuantizedWeight q = quantize_weight(f, w.data(), rows, cols);
  std::vector<float> deq(w.size());
  for (int64_t r = 0; r < rows; ++r) dequantize_row(q.view(), r, deq.data() + r * cols);
  const QuantizedWeight q2 = quantize_weight(f, deq.data(), rows, cols);
  std::vector<float> deq2(w.size());
  for (int64_t r = 0; r < rows; ++r) dequantize_row(q2.view(), r, deq2.data() + r * cols);
  EXPECT_EQ(deq2, deq);
  if (f != WeightFormat::kMXFP4) {
    EXPECT_EQ(q2.data, q.data);
    EXPECT_EQ(q2.scales, q.scales);
    EXPECT_EQ(q2.global_scale, q.global_scale);
  }
  // And the error against the original is what the format allows.
  double num = 0, den = 0;
  for (size_t i = 0; i < w.size(); ++i) num += (deq[i] - w[i]) * (deq[i] - w[i]), den += w[i] * w[i];
  const double rel = std::sqrt(num / den);
  const double bound = (f == WeightFormat::kF32)           ? 0
                       : (f == WeightFormat::kBF16)        ? 4e-3
                       : (f == WeightFormat::kFP8Block128) ? 0.05
                                                           : 0.2;
  EXPECT_LE(rel, bound) << weight_format_name(f);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantRoundTrip,
                         ::testing::Values(WeightFormat::kF32, WeightFormat::kBF16,
                                           WeightFormat::kFP8Block128, WeightFormat::kMXFP4,
                                           WeightFormat::kNVFP4));

TEST(Quant, Nvfp4WeightFollowsTheModelOptRecipe) {
  const int64_t rows = 4, cols = 64;
  auto w = random_matrix(rows, cols, 3);
  w[17] = 9.0f;  // the tensor amax
  const QuantizedWeight q = quantize_nvfp4_weight(w.data(), rows, cols);
  EXPECT_FLOAT_EQ(q.global_scale, 9.0f / (6 * 448));
  // The block holding the amax gets scale 448 exactly, and the amax element code 6.
  EXPECT_EQ(e4m3_to_f32(q.scales[1]), 448.0f);
  EXPECT_EQ(q.data[8] >> 4, 7);  // element 17 (odd) is the high nibble of byte 8: code +6
}

TEST(Quant, Nvfp4ActivationWithLargeAmaxLosesNoMagnitude) {
  // A stale calibrated input_scale fit for |x| <= 1 would put this tensor's block scales far above
  // E4M3's 448 (they would saturate and shrink the values); the run-time global scale does not.
  const int64_t rows = 3, cols = 64;
  auto x = random_matrix(rows, cols, 11);
  for (auto& v : x) v *= 5000.0f;
  const float stale_input_scale = 1.0f / (6 * 448);
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  ASSERT_GT(amax / (6 * stale_input_scale), 448.0f * 100);  // the stale scale would overflow

  const Nvfp4Activation a = quantize_nvfp4_activation(x.data(), rows, cols);
  EXPECT_FLOAT_EQ(a.global_scale, amax / (6 * 448));
  std::vector<float> deq(x.size());
  for (int64_t r = 0; r < rows; ++r) dequantize_row(a.view(), r, deq.data() + r * cols);
  float deq_amax = 0;
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    deq_amax = std::max(deq_amax, std::fabs(deq[i]));
    num += (deq[i] - x[i]) * (deq[i] - x[i]);
    den += x[i] * x[i];
  }
  EXPECT_FLOAT_EQ(deq_amax, amax);  // the largest element maps to code 6 × block scale 448 × g
  EXPECT_LT(std::sqrt(num / den), 0.15);
  for (uint8_t s : a.block_scales) EXPECT_LE(e4m3_to_f32(s), 448.0f);
}

TEST(Quant, Nvfp4ActivationOfZerosIsZero) {
  std::vector<float> x(32, 0.0f);
  const Nvfp4Activation a = quantize_nvfp4_activation(x.data(), 1, 32);
  EXPECT_EQ(a.global_scale, 0.0f);
  std::vector<float> deq(32, 1.0f);
  dequantize_row(a.view(), 0, deq.data());
  for (float v : deq) EXPECT_EQ(v, 0.0f);
}

TEST(Quant, Mxfp4ScalesArePowersOfTwoCoveringTheBlock) {
  const auto w = random_matrix(2, 64, 5);
  const QuantizedWeight q = quantize_mxfp4(w.data(), 2, 64);
  for (int64_t r = 0; r < 2; ++r)
    for (int b = 0; b < 2; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(w[size_t(r * 64 + b * 32 + i)]));
      const float s = e8m0_to_f32(q.scales[size_t(r * 2 + b)]);
      EXPECT_LE(amax / s, 6.0f);
      EXPECT_GT(amax / s, 3.0f);  // the smallest such power of two
    }
}

}  // namespace
}  // namespace dsv4
