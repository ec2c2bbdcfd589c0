// Helpers shared by the GPU op tests (test_ops): skipping without a GPU, seeded random inputs,
// guarded device outputs (poisoned, with canaries each side) and comparisons that name the op,
// its parameters, the first bad index and both values.
#pragma once

#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/device_buffer.h"

namespace dsv4::gpu_test {

#define SKIP_WITHOUT_GPU() \
  if (::dsv4::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

constexpr size_t kCanary = 64;                 // guard elements each side of an output
constexpr uint32_t kPoisonBits = 0x7FC0DEADu;  // a NaN payload no op writes
constexpr int32_t kPoisonId = 0x7EADBEEF;

inline float poison_float() {
  float f;
  std::memcpy(&f, &kPoisonBits, sizeof f);
  return f;
}

// The seed of a test's inputs: DSV4_TEST_SEED (default fixed) mixed with a per-case salt.
inline uint32_t seed(uint32_t salt) {
  const char* env = std::getenv("DSV4_TEST_SEED");
  return (env ? uint32_t(std::strtoul(env, nullptr, 10)) : 20240501u) * 2654435761u + salt;
}

// n floats ~ N(mean, stddev) from the seed (never all zero).
inline std::vector<float> random_normal(size_t n, uint32_t seed, float mean = 0.0f, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// A cuBLAS handle for the test's lifetime (null, with a recorded failure, when creation fails).
class CublasHandle {
 public:
  CublasHandle() {
    if (cublasCreate(&h_) != CUBLAS_STATUS_SUCCESS) {
      ADD_FAILURE() << "cublasCreate failed";
      h_ = nullptr;
    }
  }
  ~CublasHandle() {
    if (h_) cublasDestroy(h_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// A device copy of v; a failure is recorded and yields an empty buffer.
template <typename T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& v) {
  auto b = cuda::DeviceBuffer<T>::create(v.size());
  if (!b.ok()) {
    ADD_FAILURE() << b.status().message();
    return {};
  }
  const Status s = b->upload(v);
  if (!s.ok()) ADD_FAILURE() << s.message();
  return std::move(b.value());
}

// A device output of n elements with kCanary poisoned elements on each side.
template <typename T>
struct GuardedOutput {
  explicit GuardedOutput(size_t n, T poison)
      : n(n), poison(poison), buf(to_device(std::vector<T>(n + 2 * kCanary, poison))) {}
  T* data() { return buf.get() + kCanary; }
  // The n outputs, after checking (via gtest failures) that both canaries are intact.
  std::vector<T> download(const std::string& what) {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    auto all = buf.download();
    if (!all.ok()) {
      ADD_FAILURE() << what << ": " << all.status().message();
      return std::vector<T>(n, poison);
    }
    const std::vector<T>& v = all.value();
    for (size_t i = 0; i < kCanary; ++i) {
      if (std::memcmp(&v[i], &poison, sizeof(T)) != 0) {
        ADD_FAILURE() << what << ": canary before the output overwritten at -" << kCanary - i;
        break;
      }
      if (std::memcmp(&v[kCanary + n + i], &poison, sizeof(T)) != 0) {
        ADD_FAILURE() << what << ": canary after the output overwritten at +" << i;
        break;
      }
    }
    return std::vector<T>(v.begin() + kCanary, v.begin() + kCanary + long(n));
  }
  size_t n;
  T poison;
  cuda::DeviceBuffer<T> buf;
};

// |got − want| ≤ atol_rms · rms(want) + rtol · |want| elementwise, no NaN/Inf in got (want is
// checked finite too). Prints the measured error on one line for docs/numerics.md.
inline void expect_close(const std::string& what, const std::vector<float>& got,
                         const std::vector<float>& want, double rtol, double atol_rms) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double sum_sq = 0.0;
  for (float w : want) sum_sq += double(w) * w;
  const double rms = want.empty() ? 0.0 : std::sqrt(sum_sq / double(want.size()));
  const double atol = atol_rms * std::max(rms, 1e-30);
  double max_abs = 0.0, max_rel_rms = 0.0, max_of_bound = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(want[i])) << what << ": CPU reference not finite at " << i << ": " << want[i];
    ASSERT_FALSE(std::isnan(got[i])) << what << ": NaN (unwritten or computed) at " << i << "; cpu "
                                     << want[i];
    ASSERT_FALSE(std::isinf(got[i])) << what << ": Inf at " << i << "; cpu " << want[i];
    const double err = std::fabs(double(got[i]) - double(want[i]));
    max_abs = std::max(max_abs, err);
    const double bound = atol + rtol * std::fabs(double(want[i]));
    if (bound > 0) max_of_bound = std::max(max_of_bound, err / bound);
    ASSERT_LE(err, bound) << what << ": first bad index " << i << ": gpu " << got[i] << " cpu " << want[i]
                          << " (|err| " << err << ", rms(cpu) " << rms << ")";
  }
  max_rel_rms = rms > 0 ? max_abs / rms : max_abs;
  std::printf("[ numerics ] %s: max|err| %.3g = %.3g × rms(cpu) %.3g; %.0f%% of the bound at worst\n",
              what.c_str(), max_abs, max_rel_rms, rms, 100.0 * max_of_bound);
}

}  // namespace dsv4::gpu_test
