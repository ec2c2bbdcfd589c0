// The memory plan (runtime/loading.h): the cache size matches the model's cache pool, the CPU
// plan counts the mapped weights apart from what must fit in RAM, a device plan counts the
// device copies and graphs, and a plan that does not fit is refused in one line.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "model/model.h"
#include "model/synthetic.h"
#include "runtime/loading.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

class MemoryPlanTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("dsv4_test_plan_" + std::to_string(::getpid()))).string();
    ASSERT_TRUE(write_synthetic_checkpoint(tiny_config(), SyntheticOptions{}, dir_).ok());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static inline std::string dir_;
};

TEST_F(MemoryPlanTest, CacheBytesPerSequenceAtFlashWidths) {
  // Flash at 4096 tokens: 2 sliding layers, 21 CSA (1024 entries and indexer keys), 20 HCA (32).
  EXPECT_GT(cache_bytes_per_sequence(ModelConfig::flash(), 4096), int64_t(60) << 20);
  EXPECT_LT(cache_bytes_per_sequence(ModelConfig::flash(), 4096), int64_t(100) << 20);
}

TEST_F(MemoryPlanTest, CpuPlanMapsTheWeightsAndFitsTheCachesInRam) {
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  Result<BackendMemoryInfo> info = cpu->memory_info();
  ASSERT_TRUE(info.ok()) << info.status().message();
  EXPECT_FALSE(info->holds_weights);
  EXPECT_GT(info->free_bytes, 0);
  EXPECT_LE(info->free_bytes, info->total_bytes);

  Result<MemoryPlan> plan = plan_model_memory(dir_, *cpu, 4096, 2, 512);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  int64_t stored = 0;  // the trunk's tensors; neither the MTP block nor NVFP4 input scales are read
  Result<Checkpoint> ckpt = Checkpoint::open(dir_);
  ASSERT_TRUE(ckpt.ok());
  for (const auto& [name, t] : ckpt->tensors())
    if (name.rfind("mtp.", 0) != 0 && name.find(".input_scale") == std::string::npos) stored += t.nbytes();
  EXPECT_EQ(plan->weight_bytes, stored);
  EXPECT_EQ(plan->context, 4096);  // tiny's max_position
  EXPECT_EQ(plan->cache_bytes, cache_bytes_per_sequence(tiny_config(), 4096));
  EXPECT_EQ(plan->graph_bytes, 0);
  EXPECT_EQ(plan->required_bytes(), 2 * plan->cache_bytes + plan->workspace_bytes);
  EXPECT_TRUE(plan->check().ok()) << plan->check().message();
  const std::string text = plan->describe();
  EXPECT_NE(text.find("memory plan (cpu)"), std::string::npos) << text;
  EXPECT_NE(text.find("mapped"), std::string::npos) << text;
  EXPECT_NE(text.find("RAM available"), std::string::npos) << text;
  EXPECT_EQ(text.find("CPU threads"), std::string::npos) << text;
}

TEST_F(MemoryPlanTest, DevicePlanCountsCopiesAndGraphsAndRefusesWhatDoesNotFit) {
  Result<Checkpoint> ckpt = Checkpoint::open(dir_);
  ASSERT_TRUE(ckpt.ok());
  const WeightMap weights = WeightMap::build(tiny_config(), *ckpt);
  const BackendMemoryInfo roomy{int64_t(80) << 30, int64_t(80) << 30, true};
  const MemoryPlan device = plan_memory(tiny_config(), weights, roomy, "cuda", 4096, 8, 4096);
  const MemoryPlan host = plan_memory(tiny_config(), weights, {int64_t(80) << 30, int64_t(80) << 30, false},
                                      "cpu", 4096, 8, 4096);
  // Packed rows pad to 16 and columns to 128; small tensors are held in fp32.
  EXPECT_GT(device.weight_bytes, host.weight_bytes);
  EXPECT_GT(device.graph_bytes, 0);
  EXPECT_EQ(device.required_bytes(),
            device.weight_bytes + 8 * device.cache_bytes + device.workspace_bytes + device.graph_bytes);
  EXPECT_TRUE(device.check().ok());
  EXPECT_NE(device.describe().find("free on the device"), std::string::npos) << device.describe();

  const BackendMemoryInfo tight{device.required_bytes() - 1, int64_t(80) << 30, true};
  const Status s = plan_memory(tiny_config(), weights, tight, "cuda", 4096, 8, 4096).check();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("memory plan (cuda): needs"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("expected at most"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace dsv4
