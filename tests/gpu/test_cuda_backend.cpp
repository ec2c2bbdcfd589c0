// The CUDA backend forwards ops to the kernels (checked on rms_norm against the CPU reference)
// and refuses a linear weight that was not made resident through upload_linear_weight; its
// memory_info is the device's, which the memory plan checks before a model loads.
#include "cuda/cuda_backend.h"
#include "gpu_test_util.h"

namespace dsv4 {
namespace {
using namespace gpu_test;

TEST(CudaBackend, RunsRmsNormLikeTheCpu) {
  SKIP_WITHOUT_GPU();
  const int64_t n_rows = 3, dim = 4096;
  const auto x = random_normal(size_t(n_rows * dim), 7);
  const auto w = random_normal(size_t(dim), 8, 1.0f, 0.2f);
  std::vector<float> want(x.size());
  cpu::rms_norm({x.data(), w.data(), want.data(), n_rows, dim, 1e-6f});
  auto d_x = to_device(x), d_w = to_device(w);
  GuardedOutput<float> out(x.size(), poison_float());
  const auto backend = make_cuda_backend();
  EXPECT_EQ(backend->name(), "cuda");
  const Status s = backend->rms_norm({d_x.get(), d_w.get(), out.data(), n_rows, dim, 1e-6f});
  ASSERT_TRUE(s.ok()) << s.message();
  expect_close("cuda backend rms_norm n_rows=3 dim=4096", out.download("rms_norm"), want, 1e-5, 1e-6);
}

TEST(CudaBackend, RejectsALinearWeightItDidNotUpload) {
  // Checked before anything is launched, so host pointers do: the lookup fails first.
  const auto backend = make_cuda_backend();
  float x = 1, y = 0, w = 1;
  const Status s = backend->linear({&x, WeightView{WeightFormat::kF32, 1, 1, &w, nullptr, 1.0f}, &y, 1});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("is not resident"), std::string::npos) << s.message();
}

TEST(CudaBackend, MemoryInfoIsTheDevicesAndFallsByAnAllocation) {
  SKIP_WITHOUT_GPU();
  const auto backend = make_cuda_backend();
  Result<BackendMemoryInfo> before = backend->memory_info();
  ASSERT_TRUE(before.ok()) << before.status().message();
  EXPECT_TRUE(before->holds_weights);
  EXPECT_GT(before->free_bytes, 0);
  EXPECT_LE(before->free_bytes, before->total_bytes);
  const size_t bytes = size_t(256) << 20;
  Result<std::unique_ptr<BackendBuffer>> buf = backend->allocate(bytes);
  ASSERT_TRUE(buf.ok()) << buf.status().message();
  Result<BackendMemoryInfo> after = backend->memory_info();
  ASSERT_TRUE(after.ok());
  EXPECT_LE(after->free_bytes, before->free_bytes - int64_t(bytes) + (int64_t(4) << 20));
}

}  // namespace
}  // namespace dsv4
