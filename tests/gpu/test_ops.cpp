// test_ops: every CUDA op against the CPU reference on fresh random inputs with the same
// quantized bits. Outputs are poisoned first and guarded by canaries; GPU-less machines skip.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/numeric.h"
#include "core/quant.h"
#include "cuda/check.h"
#include "cuda/dequantize.h"

namespace dsv4 {
namespace {

constexpr uint16_t kPoison = 0x7FC1;  // a BF16 NaN no op writes
constexpr int kCanary = 64;           // guard elements each side of an output

#define SKIP_WITHOUT_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) { EXPECT_EQ(cudaMalloc(&p_, n * sizeof(T) + 1), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(p_); }
  T* get() { return p_; }
  void upload(const std::vector<T>& v) {
    ASSERT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() {
    std::vector<T> v(n_);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

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
  std::mt19937 rng(1234 + uint32_t(c.rows * 31 + c.cols));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(size_t(c.rows * c.cols));
  for (auto& x : w) x = dist(rng);
  const QuantizedWeight q = quantize_weight(c.format, w.data(), c.rows, c.cols);

  DeviceBuffer<uint8_t> d_data(q.data.size()), d_scales(q.scales.size() + 1);
  d_data.upload(q.data);
  if (!q.scales.empty()) d_scales.upload(q.scales);
  const size_t n = size_t(c.rows * c.cols);
  DeviceBuffer<uint16_t> d_out(n + 2 * kCanary);
  d_out.upload(std::vector<uint16_t>(n + 2 * kCanary, kPoison));

  WeightView dv = q.view();
  dv.data = d_data.get();
  dv.scales = d_scales.get();
  const Status s = cuda::dequantize_bf16(dv, d_out.get() + kCanary, nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> got = d_out.download();

  std::vector<uint16_t> want(n);
  for (int64_t r = 0; r < c.rows; ++r) dequantize_row_bf16(q.view(), r, want.data() + r * c.cols);
  for (int i = 0; i < kCanary; ++i) {
    ASSERT_EQ(got[size_t(i)], kPoison) << case_name(c) << ": canary before the output overwritten";
    ASSERT_EQ(got[n + kCanary + size_t(i)], kPoison)
        << case_name(c) << ": canary after the output overwritten";
  }
  for (size_t i = 0; i < n; ++i) {
    ASSERT_FALSE(std::isnan(bf16_to_f32(got[i + kCanary]))) << case_name(c) << ": NaN at " << i;
    ASSERT_EQ(got[i + kCanary], want[i])
        << case_name(c) << ": first mismatch at [" << i / size_t(c.cols) << ", " << i % size_t(c.cols)
        << "]: gpu " << bf16_to_f32(got[i + kCanary]) << " cpu " << bf16_to_f32(want[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, DequantizeBf16,
    ::testing::Values(DequantCase{WeightFormat::kNVFP4, 2048, 4096}, DequantCase{WeightFormat::kNVFP4, 3, 32},
                      DequantCase{WeightFormat::kMXFP4, 4096, 2048}, DequantCase{WeightFormat::kMXFP4, 1, 64},
                      DequantCase{WeightFormat::kFP8Block128, 512, 4096},
                      DequantCase{WeightFormat::kFP8Block128, 130, 200},
                      DequantCase{WeightFormat::kBF16, 7, 33}, DequantCase{WeightFormat::kF32, 5, 17}));

}  // namespace
}  // namespace dsv4
