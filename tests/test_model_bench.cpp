// The whole-model benchmark harness (runtime/model_bench.h) end to end on the CPU backend with the
// tiny model: prefill chunks that split sequences, decode at two batch sizes, the table, and the
// temporary checkpoint removed (or kept when asked). The GPU run is `dsv4 bench model`.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "runtime/model_bench.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

ModelBenchOptions tiny_bench() {
  ModelBenchOptions o;
  o.model = tiny_config();  // sliding, CSA, HCA; hash and dense routers
  o.model.n_mtp_layers = 0;
  o.shape = "tiny";
  o.batches = {1, 3};
  o.context = 140;  // past the first HCA window (128) and the sliding window (32)
  o.decode_steps = 2;
  o.prefill_rows = 100;  // forwards that split a sequence and join two
  return o;
}

bool temporary_checkpoint_exists() {
  const std::string name = "dsv4_bench_model_" + std::to_string(::getpid());
  return fs::exists(fs::path("/dev/shm") / name) || fs::exists(fs::temp_directory_path() / name);
}

TEST(ModelBench, RunsEveryPhaseOnTheCpuAndPrintsTheTable) {
  testing::internal::CaptureStdout();
  const Status s = run_model_bench(
      tiny_bench(), [] { return make_cpu_backend(); }, BenchCeilings{10.0, 1.0});
  const std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(s.ok()) << s.message() << "\n" << out;
  for (const char* want :
       {"0 sliding+hash, 1 CSA+dense, 2 HCA+dense, 3 CSA+dense", "memory plan (cpu)",
        "model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor",
        "model shape=tiny layers=4 engine=dsv4 phase=prefill batch=3 context=140 rows=100 | ",
        "model shape=tiny layers=4 engine=dsv4 phase=decode batch=1 context=140 steps=eager | ",
        "model shape=tiny layers=4 engine=dsv4 phase=decode batch=3 context=140 steps=eager | ",
        "logits of the last decode step finite: yes"})
    EXPECT_NE(out.find(want), std::string::npos) << "missing '" << want << "' in\n" << out;
  EXPECT_FALSE(temporary_checkpoint_exists());
}

TEST(ModelBench, KeepsTheCheckpointWhenAskedAndNamesTheUnknownFloor) {
  ModelBenchOptions o = tiny_bench();
  o.batches = {2};
  o.keep_dir = (fs::temp_directory_path() / ("dsv4_bench_keep_" + std::to_string(::getpid()))).string();
  testing::internal::CaptureStdout();
  const Status s = run_model_bench(
      o, [] { return make_cpu_backend(); }, BenchCeilings{});
  const std::string out = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(fs::exists(fs::path(o.keep_dir) / "config.json"));
  EXPECT_TRUE(fs::exists(fs::path(o.keep_dir) / "model.safetensors"));
  EXPECT_NE(out.find("batch=2 context=140 steps=eager | "), std::string::npos) << out;
  EXPECT_NE(out.find(" | - | -\n"), std::string::npos) << "no ceilings, no floor:\n" << out;
  fs::remove_all(o.keep_dir);
}

TEST(ModelBench, RefusesAContextPastMaxPosition) {
  ModelBenchOptions o = tiny_bench();
  o.context = o.model.max_position;
  const Status s = run_model_bench(
      o, [] { return make_cpu_backend(); }, BenchCeilings{});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("expected at most 4096"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace dsv4
