// test_ops: dequantize_bf16 on the GPU against the CPU's dequantize_row_bf16 on fresh random
// weights with the same quantized bits: bit-exact, outputs poisoned first, canaries around them.
// (The other ops' cases live beside this file, one file per op family.)
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/numeric.h"
#include "core/quant.h"
#include "cuda/dequantize.h"
#include "gpu_test_util.h"

namespace dsv4 {
namespace {
using gpu_test::GuardedOutput;
using gpu_test::to_device;

constexpr uint16_t kPoison = 0x7FC1;  // a BF16 NaN no op writes

struct DequantCase {
  WeightFormat format;
  int64_t rows, cols;
};

std::string case_name(const DequantCase& c) {
  return fmt::format("dequantize_bf16 format={} rows={} cols={}", weight_format_name(c.format), c.rows,
                     c.cols);
}

class DequantizeBf16 : public ::testing::TestWithParam<DequantCase> {};

TEST_P(DequantizeBf16, MatchesCpuBitExactly) {
  SKIP_WITHOUT_GPU();
  const DequantCase c = GetParam();
  const std::vector<float> w =
      gpu_test::random_normal(size_t(c.rows * c.cols), 1234 + uint32_t(c.rows * 31 + c.cols));
  const QuantizedWeight q = quantize_weight(c.format, w.data(), c.rows, c.cols);
  auto d_data = to_device(q.data);
  auto d_scales = to_device(q.scales.empty() ? std::vector<uint8_t>{0} : q.scales);
  const size_t n = size_t(c.rows * c.cols);
  GuardedOutput<uint16_t> out(n, kPoison);

  WeightView dv = q.view();
  dv.data = d_data.get();
  dv.scales = d_scales.get();
  const Status s = cuda::dequantize_bf16(dv, out.data(), nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  const std::vector<uint16_t> got = out.download(case_name(c));

  std::vector<uint16_t> want(n);
  for (int64_t r = 0; r < c.rows; ++r) dequantize_row_bf16(q.view(), r, want.data() + r * c.cols);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_FALSE(std::isnan(bf16_to_f32(got[i]))) << case_name(c) << ": NaN at " << i;
    ASSERT_EQ(got[i], want[i]) << case_name(c) << ": first mismatch at [" << i / size_t(c.cols) << ", "
                               << i % size_t(c.cols) << "]: gpu " << bf16_to_f32(got[i]) << " cpu "
                               << bf16_to_f32(want[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, DequantizeBf16,
    ::testing::Values(DequantCase{WeightFormat::kNVFP4, 2048, 4096}, DequantCase{WeightFormat::kNVFP4, 3, 32},
                      DequantCase{WeightFormat::kMXFP4, 4096, 2048}, DequantCase{WeightFormat::kMXFP4, 1, 64},
                      DequantCase{WeightFormat::kFP8Block128, 512, 4096},
                      DequantCase{WeightFormat::kFP8Block128, 130, 200},
                      DequantCase{WeightFormat::kBF16, 7, 33}, DequantCase{WeightFormat::kF32, 5, 17}),
    [](const ::testing::TestParamInfo<DequantCase>& info) {
      std::string f(weight_format_name(info.param.format));
      f.erase(std::remove_if(f.begin(), f.end(),
                             [](char ch) { return !std::isalnum(static_cast<unsigned char>(ch)); }),
              f.end());
      return fmt::format("{}_{}x{}", f, info.param.rows, info.param.cols);
    });

}  // namespace
}  // namespace dsv4
