// test_ops for quantize_nvfp4_activation: the GPU quantizer (one launch, run-time global scale)
// against the CPU's (core/quant.cpp) bit for bit — codes, block scales and the global scale — on
// random inputs with ragged shapes, zero rows, magnitudes from 1e-38 to 3e38 and values exactly
// on E2M1 rounding midpoints. Outputs poisoned first, canaries around them; each case runs twice
// (the second launch finds the counters the first one reset).
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <random>

#include "cuda/device_buffer.h"
#include "cuda/quantize_nvfp4_activation.h"
#include "gpu_test_util.h"

namespace dsv4 {
namespace {
using namespace gpu_test;

struct QuantCase {
  int64_t rows, cols;
  enum Kind { kNormal, kZeroRows, kDecades, kHuge, kTiny, kMidpoints, kAllZero } kind;
  const char* what;
};

std::vector<float> make_input(const QuantCase& c, uint32_t seed) {
  const int64_t R = c.rows, C = c.cols;
  std::vector<float> x = random_normal(size_t(R * C), seed);
  std::mt19937 rng(seed + 1);
  switch (c.kind) {
    case QuantCase::kNormal:
      break;
    case QuantCase::kZeroRows:  // every third row zero, and one zero block in every other row
      for (int64_t r = 0; r < R; ++r)
        for (int64_t i = 0; i < C; ++i)
          if (r % 3 == 0 || (r % 2 == 1 && i < 16)) x[size_t(r * C + i)] = 0.0f;
      break;
    case QuantCase::kDecades:  // each block scaled by 10^[-12, 3]: block scales span E4M3, subnormals too
      for (int64_t b = 0; b < R * C / 16; ++b) {
        const float f = std::pow(10.0f, float(int(rng() % 16)) - 12.0f);
        for (int i = 0; i < 16; ++i) x[size_t(b * 16 + i)] *= f;
      }
      break;
    case QuantCase::kHuge:
      for (auto& v : x) v *= 1e37f;
      x[size_t(rng() % x.size())] = -3.0e38f;
      break;
    case QuantCase::kTiny:  // amax ~1e-38: the global scale is an fp32 subnormal
      for (auto& v : x) v *= 2e-39f;
      break;
    case QuantCase::kMidpoints: {
      // amax = 2688, so the global scale is 1 and a block whose amax is 6·s has scale s exactly;
      // its values s·{0.25, 0.75, ..., 5} sit on the E2M1 rounding midpoints (ties to the even code).
      const float mids[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
      for (int64_t b = 0; b < R * C / 16; ++b) {
        const float s = std::ldexp(1.0f, int(rng() % 12) - 6);
        for (int i = 0; i < 16; ++i) {
          const float sign = rng() % 2 ? -1.0f : 1.0f;
          x[size_t(b * 16 + i)] = i == 0 ? 6.0f * s : sign * mids[rng() % 7] * s;
        }
      }
      x[0] = 2688.0f;  // block 0's scale: 448
      break;
    }
    case QuantCase::kAllZero:
      std::fill(x.begin(), x.end(), 0.0f);
      break;
  }
  return x;
}

void run_quant(const QuantCase& c) {
  const std::string name =
      fmt::format("quantize_nvfp4_activation rows={} cols={} ({})", c.rows, c.cols, c.what);
  const std::vector<float> x = make_input(c, 4242u + uint32_t(c.rows * 3 + c.cols + int(c.kind)));
  const int64_t R = c.rows, C = c.cols;
  std::vector<uint8_t> want_codes(size_t(R * C / 2)), want_scales(size_t(R * C / 16));
  float want_global = 0.0f;
  QuantizeNvfp4ActivationParams p{x.data(), want_codes.data(), want_scales.data(), &want_global, R, C};
  ASSERT_TRUE(check_quantize_nvfp4_activation(p).ok()) << name;
  cpu::quantize_nvfp4_activation(p);
  if (c.kind != QuantCase::kAllZero) ASSERT_GT(want_global, 0.0f) << name;

  auto d_x = to_device(x);
  auto counters = to_device(std::vector<uint32_t>(cuda::kQuantizeNvfp4Counters, 0));
  for (int rep = 0; rep < 2; ++rep) {
    const std::string what = fmt::format("{} call {}", name, rep + 1);
    GuardedOutput<uint8_t> codes(want_codes.size(), 0xEE), scales(want_scales.size(), 0xEE);
    GuardedOutput<float> global(1, poison_float());
    const QuantizeNvfp4ActivationParams q{d_x.get(), codes.data(), scales.data(), global.data(), R, C};
    const Status st = cuda::quantize_nvfp4_activation(q, counters.get(), nullptr);
    ASSERT_TRUE(st.ok()) << what << ": " << st.message();
    const std::vector<uint8_t> got_codes = codes.download(what + " codes"),
                               got_scales = scales.download(what + " block scales");
    const float got_global = global.download(what + " global scale")[0];
    ASSERT_EQ(std::bit_cast<uint32_t>(got_global), std::bit_cast<uint32_t>(want_global))
        << what << ": global scale gpu " << got_global << " cpu " << want_global;
    for (size_t i = 0; i < got_scales.size(); ++i)
      ASSERT_EQ(got_scales[i], want_scales[i]) << what << ": first bad block scale at [" << i / size_t(C / 16)
                                               << ", " << i % size_t(C / 16) << "]";
    for (size_t i = 0; i < got_codes.size(); ++i)
      ASSERT_EQ(got_codes[i], want_codes[i])
          << what << ": first bad code byte at [" << i / size_t(C / 2) << ", " << i % size_t(C / 2)
          << "] (columns " << 2 * (i % size_t(C / 2)) << ", +1)";
  }
  const auto left = counters.download();
  ASSERT_TRUE(left.ok());
  for (const uint32_t v : left.value()) ASSERT_EQ(v, 0u) << name << ": counters not reset";
}

TEST(GpuOps, QuantizeNvfp4Activation) {
  SKIP_WITHOUT_GPU();
  using Q = QuantCase;
  const QuantCase cases[] = {
      {1, 4096, Q::kNormal, "flash decode"},
      {64, 7168, Q::kNormal, "pro, 64 tokens"},
      {512, 4096, Q::kNormal, "several amax chunks"},
      {1, 16, Q::kNormal, "one block"},
      {3, 48, Q::kNormal, "ragged"},
      {7, 2064, Q::kZeroRows, "zero rows and blocks"},
      {33, 1024, Q::kDecades, "block scales over E4M3's range"},
      {5, 4096, Q::kHuge, "amax 3e38"},
      {5, 256, Q::kTiny, "subnormal global scale"},
      {16, 512, Q::kMidpoints, "E2M1 midpoints"},
      {2, 64, Q::kAllZero, "all zero"},
  };
  for (const QuantCase& c : cases) run_quant(c);
}

}  // namespace
}  // namespace dsv4
