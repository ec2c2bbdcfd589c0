// The CUDA backend forwards ops to the kernels (checked on rms_norm against the CPU reference)
// and refuses a linear weight that was not made resident through upload_linear_weight; its
// memory_info is the device's, which the memory plan checks before a model loads; a branch runs
// after what came before it and before what follows its join, eagerly and in a graph.
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

// y = rms(x) (main), then in a branch z = rms(y) beside u = rms(x) (main), joined, u += z: the
// branch must see the y issued before it, and the add the z issued in it.
TEST(CudaBackend, BranchRunsAfterWhatCameBeforeAndBeforeItsJoin) {
  SKIP_WITHOUT_GPU();
  const int64_t n_rows = 64, dim = 4096, n = n_rows * dim;
  const auto x = random_normal(size_t(n), 21);
  const auto w = random_normal(size_t(dim), 22, 1.0f, 0.2f);
  std::vector<float> y(x.size()), z(x.size()), want(x.size());
  cpu::rms_norm({x.data(), w.data(), y.data(), n_rows, dim, 1e-6f});
  cpu::rms_norm({y.data(), w.data(), z.data(), n_rows, dim, 1e-6f});
  cpu::rms_norm({x.data(), w.data(), want.data(), n_rows, dim, 1e-6f});
  for (size_t i = 0; i < want.size(); ++i) want[i] += z[i];

  const auto backend = make_cuda_backend();
  auto d_x = to_device(x), d_w = to_device(w);
  GuardedOutput<float> d_y(x.size(), poison_float()), d_z(x.size(), poison_float()),
      u(x.size(), poison_float());
  const auto step = [&]() -> Status {
    DSV4_RETURN_IF_ERROR(backend->rms_norm({d_x.get(), d_w.get(), d_y.data(), n_rows, dim, 1e-6f}));
    DSV4_RETURN_IF_ERROR(backend->begin_branch());
    DSV4_RETURN_IF_ERROR(backend->rms_norm({d_y.data(), d_w.get(), d_z.data(), n_rows, dim, 1e-6f}));
    DSV4_RETURN_IF_ERROR(backend->end_branch());
    DSV4_RETURN_IF_ERROR(backend->rms_norm({d_x.get(), d_w.get(), u.data(), n_rows, dim, 1e-6f}));
    DSV4_RETURN_IF_ERROR(backend->join_branch());
    return backend->add(u.data(), d_z.data(), n);
  };
  Status s = step();
  ASSERT_TRUE(s.ok()) << s.message();
  expect_close("branch, eager", u.download("u"), want, 1e-5, 1e-6);

  ASSERT_TRUE(backend->begin_capture().ok());
  s = step();
  Result<std::unique_ptr<BackendGraph>> graph = backend->end_capture();
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_TRUE(graph.ok()) << graph.status().message();
  for (GuardedOutput<float>* o : {&d_y, &d_z, &u})
    ASSERT_TRUE(o->buf.upload(std::vector<float>(o->n + 2 * kCanary, o->poison)).ok());
  ASSERT_TRUE(backend->replay(**graph).ok());
  expect_close("branch, graph replay", u.download("u"), want, 1e-5, 1e-6);
}

TEST(CudaBackend, BranchCallsOutOfOrderAreErrors) {
  SKIP_WITHOUT_GPU();
  const auto backend = make_cuda_backend();
  float host = 0;
  auto d = to_device(std::vector<float>{1.0f});
  EXPECT_FALSE(backend->end_branch().ok());
  EXPECT_FALSE(backend->join_branch().ok());
  ASSERT_TRUE(backend->begin_branch().ok());
  EXPECT_FALSE(backend->begin_branch().ok());
  EXPECT_FALSE(backend->join_branch().ok());  // not ended
  const Status early = backend->download(&host, d.get(), sizeof(float));
  EXPECT_FALSE(early.ok());
  EXPECT_NE(early.message().find("branch"), std::string::npos) << early.message();
  ASSERT_TRUE(backend->end_branch().ok());
  EXPECT_FALSE(backend->synchronize().ok());  // ended, not joined
  ASSERT_TRUE(backend->join_branch().ok());
  ASSERT_TRUE(backend->download(&host, d.get(), sizeof(float)).ok());
  EXPECT_EQ(host, 1.0f);
}

}  // namespace
}  // namespace dsv4
