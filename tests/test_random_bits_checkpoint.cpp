// write_random_bits_checkpoint: the schema the model loads (every layer type, both routers, both
// layouts, MTP), weights at the intended scale, activations finite through the layers, and
// the same bytes for a seed whatever the thread count.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/parallel.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "model/synthetic.h"
#include "model/weight_map.h"
#include "model_test_util.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag)
      : path((fs::temp_directory_path() / ("dsv4_rbits_" + tag + std::to_string(::getpid()))).string()) {}
  ~TempDir() { fs::remove_all(path); }
};

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// RMS of a linear weight's dequantized values.
double weight_rms(const WeightView& w) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  double s = 0;
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, row.data());
    for (float v : row) s += double(v) * v;
  }
  return std::sqrt(s / double(w.rows * w.cols));
}

class RandomBitsLayout : public ::testing::TestWithParam<CheckpointLayout> {};

TEST_P(RandomBitsLayout, LoadsScalesAndRuns) {
  TempDir dir(GetParam() == CheckpointLayout::kNvfp4 ? "nv" : "mx");
  SyntheticOptions opt;
  opt.layout = GetParam();
  const ModelConfig cfg = tiny_config();  // sliding, CSA, HCA; hash and dense; an MTP block
  ASSERT_TRUE(write_random_bits_checkpoint(cfg, opt, dir.path).ok());
  EXPECT_EQ(int64_t(fs::file_size(fs::path(dir.path) / "model.safetensors")),
            random_bits_checkpoint_bytes(cfg, opt));

  Result<Checkpoint> ckpt = Checkpoint::open(dir.path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().message();
  const WeightMap map = WeightMap::build(cfg, *ckpt);
  ASSERT_TRUE(map.status().ok()) << map.status().message();
  ASSERT_TRUE(map.has_mtp());
  // Every stored format lands near RMS 1/sqrt(in_features): the binade choices round the
  // log-scale to the nearest integer, so within a factor sqrt(2) either way, and drawn exactly.
  const WeightFormat experts =
      GetParam() == CheckpointLayout::kNvfp4 ? WeightFormat::kNVFP4 : WeightFormat::kMXFP4;
  for (const auto& [name, format] : std::vector<std::pair<std::string, WeightFormat>>{
           {"layers.1.ffn.experts.3.w1", experts},
           {"layers.1.ffn.experts.3.w2", experts},
           {"mtp.0.ffn.experts.0.w1", WeightFormat::kMXFP4},
           {"layers.2.attn.wq_b", WeightFormat::kFP8Block128},
           {"layers.1.attn.compressor.wkv", WeightFormat::kBF16}}) {
    const LinearWeight* w = map.linear(name);
    ASSERT_TRUE(w) << name;
    EXPECT_EQ(w->view.format, format) << name;
    const double want = 1.0 / std::sqrt(double(w->view.cols)), got = weight_rms(w->view);
    EXPECT_GT(got, want / 1.5) << name;
    EXPECT_LT(got, want * 1.5) << name;
  }

  Result<std::unique_ptr<Model>> model = Model::load(dir.path, make_cpu_backend());
  ASSERT_TRUE(model.ok()) << model.status().message();
  std::vector<int32_t> tokens(300);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7919) % size_t(cfg.vocab_size));
  const std::vector<float> logits = model_test::run_chunks(**model, tokens, {290, 1});
  ASSERT_EQ(logits.size(), tokens.size() * size_t(cfg.vocab_size));
  double ms = 0;
  for (float v : logits) {
    ASSERT_TRUE(std::isfinite(v));
    ms += double(v) * v;
  }
  const double rms = std::sqrt(ms / double(logits.size()));
  EXPECT_GT(rms, 0.05);  // O(1) logits: the head has RMS 1/sqrt(d_model) over normed rows
  EXPECT_LT(rms, 20.0);
}

INSTANTIATE_TEST_SUITE_P(Layouts, RandomBitsLayout,
                         ::testing::Values(CheckpointLayout::kNvfp4, CheckpointLayout::kMxfp4));

TEST(RandomBitsCheckpoint, SameBytesForASeedWhateverTheThreads) {
  TempDir one("t1"), many("t3"), other("s2");
  SyntheticOptions opt;
  const int threads = cpu_threads();
  set_cpu_threads(1);
  ASSERT_TRUE(write_random_bits_checkpoint(micro_config(), opt, one.path).ok());
  set_cpu_threads(3);
  ASSERT_TRUE(write_random_bits_checkpoint(micro_config(), opt, many.path).ok());
  opt.seed = 2;
  ASSERT_TRUE(write_random_bits_checkpoint(micro_config(), opt, other.path).ok());
  set_cpu_threads(threads);
  const std::string a = file_bytes(one.path + "/model.safetensors");
  EXPECT_EQ(a, file_bytes(many.path + "/model.safetensors"));
  EXPECT_NE(a, file_bytes(other.path + "/model.safetensors"));
}

TEST(RandomBitsCheckpoint, RefusesShards) {
  SyntheticOptions opt;
  opt.shard_bytes = 1000;
  const Status s = write_random_bits_checkpoint(micro_config(), opt, "/nonexistent/never-created");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("expected one file"), std::string::npos) << s.message();
}

TEST(FirstLayers, KeepsTheScheduleAndHashLayersOfThePublishedModels) {
  const ModelConfig flash = first_layers(ModelConfig::flash(), 4);
  EXPECT_EQ(flash.n_layers, 4);
  EXPECT_EQ(flash.compress_ratios, (std::vector<int>{0, 0, 4, 128}));
  EXPECT_EQ(flash.n_hash_layers, 3);
  EXPECT_EQ(flash.n_mtp_layers, 0);
  EXPECT_TRUE(flash.validate().ok());
  const ModelConfig pro = first_layers(ModelConfig::pro(), 2);
  EXPECT_EQ(pro.compress_ratios, (std::vector<int>{128, 128}));
  EXPECT_EQ(pro.n_hash_layers, 2);
  EXPECT_EQ(pro.d_model, 7168);
}

}  // namespace
}  // namespace dsv4
